"""Train a JAX (Equinox + Optax) SequenceModel while the Compressor shrinks it, and record the run.

The training step is ``eqx.filter_jit``-compiled; it recompiles once after each reduction
(new shapes), not at every step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from safetensors.numpy import save_file
from tqdm.auto import tqdm

import compressm_jax as cj
from compressm_jax.sharding import ShardedCompressor, data_parallel_mesh, replicate, shard_batch

from ..jax_models import (
    SelectiveSequenceModel,
    SequenceModel,
    load_state_dict,
    model_config,
    model_from_config,
    state_dict,
)
from ..tasks import SequenceDataset, batches, load_task
from .checkpoint import read_checkpoint
from .config import TrainConfig
from .record import RunRecord

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
            pooling="mean" if classification else "none",
            key=key,
        )
    return SequenceModel(
        data.d_input,
        data.num_classes if classification else data.d_output,
        config.d_model,
        config.state_dim if isinstance(config.state_dim, int) else list(config.state_dim),
        config.n_layers,
        layer=config.model,
        pooling="mean" if classification else "none",
        dropout=config.dropout,
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
    return eqx.apply_updates(model, updates), opt_state, loss, metric


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


def train(config: TrainConfig, *, data: SequenceDataset | None = None, progress: bool = True, devices: Sequence[jax.Device] | None = None):
    """Run one configuration end to end; returns the final model and the run's record.

    Data-parallel over ``devices`` (default: every device): each global batch is split over
    them, parameters and Optax state are replicated (see ``compressm_jax.sharding``)."""
    data = data if data is not None else load_task(config.task, seed=config.seed, data_dir=config.data_dir, **config.task_options())
    kind = data.kind
    classification = kind == "classification"
    key = jax.random.key(config.seed)
    key, model_key = jax.random.split(key)
    model = build_model(config, data, model_key)
    optimizer = build_optimizer(config)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    calibration = calibration_batch(config, data)
    mesh = data_parallel_mesh(devices)
    if config.batch_size % mesh.size:
        msg = f"`batch_size` {config.batch_size} is not a multiple of the number of devices ({mesh.size})"
        raise ValueError(msg)
    model, opt_state = replicate((model, opt_state), mesh)
    compressor = None
    if config.compresses:
        schedule = config.schedule(metric_mode="max" if classification else "min")
        compressor = cj.Compressor(schedule, optimizer, gramians=config.gramians, seed=config.seed, calibration=calibration)
        compressor = ShardedCompressor.wrapping(compressor, mesh=mesh)  # reduced model re-replicated
    record = RunRecord.start(config, kind, [layer.state_dim for _, layer in cj.compressible_layers(model)])
    record.hsv_snapshot(0, cj.hankel_singular_values(model, gramians=config.gramians, calibration=calibration))
    rng = np.random.default_rng(config.seed)
    train_batches = _endless(data, config.batch_size, rng)
    validate = lambda m: evaluate(m, data.x_val, data.y_val, kind)  # noqa: E731
    bar = tqdm(range(config.steps), disable=not progress, desc=f"{config.model} {config.task} (jax)", unit="step")
    start = time.perf_counter()
    for step in bar:
        xb, yb = shard_batch(next(train_batches), mesh)
        key, step_key = jax.random.split(key)
        model, opt_state, loss, metric = _train_step(model, opt_state, optimizer, jnp.asarray(xb), jnp.asarray(yb), step_key, classification)
        if compressor is not None:
            seen, tick = len(compressor.events), time.perf_counter()
            model, opt_state, compressor = compressor.step(step + 1, model, opt_state, validate)
            record.reduction_seconds += time.perf_counter() - tick
            for event in compressor.events[seen:]:
                record.reduction_event(event)
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            dims = [layer.state_dim for _, layer in cj.compressible_layers(model)]
            record.evaluation(step + 1, time.perf_counter() - start, validate(model), dims)
        bar.set_postfix(loss=f"{float(loss):.3f}", metric=f"{float(metric):.3f}", dims=",".join(str(d) for d in record.current_dims))
    record.finish(time.perf_counter() - start, evaluate(model, data.x_test, data.y_test, kind))
    record.hsv_snapshot(config.steps, cj.hankel_singular_values(model, gramians=config.gramians, calibration=calibration))
    return model, record


def _endless(data: SequenceDataset, batch_size: int, rng: np.random.Generator):
    while True:
        yield from batches(data.x_train, data.y_train, batch_size, rng=rng, shuffle=True, drop_last=len(data.x_train) >= batch_size)


def save_model(model: SequenceModel, path: str | Path) -> Path:
    """Safetensors with the same names and config metadata as the PyTorch checkpoints."""
    path = Path(path)
    arrays = {name: np.ascontiguousarray(value) for name, value in state_dict(model).items()}
    save_file(arrays, str(path), metadata={"config": json.dumps(model_config(model))})
    return path


def load_model(path: str | Path) -> SequenceModel | SelectiveSequenceModel:
    """A model from a checkpoint written by either backend; ValueError naming the file otherwise."""
    config, arrays = read_checkpoint(path, "numpy")
    model = model_from_config(config, jax.random.key(0))
    try:
        return load_state_dict(model, arrays)
    except ValueError as error:
        msg = f"checkpoint {path} does not fit its recorded architecture: {error}"
        raise ValueError(msg) from None
