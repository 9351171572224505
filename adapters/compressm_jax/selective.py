"""Selective (time-varying, Mamba-style) layers in Equinox models: their state energy on
calibration inputs, and their reduction by keeping state indices (as ``compressm_torch``).

Equinox has no forward hooks: ``layer_inputs`` swaps each selective layer for a recorder
that notes its input and calls the layer, and returns the noted inputs from the function it
``jax.vmap``s over the calibration sequences (so they are values of that trace).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import numpy as np

from compressm_core import ltv
from compressm_core.layers import LayerReduction, Selection, energy_spectrum, selected_states

from .interface import ReducibleSelectiveSSM
from .pytree import compressible_layers, replace_layers


class _Recorder(eqx.Module):
    """Calls ``layer`` and appends its input to ``sink`` (a value of the trace it runs in)."""

    layer: eqx.Module
    sink: list = eqx.field(static=True)

    def __call__(self, u: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
        self.sink.append(u)
        return self.layer(u, *args, **kwargs)


def layer_inputs(model: eqx.Module, calibration: Any) -> dict[str, np.ndarray]:
    """What each selective layer receives when ``model`` runs on each sequence of
    ``calibration`` (S, L, d_input), called as ``jax.vmap(model)``: name -> (S, L, H).

    The model must call its selective layers itself, once per sequence, and not inside a
    ``jax.jit`` or ``jax.lax.scan`` of its own (their inputs could not leave that trace).
    """
    calibration = np.asarray(calibration)
    if calibration.ndim != 3 or min(calibration.shape[:2]) < 1:
        msg = f"`calibration` must be a batch of sequences (batch, L, d_input), got shape {calibration.shape}"
        raise ValueError(msg)
    layers = dict(selective_layers(model))
    sinks: dict[str, list] = {name: [] for name in layers}
    recording = replace_layers(
        model, {name: _Recorder(layer, sinks[name]) for name, layer in layers.items()}
    )

    def inputs_of(sequence: jax.Array) -> dict[str, jax.Array]:
        for sink in sinks.values():
            sink.clear()
        recording(sequence)
        missing = [name for name, sink in sinks.items() if len(sink) != 1]
        if missing:
            msg = f"selective layers {missing} were not called once per sequence by the model"
            raise ValueError(msg)
        return {name: sink[0] for name, sink in sinks.items()}

    try:
        captured = jax.vmap(inputs_of)(jax.numpy.asarray(calibration))
    except jax.errors.UnexpectedTracerError:
        msg = (
            f"the inputs of the selective layers {list(layers)} could not be read: the model "
            "calls them inside a JAX transformation of its own (jit, vmap, scan)"
        )
        raise ValueError(msg) from None
    return {name: np.asarray(value) for name, value in captured.items()}


def selective_layers(model: eqx.Module) -> list[tuple[str, ReducibleSelectiveSSM]]:
    """The (dotted name, layer) pairs of every ``ReducibleSelectiveSSM`` in the pytree, in order."""
    return [
        (name, layer)
        for name, layer in compressible_layers(model)
        if isinstance(layer, ReducibleSelectiveSSM)
    ]


def state_energies(model: eqx.Module, calibration: Any) -> dict[str, np.ndarray]:
    """Per selective layer, the energy of each state index (N,), float64, summed over channels:
    ``s_i = sum_h p_i q_i`` from the diagonals of the time-averaged Gramians of the layer's
    time-varying system on the ``calibration`` sequences (S, L, d_input), averaged over them."""
    inputs = layer_inputs(model, calibration)
    energies = {}
    for name, layer in selective_layers(model):
        abar, bbar, C = (
            np.asarray(t, dtype=np.float64)
            for t in jax.vmap(layer.time_varying_system)(jax.numpy.asarray(inputs[name]))
        )
        p, q = ltv.time_varying_gramian_diagonals(
            np.swapaxes(abar, 1, 2),  # (S, H, L, N)
            np.swapaxes(bbar, 1, 2)[..., None],  # (S, H, L, N, 1)
            C[:, None, :, None, :],  # (S, 1, L, 1, N): shared by the channels
            calibration_axis=0,
        )
        energies[name] = ltv.diagonal_state_energy(p, q)
    return energies


def reduce_selective_layer(
    name: str,
    layer: ReducibleSelectiveSSM,
    energy: np.ndarray,
    rank: int,
    *,
    selection: Selection = "largest",
    rng: np.random.Generator | None = None,
) -> tuple[eqx.Module, LayerReduction]:
    """``layer`` keeping ``rank`` state indices, chosen by ``energy`` (N,) and ``selection``."""
    keep = selected_states(name, energy, rank, selection=selection, rng=rng)
    new_layer = layer.with_states(keep)
    return new_layer, LayerReduction(
        name, layer.state_dim, len(keep), energy_spectrum(energy), None, tuple(keep)
    )
