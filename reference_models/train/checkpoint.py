"""Reading the checkpoints both backends write, as untrusted input: safetensors arrays plus
the model config (with the current, possibly reduced, state dims) in the file's metadata.

Nothing is allocated before the metadata has been checked: the config field by field
(known keys, types, ranges), then every tensor's name, dtype and shape in the file's header
against the shapes the config implies (computed without allocating, see the backends'
``expected_tensors``). A file that claims ``d_model=20000`` fails at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from .._indices import check_lru_ring
from .config import LRU_RING

#: ``format`` in the metadata of the files this version writes; files without it are
#: model checkpoints of earlier versions (same layout), any other value is refused.
FORMAT_VERSION = "1"
#: ``{tensor name: (safetensors dtype, shape)}``
Tensors = dict[str, tuple[str, tuple[int, ...]]]

_LAYER_OPTIONS = {"lru": {"r_min", "r_max", "max_phase"}, "s5": {"step_min", "step_max"}}
_POOLINGS = ("mean", "last", "none")


def _bad(field: str, value: Any, rule: str) -> ValueError:
    return ValueError(f"checkpoint config field `{field}` must be {rule}, got {value!r}")


def _positive_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _bad(field, value, "a positive integer")
    return value


def _number(field: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and low <= value <= high):
        raise _bad(field, value, f"a number in [{low}, {high}]")
    return value


def check_model_config(config: Any) -> dict[str, Any]:
    """``config`` (a model's ``config``, either backend) checked key by key; one ValueError
    naming the first field that is missing, unknown, of the wrong type or out of range."""
    if not isinstance(config, dict):
        raise _bad("config", config, "a JSON object")
    layer = config.get("layer")
    if layer not in ("lru", "s5", "selective"):
        raise _bad("layer", layer, "one of 'lru', 's5', 'selective'")
    required = {"layer", "d_input", "d_output", "d_model", "pooling", "n_layers", "state_dims"}
    optional = {"expand"} if layer == "selective" else {"dropout", "norm", "layer_options"}
    for field in sorted(required - set(config)):
        raise _bad(field, None, "present")
    for field in sorted(set(config) - required - optional):
        msg = f"checkpoint config field `{field}` is unknown (a checkpoint of another version?)"
        raise ValueError(msg)
    for field in ("d_input", "d_output", "d_model", "n_layers", *(["expand"] if "expand" in config else [])):
        _positive_int(field, config[field])
    if config["pooling"] not in _POOLINGS:
        raise _bad("pooling", config["pooling"], f"one of {_POOLINGS}")
    dims = config["state_dims"]
    if not isinstance(dims, list) or len(dims) != config["n_layers"]:
        raise _bad("state_dims", dims, f"a list of n_layers={config['n_layers']} positive integers")
    for dim in dims:
        _positive_int("state_dims", dim)
    if "dropout" in config:
        _number("dropout", config["dropout"], 0.0, 0.999)
    if "norm" in config and config["norm"] not in ("layer", "batch"):
        raise _bad("norm", config["norm"], "'layer' or 'batch'")
    options = config.get("layer_options", {})
    if not isinstance(options, dict):
        raise _bad("layer_options", options, "a JSON object")
    for name, value in options.items():
        if name not in _LAYER_OPTIONS[layer]:
            msg = f"checkpoint config field `layer_options.{name}` is unknown for layer {layer!r}"
            raise ValueError(msg)
        _number(f"layer_options.{name}", value, 0.0, 1e6)
    if layer == "lru":
        try:
            check_lru_ring(options.get("r_min", LRU_RING[0]), options.get("r_max", LRU_RING[1]))
        except ValueError as error:
            msg = f"checkpoint config field `layer_options`: {error}"
            raise ValueError(msg) from None
    return config


def read_header(path: str | Path) -> tuple[dict[str, str], Tensors]:
    """The metadata and ``{name: (dtype, shape)}`` of a safetensors file, nothing loaded;
    ValueError naming the file when it is missing, not safetensors, or of another version."""
    path = Path(path)
    if not path.is_file():
        msg = f"checkpoint {path} does not exist"
        raise ValueError(msg)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: (handle.get_slice(name).get_dtype(), tuple(handle.get_slice(name).get_shape())) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        msg = f"checkpoint {path} is not a safetensors file: {error}"
        raise ValueError(msg) from None
    if metadata.get("format", FORMAT_VERSION) != FORMAT_VERSION:
        msg = f"checkpoint {path} has format {metadata['format']!r}, this version of compressm reads {FORMAT_VERSION!r}"
        raise ValueError(msg)
    return metadata, tensors


def metadata_json(metadata: Mapping[str, str], field: str, path: str | Path) -> Any:
    """The JSON value stored under ``field``; ValueError naming the field otherwise."""
    if field not in metadata:
        msg = f"checkpoint {path} has no `{field}` in its metadata"
        raise ValueError(msg)
    try:
        return json.loads(metadata[field])
    except json.JSONDecodeError as error:
        msg = f"checkpoint {path}: metadata field `{field}` is not valid JSON ({error})"
        raise ValueError(msg) from None


#: Floating-point widths a checkpoint may hold for a float parameter: loading casts to the
#: model's dtype (JAX with ``jax_enable_x64`` on trains and saves in float64).
_FLOATS = frozenset({"F16", "BF16", "F32", "F64"})


def _kind(dtype: str) -> str:
    return "float" if dtype in _FLOATS else dtype


def check_tensors(path: str | Path, found: Tensors, expected: Tensors, what: str = "model") -> None:
    """ValueError naming the first tensor of ``what`` that is missing, unexpected, or whose
    shape or dtype differs from the recorded architecture's (float widths may differ)."""
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        msg = f"checkpoint {path} does not fit its recorded {what}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        raise ValueError(msg)
    for name, (dtype, shape) in expected.items():
        if (_kind(found[name][0]), found[name][1]) != (_kind(dtype), shape):
            msg = f"checkpoint {path} does not fit its recorded {what}: `{name}` is {found[name][0]} {list(found[name][1])}, expected {dtype} {list(shape)}"
            raise ValueError(msg)


def with_prefix(tensors: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of ``tensors`` whose names start with ``prefix``, without it."""
    return {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}


def read_model_checkpoint(
    path: str | Path, framework: str, expected_tensors: Callable[[dict[str, Any]], Tensors]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, arrays)`` of the model checkpoint at ``path``, arrays as ``framework`` ("pt"
    or "numpy") tensors, loaded only after the config and every tensor's dtype and shape have
    been checked against ``expected_tensors(config)``; ValueError naming the file and field."""
    metadata, found = read_header(path)
    config = check_model_config(metadata_json(metadata, "config", path))
    check_tensors(path, found, expected_tensors(config))
    with safe_open(str(path), framework=framework) as handle:
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
    return config, arrays


#: The models a training checkpoint may hold: tensor-name prefix -> metadata field of its config.
TRAINING_MODELS = {"model.": "config", "best.": "best_config", "pending_model.": "pending_config"}


def read_training_header(
    path: Path, expected_tensors: Callable[[dict[str, Any]], Tensors], rng_prefix: str
) -> tuple[dict[str, str], Tensors, dict[str, dict[str, Any]], dict[str, Any]]:
    """``(metadata, tensors, configs, state)`` of a training checkpoint, nothing loaded: every
    model's config (by tensor prefix: ``model.``, and ``best.``, ``pending_model.`` where
    present) checked with its tensors, no tensor outside the models, the optimizers and
    ``rng_prefix``, and the trainer's JSON ``state``; ValueError naming the file and field."""
    metadata, found = read_header(path)
    configs = {
        prefix: check_model_config(metadata_json(metadata, field, path))
        for prefix, field in TRAINING_MODELS.items()
        if prefix == "model." or field in metadata
    }
    for prefix, config in configs.items():
        check_tensors(path, with_prefix(found, prefix), expected_tensors(config), prefix.rstrip("."))
    unknown = [name for name in found if not name.startswith((*configs, "optimizer.", "pending_optimizer.", rng_prefix))]
    if unknown:
        msg = f"checkpoint {path} holds unknown tensors {unknown[:5]}"
        raise ValueError(msg)
    state = metadata_json(metadata, "state", path)
    if not isinstance(state, dict):
        msg = f"checkpoint {path}: metadata field `state` must be a JSON object"
        raise ValueError(msg)
    return metadata, found, configs, state
