"""The reduction schedule for JAX training loops: a pure step over (model, Optax state).

    compressor = Compressor(ReductionSchedule(total_steps=steps, tau=0.05), optimizer)
    for step in range(1, steps + 1):
        model, opt_state = train_step(model, opt_state, batch)   # jitted; recompiles after a reduction
        model, opt_state, compressor = compressor.step(step, model, opt_state, evaluate)

Models with selective (Mamba-style) layers need ``calibration``, a fixed batch of input
sequences (batch, L, d_input) on which their time-varying Gramians are computed.

The same policy as ``compressm_torch.Compressor``: a check step plans ranks with the core
(``plan_check``: mode, budget, gate, certificate under ``timing="certified"``), evaluates,
compresses, evaluates again (the dip, recorded) and carries the Optax state over
(the schedule's ``optimizer_state``: "reset" or "slice", see ``transfer_optimizer_state``; the shared step
count, and with it any Optax LR schedule, continues). With the safety net on, the inputs
(never modified) are kept as ``pending`` and the cut is judged ``recovery`` steps later;
a rollback returns them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import numpy as np
import optax

from compressm_core.gramians import check_horizon
from compressm_core.layers import (
    CompressionEvent,
    Event,
    Gramians,
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

from .reduce import _analysed_system, compress, hankel_singular_values, reducible_layers
from .selective import selective_layers, state_energies


@dataclass(frozen=True)
class Checkpoint:
    """The model and Optax state from before a cut that awaits the safety net's judgement."""

    model: eqx.Module
    opt_state: optax.OptState


@dataclass(frozen=True)
class Compressor:
    """Immutable: ``step`` returns the compressor to use next, with its events so far.

    ``pending`` is the checkpoint kept while a cut awaits judgement; ``products`` the
    certificate's memory under ``timing="certified"``. ``horizon``: the Gramians' horizon,
    None (infinite, the authors') or L steps (time-limited; see ``compress``).
    """

    schedule: ReductionSchedule
    optimizer: optax.GradientTransformation
    gramians: Gramians = "complex"
    horizon: int | None = None
    seed: int = 0
    calibration: Any = None
    state: ScheduleState = dataclasses.field(default_factory=ScheduleState)
    events: tuple[Event, ...] = ()
    pending: Checkpoint | None = None
    products: Memory = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_horizon(self.horizon)  # a ValueError naming `horizon` now, not at the first check

    def plan(self, model: eqx.Module) -> tuple[dict[str, int], Compressor]:
        """The layers to cut now, with their new ranks (HSV units), and the compressor with
        the layers' original energies (``budget="run"``) and products (certified) recorded."""
        if self.schedule.timing == "certified":
            ranks, state, products = plan_certified(
                self.schedule, self.state, self.products, self._factor_products(model)
            )
            return ranks, dataclasses.replace(self, state=state, products=products)
        hsvs = hankel_singular_values(model, gramians=self.gramians, calibration=self.calibration, horizon=self.horizon)
        ranks, state = plan_check(self.schedule, self.state, {n: h.tolist() for n, h in hsvs.items()})
        return ranks, dataclasses.replace(self, state=state)

    def _factor_products(self, model: eqx.Module) -> dict[str, np.ndarray]:
        """``Lq^H Lp`` of every layer (complex128); a selective layer's is the diagonal of the
        root of its state energies, in index order (its singular values are its spectrum)."""
        products = {
            name: np.asarray(factor_product(_analysed_system(layer, self.gramians), horizon=self.horizon))
            for name, layer in reducible_layers(model)
        }
        if selective_layers(model):
            for name, energy in state_energies(model, self.calibration).items():
                products[name] = np.diag(np.sqrt(np.asarray(energy))).astype(np.complex128)
        return products

    def step(
        self,
        step: int,
        model: eqx.Module,
        opt_state: optax.OptState,
        evaluate: Callable[[eqx.Module], float],
    ) -> tuple[eqx.Module, optax.OptState, Compressor]:
        """The model, state and compressor to continue with after ``step``: new ones after a
        cut, the checkpoint after a rollback."""
        current = self
        if current.schedule.timing == "certified" and current.state.chance_metric is None:
            current = dataclasses.replace(
                current, state=dataclasses.replace(current.state, chance_metric=float(evaluate(model)))
            )
        if is_judgement_step(current.schedule, step, current.state):
            current, restored = current.judge(step, model, evaluate)
            if restored is not None:
                return restored.model, restored.opt_state, current
        if not is_check_step(current.schedule, step, current.state):
            return model, opt_state, current
        ranks, current = current.plan(model)
        if not ranks:
            return model, opt_state, current
        metric_before = float(evaluate(model))
        if current.schedule.timing == "certified" and not left_chance(
            current.schedule, metric_before, current.state.chance_metric
        ):
            return model, opt_state, current
        compressed = compress(
            model,
            opt_state,
            current.optimizer,
            ranks=ranks,
            selection=current.schedule.selection,
            gramians=current.gramians,
            seed=current.seed + step,
            calibration=current.calibration,
            optimizer_state=current.schedule.optimizer_state,
            horizon=current.horizon,
        )
        state, products, event = record_cut(
            current.schedule, current.state, current.products, step, compressed.reductions, ranks,
            metric_before, float(evaluate(compressed.model)),
        )
        following = dataclasses.replace(
            current,
            state=state,
            products=products,
            events=(*current.events, event),
            pending=Checkpoint(model, opt_state) if current.schedule.net else None,
        )
        return compressed.model, compressed.opt_state, following

    def judge(
        self, step: int, model: eqx.Module, evaluate: Callable[[eqx.Module], float]
    ) -> tuple[Compressor, Checkpoint | None]:
        """Judge the pending cut on the trained reduced ``model``: the compressor after the
        verdict, and the checkpoint to return to if the cut is rolled back."""
        state, judgement = record_judgement(
            self.schedule, self.state, self.events, step, float(evaluate(model))
        )
        following = dataclasses.replace(
            self, state=state, events=(*self.events, judgement), pending=None
        )
        return following, self.pending if judgement.rolled_back else None

    def combined_error_bounds(self) -> dict[str, float]:
        """Per layer, the sum of the H-inf bounds of its kept cuts (see ``compressm_core.layers``)."""
        return combined_error_bounds(self.events)

    def state_dict(self) -> dict[str, Any]:
        """Everything the compressor has learnt, as JSON-able data (``compressor_state``). The
        checkpoint of a pending cut is ``pending`` (a model and an Optax state): save it too."""
        return compressor_state(self.state, self.events, self.products)

    def load_state_dict(
        self,
        data: dict[str, Any],
        *,
        pending_model: eqx.Module | None = None,
        pending_optimizer: optax.OptState | None = None,
    ) -> Compressor:
        """A compressor with what ``state_dict`` returned; a pending judgement needs its
        checkpoint (``pending_model`` and ``pending_optimizer``, its Optax state)."""
        has_checkpoint = pending_model is not None and pending_optimizer is not None
        state, events, products = read_compressor_state(data, has_checkpoint=has_checkpoint)
        pending = Checkpoint(pending_model, pending_optimizer) if has_checkpoint else None
        return dataclasses.replace(
            self, state=state, events=tuple(events), products=products, pending=pending
        )



__all__ = ["Checkpoint", "CompressionEvent", "Compressor"]
