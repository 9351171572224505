"""``load_task``: one entry point for every task, by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .arrays_task import load_arrays
from .dataset import SequenceDataset
from .digits_task import load_digits
from .lra_aan import load_aan
from .lra_imdb import load_imdb
from .lra_listops import load_listops
from .lra_pathfinder import load_pathfinder
from .mnist1d_task import load_mnist1d
from .scifar_task import load_scifar
from .selective_copying import load_selective_copying
from .smnist_task import load_smnist
from .sysid_task import load_sysid

LOADERS: dict[str, Callable[..., SequenceDataset]] = {
    "mnist1d": load_mnist1d,
    "digits": load_digits,
    "sysid": load_sysid,
    "smnist": load_smnist,
    "scifar": load_scifar,
    "selective_copying": load_selective_copying,
    "listops": load_listops,
    "imdb": load_imdb,
    "aan": load_aan,
    "pathfinder": load_pathfinder,
    "arrays": load_arrays,
}
TASKS = tuple(LOADERS)


def load_task(
    name: str, *, seed: int = 0, data_dir: str | Path | None = None, **options: Any
) -> SequenceDataset:
    """The task ``name`` (one of ``TASKS``) as a ``SequenceDataset``.

    ``seed`` makes every random choice (splits, subsets, generated data); ``data_dir`` is
    the local folder of "smnist", "scifar" and the LRA tasks
    ("listops", "imdb", "aan", "pathfinder"); "arrays" reads ``data_file`` (an .npz of
    your own sequences, see ``load_arrays``); ``options`` are the task's own keyword
    arguments (see ``load_<name>``), e.g. ``max_train=1000`` or ``order=4``.
    """
    if name not in LOADERS:
        raise ValueError(f"`task` {name!r} is unknown; choose one of: {', '.join(TASKS)}")
    loader = LOADERS[name]
    if data_dir is not None:
        options["data_dir"] = data_dir
    accepted = set(inspect.signature(loader).parameters) - {"seed"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"`options` {unknown} are not accepted by task {name!r}; "
            f"it accepts: {', '.join(sorted(accepted))}"
        )
    return loader(seed=seed, **options)
