"""Save and load PyTorch SequenceModels as safetensors; the architecture (with the reduced
state dims) travels in the file's metadata, so a reduced model loads without its history."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from ..torch_models import SelectiveSequenceModel, SequenceModel
from .checkpoint import read_checkpoint


def save_model(model: SequenceModel | SelectiveSequenceModel, path: str | Path) -> Path:
    path = Path(path)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(model.config)})
    return path


def load_model(path: str | Path) -> SequenceModel | SelectiveSequenceModel:
    """The model stored at ``path`` (written by either backend); ValueError naming the file
    when it is not such a checkpoint or does not fit its recorded architecture."""
    config, state = read_checkpoint(path, "pt")
    architecture = SelectiveSequenceModel if config.get("layer") == "selective" else SequenceModel
    model = architecture.from_config(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        msg = f"checkpoint {path} does not fit its recorded architecture: {error}"
        raise ValueError(msg) from None
    return model
