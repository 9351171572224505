"""The Lightning callback: reductions inside lightning.Trainer.fit, with the optimizer carried over."""

import pytest
import torch

lightning = pytest.importorskip("lightning")

from compressm_core.schedule import ReductionSchedule  # noqa: E402
from compressm_torch.lightning import CompreSSMCallback  # noqa: E402
from reference_models.torch_models import SequenceModel  # noqa: E402


class Classifier(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = SequenceModel(d_input=1, d_output=2, d_model=8, state_dim=24, n_layers=2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=1e-3)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 100)}


def _loader():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, 1, generator=generator)
    y = (x.mean(dim=(1, 2)) > 0).long()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def _fit(callback):
    torch.manual_seed(0)
    module = Classifier()
    trainer = lightning.Trainer(
        max_steps=12, callbacks=[callback], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )
    trainer.fit(module, _loader())
    return module, trainer


def _dims(module):
    return [block.ssm.state_dim for block in module.net.blocks]


def test_callback_reduces_during_fit_and_training_continues():
    callback = CompreSSMCallback(ReductionSchedule(total_steps=12, interval=4, reduce_until=0.5, tau=0.3), evaluate=lambda m: 1.0)
    module, trainer = _fit(callback)
    assert callback.events and not any(e.rolled_back for e in callback.events)
    assert all(d < 24 for d in _dims(module))
    (optimizer,) = trainer.optimizers
    parameters = set(map(id, module.parameters()))
    assert {id(p) for group in optimizer.param_groups for p in group["params"]} == parameters
    assert trainer.lr_scheduler_configs[0].scheduler.optimizer is optimizer
    assert trainer.global_step == 12


def test_callback_judges_after_recovery_and_swaps_the_old_layers_back():
    metrics = iter([0.9, 0.4, 0.5])  # before the cut at step 4, just after it, at the judgement (step 8)
    schedule = ReductionSchedule(total_steps=12, interval=4, reduce_until=0.5, tau=0.3, safety_net=True)
    callback = CompreSSMCallback(schedule, evaluate=lambda m: next(metrics))
    module, trainer = _fit(callback)
    cut, judgement = callback.events
    assert (cut.step, judgement.step, judgement.cut_step) == (4, 8, 4) and judgement.rolled_back
    assert _dims(module) == [24, 24] and callback.compressor.state.stopped
    (optimizer,) = trainer.optimizers
    assert {id(p) for group in optimizer.param_groups for p in group["params"]} == set(map(id, module.parameters()))
    assert trainer.lr_scheduler_configs[0].scheduler.optimizer is optimizer
