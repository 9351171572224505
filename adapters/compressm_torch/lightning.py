"""The reduction schedule as a Lightning callback (needs the ``lightning`` package).

    trainer = lightning.Trainer(callbacks=[CompreSSMCallback(schedule, evaluate=val_accuracy)])

Lightning owns the module and the optimizer, so the callback changes them in place: at a
check step it swaps the reduced layers into the LightningModule, gives the trainer the
carried-over optimizer and points its LR schedulers at it. With the safety net on it keeps
the swapped-out layers and the old optimizer, and at the judgement step (``recovery`` steps
later) swaps them back in if ``evaluate`` says the metric fell by more than the tolerance.
Time-invariant layers only (selective layers need ``compressm_torch.Compressor``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from torch import nn

from compressm_core.layers import Gramians
from compressm_core.schedule import ReductionSchedule, is_check_step, is_judgement_step, left_chance

from .compressor import Checkpoint, Compressor
from .optimizer import hand_over_schedulers, transfer_optimizer
from .reduce import reduce_layer, set_submodule


class CompreSSMCallback(Callback):
    """Runs ``schedule`` after training batches; ``events`` records every cut and judgement.

    ``evaluate(module) -> float`` is the validation metric (higher is better unless the
    schedule's ``metric_mode`` is "min"): read around each cut, by the safety net's
    judgement and by certified timing's chance level. One optimizer is supported.
    """

    def __init__(
        self,
        schedule: ReductionSchedule,
        evaluate: Callable[[LightningModule], float],
        *,
        gramians: Gramians = "complex",
        seed: int = 0,
        horizon: int | None = None,
    ) -> None:
        self.compressor = Compressor(schedule, gramians=gramians, seed=seed, horizon=horizon)
        self.evaluate = evaluate
        self.swapped_out: dict[str, nn.Module] = {}  # the layers a pending cut replaced

    @property
    def events(self):
        return self.compressor.events

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        step, compressor = trainer.global_step, self.compressor
        schedule = compressor.schedule
        if schedule.timing == "certified" and compressor.state.chance_metric is None:
            compressor.state = replace(compressor.state, chance_metric=float(self.evaluate(pl_module)))
        if is_judgement_step(schedule, step, compressor.state):
            rolled_back = compressor.verdict(step, float(self.evaluate(pl_module)))
            checkpoint, compressor.pending = compressor.pending, None
            swapped_out, self.swapped_out = self.swapped_out, {}
            if rolled_back:
                for name, layer in swapped_out.items():
                    set_submodule(pl_module, name, layer)
                self._use_optimizer(trainer, checkpoint.optimizer)
                return
        if not is_check_step(schedule, step, compressor.state):
            return
        ranks = compressor.plan(pl_module)
        if not ranks:
            return
        metric_before = float(self.evaluate(pl_module))
        if schedule.timing == "certified" and not left_chance(schedule, metric_before, compressor.state.chance_metric):
            return
        self._cut(trainer, pl_module, step, ranks, metric_before)

    def _cut(self, trainer: Trainer, pl_module: LightningModule, step: int, ranks: dict[str, int], metric_before: float) -> None:
        compressor = self.compressor
        (optimizer,) = trainer.optimizers
        old_parameters = dict(pl_module.named_parameters())
        old_layers = {name: pl_module.get_submodule(name) for name in ranks}
        rng = np.random.default_rng(compressor.seed + step)
        reductions = []
        for name, rank in ranks.items():
            new_layer, record = reduce_layer(
                name, old_layers[name], rank, gramians=compressor.gramians,
                selection=compressor.schedule.selection, rng=rng, horizon=compressor.horizon,
            )
            set_submodule(pl_module, name, new_layer)
            reductions.append(record)
        slicing = compressor.schedule.optimizer_state == "slice"
        new_optimizer = transfer_optimizer(
            optimizer, old_parameters, dict(pl_module.named_parameters()),
            reset=() if slicing else tuple(ranks), sliced=dict.fromkeys(ranks) if slicing else None,
        )
        compressor.cut(step, tuple(reductions), ranks, metric_before, float(self.evaluate(pl_module)))
        if compressor.schedule.net:
            compressor.pending = Checkpoint(pl_module, optimizer)  # the module changes in place:
            self.swapped_out = old_layers  # its old layers are kept here
        self._use_optimizer(trainer, new_optimizer)

    @staticmethod
    def _use_optimizer(trainer: Trainer, optimizer) -> None:
        """Give the trainer ``optimizer`` at the current learning rates, with its LR schedulers."""
        (current,) = trainer.optimizers
        for group, now in zip(optimizer.param_groups, current.param_groups, strict=True):
            group["lr"] = now["lr"]
        trainer.strategy.optimizers = [optimizer]
        hand_over_schedulers([config.scheduler for config in trainer.lr_scheduler_configs], optimizer)

