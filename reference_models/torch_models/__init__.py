"""PyTorch reference SSMs: LRU and S5-style layers, the parallel scan, and a sequence model.

Parameter names match the JAX models in ``reference_models.jax_models``, so weights can be
exchanged between the backends by name.
"""

from .lru import LRU
from .model import SequenceBatchNorm, SequenceModel, SSMBlock
from .s5 import S5
from .scan import diagonal_scan, sequential_scan
from .selective import SelectiveBlock, SelectiveSequenceModel, SelectiveSSM

__all__ = [
    "LRU",
    "S5",
    "SSMBlock",
    "SelectiveBlock",
    "SelectiveSSM",
    "SelectiveSequenceModel",
    "SequenceBatchNorm",
    "SequenceModel",
    "diagonal_scan",
    "sequential_scan",
]
