"""``hankel_singular_values(method="auto")`` on JAX arrays (issue 15, item 3): eager CPU arrays
get NumPy's values-only Hermitian eigensolver, with the accuracy gate and the SVD fallback, and
so do traced ones (``jax.jit``, ``jax.vmap``) compiled for a CPU, through a host call whose
derivatives are the SVD path's. Oracle: SciPy's Lyapunov solver + svdvals."""

from __future__ import annotations

import os
import subprocess
import sys

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


def not_a_number(x):
    return jnp.full(x.shape[:-1], jnp.nan, dtype=jnp.real(x).dtype)


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
def test_traced_cpu_hsv_use_numpy_eigvalsh_and_match_scipy(monkeypatch, options):
    poles, B, C = lru_like(batch=(3,), seed=1)
    oracle = oracle_of_diagonal(poles, B, C)
    arrays = [jnp.asarray(x) for x in (poles, B, C)]
    # the compiled path is traced for other platforms but must not run here: NaN if it did
    monkeypatch.setattr(jnp.linalg, "eigvalsh", not_a_number)
    monkeypatch.setattr(jnp.linalg, "svdvals", not_a_number)
    jitted = jax.jit(lambda *a: hsv(*a, **options))(*arrays)
    mapped = jax.vmap(lambda *a: hsv(*a, **options))(*arrays)
    jit_of_vmap = jax.jit(jax.vmap(lambda *a: hsv(*a, **options)))(*arrays)
    assert jitted.dtype == mapped.dtype == jit_of_vmap.dtype == jnp.float64
    for traced in (jitted, mapped, jit_of_vmap):
        np.testing.assert_allclose(np.asarray(traced), oracle, rtol=1e-10)


def test_traced_svd_method_makes_no_host_call_and_matches_scipy(monkeypatch):
    poles, B, C = lru_like(batch=(3,), seed=2)
    arrays = [jnp.asarray(x) for x in (poles, B, C)]
    monkeypatch.setattr(jax, "pure_callback", refuse("a host call"))
    jitted = jax.jit(lambda *a: hsv(*a, method="svd", factor="cholesky"))(*arrays)
    np.testing.assert_allclose(np.asarray(jitted), oracle_of_diagonal(poles, B, C), rtol=1e-10)


def test_traced_hsv_keep_float64_under_the_enable_x64_context_manager():
    """The host call's arguments are made in the callback's thread, which the context does not reach."""
    poles, B, C = lru_like(seed=4)
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        with jax.enable_x64(True):
            result = jax.jit(hsv)(*(jnp.asarray(x) for x in (poles, B, C)))
            assert result.dtype == jnp.float64
            result = np.asarray(result)
    finally:
        jax.config.update("jax_enable_x64", before)
    np.testing.assert_allclose(result, oracle_of_diagonal(poles, B, C), rtol=1e-12)  # float32: ~1e-7


def test_traced_hsv_keep_float64_with_the_context_manager_and_one_xla_thread(tmp_path):
    """With one intra-op thread the callback runs outside the context's thread, also for its result."""
    poles, B, C = lru_like(seed=5)
    np.savez(tmp_path / "system.npz", poles=poles, B=B, C=C)
    script = (
        "import sys, numpy as np, jax, compressm_core as cc\n"
        "system = np.load(sys.argv[1])\n"
        "with jax.enable_x64(True):\n"
        "    arrays = [jax.numpy.asarray(system[k]) for k in ('poles', 'B', 'C')]\n"
        "    hsv = jax.jit(lambda *a: cc.hankel_singular_values(cc.DiagonalStateSpace(*a)))(*arrays)\n"
        "    assert hsv.dtype == jax.numpy.float64, hsv.dtype\n"
        "    np.save(sys.argv[2], np.asarray(hsv))\n"
    )
    flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_ENABLE_X64": "0"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "system.npz"), str(tmp_path / "hsv.npy")],
                   env=env, check=True, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "hsv.npy"), oracle_of_diagonal(poles, B, C), rtol=1e-12)


def test_derivatives_of_traced_hsv_match_central_differences():
    """The host call has no derivative of its own; the SVD path's is used, under jit and eagerly."""
    poles, B, C = lru_like(seed=3)
    rng = np.random.default_rng(3)
    direction = rng.standard_normal(B.shape) + 1j * rng.standard_normal(B.shape)

    def total(b):
        return jnp.sum(hsv(jnp.asarray(poles), b, jnp.asarray(C)))

    step = 1e-6
    central = (oracle_of_diagonal(poles, B + step * direction, C).sum()
               - oracle_of_diagonal(poles, B - step * direction, C).sum()) / (2 * step)
    for gradient in (jax.grad(total)(jnp.asarray(B)), jax.jit(jax.grad(total))(jnp.asarray(B))):
        # JAX's gradient of a real function of complex b is d/d(re) - i d/d(im)
        directional = np.sum(np.real(np.asarray(gradient) * direction))
        np.testing.assert_allclose(directional, central, rtol=1e-6)


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
