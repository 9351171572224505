"""Hankel singular values and balanced truncation against SLICOT, python-control, the bilinear
transform and the H-infinity error bound, on every namespace."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from namespaces import (
    as_xp,
    assert_in_namespace,
    eager_only,
    numpy_and_torch,
    numpy_system,
    state_space,
    to_np,
)
from oracles import (
    continuous_hsv,
    frequency_response,
    gramians_any,
    hinf_on_grid,
    hsv_any,
    realified_system,
    slycot_hsv,
    slycot_reduce,
    tustin,
)
from strategies import (
    CORE,
    CORE_SLOW,
    Dense,
    dense_systems,
    fixed_dense_systems,
    fixed_diagonal_system,
    make_dense,
    systems,
)

import compressm_core as cc

METHODS = ["square_root", "balancing_free"]


def assert_hsv_close(hsv, oracle):
    """Equal up to the oracle's own accuracy: small HSVs carry errors ~ eps ||P||^1/2 ||Q||^1/2."""
    np.testing.assert_allclose(hsv, oracle, rtol=1e-8, atol=1e-9 * oracle[0])


def response_error(system: Dense, reduced: Dense) -> float:
    """sigma_max(G - G_r) maximised over 2000 points of the unit circle (D cancels)."""
    difference = frequency_response(*system[:3]) - frequency_response(*reduced[:3])
    return hinf_on_grid(difference)


# --- Hankel singular values ----------------------------------------------------------------


def check_hsv_match_oracles(xp, system: Dense):
    hsv = cc.hankel_singular_values(state_space(xp, *system))
    assert_in_namespace(hsv, xp)
    assert hsv.shape == system.A.shape[:-1]
    hsv = to_np(hsv)
    assert np.all(np.diff(hsv, axis=-1) <= 0), "not descending"
    for index, (A, B, C, _) in system.members():
        assert_hsv_close(hsv[index], hsv_any(A, B, C))
        if not any(np.iscomplexobj(M) for M in (A, B, C)):
            assert_hsv_close(hsv[index], slycot_hsv(A, B, C))


@eager_only
@given(system=systems())
@CORE
def test_hsv_match_slycot_and_python_control(xp, system):
    check_hsv_match_oracles(xp, system)


def test_hsv_match_slycot_and_python_control_on_fixed_systems(xp):
    for system in [*fixed_dense_systems(), fixed_diagonal_system().dense()]:
        check_hsv_match_oracles(xp, system)


def test_diagonal_system_hsv_match_realified_oracle(xp):
    system = fixed_diagonal_system()
    hsv = to_np(cc.hankel_singular_values(cc.DiagonalStateSpace(*(as_xp(xp, M) for M in system))))
    for index, (A, B, C, _) in system.dense().members():
        doubled = slycot_hsv(*realified_system(A, B, C))
        assert_hsv_close(hsv[index], doubled[::2])
        assert_hsv_close(hsv[index], doubled[1::2])


@eager_only
@given(system=systems(batch=False))
@CORE
def test_hsv_equal_those_of_the_bilinear_transform(xp, system):
    """The Cayley (Tustin) map to continuous time keeps the Gramians, hence the HSVs."""
    hsv = to_np(cc.hankel_singular_values(state_space(xp, *system)))
    D = np.zeros((system.C.shape[0], system.B.shape[1]))
    Ac, Bc, Cc, _ = tustin(system.A, system.B, system.C, D)
    np.testing.assert_allclose(hsv, continuous_hsv(Ac, Bc, Cc), rtol=1e-7, atol=1e-9 * hsv[0])


@pytest.mark.parametrize("factor", ["cholesky", "eigh"])
def test_hsv_do_not_depend_on_the_factor_method(xp, factor):
    system = fixed_diagonal_system()
    hsv = to_np(
        cc.hankel_singular_values(
            cc.DiagonalStateSpace(*(as_xp(xp, M) for M in system)), factor=factor
        )
    )
    for index, (A, B, C, _) in system.dense().members():
        assert_hsv_close(hsv[index], hsv_any(A, B, C))


@pytest.mark.parametrize("method", ["auto", "eigh", "svd"])
def test_hsv_do_not_depend_on_the_spectrum_method(xp, method):
    """sqrt(eigvalsh(Lp^H Q Lp)) and svdvals(Lq^H Lp) against python-control (SLICOT Gramians)."""
    system = fixed_diagonal_system()
    dsys = cc.DiagonalStateSpace(*(as_xp(xp, M) for M in system))
    hsv = to_np(cc.hankel_singular_values(dsys, method=method))
    for index, (A, B, C, _) in system.dense().members():
        assert_hsv_close(hsv[index], hsv_any(A, B, C))


def test_unknown_spectrum_method_is_rejected(xp):
    dsys = cc.DiagonalStateSpace(*(as_xp(xp, M) for M in fixed_diagonal_system()))
    with pytest.raises(ValueError, match="`method` 'qr' is unknown"):
        cc.hankel_singular_values(dsys, method="qr")


@numpy_and_torch
def test_moderate_order_matches_slycot(xp):
    """n = 30: HSVs and the reduced model (as a transfer function) agree with SLICOT ab09ad."""
    system = make_dense(np.random.default_rng(30), 30, 3, 2)
    A, B, C, _ = system
    reduction = cc.balanced_truncation(state_space(xp, *system), rank=10)
    assert_hsv_close(to_np(reduction.hsv), slycot_hsv(A, B, C))
    ours = frequency_response(*numpy_system(reduction.system)[:3])
    theirs = frequency_response(*slycot_reduce(A, B, C, 10))
    assert np.abs(ours - theirs).max() < 1e-8 * np.abs(theirs).max()


# --- balanced truncation ---------------------------------------------------------------------


def separated_ranks(hsv) -> list[int]:
    """Ranks r whose cut sigma_r > sigma_(r+1) is clear enough for a unique reduced model."""
    return [r for r in range(1, len(hsv)) if hsv[r - 1] - hsv[r] > 1e-3 * hsv[0]]


@eager_only
@given(system=dense_systems(is_complex=False, batch=False, min_n=2), data=st.data())
@CORE
def test_reduced_model_matches_slycot(xp, system, data):
    A, B, C, _ = system
    ranks = separated_ranks(slycot_hsv(A, B, C))
    assume(ranks)
    rank = data.draw(st.sampled_from(ranks))
    reduction = cc.balanced_truncation(state_space(xp, *system), rank=rank)
    ours = frequency_response(*numpy_system(reduction.system)[:3])
    theirs = frequency_response(*slycot_reduce(A, B, C, rank))
    assert np.abs(ours - theirs).max() < 1e-7 * np.abs(theirs).max()


def check_error_within_bound(xp, system: Dense, method, rank=None, keep=None):
    """||G - G_r||_Hinf (on a grid) <= error_bound == 2 * (sum of the discarded oracle HSVs)."""
    reduction = cc.balanced_truncation(
        state_space(xp, *system), rank=rank, keep=keep, method=method
    )
    assert_in_namespace(reduction.error_bound, xp)
    bound = to_np(reduction.error_bound)
    reduced = numpy_system(reduction.system)
    for index, member in system.members():
        oracle = hsv_any(*member[:3])
        discarded = np.delete(oracle, list(reduction.kept))
        np.testing.assert_allclose(
            bound[index], 2 * discarded.sum(), rtol=1e-8, atol=1e-9 * len(oracle) * oracle[0]
        )
        reduced_member = Dense(*(None if M is None else M[index] for M in reduced))
        assert (
            response_error(member, reduced_member) <= bound[index] * (1 + 1e-8) + 1e-9 * oracle[0]
        )


@eager_only
@pytest.mark.parametrize("method", METHODS)
@given(system=systems(min_n=2), data=st.data())
@CORE
def test_error_within_bound(xp, method, system, data):
    rank = data.draw(st.integers(1, system.A.shape[-1] - 1))
    check_error_within_bound(xp, system, method, rank=rank)


@pytest.mark.parametrize("method", METHODS)
def test_error_within_bound_on_fixed_systems(xp, method):
    for system in [*fixed_dense_systems(), fixed_diagonal_system().dense()]:
        check_error_within_bound(xp, system, method, rank=2)


def well_determined(system: Dense) -> int:
    """How many leading HSVs exceed 1e-6 sigma_1 in every member: the smaller ones may be
    numerically zero (single-input Gramians are very ill-conditioned), and keeping a zero HSV
    is an error."""
    return min(
        int(np.sum(hsv > 1e-6 * hsv[0]))
        for hsv in (hsv_any(*member[:3]) for _, member in system.members())
    )


@eager_only
@given(system=systems(min_n=2), data=st.data())
@CORE
def test_error_within_bound_for_any_kept_subset(xp, system, data):
    n, candidates = system.A.shape[-1], well_determined(system)
    keep = data.draw(
        st.sets(st.integers(0, candidates - 1), min_size=1, max_size=min(candidates, n - 1))
    )
    check_error_within_bound(xp, system, "square_root", keep=sorted(keep))


def test_keeping_the_smallest_states(xp):
    """The ablation of METHOD.md: keep the two smallest HSVs; the bound still holds."""
    system = fixed_dense_systems()[1]
    reduction = cc.balanced_truncation(state_space(xp, *system), keep=[4, 3])
    assert reduction.kept == (3, 4)
    assert reduction.rank == 2
    check_error_within_bound(xp, system, "square_root", keep=[3, 4])


@eager_only
@given(system=systems(batch=False, min_n=2), data=st.data())
@CORE
def test_both_methods_give_the_same_transfer_function(xp, system, data):
    ranks = separated_ranks(hsv_any(*system[:3]))
    assume(ranks)
    rank = data.draw(st.sampled_from(ranks))
    G_square_root, G_balancing_free = (
        frequency_response(
            *numpy_system(
                cc.balanced_truncation(state_space(xp, *system), rank=rank, method=method).system
            )[:3]
        )
        for method in METHODS
    )
    assert np.abs(G_square_root - G_balancing_free).max() < 1e-7 * np.abs(G_square_root).max()


@pytest.mark.parametrize("method", METHODS)
def test_truncation_is_a_projection(xp, method):
    """Tinv @ T = I for both methods, of shapes (..., r, n) and (..., n, r)."""
    reduction = cc.balanced_truncation(
        state_space(xp, *fixed_dense_systems()[1]), rank=3, method=method
    )
    T, Tinv = to_np(reduction.T), to_np(reduction.Tinv)
    assert T.shape == (2, 5, 3)
    assert Tinv.shape == (2, 3, 5)
    np.testing.assert_allclose(Tinv @ T, np.broadcast_to(np.eye(3), (2, 3, 3)), atol=1e-10)


def check_balanced(reduction, system: Dense):
    """Square-root method: Tinv P Tinv^H = T^H Q T = diag(kept HSVs), with python-control's P, Q."""
    T, Tinv, hsv = to_np(reduction.T), to_np(reduction.Tinv), to_np(reduction.hsv)
    for index, (A, B, C, _) in system.members():
        P, Q = gramians_any(A, B, C)
        expected = np.diag(hsv[index][list(reduction.kept)])
        scale = hsv[index][0]
        np.testing.assert_allclose(
            Tinv[index] @ P @ Tinv[index].conj().T, expected, atol=1e-8 * scale
        )
        np.testing.assert_allclose(T[index].conj().T @ Q @ T[index], expected, atol=1e-8 * scale)


def test_square_root_transformation_balances_the_gramians(xp):
    for system in [*fixed_dense_systems(), fixed_diagonal_system().dense()]:
        check_balanced(cc.balanced_truncation(state_space(xp, *system), rank=3), system)


@eager_only
@given(system=systems(min_n=2))
@CORE_SLOW
def test_square_root_transformation_balances_the_gramians_of_random_systems(xp, system):
    check_balanced(
        cc.balanced_truncation(state_space(xp, *system), keep=range(system.A.shape[-1])), system
    )


def test_reduction_reports_all_hsv_and_the_kept_states(xp):
    system = state_space(xp, *fixed_dense_systems()[0])
    reduction = cc.balanced_truncation(system, rank=2)
    assert reduction.kept == (0, 1)
    assert reduction.system.n == 2
    assert_in_namespace(reduction.system.A, xp)
    np.testing.assert_allclose(
        to_np(reduction.hsv), to_np(cc.hankel_singular_values(system)), rtol=1e-12
    )


# --- choosing the rank by energy ---------------------------------------------------------------


def brute_force_rank(hsv, tau, energy) -> int:
    """The smallest r whose first r weights hold (1 - tau) of the total, by a plain loop."""
    weights = [s if energy == "sum" else s * s for s in hsv]
    total = 0.0
    for w in weights:
        total += w
    kept = 0.0
    for r, w in enumerate(weights, start=1):
        kept += w
        if kept >= (1 - tau) * total:
            return r
    raise AssertionError("unreachable: r = n keeps everything")


descending_hsv = st.lists(st.floats(1e-6, 1e3), min_size=1, max_size=12).map(
    lambda v: sorted(v, reverse=True)
)
taus = st.floats(1e-6, 1 - 1e-6)


@eager_only
@pytest.mark.parametrize("energy", ["sum", "squared"])
@given(hsv=descending_hsv, tau=taus)
@CORE
def test_rank_for_energy_matches_brute_force(xp, energy, hsv, tau):
    rank = cc.rank_for_energy(xp.asarray(hsv, dtype=xp.float64), tau, energy=energy)
    assert int(rank) == brute_force_rank(hsv, tau, energy)


def test_rank_for_energy_is_batched(xp):
    hsv = np.array([[4.0, 3.0, 2.0, 1.0], [9.0, 0.5, 0.3, 0.2]])
    ranks = cc.rank_for_energy(as_xp(xp, hsv), 0.2)
    assert_in_namespace(ranks, xp)
    assert to_np(ranks).tolist() == [brute_force_rank(h, 0.2, "sum") for h in hsv.tolist()]


@pytest.mark.parametrize("energy", ["sum", "squared"])
def test_tau_chooses_the_rank_for_energy(xp, energy):
    """For a batch, the largest rank over the members."""
    system = state_space(xp, *fixed_dense_systems()[1])
    hsv = to_np(cc.hankel_singular_values(system))
    reduction = cc.balanced_truncation(system, tau=0.1, energy=energy)
    assert reduction.rank == max(brute_force_rank(h, 0.1, energy) for h in hsv.tolist())


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"rank": 0}, "`rank`"),
        ({"rank": 5}, "`rank`"),
        ({"rank": 2.0}, "`rank`"),
        ({"rank": True}, "`rank`"),
        ({"tau": 0.0}, "`tau`"),
        ({"tau": 1.0}, "`tau`"),
        ({"tau": 1.5}, "`tau`"),
        ({"rank": 2, "tau": 0.1}, "exactly one"),
        ({}, "exactly one"),
        ({"keep": []}, "`keep`"),
        ({"keep": [1, 1]}, "`keep`"),
        ({"keep": [5]}, "`keep`"),
        ({"rank": 2, "method": "schur"}, "`method`"),
        ({"tau": 0.1, "energy": "cubed"}, "`energy`"),
    ],
)
def test_bad_options_are_rejected_naming_the_argument(xp, options, name):
    system = state_space(xp, *fixed_dense_systems()[0])
    with pytest.raises(ValueError, match=name):
        cc.balanced_truncation(system, **options)


@pytest.mark.parametrize("tau", [0.0, 1.0, 1.5, -0.1])
def test_rank_for_energy_rejects_tau_outside_the_open_unit_interval(xp, tau):
    with pytest.raises(ValueError, match="`tau`"):
        cc.rank_for_energy(as_xp(xp, np.array([2.0, 1.0])), tau)


@eager_only
def test_inputs_are_not_modified(xp):
    system = fixed_dense_systems()[2]
    arrays = [as_xp(xp, M) for M in system]
    sys = cc.StateSpace(*arrays)
    cc.hankel_singular_values(sys)
    for method in METHODS:
        cc.balanced_truncation(sys, rank=2, method=method)
    cc.weyl_bound(sys, sys)
    cc.to_diagonal(sys)
    for array, original in zip(arrays, system, strict=True):
        np.testing.assert_array_equal(to_np(array), original)
