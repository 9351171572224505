"""Parameters of Equinox models by qualified name, as PyTorch names them (``blocks.0.ssm.D``).

Names join attribute names and list indices with dots, so flat ``name -> array`` dicts
(safetensors checkpoints) can be exchanged with the PyTorch reference models. Finding and
replacing SSM layers is the adapter's job (``compressm_jax.reducible_layers`` and
``replace_layers``), re-exported here under the names the models use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from compressm_jax import reducible_layers as ssm_layer_paths
from compressm_jax import replace_layers as with_ssm_layers
from compressm_jax.reduce import path_name as _name

__all__ = ["load_state_dict", "ssm_layer_paths", "state_dict", "with_ssm_layers"]


def state_dict(model: eqx.Module) -> dict[str, np.ndarray]:
    """Every array of ``model`` as a NumPy array, by qualified name."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(eqx.filter(model, eqx.is_array))
    return {_name(path): np.asarray(leaf) for path, leaf in leaves}


def load_state_dict(model: eqx.Module, state: Mapping[str, Any]) -> eqx.Module:
    """A new ``model`` whose arrays are taken from ``state`` (names and shapes must match
    exactly; values are cast to the model's dtypes)."""
    params, static = eqx.partition(model, eqx.is_array)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [_name(path) for path, _ in leaves]
    missing = sorted(set(names) - set(state))
    unexpected = sorted(set(state) - set(names))
    if missing or unexpected:
        msg = f"`state` does not match the model: missing {missing}, unexpected {unexpected}"
        raise ValueError(msg)
    loaded = []
    for name, (_, leaf) in zip(names, leaves, strict=True):
        value = np.asarray(state[name])
        if value.shape != leaf.shape:
            msg = f"`state[{name!r}]` has shape {value.shape}, the model expects {leaf.shape}"
            raise ValueError(msg)
        loaded.append(jnp.asarray(value, dtype=leaf.dtype))
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, loaded), static)
