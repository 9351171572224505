"""Train a PyTorch SequenceModel while the Compressor shrinks it (CompreSSM), and record the run."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from functools import partial

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import compressm_torch as ct

from ..tasks import SequenceDataset, batches, load_task
from ..torch_models import SelectiveSequenceModel, SequenceModel
from .checkpoint_torch import save_model
from .config import TrainConfig
from .distributed import DataParallel
from .record import RunRecord
from .stability import StabilityLog
from .torch_objectives import training_objective


def build_model(config: TrainConfig, data: SequenceDataset) -> SequenceModel | SelectiveSequenceModel:
    classification = data.kind == "classification"
    d_output = data.num_classes if classification else data.d_output
    state_dim = config.state_dim if isinstance(config.state_dim, int) else list(config.state_dim)
    pooling = "mean" if classification else "none"
    if config.model == "selective":
        return SelectiveSequenceModel(data.d_input, d_output, config.d_model, state_dim, config.n_layers, pooling=pooling)
    return SequenceModel(
        d_input=data.d_input,
        d_output=d_output,
        d_model=config.d_model,
        state_dim=state_dim,
        n_layers=config.n_layers,
        layer=config.model,
        pooling=pooling,
        dropout=config.dropout,
    )


def calibration_batch(config: TrainConfig, data: SequenceDataset) -> torch.Tensor | None:
    """The first ``calibration_size`` training sequences, on which selective layers' Gramians
    are computed at every reduction check; None for time-invariant models (not needed)."""
    return torch.from_numpy(data.x_train[: config.calibration_size]) if config.model == "selective" else None


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; SSM parameters get ``ssm_lr_factor * lr`` and no weight decay (LRU practice)."""
    ssm_names = {name for name, _ in ct.compressible_layers(model)}
    ssm, other = [], []
    for name, param in model.named_parameters():
        (ssm if name.rpartition(".")[0] in ssm_names else other).append(param)
    return torch.optim.AdamW(
        [
            {"params": ssm, "lr": config.lr * config.ssm_lr_factor, "weight_decay": 0.0, "base_lr": config.lr * config.ssm_lr_factor},
            {"params": other, "lr": config.lr, "weight_decay": config.weight_decay, "base_lr": config.lr},
        ]
    )


def learning_rate_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up from 0, then cosine decay to 0 (optax's warmup_cosine_decay_schedule)."""
    if step < config.warmup:
        return step / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _endless_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> Iterator[tuple]:
    rng = np.random.default_rng(seed)
    while True:
        yield from batches(x, y, batch_size, rng=rng, shuffle=True, drop_last=len(x) >= batch_size)


def loss_and_metric(model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str) -> tuple[torch.Tensor, float]:
    """Cross-entropy and accuracy (classification) or MSE and MSE (regression)."""
    output = model(x)
    if kind == "classification":
        loss = nn.functional.cross_entropy(output, y)
        return loss, float((output.argmax(-1) == y).float().mean())
    loss = nn.functional.mse_loss(output, y)
    return loss, float(loss.detach())


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, kind: str, batch_size: int = 512) -> float:
    """Accuracy (classification) or mean squared error (regression) over a whole split."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for xb, yb in batches(x, y, batch_size, shuffle=False):
        _, metric = loss_and_metric(model, torch.from_numpy(xb).to(device), torch.from_numpy(yb).to(device), kind)
        total += metric * len(xb)
        count += len(xb)
    model.train()
    return total / count


def train(config: TrainConfig, *, data: SequenceDataset | None = None, progress: bool = True) -> tuple[nn.Module, RunRecord]:
    """Run one configuration end to end; returns the final model and the run's record."""
    torch.manual_seed(config.seed)
    data = data if data is not None else load_task(config.task, seed=config.seed, data_dir=config.data_dir, **config.task_options())
    kind = data.kind
    metric_mode = "max" if kind == "classification" else "min"
    model = build_model(config, data)
    optimizer = build_optimizer(model, config)
    calibration = calibration_batch(config, data)
    compressor = ct.Compressor(config.schedule(metric_mode=metric_mode), gramians=config.gramians, seed=config.seed, calibration=calibration) if config.compresses else None
    record = RunRecord.start(config, kind, [layer.state_dim for _, layer in ct.compressible_layers(model)])
    record.hsv_snapshot(0, ct.hankel_singular_values(model, gramians=config.gramians, calibration=calibration))
    stability = StabilityLog(config.hsv_every, config.steps, ct.reducible_layers, config.gramians) if config.hsv_every else None
    if stability is not None:
        with torch.no_grad():
            stability.observe(0, model)
    parallel = DataParallel.from_environment(config.batch_size)  # under torchrun: DDP, one batch shard per rank
    model.to(parallel.device)
    compressor = parallel.compressor(compressor)
    trained = parallel.wrap(model)
    train_batches = _endless_batches(data.x_train, data.y_train, config.batch_size, config.seed)
    validate = lambda m: parallel.evaluate(evaluate, m, data.x_val, data.y_val, kind)  # noqa: E731
    bar = tqdm(range(config.steps), disable=not progress or not parallel.is_main, desc=f"{config.model} {config.task}", unit="step")
    objective = training_objective(config, kind, partial(loss_and_metric, kind=kind))  # HNN, distillation
    start = time.perf_counter()
    for step in bar:
        xb, yb = parallel.shard(*next(train_batches))
        factor = learning_rate_factor(step, config)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        loss, metric = objective(trained, torch.from_numpy(xb).to(parallel.device), torch.from_numpy(yb).to(parallel.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        judged = model
        if compressor is not None:
            events_before, tick = len(compressor.events), time.perf_counter()
            trained, optimizer = compressor.step(step + 1, trained, optimizer, validate)
            model = parallel.unwrap(trained)
            record.reduction_seconds += time.perf_counter() - tick
            for event in compressor.events[events_before:]:
                record.reduction_event(event)
        if stability is not None:
            with torch.no_grad():
                stability.observe(step + 1, judged, model if model is not judged else None)
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            dims = [layer.state_dim for _, layer in ct.compressible_layers(model)]
            record.evaluation(step + 1, time.perf_counter() - start, validate(model), dims)
        bar.set_postfix(loss=f"{loss.item():.3f}", metric=f"{metric:.3f}", dims=",".join(str(d) for d in record.current_dims))
    record.finish(time.perf_counter() - start, parallel.evaluate(evaluate, model, data.x_test, data.y_test, kind))
    record.hsv_snapshot(config.steps, ct.hankel_singular_values(model, gramians=config.gramians, calibration=calibration))
    if stability is not None:
        record.rank_stability = stability.report(config.schedule(metric_mode=metric_mode) if config.compresses else None)
    return model, record




__all__ = ["build_model", "build_optimizer", "evaluate", "save_model", "train"]
