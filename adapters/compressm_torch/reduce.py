"""Read a model's SSM layers as core systems, and shrink them by balanced truncation.

Nothing here knows LRU, S5 or Mamba internals: layers are found as ``ReducibleSSM``
modules, read with ``ssm_system()`` and rebuilt with ``with_system()``, or as
``ReducibleSelectiveSSM`` modules, read on calibration inputs and rebuilt with
``with_states()`` (see ``selective``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

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
from .optimizer import selection_indices, transfer_optimizer
from .selective import analysis_device, reduce_selective_layer, selective_layers, state_energies


@dataclass(frozen=True)
class Compressed:
    """The result of ``compress``: a new model and optimizer; the inputs are untouched."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    reductions: tuple[LayerReduction, ...]


def reducible_layers(model: nn.Module) -> list[tuple[str, ReducibleSSM]]:
    """The (qualified name, layer) pairs of every ``ReducibleSSM`` in ``model``, in order."""
    return [
        (name, module) for name, module in model.named_modules() if isinstance(module, ReducibleSSM)
    ]


def compressible_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every layer ``compress`` can shrink, time-invariant (``ReducibleSSM``) or selective
    (``ReducibleSelectiveSSM``), as (qualified name, layer) pairs in module order."""
    layers = dict(reducible_layers(model)) | dict(selective_layers(model))
    return [(name, layers[name]) for name, _ in model.named_modules() if name in layers]


#: Called as ``update(new_model)`` on every model ``compress`` returns, after its layers are
#: replaced, so that a description of the layer sizes kept outside the layers stays true
#: (``compressm_torch.hf`` registers one for the ``transformers`` config).
MODEL_UPDATES: list[Callable[[nn.Module], None]] = []


def _in_double_precision(system: cc.DiagonalStateSpace) -> cc.DiagonalStateSpace:
    """The system in complex128 (float64 for a real D), on ``analysis_device``: float32
    Gramians of slow poles are too ill-conditioned for reliable factors; the rebuilt layer
    casts back to its dtype and device."""
    device = analysis_device(system.poles.device)
    D = (
        None
        if system.D is None
        else system.D.to(device, torch.complex128 if system.D.is_complex() else torch.float64)
    )
    return cc.DiagonalStateSpace(
        *(t.to(device, torch.complex128) for t in (system.poles, system.B, system.C)), D
    )


def _analysed_system(layer: ReducibleSSM, gramians: Gramians) -> cc.DiagonalStateSpace:
    """The layer's system (in double precision) whose Gramians decide the reduction."""
    return analysed_system(
        _in_double_precision(layer.ssm_system()), gramians, real_output=layer.real_output
    )


def _stacked(systems: list[cc.DiagonalStateSpace]) -> cc.DiagonalStateSpace:
    return cc.DiagonalStateSpace(
        torch.stack([s.poles for s in systems]),
        torch.stack([s.B for s in systems]),
        torch.stack([s.C for s in systems]),
    )


@torch.no_grad()
def hankel_singular_values(
    model: nn.Module,
    *,
    gramians: Gramians = "complex",
    calibration: Tensor | None = None,
    horizon: int | None = None,
) -> dict[str, Tensor]:
    """Per-layer HSVs (descending), computed in batches of equal shape, in module order.

    ``gramians="complex"`` analyses ``u -> C x`` (the CompreSSM authors' choice);
    ``"real_output"`` the map ``u -> Re(C x)`` the layer computes (2n HSVs per layer).
    ``horizon``: None for the infinite-horizon Gramians (the authors'), or L for the
    time-limited ones over L steps (``compressm_core.gramians``), e.g. the length of the
    training sequences. Selective layers need ``calibration`` (batch, L, d_input) and give
    their energy spectrum (``compressm_core.layers.energy_spectrum``, float64 on the CPU)
    instead; it is computed over the calibration sequences, finite already, so ``horizon``
    does not apply to them.
    """
    horizon = check_horizon(horizon)
    require_calibration([name for name, _ in selective_layers(model)], calibration)
    energies = state_energies(model, calibration) if selective_layers(model) else {}
    return _spectra(model, gramians, energies, horizon)


def _spectra(
    model: nn.Module, gramians: Gramians, energies: dict[str, Tensor], horizon: int | None
) -> dict[str, Tensor]:
    """The HSVs of the time-invariant layers (Gramians over ``horizon`` steps, None: infinite)
    and the energy spectra of the selective ones (from their state ``energies``), in module order."""
    layers = reducible_layers(model)
    systems = {name: _analysed_system(layer, gramians) for name, layer in layers}
    groups: dict[tuple[int, int, int, torch.dtype], list[str]] = {}
    for name, system in systems.items():
        key = (system.n, system.m, system.p, system.dtype)
        groups.setdefault(key, []).append(name)
    result: dict[str, Tensor] = {}
    for names in groups.values():
        try:
            hsv = cc.hankel_singular_values(_stacked([systems[name] for name in names]), horizon=horizon)
        except ValueError as error:
            msg = f"layers {names}: {error}"
            raise ValueError(msg) from None
        result.update(zip(names, hsv, strict=True))
    for name, energy in energies.items():
        result[name] = torch.from_numpy(energy_spectrum(energy.cpu().numpy()))
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
) -> tuple[nn.Module, LayerReduction]:
    """A smaller copy of ``layer``: balanced truncation to ``rank`` balanced states, re-diagonalised
    (see ``compressm_core.layers.reduce_layer_system``; ``horizon``: time-limited, no bound)."""
    with torch.no_grad():
        system = _in_double_precision(layer.ssm_system())
        reduced = reduce_layer_system(
            name,
            system,
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


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the qualified ``name`` inside ``model`` (in place)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def compress(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    ranks: dict[str, int] | None = None,
    tau: float | None = None,
    energy: cc.balancing.Energy = "sum",
    selection: Selection = "largest",
    gramians: Gramians = "complex",
    seed: int = 0,
    calibration: Tensor | None = None,
    optimizer_state: OptimizerState = "reset",
    horizon: int | None = None,
) -> Compressed:
    """Shrink the SSM layers of ``model`` by balanced truncation; the optimizer follows.

    Give ``ranks`` (layer name -> new rank; layers not named are kept) or ``tau`` (each
    layer keeps the smallest rank holding ``1 - tau`` of its HSV energy, see
    ``compressm_core.rank_for_energy``). ``selection`` picks which balanced states are kept
    ("smallest" and "random" are the paper's ablations). Selective layers keep state
    indices instead, ranked by their energy on the ``calibration`` sequences (batch, L,
    d_input), which they need; the rank then counts energy-spectrum entries. The returned optimizer keeps the
    exact state of every parameter outside the reduced layers; the reduced layers'
    parameters start afresh (``optimizer_state="reset"``) or keep the moments of their
    kept coordinates (``"slice"``, see ``transfer_optimizer``). ``model`` and ``optimizer``
    are not modified, so keeping them is a rollback. ``horizon=L`` ranks and truncates with the
    time-limited Gramians over L steps (time-limited balanced truncation: no error bound is
    recorded); None (default) with the infinite-horizon ones. It does not apply to selective
    layers, whose energies are sums over the calibration sequences already.
    """
    if optimizer_state not in OPTIMIZER_STATES:
        msg = f"`optimizer_state` must be one of {OPTIMIZER_STATES}, got {optimizer_state!r}"
        raise ValueError(msg)
    if (ranks is None) == (tau is None):
        msg = f"give exactly one of `ranks` or `tau`, got ranks={ranks}, tau={tau}"
        raise ValueError(msg)
    horizon = check_horizon(horizon)
    layers = dict(reducible_layers(model))
    selective = dict(selective_layers(model))
    require_calibration(list(selective), calibration)
    energies = state_energies(model, calibration) if selective else {}
    if ranks is None:
        with torch.no_grad():
            ranks = ranks_for_tolerance(_spectra(model, gramians, energies, horizon), tau, energy)
    check_layer_names(ranks, [*layers, *selective])
    rng = np.random.default_rng(seed)
    replacements = {}
    records = []
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
    new_model = copy.deepcopy(model)
    for name, layer in replacements.items():
        set_submodule(new_model, name, layer)
    for update in MODEL_UPDATES:
        update(new_model)
    new_optimizer = None
    if optimizer is not None:
        slicing = optimizer_state == "slice"
        new_optimizer = transfer_optimizer(
            optimizer,
            dict(model.named_parameters()),
            dict(new_model.named_parameters()),
            reset=() if slicing else tuple(replacements),
            sliced={
                r.name: None if r.kept is None else selection_indices(selective[r.name], r.kept)
                for r in records
            } if slicing else None,
        )
    return Compressed(new_model, new_optimizer, tuple(records))
