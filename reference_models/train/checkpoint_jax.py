"""Save and load Equinox SequenceModels and JAX training states as safetensors, with the same
names and config metadata as the PyTorch files (either backend reads the other's models).
Loading checks everything before allocating (see ``checkpoint``).

A training checkpoint holds ``model.*``, ``optimizer.<leaf index>`` (the Optax state's leaves
in ``jax.tree_util`` order), ``best.*``, ``pending_model.*`` / ``pending_optimizer.*`` (the
model a safety-net cut is judged against), ``rng.jax`` (the key's data) and JSON metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from compressm_jax.reduce import path_name

from ..jax_models import (
    SelectiveSequenceModel,
    SequenceModel,
    load_state_dict,
    model_config,
    model_from_config,
    state_dict,
)
from .checkpoint import (
    FORMAT_VERSION,
    Tensors,
    read_model_checkpoint,
    read_training_header,
    with_prefix,
)
from .outputs import atomic_path

Model = SequenceModel | SelectiveSequenceModel

_DTYPES = {"float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
           "int32": "I32", "uint32": "U32", "uint8": "U8", "bool": "BOOL", "complex64": "C64"}


def expected_tensors(config: dict[str, Any]) -> Tensors:
    """Name, dtype and shape of every array of the model ``config`` describes, by
    ``eqx.filter_eval_shape`` (nothing allocated)."""
    shapes = eqx.filter_eval_shape(model_from_config, config, jax.random.key(0))
    leaves = jax.tree_util.tree_flatten_with_path(shapes, is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))[0]
    return {path_name(path): (_DTYPES[str(leaf.dtype)], tuple(leaf.shape)) for path, leaf in leaves if isinstance(leaf, jax.ShapeDtypeStruct)}


def _model_arrays(model: Model, prefix: str = "") -> dict[str, np.ndarray]:
    return {prefix + name: np.asarray(value) for name, value in state_dict(model).items()}


def save_model(model: Model, path: str | Path) -> Path:
    """``model`` at ``path`` (written atomically), its config in the metadata."""
    path = Path(path)
    with atomic_path(path) as temporary:
        save_file(_model_arrays(model), str(temporary), metadata={"format": FORMAT_VERSION, "config": json.dumps(model_config(model))})
    return path


def _model_from(config: dict[str, Any], arrays: dict[str, Any]) -> Model:
    return load_state_dict(model_from_config(config, jax.random.key(0)), arrays)


def load_model(path: str | Path) -> Model:
    """A model from a checkpoint written by either backend; ValueError naming the file and
    field when it is not such a checkpoint or does not fit its recorded architecture."""
    config, arrays = read_model_checkpoint(path, "numpy", expected_tensors)
    return _model_from(config, arrays)


def _optimizer_arrays(opt_state: Any, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}.{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree_util.tree_leaves(opt_state))}


def save_training_state(
    path: str | Path,
    *,
    model: Model,
    opt_state: Any,
    key: jax.Array,
    state: dict[str, Any],
    best: Model | None = None,
    pending: tuple[Model, Any] | None = None,
) -> Path:
    """Everything a JAX run needs to continue (see the module docstring), written atomically."""
    arrays = {**_model_arrays(model, "model."), **_optimizer_arrays(opt_state, "optimizer")}
    arrays["rng.jax"] = np.asarray(jax.random.key_data(key))
    metadata = {"format": FORMAT_VERSION, "config": json.dumps(model_config(model)), "state": json.dumps(state)}
    if best is not None:
        arrays.update(_model_arrays(best, "best."))
        metadata["best_config"] = json.dumps(model_config(best))
    if pending is not None:
        arrays.update({**_model_arrays(pending[0], "pending_model."), **_optimizer_arrays(pending[1], "pending_optimizer")})
        metadata["pending_config"] = json.dumps(model_config(pending[0]))
    path = Path(path)
    with atomic_path(path) as temporary:
        save_file(arrays, str(temporary), metadata=metadata)
    return path


@dataclass(frozen=True)
class TrainingState:
    """A JAX training checkpoint read back; Optax states still to be rebuilt (``load_optimizer``)."""

    path: Path
    model: Model
    optimizer: dict[str, np.ndarray]
    key: jax.Array
    state: dict[str, Any]
    best: Model | None
    pending_model: Model | None
    pending_optimizer: dict[str, np.ndarray] | None


def load_optimizer(initial: Any, leaves: dict[str, np.ndarray], path: Path) -> Any:
    """The Optax state shaped like ``initial`` (``optimizer.init`` of the restored model) with
    the checkpoint's leaves; ValueError when their number, dtypes or shapes differ."""
    expected, treedef = jax.tree_util.tree_flatten(initial)
    if sorted(leaves) != sorted(str(i) for i in range(len(expected))):
        msg = f"checkpoint {path}: the optimizer state has {len(leaves)} arrays, the model's needs {len(expected)}"
        raise ValueError(msg)
    restored = []
    for i, leaf in enumerate(expected):
        value = leaves[str(i)]
        if value.shape != leaf.shape or value.dtype != leaf.dtype:
            msg = f"checkpoint {path}: optimizer array {i} is {value.dtype} {list(value.shape)}, expected {leaf.dtype} {list(leaf.shape)}"
            raise ValueError(msg)
        restored.append(jnp.asarray(value))
    return jax.tree_util.tree_unflatten(treedef, restored)


def load_training_state(path: str | Path) -> TrainingState:
    """A training checkpoint (``save_training_state``), checked before anything is allocated;
    ValueError naming the file and field otherwise."""
    path = Path(path)
    _, found, configs, state = read_training_header(path, expected_tensors, "rng.jax")
    if found.get("rng.jax", ("", ()))[0] != "U32":
        msg = f"checkpoint {path} has no uint32 `rng.jax`"
        raise ValueError(msg)
    with safe_open(str(path), framework="numpy") as handle:
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
    models = {prefix: _model_from(config, with_prefix(arrays, prefix)) for prefix, config in configs.items()}
    try:
        key = jax.random.wrap_key_data(jnp.asarray(arrays["rng.jax"]))
    except (TypeError, ValueError) as error:
        msg = f"checkpoint {path}: `rng.jax` is not a key: {error}"
        raise ValueError(msg) from None
    pending = with_prefix(arrays, "pending_optimizer.") if "pending_model." in models else None
    return TrainingState(path, models["model."], with_prefix(arrays, "optimizer."), key, state,
                         models.get("best."), models.get("pending_model."), pending)
