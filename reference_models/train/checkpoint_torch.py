"""Save and load PyTorch SequenceModels as safetensors; the architecture (with the reduced
state dims) travels in the file's metadata, so a reduced model loads without its history."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..torch_models import SequenceModel


def save_model(model: SequenceModel, path: str | Path) -> Path:
    path = Path(path)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(model.config)})
    return path


def load_model(path: str | Path) -> SequenceModel:
    """The model stored at ``path``; ValueError (naming the file) when it is not such a checkpoint."""
    path = Path(path)
    if not path.is_file():
        msg = f"checkpoint {path} does not exist"
        raise ValueError(msg)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        msg = f"checkpoint {path} is not a safetensors file: {error}"
        raise ValueError(msg) from None
    if "config" not in metadata:
        msg = f"checkpoint {path} has no model config in its metadata"
        raise ValueError(msg)
    model = SequenceModel.from_config(json.loads(metadata["config"]))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        msg = f"checkpoint {path} does not fit its recorded architecture: {error}"
        raise ValueError(msg) from None
    return model
