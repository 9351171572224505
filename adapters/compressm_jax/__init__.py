"""compressm_jax: in-training compression of JAX (Equinox + Optax) SSMs with compressm_core."""

from .compressor import CompressionEvent, Compressor
from .interface import ReducibleSSM
from .optimizer import transfer_optimizer_state
from .reduce import (
    Compressed,
    LayerReduction,
    compress,
    hankel_singular_values,
    reduce_layer,
    reducible_layers,
    replace_layers,
)

__all__ = [
    "Compressed",
    "CompressionEvent",
    "Compressor",
    "LayerReduction",
    "ReducibleSSM",
    "compress",
    "hankel_singular_values",
    "reduce_layer",
    "reducible_layers",
    "replace_layers",
    "transfer_optimizer_state",
]
