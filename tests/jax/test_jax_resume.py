"""JAX runs that survive being stopped: resume bit-identical across reductions, divergence
caught at once, training checkpoints read as untrusted input, --device."""

import json

import equinox as eqx
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from reference_models.jax_models import model_config, state_dict
from reference_models.train import jax_trainer
from reference_models.train.checkpoint_jax import load_model, load_training_state
from reference_models.train.config import TrainConfig
from reference_models.train.run_state import RunInterrupted, TrainingDiverged

pytestmark = pytest.mark.usefixtures("jax_default_precision")

TINY = TrainConfig(task="digits", backend="jax", steps=24, batch_size=32, d_model=8, state_dim=16, n_layers=1, tau=0.2,
                   reduce_every=4, reduce_until=0.5, eval_every=8, warmup_steps=3, max_train=300)
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    output = tmp_path_factory.mktemp("jax_run")
    model, record = jax_trainer.train(TINY, progress=False, output=output)
    return output, model, record


@pytest.mark.slow
def test_interrupted_jax_run_resumes_bit_identical(uninterrupted, tmp_path, monkeypatch, stop_at, without_timings):
    _, model, record = uninterrupted
    stop_at(jax_trainer, 5)  # after the cut at step 4, before those at 8 and 12
    with pytest.raises(RunInterrupted, match="SIGTERM at step 6"):
        jax_trainer.train(TINY, progress=False, output=tmp_path)
    monkeypatch.undo()
    resumed, resumed_record = jax_trainer.train(TINY, progress=False, output=tmp_path, resume=True)
    assert record.reductions and record.reductions[0]["step"] == 4
    expected = state_dict(model)
    assert all(np.array_equal(value, expected[name]) for name, value in state_dict(resumed).items())
    assert without_timings(resumed_record.metrics()) == without_timings(record.metrics())


@pytest.mark.slow
def test_jax_resume_between_a_cut_and_its_rollback_is_bit_identical(tmp_path, monkeypatch, stop_at, without_timings):
    """The cut of step 8 is judged at step 11 and rolled back; the run stops at step 9."""
    config = TINY.replace(safety_net=True, rollback_tolerance=0.0, recovery_steps=3, after_rollback="skip", lr=0.02)
    model, record = jax_trainer.train(config, progress=False)
    assert [(r["step"], r["judged_step"]) for r in record.rollbacks] == [(8, 11)]
    stop_at(jax_trainer, 8)
    with pytest.raises(RunInterrupted, match="SIGTERM at step 9"):
        jax_trainer.train(config, progress=False, output=tmp_path)
    assert load_training_state(tmp_path / "checkpoint.safetensors").pending_model is not None
    monkeypatch.undo()
    resumed, resumed_record = jax_trainer.train(config, progress=False, output=tmp_path, resume=True)
    expected = state_dict(model)
    assert all(np.array_equal(value, expected[name]) for name, value in state_dict(resumed).items())
    assert without_timings(resumed_record.metrics()) == without_timings(record.metrics())


@pytest.mark.slow
def test_jax_divergence_stops_at_that_step(tmp_path):
    config = TINY.replace(tau=None, lr=1e6, warmup_steps=0, eval_every=1)
    with pytest.raises(TrainingDiverged, match=r"diverged at step (\d+): loss nan, gradient norm nan, learning rate") as caught:
        jax_trainer.train(config, progress=False, output=tmp_path)
    step = int(str(caught.value).split("step ")[1].split(":")[0])
    assert load_training_state(tmp_path / "checkpoint.safetensors").state["step"] == step - 1


@pytest.mark.slow
def test_jax_records_best_validation_and_device(uninterrupted):
    output, _, record = uninterrupted
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["device"].startswith("cpu:0")
    assert metrics["best_val_step"] in (8, 16, 24) and metrics["test_accuracy_at_best_val"] is None  # written before the end
    assert record.test_metric_at_best_val is not None
    assert model_config(load_model(output / "best.safetensors"))["state_dims"] == next(
        e["state_dims"] for e in record.evaluations if e["step"] == record.best_val_step
    )


def tampered(source, target, *, config=None, tensors=None):
    with safe_open(str(source), framework="numpy") as handle:
        metadata = handle.metadata()
    arrays = load_file(str(source))
    if config is not None:
        metadata["config"] = json.dumps(config(json.loads(metadata["config"])))
    save_file(tensors(arrays) if tensors else arrays, str(target), metadata=metadata)
    return target


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"config": lambda c: {**c, "d_model": 20000}}, r"`encoder.weight` is F32 \[8, 1\], expected F32 \[20000, 1\]"),
        ({"config": lambda c: {**c, "n_layers": True}}, "field `n_layers` must be a positive integer"),
        ({"config": lambda c: {**c, "unknown": 0}}, "field `unknown` is unknown"),
        ({"tensors": lambda a: {**a, "optimizer.0": np.zeros(3, np.int32)}}, "optimizer array 0 is int32 \\[3\\]"),
        ({"tensors": lambda a: {k: v for k, v in a.items() if k != "rng.jax"}}, "has no uint32 `rng.jax`"),
        ({"tensors": lambda a: {**a, "stowaway": np.zeros(1, np.float32)}}, r"unknown tensors \['stowaway'\]"),
    ],
)
def test_tampered_jax_checkpoints_raise_one_value_error(uninterrupted, tmp_path, change, message):
    path = tampered(uninterrupted[0] / "checkpoint.safetensors", tmp_path / "bad.safetensors", **change)
    with pytest.raises(ValueError, match=message):
        checkpoint = load_training_state(path)
        optimizer = jax_trainer.build_optimizer(TINY)
        jax_trainer.load_optimizer(optimizer.init(eqx.filter(checkpoint.model, eqx.is_array)), checkpoint.optimizer, path)


def test_jax_device_names():
    assert jax_trainer.resolve_devices("cpu")
    with pytest.raises(ValueError, match="`--device` 'mps' is not available to JAX"):
        jax_trainer.resolve_devices("mps")
    with pytest.raises(ValueError, match="`--device` 'cuda:9' is not available to JAX"):
        jax_trainer.resolve_devices("cuda:9")
