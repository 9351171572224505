"""The Compressor: the schedule inside a training loop, with rollback."""

import torch

from compressm_core.schedule import ReductionSchedule
from compressm_torch import Compressor
from reference_models.torch_models import SequenceModel


def _setup():
    torch.manual_seed(0)
    model = SequenceModel(d_input=1, d_output=2, d_model=8, state_dim=32, n_layers=2).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, optimizer


def _dims(model):
    return [block.ssm.state_dim for block in model.blocks]


def test_reduces_only_at_check_steps_and_keeps_good_reductions():
    model, optimizer = _setup()
    compressor = Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=0.3))
    assert compressor.step(3, model, optimizer, lambda m: 1.0) == (model, optimizer)
    new_model, new_optimizer = compressor.step(5, model, optimizer, lambda m: 1.0)
    assert new_model is not model and new_optimizer is not optimizer
    assert all(d < 32 for d in _dims(new_model))
    assert _dims(model) == [32, 32]
    (event,) = compressor.events
    assert event.step == 5 and not event.rolled_back
    assert [r.new_dim for r in event.reductions] == _dims(new_model)


def test_rolls_back_and_stops_when_the_metric_drops():
    model, optimizer = _setup()
    compressor = Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=0.3, rollback_tolerance=0.02))
    metric = iter([0.90, 0.80])  # before, after: a drop of 0.10 > 0.02
    kept_model, kept_optimizer = compressor.step(5, model, optimizer, lambda m: next(metric))
    assert kept_model is model and kept_optimizer is optimizer
    assert compressor.events[-1].rolled_back and compressor.state.stopped
    assert compressor.step(10, model, optimizer, lambda m: 1.0) == (model, optimizer)
    assert len(compressor.events) == 1


def test_gate_skips_small_cuts():
    model, optimizer = _setup()
    compressor = Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, tau=1e-9))
    assert compressor.step(5, model, optimizer, lambda m: 1.0) == (model, optimizer)
    assert compressor.events == []


def test_fixed_mode_cuts_a_fraction():
    model, optimizer = _setup()
    compressor = Compressor(ReductionSchedule(total_steps=100, interval=5, reduce_until=0.1, mode="fixed", fraction=0.25))
    new_model, _ = compressor.step(5, model, optimizer, lambda m: 1.0)
    assert _dims(new_model) == [24, 24]
