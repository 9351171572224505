"""Carry an Optax state over to a compressed model, saying what happens to each leaf.

The rule (the same as ``compressm_torch``'s where Optax allows it):
- the state is rebuilt with ``optimizer.init`` on the new parameters, which gives every
  reduced layer's parameters fresh state (Adam: zero moments) in their new shapes;
- every leaf that belongs to a parameter outside the reduced layers is then copied
  exactly from the old state, and so is every leaf shared by all parameters (Adam's step
  ``count``). Unlike PyTorch's per-parameter step, Optax's count is shared, so Adam's
  bias correction does not restart for the reduced layers, and an Optax learning-rate
  schedule (a function of the count) simply continues;
- with ``optimizer_state="slice"`` (what the authors' ``truncate_optimizer_state`` does) the
  reduced layers' leaves are the old ones cut to the new shapes instead of fresh ones: the
  entries an index selection kept (selective layers, exact: ``selection_indices``), or
  along each axis that shrank the first ``r`` entries after a balanced truncation (the
  moments of the first ``r`` old diagonal states, not of the new balanced states: only
  their scale carries over). A leaf that cannot be cut so (an axis grew) stays fresh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import optax


def _leaf_paths(tree) -> dict[str, jax.Array]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _layer_key(name: str) -> str:
    """``blocks.0.ssm`` -> the keystr fragment ``.blocks[0].ssm`` used in state leaf paths."""
    return "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in name.split("."))


def sliced_leaf(old: jax.Array, shape: Sequence[int]) -> jax.Array | None:
    """``old`` cut down to ``shape`` by keeping the first entries along every axis that shrank;
    None when an axis grew or the number of axes differs."""
    if old.ndim != len(shape) or any(n > o for o, n in zip(old.shape, shape, strict=True)):
        return None
    return old[tuple(slice(0, n) for n in shape)]


def selection_indices(layer: eqx.Module, keep: Sequence[int]) -> dict[str, jax.Array]:
    """Which entries of ``layer``'s arrays ``layer.with_states(keep)`` keeps: for every array
    of the new layer (its path inside the layer, as ``jax.tree_util.keystr``), the flat index
    of each entry in the old array. Found by numbering the old entries and letting
    ``with_states`` select them; a ValueError names the layer if it does more than select."""
    arrays, static = eqx.partition(layer, eqx.is_inexact_array)
    numbered = jax.tree_util.tree_map(lambda a: jnp.arange(a.size, dtype=a.dtype).reshape(a.shape), arrays)
    sizes = {key: leaf.size for key, leaf in _leaf_paths(numbered).items()}
    selected = eqx.filter(eqx.combine(numbered, static).with_states(list(keep)), eqx.is_inexact_array)
    indices = {}
    for key, leaf in _leaf_paths(selected).items():
        index = jnp.round(leaf).astype(jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)
        if not bool(jnp.all(index == leaf)) or int(index.min()) < 0 or int(index.max()) >= sizes[key]:
            msg = f"`with_states` of {type(layer).__name__} does not select entries of `{key}`; use optimizer_state='reset'"
            raise ValueError(msg)
        indices[key] = index
    return indices


def transfer_optimizer_state(
    optimizer: optax.GradientTransformation,
    opt_state: optax.OptState,
    old_model: eqx.Module,
    new_model: eqx.Module,
    *,
    reset: tuple[str, ...] = (),
    sliced: Mapping[str, Mapping[str, jax.Array] | None] | None = None,
) -> optax.OptState:
    """A state for ``new_model`` (see the module docstring); ``opt_state`` is not modified.

    ``reset`` names the layers (dotted names, e.g. "blocks.0.ssm") whose parameters start
    afresh; ``sliced`` maps the layers whose leaves are cut to the ``selection_indices`` of
    their arrays (index selection) or to None (balanced truncation: leading entries). Leaves
    are matched between the old and new state by their pytree path.
    """
    fresh = optimizer.init(eqx.filter(new_model, eqx.is_array))
    old_leaves = _leaf_paths(opt_state)
    fragments = tuple(_layer_key(name) for name in reset)
    slices = {_layer_key(name): kept for name, kept in (sliced or {}).items()}
    paths, treedef = jax.tree_util.tree_flatten_with_path(fresh)
    leaves = []
    for path, leaf in paths:
        key = jax.tree_util.keystr(path)
        old = old_leaves.get(key)
        reset_here = any(_under(key, fragment) for fragment in fragments)
        layer = next((fragment for fragment in slices if _under(key, fragment)), None)
        shape = getattr(leaf, "shape", None)
        if old is not None and not reset_here and getattr(old, "shape", None) == shape:
            leaf = old
        elif old is not None and layer is not None and shape is not None:
            index = None if slices[layer] is None else slices[layer].get(key[key.index(layer) + len(layer) :])
            cut = sliced_leaf(old, shape) if index is None else old.reshape(-1)[index]
            leaf = leaf if cut is None or cut.shape != shape else cut.astype(leaf.dtype)
        leaves.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _under(key: str, fragment: str) -> bool:
    """Whether the state leaf path ``key`` lies under the layer path ``fragment``."""
    return fragment + "." in key or fragment + "[" in key or key.endswith(fragment)
