"""Weyl perturbation bounds against HSVs computed by python-control, and the ranking certificate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from namespaces import (
    as_xp,
    assert_in_namespace,
    diagonal_state_space,
    eager_only,
    state_space,
    to_np,
)
from oracles import hsv_any
from strategies import (
    CORE,
    Dense,
    Diagonal,
    dense_systems,
    diagonal_systems,
    fixed_dense_systems,
    fixed_diagonal_system,
    gaussian,
    seeds,
)

import compressm_core as cc

NORMS = ["frobenius", "spectral"]


def perturbed_dense(system: Dense, rng, size) -> Dense:
    """A, B, C moved by perturbations of spectral norm ``size`` (A: at most 0.01, which keeps the
    spectral radius below 1: it is < 0.95 and the eigenvectors' condition number is <= 4)."""

    def move(M, scale):
        E = gaussian(rng, M.shape, np.iscomplexobj(M))
        return M + scale * E / np.linalg.norm(E, ord=2, axis=(-2, -1), keepdims=True)

    return Dense(
        move(system.A, min(size, 0.01)), move(system.B, size), move(system.C, size), system.D
    )


def perturbed_diagonal(system: Diagonal, rng, size) -> Diagonal:
    """Poles moved by at most 0.01 (they stay inside the unit circle), B and C by ``size``."""
    moved = system.poles + min(size, 0.01) * np.exp(2j * np.pi * rng.random(system.poles.shape))
    B = system.B + size * gaussian(rng, system.B.shape, True)
    C = system.C + size * gaussian(rng, system.C.shape, True)
    return Diagonal(moved, B, C, system.D)


def oracle_hsv(system: Dense | Diagonal) -> np.ndarray:
    dense = system.dense() if isinstance(system, Diagonal) else system
    return hsv_any(*dense[:3])


def check_weyl_bound(xp, system: Dense | Diagonal, moved: Dense | Diagonal):
    """max_i |hsv_i - hsv'_i| <= bound for both norms (oracle HSVs), frobenius >= spectral,
    and a certified ranking keeps a positive gap in the perturbed system."""
    make = diagonal_state_space if isinstance(system, Diagonal) else state_space
    bounds = {norm: cc.weyl_bound(make(xp, *system), make(xp, *moved), norm=norm) for norm in NORMS}
    for bound in bounds.values():
        assert_in_namespace(bound, xp)
        assert bound.shape == system.B.shape[:-2]
    frobenius, spectral = (to_np(bounds[norm]) for norm in NORMS)
    for (index, member), (_, member_moved) in zip(system.members(), moved.members(), strict=True):
        hsv, hsv_moved = oracle_hsv(member), oracle_hsv(member_moved)
        slack = 1e-9 * hsv[0]
        assert np.max(np.abs(hsv - hsv_moved)) <= spectral[index] + slack
        assert spectral[index] <= frobenius[index] * (1 + 1e-12) + slack
        for rank in range(1, len(hsv)):
            if cc.ranking_is_stable(hsv, spectral[index], rank):
                gap_moved = hsv_moved[rank - 1] - hsv_moved[rank]
                assert gap_moved >= hsv[rank - 1] - hsv[rank] - 2 * spectral[index] - slack


sizes = st.floats(1e-6, 0.1)


@eager_only
@given(system=dense_systems(), seed=seeds, size=sizes)
@CORE
def test_weyl_bound_holds_for_dense_systems(xp, system, seed, size):
    moved = perturbed_dense(system, np.random.default_rng(seed), size)
    check_weyl_bound(xp, system, moved)


@eager_only
@given(system=diagonal_systems(), seed=seeds, size=sizes)
@CORE
def test_weyl_bound_holds_for_diagonal_systems(xp, system, seed, size):
    moved = perturbed_diagonal(system, np.random.default_rng(seed), size)
    check_weyl_bound(xp, system, moved)


def test_weyl_bound_holds_on_fixed_systems(xp):
    rng = np.random.default_rng(0)
    for system in fixed_dense_systems():
        moved = perturbed_dense(system, rng, 0.01)
        check_weyl_bound(xp, system, moved)
    system = fixed_diagonal_system()
    moved = perturbed_diagonal(system, rng, 0.01)
    check_weyl_bound(xp, system, moved)


@pytest.mark.parametrize("norm", NORMS)
def test_weyl_bound_vanishes_without_perturbation(xp, norm):
    system = state_space(xp, *fixed_dense_systems()[1])
    np.testing.assert_array_equal(to_np(cc.weyl_bound(system, system, norm=norm)), 0.0)


def test_weyl_bound_rejects_systems_of_different_order(xp):
    system = fixed_diagonal_system()
    smaller = Diagonal(system.poles[..., :4], system.B[..., :4, :], system.C[..., :4], system.D)
    with pytest.raises(ValueError, match="`sys_perturbed` has order 4"):
        cc.weyl_bound(diagonal_state_space(xp, *system), diagonal_state_space(xp, *smaller))


def test_weyl_bound_rejects_an_unknown_norm(xp):
    system = diagonal_state_space(xp, *fixed_diagonal_system())
    with pytest.raises(ValueError, match="`norm`"):
        cc.weyl_bound(system, system, norm="nuclear")


# --- the ranking certificate -------------------------------------------------------------------


@eager_only
@given(
    hsv=st.lists(st.floats(0, 1e3), min_size=2, max_size=12).map(lambda v: sorted(v, reverse=True)),
    bound=st.floats(0, 1e3),
    data=st.data(),
)
@CORE
def test_ranking_is_stable_follows_its_definition(xp, hsv, bound, data):
    """True exactly where the gap sigma_r - sigma_(r+1) exceeds twice the bound."""
    rank = data.draw(st.integers(1, len(hsv) - 1))
    result = cc.ranking_is_stable(
        xp.asarray(hsv, dtype=xp.float64), xp.asarray(bound, dtype=xp.float64), rank
    )
    assert bool(result) == (hsv[rank - 1] - hsv[rank] > 2 * bound)


@pytest.mark.parametrize(
    ("bound", "rank", "expected"),
    [(0.5, 1, True), (1.0, 1, False), (0.0, 2, False), (0.2, 3, True), (0.25, 3, False)],
)
def test_ranking_is_stable_examples(xp, bound, rank, expected):
    hsv = as_xp(xp, np.array([3.0, 1.0, 1.0, 0.5]))
    assert bool(cc.ranking_is_stable(hsv, as_xp(xp, np.array(bound)), rank)) is expected


def test_ranking_is_stable_is_batched(xp):
    hsv = as_xp(xp, np.array([[3.0, 1.0], [3.0, 2.5]]))
    result = cc.ranking_is_stable(hsv, as_xp(xp, np.array([0.5, 0.5])), 1)
    assert_in_namespace(result, xp)
    assert to_np(result).tolist() == [True, False]


@pytest.mark.parametrize("rank", [0, 4, -1, 1.5, True])
def test_ranking_is_stable_rejects_a_rank_out_of_range(xp, rank):
    with pytest.raises(ValueError, match="`rank`"):
        cc.ranking_is_stable(
            as_xp(xp, np.array([3.0, 2.0, 1.0, 0.5])), as_xp(xp, np.array(0.1)), rank
        )
