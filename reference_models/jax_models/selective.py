"""A selective (Mamba-style, S6) SSM layer, the Mamba block around it, and a model of blocks.

The JAX twin of ``reference_models.torch_models.selective``, with the same parameter names
and shapes, so ``state_dict`` / ``load_state_dict`` exchange weights with it by name. Per
channel h and state n, with input-dependent step, input and output vectors:

    delta_raw_k, B_k, C_k = split(x_proj(u_k), [dt_rank, N, N])
    delta_k = softplus(dt_proj(delta_raw_k))                    (H,)
    abar_k = exp(delta_k[h] A[h, n]),  A = -exp(A_log)          (H, N), zero-order hold
    bbar_k = delta_k[h] B_k[n]                                  (H, N), Euler step as in Mamba
    h_k = abar_k * h_(k-1) + bbar_k * u_k[h],   h_(-1) = 0
    y_k[h] = sum_n C_k[n] h_k[h, n] + D[h] u_k[h]

A linear time-varying system: it is not a ``compressm_jax.ReducibleSSM``. B_k and C_k are
shared across channels, so a reduction *selects* state indices (``SelectiveSSM.with_states``),
ranked by the caller from ``SelectiveSSM.time_varying_system`` (see ``compressm_core.ltv``).
Every module is called on one sequence; vmap for batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._indices import checked_state_indices
from .scan import diagonal_scan

_POOLINGS = ("mean", "last", "none")

Pooling = Literal["mean", "last", "none"]


def _inverse_softplus(x: Array) -> Array:
    """The y with softplus(y) = x, for x > 0."""
    return x + jnp.log(-jnp.expm1(-x))


def _linear_with_weight(weight: Float[Array, "out in"]) -> eqx.nn.Linear:
    """A bias-free ``eqx.nn.Linear`` whose weight is ``weight``."""
    out_features, in_features = weight.shape
    linear = eqx.nn.Linear(
        in_features, out_features, use_bias=False, dtype=weight.dtype, key=jax.random.key(0)
    )
    return eqx.tree_at(lambda layer: layer.weight, linear, weight)


class SelectiveSSM(eqx.Module):
    """The S6 recurrence (module docstring) on one sequence: (L, H) -> (L, H).

    Parameters: ``A_log`` (H, N), S4D-real init ``log(1..N)`` in every channel; ``D`` (H,),
    ones; ``x_proj`` Linear(H, dt_rank + 2N, no bias), rows [0, dt_rank) give delta_raw,
    the next N rows B, the last N rows C; ``dt_proj`` Linear(dt_rank, H) whose bias makes
    softplus(bias) log-uniform in [dt_min, dt_max]. ``dt_rank`` defaults to ceil(H / 16).
    """

    A_log: Float[Array, "d_model n"]
    D: Float[Array, " d_model"]
    x_proj: eqx.nn.Linear
    dt_proj: eqx.nn.Linear
    d_model: int = eqx.field(static=True)
    dt_rank: int = eqx.field(static=True)
    dt_min: float = eqx.field(static=True)
    dt_max: float = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        state_dim: int = 16,
        *,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        key: PRNGKeyArray,
    ) -> None:
        if not 0 < dt_min <= dt_max:
            msg = f"need 0 < `dt_min` <= `dt_max`, got dt_min={dt_min}, dt_max={dt_max}"
            raise ValueError(msg)
        self.d_model = d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank is None else dt_rank
        self.dt_min, self.dt_max = dt_min, dt_max
        x_key, dt_key, step_key = jax.random.split(key, 3)
        self.x_proj = eqx.nn.Linear(
            d_model, self.dt_rank + 2 * state_dim, use_bias=False, key=x_key
        )
        dtype = self.x_proj.weight.dtype
        self.A_log = jnp.tile(jnp.log(jnp.arange(1, state_dim + 1, dtype=dtype)), (d_model, 1))
        self.D = jnp.ones(d_model, dtype=dtype)
        log_step = jax.random.uniform(
            step_key, (d_model,), dtype, math.log(dt_min), math.log(dt_max)
        )
        self.dt_proj = eqx.tree_at(
            lambda linear: linear.bias,
            eqx.nn.Linear(self.dt_rank, d_model, key=dt_key),
            _inverse_softplus(jnp.exp(log_step)),
        )

    @property
    def state_dim(self) -> int:
        """The shared state dimension N."""
        return self.A_log.shape[1]

    def time_varying_system(
        self, u: Float[Array, "L d_model"]
    ) -> tuple[Float[Array, "L d_model n"], Float[Array, "L d_model n"], Float[Array, "L n"]]:
        """``(abar, bbar, C)`` of the recurrence driven by ``u`` (L, H), differentiable:
        abar and bbar (L, H, N), C (L, N).

        h_k = abar_k * h_(k-1) + bbar_k * u_k[:, None],  y_k = sum_n C_k[n] h_k[:, n] + D * u_k.
        """
        delta_raw, B, C = jnp.split(
            u @ self.x_proj.weight.T, [self.dt_rank, self.dt_rank + self.state_dim], axis=-1
        )
        delta = jax.nn.softplus(jax.vmap(self.dt_proj)(delta_raw))[..., None]
        abar = jnp.exp(delta * -jnp.exp(self.A_log))
        bbar = delta * B[:, None, :]
        return abar, bbar, C

    def __call__(self, u: Float[Array, "L d_model"]) -> Float[Array, "L d_model"]:
        """(L, H) -> (L, H), by the parallel scan over the H * N states."""
        abar, bbar, C = self.time_varying_system(u)
        length = u.shape[0]
        states = diagonal_scan(
            abar.reshape(length, -1), (bbar * u[..., None]).reshape(length, -1)
        ).reshape(abar.shape)
        return jnp.einsum("lhn,ln->lh", states, C) + self.D * u

    def with_states(self, keep: Iterable[int]) -> SelectiveSSM:
        """A new layer of state dimension ``len(keep)`` keeping the state indices ``keep``, in
        that order: ``A_log[:, keep]`` and the B and C rows ``keep`` of ``x_proj``; the
        delta rows, ``dt_proj`` and ``D`` are shared. ``self`` is unchanged.

        Raises ValueError when ``keep`` is empty, repeats an index or leaves [0, N).
        """
        indices = jnp.asarray(checked_state_indices(keep, self.state_dim))
        rows = jnp.concatenate(
            [
                jnp.arange(self.dt_rank),
                self.dt_rank + indices,
                self.dt_rank + self.state_dim + indices,
            ]
        )
        return eqx.tree_at(
            lambda layer: (layer.A_log, layer.x_proj),
            self,
            (self.A_log[:, indices], _linear_with_weight(self.x_proj.weight[rows])),
        )


class CausalDepthwiseConv(eqx.Module):
    """y[t, e] = bias[e] + sum_j weight[e, 0, j] * x[t + j - (K - 1), e], x zero before t = 0.

    The causal part of PyTorch's ``Conv1d(E, E, K, groups=E, padding=K - 1)``, in its
    parameter layout: ``weight`` (E, 1, K), ``bias`` (E,), both U(-1/sqrt(K), 1/sqrt(K)).
    """

    weight: Float[Array, "channels 1 kernel"]
    bias: Float[Array, " channels"]

    def __init__(self, channels: int, kernel: int, *, key: PRNGKeyArray) -> None:
        weight_key, bias_key = jax.random.split(key)
        bound = 1 / math.sqrt(kernel)
        self.weight = jax.random.uniform(
            weight_key, (channels, 1, kernel), minval=-bound, maxval=bound
        )
        self.bias = jax.random.uniform(bias_key, (channels,), minval=-bound, maxval=bound)

    def __call__(self, x: Float[Array, "L channels"]) -> Float[Array, "L channels"]:
        kernel = self.weight.shape[-1]
        padded = jnp.pad(x, ((kernel - 1, 0), (0, 0)))
        shifted = [padded[j : j + x.shape[0]] * self.weight[:, 0, j] for j in range(kernel)]
        return sum(shifted) + self.bias


class SelectiveBlock(eqx.Module):
    """A pre-norm residual Mamba block on one sequence, (L, H) -> (L, H), E = expand * H:

        x, z = split(in_proj(LayerNorm(u)), [E, E])
        x = SiLU(causal depthwise conv(x, kernel conv_kernel))
        y = u + out_proj(SelectiveSSM(E, N)(x) * SiLU(z))

    in_proj and out_proj have no bias (as in Mamba); the convolution has one.
    """

    norm: eqx.nn.LayerNorm
    in_proj: eqx.nn.Linear
    conv: CausalDepthwiseConv
    ssm: SelectiveSSM
    out_proj: eqx.nn.Linear

    def __init__(
        self,
        d_model: int,
        state_dim: int = 16,
        *,
        expand: int = 2,
        conv_kernel: int = 4,
        key: PRNGKeyArray,
    ) -> None:
        inner = expand * d_model
        in_key, conv_key, ssm_key, out_key = jax.random.split(key, 4)
        self.norm = eqx.nn.LayerNorm(d_model)
        self.in_proj = eqx.nn.Linear(d_model, 2 * inner, use_bias=False, key=in_key)
        self.conv = CausalDepthwiseConv(inner, conv_kernel, key=conv_key)
        self.ssm = SelectiveSSM(inner, state_dim, key=ssm_key)
        self.out_proj = eqx.nn.Linear(inner, d_model, use_bias=False, key=out_key)

    def __call__(self, u: Float[Array, "L d_model"]) -> Float[Array, "L d_model"]:
        x, z = jnp.split(jax.vmap(self.in_proj)(jax.vmap(self.norm)(u)), 2, axis=-1)
        x = jax.nn.silu(self.conv(x))
        return u + jax.vmap(self.out_proj)(self.ssm(x) * jax.nn.silu(z))


class SelectiveSequenceModel(eqx.Module):
    """Linear(d_input, H) -> n_layers Mamba blocks -> LayerNorm -> pooling -> Linear(H, d_output).

    One sequence (L, d_input) -> (d_output,) for pooling "mean" or "last", and
    (L, d_output) for "none"; vmap for batches. ``state_dim`` is one int for all layers or
    one per layer.
    """

    encoder: eqx.nn.Linear
    blocks: list[SelectiveBlock]
    norm: eqx.nn.LayerNorm
    decoder: eqx.nn.Linear
    pooling: str = eqx.field(static=True)
    expand: int = eqx.field(static=True)

    def __init__(
        self,
        d_input: int,
        d_output: int,
        d_model: int,
        state_dim: int | Sequence[int],
        n_layers: int,
        *,
        pooling: Pooling = "mean",
        expand: int = 2,
        key: PRNGKeyArray,
    ) -> None:
        if pooling not in _POOLINGS:
            msg = f"`pooling` {pooling!r} is unknown; choose one of {_POOLINGS}"
            raise ValueError(msg)
        state_dims = [state_dim] * n_layers if isinstance(state_dim, int) else list(state_dim)
        if len(state_dims) != n_layers:
            msg = f"`state_dim` must be an int or hold n_layers={n_layers} ints, got {state_dim}"
            raise ValueError(msg)
        encoder_key, decoder_key, *block_keys = jax.random.split(key, 2 + n_layers)
        self.encoder = eqx.nn.Linear(d_input, d_model, key=encoder_key)
        self.blocks = [
            SelectiveBlock(d_model, n, expand=expand, key=block_key)
            for n, block_key in zip(state_dims, block_keys, strict=True)
        ]
        self.norm = eqx.nn.LayerNorm(d_model)
        self.decoder = eqx.nn.Linear(d_model, d_output, key=decoder_key)
        self.pooling = pooling
        self.expand = expand

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this architecture, with the current
        per-layer ``state_dims`` (they change when layers are reduced) and ``layer``
        "selective", as the PyTorch model's; see ``from_config``."""
        return {
            "layer": "selective",
            "d_input": self.encoder.in_features,
            "d_output": self.decoder.out_features,
            "d_model": self.encoder.out_features,
            "pooling": self.pooling,
            "expand": self.expand,
            "n_layers": len(self.blocks),
            "state_dims": [layer.state_dim for _, layer in self.selective_layers()],
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], key: PRNGKeyArray) -> SelectiveSequenceModel:
        """A freshly initialised model of the architecture ``config`` describes."""
        options = {name: value for name, value in config.items() if name != "layer"}
        return cls(state_dim=options.pop("state_dims"), **options, key=key)

    def __call__(
        self,
        x: Float[Array, "L d_input"],
        *,
        key: PRNGKeyArray | None = None,
        inference: bool = False,
    ) -> Float[Array, " d_output"] | Float[Array, "L d_output"]:
        """``key`` and ``inference`` are accepted for the call signature of ``SequenceModel``
        (the JAX trainer passes them); this model has no dropout, so they change nothing."""
        h = jax.vmap(self.encoder)(x)
        for block in self.blocks:
            h = block(h)
        h = jax.vmap(self.norm)(h)
        if self.pooling == "none":
            return jax.vmap(self.decoder)(h)
        pooled = jnp.mean(h, axis=0) if self.pooling == "mean" else h[-1]
        return self.decoder(pooled)

    def selective_layers(self) -> list[tuple[str, SelectiveSSM]]:
        """``(qualified name, layer)`` of every selective SSM layer, in order ("blocks.0.ssm")."""
        return [(f"blocks.{i}.ssm", block.ssm) for i, block in enumerate(self.blocks)]

    def with_selective_layers(self, layers: Mapping[str, SelectiveSSM]) -> SelectiveSequenceModel:
        """A new model with the selective layers named in ``layers`` replaced (e.g. by
        ``layer.with_states(keep)``); ``self`` is unchanged, all other arrays are shared."""
        position = {name: i for i, (name, _) in enumerate(self.selective_layers())}
        unknown = sorted(set(layers) - set(position))
        if unknown:
            msg = f"`layers` names {unknown}, which are not selective layers of this model; known: {sorted(position)}"
            raise ValueError(msg)
        names = list(layers)
        return eqx.tree_at(
            lambda model: [model.blocks[position[name]].ssm for name in names],
            self,
            [layers[name] for name in names],
        )
