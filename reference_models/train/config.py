"""The configuration of one training run, shared by the PyTorch and JAX trainers."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from compressm_core.schedule import ReductionSchedule

from .._indices import is_lru_ring
from ..tasks import TASKS

BACKENDS = ("torch", "jax")
MODELS = ("lru", "s5", "selective")
GRAMIANS = ("complex", "real_output")
#: The arms of ``compressm compare`` (see ``comparison``) and the default ones.
ARMS = ("full", "compressm", "small", "hnn", "distill", "truncate", "truncate_dims", "smallest", "random")
DEFAULT_ARMS = ("full", "compressm", "small")
#: The LRU layers' own pole ring (r_min, r_max), the default of ``--r-min`` and ``--r-max``.
LRU_RING = (0.9, 0.999)


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
    #: The LRU's initial poles lie uniformly on the ring lru_r_min <= |lambda| <= lru_r_max.
    lru_r_min: float = LRU_RING[0]
    lru_r_max: float = LRU_RING[1]
    tau: float | None = 0.05
    mode: str = "tolerance"
    fraction: float = 0.1
    energy: str = "sum"
    reduce_every: int | None = None
    reduce_until: float = 0.1
    reduce_from: int | None = None
    budget: str = "per_check"
    timing: str = "steps"
    certify_over: int = 2
    chance_margin: float = 0.05
    safety_net: bool | None = None
    recovery_steps: int | None = None
    rollback_tolerance: float = 0.02
    after_rollback: str = "stop"
    optimizer_state: str = "slice"  # better than "reset" in 7 of 10 paired runs (docs/results.md)
    selection: str = "largest"
    gramians: str = "complex"
    #: The Gramians' horizon: "sequence" (the training sequences' length, time-limited Gramians),
    #: None (infinite, the CompreSSM authors' choice) or a number of steps.
    horizon: int | str | None = "sequence"
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
        for name in ("steps", "batch_size", "d_model", "n_layers", "eval_every", "calibration_size"):
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
            self._check_window()
            try:
                self.schedule(metric_mode="max")  # validates tau, mode, energy, budget, timing, net
            except ValueError as error:
                raise ValueError(_with_flags(str(error))) from None
        self._check_horizon()
        self._check_pole_ring()
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

    def _check_horizon(self) -> None:
        value = self.horizon
        if value is None or (isinstance(value, str) and value == "sequence"):
            return
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            msg = (
                f"`horizon` must be 'sequence' (the length of the training sequences), None (infinite) "
                f"or a positive integer, got {value!r}"
            )
            raise ValueError(msg)

    def _check_pole_ring(self) -> None:
        """The LRU's pole ring (``--r-min``, ``--r-max``): inside the unit circle, LRU only."""
        r_min, r_max = self.lru_r_min, self.lru_r_max
        numbers = all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in (r_min, r_max))
        if not (numbers and is_lru_ring(r_min, r_max)):
            msg = (
                f"`lru_r_min` (--r-min) and `lru_r_max` (--r-max) must satisfy 0 <= lru_r_min <= lru_r_max < 1 and lru_r_max > 0 "
                f"(the moduli of the LRU's initial poles), got lru_r_min={r_min!r}, lru_r_max={r_max!r}"
            )
            raise ValueError(msg)
        if self.model != "lru" and (r_min, r_max) != LRU_RING:
            msg = (
                f"`lru_r_min` (--r-min) and `lru_r_max` (--r-max) set the pole ring of LRU layers; model "
                f"{self.model!r} has none, got lru_r_min={r_min!r}, lru_r_max={r_max!r} (leave them at {LRU_RING[0]} and {LRU_RING[1]})"
            )
            raise ValueError(msg)

    def layer_options(self) -> dict[str, float]:
        """Keyword options for the SSM layers' constructor: the LRU's pole ring, none for other layers."""
        return {"r_min": self.lru_r_min, "r_max": self.lru_r_max} if self.model == "lru" else {}

    def resolved_horizon(self, sequence_length: int) -> int | None:
        """The Gramians' horizon in steps for training sequences of ``sequence_length``
        (``horizon="sequence"``), or None (infinite, and for selective models, which have no
        Gramians: their energies are sums over the calibration sequences)."""
        if self.model == "selective":
            return None
        return sequence_length if self.horizon == "sequence" else self.horizon

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

    def _check_window(self) -> None:
        """The reduction window against the run length, in the words of the CLI flags."""
        if isinstance(self.reduce_until, bool) or not isinstance(self.reduce_until, (int, float)) or not 0 < self.reduce_until <= 1:
            return  # ReductionSchedule names the value
        end = math.floor(round(self.reduce_until * self.steps, 9))
        if end < 1:
            msg = (
                f"--steps {self.steps} with --reduce-until {self.reduce_until} leaves no step for a reduction "
                f"check (the window ends at step floor({self.reduce_until} x {self.steps}) = {end}); "
                f"raise --steps to at least {math.ceil(1 / self.reduce_until)} or --reduce-until, or pass --no-compress"
            )
            raise ValueError(msg)
        every = self.reduce_every if isinstance(self.reduce_every, int) and self.reduce_every > 0 else max(1, end // 4)
        first = self.reduce_from if isinstance(self.reduce_from, int) and self.reduce_from >= 0 else every
        if first > end:
            given = f"--reduce-from {self.reduce_from}" if self.reduce_from is not None else f"--reduce-every {every} (the first check when --reduce-from is not given)"
            msg = (
                f"the first reduction check, step {first} from {given}, comes after the end of the reduction window, "
                f"step {end} = floor(--reduce-until {self.reduce_until} x --steps {self.steps}); lower "
                f"{'--reduce-from' if self.reduce_from is not None else '--reduce-every (or leave it out: a quarter of the window)'}, "
                "or raise --reduce-until or --steps"
            )
            raise ValueError(msg)

    @property
    def compresses(self) -> bool:
        return self.tau is not None or self.mode in ("fixed", "pragmatic")

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
            budget=self.budget,
            timing=self.timing,
            certify_over=self.certify_over,
            chance_margin=self.chance_margin,
            safety_net=self.safety_net,
            recovery_steps=self.recovery_steps,
            rollback_tolerance=self.rollback_tolerance,
            after_rollback=self.after_rollback,
            metric_mode=metric_mode,
            selection=self.selection,
            optimizer_state=self.optimizer_state,
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


#: ``ReductionSchedule`` argument -> the ``TrainConfig`` field and CLI flag that set it.
_SCHEDULE_FLAGS = {
    "total_steps": "steps", "interval": "reduce_every", "start": "reduce_from",
    "reduce_until": "reduce_until", "mode": "mode", "tau": "tau", "fraction": "fraction",
    "energy": "energy", "budget": "budget", "timing": "timing", "certify_over": "certify_over",
    "chance_margin": "chance_margin", "safety_net": "safety_net", "recovery_steps": "recovery_steps",
    "rollback_tolerance": "rollback_tolerance", "after_rollback": "after_rollback", "selection": "selection",
    "optimizer_state": "optimizer_state",
}


def _with_flags(message: str) -> str:
    """A ``ReductionSchedule`` error in the names of the config fields and CLI flags."""
    for argument, name in _SCHEDULE_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        message = message.replace(f"`{argument}`", f"`{name}` ({flag})")
    return message


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        msg = f"`{name}` {value!r} is unknown; choose one of: {', '.join(choices)}"
        raise ValueError(msg)
