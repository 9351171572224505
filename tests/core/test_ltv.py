"""Time-varying Gramians and energy-based state selection against brute-force transition products,
SciPy's LTI Gramians, and simulation of a selective (Mamba-style) layer."""

from __future__ import annotations

import numpy as np
import pytest
from namespaces import as_xp, assert_in_namespace, eager_only, to_np
from oracles import frequency_response, hinf_on_grid, scipy_discrete_lyapunov
from oracles import hsv_from_gramians as oracle_hsv
from strategies import complex_poles, gaussian, stable_matrix

import compressm_core as cc
from compressm_core import ltv

#: JAX compiles each operation anew for every shape (about 0.1 s each here), and the recursion
#: is many small operations: JAX runs one end-to-end test (`test_pipeline_on_jax`), the other
#: namespaces run them all.
pytestmark = eager_only

KINDS = [(False, True), (True, True), (False, False), (True, False)]  # (complex, diagonal)
KIND_IDS = ["real-diagonal", "complex-diagonal", "real-dense", "complex-dense"]


def random_sequence(rng, L, n, m, p, *, is_complex, diagonal, batch=()):
    """Random transitions (..., L, n) or (..., L, n, n), B (..., L, n, m), C (..., L, p, n)."""
    if diagonal:
        modulus = rng.uniform(0.2, 1.05, (*batch, L, n))  # some steps expand: no stability needed
        phase = np.exp(1j * rng.uniform(-np.pi, np.pi, modulus.shape)) if is_complex else 1.0
        transitions = modulus * phase
    else:
        transitions = 0.4 * gaussian(rng, (*batch, L, n, n), is_complex)
    B = gaussian(rng, (*batch, L, n, m), is_complex)
    C = gaussian(rng, (*batch, L, p, n), is_complex)
    return transitions, B, C


def dense_transitions(transitions, diagonal):
    return transitions[..., :, None] * np.eye(transitions.shape[-1]) if diagonal else transitions


def transition_matrix(A, k, j):
    """Phi(k, j) = A_{k-1} ... A_j (the identity for k == j) from A (L, n, n)."""
    Phi = np.eye(A.shape[-1], dtype=A.dtype)
    for i in range(j, k):
        Phi = A[i] @ Phi
    return Phi


def brute_force_gramians(A, B, C):
    """Lists P_k = sum_{j<k} Phi(k, j+1) B_j B_j^H Phi(k, j+1)^H (k = 0..L) and
    Q_k = sum_{j>=k} Phi(j, k)^H C_j^H C_j Phi(j, k) (k = 0..L) of one unbatched sequence."""
    L = A.shape[0]
    P = []
    for k in range(L + 1):
        terms = [transition_matrix(A, k, j + 1) @ B[j] for j in range(k)]
        P.append(sum((T @ T.conj().T for T in terms), np.zeros_like(A[0])))
    Q = []
    for k in range(L + 1):
        terms = [C[j] @ transition_matrix(A, j, k) for j in range(k, L)]
        Q.append(sum((T.conj().T @ T for T in terms), np.zeros_like(A[0])))
    return P, Q


def gramians_np(xp, transitions, B, C, **options):
    P, Q = ltv.time_varying_gramians(as_xp(xp, transitions), as_xp(xp, B), as_xp(xp, C), **options)
    assert_in_namespace(P, xp)
    assert_in_namespace(Q, xp)
    return to_np(P), to_np(Q)


# --- Gramians ------------------------------------------------------------------------------


@pytest.mark.parametrize(("is_complex", "diagonal"), KINDS, ids=KIND_IDS)
def test_gramians_match_brute_force_transition_products(xp, is_complex, diagonal):
    rng = np.random.default_rng(1)
    transitions, B, C = random_sequence(rng, 6, 4, 2, 3, is_complex=is_complex, diagonal=diagonal)
    P_list, Q_list = brute_force_gramians(dense_transitions(transitions, diagonal), B, C)
    P_end, Q_start = gramians_np(xp, transitions, B, C, diagonal=diagonal, average=False)
    P_bar, Q_bar = gramians_np(xp, transitions, B, C, diagonal=diagonal)
    np.testing.assert_allclose(P_end, P_list[-1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Q_start, Q_list[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(P_bar, np.mean(P_list[1:], axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Q_bar, np.mean(Q_list[:-1], axis=0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("is_complex", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("diagonal", [True, False], ids=["diagonal", "dense"])
def test_time_invariant_sequences_give_the_lti_gramians(xp, is_complex, diagonal):
    """Constant (A, B, C): P_L and Q_0 converge geometrically to SciPy's Gramians P and Q. As
    P - P_k = A^k P A^kH, the time average is P_bar = P - S / L up to O(rho^2L), with S the
    Gramian of (A, A P A^H): S = sum_{k>=1} A^k P A^kH; likewise for Q with A^H."""
    rng = np.random.default_rng(2)
    n, L = 5, 150
    if diagonal:
        poles = complex_poles(rng, n, (0.1, 0.8)) if is_complex else rng.uniform(-0.8, 0.8, n)
        A, transition = np.diag(poles), poles
    else:
        A = transition = stable_matrix(rng, n, is_complex, max_radius=0.8)
    B, C = gaussian(rng, (n, 2), is_complex), gaussian(rng, (3, n), is_complex)
    sequence = [np.broadcast_to(M, (L, *M.shape)) for M in (transition, B, C)]
    P = scipy_discrete_lyapunov(A, B @ B.conj().T)
    Q = scipy_discrete_lyapunov(A.conj().T, C.conj().T @ C)
    P_end, Q_start = gramians_np(xp, *sequence, diagonal=diagonal, average=False)
    P_bar, Q_bar = gramians_np(xp, *sequence, diagonal=diagonal)
    np.testing.assert_allclose(P_end, P, rtol=1e-10, atol=1e-10 * np.abs(P).max())
    np.testing.assert_allclose(Q_start, Q, rtol=1e-10, atol=1e-10 * np.abs(Q).max())
    S_P = scipy_discrete_lyapunov(A, A @ P @ A.conj().T)
    S_Q = scipy_discrete_lyapunov(A.conj().T, A.conj().T @ Q @ A)
    np.testing.assert_allclose(P_bar, P - S_P / L, atol=1e-10 * np.abs(P).max())
    np.testing.assert_allclose(Q_bar, Q - S_Q / L, atol=1e-10 * np.abs(Q).max())


@pytest.mark.parametrize("is_complex", [False, True], ids=["real", "complex"])
def test_dense_and_diagonal_transitions_agree(xp, is_complex):
    rng = np.random.default_rng(3)
    transitions, B, C = random_sequence(rng, 7, 5, 1, 1, is_complex=is_complex, diagonal=True)
    for average in (True, False):
        diagonal = gramians_np(xp, transitions, B, C, average=average)
        dense = gramians_np(
            xp, dense_transitions(transitions, True), B, C, diagonal=False, average=average
        )
        for X, Y in zip(diagonal, dense, strict=True):
            np.testing.assert_allclose(X, Y, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("diagonal", [True, False], ids=["diagonal", "dense"])
def test_real_transitions_with_complex_outputs_promote(xp, diagonal):
    """Real a_k and B_k with complex C_k (torch's matmul does not promote by itself)."""
    rng = np.random.default_rng(13)
    transitions, B, _ = random_sequence(rng, 5, 3, 1, 2, is_complex=False, diagonal=diagonal)
    C = gaussian(rng, (5, 2, 3), True)
    P_list, Q_list = brute_force_gramians(dense_transitions(transitions, diagonal), B, C)
    P_bar, Q_bar = gramians_np(xp, transitions, B, C, diagonal=diagonal)
    np.testing.assert_allclose(P_bar, np.mean(P_list[1:], axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Q_bar, np.mean(Q_list[:-1], axis=0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("is_complex", "diagonal"), KINDS[:3], ids=KIND_IDS[:3])
def test_batched_and_broadcast_inputs_equal_a_loop(xp, is_complex, diagonal):
    """Batch (sequences 2, channels 3) with C shared by the channels (batch (2, 1)), as in Mamba."""
    rng = np.random.default_rng(4)
    transitions, B, _ = random_sequence(
        rng, 5, 4, 1, 1, is_complex=is_complex, diagonal=diagonal, batch=(2, 3)
    )
    C = gaussian(rng, (2, 1, 5, 2, 4), is_complex)
    P, Q = gramians_np(xp, transitions, B, C, diagonal=diagonal)
    assert P.shape == Q.shape == (2, 3, 4, 4)
    for s, h in np.ndindex(2, 3):
        P_one, Q_one = gramians_np(xp, transitions[s, h], B[s, h], C[s, 0], diagonal=diagonal)
        np.testing.assert_allclose(P[s, h], P_one, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(Q[s, h], Q_one, rtol=1e-13, atol=1e-13)
    for axis in (0, -2):
        P_mean, Q_mean = gramians_np(
            xp, transitions, B, C, diagonal=diagonal, calibration_axis=axis
        )
        np.testing.assert_allclose(P_mean, P.mean(axis=0), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(Q_mean, Q.mean(axis=0), rtol=1e-13, atol=1e-13)


def test_gramians_keep_float32(xp):
    transitions, B, C = random_sequence(
        np.random.default_rng(5), 4, 3, 1, 1, is_complex=False, diagonal=True
    )
    arrays = [xp.asarray(M.astype(np.float32)) for M in (transitions, B, C)]
    P, Q = ltv.time_varying_gramians(*arrays)
    assert P.dtype == Q.dtype == xp.float32


@pytest.mark.namespaces("jax.numpy")
def test_pipeline_on_jax(xp):
    """Gramians (eager and under jax.jit) against the brute force, then HSVs, energy, selection."""
    import jax

    rng = np.random.default_rng(6)
    transitions, B, C = random_sequence(rng, 4, 3, 1, 2, is_complex=True, diagonal=True, batch=(2,))
    arrays = [xp.asarray(M) for M in (transitions, B, C)]
    P, Q = ltv.time_varying_gramians(*arrays, calibration_axis=0)
    assert_in_namespace(P, xp)
    oracles = [
        brute_force_gramians(dense_transitions(transitions[s], True), B[s], C[s]) for s in range(2)
    ]
    P_oracle = np.mean([np.mean(P_list[1:], axis=0) for P_list, _ in oracles], axis=0)
    Q_oracle = np.mean([np.mean(Q_list[:-1], axis=0) for _, Q_list in oracles], axis=0)
    jitted = jax.jit(ltv.time_varying_gramians, static_argnames="calibration_axis")
    for X, Y, oracle in zip(
        (P, Q), jitted(*arrays, calibration_axis=0), (P_oracle, Q_oracle), strict=True
    ):
        np.testing.assert_allclose(to_np(X), oracle, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(to_np(Y), oracle, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        to_np(ltv.hsv_from_gramians(P, Q)), oracle_hsv(P_oracle, Q_oracle), rtol=1e-10
    )
    energy = ltv.state_energy(P, Q, channel_axis=None)
    expected = (np.diagonal(P_oracle) * np.diagonal(Q_oracle)).real
    np.testing.assert_allclose(to_np(energy), expected, rtol=1e-12)
    np.testing.assert_array_equal(
        to_np(ltv.states_to_keep(energy, rank=2)), np.argsort(-expected)[:2]
    )


# --- Hankel singular values and state energy -------------------------------------------------


@pytest.mark.parametrize("is_complex", [False, True], ids=["real", "complex"])
def test_hsv_from_gramians_match_the_core_and_an_eigh_oracle(xp, is_complex):
    rng = np.random.default_rng(7)
    poles = complex_poles(rng, 4, (0.1, 0.9)) if is_complex else rng.uniform(-0.9, 0.9, 4)
    system = cc.DiagonalStateSpace(
        *(
            as_xp(xp, M)
            for M in (poles, gaussian(rng, (4, 2), is_complex), gaussian(rng, (2, 4), is_complex))
        )
    )
    hsv = ltv.hsv_from_gramians(*cc.gramians(system))
    assert_in_namespace(hsv, xp)
    np.testing.assert_allclose(to_np(hsv), to_np(cc.hankel_singular_values(system)), rtol=1e-10)
    P, Q = gramians_np(xp, *random_sequence(rng, 3, 6, 1, 1, is_complex=is_complex, diagonal=True))
    hsv = to_np(ltv.hsv_from_gramians(as_xp(xp, P), as_xp(xp, Q)))  # P_bar has rank 3 < 6
    np.testing.assert_allclose(hsv, oracle_hsv(P, Q), atol=1e-10 * hsv[0])
    np.testing.assert_allclose(np.sum(hsv**2), np.trace(P @ Q).real, rtol=1e-10)


def test_state_energy_sums_diagonal_products_over_channels(xp):
    rng = np.random.default_rng(8)
    P, Q = gramians_np(
        xp, *random_sequence(rng, 5, 4, 1, 1, is_complex=True, diagonal=True, batch=(2, 3))
    )
    products = np.einsum("...ii,...ii->...i", P, Q).real
    energy = ltv.state_energy(as_xp(xp, P), as_xp(xp, Q))
    assert_in_namespace(energy, xp)
    np.testing.assert_allclose(to_np(energy), products.sum(axis=1), rtol=1e-13)
    np.testing.assert_allclose(
        to_np(ltv.state_energy(as_xp(xp, P), as_xp(xp, Q), channel_axis=0)),
        products.sum(axis=0),
        rtol=1e-13,
    )
    np.testing.assert_allclose(
        to_np(ltv.state_energy(as_xp(xp, P), as_xp(xp, Q), channel_axis=None)), products, rtol=1e-13
    )


@pytest.mark.parametrize("is_complex", [False, True], ids=["real", "complex"])
def test_gramian_diagonals_are_the_brute_force_diagonals(xp, is_complex):
    """Batch (sequences 2, channels 3), C shared by the channels: each diagonal entry equals
    that of the brute-force transition products, for the averages and for P_L, Q_0."""
    rng = np.random.default_rng(11)
    transitions, B, _ = random_sequence(
        rng, 5, 4, 2, 1, is_complex=is_complex, diagonal=True, batch=(2, 3)
    )
    C = gaussian(rng, (2, 1, 5, 3, 4), is_complex)
    arrays = [as_xp(xp, M) for M in (transitions, B, C)]
    p, q = ltv.time_varying_gramian_diagonals(*arrays)
    p_end, q_start = ltv.time_varying_gramian_diagonals(*arrays, average=False)
    p_mean, q_mean = ltv.time_varying_gramian_diagonals(*arrays, calibration_axis=0)
    for value in (p, q, p_mean):
        assert_in_namespace(value, xp)
    assert to_np(p).dtype == np.float64
    for s, h in np.ndindex(2, 3):
        P_list, Q_list = brute_force_gramians(
            dense_transitions(transitions[s, h], True), B[s, h], C[s, 0]
        )
        diagonal = lambda Ms: np.real(np.diagonal(Ms, axis1=-2, axis2=-1))  # noqa: E731
        np.testing.assert_allclose(to_np(p)[s, h], diagonal(np.mean(P_list[1:], axis=0)), rtol=1e-12)
        np.testing.assert_allclose(to_np(q)[s, h], diagonal(np.mean(Q_list[:-1], axis=0)), rtol=1e-12)
        np.testing.assert_allclose(to_np(p_end)[s, h], diagonal(P_list[-1]), rtol=1e-12)
        np.testing.assert_allclose(to_np(q_start)[s, h], diagonal(Q_list[0]), rtol=1e-12)
    np.testing.assert_allclose(to_np(p_mean), to_np(p).mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(to_np(q_mean), to_np(q).mean(axis=0), rtol=1e-13)


def test_diagonal_state_energy_is_the_state_energy_of_the_gramians(xp):
    rng = np.random.default_rng(12)
    arrays = random_sequence(rng, 6, 5, 1, 1, is_complex=True, diagonal=True, batch=(3,))
    P, Q = (as_xp(xp, M) for M in gramians_np(xp, *arrays))
    p, q = ltv.time_varying_gramian_diagonals(*(as_xp(xp, M) for M in arrays))
    for axis in (-1, 0, None):
        np.testing.assert_allclose(
            to_np(ltv.diagonal_state_energy(p, q, channel_axis=axis)),
            to_np(ltv.state_energy(P, Q, channel_axis=axis)),
            rtol=1e-12,
        )


@pytest.mark.parametrize(
    ("p", "q", "message"),
    [
        (np.ones(3), np.ones(4), "`p` has 3 states but `q` has 4"),
        (np.ones(3, dtype=complex), np.ones(3), "`p` must be a real floating"),
        (np.ones(3), np.array([1.0, np.nan, 1.0]), "`q`"),
    ],
)
def test_bad_diagonals_are_rejected_naming_the_argument(xp, p, q, message):
    with pytest.raises(ValueError, match=message):
        ltv.diagonal_state_energy(as_xp(xp, p), as_xp(xp, q), channel_axis=None)


def test_energy_of_deleted_states_bounds_their_generalised_hsvs(xp):
    """Diagonal transitions decouple the states: the Gramians of the deleted states R are the
    submatrices P_RR, Q_RR, and sqrt(sum sigma_R^2) <= sum_{i in R} sqrt(P_ii Q_ii)."""
    rng = np.random.default_rng(9)
    P, Q = gramians_np(xp, *random_sequence(rng, 8, 6, 2, 2, is_complex=True, diagonal=True))
    energy = to_np(ltv.state_energy(as_xp(xp, P), as_xp(xp, Q), channel_axis=None))
    for _ in range(10):
        deleted = np.sort(rng.choice(6, size=rng.integers(1, 6), replace=False))
        block = np.ix_(deleted, deleted)
        hsv = to_np(ltv.hsv_from_gramians(as_xp(xp, P[block]), as_xp(xp, Q[block])))
        assert np.sqrt(np.sum(hsv**2)) <= np.sum(np.sqrt(energy[deleted])) * (1 + 1e-12)


def test_energy_bounds_the_hinf_error_of_deleting_lti_states(xp):
    """For a constant diagonal system, keeping the states K and deleting R gives
    ||G - G_K||_inf <= sum_{i in R} (1 + |a_i|) sqrt(P_ii Q_ii) <= 2 sum_{i in R} sqrt(s_i)."""
    rng = np.random.default_rng(10)
    n, L = 6, 200
    poles = complex_poles(rng, n, (0.1, 0.8))
    B, C = gaussian(rng, (n, 2), True), gaussian(rng, (2, n), True)
    sequence = (
        np.broadcast_to(poles, (L, n)),
        np.broadcast_to(B, (L, n, 2)),
        np.broadcast_to(C, (L, 2, n)),
    )
    P, Q = gramians_np(xp, *sequence, average=False)
    energy = to_np(ltv.state_energy(as_xp(xp, P), as_xp(xp, Q), channel_axis=None))
    for rank in range(1, n):
        kept = to_np(ltv.states_to_keep(as_xp(xp, energy), rank=rank))
        deleted = np.setdiff1d(np.arange(n), kept)
        full = frequency_response(np.diag(poles), B, C)
        reduced = frequency_response(np.diag(poles[kept]), B[kept], C[:, kept])
        error = hinf_on_grid(full - reduced)
        assert error <= np.sum((1 + np.abs(poles[deleted])) * np.sqrt(energy[deleted])) * (1 + 1e-9)


# --- states_to_keep --------------------------------------------------------------------------


def test_states_to_keep_by_rank_and_by_tau(xp):
    energy = np.array([[1.0, 6.0, 0.5, 2.5], [4.0, 3.0, 2.0, 1.0]])
    kept = ltv.states_to_keep(as_xp(xp, energy), rank=2)
    assert_in_namespace(kept, xp)
    np.testing.assert_array_equal(to_np(kept), [[1, 3], [0, 1]])
    np.testing.assert_array_equal(
        to_np(ltv.states_to_keep(as_xp(xp, energy[0]), tau=0.05)), [1, 3, 0]
    )
    np.testing.assert_array_equal(to_np(ltv.states_to_keep(as_xp(xp, energy[0]), tau=0.2)), [1, 3])
    # the batch keeps the largest rank any member needs: 3 for the second (4 + 3 + 2 >= 0.8 * 10)
    np.testing.assert_array_equal(
        to_np(ltv.states_to_keep(as_xp(xp, energy), tau=0.2)), [[1, 3, 0], [0, 1, 2]]
    )
    np.testing.assert_array_equal(
        to_np(ltv.states_to_keep(as_xp(xp, energy[0]), rank=4)), [1, 3, 0, 2]
    )


def test_tau_keeps_the_smallest_set_with_the_energy(xp):
    rng = np.random.default_rng(11)
    for _ in range(20):
        energy, tau = rng.exponential(size=9) ** 3, rng.uniform(0.01, 0.9)
        kept = to_np(ltv.states_to_keep(as_xp(xp, energy), tau=tau))
        assert energy[kept].sum() >= (1 - tau) * energy.sum() * (1 - 1e-12)
        best_smaller = np.sort(energy)[::-1][: len(kept) - 1].sum()
        assert best_smaller < (1 - tau) * energy.sum()


# --- behaviour: a selective (Mamba-style) layer --------------------------------------------


def softplus(x):
    return np.logaddexp(0.0, x)


def selective_layer(rng, H, n):
    """Weights of a toy Mamba layer: A (H, n) < 0, and maps from the input (H,) to Delta (H,),
    B (n,) and C (n,); the rows of the B and C maps have spread-out scales."""
    scales = np.exp(rng.normal(0.0, 1.0, (2, n, 1)))
    return {
        "A": -np.exp(rng.uniform(-2.0, 1.0, (H, n))),
        "W_delta": 0.5 * rng.standard_normal((H, H)),
        "bias_delta": rng.uniform(-2.0, 0.0, H),
        "W_B": scales[0] * rng.standard_normal((n, H)) / np.sqrt(H),
        "W_C": scales[1] * rng.standard_normal((n, H)) / np.sqrt(H),
    }


def selective_sequence(layer, u):
    """u (S, L, H) -> transitions (S, H, L, n), B (S, H, L, n, 1), C (S, 1, L, 1, n)."""
    delta = softplus(u @ layer["W_delta"].T + layer["bias_delta"])  # (S, L, H)
    transitions = np.exp(delta[..., None] * layer["A"])  # (S, L, H, n)
    B = delta[..., None] * (u @ layer["W_B"].T)[:, :, None, :]  # (S, L, H, n)
    C = u @ layer["W_C"].T  # (S, L, n)
    return (
        np.moveaxis(transitions, 2, 1),
        np.moveaxis(B, 2, 1)[..., None],
        C[:, None, :, None, :],
    )


def state_outputs(layer, u):
    """Each state's share of the output of h_t = a_t h_{t-1} + b_t u_t, y_t = C_t h_t per
    channel: (S, L, H, n); a set of states gives y = the sum of its shares (states decouple)."""
    transitions, B, C = selective_sequence(layer, u)
    S, H, L, n = transitions.shape
    h = np.zeros((S, H, n))
    shares = np.zeros((S, L, H, n))
    for t in range(L):
        h = transitions[:, :, t] * h + B[:, :, t, :, 0] * u[:, t, :, None]
        shares[:, t] = C[:, :, t, 0, :] * h
    return shares


def relative_output_error(shares, kept):
    full = shares.sum(axis=-1)
    error = full - shares[..., kept].sum(axis=-1)
    return np.sum(error**2) / np.sum(full**2)


def test_top_energy_states_reproduce_a_selective_layer(xp):
    """Rank states by energy on calibration inputs, then simulate on held-out inputs: the output
    error falls as more states are kept, and the top states beat random and bottom ones."""
    H, n, L, trials = 4, 10, 48, 4
    errors = {"top": np.zeros(n), "random": np.zeros(n), "bottom": np.zeros(n)}
    for trial in range(trials):
        rng = np.random.default_rng(100 + trial)
        layer = selective_layer(rng, H, n)
        calibration, held_out = rng.standard_normal((2, 6, L, H))
        sequence = (as_xp(xp, M) for M in selective_sequence(layer, calibration))
        P, Q = ltv.time_varying_gramians(*sequence, calibration_axis=0)
        order = to_np(ltv.states_to_keep(ltv.state_energy(P, Q), rank=n))
        shares = state_outputs(layer, held_out)
        for rank in range(1, n + 1):
            random_error = np.mean(
                [relative_output_error(shares, rng.permutation(n)[:rank]) for _ in range(5)]
            )
            errors["top"][rank - 1] += relative_output_error(shares, order[:rank]) / trials
            errors["random"][rank - 1] += random_error / trials
            errors["bottom"][rank - 1] += relative_output_error(shares, order[::-1][:rank]) / trials
    top, random, bottom = errors["top"], errors["random"], errors["bottom"]
    assert np.all(np.diff(top) <= 1e-12), errors
    assert top[-1] < 1e-24
    assert np.all(top[:-1] < random[:-1]) and np.all(random[:-1] < bottom[:-1]), errors
    assert top[n // 2 - 1] < 0.1 * random[n // 2 - 1], errors


# --- errors ----------------------------------------------------------------------------------


def bad_gramian_inputs():
    t, B, C = random_sequence(np.random.default_rng(0), 4, 3, 1, 2, is_complex=False, diagonal=True)
    nan = t.copy()
    nan[1, 2] = np.nan
    return [
        ((t[:, :2], B, C), {}, r"`B` must have shape \(..., L, n, m\) with L = 4, n = 2"),
        ((t, B[:3], C), {}, r"`B` must have shape .* got \(3, 3, 1\)"),
        ((t, B, C[..., :2]), {}, r"`C` must have shape \(..., L, p, n\) with L = 4, n = 3"),
        (
            (t[0], B, C),
            {},
            r"`transitions` must have shape \(..., L, n\) when diagonal, got \(3,\)",
        ),
        ((t, B[0], C), {}, r"`B` must have shape .* got \(3, 1\)"),
        ((t[:0], B[:0], C[:0]), {}, r"empty sequence"),
        (
            (t, B, C),
            {"diagonal": False},
            r"`transitions` must have shape \(..., L, n, n\) when dense",
        ),
        (
            (np.stack([t, t]), np.stack([B, B, B]), C),
            {},
            r"batch shapes of `transitions`, `B` and `C`",
        ),
        ((nan, B, C), {}, r"`transitions` holds 1 NaN or Inf"),
        (
            (t, np.ones((4, 3, 1), dtype=np.int64), C),
            {},
            r"`B` must be float32, float64, complex64 or complex128",
        ),
        (
            (t, B, C),
            {"calibration_axis": 0},
            r"`calibration_axis` must be an axis of the batch shape \(\), got 0",
        ),
        ((np.stack([t, t]), B, C), {"calibration_axis": 1}, r"`calibration_axis` .* \(2,\), got 1"),
    ]


@pytest.mark.parametrize(("arrays", "options", "message"), bad_gramian_inputs())
def test_bad_sequences_are_rejected_naming_the_argument(xp, arrays, options, message):
    with pytest.raises(ValueError, match=message):
        ltv.time_varying_gramians(*(as_xp(xp, M) for M in arrays), **options)


def test_bad_gramians_are_rejected_naming_the_argument(xp):
    P = as_xp(xp, np.eye(3))
    with pytest.raises(ValueError, match="`Q` is 2x2"):
        ltv.hsv_from_gramians(P, as_xp(xp, np.eye(2)))
    with pytest.raises(ValueError, match="`P` must be a"):
        ltv.state_energy(as_xp(xp, np.ones((3, 2))), P)
    with pytest.raises(ValueError, match="`Q` holds 1 NaN"):
        ltv.hsv_from_gramians(P, as_xp(xp, np.diag([1.0, np.inf, 1.0])))
    with pytest.raises(
        ValueError, match=r"`channel_axis` must be an axis of the batch shape \(\), got -1"
    ):
        ltv.state_energy(P, P)
    with pytest.raises(ValueError, match=r"batch shapes of `P` \(2,\) and `Q` \(3,\)"):
        ltv.state_energy(as_xp(xp, np.ones((2, 3, 3))), as_xp(xp, np.ones((3, 3, 3))))


@pytest.mark.parametrize(
    ("energy", "options", "message"),
    [
        ([3.0, 1.0], {"rank": 0}, r"`rank` must be an integer in \[1, 2\] for 2 states, got 0"),
        ([3.0, 1.0], {"rank": 3}, r"`rank` .* got 3"),
        ([3.0, 1.0], {"rank": 1.0}, r"`rank` .* got 1.0"),
        ([3.0, 1.0], {"rank": True}, r"`rank` .* got True"),
        ([3.0, 1.0], {"tau": 0.0}, r"`tau` must lie in \(0, 1\), got 0.0"),
        ([3.0, 1.0], {"tau": 1.0}, r"`tau` must lie in \(0, 1\), got 1.0"),
        ([3.0, 1.0], {"rank": 1, "tau": 0.1}, r"exactly one of `rank` or `tau`"),
        ([3.0, 1.0], {}, r"exactly one of `rank` or `tau`"),
        ([3.0, -1.0], {"rank": 1}, r"`energy` must be non-negative, got a minimum of -1"),
        ([3.0, np.nan], {"rank": 1}, r"`energy` holds 1 NaN"),
        ([3, 1], {"rank": 1}, r"`energy` must have a real floating dtype"),
        ([3.0 + 0j, 1.0], {"rank": 1}, r"`energy` must have a real floating dtype"),
    ],
)
def test_bad_selections_are_rejected_naming_the_argument(xp, energy, options, message):
    with pytest.raises(ValueError, match=message):
        ltv.states_to_keep(as_xp(xp, np.array(energy)), **options)


def test_inputs_are_not_modified(xp):
    sequence = random_sequence(
        np.random.default_rng(12), 5, 3, 1, 1, is_complex=True, diagonal=False
    )
    arrays = [as_xp(xp, M) for M in sequence]
    P, Q = ltv.time_varying_gramians(*arrays, diagonal=False)
    P_copy, Q_copy = to_np(P), to_np(Q)
    energy = ltv.state_energy(P, Q, channel_axis=None)
    energy_copy = to_np(energy)
    ltv.hsv_from_gramians(P, Q)
    ltv.states_to_keep(energy, tau=0.1)
    for array, original in zip(arrays, sequence, strict=True):
        np.testing.assert_array_equal(to_np(array), original)
    np.testing.assert_array_equal(to_np(P), P_copy)
    np.testing.assert_array_equal(to_np(Q), Q_copy)
    np.testing.assert_array_equal(to_np(energy), energy_copy)
