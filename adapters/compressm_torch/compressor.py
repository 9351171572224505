"""The reduction schedule inside any PyTorch training loop, with its safety net.

    compressor = Compressor(ReductionSchedule(total_steps=steps, interval=200, tau=0.05))
    for step in range(steps):
        ...  # forward, backward, optimizer.step()
        model, optimizer = compressor.step(step, model, optimizer, evaluate)

Models with selective (Mamba-style) layers need ``calibration``, a fixed batch of input
sequences on which their time-varying Gramians are computed (see ``compress``).

At a check step the compressor reads every layer's HSVs, plans new ranks with the core's
schedule policy (tolerance or fixed mode, the gate), evaluates the validation metric,
compresses, evaluates again and rolls back (returns the old model and optimizer, which
``compress`` never modifies: they are the checkpoint) if the metric fell by more than
``rollback_tolerance``; after a rollback it stops reducing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from compressm_core.layers import CompressionEvent, Gramians, LayerReduction, planned_ranks
from compressm_core.schedule import (
    ReductionSchedule,
    ScheduleState,
    after_reduction,
    is_check_step,
    should_roll_back,
)

from .reduce import compress, hankel_singular_values


@dataclass
class Compressor:
    """Runs ``schedule`` in a training loop; ``events`` records every reduction attempt."""

    schedule: ReductionSchedule
    gramians: Gramians = "complex"
    seed: int = 0
    calibration: Tensor | None = None
    state: ScheduleState = field(default_factory=ScheduleState)
    events: list[CompressionEvent] = field(default_factory=list)

    def planned_ranks(self, model: nn.Module) -> dict[str, int]:
        """The layers the schedule would reduce now, with their new ranks (HSV units)."""
        hsvs = hankel_singular_values(model, gramians=self.gramians, calibration=self.calibration)
        return planned_ranks(self.schedule, {name: hsv.tolist() for name, hsv in hsvs.items()})

    def step(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        evaluate: Callable[[nn.Module], float],
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        """The model and optimizer to train on from here (new ones after a kept reduction)."""
        ranks = self.planned_ranks(model) if is_check_step(self.schedule, step, self.state) else {}
        if not ranks:
            return model, optimizer
        metric_before = float(evaluate(model))
        compressed = compress(
            model,
            optimizer,
            ranks=ranks,
            selection=self.schedule.selection,
            gramians=self.gramians,
            seed=self.seed + step,
            calibration=self.calibration,
        )
        metric_after = float(evaluate(compressed.model))
        if self.judge(step, compressed.reductions, metric_before, metric_after):
            return model, optimizer
        return compressed.model, compressed.optimizer

    def judge(
        self, step: int, reductions: tuple[LayerReduction, ...], metric_before: float, metric_after: float
    ) -> bool:
        """Record a reduction attempt; True when it must be rolled back (reductions then stop)."""
        rolled_back = should_roll_back(self.schedule, metric_before, metric_after)
        self.state = after_reduction(self.state, rolled_back=rolled_back)
        self.events.append(CompressionEvent(step, reductions, metric_before, metric_after, rolled_back))
        return rolled_back
