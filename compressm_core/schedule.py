"""The reduction schedule: when to reduce, to which rank, and when a cut is undone.

Framework-free policy (plain Python numbers and sequences) shared by every trainer. The
adapters' ``Compressor`` runs it; a loop of one's own looks like this::

    state = ScheduleState()
    for step in range(1, total_steps + 1):
        ...  # one training step
        if is_judgement_step(schedule, step, state):       # the safety net, after recovery
            rolled_back = should_roll_back(schedule, state.pending.metric_before, evaluate())
            state = after_judgement(schedule, state, rolled_back=rolled_back)
            if rolled_back:
                ...  # restore the checkpoint (the model and optimizer before the cut)
                continue                                    # no check at this step
        if is_check_step(schedule, step, state):
            state = record_original_energy(schedule, state, energies)   # budget="run"
            new_ranks = plan_ranks(schedule, hsvs, ranks, allowed_discard=...)
            if new_ranks != ranks:
                ...  # keep a checkpoint if schedule.net; cut the layers
                state = after_cut(schedule, state, step, metric_before=m, discarded=d)

Checks happen at ``start, start + interval, ...`` up to and including step
``floor(reduce_until * total_steps)``; by default ``interval`` is a quarter of that window
(four equidistant attempts, as the paper describes) and ``start`` is ``interval``.

Rank rules. ``mode="tolerance"``: each layer keeps the smallest rank whose discarded HSVs
hold at most ``tau`` of the energy: the sum of the HSVs (``energy="sum"``, what the authors'
code does, the default) or of their squares (``"squared"``). With ``budget="per_check"`` (the
paper) the energy is the layer's current one, so repeated checks compound (five checks at tau
0.1 can halve a layer five times); with ``budget="run"`` all cuts of a run together discard at
most ``tau`` of the layer's original energy, recorded at its first check. ``mode="fixed"``
cuts ``fraction`` of the current rank at each check; ``mode="pragmatic"`` is the authors'
fixed-fraction mode with the safety net on. Either way a layer is only reduced if its new
rank is below ``gate`` times its current rank.

Timing. ``timing="steps"`` (the paper) cuts at the check steps. ``timing="certified"`` cuts a
layer at a check only when the Weyl certificate holds (``certificate_holds``: the gap
``sigma_r - sigma_(r+1)`` exceeds twice the movement of the factor product ``Lq^H Lp`` since
each of the last ``certify_over`` checks, so the kept top-r set is the same as at those
checks) and the validation metric has left chance level (``left_chance``: by
``chance_margin`` beyond the metric of the model the compressor first sees).

The safety net (``safety_net``; off by default except in pragmatic mode, as in the authors'
code) judges a cut after ``recovery_steps`` of training on the reduced model (default: one
check interval, i.e. at the next check, as the authors' pragmatic mode does): it rolls back
if the validation metric fell by more than ``rollback_tolerance`` below the metric before the
cut. After a rollback ``after_rollback="stop"`` ends reducing (the authors' rule) and
``"skip"`` tries again at the next check. No check happens while a cut awaits judgement.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import accumulate
from typing import Any, Literal, SupportsFloat

Mode = Literal["tolerance", "fixed", "pragmatic"]
Budget = Literal["per_check", "run"]
Timing = Literal["steps", "certified"]
AfterRollback = Literal["stop", "skip"]
OptimizerState = Literal["reset", "slice"]
Energy = Literal["sum", "squared"]
MetricMode = Literal["max", "min"]
Selection = Literal["largest", "smallest", "random"]

MODES: tuple[Mode, ...] = ("tolerance", "fixed", "pragmatic")
BUDGETS: tuple[Budget, ...] = ("per_check", "run")
TIMINGS: tuple[Timing, ...] = ("steps", "certified")
AFTER_ROLLBACK: tuple[AfterRollback, ...] = ("stop", "skip")
OPTIMIZER_STATES: tuple[OptimizerState, ...] = ("reset", "slice")
ENERGIES: tuple[Energy, ...] = ("sum", "squared")
METRIC_MODES: tuple[MetricMode, ...] = ("max", "min")
SELECTIONS: tuple[Selection, ...] = ("largest", "smallest", "random")


def _floor(value: float) -> int:
    """``floor(value)``, forgiving binary rounding just below an integer (0.29 * 100 -> 29)."""
    return math.floor(round(value, 9))


def _check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, or a ValueError unless it is an integer (not a bool) >= ``minimum``."""
    try:
        number = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        number = None
    if number is None or number < minimum:
        msg = f"`{name}` must be an integer >= {minimum}, got {value!r}"
        raise ValueError(msg)
    return number


def _check_real(name: str, value: object) -> float:
    """``float(value)``, or a ValueError unless it is a real number (not a bool or a string)."""
    try:
        if isinstance(value, (bool, str, bytes)):
            raise TypeError
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        msg = f"`{name}` must be a real number, got {value!r}"
        raise ValueError(msg) from None


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        options = ", ".join(repr(choice) for choice in choices)
        msg = f"`{name}` must be one of {options}, got {value!r}"
        raise ValueError(msg)


def _check_hsv(name: str, hsv: Sequence[SupportsFloat]) -> list[float]:
    """The HSVs as floats, or a ValueError unless they are non-empty, finite, >= 0 and descending."""
    try:
        values = [float(sigma) for sigma in hsv]
    except (TypeError, ValueError):
        msg = f"`{name}` must be a sequence of real numbers, got {hsv!r}"
        raise ValueError(msg) from None
    if not values:
        msg = f"`{name}` must hold at least one Hankel singular value, got {hsv!r}"
        raise ValueError(msg)
    bad = [sigma for sigma in values if not (0.0 <= sigma < math.inf)]
    if bad:
        msg = f"`{name}` must hold finite, non-negative values, got {bad[0]!r}"
        raise ValueError(msg)
    for i in range(1, len(values)):
        if values[i] > values[i - 1]:
            msg = (
                f"`{name}` must be in descending order, got {values[i - 1]!r} "
                f"then {values[i]!r} at index {i}"
            )
            raise ValueError(msg)
    return values


@dataclass(frozen=True)
class ReductionSchedule:
    """Configuration of in-training reduction: window, rank rule, timing, budget and safety net.

    Parameters
    ----------
    total_steps:
        Number of training steps of the whole run.
    interval:
        Steps between two checks; ``None`` (default): a quarter of the window, at least 1
        (the paper's four equidistant attempts; the authors' configurations use 2000).
    reduce_until:
        Fraction of training, in (0, 1], during which checks may happen.
    start:
        First check step; ``None`` means ``interval``. 0 is allowed.
    mode:
        ``"tolerance"``: rank from the HSV energy and ``tau``; ``"fixed"``: cut ``fraction``
        of the current rank at each check; ``"pragmatic"``: fixed cuts with the safety net.
    tau:
        Energy tolerance in (0, 1); required in tolerance mode.
    fraction:
        Share of the current rank cut at each check in fixed and pragmatic mode, in (0, 1).
    energy:
        ``"sum"``: energy is the sum of the HSVs (the authors' code); ``"squared"``: the sum
        of their squares.
    budget:
        Tolerance mode. ``"per_check"``: ``tau`` of the layer's current energy at every check
        (the paper; cuts compound); ``"run"``: all cuts together discard at most ``tau`` of the
        layer's original energy (recorded at its first check).
    timing:
        ``"steps"``: cut at the check steps; ``"certified"``: cut a layer only once the Weyl
        certificate holds over the last ``certify_over`` checks and the metric has left
        chance level by ``chance_margin``.
    certify_over:
        Certified timing: how many earlier checks (at the layer's current order) the
        certificate must reach back to.
    chance_margin:
        Certified timing: the metric must beat the first metric the compressor sees (the
        metric at chance level) by this much, in the metric's units.
    gate:
        In (0, 1]: a layer is reduced only if ``new_rank < gate * current_rank``.
    min_rank:
        No layer is reduced below this rank.
    safety_net:
        Judge each cut after recovery training and roll it back if the metric fell by more
        than ``rollback_tolerance``. ``None``: on in pragmatic mode, off otherwise.
    recovery_steps:
        Safety net: training steps on the reduced model before the judgement; ``None``: the
        check interval (the judgement falls on the next check).
    rollback_tolerance:
        Safety net: the largest fall of the metric that keeps a cut; ``math.inf`` rolls
        back only a NaN metric. 0.02 in the authors' pragmatic mode.
    after_rollback:
        ``"stop"``: no more reductions after a rollback (the authors' rule); ``"skip"``:
        reducing goes on at the next check.
    metric_mode:
        ``"max"``: higher is better (accuracy); ``"min"``: lower is better (loss).
    selection:
        Which states a reduction keeps: ``"largest"`` HSVs (balanced truncation), or the
        ``"smallest"`` / a ``"random"`` subset (ablations). Carried for the adapters.
    optimizer_state:
        What the optimizer keeps for a reduced layer: ``"reset"`` (fresh state) or
        ``"slice"`` (the moments of the kept coordinates and the step count, as the authors'
        code does). Carried for the adapters.
    """

    total_steps: int
    interval: int | None = None
    reduce_until: float = 0.1
    start: int | None = None
    mode: Mode = "tolerance"
    tau: float | None = None
    fraction: float = 0.1
    energy: Energy = "sum"
    budget: Budget = "per_check"
    timing: Timing = "steps"
    certify_over: int = 2
    chance_margin: float = 0.05
    gate: float = 0.95
    min_rank: int = 1
    safety_net: bool | None = None
    recovery_steps: int | None = None
    rollback_tolerance: float = 0.02
    after_rollback: AfterRollback = "stop"
    metric_mode: MetricMode = "max"
    selection: Selection = "largest"
    optimizer_state: OptimizerState = "reset"

    def __post_init__(self) -> None:
        _check_int("total_steps", self.total_steps, 1)
        for name in ("interval", "recovery_steps"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        if self.start is not None:
            _check_int("start", self.start, 0)
        _check_int("min_rank", self.min_rank, 1)
        _check_int("certify_over", self.certify_over, 1)
        if not 0.0 < _check_real("reduce_until", self.reduce_until) <= 1.0:
            msg = f"`reduce_until` must lie in (0, 1], got {self.reduce_until!r}"
            raise ValueError(msg)
        if not 0.0 < _check_real("fraction", self.fraction) < 1.0:
            msg = f"`fraction` must lie in (0, 1), got {self.fraction!r}"
            raise ValueError(msg)
        if not 0.0 < _check_real("gate", self.gate) <= 1.0:
            msg = f"`gate` must lie in (0, 1], got {self.gate!r}"
            raise ValueError(msg)
        for name in ("rollback_tolerance", "chance_margin"):
            if not _check_real(name, getattr(self, name)) >= 0.0:
                msg = f"`{name}` must be >= 0, got {getattr(self, name)!r}"
                raise ValueError(msg)
        _check_choice("mode", self.mode, MODES)
        _check_choice("energy", self.energy, ENERGIES)
        _check_choice("budget", self.budget, BUDGETS)
        _check_choice("timing", self.timing, TIMINGS)
        _check_choice("after_rollback", self.after_rollback, AFTER_ROLLBACK)
        _check_choice("metric_mode", self.metric_mode, METRIC_MODES)
        _check_choice("selection", self.selection, SELECTIONS)
        _check_choice("optimizer_state", self.optimizer_state, OPTIMIZER_STATES)
        if self.safety_net not in (None, True, False):
            msg = f"`safety_net` must be True, False or None, got {self.safety_net!r}"
            raise ValueError(msg)
        if self.mode == "pragmatic" and self.safety_net is False:
            msg = "`safety_net` must be on in mode 'pragmatic' (fixed cuts with the safety net); use mode 'fixed' without it"
            raise ValueError(msg)
        if self.tau is not None:
            _check_tau(self.tau)
        elif self.mode == "tolerance":
            msg = "`tau` is required when `mode` is 'tolerance', got None"
            raise ValueError(msg)
        if self.budget == "run" and self.mode != "tolerance":
            msg = f"`budget` 'run' limits the energy tolerance mode discards; mode is {self.mode!r}"
            raise ValueError(msg)
        if self.first_check_step > self.last_check_step:
            msg = (
                f"`start` must not exceed the end of the reduction window "
                f"floor(reduce_until * total_steps) = {self.last_check_step}, "
                f"got {self.first_check_step} (from start={self.start!r}, interval={self.check_interval})"
            )
            raise ValueError(msg)

    @property
    def check_interval(self) -> int:
        """Steps between two checks: ``interval``, or a quarter of the window (at least 1)."""
        return self.interval if self.interval is not None else max(1, self.last_check_step // 4)

    @property
    def first_check_step(self) -> int:
        """The first step at which reductions are checked: ``start``, or the interval if unset."""
        return self.check_interval if self.start is None else self.start

    @property
    def last_check_step(self) -> int:
        """The last step at which a check may happen: ``floor(reduce_until * total_steps)``."""
        return _floor(self.reduce_until * self.total_steps)

    @property
    def net(self) -> bool:
        """Whether the safety net is on: ``safety_net``, or the mode's default (pragmatic only)."""
        return self.mode == "pragmatic" if self.safety_net is None else self.safety_net

    @property
    def recovery(self) -> int:
        """Training steps between a cut and its judgement: ``recovery_steps`` or the interval."""
        return self.check_interval if self.recovery_steps is None else self.recovery_steps


def _check_tau(tau: object) -> float:
    value = _check_real("tau", tau)
    if not 0.0 < value < 1.0:
        msg = f"`tau` must lie in (0, 1), got {tau!r}"
        raise ValueError(msg)
    return value


@dataclass(frozen=True)
class PendingJudgement:
    """A cut awaiting the safety net's judgement: when it was made and will be judged, the
    metric before it, and the energy each cut layer discarded (returned to the budget if
    the cut is rolled back)."""

    cut_step: int
    judge_step: int
    metric_before: float
    discarded: dict[str, float]


@dataclass(frozen=True)
class ScheduleState:
    """Progress of one run through the schedule (plain numbers: ``to_dict`` is JSON).

    ``reductions`` counts the cuts made and not rolled back; ``stopped`` becomes True after a
    rollback with ``after_rollback="stop"``; ``pending`` is the cut awaiting judgement;
    ``original_energy`` and ``discarded_energy`` (per layer, in the schedule's energy units)
    hold the run budget; ``chance_metric`` is the metric at chance level (certified timing).
    """

    reductions: int = 0
    stopped: bool = False
    pending: PendingJudgement | None = None
    original_energy: dict[str, float] = field(default_factory=dict)
    discarded_energy: dict[str, float] = field(default_factory=dict)
    chance_metric: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-able data (``from_dict`` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduleState:
        """The state ``to_dict`` wrote; a ValueError names unknown or missing keys."""
        known = {f for f in cls.__dataclass_fields__}
        if not isinstance(data, dict) or set(data) != known:
            msg = f"a schedule state needs exactly the keys {sorted(known)}, got {data!r}"
            raise ValueError(msg)
        pending = data["pending"]
        return cls(
            reductions=_check_int("reductions", data["reductions"], 0),
            stopped=bool(data["stopped"]),
            pending=None if pending is None else PendingJudgement(
                int(pending["cut_step"]), int(pending["judge_step"]),
                float(pending["metric_before"]), _floats("discarded", pending["discarded"]),
            ),
            original_energy=_floats("original_energy", data["original_energy"]),
            discarded_energy=_floats("discarded_energy", data["discarded_energy"]),
            chance_metric=None if data["chance_metric"] is None else float(data["chance_metric"]),
        )


def _floats(name: str, values: object) -> dict[str, float]:
    if not isinstance(values, dict):
        msg = f"`{name}` must map layer names to numbers, got {values!r}"
        raise ValueError(msg)
    return {str(key): _check_real(f"{name}[{key!r}]", value) for key, value in values.items()}


def check_steps(schedule: ReductionSchedule) -> range:
    """All check steps of the schedule: ``start, start + interval, ...`` up to the window's end."""
    return range(schedule.first_check_step, schedule.last_check_step + 1, schedule.check_interval)


def is_check_step(
    schedule: ReductionSchedule, step: int, state: ScheduleState | None = None
) -> bool:
    """Whether reductions are checked at ``step``; never once ``state`` has stopped, nor
    while a cut awaits judgement."""
    step = _check_int("step", step, 0)
    if state is not None and (state.stopped or state.pending is not None):
        return False
    return step in check_steps(schedule)


def is_judgement_step(schedule: ReductionSchedule, step: int, state: ScheduleState) -> bool:
    """Whether the pending cut is judged at ``step`` (its recovery training is over)."""
    step = _check_int("step", step, 0)
    return state.pending is not None and step >= state.pending.judge_step


def after_cut(
    schedule: ReductionSchedule,
    state: ScheduleState,
    step: int,
    *,
    metric_before: float,
    discarded: dict[str, float],
) -> ScheduleState:
    """The state after a cut at ``step``: one more reduction, the ``discarded`` energy (per
    cut layer) charged to the budget, and with the safety net a judgement pending at
    ``min(step + recovery, total_steps)``."""
    spent = dict(state.discarded_energy)
    for name, energy in discarded.items():
        spent[name] = spent.get(name, 0.0) + float(energy)
    pending = None
    if schedule.net:
        judge_step = min(step + schedule.recovery, schedule.total_steps)
        pending = PendingJudgement(step, judge_step, float(metric_before), dict(discarded))
    return replace(state, reductions=state.reductions + 1, pending=pending, discarded_energy=spent)


def after_judgement(
    schedule: ReductionSchedule, state: ScheduleState, *, rolled_back: bool
) -> ScheduleState:
    """The state after the pending cut is judged: kept, or rolled back (its energy returned
    to the budget; reducing stops with ``after_rollback="stop"``)."""
    if state.pending is None:
        msg = "no cut awaits judgement"
        raise ValueError(msg)
    if not rolled_back:
        return replace(state, pending=None)
    spent = dict(state.discarded_energy)
    for name, energy in state.pending.discarded.items():
        spent[name] = spent.get(name, 0.0) - energy
    return replace(
        state,
        reductions=state.reductions - 1,
        stopped=schedule.after_rollback == "stop",
        pending=None,
        discarded_energy=spent,
    )


def layer_energy(schedule: ReductionSchedule, hsv: Sequence[SupportsFloat]) -> float:
    """A layer's energy in the schedule's units: the sum of its HSVs or of their squares."""
    return sum(_weights(_check_hsv("hsv", hsv), schedule.energy))


def discarded_energy(schedule: ReductionSchedule, hsv: Sequence[SupportsFloat], rank: int) -> float:
    """The energy a cut to ``rank`` discards: the weights of the HSVs after the first ``rank``."""
    return sum(_weights(_check_hsv("hsv", hsv), schedule.energy)[rank:])


def record_original_energy(
    schedule: ReductionSchedule, state: ScheduleState, energies: dict[str, float]
) -> ScheduleState:
    """With ``budget="run"``, the state with each layer's first seen energy recorded (later
    values are ignored); otherwise ``state`` itself."""
    if schedule.budget != "run" or set(energies) <= set(state.original_energy):
        return state
    return replace(state, original_energy={**energies, **state.original_energy})


def remaining_budget(schedule: ReductionSchedule, state: ScheduleState, name: str) -> float:
    """Run budget: the energy layer ``name`` may still discard, ``tau * original - discarded``."""
    assert schedule.tau is not None  # budget="run" requires tolerance mode
    original = state.original_energy[name]
    return schedule.tau * original - state.discarded_energy.get(name, 0.0)


def certificate_holds(
    schedule: ReductionSchedule,
    hsv: Sequence[SupportsFloat],
    rank: int,
    movements: Sequence[float],
) -> bool:
    """Weyl certificate at a check: ``hsv[rank-1] - hsv[rank] > 2 * max(movements)``, where
    ``movements`` holds ``||M_now - M_j||`` for the factor products ``M = Lq^H Lp`` of the
    earlier checks j at the same order; needs at least ``certify_over`` of them."""
    values = _check_hsv("hsv", hsv)
    if not 0 < rank < len(values):
        msg = f"`rank` must be an integer in [1, {len(values) - 1}], got {rank!r}"
        raise ValueError(msg)
    if len(movements) < schedule.certify_over:
        return False
    return values[rank - 1] - values[rank] > 2.0 * max(float(m) for m in movements)


def left_chance(schedule: ReductionSchedule, metric: float, chance: float) -> bool:
    """Whether ``metric`` beats the ``chance`` level by at least ``chance_margin``."""
    if math.isnan(metric):
        return False
    if schedule.metric_mode == "max":
        return metric >= chance + schedule.chance_margin
    return metric <= chance - schedule.chance_margin


def rank_for_energy_fraction(
    hsv: Sequence[SupportsFloat], tau: float, energy: Energy = "sum"
) -> int:
    """Smallest ``r >= 1`` whose leading ``r`` HSVs hold at least ``1 - tau`` of the total energy.

    ``hsv`` is one layer's Hankel singular values in descending order. Energy is
    their sum (``energy="sum"``) or the sum of their squares (``"squared"``).
    """
    values = _check_hsv("hsv", hsv)
    target = 1.0 - _check_tau(tau)
    _check_choice("energy", energy, ENERGIES)
    return _rank_for_energy(values, target, energy)


def _weights(values: list[float], energy: Energy) -> list[float]:
    return values if energy == "sum" else [sigma * sigma for sigma in values]


def _rank_for_energy(values: list[float], kept_share: float, energy: Energy) -> int:
    weights = _weights(values, energy)
    needed = kept_share * sum(weights)
    return next(r for r, kept in enumerate(accumulate(weights), start=1) if kept >= needed)


def _rank_within(weights: list[float], allowed: float) -> int:
    """The smallest ``r >= 1`` whose discarded weights ``sum(weights[r:])`` are at most ``allowed``."""
    tails = [*list(accumulate(reversed(weights)))[::-1], 0.0]  # tails[r] = sum(weights[r:])
    return next((r for r in range(1, len(weights) + 1) if tails[r] <= allowed), len(weights))


def plan_ranks(
    schedule: ReductionSchedule,
    hsvs_per_layer: Sequence[Sequence[SupportsFloat]],
    current_ranks: Sequence[int],
    *,
    allowed_discard: Sequence[float] | None = None,
) -> list[int]:
    """The rank each layer should have after this check; the current rank where it should not change.

    Tolerance mode: ``rank_for_energy_fraction`` of the layer's HSVs, or with
    ``allowed_discard`` (one energy per layer: what the run budget still allows) the
    smallest rank whose discarded energy is at most that; fixed and pragmatic mode:
    ``floor(current * (1 - fraction))``. The result is clipped to
    ``[min_rank, current]`` and kept only if it is below ``gate * current``.
    ``hsvs_per_layer`` must hold one descending HSV sequence per layer (it is
    checked in fixed mode too, where the rank does not depend on it).
    """
    if len(hsvs_per_layer) != len(current_ranks):
        msg = (
            f"`hsvs_per_layer` must hold one sequence per layer of `current_ranks` "
            f"({len(current_ranks)} layers), got {len(hsvs_per_layer)}"
        )
        raise ValueError(msg)
    if allowed_discard is not None and len(allowed_discard) != len(current_ranks):
        msg = f"`allowed_discard` must hold one energy per layer ({len(current_ranks)}), got {len(allowed_discard)}"
        raise ValueError(msg)
    planned = []
    for layer, (hsv, rank) in enumerate(zip(hsvs_per_layer, current_ranks, strict=True)):
        current = _check_int(f"current_ranks[{layer}]", rank, 1)
        values = _check_hsv(f"hsvs_per_layer[{layer}]", hsv)
        if schedule.mode == "tolerance" and allowed_discard is not None:
            proposed = _rank_within(_weights(values, schedule.energy), float(allowed_discard[layer]))
        elif schedule.mode == "tolerance":
            assert schedule.tau is not None  # ReductionSchedule requires it in this mode
            proposed = _rank_for_energy(values, 1.0 - schedule.tau, schedule.energy)
        else:
            proposed = _floor(current * (1.0 - schedule.fraction))
        new = min(current, max(schedule.min_rank, proposed))
        planned.append(new if new < schedule.gate * current else current)
    return planned


def should_roll_back(
    schedule: ReductionSchedule, metric_before: float, metric_after: float
) -> bool:
    """Whether the validation metric got worse by more than ``rollback_tolerance``.

    ``metric_mode="max"``: ``after < before - tol``; ``"min"``: ``after > before + tol``.
    A NaN ``metric_after`` (a diverged model) always rolls back.
    """
    before = _check_real("metric_before", metric_before)
    after = _check_real("metric_after", metric_after)
    if not math.isfinite(before):
        msg = f"`metric_before` must be finite, got {metric_before!r}"
        raise ValueError(msg)
    if math.isnan(after):
        return True
    if schedule.metric_mode == "max":
        return after < before - schedule.rollback_tolerance
    return after > before + schedule.rollback_tolerance
