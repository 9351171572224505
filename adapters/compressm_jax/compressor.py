"""The reduction schedule for JAX training loops: a pure step over (model, Optax state).

    compressor = Compressor(ReductionSchedule(total_steps=steps, interval=200, tau=0.05), optimizer)
    for step in range(1, steps + 1):
        model, opt_state = train_step(model, opt_state, batch)   # jitted; recompiles after a reduction
        model, opt_state, compressor = compressor.step(step, model, opt_state, evaluate)

Models with selective (Mamba-style) layers need ``calibration``, a fixed batch of input
sequences (batch, L, d_input) on which their time-varying Gramians are computed.

A check step reads every layer's HSVs, plans ranks with the core's schedule policy,
evaluates, compresses, evaluates again and keeps the old model and state (the inputs,
never modified) when the metric fell by more than ``rollback_tolerance``; then it stops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import optax

from compressm_core.layers import CompressionEvent, Gramians, planned_ranks
from compressm_core.schedule import (
    ReductionSchedule,
    ScheduleState,
    after_reduction,
    is_check_step,
    should_roll_back,
)

from .reduce import compress, hankel_singular_values


@dataclass(frozen=True)
class Compressor:
    """Immutable: ``step`` returns the compressor to use next, with its events so far."""

    schedule: ReductionSchedule
    optimizer: optax.GradientTransformation
    gramians: Gramians = "complex"
    seed: int = 0
    calibration: Any = None
    state: ScheduleState = dataclasses.field(default_factory=ScheduleState)
    events: tuple[CompressionEvent, ...] = ()

    def planned_ranks(self, model: eqx.Module) -> dict[str, int]:
        """The layers the schedule would reduce now, with their new ranks (HSV units)."""
        hsvs = hankel_singular_values(model, gramians=self.gramians, calibration=self.calibration)
        return planned_ranks(self.schedule, {name: hsv.tolist() for name, hsv in hsvs.items()})

    def step(
        self,
        step: int,
        model: eqx.Module,
        opt_state: optax.OptState,
        evaluate: Callable[[eqx.Module], float],
    ) -> tuple[eqx.Module, optax.OptState, Compressor]:
        """The model, state and compressor to continue with after ``step``."""
        if not is_check_step(self.schedule, step, self.state):
            return model, opt_state, self
        ranks = self.planned_ranks(model)
        if not ranks:
            return model, opt_state, self
        metric_before = float(evaluate(model))
        compressed = compress(
            model,
            opt_state,
            self.optimizer,
            ranks=ranks,
            selection=self.schedule.selection,
            gramians=self.gramians,
            seed=self.seed + step,
            calibration=self.calibration,
        )
        metric_after = float(evaluate(compressed.model))
        rolled_back = should_roll_back(self.schedule, metric_before, metric_after)
        event = CompressionEvent(
            step, compressed.reductions, metric_before, metric_after, rolled_back
        )
        following = dataclasses.replace(
            self,
            state=after_reduction(self.state, rolled_back=rolled_back),
            events=(*self.events, event),
        )
        if rolled_back:
            return model, opt_state, following
        return compressed.model, compressed.opt_state, following
