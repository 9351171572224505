"""Selective (time-varying, Mamba-style) layers: their state energy on calibration inputs,
and their reduction by keeping state indices.

A selective layer's system depends on its input, so its Gramians are those of the
time-varying system it runs on calibration sequences (``compressm_core.ltv``). Its
parameterisation (per-channel diagonal A, B_k and C_k shared by the channels) cannot
absorb a change of state basis, so it is reduced by keeping the state indices of largest
energy, aggregated over channels (docs/ltv.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from compressm_core import ltv
from compressm_core.layers import LayerReduction, Selection, energy_spectrum, selected_states


@runtime_checkable
class ReducibleSelectiveSSM(Protocol):
    """A layer ``(batch, L, H) -> (batch, L, H)`` whose recurrence, on an input u, is
    ``h_k = abar_k * h_(k-1) + bbar_k * u_k[:, None]`` per channel (state dim N) with a
    read-out ``C_k`` shared by the channels."""

    @property
    def state_dim(self) -> int:
        """The shared state dimension N."""

    def time_varying_system(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(abar, bbar, C)`` on ``u`` (batch, L, H): (batch, L, H, N), (batch, L, H, N), and
        (batch, L, N), or (batch, L, H, N) for a read-out per channel."""

    def with_states(self, keep: Sequence[int]) -> nn.Module:
        """A new layer keeping the state indices ``keep``; ``self`` unchanged."""


#: Module classes that are selective layers through an adapter: class -> function giving a
#: module's ``ReducibleSelectiveSSM`` view (``transformers``' Mamba mixers, registered by
#: ``compressm_torch.hf``), for modules whose classes the user does not own.
_ADAPTERS: dict[type[nn.Module], Callable[[nn.Module], ReducibleSelectiveSSM]] = {}


def analysis_device(device: torch.device) -> torch.device:
    """Where the float64 analysis of a layer on ``device`` runs: there, except on MPS, which
    has no float64 (then the CPU; the rebuilt layer is copied back to the MPS device)."""
    return torch.device("cpu") if device.type == "mps" else device


def register_selective_adapter(
    module_type: type[nn.Module], adapter: Callable[[nn.Module], ReducibleSelectiveSSM]
) -> None:
    """Make every module of exactly ``module_type`` a selective layer, seen through ``adapter``."""
    _ADAPTERS[module_type] = adapter


def selective_layers(model: nn.Module) -> list[tuple[str, ReducibleSelectiveSSM]]:
    """The (qualified name, layer) pairs of every ``ReducibleSelectiveSSM`` in ``model`` (or of
    a registered adapter's view of a module), in order."""
    layers = []
    for name, module in model.named_modules():
        adapter = _ADAPTERS.get(type(module))
        if adapter is not None:
            layers.append((name, adapter(module)))
        elif isinstance(module, ReducibleSelectiveSSM):
            layers.append((name, module))
    return layers


@torch.no_grad()
def layer_inputs(model: nn.Module, calibration: Tensor) -> dict[str, Tensor]:
    """What each selective layer receives when ``model`` runs on ``calibration`` (batch, L, ...;
    moved to the model's device), read by forward pre-hooks during one forward pass in eval
    mode (the mode is restored)."""
    layers = selective_layers(model)
    captured: dict[str, Tensor] = {}
    hooks = [
        model.get_submodule(name).register_forward_pre_hook(
            lambda _, args, name=name: captured.setdefault(name, args[0])
        )
        for name, _ in layers
    ]
    training = model.training
    parameter = next(model.parameters(), None)
    try:
        model.eval()
        model(calibration if parameter is None else calibration.to(parameter.device))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    missing = [name for name, _ in layers if name not in captured]
    if missing:
        msg = f"selective layers {missing} were not called by the model's forward pass"
        raise ValueError(msg)
    return captured


@torch.no_grad()
def state_energies(model: nn.Module, calibration: Tensor) -> dict[str, Tensor]:
    """Per selective layer, the energy of each state index (N,), float64, summed over channels:
    ``s_i = sum_h p_i q_i`` from the diagonals of the time-averaged Gramians of the layer's
    time-varying system on the ``calibration`` sequences, averaged over them.

    ``calibration`` is what the model takes: (batch, L, d_input) inputs, or (batch, L) token ids."""
    if calibration.ndim < 2 or calibration.shape[0] < 1 or calibration.shape[1] < 1:
        msg = f"`calibration` must be a batch of sequences (batch, L, ...), got shape {tuple(calibration.shape)}"
        raise ValueError(msg)
    inputs = layer_inputs(model, calibration)
    received = {name: tuple(u.shape) for name, u in inputs.items() if u.ndim != 3}
    if received:
        msg = (
            f"`calibration` must be a batch of sequences (batch, L, ...), got shape "
            f"{tuple(calibration.shape)}: the selective layers received {received}, not (batch, L, H)"
        )
        raise ValueError(msg)
    energies = {}
    for name, layer in selective_layers(model):
        abar, bbar, C = (t.to(analysis_device(t.device), torch.float64) for t in layer.time_varying_system(inputs[name]))
        p, q = ltv.time_varying_gramian_diagonals(
            abar.transpose(1, 2),  # (S, H, L, N)
            bbar.transpose(1, 2)[..., None],  # (S, H, L, N, 1)
            # (S, 1, L, 1, N) when shared by the channels, else (S, H, L, 1, N)
            C[:, None, :, None, :] if C.ndim == 3 else C.transpose(1, 2)[..., None, :],
            calibration_axis=0,
        )
        energies[name] = ltv.diagonal_state_energy(p, q)
    return energies


def reduce_selective_layer(
    name: str,
    layer: ReducibleSelectiveSSM,
    energy: Tensor,
    rank: int,
    *,
    selection: Selection = "largest",
    rng: np.random.Generator | None = None,
) -> tuple[nn.Module, LayerReduction]:
    """``layer`` keeping ``rank`` state indices, chosen by ``energy`` (N,) and ``selection``."""
    values = energy.cpu().numpy()
    keep = selected_states(name, values, rank, selection=selection, rng=rng)
    new_layer = layer.with_states(keep)
    return new_layer, LayerReduction(
        name, layer.state_dim, len(keep), energy_spectrum(values), None, tuple(keep)
    )
