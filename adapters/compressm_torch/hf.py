"""Hugging Face ``transformers`` Mamba and Mamba-2: state energies, reduction by state index,
the optimizer's moments sliced, save and load at per-layer state sizes, and a Trainer callback.

Importing this module makes every ``MambaMixer`` and ``Mamba2Mixer`` a selective layer of
``compressm_torch`` (``register_selective_adapter``), so ``compressm_torch.compress``,
``hankel_singular_values`` and the ``Compressor`` see them; calibration is a batch of token ids
(batch, L). Per layer, a mixer runs per channel the recurrence

    h_k = exp(dt_k A) * h_(k-1) + dt_k B_k x_k,    y_k = C_k . h_k + D x_k

(Mamba-1: A (d_inner, N) per channel, dt per channel; Mamba-2: a scalar A and dt per head,
B and C shared within a group of heads). The state index i is shared by all channels, so a
layer is reduced by keeping state indices (Mamba-2: the same ones in every group), ranked by
their energy summed over channels (docs/ltv.md, docs/hf.md). See docs/hf.md.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.nn import functional as F
from transformers.models.mamba.modeling_mamba import MambaMixer
from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

from compressm_core.balancing import Energy
from compressm_core.layers import (
    CompressionEvent,
    LayerReduction,
    Selection,
    check_layer_names,
    energy_spectrum,
    ranks_for_tolerance,
    selected_states,
)
from compressm_core.schedule import ReductionSchedule

from .compressor import Checkpoint, Compressor
from .optimizer import transfer_optimizer
from .reduce import MODEL_UPDATES, Compressed, set_submodule
from .selective import analysis_device, register_selective_adapter, selective_layers, state_energies

#: The ``transformers`` mixer classes handled here (exact types).
MIXER_TYPES = (MambaMixer, Mamba2Mixer)
#: Where a reduced model's config records each layer's state size (by layer index).
STATE_SIZES = "compressm_state_sizes"

#: A parameter's kept entries: (axis, indices) of its state-dependent axis.
KeptEntries = tuple[int, Tensor]


@dataclass(frozen=True)
class MixerView:
    """A ``MambaMixer`` or ``Mamba2Mixer`` seen as a ``compressm_torch.ReducibleSelectiveSSM``."""

    mixer: nn.Module

    @property
    def state_dim(self) -> int:
        """The mixer's state size N (Mamba-2: per group)."""
        return int(self.mixer.ssm_state_size)

    def time_varying_system(self, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(abar, bbar, C)`` in float64 on the mixer's input ``hidden`` (batch, L, hidden_size),
        recomputed as the mixer does (in_proj, causal conv1d and activation, projections, softplus
        step sizes): abar = exp(dt A) and bbar = dt B, (batch, L, d_inner, N), and C, (batch, L, N)
        for Mamba-1 and (batch, L, d_inner, N) for Mamba-2 (its group's C for every channel)."""
        mixer = self.mixer
        if isinstance(mixer, MambaMixer):
            return _mamba_system(mixer, hidden)
        return _mamba2_system(mixer, hidden)

    def kept_entries(self, keep: Sequence[int]) -> dict[str, KeptEntries]:
        """For each state-dependent parameter (name inside the mixer), the entries kept with the
        state indices ``keep``: Mamba-1 ``A_log`` columns and the B and C rows of ``x_proj``;
        Mamba-2 the B and C output rows of ``in_proj`` and the matching ``conv1d`` channels."""
        mixer, n = self.mixer, self.state_dim
        index = torch.as_tensor(list(keep), dtype=torch.long)
        if isinstance(mixer, MambaMixer):
            rank = mixer.time_step_rank
            rows = torch.cat([torch.arange(rank), rank + index, rank + n + index])
            return {"A_log": (1, index), "x_proj.weight": (0, rows)}
        inner, groups = mixer.intermediate_size, mixer.n_groups
        group_states = torch.cat([g * n + index for g in range(groups)])
        channels = torch.cat(
            [torch.arange(inner), inner + group_states, inner + groups * n + group_states]
        )
        outputs = torch.cat(
            [torch.arange(inner), inner + channels, inner + mixer.conv_dim + torch.arange(mixer.num_heads)]
        )
        entries = {"in_proj.weight": (0, outputs), "conv1d.weight": (0, channels)}
        if mixer.in_proj.bias is not None:
            entries["in_proj.bias"] = (0, outputs)
        if mixer.conv1d.bias is not None:
            entries["conv1d.bias"] = (0, channels)
        return entries

    def with_states(self, keep: Sequence[int]) -> nn.Module:
        """A new mixer keeping the state indices ``keep`` (in that order) and every other
        parameter; same dtype, device, mode and requires_grad. The mixer is unchanged."""
        _check_keep(keep, self.state_dim)
        mixer = self.mixer
        shared = {id(mixer.config): mixer.config} if hasattr(mixer, "config") else {}
        new = copy.deepcopy(mixer, shared)
        for name, (axis, index) in self.kept_entries(keep).items():
            owner, _, attribute = name.rpartition(".")
            module = new.get_submodule(owner)
            old = getattr(module, attribute)
            kept = old.detach().index_select(axis, index.to(old.device)).clone()
            setattr(module, attribute, nn.Parameter(kept, requires_grad=old.requires_grad))
        new.ssm_state_size = len(keep)
        if isinstance(new, MambaMixer):
            new.x_proj.out_features = new.x_proj.weight.shape[0]
        else:
            new.conv_dim = new.conv1d.weight.shape[0]
            new.conv1d.in_channels = new.conv1d.out_channels = new.conv1d.groups = new.conv_dim
            new.in_proj.out_features = new.in_proj.weight.shape[0]
        return new


def _check_keep(keep: Sequence[int], n: int) -> None:
    values = list(keep)
    if not values or len(set(values)) != len(values) or not all(0 <= int(i) < n for i in values):
        msg = f"`keep` must hold distinct state indices in [0, {n - 1}], at least one, got {values}"
        raise ValueError(msg)


def _causal_conv(mixer: nn.Module, x: Tensor) -> Tensor:
    """The mixer's depthwise causal conv1d and activation on x (batch, channels, L)."""
    return mixer.act(mixer.conv1d(x)[..., : x.shape[-1]])


def _double(tensor: Tensor) -> Tensor:
    """``tensor`` in float64 on ``analysis_device`` (the CPU for an MPS tensor)."""
    return tensor.to(analysis_device(tensor.device), torch.float64)


def _mamba_system(mixer: MambaMixer, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    x, _ = mixer.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)
    x = _causal_conv(mixer, x).transpose(1, 2)  # (batch, L, d_inner)
    n = mixer.ssm_state_size
    step, B, C = torch.split(mixer.x_proj(x), [mixer.time_step_rank, n, n], dim=-1)
    dt = F.softplus(_double(mixer.dt_proj(step)))[..., None]  # (batch, L, d_inner, 1)
    A = -torch.exp(_double(mixer.A_log))  # (d_inner, N)
    return torch.exp(dt * A), dt * _double(B)[:, :, None, :], _double(C)


def _mamba2_system(mixer: Mamba2Mixer, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    batch, length, _ = hidden.shape
    inner, heads, groups, n = mixer.intermediate_size, mixer.num_heads, mixer.n_groups, mixer.ssm_state_size
    _, xBC, step = mixer.in_proj(hidden).split([inner, mixer.conv_dim, heads], dim=-1)
    xBC = _causal_conv(mixer, xBC.transpose(1, 2)).transpose(1, 2)
    _, B, C = torch.split(xBC, [inner, groups * n, groups * n], dim=-1)
    low, high = mixer.time_step_limit
    dt = F.softplus(_double(step) + _double(mixer.dt_bias)).clamp(low, high)  # (batch, L, heads)
    abar = torch.exp(dt * -torch.exp(_double(mixer.A_log)))

    def per_channel(per_head: Tensor) -> Tensor:  # (batch, L, heads, N) -> (batch, L, d_inner, N)
        shape = (batch, length, heads, mixer.head_dim, n)
        return per_head[:, :, :, None, :].expand(shape).reshape(batch, length, inner, n)

    def per_head(per_group: Tensor) -> Tensor:  # (batch, L, groups * N) -> (batch, L, heads, N)
        return _double(per_group).view(batch, length, groups, n).repeat_interleave(heads // groups, dim=2)

    abar = per_channel(abar[..., None].expand(batch, length, heads, n))
    return abar, per_channel(dt[..., None] * per_head(B)), per_channel(per_head(C))


for _mixer_type in MIXER_TYPES:
    register_selective_adapter(_mixer_type, MixerView)


def mamba_mixers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (qualified name, mixer) pairs of every ``MambaMixer`` / ``Mamba2Mixer`` in ``model``."""
    return [(name, module) for name, module in model.named_modules() if type(module) in MIXER_TYPES]


def record_state_sizes(model: nn.Module) -> None:
    """Write each mixer's state size into ``model.config.compressm_state_sizes`` (by layer
    index), so that the config describes the model (``load_pretrained`` reads it)."""
    mixers = mamba_mixers(model)
    config = getattr(model, "config", None)
    if not mixers or config is None:
        return
    sizes = [config.state_size] * config.num_hidden_layers
    for _, mixer in mixers:
        sizes[mixer.layer_idx] = int(mixer.ssm_state_size)
        if hasattr(mixer, "config"):
            mixer.config = config
    setattr(config, STATE_SIZES, sizes)


MODEL_UPDATES.append(record_state_sizes)


@dataclass(frozen=True)
class CompressedMamba(Compressed):
    """``compressm_torch.Compressed`` plus the state size of every mixer after the reduction."""

    state_sizes: dict[str, int]


def _sliced_state(state: dict, parameter: Tensor, axis: int, index: Tensor) -> dict:
    """An optimizer state with every tensor shaped like ``parameter`` cut to the kept entries
    (Adam's moments); the rest (the step count) copied."""
    return {
        key: value.index_select(axis, index.to(value.device))
        if torch.is_tensor(value) and value.shape == parameter.shape
        else (value.clone() if torch.is_tensor(value) else value)
        for key, value in state.items()
    }


def slice_optimizer(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    new_model: nn.Module,
    kept: dict[str, dict[str, KeptEntries]],
) -> torch.optim.Optimizer:
    """A new optimizer over ``new_model``: every parameter's state carried exactly
    (``transfer_optimizer``), and the moments of the reduced mixers' parameters cut to the
    kept entries (index selection keeps coordinates; the step count is kept).

    ``kept``: mixer name -> ``MixerView.kept_entries`` of its reduction. ``optimizer`` is not modified.
    """
    old, new = dict(model.named_parameters()), dict(new_model.named_parameters())
    cut = {f"{mixer}.{name}": entry for mixer, entries in kept.items() for name, entry in entries.items()}
    result = transfer_optimizer(optimizer, old, new, reset=tuple(cut))
    for name, (axis, index) in cut.items():
        if old[name] in optimizer.state:
            result.state[new[name]] = _sliced_state(optimizer.state[old[name]], old[name], axis, index)
    return result


@torch.no_grad()
def compress(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    calibration: Tensor,
    tau: float | None = None,
    ranks: dict[str, int] | None = None,
    energy: Energy = "sum",
    selection: Selection = "largest",
    seed: int = 0,
) -> CompressedMamba:
    """Shrink the Mamba / Mamba-2 mixers of a ``transformers`` model by keeping state indices.

    Each mixer's state energies come from its own time-varying system on ``calibration``
    (token ids, (batch, L)); give ``ranks`` (mixer name -> states kept; Mamba-2: per group) or
    ``tau`` (each mixer keeps the smallest number of states holding ``1 - tau`` of its energy
    spectrum, as ``compressm_torch.compress``). The optimizer's moments are sliced to the kept
    entries; ``model.config.compressm_state_sizes`` records the new sizes. ``model`` and
    ``optimizer`` are not modified.
    """
    if (ranks is None) == (tau is None):
        msg = f"give exactly one of `ranks` or `tau`, got ranks={ranks}, tau={tau}"
        raise ValueError(msg)
    views = {name: view for name, view in selective_layers(model) if isinstance(view, MixerView)}
    if not views:
        msg = f"the model ({type(model).__name__}) has no MambaMixer or Mamba2Mixer"
        raise ValueError(msg)
    energies = {name: e for name, e in state_energies(model, calibration).items() if name in views}
    if ranks is None:
        spectra = {name: torch.from_numpy(energy_spectrum(e.cpu().numpy())) for name, e in energies.items()}
        ranks = ranks_for_tolerance(spectra, tau, energy)
    check_layer_names(ranks, list(views))
    rng = np.random.default_rng(seed)
    new_model = copy.deepcopy(model)
    kept, records = {}, []
    for name, rank in ranks.items():
        values = energies[name].cpu().numpy()
        keep = selected_states(name, values, rank, selection=selection, rng=rng)
        kept[name] = views[name].kept_entries(keep)
        set_submodule(new_model, name, views[name].with_states(keep))
        records.append(
            LayerReduction(name, views[name].state_dim, rank, energy_spectrum(values), None, tuple(keep))
        )
    record_state_sizes(new_model)
    new_optimizer = None if optimizer is None else slice_optimizer(optimizer, model, new_model, kept)
    sizes = {name: int(mixer.ssm_state_size) for name, mixer in mamba_mixers(new_model)}
    return CompressedMamba(new_model, new_optimizer, tuple(records), sizes)


def load_pretrained(path: str | Path, **kwargs) -> nn.Module:
    """A model saved with ``save_pretrained`` after a reduction, its mixers rebuilt at the
    sizes in ``config.compressm_state_sizes`` (without them: ``from_pretrained``). ``kwargs``
    go to ``from_pretrained`` in that case; the model is returned in eval mode, as there."""
    config = transformers.AutoConfig.from_pretrained(path)
    sizes = getattr(config, STATE_SIZES, None)
    model_class = getattr(transformers, config.architectures[0])
    if sizes is None:
        return model_class.from_pretrained(path, **kwargs)
    with torch.device("meta"):
        model = model_class(config)
    for name, mixer in mamba_mixers(model):
        set_submodule(model, name, MixerView(mixer).with_states(range(sizes[mixer.layer_idx])))
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        msg = f"`path` {str(path)!r} holds no .safetensors weights"
        raise ValueError(msg)
    weights = {key: value for file in files for key, value in load_file(file).items()}
    result = model.load_state_dict(weights, strict=False, assign=True)
    tied = set(getattr(model, "_tied_weights_keys", None) or ()) if config.tie_word_embeddings else set()
    missing = set(result.missing_keys) - tied
    if missing or result.unexpected_keys:
        msg = f"{path}: weights missing {sorted(missing)}, unexpected {sorted(result.unexpected_keys)}"
        raise ValueError(msg)
    model.tie_weights()
    return model.eval()


def _replace_in_place(optimizer: torch.optim.Optimizer, new_optimizer: torch.optim.Optimizer) -> None:
    """Make ``optimizer`` hold ``new_optimizer``'s parameters and state (same object, so LR
    schedulers bound to it keep working)."""
    for group, new_group in zip(optimizer.param_groups, new_optimizer.param_groups, strict=True):
        group["params"] = new_group["params"]
    optimizer.state = new_optimizer.state


class CompreSSMTrainerCallback(transformers.TrainerCallback):
    """Runs a ``compressm_torch.Compressor`` inside a ``transformers.Trainer``, after each
    optimizer step. The Trainer's model and optimizer objects stay the same (their LR scheduler
    stays bound): after a cut (or a rollback) the model's submodules are swapped for the
    compressor's, the optimizer is given the new parameters and their state, with the reduced
    mixers' moments sliced to their kept entries, and ``model.config`` records the new sizes.

    ``evaluate(model) -> float`` is the safety net's validation metric (see
    ``ReductionSchedule``); without it the metric reads 0 and nothing is rolled back.
    """

    def __init__(
        self,
        schedule: ReductionSchedule,
        calibration: Tensor,
        *,
        evaluate: Callable[[nn.Module], float] | None = None,
        seed: int = 0,
    ) -> None:
        self.compressor = Compressor(schedule, seed=seed, calibration=calibration)
        self.evaluate = evaluate

    @property
    def events(self):
        return self.compressor.events

    def _metric(self, model: nn.Module) -> float:
        return 0.0 if self.evaluate is None else float(self.evaluate(model))

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
        new_model, new_optimizer = compressor_step(
            self.compressor, state.global_step, model, optimizer, self._metric
        )
        if new_model is model:
            return
        pending = self.compressor.pending
        if pending is not None and pending.model is model:  # the checkpoint must outlive the swap
            self.compressor.pending = Checkpoint(_shell(model), _shell_optimizer(optimizer))
        for name, child in list(new_model.named_children()):
            setattr(model, name, child)
        record_state_sizes(model)
        _replace_in_place(optimizer, new_optimizer)


def _shell(model: nn.Module) -> nn.Module:
    """A shallow copy of ``model`` that keeps its current submodules when ``model``'s change."""
    shell = copy.copy(model)
    shell._modules, shell._parameters, shell._buffers = (
        dict(model._modules), dict(model._parameters), dict(model._buffers)
    )
    return shell


def _shell_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """A shallow copy of ``optimizer`` that keeps its current parameters and state when
    ``_replace_in_place`` changes ``optimizer``."""
    shell = copy.copy(optimizer)
    shell.param_groups = [dict(group) for group in optimizer.param_groups]
    return shell


def compressor_step(
    compressor: Compressor,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    evaluate: Callable[[nn.Module], float],
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """``compressor.step(step, model, optimizer, evaluate)``, with the optimizer state of the
    mixers it cuts sliced exactly to their kept entries (``slice_optimizer``), whatever the
    compressor's own ``optimizer_state``; a rollback returns what the compressor returns."""
    seen = len(compressor.events)
    new_model, new_optimizer = compressor.step(step, model, optimizer, evaluate)
    if new_model is not model:
        kept = _kept_entries(model, compressor.events[seen:], step)
        if kept is not None:
            new_optimizer = slice_optimizer(optimizer, model, new_model, kept)
    return new_model, new_optimizer


def _kept_entries(model: nn.Module, events: Sequence, step: int) -> dict[str, dict[str, KeptEntries]] | None:
    """The kept entries of every mixer cut at ``step`` (from the new ``events``), or None when
    nothing was cut there (a rollback) or a cut does not say which states it kept."""
    cuts = [event for event in events if isinstance(event, CompressionEvent) and event.step == step]
    if not cuts:
        return None
    mixers = dict(mamba_mixers(model))
    kept = {}
    for record in cuts[-1].reductions:
        states = getattr(record, "kept", None)
        if record.name not in mixers or states is None:
            return None
        kept[record.name] = MixerView(mixers[record.name]).kept_entries(states)
    return kept


__all__ = [
    "MIXER_TYPES",
    "STATE_SIZES",
    "CompreSSMTrainerCallback",
    "CompressedMamba",
    "MixerView",
    "compress",
    "compressor_step",
    "load_pretrained",
    "mamba_mixers",
    "record_state_sizes",
    "slice_optimizer",
]
