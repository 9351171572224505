"""Hypothesis properties of DESIGN.md: HSVs invariant under similarity, Lyapunov residuals small,
balanced realisations with equal diagonal Gramians (NumPy and PyTorch)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from namespaces import as_xp, numpy_and_torch, state_space, to_np
from strategies import CORE, Dense, seeds, systems, well_conditioned

import compressm_core as cc


def similar(system: Dense, T) -> Dense:
    """(T^-1 A T, T^-1 B, C T, D): the same transfer function in other coordinates."""
    Tinv = np.linalg.inv(T)
    return Dense(Tinv @ system.A @ T, Tinv @ system.B, system.C @ T, system.D)


@numpy_and_torch
@given(system=systems(), seed=seeds)
@CORE
def test_hsv_are_invariant_under_similarity(xp, system, seed):
    n, is_complex = system.A.shape[-1], np.iscomplexobj(system.A)
    T = well_conditioned(np.random.default_rng(seed), n, is_complex)
    hsv = to_np(cc.hankel_singular_values(state_space(xp, *system)))
    hsv_similar = to_np(cc.hankel_singular_values(state_space(xp, *similar(system, T))))
    np.testing.assert_allclose(hsv_similar, hsv, rtol=1e-8, atol=1e-10 * hsv.max())


@numpy_and_torch
@given(system=systems())
@CORE
def test_gramians_have_small_lyapunov_residuals(xp, system):
    A, B, C = (as_xp(xp, M) for M in system[:3])
    P, Q = cc.gramians(cc.StateSpace(A, B, C))
    B_np, C_np = system.B, system.C
    BBh = as_xp(xp, B_np @ B_np.conj().swapaxes(-1, -2))
    ChC = as_xp(xp, C_np.conj().swapaxes(-1, -2) @ C_np)
    Ah = as_xp(xp, system.A.conj().swapaxes(-1, -2))
    assert np.all(to_np(cc.lyapunov_residual(A, P, BBh)) < 1e-10)
    assert np.all(to_np(cc.lyapunov_residual(Ah, Q, ChC)) < 1e-10)


@numpy_and_torch
@given(system=systems())
@CORE
def test_balanced_realisation_has_equal_diagonal_gramians(xp, system):
    """Keeping every balanced state gives the balanced realisation: P = Q = diag(hsv)."""
    n = system.A.shape[-1]
    reduction = cc.balanced_truncation(state_space(xp, *system), keep=range(n))
    P, Q = (to_np(X) for X in cc.gramians(reduction.system))
    hsv = to_np(reduction.hsv)
    expected = hsv[..., :, None] * np.eye(n)
    scale = hsv.max()
    np.testing.assert_allclose(P, expected, atol=1e-8 * scale)
    np.testing.assert_allclose(Q, expected, atol=1e-8 * scale)
