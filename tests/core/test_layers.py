"""compressm_core.layers: the framework-free part of reducing one SSM layer."""

import numpy as np
import pytest

import compressm_core as cc
from compressm_core import layers
from compressm_core.schedule import ReductionSchedule, ScheduleState


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
    result = layers.reduce_layer_system("layer0", system, rank, gramians=gramians)
    reduced, hsv, bound = result.system, result.hsv, result.error_bound
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


# --- the schedule's memory: factor products, events, budgets ---------------------------


def test_factor_product_of_one_state_is_its_hankel_singular_value():
    # x+ = a x + b u, y = c x: P = |b|^2 / (1 - |a|^2), Q = |c|^2 / (1 - |a|^2), sigma = sqrt(P Q)
    a, b, c = 0.6 + 0.3j, 2.0 - 1.0j, 0.5j
    system = cc.DiagonalStateSpace(np.array([a]), np.array([[b]]), np.array([[c]]))
    M = layers.factor_product(system)
    assert abs(abs(M[0, 0]) - abs(b) * abs(c) / (1 - abs(a) ** 2)) < 1e-12
    many = _lru_like()
    np.testing.assert_allclose(np.linalg.svd(layers.factor_product(many), compute_uv=False), cc.hankel_singular_values(many), rtol=1e-9)


def test_product_movements_and_memory():
    history = [np.diag([3.0, 1.0]), np.diag([3.0, 1.0, 0.1])]
    assert layers.product_movements(history, np.diag([3.2, 1.1])) == pytest.approx([0.2])  # other shapes skipped
    kept = layers.remember_product([np.eye(2) * k for k in range(3)], np.eye(2) * 9, 2)
    assert [m[0, 0] for m in kept] == [2.0, 9.0]
    assert [m.shape for m in layers.remember_product([np.eye(3)], np.eye(2), 2)] == [(2, 2)]
    memory = {"a": [np.array([[1 + 2j, 0], [0, 3j]])]}
    back = layers.products_from_json(layers.products_to_json(memory))
    np.testing.assert_array_equal(back["a"][0], memory["a"][0])


def _cut(step, name="a", bound=1.0, old=8, new=4):
    reduction = layers.LayerReduction(name, old, new, np.arange(old, 0, -1.0), bound)
    return layers.CompressionEvent(step, (reduction,), 0.9, 0.5)


def test_events_round_trip_and_the_combined_bound_counts_kept_cuts():
    import json

    cut1, cut2, cut3 = _cut(10, bound=0.5), _cut(20, bound=0.25, old=4, new=2), _cut(30, name="b", bound=None)
    undone = layers.Judgement(40, 20, cut2.reductions, 0.9, 0.7, True)
    events = [cut1, cut2, undone, cut3]
    back = [layers.event_from_dict(json.loads(json.dumps(layers.event_to_dict(e)))) for e in events]
    assert [type(e) for e in back] == [type(e) for e in events]
    assert (back[2].step, back[2].cut_step, back[2].metric_after, back[2].rolled_back) == (40, 20, 0.7, True)
    assert back[0].step == 10 and back[0].reductions[0].error_bound == 0.5
    np.testing.assert_array_equal(back[1].reductions[0].hsv, cut2.reductions[0].hsv)
    assert layers.combined_error_bounds(events) == {"a": 0.5}  # cut2 was rolled back; b has no bound
    assert [e.step for e in layers.kept_cuts(events)] == [10, 30]
    with pytest.raises(ValueError, match="kind"):
        layers.event_from_dict({**layers.event_to_dict(cut1), "kind": "other"})



def test_events_round_trip_the_poles_moved_in_and_read_older_events():
    import json

    moved = layers.LayerReduction("a", 8, 5, np.arange(8, 0, -1.0), None, poles_moved_in=2,
                                  moved_from_modulus=1.0027, moved_to_modulus=0.9725)
    for event in (layers.CompressionEvent(10, (moved,), 0.9, 0.5), layers.Judgement(20, 10, (moved,), 0.9, 0.8, False)):
        back = layers.event_from_dict(json.loads(json.dumps(layers.event_to_dict(event)))).reductions[0]
        assert (back.poles_moved_in, back.moved_from_modulus, back.moved_to_modulus) == (2, 1.0027, 0.9725)
    older = {"kind": "cut", "step": 10, "metric_before": 0.9, "metric_after": 0.5, "reductions": [
        {"name": "a", "old_dim": 8, "new_dim": 4, "hsv": [2.0, 1.0], "error_bound": 0.5, "kept": None}]}
    read = layers.event_from_dict(older).reductions[0]
    assert (read.new_dim, read.error_bound) == (4, 0.5)
    assert (read.poles_moved_in, read.moved_from_modulus, read.moved_to_modulus) == (0, None, None)

def test_plan_check_spends_the_run_budget_and_needs_the_certificate():
    run = ReductionSchedule(total_steps=100, interval=10, tau=0.25, budget="run", gate=1.0)
    ranks, state = layers.plan_check(run, ScheduleState(), {"a": [8.0, 4.0, 2.0, 1.0, 1.0]})
    assert ranks == {"a": 2} and state.original_energy == {"a": 16.0}
    certified = ReductionSchedule(total_steps=100, interval=10, tau=0.25, timing="certified", certify_over=1, gate=1.0)
    hsv = {"a": [8.0, 4.0, 2.0, 1.0, 1.0]}  # planned rank 2 (8 + 4 >= 0.75 * 16): gap 4 - 2 = 2
    assert layers.plan_check(certified, ScheduleState(), hsv, {"a": [0.99]})[0] == {"a": 2}
    assert layers.plan_check(certified, ScheduleState(), hsv, {"a": [1.0]})[0] == {}
    assert layers.plan_check(certified, ScheduleState(), hsv)[0] == {}  # no earlier check


def test_a_judgement_needs_a_pending_cut_and_a_state_needs_its_checkpoint():
    net = ReductionSchedule(total_steps=100, interval=10, tau=0.1, safety_net=True)
    with pytest.raises(ValueError, match="no cut awaits judgement"):
        layers.record_judgement(net, ScheduleState(), [], 20, 0.5)
    state, memory, event = layers.record_cut(net, ScheduleState(), {"a": [np.eye(2)]}, 10, _cut(10).reductions, {"a": 4}, 0.9, 0.5)
    assert memory == {} and state.discarded_energy == {"a": 1.0 + 2.0 + 3.0 + 4.0}  # HSVs 8..1, kept 4
    after, judgement = layers.record_judgement(net, state, [event], 20, 0.85)
    assert judgement.rolled_back and after.stopped and after.discarded_energy == {"a": 0.0}
    data = layers.compressor_state(state, [event], {})
    with pytest.raises(ValueError, match="checkpoint"):
        layers.read_compressor_state(data, has_checkpoint=False)
    assert layers.read_compressor_state(data, has_checkpoint=True)[0] == state
