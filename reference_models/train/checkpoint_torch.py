"""Save and load PyTorch SequenceModels and training states as safetensors; the architecture
(with the reduced state dims) travels in the file's metadata, so a reduced model loads
without its history. Loading checks everything before allocating (see ``checkpoint``).

A training checkpoint (``save_training_state``) holds, in one file written atomically:
``model.*`` (current dims), ``optimizer.<index>.<key>`` (the optimizer's tensors),
``best.*`` (the best-validation model), ``pending_model.*`` and ``pending_optimizer.*`` (the
model a safety-net cut is judged against), ``rng.torch`` (and ``rng.cuda.<i>``), and JSON
metadata: the models' configs, the optimizer's groups, and the trainer's ``state``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..torch_models import SelectiveSequenceModel, SequenceModel
from .checkpoint import (
    FORMAT_VERSION,
    Tensors,
    metadata_json,
    read_model_checkpoint,
    read_training_header,
    with_prefix,
)
from .outputs import atomic_path

Model = SequenceModel | SelectiveSequenceModel

_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL",
           torch.complex64: "C64"}
_MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")


def _architecture(config: dict[str, Any]) -> type[Model]:
    return SelectiveSequenceModel if config.get("layer") == "selective" else SequenceModel


def expected_tensors(config: dict[str, Any]) -> Tensors:
    """Name, dtype and shape of every tensor of the model ``config`` describes, computed on
    the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = _architecture(config).from_config(config)
    return {name: (_DTYPES[t.dtype], tuple(t.shape)) for name, t in model.state_dict().items()}


def _model_tensors(model: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """Copies on the CPU (the models of a checkpoint may share parameters: a pending cut's
    model keeps the layers the cut did not touch)."""
    return {prefix + name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}


def save_model(model: Model, path: str | Path) -> Path:
    """``model`` at ``path`` (written atomically), its ``config`` in the metadata."""
    path = Path(path)
    with atomic_path(path) as temporary:
        save_file(_model_tensors(model), str(temporary), metadata={"format": FORMAT_VERSION, "config": json.dumps(model.config)})
    return path


def _model_from(config: dict[str, Any], state: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> Model:
    model = _architecture(config).from_config(config)
    model.load_state_dict(state)
    return model.to(device)


def load_model(path: str | Path) -> Model:
    """The model stored at ``path`` (written by either backend); ValueError naming the file
    and field when it is not such a checkpoint or does not fit its recorded architecture."""
    config, state = read_model_checkpoint(path, "pt", expected_tensors)
    return _model_from(config, state)


def _optimizer_parts(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The optimizer's tensors by ``prefix.<index>.<key>`` and its JSON part (groups, and the
    non-tensor state values)."""
    state_dict = optimizer.state_dict()
    tensors, plain = {}, {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain_state": plain}


def save_training_state(
    path: str | Path,
    *,
    model: Model,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    best: Model | None = None,
    pending: tuple[Model, torch.optim.Optimizer] | None = None,
) -> Path:
    """Everything a run needs to continue (see the module docstring), written atomically."""
    tensors = _model_tensors(model, "model.")
    optimizer_tensors, optimizer_json = _optimizer_parts(optimizer, "optimizer")
    tensors.update(optimizer_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    metadata = {"format": FORMAT_VERSION, "config": json.dumps(model.config), "optimizer": json.dumps(optimizer_json),
                "state": json.dumps(state)}
    if best is not None:
        tensors.update(_model_tensors(best, "best."))
        metadata["best_config"] = json.dumps(best.config)
    if pending is not None:
        tensors.update(_model_tensors(pending[0], "pending_model."))
        pending_tensors, pending_json = _optimizer_parts(pending[1], "pending_optimizer")
        tensors.update(pending_tensors)
        metadata["pending_config"] = json.dumps(pending[0].config)
        metadata["pending_optimizer"] = json.dumps(pending_json)
    path = Path(path)
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    return path


@dataclass(frozen=True)
class TrainingState:
    """A training checkpoint read back: models on ``device``, optimizers still to be built
    over them (``load_optimizer``), the trainer's JSON ``state``."""

    path: Path
    model: Model
    optimizer: dict[str, Any]
    state: dict[str, Any]
    best: Model | None
    pending_model: Model | None
    pending_optimizer: dict[str, Any] | None


def _optimizer_state_dict(tensors: dict[str, torch.Tensor], plain: dict[str, Any], path: Path, field: str) -> dict[str, Any]:
    """``torch.optim.Optimizer.state_dict()`` rebuilt from a checkpoint's two parts."""
    if not isinstance(plain, dict) or not isinstance(plain.get("param_groups"), list) or not isinstance(plain.get("plain_state"), dict):
        msg = f"checkpoint {path}: metadata field `{field}` must hold `param_groups` and `plain_state`"
        raise ValueError(msg)
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, _, key = name.partition(".")
        if not index.isdigit() or not key:
            msg = f"checkpoint {path}: tensor `{field}.{name}` is not `{field}.<index>.<key>`"
            raise ValueError(msg)
        state.setdefault(int(index), {})[key] = value
    for index, values in plain["plain_state"].items():
        if not str(index).isdigit() or not isinstance(values, dict):
            msg = f"checkpoint {path}: metadata field `{field}.plain_state` is malformed at {index!r}"
            raise ValueError(msg)
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": plain["param_groups"]}


def load_optimizer(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any], path: Path) -> torch.optim.Optimizer:
    """``optimizer`` (freshly built over the restored model) with the checkpoint's state;
    ValueError when the state does not fit its parameters (count, group sizes, shapes)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entry in state_dict["state"].items():
        if index >= len(params):
            msg = f"checkpoint {path}: optimizer state for parameter {index}, the model has {len(params)}"
            raise ValueError(msg)
        for key in _MOMENTS:
            if key in entry and tuple(entry[key].shape) != tuple(params[index].shape):
                msg = f"checkpoint {path}: optimizer `{key}` of parameter {index} has shape {list(entry[key].shape)}, the parameter {list(params[index].shape)}"
                raise ValueError(msg)
    try:
        optimizer.load_state_dict(state_dict)
    except (ValueError, KeyError, TypeError) as error:
        msg = f"checkpoint {path}: the optimizer state does not fit the model: {error}"
        raise ValueError(msg) from None
    return optimizer


def load_training_state(path: str | Path, device: torch.device | str = "cpu") -> TrainingState:
    """A training checkpoint (``save_training_state``), checked before anything is allocated;
    ValueError naming the file and field otherwise. Restores the torch RNG states."""
    path = Path(path)
    metadata, found, configs, state = read_training_header(path, expected_tensors, "rng.")
    if "rng.torch" not in found:
        msg = f"checkpoint {path} has no `rng.torch`"
        raise ValueError(msg)
    with safe_open(str(path), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    models = {prefix: _model_from(config, with_prefix(tensors, prefix), device) for prefix, config in configs.items()}
    optimizer = _optimizer_state_dict(with_prefix(tensors, "optimizer."), metadata_json(metadata, "optimizer", path), path, "optimizer")
    pending_optimizer = None
    if "pending_model." in models:
        pending_optimizer = _optimizer_state_dict(
            with_prefix(tensors, "pending_optimizer."), metadata_json(metadata, "pending_optimizer", path), path, "pending_optimizer"
        )
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[f"rng.cuda.{i}"] for i in range(len(with_prefix(tensors, "rng.cuda.")))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return TrainingState(path, models["model."], optimizer, state, models.get("best."), models.get("pending_model."), pending_optimizer)
