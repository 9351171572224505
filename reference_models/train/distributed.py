"""Data parallelism for the PyTorch trainer under ``torchrun``: process group, batch shards,
DDP, metrics averaged over ranks. A single process (no ``WORLD_SIZE`` > 1) is unchanged.

Every rank draws the same global batch of ``batch_size`` (same seed) and trains on its
contiguous block of ``batch_size / world_size`` rows; DDP averages the gradients, which is the
gradient of the global batch's mean loss. Only rank 0 writes (see ``is_main_process``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from compressm_torch import Compressor
from compressm_torch.distributed import DistributedCompressor

Evaluate = Callable[[nn.Module, np.ndarray, np.ndarray, str], float]


def is_main_process() -> bool:
    """False on every rank but 0 of an initialised process group."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def resolve_device(name: str) -> torch.device:
    """``name`` as a torch device; "auto" is CUDA, then MPS, then the CPU. ValueError naming
    ``--device`` when that device is not available here."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    available = {"cpu": True, "mps": torch.backends.mps.is_available(), "cuda": torch.cuda.is_available()}
    kind, _, index = name.partition(":")
    if not available.get(kind, False) or (index and int(index) >= torch.cuda.device_count()):
        msg = f"`--device` {name!r} is not available here (available: {', '.join(k for k, ok in available.items() if ok)})"
        raise ValueError(msg)
    return torch.device(name)


@dataclass(frozen=True)
class DataParallel:
    """This process's place in the run: rank, number of processes, device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_environment(cls, batch_size: int, device: str = "auto") -> DataParallel:
        """One process on ``device`` (see ``resolve_device``), or, when ``WORLD_SIZE`` > 1,
        torchrun's process group: NCCL with one GPU per ``LOCAL_RANK`` when CUDA is available
        (and ``device`` is "auto" or "cuda"), gloo on CPU otherwise."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls(device=resolve_device(device))
        if batch_size % world_size:
            msg = f"`batch_size` {batch_size} is not a multiple of the number of processes (WORLD_SIZE={world_size})"
            raise ValueError(msg)
        local = torch.device("cpu")
        if torch.cuda.is_available() and device in ("auto", "cuda"):
            local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if local.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This rank's contiguous block of a global batch (or split)."""
        if self.world_size == 1:
            return x, y
        start, stop = (
            (len(x) * self.rank) // self.world_size,
            (len(x) * (self.rank + 1)) // self.world_size,
        )
        return x[start:stop], y[start:stop]

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel (which makes rank 0's weights everyone's)."""
        if self.world_size == 1:
            return model
        return DistributedDataParallel(
            model, device_ids=[self.device] if self.device.type == "cuda" else None
        )

    @staticmethod
    def unwrap(model: nn.Module) -> nn.Module:
        return model.module if isinstance(model, DistributedDataParallel) else model

    def compressor(
        self, compressor: Compressor | None
    ) -> Compressor | DistributedCompressor | None:
        """``compressor`` made rank-consistent (see ``compressm_torch.distributed``)."""
        if compressor is None or self.world_size == 1:
            return compressor
        return DistributedCompressor.wrapping(compressor)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is True on any rank (the same answer on every rank), e.g. a stop
        signal that reached the ranks at different steps."""
        if self.world_size == 1:
            return flag
        total = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(total)
        return bool(total.item() > 0)

    def evaluate(
        self, evaluate: Evaluate, model: nn.Module, x: np.ndarray, y: np.ndarray, kind: str
    ) -> float:
        """``evaluate`` over the whole split: each rank takes its shard, the means are combined
        weighted by shard size (the same float on every rank)."""
        module = self.unwrap(model)
        if self.world_size == 1:
            return evaluate(module, x, y, kind)
        xs, ys = self.shard(x, y)
        local = evaluate(module, xs, ys, kind) * len(xs) if len(xs) else 0.0
        total = torch.tensor([local, len(xs)], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total[0] / total[1])
