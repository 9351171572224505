"""The reduction schedule inside any PyTorch training loop, with its optional safety net.

    compressor = Compressor(ReductionSchedule(total_steps=steps, tau=0.05))
    for step in range(1, steps + 1):
        ...  # forward, backward, optimizer.step(), scheduler.step()
        model, optimizer = compressor.step(step, model, optimizer, evaluate, schedulers=[scheduler])

Models with selective (Mamba-style) layers need ``calibration``, a fixed batch of input
sequences on which their time-varying Gramians are computed (see ``compress``).

At a check step the compressor reads every layer's HSVs, plans new ranks with the core's
schedule policy (``compressm_core.layers.plan_check``: tolerance, fixed or pragmatic mode,
the per-check or run budget, the gate, the certificate under ``timing="certified"``),
evaluates the validation metric, compresses and evaluates again (the dip, recorded). The
optimizer follows the reduced model (the schedule's ``optimizer_state``: "reset" or "slice",
see ``transfer_optimizer``), and the given LR ``schedulers`` are handed over to it.

With the safety net on (``schedule.net``) the old model and optimizer, which ``compress``
never modifies, are kept as ``pending`` (the checkpoint); ``recovery`` steps later the
compressor evaluates the trained reduced model and, if the metric fell by more than
``rollback_tolerance`` below the checkpoint's, returns the checkpoint instead (schedulers
handed back), then stops or skips to the next check (``after_rollback``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from compressm_core.gramians import check_horizon
from compressm_core.layers import (
    Event,
    Gramians,
    LayerReduction,
    Memory,
    combined_error_bounds,
    compressor_state,
    factor_product,
    plan_certified,
    plan_check,
    read_compressor_state,
    record_cut,
    record_judgement,
)
from compressm_core.schedule import (
    ReductionSchedule,
    ScheduleState,
    is_check_step,
    is_judgement_step,
    left_chance,
)

from .optimizer import hand_over_schedulers
from .reduce import _analysed_system, compress, hankel_singular_values, reducible_layers
from .selective import selective_layers, state_energies

Scheduler = Any  # torch.optim.lr_scheduler.LRScheduler or anything with an ``optimizer``


@dataclass(frozen=True)
class Checkpoint:
    """The model and optimizer from before a cut that awaits the safety net's judgement."""

    model: nn.Module
    optimizer: torch.optim.Optimizer


@dataclass
class Compressor:
    """Runs ``schedule`` in a training loop; ``events`` records every cut and judgement.

    ``pending`` is the checkpoint kept while a cut awaits judgement (save it with the rest
    of a training checkpoint; ``load_state_dict`` takes it back). ``products`` is the
    certificate's memory under ``timing="certified"``: the last factor products per layer.
    ``horizon``: the Gramians' horizon, None (infinite, the authors') or L steps
    (time-limited, e.g. the training sequences' length; see ``compress``).
    """

    schedule: ReductionSchedule
    gramians: Gramians = "complex"
    horizon: int | None = None
    seed: int = 0
    calibration: Tensor | None = None
    state: ScheduleState = field(default_factory=ScheduleState)
    events: list[Event] = field(default_factory=list)
    pending: Checkpoint | None = None
    products: Memory = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_horizon(self.horizon)  # a ValueError naming `horizon` now, not at the first check

    def plan(self, model: nn.Module) -> dict[str, int]:
        """The layers to cut now, with their new ranks (HSV units); records the layers'
        original energies (``budget="run"``) and, under certified timing, their products."""
        if self.schedule.timing == "certified":
            ranks, self.state, self.products = plan_certified(
                self.schedule, self.state, self.products, self._factor_products(model)
            )
            return ranks
        hsvs = hankel_singular_values(model, gramians=self.gramians, calibration=self.calibration, horizon=self.horizon)
        ranks, self.state = plan_check(self.schedule, self.state, {n: h.tolist() for n, h in hsvs.items()})
        return ranks

    @torch.no_grad()
    def _factor_products(self, model: nn.Module) -> dict[str, np.ndarray]:
        """``Lq^H Lp`` of every layer, complex128 on the CPU; a selective layer's is the diagonal
        of the root of its state energies, in index order (its singular values are its spectrum)."""
        products = {
            name: factor_product(_analysed_system(layer, self.gramians), horizon=self.horizon).cpu().numpy()
            for name, layer in reducible_layers(model)
        }
        if selective_layers(model):
            for name, energy in state_energies(model, self.calibration).items():
                products[name] = np.diag(np.sqrt(energy.cpu().numpy())).astype(np.complex128)
        return products

    def step(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        evaluate: Callable[[nn.Module], float],
        *,
        schedulers: Sequence[Scheduler] = (),
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        """The model and optimizer to train on from here: new ones after a cut, the checkpoint
        after a rollback. ``schedulers`` (LR schedulers of ``optimizer``) follow the optimizer."""
        if self.schedule.timing == "certified" and self.state.chance_metric is None:
            self.state = replace(self.state, chance_metric=float(evaluate(model)))
        if is_judgement_step(self.schedule, step, self.state):
            restored = self.judge(step, model, optimizer, evaluate, schedulers)
            if restored is not None:
                return restored
        ranks = self.plan(model) if is_check_step(self.schedule, step, self.state) else {}
        if not ranks:
            return model, optimizer
        metric_before = float(evaluate(model))
        if self.schedule.timing == "certified" and not left_chance(
            self.schedule, metric_before, self.state.chance_metric
        ):
            return model, optimizer
        compressed = compress(
            model,
            optimizer,
            ranks=ranks,
            selection=self.schedule.selection,
            gramians=self.gramians,
            seed=self.seed + step,
            calibration=self.calibration,
            optimizer_state=self.schedule.optimizer_state,
            horizon=self.horizon,
        )
        self.cut(step, compressed.reductions, ranks, metric_before, float(evaluate(compressed.model)))
        if self.schedule.net:
            self.pending = Checkpoint(model, optimizer)
        hand_over_schedulers(schedulers, compressed.optimizer)
        return compressed.model, compressed.optimizer

    def cut(
        self,
        step: int,
        reductions: tuple[LayerReduction, ...],
        ranks: dict[str, int],
        metric_before: float,
        metric_after: float,
    ) -> None:
        """Record a cut made at ``step`` to ``ranks`` (HSV units; ``record_cut``)."""
        self.state, self.products, event = record_cut(
            self.schedule, self.state, self.products, step, reductions, ranks, metric_before, metric_after
        )
        self.events.append(event)

    def judge(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        evaluate: Callable[[nn.Module], float],
        schedulers: Sequence[Scheduler] = (),
    ) -> tuple[nn.Module, torch.optim.Optimizer] | None:
        """Judge the pending cut on the trained reduced ``model``; the checkpoint if it is rolled back."""
        rolled_back = self.verdict(step, float(evaluate(model)))
        checkpoint, self.pending = self.pending, None
        if not rolled_back or checkpoint is None:
            return None
        for old, current in zip(checkpoint.optimizer.param_groups, optimizer.param_groups, strict=True):
            old["lr"] = current["lr"]  # the schedule has moved on since the cut
        hand_over_schedulers(schedulers, checkpoint.optimizer)
        return checkpoint.model, checkpoint.optimizer

    def verdict(self, step: int, metric_recovered: float) -> bool:
        """Record the judgement of the pending cut at ``step``; True when it is rolled back."""
        self.state, judgement = record_judgement(self.schedule, self.state, self.events, step, metric_recovered)
        self.events.append(judgement)
        return judgement.rolled_back

    def combined_error_bounds(self) -> dict[str, float]:
        """Per layer, the sum of the H-inf bounds of its kept cuts (see ``compressm_core.layers``)."""
        return combined_error_bounds(self.events)

    def state_dict(self) -> dict[str, Any]:
        """Everything the compressor has learnt, as JSON-able data (``compressor_state``): the
        schedule state with the pending judgement's metadata, the events and the certificate's
        memory. The checkpoint of a pending cut is ``pending`` (a model and an optimizer):
        save it with the training checkpoint."""
        return compressor_state(self.state, self.events, self.products)

    def load_state_dict(
        self,
        data: dict[str, Any],
        *,
        pending_model: nn.Module | None = None,
        pending_optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        """Restore what ``state_dict`` returned; a pending judgement needs its checkpoint
        (``pending_model`` and ``pending_optimizer``). ValueError (nothing changed) otherwise."""
        has_checkpoint = pending_model is not None and pending_optimizer is not None
        self.state, events, self.products = read_compressor_state(data, has_checkpoint=has_checkpoint)
        self.events = events
        self.pending = Checkpoint(pending_model, pending_optimizer) if has_checkpoint else None

