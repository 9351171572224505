"""Synthetic system identification: outputs of a random stable MIMO LTI system of known order."""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_discrete_lyapunov

from .dataset import SequenceDataset, TrueSystem
from .splits import check_fraction, check_positive, split_off

POLE_RADII = (0.5, 0.95)


def _gramian_factor(gramian: np.ndarray) -> np.ndarray:
    """R (n, n) with R R^T = ``gramian`` (symmetric PSD), via eigh: no Cholesky breakdown."""
    w, v = np.linalg.eigh((gramian + gramian.T) / 2)
    return v * np.sqrt(np.clip(w, 0.0, None))


def random_stable_system(
    order: int, inputs: int, outputs: int, rng: np.random.Generator
) -> TrueSystem:
    """A random real system (A (n, n), B (n, m), C (p, n), D (p, m)) with poles of radius
    in ``POLE_RADII``: a block-diagonal rotation-scaling A in a random orthogonal basis.

    C and D are scaled so that each output has unit stationary variance under white
    unit-variance inputs.
    """
    radii = rng.uniform(*POLE_RADII, size=(order + 1) // 2)
    angles = rng.uniform(0.0, np.pi, size=order // 2)
    blocks = np.zeros((order, order))
    for i, (r, theta) in enumerate(zip(radii[: order // 2], angles, strict=True)):
        c, s = r * np.cos(theta), r * np.sin(theta)
        blocks[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[c, -s], [s, c]]
    if order % 2:
        blocks[-1, -1] = radii[-1] * rng.choice([-1.0, 1.0])
    basis, _ = np.linalg.qr(rng.standard_normal((order, order)))
    A = basis @ blocks @ basis.T
    B = rng.standard_normal((order, inputs))
    C = rng.standard_normal((outputs, order))
    D = rng.standard_normal((outputs, inputs))
    controllability = solve_discrete_lyapunov(A, B @ B.T)
    scale = 1.0 / np.sqrt(np.diag(C @ controllability @ C.T + D @ D.T))
    C, D = C * scale[:, None], D * scale[:, None]
    observability = solve_discrete_lyapunov(A.T, C.T @ C)
    hsv = np.linalg.svd(
        _gramian_factor(observability).T @ _gramian_factor(controllability), compute_uv=False
    )
    return TrueSystem(A, B, C, D, hsv)


def simulate(system: TrueSystem, u: np.ndarray) -> np.ndarray:
    """Outputs y (N, L, p) from inputs u (N, L, m), starting at x[0] = 0, in float64."""
    u = u.astype(np.float64)
    state = np.zeros((u.shape[0], system.order))
    y = np.empty((*u.shape[:2], system.C.shape[0]))
    for k in range(u.shape[1]):
        y[:, k] = state @ system.C.T + u[:, k] @ system.D.T
        state = state @ system.A.T + u[:, k] @ system.B.T
    return y


def load_sysid(
    *,
    seed: int = 0,
    order: int = 8,
    inputs: int = 2,
    outputs: int = 2,
    length: int = 128,
    num_sequences: int = 1000,
    noise: float = 0.0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> SequenceDataset:
    """Regression from white-noise inputs (N, ``length``, ``inputs``) to the outputs
    (N, ``length``, ``outputs``) of a random stable system of the given ``order``, plus
    i.i.d. Gaussian measurement noise of standard deviation ``noise``.

    ``seed`` draws the system, the inputs, the noise and the splits; ``truth`` holds the
    system, its order and Hankel singular values.
    """
    for name, value in [
        ("order", order),
        ("inputs", inputs),
        ("outputs", outputs),
        ("length", length),
        ("num_sequences", num_sequences),
    ]:
        check_positive(name, value)
    if not noise >= 0.0:
        raise ValueError(f"`noise` {noise} must be a non-negative standard deviation")
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    rng = np.random.default_rng(seed)
    system = random_stable_system(order, inputs, outputs, rng)
    u = rng.standard_normal((num_sequences, length, inputs)).astype(np.float32)
    y = simulate(system, u) + noise * rng.standard_normal((num_sequences, length, outputs))
    x_pool, y_pool, x_test, y_test = split_off(u, y.astype(np.float32), test_fraction, rng)
    x_train, y_train, x_val, y_val = split_off(x_pool, y_pool, val_fraction, rng)
    return SequenceDataset(
        "sysid", "regression", x_train, y_train, x_val, y_val, x_test, y_test, truth=system
    )
