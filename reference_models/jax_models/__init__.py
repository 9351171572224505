"""JAX (Equinox) reference models: LRU and S5 layers that ``compressm_jax`` can shrink, and a
selective (Mamba-style) model whose layers shrink by state selection.

>>> import jax
>>> from reference_models.jax_models import SequenceModel, ssm_layer_paths
>>> model = SequenceModel(1, 10, 16, 32, 2, key=jax.random.key(0))
>>> [(name, layer.state_dim) for name, layer in ssm_layer_paths(model)]
[('blocks.0.ssm', 32), ('blocks.1.ssm', 32)]
"""

from .lru import LRU
from .model import LAYERS, SequenceModel, SSMBlock, model_config, model_from_config
from .parameters import load_state_dict, ssm_layer_paths, state_dict, with_ssm_layers
from .s5 import S5
from .scan import diagonal_scan, linear_recurrence, sequential_scan
from .selective import SelectiveBlock, SelectiveSequenceModel, SelectiveSSM

__all__ = [
    "LAYERS",
    "LRU",
    "S5",
    "SSMBlock",
    "SelectiveBlock",
    "SelectiveSSM",
    "SelectiveSequenceModel",
    "SequenceModel",
    "diagonal_scan",
    "linear_recurrence",
    "load_state_dict",
    "model_config",
    "model_from_config",
    "sequential_scan",
    "ssm_layer_paths",
    "state_dict",
    "with_ssm_layers",
]
