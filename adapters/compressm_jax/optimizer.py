"""Carry an Optax state over to a compressed model, saying what happens to each leaf.

The rule (the same as ``compressm_torch``'s where Optax allows it):
- the state is rebuilt with ``optimizer.init`` on the new parameters, which gives every
  reduced layer's parameters fresh state (Adam: zero moments) in their new shapes;
- every leaf that belongs to a parameter outside the reduced layers is then copied
  exactly from the old state, and so is every leaf shared by all parameters (Adam's step
  ``count``). Unlike PyTorch's per-parameter step, Optax's count is shared, so Adam's
  bias correction does not restart for the reduced layers.
"""

from __future__ import annotations

import equinox as eqx
import jax
import optax


def _leaf_paths(tree) -> dict[str, jax.Array]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _layer_key(name: str) -> str:
    """``blocks.0.ssm`` -> the keystr fragment ``.blocks[0].ssm`` used in state leaf paths."""
    return "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in name.split("."))


def transfer_optimizer_state(
    optimizer: optax.GradientTransformation,
    opt_state: optax.OptState,
    old_model: eqx.Module,
    new_model: eqx.Module,
    *,
    reset: tuple[str, ...] = (),
) -> optax.OptState:
    """A state for ``new_model`` (see the module docstring); ``opt_state`` is not modified.

    ``reset`` names the layers (dotted names, e.g. "blocks.0.ssm") whose parameters start
    afresh. Leaves are matched between the old and new state by their pytree path.
    """
    fresh = optimizer.init(eqx.filter(new_model, eqx.is_array))
    old_leaves = _leaf_paths(opt_state)
    fragments = tuple(_layer_key(name) for name in reset)
    paths, treedef = jax.tree_util.tree_flatten_with_path(fresh)
    leaves = []
    for path, leaf in paths:
        key = jax.tree_util.keystr(path)
        old = old_leaves.get(key)
        reset_here = any(fragment + "." in key or key.endswith(fragment) for fragment in fragments)
        if old is not None and not reset_here and getattr(old, "shape", None) == getattr(leaf, "shape", None):
            leaf = old
        leaves.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, leaves)
