"""``hankel_singular_values(method="auto")`` on JAX arrays (issue 15, item 3): eager CPU arrays
get NumPy's values-only Hermitian eigensolver, with the accuracy gate and the SVD fallback;
traced calls keep the JAX-only SVD path. Oracle: SciPy's Lyapunov solver + svdvals."""

from __future__ import annotations

import numpy as np
import pytest
from oracles import hsv_from_gramians, scipy_discrete_lyapunov
from strategies import complex_poles, gaussian

import compressm_core as cc

jax = pytest.importorskip("jax")
jnp = jax.numpy


def lru_like(batch=(), n=8, m=3, p=3, seed=0):
    """NumPy (poles, B, C) of a stable complex diagonal system whose HSVs stay within ~1e3 of
    each other (so even the eigh values are accurate to ~1e-10 relative)."""
    rng = np.random.default_rng(seed)
    count = int(np.prod(batch))
    poles = np.stack([complex_poles(rng, n, (0.3, 0.8)) for _ in range(count)]).reshape(*batch, n)
    return poles, gaussian(rng, (*batch, n, m), True), gaussian(rng, (*batch, p, n), True)


def oracle_hsv(A, B, C) -> np.ndarray:
    """SciPy's discrete Lyapunov Gramians, then svdvals of Lq^H Lp (one unbatched system)."""
    P = scipy_discrete_lyapunov(A, B @ B.conj().T)
    Q = scipy_discrete_lyapunov(A.conj().T, C.conj().T @ C)
    return hsv_from_gramians(P, Q)


def oracle_of_diagonal(poles, B, C) -> np.ndarray:
    flat = [x.reshape(-1, *x.shape[-2:]) for x in (poles[..., None], B, C)]
    rows = [oracle_hsv(np.diag(p[:, 0]), b, c) for p, b, c in zip(*flat, strict=True)]
    return np.stack(rows).reshape(*poles.shape)


def hsv(poles, B, C, **options):
    return cc.hankel_singular_values(cc.DiagonalStateSpace(poles, B, C), **options)


def refuse(name):
    def refused(*args, **kwargs):
        raise AssertionError(f"{name} was called")

    return refused


def test_eager_cpu_hsv_use_numpy_eigvalsh_and_match_scipy(monkeypatch):
    poles, B, C = lru_like(batch=(2,))
    arrays = [jnp.asarray(x) for x in (poles, B, C)]
    monkeypatch.setattr(jnp.linalg, "eigvalsh", refuse("JAX's eigvalsh"))  # the 4x slower one
    monkeypatch.setattr(jnp.linalg, "svdvals", refuse("JAX's svdvals"))  # the gate passes here
    result = hsv(*arrays)
    assert isinstance(result, jax.Array)
    assert result.dtype == jnp.float64
    assert result.devices() == arrays[0].devices()
    np.testing.assert_allclose(np.asarray(result), oracle_of_diagonal(poles, B, C), rtol=1e-10)


def test_eager_cpu_hsv_keep_single_precision(monkeypatch):
    poles, B, C = lru_like()
    arrays = [jnp.asarray(x.astype(np.complex64)) for x in (poles, B, C)]
    monkeypatch.setattr(jnp.linalg, "eigvalsh", refuse("JAX's eigvalsh"))
    result = hsv(*arrays)  # float32's gate (sigma_n >= 0.034 sigma_1) may send it to the SVD
    assert result.dtype == jnp.float32
    assert result.devices() == arrays[0].devices()
    oracle = oracle_of_diagonal(poles, B, C)
    np.testing.assert_allclose(np.asarray(result), oracle, rtol=1e-4, atol=1e-5 * oracle[0])
    by_eigh = hsv(*arrays, method="eigh")
    assert by_eigh.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(by_eigh), oracle, rtol=1e-2, atol=1e-5 * oracle[0])


@pytest.mark.parametrize("options", [{}, {"factor": "cholesky"}], ids=str)
def test_traced_hsv_make_no_host_call_and_match_scipy(monkeypatch, options):
    poles, B, C = lru_like(batch=(3,), seed=1)
    oracle = oracle_of_diagonal(poles, B, C)
    arrays = [jnp.asarray(x) for x in (poles, B, C)]
    monkeypatch.setattr(cc._array, "to_numpy", refuse("a host copy"))
    jitted = jax.jit(lambda *a: hsv(*a, **options))(*arrays)
    mapped = jax.vmap(lambda *a: hsv(*a, **options))(*arrays)
    assert jitted.dtype == mapped.dtype == jnp.float64
    for traced in (jitted, mapped):
        np.testing.assert_allclose(np.asarray(traced), oracle, rtol=1e-10)


def rotated_decoupled_system(gains, poles, seed=0):
    """A dense real system of scalar channels x_i+ = a_i x_i + g_i u_i, y_i = g_i x_i seen in a
    random orthonormal basis; its HSVs are g_i^2 / (1 - a_i^2), in closed form."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((len(poles), len(poles))))
    A = basis @ np.diag(poles) @ basis.T
    return A, basis @ np.diag(gains), np.diag(gains) @ basis.T


def test_hsv_below_the_eigh_gate_fall_back_to_the_svd_and_match_scipy(monkeypatch):
    gains, poles = np.array([1.0, 0.5, 3e-2, 1e-4]), np.array([0.5, -0.3, 0.6, 0.2])
    closed_form = np.sort(gains**2 / (1 - poles**2))[::-1]
    assert closed_form[-1] < cc.balancing.EIGH_GATE * np.finfo(float).eps ** 0.5 * closed_form[0]
    A, B, C = rotated_decoupled_system(gains, poles)
    oracle = oracle_hsv(A, B, C)
    np.testing.assert_allclose(oracle, closed_form, rtol=1e-6)
    svdvals_calls = []
    svdvals = jnp.linalg.svdvals
    monkeypatch.setattr(jnp.linalg, "svdvals", lambda x: svdvals_calls.append(x) or svdvals(x))
    result = cc.hankel_singular_values(cc.StateSpace(*(jnp.asarray(x) for x in (A, B, C))))
    assert len(svdvals_calls) == 1
    assert isinstance(result, jax.Array)
    np.testing.assert_allclose(np.asarray(result), oracle, rtol=1e-6)
