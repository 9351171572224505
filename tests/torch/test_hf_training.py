"""Compressing a transformers Mamba during training: the Compressor in a plain loop, and the
Trainer callback (model, optimizer and LR scheduler kept as objects)."""

import math

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
chf = pytest.importorskip("compressm_torch.hf")

import compressm_torch as ct  # noqa: E402
from compressm_core.schedule import ReductionSchedule  # noqa: E402

VOCAB, LENGTH = 64, 12


def tiny_mamba(seed=0):
    torch.manual_seed(seed)
    config = transformers.MambaConfig(hidden_size=16, num_hidden_layers=2, state_size=8, vocab_size=VOCAB)
    return transformers.MambaForCausalLM(config)


def token_ids(batch, seed):
    return torch.randint(0, VOCAB, (batch, LENGTH), generator=torch.Generator().manual_seed(seed))


def schedule(steps):
    return ReductionSchedule(
        total_steps=steps, interval=3, start=3, reduce_until=1.0, tau=0.3, rollback_tolerance=math.inf
    )


def sizes(model):
    return [mixer.ssm_state_size for _, mixer in chf.mamba_mixers(model)]


def test_the_compressor_reduces_a_transformers_mamba_in_a_plain_loop():
    model, calibration = tiny_mamba(), token_ids(4, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    compressor = ct.Compressor(schedule(12), calibration=calibration)
    for step in range(12):
        batch = token_ids(4, step + 1)
        optimizer.zero_grad()
        loss = model(batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        model, optimizer = compressor.step(step, model, optimizer, lambda m: 0.0)
    assert math.isfinite(loss.item())
    assert all(size < 8 for size in sizes(model))
    assert model.config.compressm_state_sizes == sizes(model)
    assert {id(p) for group in optimizer.param_groups for p in group["params"]} == {id(p) for p in model.parameters()}
    assert model.generate(calibration[:1, :4], max_new_tokens=3, min_new_tokens=3, do_sample=False).shape == (1, 7)


def training_arguments(tmp_path, max_steps, **kwargs):
    """Quiet CPU Trainer settings: batches of 4, no checkpoints, no logging."""
    return transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=max_steps, per_device_train_batch_size=4, report_to=[],
        save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True, seed=0, **kwargs,
    )


class Recorder(transformers.TrainerCallback):
    """The optimizer and scheduler objects at every step."""

    def __init__(self):
        self.objects = []

    def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        self.objects.append((optimizer, lr_scheduler))


def test_the_trainer_callback_reduces_in_place_and_keeps_the_lr_scheduler(tmp_path):
    model, calibration = tiny_mamba(), token_ids(4, 0)
    data = [{"input_ids": ids, "labels": ids} for ids in token_ids(48, 1)]
    args = training_arguments(tmp_path, 12, learning_rate=1e-2, lr_scheduler_type="linear")
    callback, recorder = chf.CompreSSMTrainerCallback(schedule(12), calibration), Recorder()
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback, recorder])
    trainer.train()
    assert trainer.model is model and callback.events
    assert all(size < 8 for size in sizes(model)) and model.config.compressm_state_sizes == sizes(model)
    optimizers, schedulers = zip(*recorder.objects, strict=True)
    assert len({id(o) for o in optimizers}) == 1 and len({id(s) for s in schedulers}) == 1
    assert schedulers[0].optimizer is optimizers[0]
    inner = getattr(optimizers[0], "optimizer", optimizers[0])  # accelerate's wrapper
    assert {id(p) for group in inner.param_groups for p in group["params"]} == {id(p) for p in model.parameters()}
    for parameter in model.parameters():
        assert inner.state[parameter]["exp_avg"].shape == parameter.shape
    assert schedulers[0].get_last_lr()[0] == pytest.approx(0.0)  # linear decay to 0 at max_steps


class Snapshot(transformers.TrainerCallback):
    """Copies of the parameters and Adam moments after each optimizer step, by name."""

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.moments = {
            name: (p.detach().clone(), optimizer.state[p]["exp_avg"].clone(), optimizer.state[p]["exp_avg_sq"].clone())
            for name, p in model.named_parameters()
        }


def test_the_trainer_callback_slices_the_moments_of_the_kept_states(tmp_path):
    model, calibration = tiny_mamba(), token_ids(4, 0)
    data = [{"input_ids": ids, "labels": ids} for ids in token_ids(24, 1)]
    args = training_arguments(tmp_path, 6)
    cut_at_the_end = ReductionSchedule(
        total_steps=6, interval=3, start=6, reduce_until=1.0, tau=0.3, rollback_tolerance=math.inf
    )
    snapshot, callback = Snapshot(), chf.CompreSSMTrainerCallback(cut_at_the_end, calibration)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[snapshot, callback])
    trainer.train()
    assert [event.step for event in callback.events] == [6]
    inner = trainer.optimizer.optimizer
    for name, parameter in model.named_parameters():
        old, old_avg, old_avg_sq = snapshot.moments[name]
        state = inner.state[parameter]
        axis = 1 if name.endswith("A_log") else 0
        if parameter.shape == old.shape:
            rows = torch.arange(old.shape[axis])
        else:  # each kept row (column of A_log) is found among the old ones
            rows = torch.tensor([
                next(i for i in range(old.shape[axis]) if torch.equal(old.select(axis, i), new))
                for new in parameter.detach().unbind(axis)
            ])
        assert torch.equal(state["exp_avg"], old_avg.index_select(axis, rows))
        assert torch.equal(state["exp_avg_sq"], old_avg_sq.index_select(axis, rows))



def test_a_rollback_in_the_trainer_callback_restores_the_model_in_place(tmp_path):
    model, calibration = tiny_mamba(), token_ids(4, 0)
    data = [{"input_ids": ids, "labels": ids} for ids in token_ids(40, 1)]
    args = training_arguments(tmp_path, 10)
    judged = ReductionSchedule(
        total_steps=10, interval=3, start=3, reduce_until=1.0, tau=0.3, safety_net=True,
        recovery_steps=2, rollback_tolerance=0.0,
    )
    callback = chf.CompreSSMTrainerCallback(judged, calibration, evaluate=lambda m: float(sum(sizes(m))))
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train()
    assert [type(event).__name__ for event in callback.events] == ["CompressionEvent", "Judgement"]
    assert callback.events[1].rolled_back and trainer.model is model
    assert sizes(model) == [8, 8] and model.config.compressm_state_sizes == [8, 8]
    inner = trainer.optimizer.optimizer
    assert {id(p) for group in inner.param_groups for p in group["params"]} == {id(p) for p in model.parameters()}
    assert trainer.lr_scheduler.optimizer is trainer.optimizer
