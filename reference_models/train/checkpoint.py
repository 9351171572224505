"""Reading the checkpoints both backends write: safetensors arrays plus the model config
(with the current, possibly reduced, state dims) in the file's metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open


def read_checkpoint(path: str | Path, framework: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, arrays)`` of the checkpoint at ``path``, arrays as ``framework`` ("pt" or
    "numpy") tensors; ValueError naming the file when it is missing or not such a checkpoint."""
    path = Path(path)
    if not path.is_file():
        msg = f"checkpoint {path} does not exist"
        raise ValueError(msg)
    try:
        with safe_open(str(path), framework=framework) as handle:
            metadata = handle.metadata() or {}
            arrays = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        msg = f"checkpoint {path} is not a safetensors file: {error}"
        raise ValueError(msg) from None
    if "config" not in metadata:
        msg = f"checkpoint {path} has no model config in its metadata"
        raise ValueError(msg)
    return json.loads(metadata["config"]), arrays
