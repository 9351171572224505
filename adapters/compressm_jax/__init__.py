"""compressm_torch: in-training compression of JAX SSMs with compressm_core."""

from .interface import ReducibleSSM

__all__ = ["ReducibleSSM"]
