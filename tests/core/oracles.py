"""Independent reference computations in NumPy, SciPy, python-control and SLICOT (unbatched).

Nothing here calls compressm_core. Discrete time throughout unless a name says otherwise.
"""

from __future__ import annotations

import control
import numpy as np
import scipy.linalg
import slycot


def realify(M: np.ndarray) -> np.ndarray:
    """The real matrix [[Re M, -Im M], [Im M, Re M]] acting on stacked real and imaginary parts."""
    return np.block([[M.real, -M.imag], [M.imag, M.real]])


def realified_system(A, B, C):
    """The real 2n-state system of the complex map u -> C x with complex u: inputs [Re u; Im u],
    states [Re x; Im x], outputs [Re y; Im y]. Its HSVs are the complex system's, each twice."""
    return realify(A), realify(B), realify(C)


def real_output_realisation(poles, B, C):
    """The real 2n-state system of the LRU map u -> Re(C x) for real u, x+ = diag(poles) x + B u."""
    A = realify(np.diag(poles))
    return A, np.vstack([B.real, B.imag]), np.hstack([C.real, -C.imag])


def control_system(A, B, C, D=None) -> control.StateSpace:
    D = np.zeros((C.shape[0], B.shape[1])) if D is None else D
    return control.ss(A, B, C, D, dt=True)


def control_gramians(A, B, C) -> tuple[np.ndarray, np.ndarray]:
    """Controllability and observability Gramians by python-control (SLICOT sb03md); real only."""
    sys = control_system(A, B, C)
    return control.gram(sys, "c"), control.gram(sys, "o")


def gramians_any(A, B, C) -> tuple[np.ndarray, np.ndarray]:
    """Gramians of a real or complex system by python-control; complex ones are read off the
    realified system's Gramians, which are realify(P) and realify(Q)."""
    if not any(np.iscomplexobj(M) for M in (A, B, C)):
        return control_gramians(A, B, C)
    n = A.shape[0]
    return tuple(X[:n, :n] + 1j * X[n:, :n] for X in control_gramians(*realified_system(A, B, C)))


def control_hsv(A, B, C) -> np.ndarray:
    """HSVs from python-control's Gramians (SLICOT sb03md); real only. (Its Cholesky-factor
    Gramians "cf" and "of" fail for more inputs or outputs than states.)"""
    return hsv_from_gramians(*control_gramians(A, B, C))


def hsv_any(A, B, C) -> np.ndarray:
    """HSVs of a real or complex system by python-control (complex ones via the realified system)."""
    if np.iscomplexobj(A) or np.iscomplexobj(B) or np.iscomplexobj(C):
        return control_hsv(*realified_system(A, B, C))[::2]
    return control_hsv(A, B, C)


def slycot_hsv(A, B, C) -> np.ndarray:
    """HSVs from SLICOT ab09ad (discrete time, square-root balancing, no scaling)."""
    n, m, p = A.shape[0], B.shape[1], C.shape[0]
    *_, hsv = slycot.ab09ad("D", "B", "N", n, m, p, A.copy(), B.copy(), C.copy(), nr=1)
    return hsv


def slycot_reduce(A, B, C, rank):
    """The order-``rank`` balanced truncation of SLICOT ab09ad: (Ar, Br, Cr)."""
    n, m, p = A.shape[0], B.shape[1], C.shape[0]
    nr, Ar, Br, Cr, _ = slycot.ab09ad("D", "B", "N", n, m, p, A.copy(), B.copy(), C.copy(), nr=rank)
    assert nr == rank
    return Ar, Br, Cr


def scipy_discrete_lyapunov(A, Q) -> np.ndarray:
    """X with A X A^H - X + Q = 0 by SciPy, A cast to complex when Q is complex (SciPy silently
    fails for real A and complex Q, see METHOD.md); SciPy's own residual is checked."""
    if np.iscomplexobj(Q):
        A = A.astype(complex)
    X = scipy.linalg.solve_discrete_lyapunov(A, Q)
    residual = np.linalg.norm(A @ X @ A.conj().T - X + Q) / np.linalg.norm(Q)
    assert residual < 1e-10, f"the SciPy oracle itself failed: residual {residual:.2e}"
    return X


def finite_sum_lyapunov(A, Q, terms: int = 800) -> np.ndarray:
    """sum_{k < terms} A^k Q A^kH: the discrete Lyapunov solution by brute force."""
    X = np.zeros_like(Q, dtype=np.result_type(A, Q))
    term = Q
    for _ in range(terms):
        X = X + term
        term = A @ term @ A.conj().T
    return X


def hsv_from_gramians(P, Q) -> np.ndarray:
    """HSVs as singular values of Lq^H Lp with eigendecomposition factors of P and Q."""

    def factor(X):
        w, V = np.linalg.eigh(X)
        return V * np.sqrt(np.clip(w, 0, None))

    return np.linalg.svd(factor(Q).conj().T @ factor(P), compute_uv=False)


def tustin(A, B, C, D):
    """The continuous-time system of the bilinear map z = (1 + s) / (1 - s), scaled so that
    its Gramians equal the discrete system's: Ac = (A + I)^-1 (A - I), Bc = sqrt(2) (A + I)^-1 B,
    Cc = sqrt(2) C (A + I)^-1, Dc = D - C (A + I)^-1 B."""
    inverse = np.linalg.inv(A + np.eye(A.shape[0]))
    return (
        inverse @ (A - np.eye(A.shape[0])),
        np.sqrt(2) * inverse @ B,
        np.sqrt(2) * C @ inverse,
        D - C @ inverse @ B,
    )


def continuous_hsv(A, B, C) -> np.ndarray:
    """HSVs of a continuous-time system from SciPy's Bartels-Stewart Gramians (A cast to complex
    for complex B or C: SciPy's solver is wrong for real A with complex Q, see METHOD.md)."""
    if np.iscomplexobj(B) or np.iscomplexobj(C):
        A = A.astype(complex)
    P = scipy.linalg.solve_continuous_lyapunov(A, -B @ B.conj().T)
    Q = scipy.linalg.solve_continuous_lyapunov(A.conj().T, -C.conj().T @ C)
    return hsv_from_gramians((P + P.conj().T) / 2, (Q + Q.conj().T) / 2)


def unit_circle(points: int = 2000) -> np.ndarray:
    return np.exp(1j * np.linspace(0, 2 * np.pi, points, endpoint=False))


def frequency_response(A, B, C, D=None, z=None) -> np.ndarray:
    """G(z) = C (zI - A)^-1 B + D at each point of ``z`` (default: the unit circle), (points, p, m)."""
    z = unit_circle() if z is None else z
    n = A.shape[0]
    G = C @ np.linalg.solve(
        z[:, None, None] * np.eye(n) - A, np.broadcast_to(B, (len(z), *B.shape))
    )
    return G if D is None else G + D


def hinf_on_grid(G: np.ndarray) -> float:
    """max over the grid of the largest singular value: a lower estimate of the H-infinity norm."""
    return float(np.max(np.linalg.svd(G, compute_uv=False)))


def simulate(A, B, C, D, u) -> np.ndarray:
    """Outputs y[k] = C x[k] + D u[k], x[k+1] = A x[k] + B u[k], x[0] = 0, for inputs u (steps, m)."""
    x = np.zeros(A.shape[0], dtype=np.result_type(A, B, u))
    outputs = []
    for u_k in u:
        y = C @ x if D is None else C @ x + D @ u_k
        outputs.append(y)
        x = A @ x + B @ u_k
    return np.array(outputs)


def simulate_diagonal(poles, B, C, D, u) -> np.ndarray:
    """Outputs C x[k] + D u[k] of x[k+1] = poles * x[k] + B u[k], x[0] = 0 (complex in general)."""
    return simulate(np.diag(poles), B, C, D, u)
