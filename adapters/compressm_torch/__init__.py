"""compressm_torch: in-training compression of PyTorch SSMs with compressm_core."""

from .compressor import CompressionEvent, Compressor
from .interface import ReducibleSSM
from .optimizer import transfer_optimizer
from .reduce import (
    Compressed,
    LayerReduction,
    compress,
    hankel_singular_values,
    reduce_layer,
    reducible_layers,
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
    "transfer_optimizer",
]
