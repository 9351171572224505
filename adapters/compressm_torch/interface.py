"""The one interface a PyTorch SSM layer implements so that the compressor can shrink it.

The compressor knows nothing about LRU, S5 or Mamba internals: it reads a layer's linear
system, reduces it with ``compressm_core`` and asks the layer for a smaller copy of itself.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

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
        """The layer's system as torch tensors on its device, differentiable: poles (n,),
        B (n, m), C (p, n), D (p, m)."""

    def with_system(self, system: cc.DiagonalStateSpace) -> ReducibleSSM:
        """A new layer (same hyper-parameters, other parameters copied) whose recurrence is
        ``system``, of order ``system.n``; ``self`` is left unchanged."""
