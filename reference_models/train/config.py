"""The configuration of one training run, shared by the PyTorch and JAX trainers."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from compressm_core.schedule import ReductionSchedule

from ..tasks import TASKS

BACKENDS = ("torch", "jax")
MODELS = ("lru", "s5", "selective")
GRAMIANS = ("complex", "real_output")
#: The arms of ``compressm compare`` (see ``comparison``) and the default ones.
ARMS = ("full", "compressm", "small", "hnn", "distill", "truncate", "truncate_dims", "smallest", "random")
DEFAULT_ARMS = ("full", "compressm", "small")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run. ``tau=None`` trains without compression."""

    task: str = "mnist1d"
    backend: str = "torch"
    model: str = "lru"
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    ssm_lr_factor: float = 0.5
    weight_decay: float = 0.05
    warmup_steps: int = 100
    d_model: int = 64
    state_dim: int | tuple[int, ...] = 128
    n_layers: int = 2
    dropout: float = 0.0
    tau: float | None = 0.05
    mode: str = "tolerance"
    fraction: float = 0.1
    energy: str = "sum"
    reduce_every: int = 50
    reduce_until: float = 0.1
    reduce_from: int | None = None
    rollback_tolerance: float = 0.02
    selection: str = "largest"
    gramians: str = "complex"
    calibration_size: int = 32
    eval_every: int = 100
    hsv_every: int | None = None
    seed: int = 0
    data_dir: str | None = None
    data_file: str | None = None
    max_train: int | None = None
    hnn_weight: float = 0.0
    distill_weight: float = 0.0
    distill_temperature: float = 2.0
    teacher: str | None = None
    device: str = "auto"
    checkpoint_every: int | None = None
    tensorboard: bool = False

    def __post_init__(self) -> None:
        _choice("task", self.task, TASKS)
        if (self.task == "arrays") != (self.data_file is not None):
            msg = f"`data_file` goes with task 'arrays' (an .npz of your own sequences), got task={self.task!r}, data_file={self.data_file!r}"
            raise ValueError(msg)
        _choice("backend", self.backend, BACKENDS)
        _choice("model", self.model, MODELS)
        _choice("gramians", self.gramians, GRAMIANS)
        if self.model == "selective" and self.gramians != "complex":
            msg = f"`gramians` {self.gramians!r} needs a time-invariant model; selective layers rank states by energy (use 'complex')"
            raise ValueError(msg)
        for name in ("steps", "batch_size", "d_model", "n_layers", "eval_every", "reduce_every", "calibration_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                msg = f"`{name}` must be a positive integer, got {value!r}"
                raise ValueError(msg)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            msg = f"`lr` must be a positive number, got {self.lr!r}"
            raise ValueError(msg)
        dims = (self.state_dim,) if isinstance(self.state_dim, int) else self.state_dim
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dims):
            msg = f"`state_dim` must be a positive integer (or one per layer), got {self.state_dim!r}"
            raise ValueError(msg)
        if not 0 <= self.dropout < 1:
            msg = f"`dropout` must lie in [0, 1), got {self.dropout!r}"
            raise ValueError(msg)
        if self.compresses:
            self.schedule(metric_mode="max")  # validates tau, mode, energy, window, selection
        self._check_baseline_options()
        self._check_hsv_every()
        self._check_run_options()

    def _check_run_options(self) -> None:
        """Device, checkpoint interval and TensorBoard (``--device``, ``--checkpoint-every``, ``--tensorboard``)."""
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|mps|gpu|tpu|cuda(:\d+)?", self.device):
            msg = f"`device` must be 'auto', 'cpu', 'cuda', 'cuda:N', 'mps', 'gpu' or 'tpu', got {self.device!r}"
            raise ValueError(msg)
        every = self.checkpoint_every
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every <= 0):
            msg = f"`checkpoint_every` must be a positive integer or None (at every evaluation), got {every!r}"
            raise ValueError(msg)
        if not isinstance(self.tensorboard, bool):
            msg = f"`tensorboard` must be True or False, got {self.tensorboard!r}"
            raise ValueError(msg)

    def _check_hsv_every(self) -> None:
        """Rank-stability logging (see ``stability``): PyTorch, time-invariant layers."""
        if self.hsv_every is None:
            return
        if isinstance(self.hsv_every, bool) or not isinstance(self.hsv_every, int) or self.hsv_every <= 0:
            msg = f"`hsv_every` must be a positive integer or None, got {self.hsv_every!r}"
            raise ValueError(msg)
        if self.backend != "torch" or self.model not in ("lru", "s5"):
            msg = f"`hsv_every` needs backend 'torch' and model 'lru' or 's5', got backend={self.backend!r}, model={self.model!r}"
            raise ValueError(msg)

    def _check_baseline_options(self) -> None:
        """HNN regularisation and distillation (PyTorch only; see ``torch_objectives``)."""
        for name, valid, rule in (
            ("hnn_weight", lambda v: v >= 0, ">= 0"),
            ("distill_weight", lambda v: 0 <= v <= 1, "in [0, 1]"),
            ("distill_temperature", lambda v: v > 0, "> 0"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not valid(value):
                msg = f"`{name}` must be a finite number {rule}, got {value!r}"
                raise ValueError(msg)
        if (self.distill_weight > 0) != (self.teacher is not None):
            msg = f"distillation needs both `distill_weight` > 0 and a `teacher` checkpoint, got distill_weight={self.distill_weight!r}, teacher={self.teacher!r}"
            raise ValueError(msg)
        if self.backend != "torch" and (self.hnn_weight > 0 or self.distill_weight > 0):
            msg = f"`hnn_weight` and `distill_weight` need backend 'torch', got backend={self.backend!r}"
            raise ValueError(msg)
        if self.hnn_weight > 0 and self.model not in ("lru", "s5"):
            msg = f"`hnn_weight` needs a time-invariant model ('lru' or 's5'), got model={self.model!r}"
            raise ValueError(msg)

    @property
    def compresses(self) -> bool:
        return self.tau is not None or self.mode == "fixed"

    def schedule(self, *, metric_mode: str) -> ReductionSchedule:
        """The core's reduction schedule for this run (``metric_mode`` from the task)."""
        return ReductionSchedule(
            total_steps=self.steps,
            interval=self.reduce_every,
            reduce_until=self.reduce_until,
            start=self.reduce_from,
            mode=self.mode,
            tau=self.tau if self.mode == "tolerance" else None,
            fraction=self.fraction,
            energy=self.energy,
            rollback_tolerance=self.rollback_tolerance,
            metric_mode=metric_mode,
            selection=self.selection,
        )

    @property
    def warmup(self) -> int:
        """Warm-up steps actually used: ``warmup_steps``, at most a tenth of the run."""
        return min(self.warmup_steps, self.steps // 10)

    def task_options(self) -> dict[str, Any]:
        """Keyword options for ``load_task`` beyond name, seed and data_dir."""
        options = {"max_train": self.max_train} if self.max_train is not None else {}
        return options | ({"data_file": self.data_file} if self.data_file is not None else {})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if isinstance(self.state_dim, tuple):
            values["state_dim"] = list(self.state_dim)
        return values


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        msg = f"`{name}` {value!r} is unknown; choose one of: {', '.join(choices)}"
        raise ValueError(msg)
