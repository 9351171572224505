"""The core under compilers (issue 15, item 1): ``jax.jit``, ``jax.vmap`` and
``torch.compile(fullgraph=True)`` give the eager results, with the static choices
(``factor=``, ``method=``, a static ``rank``) in place of host-side checks."""

from __future__ import annotations

import numpy as np
import pytest
from strategies import complex_poles, gaussian

import compressm_core as cc

jax = pytest.importorskip("jax")
jnp = jax.numpy


def lru_like(batch=(), n=6, m=2, p=2, seed=0):
    """NumPy arrays (poles, B, C) of a stable complex diagonal system, batched."""
    rng = np.random.default_rng(seed)
    count = int(np.prod(batch))
    poles = np.stack([complex_poles(rng, n, (0.3, 0.9)) for _ in range(count)]).reshape(*batch, n)
    return poles, gaussian(rng, (*batch, n, m), True), gaussian(rng, (*batch, p, n), True)


def transfer_at(A, B, C, z=2.0):
    """C (zI - A)^-1 B at one point: compares realisations that differ by a state transformation."""
    n = A.shape[-1]
    return C @ np.linalg.solve(z * np.eye(n) - A, B)


def hsv(poles, B, C, **options):
    return cc.hankel_singular_values(cc.DiagonalStateSpace(poles, B, C), **options)


def dense_hsv(poles, B, C, **options):
    return cc.hankel_singular_values(cc.StateSpace(poles[..., None] * jnp.eye(poles.shape[-1]), B, C), **options)


def reduced(poles, B, C):
    red = cc.balanced_truncation(cc.DiagonalStateSpace(poles, B, C), rank=3)
    return red.system.A, red.system.B, red.system.C, red.hsv, red.error_bound


def diagonalised(A, B, C):
    modal = cc.to_diagonal(cc.StateSpace(A, B, C))
    return modal.poles, modal.B, modal.C


OPTIONS = [
    {},
    {"factor": "cholesky"},
    {"factor": "eigh"},
    {"method": "eigh"},
    {"method": "svd", "factor": "cholesky"},
]


@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize("function", [hsv, dense_hsv], ids=["diagonal", "dense"])
def test_hankel_singular_values_under_jit_and_vmap(function, options):
    arrays = [jnp.asarray(a) for a in lru_like()]
    eager = np.asarray(function(*arrays, **options))
    jitted = jax.jit(lambda *a: function(*a, **options))(*arrays)
    np.testing.assert_allclose(np.asarray(jitted), eager, rtol=1e-10, atol=1e-12 * eager[0])
    batch = [jnp.asarray(a) for a in lru_like((3,), seed=1)]
    mapped = jax.vmap(lambda *a: function(*a, **options))(*batch)
    np.testing.assert_allclose(
        np.asarray(mapped), np.asarray(function(*batch, **options)), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("method", ["auto", "cholesky", "eigh"])
def test_gramians_and_factors_under_jit_and_vmap(method):
    arrays = [jnp.asarray(a) for a in lru_like((2,))]

    def factors(poles, B, C):
        system = cc.DiagonalStateSpace(poles, B, C)
        return (*cc.gramians(system), *cc.gramian_factors(system, method=method))

    P, Q, Lp, Lq = (np.asarray(x) for x in jax.jit(factors)(*arrays))
    P_eager, Q_eager = (np.asarray(x) for x in cc.gramians(cc.DiagonalStateSpace(*arrays)))
    np.testing.assert_allclose(P, P_eager, rtol=1e-12)
    np.testing.assert_allclose(Q, Q_eager, rtol=1e-12)
    np.testing.assert_allclose(Lp @ np.conj(np.swapaxes(Lp, -1, -2)), P_eager, atol=1e-11)
    np.testing.assert_allclose(Lq @ np.conj(np.swapaxes(Lq, -1, -2)), Q_eager, atol=1e-11)
    mapped = jax.vmap(factors)(*arrays)
    np.testing.assert_allclose(np.asarray(mapped[0]), P_eager, rtol=1e-12)


def test_rank_for_energy_under_jit_and_vmap():
    values = jnp.asarray([[4.0, 3.0, 2.0, 1.0], [9.0, 0.5, 0.3, 0.2]])
    eager = np.asarray(cc.rank_for_energy(values, 0.3))
    np.testing.assert_array_equal(np.asarray(jax.jit(cc.rank_for_energy, static_argnums=1)(values, 0.3)), eager)
    np.testing.assert_array_equal(np.asarray(jax.vmap(lambda h: cc.rank_for_energy(h, 0.3))(values)), eager)
    np.testing.assert_array_equal(eager, [2, 1])  # 4 + 3 >= 0.7 * 10; 9 >= 0.7 * 10


def test_balanced_truncation_with_a_static_rank_under_jit_and_vmap():
    arrays = [jnp.asarray(a) for a in lru_like((2,))]
    eager = [np.asarray(x) for x in reduced(*arrays)]
    for traced in (jax.jit(reduced)(*arrays), jax.vmap(reduced)(*arrays)):
        A, B, C, values, bound = (np.asarray(x) for x in traced)
        np.testing.assert_allclose(values, eager[3], rtol=1e-10)
        np.testing.assert_allclose(bound, eager[4], rtol=1e-10)
        np.testing.assert_allclose(transfer_at(A, B, C), transfer_at(*eager[:3]), rtol=1e-9)


def test_balanced_truncation_with_tau_under_jit_asks_for_a_static_rank():
    arrays = [jnp.asarray(a) for a in lru_like()]

    def by_tau(poles, B, C):
        return cc.balanced_truncation(cc.DiagonalStateSpace(poles, B, C), tau=0.1).system.A

    with pytest.raises(ValueError, match="pass a static `rank`"):
        jax.jit(by_tau)(*arrays)


def test_to_diagonal_under_jit_and_vmap():
    arrays = [jnp.asarray(a) for a in lru_like((2,))]
    A, B, C = reduced(*arrays)[:3]
    expected = transfer_at(*(np.asarray(x) for x in (A, B, C)))
    for traced in (jax.jit(diagonalised)(A, B, C), jax.vmap(diagonalised)(A, B, C)):
        poles, Bd, Cd = (np.asarray(x) for x in traced)
        modal = Cd @ (Bd / (2.0 - poles)[..., :, None])
        np.testing.assert_allclose(modal, expected, rtol=1e-9)


# --- torch.compile ---------------------------------------------------------------------------


@pytest.mark.slow  # compiling takes ~5-10 s per function
@pytest.mark.filterwarnings("ignore::UserWarning")  # dynamo on array_api_compat's lru_cache helpers
@pytest.mark.parametrize("name", ["gramians", "hsv", "rank", "truncation", "to_diagonal"])
def test_torch_compile_fullgraph_matches_eager(name):
    torch = pytest.importorskip("torch")
    poles, B, C = (torch.as_tensor(a) for a in lru_like())

    def truncation(poles, B, C):
        red = cc.balanced_truncation(cc.DiagonalStateSpace(poles, B, C), rank=3)
        return red.system.A, red.system.B, red.system.C

    functions = {
        "gramians": (lambda p, b, c: cc.gramians(cc.DiagonalStateSpace(p, b, c)), (poles, B, C)),
        "hsv": (hsv, (poles, B, C)),
        "rank": (lambda h: cc.rank_for_energy(h, 0.2), (hsv(poles, B, C),)),
        "truncation": (truncation, (poles, B, C)),
        "to_diagonal": (diagonalised, truncation(poles, B, C)),
    }
    function, args = functions[name]
    eager = function(*args)
    compiled = torch.compile(function, fullgraph=True)(*args)
    if name in ("truncation", "to_diagonal"):  # realisations differ by a state transformation
        if name == "to_diagonal":
            eager, compiled = ((torch.diag_embed(p), b, c) for p, b, c in (eager, compiled))
        np.testing.assert_allclose(
            transfer_at(*(x.numpy() for x in compiled)), transfer_at(*(x.numpy() for x in eager)), rtol=1e-9
        )
        return
    for got, want in zip(torch.utils._pytree.tree_leaves(compiled), torch.utils._pytree.tree_leaves(eager), strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-12)
