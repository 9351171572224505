"""compressm_jax: in-training compression of JAX (Equinox + Optax) SSMs with compressm_core."""

from .compressor import CompressionEvent, Compressor
from .interface import ReducibleSelectiveSSM, ReducibleSSM
from .optimizer import transfer_optimizer_state
from .reduce import (
    Compressed,
    LayerReduction,
    compress,
    compressible_layers,
    hankel_singular_values,
    reduce_layer,
    reducible_layers,
    replace_layers,
)
from .selective import selective_layers, state_energies

__all__ = [
    "Compressed",
    "CompressionEvent",
    "Compressor",
    "LayerReduction",
    "ReducibleSSM",
    "ReducibleSelectiveSSM",
    "compress",
    "compressible_layers",
    "hankel_singular_values",
    "reduce_layer",
    "reducible_layers",
    "replace_layers",
    "selective_layers",
    "state_energies",
    "transfer_optimizer_state",
]
