"""Train a PyTorch SequenceModel while the Compressor shrinks it (CompreSSM), and record the run."""

from __future__ import annotations

import copy
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

import compressm_torch as ct

from ..tasks import SequenceDataset, batches, load_task
from ..torch_models import SelectiveSequenceModel, SequenceModel
from .batch_stream import BatchStream
from .checkpoint_torch import load_optimizer, load_training_state, save_model, save_training_state
from .config import TrainConfig
from .distributed import DataParallel
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
from .stability import StabilityLog
from .torch_objectives import training_objective


def build_model(config: TrainConfig, data: SequenceDataset) -> SequenceModel | SelectiveSequenceModel:
    classification = data.kind == "classification"
    d_output = data.num_classes if classification else data.d_output
    state_dim = config.state_dim if isinstance(config.state_dim, int) else list(config.state_dim)
    pooling = data.pooling
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
        layer_options=config.layer_options(),
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


def train(
    config: TrainConfig,
    *,
    data: SequenceDataset | None = None,
    progress: bool = True,
    label: str | None = None,
    output: Path | None = None,
    resume: bool = False,
) -> tuple[nn.Module, RunRecord]:
    """Run one configuration end to end; returns the final model and the run's record.

    With ``output``, the run keeps log.csv, metrics.json, best.safetensors and
    checkpoint.safetensors there as it goes (see ``run_state``); ``resume`` continues from
    that checkpoint. ``label`` names the progress bar (e.g. the arm and seed)."""
    data = data if data is not None else load_task(config.task, seed=config.seed, data_dir=config.data_dir, **config.task_options())
    kind = data.kind
    metric_mode = "max" if kind == "classification" else "min"
    parallel = DataParallel.from_environment(config.batch_size, config.device)  # under torchrun: DDP, one batch shard per rank
    calibration = calibration_batch(config, data)
    batches = BatchStream(data.x_train, data.y_train, config.batch_size, config.seed)
    schedule = config.schedule(metric_mode=metric_mode) if config.compresses else None
    horizon = config.resolved_horizon(data.x_train.shape[1])
    compressor = ct.Compressor(schedule, gramians=config.gramians, horizon=horizon, seed=config.seed, calibration=calibration) if schedule else None
    if resume:
        model, optimizer, record, best, state = _restore(output / CHECKPOINT, config, parallel.device, compressor, batches)
        start_step, elapsed = state["step"], state["elapsed_s"]
        files = RunFiles(config, record, output, resume_step=start_step, write=parallel.is_main)
        files.restore_accumulated(state["accumulated"])
    else:
        torch.manual_seed(config.seed)
        model = build_model(config, data).to(parallel.device)
        optimizer = build_optimizer(model, config)
        record = RunRecord.start(config, kind, [layer.state_dim for _, layer in ct.compressible_layers(model)], horizon)
        record.hsv_snapshot(0, ct.hankel_singular_values(model, gramians=config.gramians, calibration=calibration, horizon=horizon))
        best, start_step, elapsed = None, 0, 0.0
        files = RunFiles(config, record, output, write=parallel.is_main)
    record.device = str(parallel.device)  # where this part of the run trains
    stability = StabilityLog(config.hsv_every, config.steps, ct.reducible_layers, config.gramians, horizon) if config.hsv_every else None
    if stability is not None:
        with torch.no_grad():
            stability.observe(0, model)
    compressor = parallel.compressor(compressor)
    trained = parallel.wrap(model)
    validate = lambda m: parallel.evaluate(evaluate, m, data.x_val, data.y_val, kind)  # noqa: E731
    bar = progress_bar(config, start_step, label=label, enabled=progress and parallel.is_main, metric=record.metric_name)
    mps_note = " (reductions analysed in float64 on the CPU: MPS has no float64)" if parallel.device.type == "mps" else ""
    announce(bar, f"training on {parallel.device}{mps_note}" + (f", resumed at step {start_step}" if resume else ""))
    objective = training_objective(config, kind, partial(loss_and_metric, kind=kind))  # HNN, distillation
    start = time.perf_counter() - elapsed

    def save_checkpoint(step: int) -> None:
        state = {"step": step, "train_config": config.to_dict(), "record": record.state(), "batches": batches.state(),
                 "compressor": None if compressor is None else compressor.state_dict(),
                 "accumulated": files.accumulated(), "elapsed_s": time.perf_counter() - start}
        pending = None if compressor is None or compressor.pending is None else (compressor.pending.model, compressor.pending.optimizer)
        save_training_state(files.checkpoint_path, model=model, optimizer=optimizer, state=state, best=best, pending=pending)
        files.checkpointed(step)

    try:
        with StopSignals() as signals:
            for step in bar:
                xb, yb = parallel.shard(*next(batches))
                lr = learning_rate_factor(step, config)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * lr
                loss, metric = objective(trained, torch.from_numpy(xb).to(parallel.device), torch.from_numpy(yb).to(parallel.device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
                loss_value = loss.item()  # one host read per step (a device sync on GPUs)
                check_finite(step + 1, loss_value, float(grad_norm), lr * config.lr, files)
                optimizer.step()
                files.training_step(loss_value, metric)
                judged = model
                if compressor is not None:
                    events_before, tick = len(compressor.events), time.perf_counter()
                    trained, optimizer = compressor.step(step + 1, trained, optimizer, validate)
                    model = parallel.unwrap(trained)
                    record.reduction_seconds += time.perf_counter() - tick
                    for event in compressor.events[events_before:]:
                        files.reduction(event, bar)
                if stability is not None:
                    with torch.no_grad():
                        stability.observe(step + 1, judged, model if model is not judged else None)
                if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                    dims = [layer.state_dim for _, layer in ct.compressible_layers(model)]
                    if files.evaluation(step + 1, time.perf_counter() - start, lr * config.lr, validate(model), dims, partial(save_model, model)):
                        best = copy.deepcopy(model)
                stop = parallel.any(signals.received is not None)  # every rank stops at the same step
                if files.folder is not None and (files.checkpoint_due(step + 1) or stop):
                    save_checkpoint(step + 1)
                if stop:
                    raise RunInterrupted(step + 1, signals.received or "SIGTERM", files.folder)
                show_step(bar, loss_value, metric, record.current_dims)
    finally:
        bar.close()
        files.close()
    best = best if best is not None else model
    record.finish(
        time.perf_counter() - start,
        parallel.evaluate(evaluate, model, data.x_test, data.y_test, kind),
        parallel.evaluate(evaluate, best, data.x_test, data.y_test, kind),
    )
    record.hsv_snapshot(config.steps, ct.hankel_singular_values(model, gramians=config.gramians, calibration=calibration, horizon=horizon))
    if stability is not None:
        record.rank_stability = stability.report(schedule)
    return model, record


def _restore(
    path: Path, config: TrainConfig, device: torch.device, compressor: ct.Compressor | None, batches: BatchStream
) -> tuple[nn.Module, torch.optim.Optimizer, RunRecord, nn.Module | None, dict]:
    """The model, optimizer, record, best model and trainer state of the checkpoint at
    ``path``; restores ``compressor``, ``batches`` and the RNG states in place."""
    checkpoint = load_training_state(path, device)
    state = check_resumable(checkpoint.state, config, path)
    optimizer = load_optimizer(build_optimizer(checkpoint.model, config), checkpoint.optimizer, path)
    if compressor is not None:
        pending_optimizer = None
        if checkpoint.pending_model is not None:
            pending_optimizer = load_optimizer(build_optimizer(checkpoint.pending_model, config), checkpoint.pending_optimizer, path)
        compressor.load_state_dict(state["compressor"], pending_model=checkpoint.pending_model, pending_optimizer=pending_optimizer)
    batches.restore(state["batches"])
    return checkpoint.model, optimizer, RunRecord.from_state(config, state["record"]), checkpoint.best, state


__all__ = ["build_model", "build_optimizer", "evaluate", "save_model", "train"]
