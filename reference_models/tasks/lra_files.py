"""Finding a task's folder in a local copy of the LRA release (never downloaded).

``lra_release.gz`` (github.com/google-research/long-range-arena) unpacks to
``lra_release/listops-1000/``, ``lra_release/lra_release/tsv_data/`` and
``lra_release/lra_release/pathfinder32/`` (and 64, 128, 256). ``data_dir`` may be the folder
that holds ``lra_release/``, either ``lra_release/`` level, or the task's folder itself.
"""

from __future__ import annotations

from pathlib import Path

from .local_files import existing_dir

LRA_LEVELS = (".", "lra_release", "lra_release/lra_release")


def find_task_folder(
    data_dir: str | Path | None, task: str, folder: str, marker: str, expected: str
) -> Path:
    """The first of ``data_dir/{., lra_release, lra_release/lra_release}/folder`` and ``data_dir``
    itself that holds ``marker`` (a file or folder name); a ValueError naming them otherwise."""
    base = existing_dir(data_dir, task, expected)
    candidates = [base / level / folder for level in LRA_LEVELS] + [base]
    for candidate in candidates:
        if (candidate / marker).exists():
            return candidate
    tried = ", ".join(str(c / marker) for c in candidates)
    raise ValueError(
        f"`data_dir` {base} holds no {marker} for task {task!r} (looked for {tried}); expected {expected}"
    )


def split_file(folder: Path, name: str, task: str) -> Path:
    """``folder/name``, or a ValueError naming the missing file."""
    path = folder / name
    if not path.is_file():
        raise ValueError(f"task {task!r}: the file {path} is missing")
    return path
