"""Checks on the local folders that hold the paper's data sets (never downloaded)."""

from __future__ import annotations

from pathlib import Path


def existing_dir(data_dir: str | Path | None, task: str, expected: str) -> Path:
    """``data_dir`` as a Path, or a ValueError saying why it cannot hold the ``expected`` files."""
    if data_dir is None:
        raise ValueError(
            f"`data_dir` is required for task {task!r}: a local folder with {expected}; "
            "nothing is downloaded"
        )
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise ValueError(f"`data_dir` {path} does not exist or is not a folder")
    return path
