"""The reduction schedule as a Lightning callback (needs the ``lightning`` package).

    trainer = lightning.Trainer(callbacks=[CompreSSMCallback(schedule, evaluate=val_accuracy)])

Lightning owns the module and the optimizer, so the callback changes them in place: at a
check step it swaps the reduced layers into the LightningModule, gives the trainer the
carried-over optimizer (and points its LR schedulers at it), and swaps the old layers and
optimizer back if ``evaluate`` says the metric fell by more than the tolerance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback

from compressm_core.layers import Gramians
from compressm_core.schedule import ReductionSchedule, is_check_step

from .compressor import Compressor
from .optimizer import transfer_optimizer
from .reduce import reduce_layer, set_submodule


class CompreSSMCallback(Callback):
    """Runs ``schedule`` after training batches; ``events`` records every reduction attempt.

    ``evaluate(module) -> float`` is the validation metric of the safety net (higher is
    better unless the schedule's ``metric_mode`` is "min"). One optimizer is supported.
    """

    def __init__(
        self,
        schedule: ReductionSchedule,
        evaluate: Callable[[LightningModule], float],
        *,
        gramians: Gramians = "complex",
        seed: int = 0,
    ) -> None:
        self.compressor = Compressor(schedule, gramians=gramians, seed=seed)
        self.evaluate = evaluate

    @property
    def events(self):
        return self.compressor.events

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not is_check_step(self.compressor.schedule, step, self.compressor.state):
            return
        ranks = self.compressor.planned_ranks(pl_module)
        if not ranks:
            return
        (optimizer,) = trainer.optimizers
        old_parameters = dict(pl_module.named_parameters())
        old_layers = {name: pl_module.get_submodule(name) for name in ranks}
        metric_before = float(self.evaluate(pl_module))
        rng = np.random.default_rng(self.compressor.seed + step)
        reductions = []
        for name, rank in ranks.items():
            new_layer, record = reduce_layer(
                name, old_layers[name], rank, gramians=self.compressor.gramians,
                selection=self.compressor.schedule.selection, rng=rng,
            )
            set_submodule(pl_module, name, new_layer)
            reductions.append(record)
        metric_after = float(self.evaluate(pl_module))
        if self.compressor.judge(step, tuple(reductions), metric_before, metric_after):
            for name, layer in old_layers.items():
                set_submodule(pl_module, name, layer)
            return
        new_optimizer = transfer_optimizer(optimizer, old_parameters, dict(pl_module.named_parameters()), reset=tuple(ranks))
        trainer.strategy.optimizers = [new_optimizer]
        for config in trainer.lr_scheduler_configs:
            config.scheduler.optimizer = new_optimizer
