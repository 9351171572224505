"""A deep sequence model of SSM blocks: encoder, residual blocks, pooling, decoder.

Block (pre-norm, as in the LRU and CompreSSM code):
    y = u + dropout(glu(Linear(H, 2H)(dropout(gelu(ssm(norm(u)))))))
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from compressm_torch import ReducibleSSM

from .lru import LRU
from .s5 import S5

LAYERS: dict[str, type[nn.Module]] = {"lru": LRU, "s5": S5}
POOLINGS = ("mean", "last", "none")
NORMS = ("layer", "batch")


class SequenceBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the channels of (batch, L, H) sequences."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(-1, -2)).transpose(-1, -2)


class SSMBlock(nn.Module):
    """Pre-norm residual block around one SSM layer ``ssm``: (batch, L, H) -> (batch, L, H)."""

    def __init__(
        self, ssm: nn.Module, d_model: int, *, norm: str = "layer", dropout: float = 0.0
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            msg = f"`norm` {norm!r} is unknown; choose one of {NORMS}"
            raise ValueError(msg)
        self.norm = nn.LayerNorm(d_model) if norm == "layer" else SequenceBatchNorm(d_model)
        self.ssm = ssm
        self.out = nn.Linear(d_model, 2 * d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, u: Tensor) -> Tensor:
        x = self.dropout(F.gelu(self.ssm(self.norm(u))))
        return u + self.dropout(F.glu(self.out(x), dim=-1))


class SequenceModel(nn.Module):
    """Linear(d_input, H) -> n_layers SSM blocks -> pooling -> Linear(H, d_output).

    (batch, L, d_input) -> (batch, d_output) for pooling "mean" or "last", and
    (batch, L, d_output) for "none". ``state_dim`` is one int for all layers or one per
    layer; ``layer_options`` go to every SSM layer's constructor (e.g. ``r_min`` for LRU).
    """

    def __init__(
        self,
        d_input: int,
        d_output: int,
        d_model: int,
        state_dim: int | Sequence[int],
        n_layers: int,
        *,
        layer: str = "lru",
        pooling: str = "mean",
        dropout: float = 0.0,
        norm: str = "layer",
        layer_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if layer not in LAYERS:
            msg = f"`layer` {layer!r} is unknown; choose one of {tuple(LAYERS)}"
            raise ValueError(msg)
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
            "layer": layer,
            "pooling": pooling,
            "dropout": dropout,
            "norm": norm,
            "layer_options": dict(layer_options or {}),
        }
        ssm_class = LAYERS[layer]
        self.encoder = nn.Linear(d_input, d_model)
        self.blocks = nn.ModuleList(
            SSMBlock(
                ssm_class(d_model, n, **self._options["layer_options"]),
                d_model,
                norm=norm,
                dropout=dropout,
            )
            for n in state_dims
        )
        self.decoder = nn.Linear(d_model, d_output)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this architecture, with the current
        per-layer ``state_dims`` (they change when layers are reduced); see ``from_config``."""
        state_dims = [layer.state_dim for _, layer in self.ssm_layers()]
        return {
            **copy.deepcopy(self._options),
            "n_layers": len(state_dims),
            "state_dims": state_dims,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SequenceModel:
        """A freshly initialised model of the architecture ``config`` describes."""
        options = dict(config)
        return cls(state_dim=options.pop("state_dims"), **options)

    def forward(self, u: Tensor) -> Tensor:
        x = self.encoder(u)
        for block in self.blocks:
            x = block(x)
        pooling = self._options["pooling"]
        if pooling == "mean":
            x = x.mean(dim=-2)
        elif pooling == "last":
            x = x[..., -1, :]
        return self.decoder(x)

    def ssm_layers(self) -> list[tuple[str, ReducibleSSM]]:
        """``(qualified name, layer)`` of every reducible SSM layer, in order (e.g. "blocks.0.ssm")."""
        return [
            (name, module)
            for name, module in self.named_modules()
            if isinstance(module, ReducibleSSM)
        ]

    def with_ssm_layers(self, layers: Mapping[str, nn.Module]) -> SequenceModel:
        """A new model with the SSM layers named in ``layers`` replaced; ``self`` is unchanged.

        The new model is a deep copy of ``self`` except for the given layers, which it uses
        as they are. Its parameters are new tensors, so an optimizer's state must be carried
        over by qualified parameter name (``named_parameters()``), not by tensor identity; the
        old model stays intact, which makes rolling a reduction back trivial.
        """
        current = dict(self.ssm_layers())
        unknown = sorted(set(layers) - set(current))
        if unknown:
            msg = f"`layers` names {unknown}, which are not SSM layers of this model; known: {sorted(current)}"
            raise ValueError(msg)
        memo = {id(current[name]): new for name, new in layers.items()}
        return copy.deepcopy(self, memo)
