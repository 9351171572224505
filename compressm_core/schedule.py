"""The reduction schedule: when to reduce, to which rank, and when to roll back.

Framework-free policy (plain Python numbers and sequences) shared by every
trainer. A trainer loop uses it like this::

    state = ScheduleState()
    if is_check_step(schedule, step, state):
        new_ranks = plan_ranks(schedule, hsvs_per_layer, current_ranks)
        if new_ranks != current_ranks:
            # checkpoint, reduce the layers, evaluate the validation metric
            rolled_back = should_roll_back(schedule, metric_before, metric_after)
            # restore the checkpoint if rolled_back
            state = after_reduction(state, rolled_back=rolled_back)

Checks happen at ``start, start + interval, ...`` up to and including step
``floor(reduce_until * total_steps)``. In tolerance mode each layer keeps the
smallest rank whose leading Hankel singular values hold ``1 - tau`` of the
layer's energy: the sum of the HSVs (``energy="sum"``, what the authors' code
does, the default) or of their squares (``energy="squared"``). In fixed mode
each check cuts ``fraction`` of the current rank. Either way a layer is only
reduced if its new rank is below ``gate`` times its current rank.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Literal, SupportsFloat

Mode = Literal["tolerance", "fixed"]
Energy = Literal["sum", "squared"]
MetricMode = Literal["max", "min"]
Selection = Literal["largest", "smallest", "random"]

MODES: tuple[Mode, ...] = ("tolerance", "fixed")
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
    """Configuration of in-training reduction: window, interval, rank rule, gate and rollback.

    Parameters
    ----------
    total_steps:
        Number of training steps of the whole run.
    interval:
        Steps between two checks (2000 in the paper's configurations).
    reduce_until:
        Fraction of training, in (0, 1], during which checks may happen.
    start:
        First check step; ``None`` means ``interval``. 0 is allowed.
    mode:
        ``"tolerance"``: rank from the HSV energy and ``tau``;
        ``"fixed"``: cut ``fraction`` of the current rank at each check.
    tau:
        Energy tolerance in (0, 1); required in tolerance mode.
    fraction:
        Share of the current rank cut at each check in fixed mode, in (0, 1).
    energy:
        ``"sum"``: energy is the sum of the HSVs (the authors' code);
        ``"squared"``: the sum of their squares.
    gate:
        In (0, 1]: a layer is reduced only if ``new_rank < gate * current_rank``.
    min_rank:
        No layer is reduced below this rank.
    rollback_tolerance:
        A reduction is rolled back (and reducing stops) if the validation metric
        gets worse by more than this; ``math.inf`` rolls back only a NaN metric.
    metric_mode:
        ``"max"``: higher is better (accuracy); ``"min"``: lower is better (loss).
    selection:
        Which states a reduction keeps: ``"largest"`` HSVs (balanced truncation),
        or the ``"smallest"`` / a ``"random"`` subset (ablations). Carried for the
        adapters; this module does not use it.
    """

    total_steps: int
    interval: int = 2000
    reduce_until: float = 0.1
    start: int | None = None
    mode: Mode = "tolerance"
    tau: float | None = None
    fraction: float = 0.1
    energy: Energy = "sum"
    gate: float = 0.95
    min_rank: int = 1
    rollback_tolerance: float = 0.02
    metric_mode: MetricMode = "max"
    selection: Selection = "largest"

    def __post_init__(self) -> None:
        _check_int("total_steps", self.total_steps, 1)
        _check_int("interval", self.interval, 1)
        if self.start is not None:
            _check_int("start", self.start, 0)
        _check_int("min_rank", self.min_rank, 1)
        if not 0.0 < _check_real("reduce_until", self.reduce_until) <= 1.0:
            msg = f"`reduce_until` must lie in (0, 1], got {self.reduce_until!r}"
            raise ValueError(msg)
        if not 0.0 < _check_real("fraction", self.fraction) < 1.0:
            msg = f"`fraction` must lie in (0, 1), got {self.fraction!r}"
            raise ValueError(msg)
        if not 0.0 < _check_real("gate", self.gate) <= 1.0:
            msg = f"`gate` must lie in (0, 1], got {self.gate!r}"
            raise ValueError(msg)
        if not _check_real("rollback_tolerance", self.rollback_tolerance) >= 0.0:
            msg = f"`rollback_tolerance` must be >= 0, got {self.rollback_tolerance!r}"
            raise ValueError(msg)
        _check_choice("mode", self.mode, MODES)
        _check_choice("energy", self.energy, ENERGIES)
        _check_choice("metric_mode", self.metric_mode, METRIC_MODES)
        _check_choice("selection", self.selection, SELECTIONS)
        if self.tau is not None:
            _check_tau(self.tau)
        elif self.mode == "tolerance":
            msg = "`tau` is required when `mode` is 'tolerance', got None"
            raise ValueError(msg)
        if self.first_check_step > self.last_check_step:
            msg = (
                f"`start` must not exceed the end of the reduction window "
                f"floor(reduce_until * total_steps) = {self.last_check_step}, "
                f"got {self.first_check_step} (from start={self.start!r}, interval={self.interval})"
            )
            raise ValueError(msg)

    @property
    def first_check_step(self) -> int:
        """The first step at which reductions are checked: ``start``, or ``interval`` if unset."""
        return self.interval if self.start is None else self.start

    @property
    def last_check_step(self) -> int:
        """The last step at which a check may happen: ``floor(reduce_until * total_steps)``."""
        return _floor(self.reduce_until * self.total_steps)


def _check_tau(tau: object) -> float:
    value = _check_real("tau", tau)
    if not 0.0 < value < 1.0:
        msg = f"`tau` must lie in (0, 1), got {tau!r}"
        raise ValueError(msg)
    return value


@dataclass(frozen=True)
class ScheduleState:
    """Progress of one run through the schedule.

    ``reductions`` counts the reductions that were kept; ``stopped`` becomes
    True once a reduction is rolled back, after which no step is a check step.
    """

    reductions: int = 0
    stopped: bool = False


def after_reduction(state: ScheduleState, *, rolled_back: bool) -> ScheduleState:
    """The state after a reduction: one more kept reduction, or stopped if it was rolled back."""
    if rolled_back:
        return replace(state, stopped=True)
    return replace(state, reductions=state.reductions + 1)


def check_steps(schedule: ReductionSchedule) -> range:
    """All check steps of the schedule: ``start, start + interval, ...`` up to the window's end."""
    return range(schedule.first_check_step, schedule.last_check_step + 1, schedule.interval)


def is_check_step(
    schedule: ReductionSchedule, step: int, state: ScheduleState | None = None
) -> bool:
    """Whether reductions are checked at ``step``; never once ``state`` has stopped."""
    step = _check_int("step", step, 0)
    if state is not None and state.stopped:
        return False
    return step in check_steps(schedule)


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


def _rank_for_energy(values: list[float], kept_share: float, energy: Energy) -> int:
    weights = values if energy == "sum" else [sigma * sigma for sigma in values]
    needed = kept_share * sum(weights)
    return next(r for r, kept in enumerate(accumulate(weights), start=1) if kept >= needed)


def plan_ranks(
    schedule: ReductionSchedule,
    hsvs_per_layer: Sequence[Sequence[SupportsFloat]],
    current_ranks: Sequence[int],
) -> list[int]:
    """The rank each layer should have after this check; the current rank where it should not change.

    Tolerance mode: ``rank_for_energy_fraction`` of the layer's HSVs; fixed mode:
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
    planned = []
    for layer, (hsv, rank) in enumerate(zip(hsvs_per_layer, current_ranks, strict=True)):
        current = _check_int(f"current_ranks[{layer}]", rank, 1)
        values = _check_hsv(f"hsvs_per_layer[{layer}]", hsv)
        if schedule.mode == "tolerance":
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
