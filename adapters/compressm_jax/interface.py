"""The interfaces a JAX (Equinox) SSM layer implements so that the compressor can shrink it.

The compressor knows nothing about LRU, S5 or Mamba internals: it reads a time-invariant
layer's linear system (``ReducibleSSM``) or a selective layer's time-varying one on an input
(``ReducibleSelectiveSSM``), reduces it with ``compressm_core`` and asks the layer for a
smaller copy of itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import equinox as eqx
import jax

import compressm_core as cc


@runtime_checkable
class ReducibleSSM(Protocol):
    """A layer with a diagonal linear recurrence ``x_k = diag(poles) x_(k-1) + B u_k``,
    ``y_k = C x_k + D u_k`` (the output read as ``Re(...)`` when ``real_output``).

    Its transfer function is z times that of the core's ``(poles, B, C)`` convention,
    which changes neither the Hankel singular values nor truncation error bounds.
    """

    #: True when the layer outputs ``Re(C x) + D u`` (LRU, S5); False for ``C x + D u``.
    real_output: bool

    @property
    def state_dim(self) -> int:
        """The current state dimension n."""

    def ssm_system(self) -> cc.DiagonalStateSpace:
        """The layer's system as JAX arrays, differentiable: poles (n,),
        B (n, m), C (p, n), D (p, m)."""

    def with_system(self, system: cc.DiagonalStateSpace) -> ReducibleSSM:
        """A new module (same hyper-parameters, other fields shared) whose recurrence is
        ``system``, of order ``system.n``; ``self`` is left unchanged."""


@runtime_checkable
class ReducibleSelectiveSSM(Protocol):
    """A layer ``(L, H) -> (L, H)`` whose recurrence, on an input u, is
    ``h_k = abar_k * h_(k-1) + bbar_k * u_k[:, None]`` per channel (state dim N) with a
    read-out ``C_k`` shared by the channels."""

    @property
    def state_dim(self) -> int:
        """The shared state dimension N."""

    def time_varying_system(self, u: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(abar, bbar, C)`` on one sequence ``u`` (L, H): (L, H, N), (L, H, N), (L, N)."""

    def with_states(self, keep: Sequence[int]) -> eqx.Module:
        """A new layer keeping the state indices ``keep``; ``self`` unchanged."""
