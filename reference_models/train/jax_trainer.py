"""Train a JAX (Equinox + Optax) SequenceModel while the Compressor shrinks it, and record the run.

The training step is ``eqx.filter_jit``-compiled; it recompiles once after each reduction
(new shapes), not at every step.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import compressm_jax as cj
from compressm_jax.sharding import ShardedCompressor, data_parallel_mesh, replicate, shard_batch

from ..jax_models import SelectiveSequenceModel, SequenceModel
from ..tasks import SequenceDataset, batches, load_task
from .batch_stream import BatchStream
from .checkpoint_jax import (
    load_model,
    load_optimizer,
    load_training_state,
    save_model,
    save_training_state,
)
from .config import TrainConfig
from .jax_compile import array_shapes, compile_ahead, timed_apart
from .record import RunRecord
from .run_state import (
    CHECKPOINT,
    RunFiles,
    RunInterrupted,
    StopSignals,
    announce,
    check_finite,
    check_resumable,
    learning_rate_factor,
    progress_bar,
    show_step,
)

__all__ = ["build_model", "build_optimizer", "evaluate", "load_model", "save_model", "train"]


def build_model(
    config: TrainConfig, data: SequenceDataset, key: jax.Array
) -> SequenceModel | SelectiveSequenceModel:
    classification = data.kind == "classification"
    if config.model == "selective":  # one compiled initialisation, not one per operation
        return eqx.filter_jit(SelectiveSequenceModel)(
            data.d_input,
            data.num_classes if classification else data.d_output,
            config.d_model,
            config.state_dim if isinstance(config.state_dim, int) else list(config.state_dim),
            config.n_layers,
            pooling=data.pooling,
            key=key,
        )
    return SequenceModel(
        data.d_input,
        data.num_classes if classification else data.d_output,
        config.d_model,
        config.state_dim if isinstance(config.state_dim, int) else list(config.state_dim),
        config.n_layers,
        layer=config.model,
        pooling=data.pooling,
        dropout=config.dropout,
        layer_options=config.layer_options(),
        key=key,
    )


def calibration_batch(config: TrainConfig, data: SequenceDataset) -> np.ndarray | None:
    """The first ``calibration_size`` training sequences, on which selective layers' Gramians
    are computed at every reduction check; None for time-invariant models (not needed)."""
    return data.x_train[: config.calibration_size] if config.model == "selective" else None


def _is_ssm_parameter(model: eqx.Module) -> eqx.Module:
    """A pytree of booleans: True for parameters inside SSM layers."""
    ssm_names = {name for name, _ in cj.compressible_layers(model)}
    flags = jax.tree_util.tree_map_with_path(
        lambda path, _: any(jax.tree_util.keystr(path).startswith(cj.optimizer._layer_key(n)) for n in ssm_names),
        eqx.filter(model, eqx.is_array),
    )
    return flags


def build_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW with linear warm-up and cosine decay (as the PyTorch trainer); SSM parameters get ``ssm_lr_factor`` and no weight decay."""

    def schedule(base: float) -> optax.Schedule:
        return optax.warmup_cosine_decay_schedule(0.0, base, config.warmup, config.steps, 0.0)

    def labels(params):
        return jax.tree_util.tree_map(lambda is_ssm: "ssm" if is_ssm else "other", _is_ssm_parameter(params))

    return optax.multi_transform(
        {
            "ssm": optax.adamw(schedule(config.lr * config.ssm_lr_factor), weight_decay=0.0),
            "other": optax.adamw(schedule(config.lr), weight_decay=config.weight_decay),
        },
        labels,
    )


def _loss_and_metric(model, x, y, key, classification: bool, inference: bool):
    keys = jax.random.split(key, x.shape[0])
    output = jax.vmap(lambda xi, ki: model(xi, key=ki, inference=inference))(x, keys)
    if classification:
        loss = optax.softmax_cross_entropy_with_integer_labels(output, y).mean()
        return loss, jnp.mean(jnp.argmax(output, -1) == y)
    loss = jnp.mean((output - y) ** 2)
    return loss, loss


@eqx.filter_jit
def _train_step(model, opt_state, optimizer, x, y, key, classification):
    (loss, metric), grads = eqx.filter_value_and_grad(_loss_and_metric, has_aux=True)(
        model, x, y, key, classification, False
    )
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
    return eqx.apply_updates(model, updates), opt_state, loss, metric, optax.tree.norm(grads)


@eqx.filter_jit
def _eval_batch(model, x, y, classification):
    return _loss_and_metric(model, x, y, jax.random.key(0), classification, True)[1]


def evaluate(model: eqx.Module, x: np.ndarray, y: np.ndarray, kind: str, batch_size: int = 512) -> float:
    """Accuracy (classification) or mean squared error (regression) over a whole split."""
    total, count = 0.0, 0
    for xb, yb in batches(x, y, batch_size, shuffle=False):
        total += float(_eval_batch(model, jnp.asarray(xb), jnp.asarray(yb), kind == "classification")) * len(xb)
        count += len(xb)
    return total / count


def train(
    config: TrainConfig,
    *,
    data: SequenceDataset | None = None,
    progress: bool = True,
    devices: Sequence[jax.Device] | None = None,
    label: str | None = None,
    output: Path | None = None,
    resume: bool = False,
):
    """Run one configuration end to end; returns the final model and the run's record.

    Data-parallel over ``devices`` (default: every device of ``config.device``): each global
    batch is split over them, parameters and Optax state are replicated (see
    ``compressm_jax.sharding``). ``output``, ``resume`` and ``label`` as in the PyTorch
    trainer (see ``run_state``)."""
    data = data if data is not None else load_task(config.task, seed=config.seed, data_dir=config.data_dir, **config.task_options())
    kind = data.kind
    classification = kind == "classification"
    mesh = data_parallel_mesh(devices if devices is not None else resolve_devices(config.device))
    if config.batch_size % mesh.size:
        msg = f"`batch_size` {config.batch_size} is not a multiple of the number of devices ({mesh.size})"
        raise ValueError(msg)
    optimizer = build_optimizer(config)
    calibration = calibration_batch(config, data)
    batches = BatchStream(data.x_train, data.y_train, config.batch_size, config.seed)
    compressor = None
    horizon = config.resolved_horizon(data.x_train.shape[1])
    if config.compresses:
        schedule = config.schedule(metric_mode="max" if classification else "min")
        compressor = cj.Compressor(schedule, optimizer, gramians=config.gramians, horizon=horizon, seed=config.seed, calibration=calibration)
        compressor = ShardedCompressor.wrapping(compressor, mesh=mesh)  # reduced model re-replicated
    if resume:
        model, opt_state, key, record, best, compressor, state = _restore(output / CHECKPOINT, config, optimizer, compressor, batches, mesh)
        start_step, elapsed = state["step"], state["elapsed_s"]
        files = RunFiles(config, record, output, resume_step=start_step, write=jax.process_index() == 0)
        files.restore_accumulated(state["accumulated"])
    else:
        key = jax.random.key(config.seed)
        key, model_key = jax.random.split(key)
        model = build_model(config, data, model_key)
        opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
        model, opt_state = replicate((model, opt_state), mesh)
        record = RunRecord.start(config, kind, [layer.state_dim for _, layer in cj.compressible_layers(model)], horizon)
        record.hsv_snapshot(0, cj.hankel_singular_values(model, gramians=config.gramians, calibration=calibration, horizon=horizon))
        best, start_step, elapsed = None, 0, 0.0
        files = RunFiles(config, record, output, write=jax.process_index() == 0)
    record.device = ", ".join(f"{device.platform}:{device.id}" for device in mesh.devices.flat)
    validate = lambda m: evaluate(m, data.x_val, data.y_val, kind)  # noqa: E731
    bar = progress_bar(config, start_step, label=label, enabled=progress, metric=record.metric_name, backend=" (jax)")
    announce(bar, f"training on {record.device}" + (f", resumed at step {start_step}" if resume else ""))
    start = time.perf_counter() - elapsed

    def save_checkpoint(step: int) -> None:
        state = {"step": step, "train_config": config.to_dict(), "record": record.state(), "batches": batches.state(),
                 "compressor": None if compressor is None else compressor.state_dict(),
                 "accumulated": files.accumulated(), "elapsed_s": time.perf_counter() - start}
        pending = None if compressor is None or compressor.pending is None else (compressor.pending.model, compressor.pending.opt_state)
        save_training_state(files.checkpoint_path, model=model, opt_state=opt_state, key=key, state=state, best=best, pending=pending)
        files.checkpointed(step)

    try:
        with StopSignals() as signals:
            for step in bar:
                xb, yb = shard_batch(next(batches), mesh)
                key, step_key = jax.random.split(key)
                trained = _train_step(model, opt_state, optimizer, jnp.asarray(xb), jnp.asarray(yb), step_key, classification)
                loss, metric, lr = float(trained[2]), float(trained[3]), learning_rate_factor(step, config) * config.lr
                check_finite(step + 1, loss, float(trained[4]), lr, files)
                model, opt_state = trained[:2]
                files.training_step(loss, metric)
                if compressor is not None:  # compilation for new shapes is timed apart (jax_compile)
                    seen, shapes = len(compressor.events), array_shapes(model)
                    (model, opt_state, compressor), working, compiling = timed_apart(
                        partial(compressor.step, step + 1, model, opt_state, validate))
                    if array_shapes(model) != shapes:  # the reduced step compiled now, not in the next one
                        compiling += compile_ahead(_train_step, model, opt_state, optimizer, jnp.asarray(xb), jnp.asarray(yb), step_key, classification)
                    record.reduction_seconds += working
                    record.reduction_compile_seconds += compiling
                    for event in compressor.events[seen:]:
                        files.reduction(event, bar)
                if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                    dims = [layer.state_dim for _, layer in cj.compressible_layers(model)]
                    if files.evaluation(step + 1, time.perf_counter() - start, lr, validate(model), dims, partial(save_model, model)):
                        best = model
                if files.folder is not None and (files.checkpoint_due(step + 1) or signals.received):
                    save_checkpoint(step + 1)
                if signals.received:
                    raise RunInterrupted(step + 1, signals.received, files.folder)
                show_step(bar, loss, metric, record.current_dims)
    finally:
        bar.close()
        files.close()
    record.finish(
        time.perf_counter() - start,
        evaluate(model, data.x_test, data.y_test, kind),
        evaluate(best if best is not None else model, data.x_test, data.y_test, kind),
    )
    record.hsv_snapshot(config.steps, cj.hankel_singular_values(model, gramians=config.gramians, calibration=calibration, horizon=horizon))
    return model, record


def resolve_devices(name: str) -> list[jax.Device]:
    """The JAX devices ``--device`` names: "auto" the default backend's, "cpu", "gpu" (or
    "cuda", "cuda:N"), "tpu"; ValueError naming ``--device`` when there are none here."""
    platform, _, index = name.partition(":")
    platform = {"auto": None, "cuda": "gpu"}.get(platform, platform)
    try:
        found = jax.devices(platform)
    except RuntimeError:
        found = []
    if platform == "mps" or not found or (index and int(index) >= len(found)):
        msg = f"`--device` {name!r} is not available to JAX here (its default backend: {jax.default_backend()})"
        raise ValueError(msg)
    return [found[int(index)]] if index else found


def _restore(path: Path, config: TrainConfig, optimizer: optax.GradientTransformation, compressor: Any, batches: BatchStream, mesh: Any) -> tuple:
    """The model, Optax state, key, record, best model, compressor and trainer state of the
    checkpoint at ``path`` (model and state replicated over ``mesh``); restores ``batches``."""
    checkpoint = load_training_state(path)
    state = check_resumable(checkpoint.state, config, path)
    opt_state = load_optimizer(optimizer.init(eqx.filter(checkpoint.model, eqx.is_array)), checkpoint.optimizer, path)
    model, opt_state = replicate((checkpoint.model, opt_state), mesh)
    if compressor is not None:
        pending_model = pending_state = None
        if checkpoint.pending_model is not None:
            pending_state = load_optimizer(optimizer.init(eqx.filter(checkpoint.pending_model, eqx.is_array)), checkpoint.pending_optimizer, path)
            pending_model, pending_state = replicate((checkpoint.pending_model, pending_state), mesh)
        compressor = compressor.load_state_dict(state["compressor"], pending_model=pending_model, pending_optimizer=pending_state)
    batches.restore(state["batches"])
    record = RunRecord.from_state(config, state["record"])
    return model, opt_state, checkpoint.key, record, checkpoint.best, compressor, state
