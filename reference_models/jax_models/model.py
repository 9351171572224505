"""A stack of residual SSM blocks for sequence classification or regression, and its config.

    SSMBlock:       x + Dropout(GLU(Linear(Dropout(GELU(ssm(LayerNorm(x)))))))
    SequenceModel:  decoder(pool(blocks(encoder(x))))

Parameter names match the PyTorch reference models (``encoder.weight``,
``blocks.0.norm.weight``, ``blocks.0.ssm.nu_log``, ``blocks.0.out.bias``, ``decoder.weight``).
"""



from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .lru import LRU
from .s5 import S5
from .selective import SelectiveSequenceModel

#: The SSM layer classes by name, and the constructor options each records in the config.
LAYERS: dict[str, type[LRU] | type[S5]] = {"lru": LRU, "s5": S5}
_LAYER_OPTIONS: dict[str, tuple[str, ...]] = {
    "lru": ("r_min", "r_max", "max_phase"),
    "s5": ("step_min", "step_max"),
}
_POOLINGS = ("mean", "last", "none")

Layer = Literal["lru", "s5"]
Pooling = Literal["mean", "last", "none"]


def _split_or_none(key: PRNGKeyArray | None, num: int) -> Sequence[PRNGKeyArray | None]:
    return [None] * num if key is None else list(jax.random.split(key, num))


class SSMBlock(eqx.Module):
    """Pre-norm residual block around an SSM layer, on one sequence (L, d_model)."""

    norm: eqx.nn.LayerNorm
    ssm: LRU | S5
    out: eqx.nn.Linear
    dropout: eqx.nn.Dropout

    def __init__(self, ssm: LRU | S5, *, dropout: float = 0.0, key: PRNGKeyArray) -> None:
        self.norm = eqx.nn.LayerNorm(ssm.d_model)
        self.ssm = ssm
        self.out = eqx.nn.Linear(ssm.d_model, 2 * ssm.d_model, key=key)
        self.dropout = eqx.nn.Dropout(dropout)

    def __call__(
        self,
        x: Float[Array, "L d_model"],
        *,
        key: PRNGKeyArray | None = None,
        inference: bool = False,
    ) -> Float[Array, "L d_model"]:
        ssm_key, out_key = _split_or_none(key, 2)
        z = jax.nn.gelu(self.ssm(jax.vmap(self.norm)(x)), approximate=False)
        z = self.dropout(z, key=ssm_key, inference=inference)
        z = jax.nn.glu(jax.vmap(self.out)(z), axis=-1)
        return x + self.dropout(z, key=out_key, inference=inference)


class SequenceModel(eqx.Module):
    """Encoder Linear, ``n_layers`` SSM blocks, pooling over time, decoder Linear.

    ``state_dim`` is one state dimension for every layer or one per layer. ``pooling``:
    "mean" or "last" give (d_output,) per sequence, "none" gives (L, d_output).
    ``layer_options`` go to the layer constructor (LRU: r_min, r_max, max_phase;
    S5: step_min, step_max). Call on one sequence (L, d_input); vmap for batches; ``key``
    drives dropout and is needed when ``dropout > 0`` unless ``inference=True``.
    """

    encoder: eqx.nn.Linear
    blocks: list[SSMBlock]
    decoder: eqx.nn.Linear
    layer: str = eqx.field(static=True)
    pooling: str = eqx.field(static=True)

    def __init__(
        self,
        d_input: int,
        d_output: int,
        d_model: int,
        state_dim: int | Sequence[int],
        n_layers: int,
        *,
        layer: Layer = "lru",
        pooling: Pooling = "mean",
        dropout: float = 0.0,
        layer_options: dict[str, float] | None = None,
        key: PRNGKeyArray,
    ) -> None:
        if layer not in LAYERS:
            msg = f"`layer` {layer!r} is unknown; choose one of {sorted(LAYERS)}"
            raise ValueError(msg)
        if pooling not in _POOLINGS:
            msg = f"`pooling` {pooling!r} is unknown; choose one of {_POOLINGS}"
            raise ValueError(msg)
        state_dims = [state_dim] * n_layers if isinstance(state_dim, int) else list(state_dim)
        if n_layers < 1 or len(state_dims) != n_layers:
            msg = f"`state_dim` {state_dim!r} must be an int or hold one entry per layer (n_layers={n_layers})"
            raise ValueError(msg)
        encoder_key, decoder_key, *block_keys = jax.random.split(key, 2 + 2 * n_layers)
        layer_class = LAYERS[layer]
        self.encoder = eqx.nn.Linear(d_input, d_model, key=encoder_key)
        self.blocks = [
            SSMBlock(
                layer_class(d_model, n, key=ssm_key, **(layer_options or {})),
                dropout=dropout,
                key=block_key,
            )
            for n, ssm_key, block_key in zip(
                state_dims, block_keys[::2], block_keys[1::2], strict=True
            )
        ]
        self.decoder = eqx.nn.Linear(d_model, d_output, key=decoder_key)
        self.layer = layer
        self.pooling = pooling

    def __call__(
        self,
        x: Float[Array, "L d_input"],
        *,
        key: PRNGKeyArray | None = None,
        inference: bool = False,
    ) -> Float[Array, " d_output"] | Float[Array, "L d_output"]:
        h = jax.vmap(self.encoder)(x)
        for block, block_key in zip(
            self.blocks, _split_or_none(key, len(self.blocks)), strict=True
        ):
            h = block(h, key=block_key, inference=inference)
        if self.pooling == "none":
            return jax.vmap(self.decoder)(h)
        pooled = jnp.mean(h, axis=0) if self.pooling == "mean" else h[-1]
        return self.decoder(pooled)


def model_config(model: SequenceModel | SelectiveSequenceModel) -> dict[str, Any]:
    """All hyper-parameters of ``model`` as a JSON-friendly dict, current state dims included."""
    if isinstance(model, SelectiveSequenceModel):
        return model.config
    first = model.blocks[0]
    return {
        "d_input": model.encoder.in_features,
        "d_output": model.decoder.out_features,
        "d_model": model.encoder.out_features,
        "state_dims": [block.ssm.state_dim for block in model.blocks],
        "n_layers": len(model.blocks),
        "layer": model.layer,
        "pooling": model.pooling,
        "dropout": float(first.dropout.p),
        "layer_options": {name: getattr(first.ssm, name) for name in _LAYER_OPTIONS[model.layer]},
    }


def model_from_config(
    config: dict[str, Any], key: PRNGKeyArray
) -> SequenceModel | SelectiveSequenceModel:
    """A freshly initialised model with the shapes and options of ``config`` (a
    ``SelectiveSequenceModel`` when its ``layer`` is "selective")."""
    if config["layer"] == "selective":
        return SelectiveSequenceModel.from_config(config, key)
    return SequenceModel(
        config["d_input"],
        config["d_output"],
        config["d_model"],
        config["state_dims"],
        config["n_layers"],
        layer=config["layer"],
        pooling=config["pooling"],
        dropout=config["dropout"],
        layer_options=config.get("layer_options", {}),
        key=key,
    )
