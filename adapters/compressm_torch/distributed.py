"""The reduction schedule under DistributedDataParallel: every rank ends a check with the same model.

    compressor = DistributedCompressor(schedule)   # or DistributedCompressor.wrapping(compressor)
    model = DistributedDataParallel(module)
    for step in range(1, steps + 1):
        ...  # forward through ``model``, backward, optimizer.step()
        model, optimizer = compressor.step(step, model, optimizer, evaluate)

At a check step, on every rank, in this order:
- the plan: rank 0 computes the HSVs and new ranks and broadcasts them with its schedule
  state (the run budget's energies), so every rank reduces the same layers to the same ranks
  (HSVs from different LAPACK builds or devices can differ in the last bits, which near a
  threshold would change a rank); under certified timing the certificate's memory is kept
  on rank 0, which decides;
- the reduced model: every rank computes it, then takes rank 0's parameters and buffers by
  broadcast (one model-sized broadcast, as at DDP's construction), so it is bitwise equal on
  every rank;
- the metric: ``evaluate`` runs on every rank with the unwrapped module and the values are
  averaged over ranks, so every decision that reads it (the safety net's judgement, the
  chance level of certified timing) is the same everywhere (each rank may evaluate its own
  equal-sized shard of the validation data);
- the optimizer: rebuilt by ``transfer_optimizer`` (carried state is already equal on every
  rank; the reduced layers' parameters start afresh or keep sliced moments);
- the wrapper: a new DistributedDataParallel over the reduced module, with the old one's
  options (DDP's gradient buckets and hooks are built per parameter and cannot follow new
  shapes). DDP checks at construction that every rank has the same parameter shapes.
A rollback (the safety net, after recovery training) returns the checkpoint's module,
wrapped anew, and optimizer on every rank: they were equal on every rank when the cut was made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .compressor import Compressor

Model = nn.Module | DistributedDataParallel


@dataclass
class DistributedCompressor(Compressor):
    """A ``Compressor`` for data-parallel training; call ``step`` on every rank at every step.

    ``model`` may be a ``DistributedDataParallel`` wrapper (a new one is returned after a kept
    reduction, with the old one's devices, process group, ``find_unused_parameters``,
    ``gradient_as_bucket_view`` and ``static_graph``, updated by ``ddp_options``, e.g. a bucket
    size) or a plain module whose gradients the caller synchronises. Rank 0 of
    ``process_group`` (default: the default group) decides.
    """

    process_group: dist.ProcessGroup | None = None
    ddp_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def wrapping(cls, compressor: Compressor, **options: Any) -> DistributedCompressor:
        """A distributed compressor with the settings, state and events of ``compressor``."""
        fields = {f.name: getattr(compressor, f.name) for f in dataclasses.fields(compressor)}
        return cls(**fields, **options)

    def plan(self, model: nn.Module) -> dict[str, int]:
        """Rank 0's plan and schedule state, on every rank."""
        _require_process_group()
        plan = [(super().plan(model), self.state) if dist.get_rank(self.process_group) == 0 else None]
        dist.broadcast_object_list(
            plan, group=self.process_group, group_src=0, device=_object_device(model)
        )
        ranks, self.state = plan[0]
        return ranks

    def step(
        self,
        step: int,
        model: Model,
        optimizer: torch.optim.Optimizer,
        evaluate: Callable[[nn.Module], float],
        *,
        schedulers: Sequence[Any] = (),
    ) -> tuple[Model, torch.optim.Optimizer]:
        """The model and optimizer to train on from here, the same on every rank."""
        _require_process_group()
        module = model.module if isinstance(model, DistributedDataParallel) else model

        def evaluate_everywhere(candidate: nn.Module) -> float:
            if candidate is not module:  # the reduced model: rank 0's values everywhere first
                broadcast_module(candidate, self.process_group)
            return _rank_mean(evaluate(candidate), self.process_group, _device(candidate))

        new_module, new_optimizer = super().step(
            step, module, optimizer, evaluate_everywhere, schedulers=schedulers
        )
        if new_module is module:
            return model, optimizer
        if isinstance(model, DistributedDataParallel):
            return self._rewrap(model, new_module), new_optimizer
        return new_module, new_optimizer

    def _rewrap(self, old: DistributedDataParallel, module: nn.Module) -> DistributedDataParallel:
        options = {
            "device_ids": old.device_ids,
            "output_device": old.output_device,
            "dim": old.dim,
            "process_group": old.process_group,
            "find_unused_parameters": old.find_unused_parameters,
            "gradient_as_bucket_view": old.gradient_as_bucket_view,
            "static_graph": old.static_graph,
            "init_sync": False,  # broadcast already, before the metric was taken
        }
        return DistributedDataParallel(module, **{**options, **self.ddp_options})


@torch.no_grad()
def broadcast_module(module: nn.Module, group: dist.ProcessGroup | None = None) -> None:
    """Overwrite, in place on every rank, every parameter and buffer of ``module`` with the
    group's rank 0 values (same names and shapes on every rank): one flat broadcast per dtype."""
    by_kind: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for _, tensor in sorted(module.state_dict(keep_vars=True).items()):
        by_kind.setdefault((tensor.dtype, tensor.device), []).append(tensor.data)
    for tensors in by_kind.values():
        flat = torch.cat([tensor.reshape(-1) for tensor in tensors])
        dist.broadcast(flat, group=group, group_src=0)
        offset = 0
        for tensor in tensors:
            tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()


def _require_process_group() -> None:
    if not dist.is_initialized():
        msg = "DistributedCompressor needs an initialised process group (torch.distributed.init_process_group)"
        raise RuntimeError(msg)


def _rank_mean(value: float, group: dist.ProcessGroup | None, device: torch.device) -> float:
    total = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(total, group=group)
    return float(total) / dist.get_world_size(group)


def _device(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _object_device(module: nn.Module) -> torch.device | None:
    """``broadcast_object_list`` stages objects on a CUDA device for NCCL."""
    device = _device(module)
    return device if device.type == "cuda" else None
