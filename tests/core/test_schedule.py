"""Tests of the reduction schedule policy against hand-worked examples and simple formulas."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compressm_core.schedule import (
    PendingJudgement,
    ReductionSchedule,
    ScheduleState,
    after_cut,
    after_judgement,
    certificate_holds,
    check_steps,
    discarded_energy,
    is_check_step,
    is_judgement_step,
    layer_energy,
    left_chance,
    plan_ranks,
    rank_for_energy_fraction,
    record_original_energy,
    remaining_budget,
    should_roll_back,
)


def tolerance(**overrides) -> ReductionSchedule:
    """A tolerance-mode schedule over 1000 steps with checks at 10, 20, ..., 100."""
    return ReductionSchedule(**{"total_steps": 1000, "interval": 10, "tau": 0.1, **overrides})


def fixed(**overrides) -> ReductionSchedule:
    """A fixed-mode schedule over 1000 steps with checks at 10, 20, ..., 100."""
    return ReductionSchedule(**{"total_steps": 1000, "interval": 10, "mode": "fixed", **overrides})


# --- configuration -------------------------------------------------------------------


def test_defaults_follow_the_paper():
    schedule = ReductionSchedule(total_steps=200_000, tau=0.01)
    assert schedule.interval is None and schedule.check_interval == 5000  # 4 attempts in 10%
    assert schedule.reduce_until == 0.1
    assert schedule.first_check_step == 5000
    assert schedule.last_check_step == 20_000
    assert list(check_steps(schedule)) == [5000, 10_000, 15_000, 20_000]
    assert schedule.mode == "tolerance"
    assert schedule.energy == "sum"
    assert schedule.budget == "per_check" and schedule.timing == "steps"
    assert schedule.gate == 0.95
    assert schedule.min_rank == 1
    assert schedule.net is False  # no rollback in tolerance mode (the authors' code)
    assert schedule.rollback_tolerance == 0.02
    assert schedule.after_rollback == "stop"
    assert schedule.metric_mode == "max"
    assert schedule.selection == "largest"


def test_the_default_interval_scales_with_the_run():
    # a quarter of the window floor(0.1 * steps), at least one step
    assert list(check_steps(ReductionSchedule(total_steps=200, tau=0.1))) == [5, 10, 15, 20]
    assert list(check_steps(ReductionSchedule(total_steps=2000, tau=0.1))) == [50, 100, 150, 200]
    assert list(check_steps(ReductionSchedule(total_steps=30, tau=0.1))) == [1, 2, 3]
    assert list(check_steps(ReductionSchedule(total_steps=10, tau=0.1))) == [1]
    with pytest.raises(ValueError, match=r"`start`.*= 0, got 1"):
        ReductionSchedule(total_steps=9, tau=0.1)


def test_the_safety_net_is_on_in_pragmatic_mode_only_by_default():
    assert ReductionSchedule(total_steps=100, mode="pragmatic").net
    assert not ReductionSchedule(total_steps=100, mode="fixed").net
    assert ReductionSchedule(total_steps=100, tau=0.1, safety_net=True).net
    assert ReductionSchedule(total_steps=100, tau=0.1, interval=3).recovery == 3
    assert ReductionSchedule(total_steps=100, tau=0.1, recovery_steps=7).recovery == 7
    with pytest.raises(ValueError, match="`safety_net` must be on in mode 'pragmatic'"):
        ReductionSchedule(total_steps=100, mode="pragmatic", safety_net=False)
    with pytest.raises(ValueError, match="`budget` 'run'"):
        ReductionSchedule(total_steps=100, mode="fixed", budget="run")


def test_schedule_and_state_are_frozen():
    with pytest.raises(FrozenInstanceError):
        tolerance().tau = 0.5  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        ScheduleState().stopped = True  # type: ignore[misc]


def test_fixed_mode_needs_no_tau():
    assert fixed().tau is None


@pytest.mark.parametrize(
    ("overrides", "name", "value"),
    [
        ({"total_steps": 0}, "total_steps", "0"),
        ({"total_steps": 10.0}, "total_steps", "10.0"),
        ({"total_steps": True}, "total_steps", "True"),
        ({"interval": 0}, "interval", "0"),
        ({"interval": -5}, "interval", "-5"),
        ({"start": -1}, "start", "-1"),
        ({"start": 2.5}, "start", "2.5"),
        ({"reduce_until": 0.0}, "reduce_until", "0.0"),
        ({"reduce_until": 1.5}, "reduce_until", "1.5"),
        ({"reduce_until": math.nan}, "reduce_until", "nan"),
        ({"reduce_until": "0.1"}, "reduce_until", "'0.1'"),
        ({"mode": "greedy"}, "mode", "'greedy'"),
        ({"tau": 0.0}, "tau", "0.0"),
        ({"tau": 1.0}, "tau", "1.0"),
        ({"tau": 1.5}, "tau", "1.5"),
        ({"tau": None}, "tau", "None"),
        ({"fraction": 0.0}, "fraction", "0.0"),
        ({"fraction": 1.0}, "fraction", "1.0"),
        ({"energy": "l2"}, "energy", "'l2'"),
        ({"gate": 0.0}, "gate", "0.0"),
        ({"gate": 1.01}, "gate", "1.01"),
        ({"min_rank": 0}, "min_rank", "0"),
        ({"rollback_tolerance": -0.01}, "rollback_tolerance", "-0.01"),
        ({"rollback_tolerance": math.nan}, "rollback_tolerance", "nan"),
        ({"metric_mode": "maximize"}, "metric_mode", "'maximize'"),
        ({"selection": "middle"}, "selection", "'middle'"),
    ],
)
def test_invalid_configuration_names_the_argument_and_value(overrides, name, value):
    with pytest.raises(ValueError, match=f"`{name}`.*{value}"):
        tolerance(**overrides)


def test_tau_is_checked_in_fixed_mode_too():
    with pytest.raises(ValueError, match=r"`tau` must lie in \(0, 1\), got 1.5"):
        fixed(tau=1.5)


def test_window_without_any_check_is_rejected():
    # 10% of 1000 steps is step 100; an interval of 2000 puts the first check at 2000.
    with pytest.raises(ValueError, match=r"`start`.*= 100, got 2000"):
        ReductionSchedule(total_steps=1000, interval=2000, tau=0.1)
    with pytest.raises(ValueError, match=r"`start`.*= 100, got 101"):
        tolerance(start=101)


def test_gate_one_and_reduce_until_one_are_allowed():
    schedule = tolerance(gate=1.0, reduce_until=1.0)
    assert schedule.last_check_step == 1000


# --- the window ----------------------------------------------------------------------


def test_check_steps_of_the_default_start():
    assert list(check_steps(tolerance())) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def test_window_boundaries():
    schedule = tolerance()
    assert not is_check_step(schedule, 0)  # before start
    assert not is_check_step(schedule, 5)
    assert is_check_step(schedule, 10)  # start
    assert not is_check_step(schedule, 15)  # between checks
    assert is_check_step(schedule, 100)  # the last allowed step: 0.1 * 1000
    assert not is_check_step(schedule, 110)  # after the window
    assert not is_check_step(schedule, 2000)


def test_start_zero_and_offset_starts():
    assert list(check_steps(tolerance(start=0))) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert list(check_steps(tolerance(start=5))) == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]
    assert is_check_step(tolerance(start=0), 0)
    assert not is_check_step(tolerance(start=5), 100)


def test_window_end_forgives_binary_rounding():
    # 0.29 * 100 == 28.999999999999996 in binary floating point; the window ends at step 29.
    schedule = ReductionSchedule(total_steps=100, interval=1, reduce_until=0.29, tau=0.1)
    assert schedule.last_check_step == 29
    assert is_check_step(schedule, 29)
    assert not is_check_step(schedule, 30)


def test_window_end_is_floored():
    schedule = ReductionSchedule(total_steps=105, interval=5, tau=0.1)  # 10.5 -> 10
    assert schedule.last_check_step == 10
    assert list(check_steps(schedule)) == [5, 10]


@pytest.mark.parametrize("step", [-1, 1.0, True, "10"])
def test_invalid_step_names_the_argument(step):
    with pytest.raises(ValueError, match=f"`step` must be an integer >= 0, got {step!r}"):
        is_check_step(tolerance(), step)


@given(
    total=st.integers(1, 10_000),
    interval=st.integers(1, 500),
    start=st.integers(0, 500),
    until=st.floats(0.01, 1.0),
    step=st.integers(0, 20_000),
)
def test_check_step_matches_its_definition(total, interval, start, until, step):
    last = math.floor(round(until * total, 9))
    if start > last:
        return
    schedule = ReductionSchedule(
        total_steps=total, interval=interval, start=start, reduce_until=until, tau=0.5
    )
    expected = start <= step <= last and (step - start) % interval == 0
    assert is_check_step(schedule, step) is expected


# --- the run state -------------------------------------------------------------------


def test_cuts_count_and_the_net_judges_after_recovery():
    schedule = tolerance(safety_net=True, recovery_steps=15)
    state = after_cut(schedule, ScheduleState(), 20, metric_before=0.8, discarded={"a": 1.5})
    assert state.reductions == 1 and state.pending == PendingJudgement(20, 35, 0.8, {"a": 1.5})
    assert not is_check_step(schedule, 30, state)  # no check while a judgement is pending
    assert not is_judgement_step(schedule, 34, state) and is_judgement_step(schedule, 35, state)
    kept = after_judgement(schedule, state, rolled_back=False)
    assert kept == ScheduleState(reductions=1, discarded_energy={"a": 1.5})
    assert is_check_step(schedule, 40, kept)


def test_a_rollback_stops_or_skips_and_returns_the_energy():
    for after, stopped in (("stop", True), ("skip", False)):
        schedule = tolerance(safety_net=True, after_rollback=after)
        state = after_cut(schedule, ScheduleState(), 20, metric_before=0.8, discarded={"a": 1.5})
        undone = after_judgement(schedule, state, rolled_back=True)
        assert undone == ScheduleState(reductions=0, stopped=stopped, discarded_energy={"a": 0.0})
        assert is_check_step(schedule, 40, undone) is not stopped
    with pytest.raises(ValueError, match="no cut awaits judgement"):
        after_judgement(tolerance(), ScheduleState(), rolled_back=False)


def test_without_the_net_a_cut_awaits_no_judgement():
    state = after_cut(tolerance(), ScheduleState(), 20, metric_before=0.8, discarded={})
    assert state == ScheduleState(reductions=1) and is_check_step(tolerance(), 30, state)


def test_the_judgement_falls_on_the_last_step_at_the_latest():
    schedule = ReductionSchedule(total_steps=100, interval=10, tau=0.1, safety_net=True, recovery_steps=50)
    state = after_cut(schedule, ScheduleState(), 10, metric_before=1.0, discarded={})
    assert state.pending.judge_step == 60
    state = after_cut(schedule, ScheduleState(), 80 - 20, metric_before=1.0, discarded={})
    assert state.pending.judge_step == 100


def test_state_round_trips_through_json():
    import json

    schedule = tolerance(safety_net=True, budget="run")
    state = record_original_energy(schedule, ScheduleState(chance_metric=0.1), {"a": 10.0})
    state = after_cut(schedule, state, 20, metric_before=0.8, discarded={"a": 0.5})
    assert ScheduleState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    with pytest.raises(ValueError, match="needs exactly the keys"):
        ScheduleState.from_dict({"reductions": 1})


def test_stopped_state_prevents_further_checks():
    schedule = tolerance(safety_net=True)
    running = after_cut(tolerance(), ScheduleState(), 10, metric_before=1.0, discarded={})
    pending = after_cut(schedule, running, 10, metric_before=1.0, discarded={})
    stopped = after_judgement(schedule, pending, rolled_back=True)
    assert is_check_step(schedule, 20, running)
    assert not any(is_check_step(schedule, step, stopped) for step in range(0, 200))


# --- rank for an energy fraction -----------------------------------------------------


@pytest.mark.parametrize(
    ("tau", "energy", "rank"),
    [
        (0.3, "sum", 2),  # total 10, need >= 7: 4 + 3 = 7
        (0.3, "squared", 2),  # total 30, need >= 21: 16 + 9 = 25
        (0.1, "sum", 3),  # need >= 9: 4 + 3 + 2 = 9
        (0.1, "squared", 3),  # need >= 27: 16 + 9 + 4 = 29
        (0.5, "sum", 2),  # need >= 5: 4 < 5, 4 + 3 = 7
        (0.5, "squared", 1),  # need >= 15: 16
        (0.05, "sum", 4),  # need >= 9.5: 9 < 9.5
        (0.99, "sum", 1),
    ],
)
def test_rank_for_energy_fraction_hand_worked(tau, energy, rank):
    assert rank_for_energy_fraction([4.0, 3.0, 2.0, 1.0], tau, energy) == rank


def test_rank_for_energy_fraction_defaults_to_sum_and_takes_any_float_like():
    class Sigma:
        def __init__(self, value):
            self.value = value

        def __float__(self):
            return self.value

    assert rank_for_energy_fraction((4, 3, 2, 1), 0.3) == 2
    assert rank_for_energy_fraction([Sigma(4.0), Sigma(3.0), Sigma(2.0), Sigma(1.0)], 0.1) == 3


def test_rank_for_energy_fraction_edge_cases():
    assert rank_for_energy_fraction([5.0], 0.5) == 1
    assert rank_for_energy_fraction([0.0, 0.0, 0.0], 0.1) == 1  # no energy at all
    assert rank_for_energy_fraction([1.0, 1.0, 1.0, 1.0], 0.25) == 3
    assert rank_for_energy_fraction([1.0, 0.0, 0.0], 0.01) == 1


@pytest.mark.parametrize(
    ("hsv", "tau", "energy", "name", "value"),
    [
        ([], 0.1, "sum", "hsv", r"\[\]"),
        ([1.0, 2.0], 0.1, "sum", "hsv", "1.0 then 2.0 at index 1"),
        ([1.0, -0.5], 0.1, "sum", "hsv", "-0.5"),
        ([math.inf, 1.0], 0.1, "sum", "hsv", "inf"),
        ([1.0, math.nan], 0.1, "sum", "hsv", "nan"),
        (["a"], 0.1, "sum", "hsv", "'a'"),
        (None, 0.1, "sum", "hsv", "None"),
        ([1.0], 0.0, "sum", "tau", "0.0"),
        ([1.0], 1.0, "sum", "tau", "1.0"),
        ([1.0], -0.2, "sum", "tau", "-0.2"),
        ([1.0], 0.1, "sigma", "energy", "'sigma'"),
    ],
)
def test_rank_for_energy_fraction_errors(hsv, tau, energy, name, value):
    with pytest.raises(ValueError, match=f"`{name}`.*{value}"):
        rank_for_energy_fraction(hsv, tau, energy)


def descending_hsvs(min_size: int = 1):
    return st.lists(
        st.floats(0.0, 1e6, allow_nan=False, allow_infinity=False), min_size=min_size, max_size=40
    ).map(lambda values: sorted(values, reverse=True))


def holds_energy(hsv: list[float], r: int, tau: float, energy: str) -> bool:
    """The energy condition written out directly: the first r HSVs hold >= (1 - tau) of the total."""
    weights = hsv if energy == "sum" else [s * s for s in hsv]
    return sum(weights[:r]) >= (1 - tau) * sum(weights)


@given(
    hsv=descending_hsvs(),
    tau=st.floats(0.001, 0.999),
    energy=st.sampled_from(["sum", "squared"]),
)
def test_rank_for_energy_fraction_is_the_minimal_rank_that_holds(hsv, tau, energy):
    r = rank_for_energy_fraction(hsv, tau, energy)
    assert 1 <= r <= len(hsv)
    assert holds_energy(hsv, r, tau, energy)
    assert r == 1 or not holds_energy(hsv, r - 1, tau, energy)


# --- planning ranks ------------------------------------------------------------------


def test_plan_ranks_tolerance_mode():
    schedule = tolerance(tau=0.3)
    hsvs = [[4.0, 3.0, 2.0, 1.0], [1.0] * 10, [9.0, 1.0]]
    # Layer 0 -> 2; layer 1 needs 7 of 10 equal values -> 7 < 9.5; layer 2: 9 >= 0.7 * 10 -> 1.
    assert plan_ranks(schedule, hsvs, [4, 10, 2]) == [2, 7, 1]


def test_plan_ranks_energy_sum_or_squared():
    # tau = 0.5 on [4, 3, 2, 1]: sum 10, need >= 5 -> 2; squares 30, need >= 15 -> 1.
    assert plan_ranks(tolerance(tau=0.5), [[4.0, 3.0, 2.0, 1.0]], [4]) == [2]
    assert plan_ranks(tolerance(tau=0.5, energy="squared"), [[4.0, 3.0, 2.0, 1.0]], [4]) == [1]


@pytest.mark.parametrize(("fraction", "new"), [(0.04, 100), (0.05, 100), (0.06, 94)])
def test_gate_keeps_ranks_that_would_shrink_by_less_than_five_percent(fraction, new):
    # Fixed mode plans floor(100 * (1 - fraction)) = 96, 95, 94; only 94 < 0.95 * 100.
    assert plan_ranks(fixed(fraction=fraction), [[1.0]], [100]) == [new]


def test_gate_in_tolerance_mode():
    # 100 equal HSVs: tau = 0.04 -> 96 (kept at 100), tau = 0.06 -> 94.
    hsv = [1.0] * 100
    assert plan_ranks(tolerance(tau=0.04), [hsv], [100]) == [100]
    assert plan_ranks(tolerance(tau=0.06), [hsv], [100]) == [94]
    assert plan_ranks(tolerance(tau=0.05), [hsv], [100]) == [100]  # 95 is not < 95


def test_gate_is_configurable():
    hsv = [1.0] * 100
    assert plan_ranks(tolerance(tau=0.04, gate=1.0), [hsv], [100]) == [96]
    assert plan_ranks(tolerance(tau=0.3, gate=0.5), [hsv], [100]) == [100]  # 70 is not < 50


@pytest.mark.parametrize(
    ("fraction", "current", "new"),
    [
        (0.1, 100, 90),
        (0.1, 50, 45),
        (0.1, 15, 13),  # floor(13.5)
        (0.3, 90, 63),  # 90 * 0.7 == 62.99999999999999 in binary floating point
        (0.5, 7, 3),  # floor(3.5)
        (0.1, 9, 8),  # floor(8.1) = 8 < 0.95 * 9 = 8.55
        (0.1, 5, 4),  # floor(4.5)
        (0.1, 1, 1),  # floor(0.9) = 0 -> min_rank 1
    ],
)
def test_fixed_mode_arithmetic(fraction, current, new):
    assert plan_ranks(fixed(fraction=fraction), [[1.0]], [current]) == [new]


def test_min_rank_clips_both_modes():
    assert plan_ranks(tolerance(tau=0.5, min_rank=3), [[4.0, 3.0, 2.0, 1.0]], [10]) == [3]
    assert plan_ranks(fixed(fraction=0.9, min_rank=8), [[1.0]], [20]) == [8]
    # A layer already at or below min_rank is never changed, in particular never enlarged.
    assert plan_ranks(fixed(fraction=0.5, min_rank=8), [[1.0], [1.0]], [8, 5]) == [8, 5]
    assert plan_ranks(tolerance(tau=0.5, min_rank=8), [[1.0] * 5], [5]) == [5]


def test_plan_ranks_never_exceeds_the_current_rank():
    # More HSVs than the current rank (e.g. a realified system): the result is clipped to it.
    assert plan_ranks(tolerance(tau=0.01), [[1.0] * 40], [20]) == [20]


def test_plan_ranks_accepts_no_layers():
    assert plan_ranks(tolerance(), [], []) == []


@pytest.mark.parametrize(
    ("hsvs", "ranks", "pattern"),
    [
        ([[1.0]], [1, 2], "`hsvs_per_layer`.*2 layers.*got 1"),
        ([[1.0], [1.0]], [3, 0], r"`current_ranks\[1\]` must be an integer >= 1, got 0"),
        ([[1.0]], [2.0], r"`current_ranks\[0\]` must be an integer >= 1, got 2.0"),
        ([[1.0], [1.0, 2.0]], [2, 2], r"`hsvs_per_layer\[1\]` must be in descending order"),
        ([[1.0], []], [2, 2], r"`hsvs_per_layer\[1\]` must hold at least one"),
        ([[math.nan]], [2], r"`hsvs_per_layer\[0\]` must hold finite.*nan"),
    ],
)
@pytest.mark.parametrize("schedule", [tolerance(), fixed()], ids=["tolerance", "fixed"])
def test_plan_ranks_errors_name_the_layer(schedule, hsvs, ranks, pattern):
    with pytest.raises(ValueError, match=pattern):
        plan_ranks(schedule, hsvs, ranks)


@given(
    layers=st.lists(st.tuples(descending_hsvs(), st.integers(1, 60)), min_size=1, max_size=5),
    mode=st.sampled_from(["tolerance", "fixed"]),
    tau=st.floats(0.001, 0.999),
    fraction=st.floats(0.001, 0.999),
    energy=st.sampled_from(["sum", "squared"]),
    gate=st.floats(0.01, 1.0),
    min_rank=st.integers(1, 20),
)
def test_plan_ranks_never_increases_and_respects_min_rank(
    layers, mode, tau, fraction, energy, gate, min_rank
):
    schedule = tolerance(
        mode=mode, tau=tau, fraction=fraction, energy=energy, gate=gate, min_rank=min_rank
    )
    hsvs = [hsv for hsv, _ in layers]
    current = [rank for _, rank in layers]
    planned = plan_ranks(schedule, hsvs, current)
    for old, new in zip(current, planned, strict=True):
        assert new <= old
        assert new == old or new >= min_rank
        assert new == old or new < gate * old


# --- rollback ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "rolled_back"),
    [
        (0.75, 0.75, False),
        (0.75, 0.8, False),  # better
        (0.75, 0.625, False),  # exactly at the tolerance 0.125
        (0.75, 0.6, True),
        (0.75, math.nan, True),
        (0.75, -math.inf, True),
    ],
)
def test_rollback_when_higher_is_better(before, after, rolled_back):
    schedule = tolerance(rollback_tolerance=0.125, metric_mode="max")
    assert should_roll_back(schedule, before, after) is rolled_back


@pytest.mark.parametrize(
    ("before", "after", "rolled_back"),
    [
        (0.5, 0.5, False),
        (0.5, 0.25, False),  # better
        (0.5, 0.625, False),  # exactly at the tolerance 0.125
        (0.5, 0.7, True),
        (0.5, math.nan, True),
        (0.5, math.inf, True),
    ],
)
def test_rollback_when_lower_is_better(before, after, rolled_back):
    schedule = tolerance(rollback_tolerance=0.125, metric_mode="min")
    assert should_roll_back(schedule, before, after) is rolled_back


def test_rollback_default_tolerance_is_two_points():
    schedule = tolerance()
    assert not should_roll_back(schedule, 0.9, 0.89)
    assert should_roll_back(schedule, 0.9, 0.87)


def test_zero_tolerance_rolls_back_any_worsening_and_infinite_tolerance_none():
    assert should_roll_back(tolerance(rollback_tolerance=0.0), 0.5, 0.4999)
    assert not should_roll_back(tolerance(rollback_tolerance=0.0), 0.5, 0.5)
    assert not should_roll_back(tolerance(rollback_tolerance=math.inf), 0.5, -1e300)


@pytest.mark.parametrize(
    ("before", "after", "name", "value"),
    [
        (math.nan, 0.5, "metric_before", "nan"),
        (math.inf, 0.5, "metric_before", "inf"),
        ("0.5", 0.5, "metric_before", "'0.5'"),
        (0.5, None, "metric_after", "None"),
        (0.5, True, "metric_after", "True"),
    ],
)
def test_rollback_errors_name_the_argument(before, after, name, value):
    with pytest.raises(ValueError, match=f"`{name}`.*{value}"):
        should_roll_back(tolerance(), before, after)


# --- a trainer loop ------------------------------------------------------------------


def test_a_trainer_loop_reduces_until_a_rollback():
    # pragmatic mode: 10% cuts, each judged at the next check; the third one hurts.
    schedule = ReductionSchedule(total_steps=100, interval=2, reduce_until=0.1, mode="pragmatic")
    state, ranks, history = ScheduleState(), [64, 32], []
    checkpoint = None
    for step in range(1, schedule.total_steps + 1):
        metric = 0.9 if step < 8 else 0.8
        if is_judgement_step(schedule, step, state):
            rolled_back = should_roll_back(schedule, state.pending.metric_before, metric)
            state = after_judgement(schedule, state, rolled_back=rolled_back)
            if rolled_back:
                ranks = checkpoint
                history.append((step, "rolled back", ranks))
                continue
        if not is_check_step(schedule, step, state):
            continue
        checkpoint, ranks = ranks, plan_ranks(schedule, [[1.0] * r for r in ranks], ranks)
        state = after_cut(schedule, state, step, metric_before=metric, discarded={})
        history.append((step, "cut", ranks))
    assert history == [
        (2, "cut", [57, 28]), (4, "cut", [51, 25]), (6, "cut", [45, 22]), (8, "rolled back", [51, 25]),
    ]
    assert state.stopped and state.reductions == 2


# --- run budget, certificate, chance level ---------------------------------------------


def test_the_run_budget_stops_where_tau_of_the_original_energy_is_spent():
    # HSVs 8, 4, 2, 1, 1 (sum 16); tau 0.25 -> the run may discard 4 in all.
    schedule = ReductionSchedule(total_steps=100, interval=10, tau=0.25, budget="run", gate=1.0)
    hsv = [8.0, 4.0, 2.0, 1.0, 1.0]
    state = record_original_energy(schedule, ScheduleState(), {"a": layer_energy(schedule, hsv)})
    assert state.original_energy == {"a": 16.0} and remaining_budget(schedule, state, "a") == 4.0
    assert plan_ranks(schedule, [hsv], [5], allowed_discard=[4.0]) == [2]  # discards 2 + 1 + 1
    state = after_cut(schedule, state, 10, metric_before=1.0, discarded={"a": discarded_energy(schedule, hsv, 2)})
    assert remaining_budget(schedule, state, "a") == 0.0
    # trained on: the two kept states now hold 6 and 5; nothing more may go
    assert plan_ranks(schedule, [[6.0, 5.0]], [2], allowed_discard=[0.0]) == [2]
    # per check, the same tolerance would cut again: 25% of 11 > 5 is false, 6/11 < 0.75
    assert plan_ranks(ReductionSchedule(total_steps=100, interval=10, tau=0.5, gate=1.0), [[6.0, 5.0]], [2]) == [1]
    # a later check does not re-record the original energy
    assert record_original_energy(schedule, state, {"a": 11.0}).original_energy == {"a": 16.0}
    # per_check ignores the record
    assert record_original_energy(tolerance(), ScheduleState(), {"a": 1.0}) == ScheduleState()


def test_the_run_budget_in_squared_energy():
    schedule = ReductionSchedule(total_steps=100, interval=10, tau=0.1, budget="run", energy="squared", gate=1.0)
    hsv = [3.0, 1.0, 1.0]  # squared energy 11; tau 0.1 -> 1.1: one unit state may go
    assert layer_energy(schedule, hsv) == 11.0
    assert plan_ranks(schedule, [hsv], [3], allowed_discard=[1.1]) == [2]


def test_certificate_from_a_hand_built_perturbation():
    schedule = tolerance(certify_over=2)
    hsv = [3.0, 1.0, 0.5]
    # gap at r=1 is 2: movements below 1 certify, from two earlier checks on
    assert certificate_holds(schedule, hsv, 1, [0.9, 0.5])
    assert not certificate_holds(schedule, hsv, 1, [1.0, 0.5])  # 2 > 2 * 1.0 fails
    assert not certificate_holds(schedule, hsv, 1, [0.1])  # one earlier check is too few
    assert certificate_holds(schedule, hsv, 2, [0.2, 0.24])  # gap 0.5 > 0.48
    with pytest.raises(ValueError, match="`rank`"):
        certificate_holds(schedule, hsv, 3, [0.0, 0.0])


def test_chance_level_is_left_by_the_margin():
    schedule = tolerance(chance_margin=0.05)
    assert left_chance(schedule, 0.16, 0.1) and not left_chance(schedule, 0.14, 0.1)
    assert not left_chance(schedule, math.nan, 0.1)
    lower = tolerance(chance_margin=0.05, metric_mode="min")
    assert left_chance(lower, 0.9, 1.0) and not left_chance(lower, 0.97, 1.0)
