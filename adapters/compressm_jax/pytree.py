"""Find and replace a model's compressible SSM layers in an Equinox pytree.

The one place that knows both layer interfaces (``interface``); ``reduce`` and
``selective`` build on it, so neither imports the other's lookup.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax

from .interface import ReducibleSelectiveSSM, ReducibleSSM


def _is_layer(node: Any) -> bool:
    return isinstance(node, (ReducibleSSM, ReducibleSelectiveSSM))


def path_name(path: tuple) -> str:
    """The dotted, PyTorch-style name of a pytree key path (``blocks.0.ssm``)."""
    parts = []
    for key in path:
        for attribute in ("name", "idx", "key"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
    return ".".join(parts)


def compressible_layers(model: eqx.Module) -> list[tuple[str, eqx.Module]]:
    """Every layer ``compress`` can shrink, time-invariant (``ReducibleSSM``) or selective
    (``ReducibleSelectiveSSM``), as (dotted name, layer) pairs in pytree order."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(model, is_leaf=_is_layer)
    return [(path_name(path), leaf) for path, leaf in leaves if _is_layer(leaf)]


def _node_at(tree: Any, path: tuple) -> Any:
    for key in path:
        if hasattr(key, "name"):
            tree = getattr(tree, key.name)
        else:
            tree = tree[key.idx if hasattr(key, "idx") else key.key]
    return tree


def replace_layers(model: eqx.Module, layers: dict[str, eqx.Module]) -> eqx.Module:
    """A new model with the named layers replaced (``eqx.tree_at``); ``model`` is unchanged."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(model, is_leaf=_is_layer)
    paths = {path_name(path): path for path, leaf in leaves if _is_layer(leaf)}
    unknown = sorted(set(layers) - set(paths))
    if unknown:
        msg = f"unknown layers {unknown}; the SSM layers are {list(paths)}"
        raise ValueError(msg)
    names = list(layers)
    return eqx.tree_at(
        lambda tree: [_node_at(tree, paths[name]) for name in names],
        model,
        [layers[name] for name in names],
    )
