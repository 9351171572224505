"""What both trainers share around the training step: the output folder's files as training
goes (log.csv, metrics.json at every evaluation, best.safetensors, checkpoint.safetensors),
stopping cleanly on SIGINT/SIGTERM, catching divergence, and the progress bar.

A run with an output folder writes ``checkpoint.safetensors`` every ``checkpoint_every``
steps (default: at every evaluation) and when it is interrupted; ``resume`` continues from it
bit for bit (model, optimizer, RNG states, data position, compressor, record, log).
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .checkpoint import metadata_json, read_header
from .config import TrainConfig
from .outputs import create_output, write_json
from .record import RunRecord
from .run_log import RunLog, describe_event

CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"


class RunInterrupted(Exception):
    """SIGINT or SIGTERM stopped the run after a checkpoint was written."""

    def __init__(self, step: int, signal_name: str, folder: Path | None):
        self.step, self.signal_name, self.folder = step, signal_name, folder
        where = f"checkpoint written; resume with: compressm train --resume {folder}" if folder else "no output folder, nothing kept"
        super().__init__(f"{signal_name} at step {step}: {where}")


class TrainingDiverged(ValueError):
    """A non-finite loss or gradient; the run stopped before applying that step."""

    def __init__(self, step: int, loss: float, grad_norm: float, lr: float, checkpoint_step: int | None, folder: Path | None):
        kept = (f"the last good checkpoint (step {checkpoint_step}) is in {folder / CHECKPOINT}"
                if folder is not None and checkpoint_step is not None else "no checkpoint was written")
        super().__init__(
            f"training diverged at step {step}: loss {loss:.4g}, gradient norm {grad_norm:.4g}, "
            f"learning rate {lr:.4g}; {kept}; try a smaller --lr"
        )


def learning_rate_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up from 0, then cosine decay to 0 (optax's warmup_cosine_decay_schedule)."""
    if step < config.warmup:
        return step / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def check_finite(step: int, loss: float, grad_norm: float, lr: float, run: RunFiles) -> None:
    """TrainingDiverged unless ``loss`` and ``grad_norm`` are finite (called before the
    optimizer applies the step, so neither the model nor a reduction sees NaN)."""
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        raise TrainingDiverged(step, loss, grad_norm, lr, run.checkpoint_step, run.folder)


def config_from_dict(values: Any) -> TrainConfig:
    """A ``TrainConfig`` from its ``to_dict()``; ValueError naming an unknown or bad field."""
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    if not isinstance(values, dict):
        msg = f"checkpoint field `train_config` must be a JSON object, got {type(values).__name__}"
        raise ValueError(msg)
    unknown = sorted(set(values) - names)
    if unknown:
        msg = f"checkpoint field `train_config.{unknown[0]}` is unknown (a checkpoint of another version?)"
        raise ValueError(msg)
    if isinstance(values.get("state_dim"), list):
        values = {**values, "state_dim": tuple(values["state_dim"])}
    try:
        return TrainConfig(**values)
    except TypeError as error:
        msg = f"checkpoint field `train_config` is malformed: {error}"
        raise ValueError(msg) from None


#: What may differ between a run and its resumption (where it runs and what it writes).
RESUMABLE_CHANGES = ("device", "checkpoint_every", "tensorboard")
_STATE_KEYS = {"step", "train_config", "record", "batches", "compressor", "accumulated", "elapsed_s"}


def check_resumable(state: Any, config: TrainConfig, path: Path) -> dict[str, Any]:
    """A checkpoint's trainer ``state`` checked (keys, types) and its run configuration
    compared with ``config``; ValueError naming the first field that differs."""
    if not isinstance(state, dict) or set(state) != _STATE_KEYS:
        msg = f"checkpoint {path}: field `state` needs exactly the keys {sorted(_STATE_KEYS)}"
        raise ValueError(msg)
    if isinstance(state["step"], bool) or not isinstance(state["step"], int) or not 0 < state["step"] <= config.steps:
        msg = f"checkpoint {path}: field `state.step` must be a step of the run (1..{config.steps}), got {state['step']!r}"
        raise ValueError(msg)
    if config.hsv_every:
        msg = "`--resume` does not continue rank-stability logging (--hsv-every); rerun the whole training instead"
        raise ValueError(msg)
    saved = config_from_dict(state["train_config"]).to_dict()
    for name, value in config.to_dict().items():
        if name not in RESUMABLE_CHANGES and saved[name] != value:
            msg = f"checkpoint {path} belongs to a run with `{name}` = {saved[name]!r}, not {value!r}"
            raise ValueError(msg)
    accumulated = state["accumulated"]
    if not isinstance(accumulated, dict) or set(accumulated) != {"loss", "metric", "batches"}:
        msg = f"checkpoint {path}: field `state.accumulated` needs the keys batches, loss, metric"
        raise ValueError(msg)
    return state


def resumed_config(folder: Path, device: str, checkpoint_every: int | None, tensorboard: bool) -> TrainConfig:
    """The configuration of the run whose checkpoint is in ``folder`` (read from the file's
    header, nothing loaded), on ``device``; ``checkpoint_every`` and ``tensorboard`` replace
    the run's when given. ValueError naming ``--resume`` when there is nothing to resume."""
    path = Path(folder) / CHECKPOINT
    if not path.is_file():
        msg = f"`--resume` {folder} holds no {CHECKPOINT}: nothing to resume (a run writes one at its first evaluation)"
        raise ValueError(msg)
    metadata, _ = read_header(path)
    state = metadata_json(metadata, "state", path)
    if not isinstance(state, dict) or "train_config" not in state:
        msg = f"checkpoint {path}: field `state.train_config` is missing"
        raise ValueError(msg)
    config = config_from_dict(state["train_config"])
    return config.replace(device=device, checkpoint_every=checkpoint_every or config.checkpoint_every,
                          tensorboard=tensorboard or config.tensorboard)


class StopSignals:
    """While active, SIGINT and SIGTERM set ``received`` instead of stopping the process (the
    trainer checks it after each step, writes a checkpoint and stops); the previous handlers
    come back at the first signal, so a second one acts at once (the checkpoint being written
    is atomic: the last one stays whole). Only in the main thread."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name
        for restored, handler in self._previous.items():  # a second signal acts at once
            signal.signal(restored, handler)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class RunFiles:
    """The files a run keeps up to date in ``folder`` (None: a run in memory, nothing written)."""

    def __init__(self, config: TrainConfig, record: RunRecord, folder: Path | None, *, resume_step: int | None = None, write: bool = True):
        self.config, self.record = config, record
        self.folder = create_output(folder) if write and folder is not None else None
        self.log = RunLog(self.folder, record.metric_name, tensorboard=config.tensorboard, resume_step=resume_step) if self.folder else None
        self.checkpoint_step = resume_step
        self._train_loss = self._train_metric = 0.0
        self._train_batches = 0

    @property
    def checkpoint_path(self) -> Path | None:
        return self.folder / CHECKPOINT if self.folder else None

    def checkpoint_due(self, step: int) -> bool:
        every = self.config.checkpoint_every or self.config.eval_every
        return self.folder is not None and (step % every == 0 or step == self.config.steps)

    def training_step(self, loss: float, metric: float) -> None:
        self._train_loss += loss
        self._train_metric += metric
        self._train_batches += 1

    def evaluation(self, step: int, wall_clock_s: float, lr: float, val_metric: float, dims: list[int], save_best: Callable[[Path], Any]) -> bool:
        """Record, log and write the evaluation at ``step`` (metrics.json; best.safetensors
        through ``save_best`` when the metric is the best so far); True when it is."""
        batches = self._train_batches
        train_loss = self._train_loss / batches if batches else None
        train_metric = self._train_metric / batches if batches else None
        self._train_loss = self._train_metric = 0.0
        self._train_batches = 0
        is_best = self.record.evaluation(step, wall_clock_s, val_metric, dims, train_loss)
        if self.folder is not None:
            self.log.evaluation(step, wall_clock_s, lr, train_loss, train_metric, val_metric, dims)
            if is_best:
                save_best(self.folder / BEST)
            write_json(self.folder / "metrics.json", self.record.metrics())
        return is_best

    def reduction(self, event: Any, bar: Any) -> None:
        self.record.reduction_event(event)
        announce(bar, describe_event(event))
        if self.log is not None:
            self.log.reduction(event, self.record.current_dims)

    def accumulated(self) -> dict[str, Any]:
        """The training-batch sums since the last evaluation (a checkpoint's copy)."""
        return {"loss": self._train_loss, "metric": self._train_metric, "batches": self._train_batches}

    def restore_accumulated(self, values: dict[str, Any]) -> None:
        self._train_loss, self._train_metric, self._train_batches = values["loss"], values["metric"], values["batches"]

    def checkpointed(self, step: int) -> None:
        self.checkpoint_step = step

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def progress_bar(config: TrainConfig, start: int, *, label: str | None, enabled: bool, metric: str, backend: str = "") -> tqdm:
    """The bar over steps ``start..steps``, named after ``label`` (arm and seed) or the model
    and task; its ``batch_<metric>`` is the training batch's metric."""
    name = label or f"{config.model} {config.task}{backend}"
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not enabled, desc=name, unit="step")
    bar.metric_name = f"batch_{'acc' if metric == 'accuracy' else metric}"
    return bar


def announce(bar: tqdm, text: str) -> None:
    """``text`` above the progress bar, after its name (nothing when the bar is off)."""
    if not bar.disable:
        bar.write(f"{bar.desc}: {text}")


def show_step(bar: tqdm, loss: float, metric: float, dims: list[int]) -> None:
    bar.set_postfix({"loss": f"{loss:.3f}", bar.metric_name: f"{metric:.3f}", "dims": ",".join(str(d) for d in dims)})
