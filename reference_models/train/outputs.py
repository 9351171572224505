"""A run's output folder: files written atomically, the folder prepared (and cleared with
``overwrite``), and a failure record when a run stops with an error.

Every file is written to a temporary name in the same folder and moved over the final name
with ``os.replace``, so a reader (or a killed run) sees either the old file or the new one,
never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Written first into every run folder; ``overwrite`` only clears folders that hold it.
MARKER = ".compressm-run"
#: What older runs (written before the marker existed) hold.
_RUN_FILES = ("metrics.json", "comparison.json", "checkpoint.safetensors")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; moved over ``path`` when the block ends without error,
    removed otherwise."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """``text`` written to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """``data`` as indented JSON at ``path``, written atomically."""
    return write_text(path, json.dumps(data, indent=2))


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` was written by compressm (holds the marker or a run's files)."""
    return (folder / MARKER).exists() or any((folder / name).exists() for name in _RUN_FILES)


def prepare_output(folder: str | Path, *, overwrite: bool = False) -> Path:
    """``folder`` checked for a new run: it must be new or empty, or, with ``overwrite``, a
    folder an earlier compressm run wrote, whose files are then all removed (nothing of the old
    run is left to mix with the new one). The folder itself is created by the first write
    (``create_output``), so a run that fails before writing leaves no empty folder.
    ValueError naming ``--output`` otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        msg = f"`--output` {folder} exists and is not a folder"
        raise ValueError(msg)
    if not folder.is_dir() or not any(folder.iterdir()):
        return folder
    if not overwrite:
        msg = f"`--output` {folder} is not empty; choose another folder or pass --overwrite"
        raise ValueError(msg)
    if not is_run_folder(folder):
        msg = f"`--output` {folder} holds files that compressm did not write; --overwrite only clears earlier run folders"
        raise ValueError(msg)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return folder


def create_output(folder: str | Path) -> Path:
    """``folder`` created (with its parents) and marked as a run folder; ValueError naming
    ``--output`` when it cannot be created."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER).touch()
    except OSError as error:
        msg = f"`--output` {folder} cannot be created: {error.strerror or error}"
        raise ValueError(msg) from None
    return folder


def record_failure(folder: Path, error: BaseException, *, created: bool) -> None:
    """After a run stopped with ``error``: remove ``folder`` if this run ``created`` it and
    wrote nothing but the marker, else write failure.json saying why (the checkpoint and
    metrics written so far stay)."""
    if not folder.is_dir():
        return
    if created and {entry.name for entry in folder.iterdir()} <= {MARKER}:
        shutil.rmtree(folder)
        return
    write_json(folder / "failure.json", {"error": type(error).__name__, "message": str(error)})
