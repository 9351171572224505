"""compressm_core.layers: the framework-free part of reducing one SSM layer."""

import numpy as np
import pytest

import compressm_core as cc
from compressm_core import layers
from compressm_core.schedule import ReductionSchedule


def _lru_like(n=10, seed=0):
    rng = np.random.default_rng(seed)
    poles = rng.uniform(0.3, 0.95, n) * np.exp(1j * rng.uniform(0.1, 3.0, n))
    B = rng.standard_normal((n, 3)) + 1j * rng.standard_normal((n, 3))
    C = rng.standard_normal((3, n)) + 1j * rng.standard_normal((3, n))
    return cc.DiagonalStateSpace(poles, B, C, np.diag(rng.standard_normal(3)))


def _response(dsys, z, real_output):
    """Frequency response of the map the layer computes, from its poles, B, C (independent of the core)."""
    G = dsys.C @ np.diag(1 / (z - dsys.poles)) @ dsys.B
    if real_output:  # u -> Re(C x) for real u: (G(z) + conj(G(conj(z)))) / 2
        G_conj = dsys.C @ np.diag(1 / (np.conj(z) - dsys.poles)) @ dsys.B
        G = (G + np.conj(G_conj)) / 2
    return G


def test_kept_states_for_each_selection():
    rng = np.random.default_rng(0)
    assert layers.kept_states(3, 8, "largest", rng) == [0, 1, 2]
    assert layers.kept_states(3, 8, "smallest", rng) == [5, 6, 7]
    chosen = layers.kept_states(3, 8, "random", rng)
    assert len(set(chosen)) == 3 and chosen == sorted(chosen) and all(0 <= i < 8 for i in chosen)
    with pytest.raises(ValueError, match="`selection` 'best'"):
        layers.kept_states(3, 8, "best", rng)


@pytest.mark.parametrize("gramians", ["complex", "real_output"])
def test_reduced_layer_system_respects_the_error_bound(gramians):
    system = _lru_like()
    real_output = gramians == "real_output"
    rank = 12 if real_output else 6
    reduced, hsv, bound = layers.reduce_layer_system("layer0", system, rank, gramians=gramians)
    assert hsv.shape == ((20,) if real_output else (10,))
    assert np.isclose(bound, 2 * np.sum(hsv[rank:]))
    assert rank // 2 <= reduced.n <= rank if real_output else reduced.n == rank
    for w in np.linspace(0.01, np.pi, 64):
        z = np.exp(1j * w)
        error = np.linalg.norm(_response(system, z, real_output) - _response(reduced, z, real_output), 2)
        assert error <= bound + 1e-9


def test_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"layer blocks.3.ssm: `rank` must be an integer in \[1, 9\]"):
        layers.reduce_layer_system("blocks.3.ssm", _lru_like(), 10)
    with pytest.raises(ValueError, match="needs layers that output Re"):
        layers.analysed_system(_lru_like(), "real_output", real_output=False)
    with pytest.raises(ValueError, match="`gramians` 'dense'"):
        layers.analysed_system(_lru_like(), "dense", real_output=True)


def test_planned_ranks_follow_the_schedule():
    schedule = ReductionSchedule(total_steps=100, interval=5, tau=0.1)
    hsvs = {"a": [6.0, 3.0, 0.5, 0.3, 0.2], "b": [1.0, 1.0, 1.0, 1.0, 1.0]}
    assert layers.planned_ranks(schedule, hsvs) == {"a": 2}


def test_energy_spectrum_is_the_descending_root_of_the_energies():
    np.testing.assert_allclose(layers.energy_spectrum([4.0, 0.25, 9.0, 1.0]), [3.0, 2.0, 1.0, 0.5])


def test_selected_states_follow_the_energy_order_for_each_selection():
    energy = [0.5, 7.0, 0.1, 3.0, 1.0]  # descending order of indices: 1, 3, 4, 0, 2
    assert layers.selected_states("x", energy, 2) == [1, 3]
    assert layers.selected_states("x", energy, 2, selection="smallest") == [0, 2]
    random = layers.selected_states("x", energy, 3, selection="random", rng=np.random.default_rng(1))
    assert len(set(random)) == 3 and set(random) <= set(range(5))
    with pytest.raises(ValueError, match=r"layer x: `rank` must be an integer in \[1, 4\], got 5"):
        layers.selected_states("x", energy, 5)


def test_ranks_for_tolerance_keep_the_energy_and_skip_layers_it_would_not_shrink():
    hsvs = {"a": np.array([4.0, 2.0, 1.0, 1.0]), "b": np.array([1.0, 1e-9])}
    # a: sums 4, 6, 7, 8 of 8; keeping 1 - 0.2 = 6.4 needs 3 states. b: 1 of 1 + 1e-9 needs 1.
    assert layers.ranks_for_tolerance(hsvs, 0.2, "sum") == {"a": 3, "b": 1}
    # squared: 16, 20, 21, 22 of 22; 0.8 * 22 = 17.6 needs 2 states.
    assert layers.ranks_for_tolerance({"a": hsvs["a"]}, 0.2, "squared") == {"a": 2}
    assert layers.ranks_for_tolerance({"a": np.ones(3)}, 0.01, "sum") == {}


def test_layer_name_and_calibration_checks_name_what_is_wrong():
    layers.check_layer_names({"x": 2}, ["x", "y"])
    with pytest.raises(ValueError, match=r"unknown layers \['z'\]; the SSM layers are \['x', 'y'\]"):
        layers.check_layer_names({"z": 2}, ["y", "x"])
    layers.require_calibration([], None)
    layers.require_calibration(["s"], np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"selective layers \['s'\].*`calibration`"):
        layers.require_calibration(["s"], None)
