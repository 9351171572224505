"""compressm_torch: in-training compression of PyTorch SSMs with compressm_core.

``compressm_torch.hf`` (Hugging Face ``transformers`` Mamba / Mamba-2) is imported explicitly.
"""

from compressm_core.layers import CompressionEvent, Judgement

from .compressor import Checkpoint, Compressor
from .interface import ReducibleSSM
from .optimizer import hand_over_schedulers, transfer_optimizer
from .reduce import (
    Compressed,
    LayerReduction,
    compress,
    compressible_layers,
    hankel_singular_values,
    reduce_layer,
    reducible_layers,
)
from .selective import (
    ReducibleSelectiveSSM,
    register_selective_adapter,
    selective_layers,
    state_energies,
)

__all__ = [
    "Checkpoint",
    "Compressed",
    "CompressionEvent",
    "Compressor",
    "Judgement",
    "LayerReduction",
    "ReducibleSSM",
    "ReducibleSelectiveSSM",
    "compress",
    "compressible_layers",
    "hand_over_schedulers",
    "hankel_singular_values",
    "reduce_layer",
    "reducible_layers",
    "register_selective_adapter",
    "selective_layers",
    "state_energies",
    "transfer_optimizer",
]
