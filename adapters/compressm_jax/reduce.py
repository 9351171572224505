"""Read an Equinox model's SSM layers as core systems and shrink them: pure functions over pytrees.

Nothing here knows LRU, S5 or Mamba internals: layers are the pytree nodes that are
``ReducibleSSM``s, read with ``ssm_system()`` and rebuilt with ``with_system()``, or
``ReducibleSelectiveSSM``s, read on calibration inputs and rebuilt with ``with_states()``
(see ``selective``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import equinox as eqx
import numpy as np
import optax

import compressm_core as cc
from compressm_core.gramians import check_horizon
from compressm_core.layers import (
    Gramians,
    LayerReduction,
    Selection,
    analysed_system,
    check_layer_names,
    energy_spectrum,
    ranks_for_tolerance,
    reduce_layer_system,
    require_calibration,
)
from compressm_core.schedule import OPTIMIZER_STATES, OptimizerState

from .interface import ReducibleSSM
from .optimizer import selection_indices, transfer_optimizer_state
from .pytree import compressible_layers, path_name, replace_layers
from .selective import reduce_selective_layer, selective_layers, state_energies

__all__ = [
    "Compressed",
    "compress",
    "compressible_layers",
    "hankel_singular_values",
    "path_name",
    "reduce_layer",
    "reducible_layers",
    "replace_layers",
]


@dataclass(frozen=True)
class Compressed:
    """The result of ``compress``: a new model and optimizer state; the inputs are untouched."""

    model: eqx.Module
    opt_state: optax.OptState | None
    reductions: tuple[LayerReduction, ...]


def reducible_layers(model: eqx.Module) -> list[tuple[str, ReducibleSSM]]:
    """The (dotted name, layer) pairs of every ``ReducibleSSM`` in the pytree, in order."""
    return [
        (name, layer)
        for name, layer in compressible_layers(model)
        if isinstance(layer, ReducibleSSM)
    ]


@eqx.filter_jit
def _read_systems(layers: list[ReducibleSSM]) -> list[tuple]:
    """Every layer's ``(poles, B, C, D)``, read by one compiled program (not one eager
    operation after another, each compiled again for the new shapes after a reduction)."""
    return [(s.poles, s.B, s.C, s.D) for s in (layer.ssm_system() for layer in layers)]


def _numpy_systems(layers: list[ReducibleSSM]) -> list[cc.DiagonalStateSpace]:
    """The layers' systems as NumPy complex128 arrays (JAX may lack float64 without x64);
    one host copy per check, which is rare."""
    systems = []
    for poles, B, C, D in _read_systems(layers):
        arrays = [np.asarray(t, dtype=np.complex128) for t in (poles, B, C)]
        D = None if D is None else np.asarray(D)
        systems.append(
            cc.DiagonalStateSpace(
                *arrays, None if D is None else D.astype(np.result_type(D, np.float64))
            )
        )
    return systems


def _analysed_system(layer: ReducibleSSM, gramians: Gramians) -> cc.DiagonalStateSpace:
    return _analysed_systems([layer], gramians)[0]


def _analysed_systems(
    layers: list[ReducibleSSM], gramians: Gramians
) -> list[cc.DiagonalStateSpace]:
    return [
        analysed_system(system, gramians, real_output=layer.real_output)
        for layer, system in zip(layers, _numpy_systems(layers), strict=True)
    ]


def hankel_singular_values(
    model: eqx.Module,
    *,
    gramians: Gramians = "complex",
    calibration: Any = None,
    horizon: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-layer HSVs (descending), batched over layers of equal shape, in pytree order.

    ``horizon``: None for the infinite-horizon Gramians (the authors'), or L for the
    time-limited ones over L steps (``compressm_core.gramians``). Selective layers need
    ``calibration`` (batch, L, d_input) and give their energy spectrum
    (``compressm_core.layers.energy_spectrum``) instead, a sum over the calibration sequences,
    finite already: ``horizon`` does not apply to them.
    """
    horizon = check_horizon(horizon)
    require_calibration([name for name, _ in selective_layers(model)], calibration)
    energies = state_energies(model, calibration) if selective_layers(model) else {}
    return _spectra(model, gramians, energies, horizon)


def _spectra(
    model: eqx.Module, gramians: Gramians, energies: dict[str, np.ndarray], horizon: int | None
) -> dict[str, np.ndarray]:
    """The HSVs of the time-invariant layers (Gramians over ``horizon`` steps, None: infinite)
    and the energy spectra of the selective ones (from their state ``energies``), in pytree order."""
    layers = dict(reducible_layers(model))
    systems = dict(zip(layers, _analysed_systems(list(layers.values()), gramians), strict=True))
    groups: dict[tuple[int, int, int], list[str]] = {}
    for name, system in systems.items():
        groups.setdefault((system.n, system.m, system.p), []).append(name)
    result = {}
    for names in groups.values():
        stacked = cc.DiagonalStateSpace(
            *(np.stack([getattr(systems[n], f) for n in names]) for f in ("poles", "B", "C"))
        )
        try:
            hsv = cc.hankel_singular_values(stacked, horizon=horizon)
        except ValueError as error:
            msg = f"layers {names}: {error}"
            raise ValueError(msg) from None
        result.update(zip(names, hsv, strict=True))
    result.update({name: energy_spectrum(energy) for name, energy in energies.items()})
    return {name: result[name] for name, _ in compressible_layers(model)}


def reduce_layer(
    name: str,
    layer: ReducibleSSM,
    rank: int,
    *,
    gramians: Gramians = "complex",
    selection: Selection = "largest",
    rng: np.random.Generator | None = None,
    horizon: int | None = None,
) -> tuple[eqx.Module, LayerReduction]:
    """A smaller copy of ``layer``: balanced truncation to ``rank`` balanced states, re-diagonalised
    (see ``compressm_core.layers.reduce_layer_system``; ``horizon``: time-limited, no bound)."""
    reduced = reduce_layer_system(
        name,
        _numpy_systems([layer])[0],
        rank,
        gramians=gramians,
        real_output=layer.real_output,
        selection=selection,
        rng=rng,
        horizon=horizon,
    )
    try:
        new_layer = layer.with_system(reduced.system)
    except ValueError as error:
        msg = f"layer {name}: {error}"
        raise ValueError(msg) from None
    return new_layer, reduced.record(name, layer.state_dim, new_layer.state_dim)


def compress(
    model: eqx.Module,
    opt_state: optax.OptState | None = None,
    optimizer: optax.GradientTransformation | None = None,
    *,
    ranks: dict[str, int] | None = None,
    tau: float | None = None,
    energy: str = "sum",
    selection: Selection = "largest",
    gramians: Gramians = "complex",
    seed: int = 0,
    calibration: Any = None,
    optimizer_state: OptimizerState = "reset",
    horizon: int | None = None,
) -> Compressed:
    """Shrink the SSM layers of ``model`` by balanced truncation; the Optax state follows.

    Same arguments and rule as ``compressm_torch.compress``. With ``opt_state`` give the
    ``optimizer`` that made it: the new state is ``optimizer.init`` of the new parameters
    with every leaf of an untouched parameter (and every shared scalar, e.g. Adam's step
    count) copied exactly from ``opt_state``; see ``transfer_optimizer_state``. Selective
    layers keep state indices ranked by their energy on ``calibration`` (batch, L, d_input).
    ``optimizer_state="slice"`` keeps the reduced layers' moments of their kept coordinates.
    ``horizon``: the Gramians' horizon (None: infinite; L: time-limited over L steps, no bound
    recorded; not for selective layers).
    """
    if optimizer_state not in OPTIMIZER_STATES:
        msg = f"`optimizer_state` must be one of {OPTIMIZER_STATES}, got {optimizer_state!r}"
        raise ValueError(msg)
    if (ranks is None) == (tau is None):
        msg = f"give exactly one of `ranks` or `tau`, got ranks={ranks}, tau={tau}"
        raise ValueError(msg)
    if (opt_state is None) != (optimizer is None):
        msg = "give `opt_state` together with the `optimizer` that made it"
        raise ValueError(msg)
    horizon = check_horizon(horizon)
    layers = dict(reducible_layers(model))
    selective = dict(selective_layers(model))
    require_calibration(list(selective), calibration)
    energies = state_energies(model, calibration) if selective else {}
    if ranks is None:
        ranks = ranks_for_tolerance(_spectra(model, gramians, energies, horizon), tau, energy)
    check_layer_names(ranks, [*layers, *selective])
    rng = np.random.default_rng(seed)
    replacements, records = {}, []
    for name, rank in ranks.items():
        if name in selective:
            replacements[name], record = reduce_selective_layer(
                name, selective[name], energies[name], rank, selection=selection, rng=rng
            )
        else:
            replacements[name], record = reduce_layer(
                name, layers[name], rank, gramians=gramians, selection=selection, rng=rng, horizon=horizon
            )
        records.append(record)
    new_model = replace_layers(model, replacements)
    new_state = None
    if opt_state is not None:
        slicing = optimizer_state == "slice"
        new_state = transfer_optimizer_state(
            optimizer, opt_state, model, new_model,
            reset=() if slicing else tuple(replacements),
            sliced={
                r.name: None if r.kept is None else selection_indices(selective[r.name], r.kept)
                for r in records
            } if slicing else None,
        )
    return Compressed(new_model, new_state, tuple(records))
