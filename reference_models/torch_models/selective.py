"""A selective (Mamba-style, S6) SSM layer, the Mamba block around it, and a model of blocks.

Per channel h and state n, with input-dependent step, input and output vectors:

    delta_raw_k, B_k, C_k = split(x_proj(u_k), [dt_rank, N, N])
    delta_k = softplus(dt_proj(delta_raw_k))                    (H,)
    abar_k = exp(delta_k[h] A[h, n]),  A = -exp(A_log)          (H, N), zero-order hold
    bbar_k = delta_k[h] B_k[n]                                  (H, N), Euler step as in Mamba
    h_k = abar_k * h_(k-1) + bbar_k * u_k[h],   h_(-1) = 0
    y_k[h] = sum_n C_k[n] h_k[h, n] + D[h] u_k[h]

This is a linear time-varying system, so the LTI ``ReducibleSSM`` protocol does not apply.
Its state dimension N is shared by all channels and B_k, C_k are shared across channels, so
the parameterisation cannot absorb a dense change of state basis: a reduction *selects*
state indices (``SelectiveSSM.with_states``), ranked by the caller from the time-varying
system that ``SelectiveSSM.time_varying_system`` returns.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._indices import checked_state_indices
from .scan import diagonal_scan

POOLINGS = ("mean", "last", "none")


def _inverse_softplus(x: Tensor) -> Tensor:
    """The y with softplus(y) = x, for x > 0."""
    return x + torch.log(-torch.expm1(-x))


class SelectiveSSM(nn.Module):
    """The S6 recurrence (module docstring): (batch, L, H) -> (batch, L, H).

    Parameters: ``A_log`` (H, N), S4D-real init ``log(1..N)`` in every channel; ``D`` (H,),
    ones; ``x_proj`` Linear(H, dt_rank + 2N, no bias), rows [0, dt_rank) give delta_raw,
    the next N rows B, the last N rows C; ``dt_proj`` Linear(dt_rank, H) whose bias makes
    softplus(bias) log-uniform in [dt_min, dt_max]. ``dt_rank`` defaults to ceil(H / 16).
    """

    def __init__(
        self,
        d_model: int,
        state_dim: int = 16,
        *,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not 0 < dt_min <= dt_max:
            msg = f"need 0 < `dt_min` <= `dt_max`, got dt_min={dt_min}, dt_max={dt_max}"
            raise ValueError(msg)
        self.d_model = d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank is None else dt_rank
        self.dt_min, self.dt_max = dt_min, dt_max
        factory = {"device": device, "dtype": dtype}
        s4d_real = torch.log(torch.arange(1, state_dim + 1, **factory))
        self.A_log = nn.Parameter(s4d_real.repeat(d_model, 1))
        self.D = nn.Parameter(torch.ones(d_model, **factory))
        self.x_proj = nn.Linear(d_model, self.dt_rank + 2 * state_dim, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, d_model, **factory)
        log_dt = torch.empty(d_model, **factory).uniform_(math.log(dt_min), math.log(dt_max))
        with torch.no_grad():
            self.dt_proj.bias.copy_(_inverse_softplus(torch.exp(log_dt)))

    @property
    def state_dim(self) -> int:
        """The shared state dimension N."""
        return self.A_log.shape[1]

    def hyper_parameters(self) -> dict[str, Any]:
        """The constructor arguments besides state_dim, device and dtype."""
        return {
            "d_model": self.d_model,
            "dt_rank": self.dt_rank,
            "dt_min": self.dt_min,
            "dt_max": self.dt_max,
        }

    def time_varying_system(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(abar, bbar, C)`` of the recurrence driven by ``u`` (batch, L, H), differentiable
        (wrap in ``torch.no_grad()`` to analyse): abar and bbar (batch, L, H, N), C (batch, L, N).

        h_k = abar_k * h_(k-1) + bbar_k * u_k[..., None],  y_k = sum_n C_k[n] h_k[:, n] + D * u_k.
        """
        delta_raw, B, C = torch.split(
            self.x_proj(u), [self.dt_rank, self.state_dim, self.state_dim], dim=-1
        )
        delta = F.softplus(self.dt_proj(delta_raw))[..., None]
        abar = torch.exp(delta * -torch.exp(self.A_log))
        bbar = delta * B[..., None, :]
        return abar, bbar, C

    def forward(self, u: Tensor) -> Tensor:
        """(batch, L, H) -> (batch, L, H), by the parallel scan over the H * N states."""
        abar, bbar, C = self.time_varying_system(u)
        states = diagonal_scan(abar.flatten(-2), (bbar * u[..., None]).flatten(-2))
        states = states.unflatten(-1, abar.shape[-2:])
        return (states @ C[..., None]).squeeze(-1) + self.D * u

    def with_states(self, keep: Sequence[int]) -> SelectiveSSM:
        """A new layer of state dimension ``len(keep)`` keeping the state indices ``keep``, in
        that order: ``A_log[:, keep]`` and the B and C rows ``keep`` of ``x_proj``; the
        delta rows, ``dt_proj`` and ``D`` are copied. Same hyper-parameters, dtype, device,
        training mode and requires_grad; ``self`` is unchanged.

        Raises ValueError when ``keep`` is empty, repeats an index or leaves [0, N).
        """
        indices = torch.tensor(
            checked_state_indices(keep, self.state_dim), device=self.A_log.device
        )
        n = self.state_dim
        x_rows = torch.cat(
            [
                torch.arange(self.dt_rank, device=indices.device),
                self.dt_rank + indices,
                self.dt_rank + n + indices,
            ]
        )
        values = {
            "A_log": self.A_log[:, indices],
            "D": self.D,
            "x_proj.weight": self.x_proj.weight[x_rows],
            "dt_proj.weight": self.dt_proj.weight,
            "dt_proj.bias": self.dt_proj.bias,
        }
        new = nn.utils.skip_init(
            SelectiveSSM,
            state_dim=len(indices),
            device=self.A_log.device,
            dtype=self.A_log.dtype,
            **self.hyper_parameters(),
        )
        old_parameters = dict(self.named_parameters())
        with torch.no_grad():
            for name, parameter in new.named_parameters():
                parameter.copy_(values[name])
                parameter.requires_grad_(old_parameters[name].requires_grad)
        return new.train(self.training)


class SelectiveBlock(nn.Module):
    """A pre-norm residual Mamba block, (batch, L, H) -> (batch, L, H), E = expand * H:

        x, z = split(in_proj(LayerNorm(u)), [E, E])
        x = SiLU(causal depthwise Conv1d(x, kernel conv_kernel))
        y = u + out_proj(SelectiveSSM(E, N)(x) * SiLU(z))

    in_proj and out_proj have no bias (as in Mamba); the convolution has one.
    """

    def __init__(
        self,
        d_model: int,
        state_dim: int = 16,
        *,
        expand: int = 2,
        conv_kernel: int = 4,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        inner = expand * d_model
        factory = {"device": device, "dtype": dtype}
        self.norm = nn.LayerNorm(d_model, **factory)
        self.in_proj = nn.Linear(d_model, 2 * inner, bias=False, **factory)
        self.conv = nn.Conv1d(
            inner, inner, conv_kernel, groups=inner, padding=conv_kernel - 1, **factory
        )
        self.ssm = SelectiveSSM(inner, state_dim, **factory)
        self.out_proj = nn.Linear(inner, d_model, bias=False, **factory)

    def forward(self, u: Tensor) -> Tensor:
        x, z = self.in_proj(self.norm(u)).chunk(2, dim=-1)
        x = self.conv(x.transpose(-1, -2))[..., : u.shape[-2]].transpose(-1, -2)
        return u + self.out_proj(self.ssm(F.silu(x)) * F.silu(z))


class SelectiveSequenceModel(nn.Module):
    """Linear(d_input, H) -> n_layers Mamba blocks -> LayerNorm -> pooling -> Linear(H, d_output).

    (batch, L, d_input) -> (batch, d_output) for pooling "mean" or "last", and
    (batch, L, d_output) for "none". ``state_dim`` is one int for all layers or one per layer.
    """

    def __init__(
        self,
        d_input: int,
        d_output: int,
        d_model: int,
        state_dim: int | Sequence[int],
        n_layers: int,
        *,
        pooling: str = "mean",
        expand: int = 2,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            msg = f"`pooling` {pooling!r} is unknown; choose one of {POOLINGS}"
            raise ValueError(msg)
        state_dims = [state_dim] * n_layers if isinstance(state_dim, int) else list(state_dim)
        if len(state_dims) != n_layers:
            msg = f"`state_dim` must be an int or hold n_layers={n_layers} ints, got {state_dim}"
            raise ValueError(msg)
        self._options = {
            "d_input": d_input,
            "d_output": d_output,
            "d_model": d_model,
            "pooling": pooling,
            "expand": expand,
        }
        self.encoder = nn.Linear(d_input, d_model)
        self.blocks = nn.ModuleList(SelectiveBlock(d_model, n, expand=expand) for n in state_dims)
        self.norm = nn.LayerNorm(d_model)
        self.decoder = nn.Linear(d_model, d_output)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this architecture, with the current
        per-layer ``state_dims`` (they change when layers are reduced) and ``layer``
        "selective" (which tells checkpoints apart from LRU/S5 ones); see ``from_config``."""
        state_dims = [layer.state_dim for _, layer in self.selective_layers()]
        return {
            "layer": "selective",
            **copy.deepcopy(self._options),
            "n_layers": len(state_dims),
            "state_dims": state_dims,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SelectiveSequenceModel:
        """A freshly initialised model of the architecture ``config`` describes."""
        options = {key: value for key, value in config.items() if key != "layer"}
        return cls(state_dim=options.pop("state_dims"), **options)

    def forward(self, u: Tensor) -> Tensor:
        x = self.encoder(u)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        pooling = self._options["pooling"]
        if pooling == "mean":
            x = x.mean(dim=-2)
        elif pooling == "last":
            x = x[..., -1, :]
        return self.decoder(x)

    def selective_layers(self) -> list[tuple[str, SelectiveSSM]]:
        """``(qualified name, layer)`` of every selective SSM layer, in order ("blocks.0.ssm")."""
        return [
            (name, module)
            for name, module in self.named_modules()
            if isinstance(module, SelectiveSSM)
        ]

    def with_selective_layers(self, layers: Mapping[str, SelectiveSSM]) -> SelectiveSequenceModel:
        """A new model with the selective layers named in ``layers`` replaced (e.g. by
        ``layer.with_states(keep)``); ``self`` is unchanged.

        A deep copy of ``self`` except for the given layers, which it uses as they are; carry
        an optimizer's state over by qualified parameter name, not by tensor identity.
        """
        current = dict(self.selective_layers())
        unknown = sorted(set(layers) - set(current))
        if unknown:
            msg = f"`layers` names {unknown}, which are not selective layers of this model; known: {sorted(current)}"
            raise ValueError(msg)
        memo = {id(current[name]): new for name, new in layers.items()}
        return copy.deepcopy(self, memo)
