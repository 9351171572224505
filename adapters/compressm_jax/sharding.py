"""Data-parallel training over several devices with ``jax.sharding``, and reductions within it.

    mesh = data_parallel_mesh()                        # every device, one "data" axis
    model, opt_state = replicate((model, opt_state), mesh)
    compressor = ShardedCompressor(schedule, optimizer, mesh=mesh)
    for step in range(1, steps + 1):
        x, y = shard_batch((x, y), mesh)               # rows split over the devices
        model, opt_state = train_step(model, opt_state, x, y)   # jit; XLA all-reduces the gradients
        model, opt_state, compressor = compressor.step(step, model, opt_state, evaluate)

Parameters and Optax state are replicated: every device holds the same copy, and the
jitted step keeps them so (one program, replicated outputs). A reduction runs once, in this
process, on a host copy of each layer; the reduced model and the new Optax state are then
placed replicated on every device again, so every parameter and state leaf has one sharding
and the next step recompiles once, for the new shapes. A rollback (the safety net, after
recovery training) returns the checkpoint, the inputs of the cut, which are still replicated. (One process drives every device here; several hosts would also need
``jax.distributed.initialize`` and a global mesh.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import equinox as eqx
import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .compressor import Compressor

DATA_AXIS = "data"
Tree = TypeVar("Tree")


def data_parallel_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh (axis "data") over ``devices`` (default: every device)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        msg = "`devices` is empty; give at least one device"
        raise ValueError(msg)
    return Mesh(np.array(devices), (DATA_AXIS,))


def replicate(tree: Tree, mesh: Mesh) -> Tree:
    """Every array leaf of ``tree`` placed whole on every device of ``mesh``."""
    sharding = NamedSharding(mesh, PartitionSpec())
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.device_put(arrays, sharding), static)


def shard_batch(batch: Tree, mesh: Mesh) -> Tree:
    """Every array leaf of ``batch`` split along its first axis over the "data" axis of ``mesh``."""
    size = mesh.shape[DATA_AXIS]
    for leaf in jax.tree_util.tree_leaves(batch):
        if np.shape(leaf)[0] % size:
            msg = f"a batch of {np.shape(leaf)[0]} rows does not split over {size} devices; use a batch size divisible by {size}"
            raise ValueError(msg)
    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))


@dataclass(frozen=True)
class ShardedCompressor(Compressor):
    """A ``Compressor`` whose reduced model and Optax state come back replicated over ``mesh``
    (default: every device)."""

    mesh: Mesh | None = None

    @classmethod
    def wrapping(cls, compressor: Compressor, **options: Any) -> ShardedCompressor:
        """A sharded compressor with the settings, state and events of ``compressor``."""
        fields = {f.name: getattr(compressor, f.name) for f in dataclasses.fields(compressor)}
        return cls(**fields, **options)

    def step(
        self,
        step: int,
        model: eqx.Module,
        opt_state: optax.OptState,
        evaluate: Callable[[eqx.Module], float],
    ) -> tuple[eqx.Module, optax.OptState, ShardedCompressor]:
        """The model, state and compressor to continue with after ``step``."""
        mesh = self.mesh or data_parallel_mesh()

        def evaluate_replicated(candidate: eqx.Module) -> float:  # as it will be trained
            return evaluate(candidate if candidate is model else replicate(candidate, mesh))

        new_model, new_state, following = super().step(step, model, opt_state, evaluate_replicated)
        restored = self.pending is not None and new_model is self.pending.model  # still replicated
        if new_model is not model and not restored:
            new_model, new_state = replicate((new_model, new_state), mesh)
        return new_model, new_state, following
