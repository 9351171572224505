"""Framework-free sequence tasks (NumPy arrays) for the PyTorch and JAX trainers.

>>> from reference_models.tasks import load_task, batches
>>> data = load_task("digits", seed=0)
>>> data.x_train.shape[1:], data.num_classes
((64, 1), 10)
"""

from .arrays_task import load_arrays
from .batching import batches
from .dataset import SequenceDataset, TrueSystem
from .digits_task import load_digits
from .lra_aan import load_aan
from .lra_imdb import load_imdb
from .lra_listops import LISTOPS_TOKENS, load_listops
from .lra_pathfinder import load_pathfinder
from .lra_tokens import OneHotTokens
from .mnist1d_task import load_mnist1d
from .registry import TASKS, load_task
from .scifar_task import load_scifar
from .selective_copying import load_selective_copying
from .smnist_task import load_smnist
from .sysid_task import load_sysid, random_stable_system, simulate

__all__ = [
    "LISTOPS_TOKENS",
    "TASKS",
    "OneHotTokens",
    "SequenceDataset",
    "TrueSystem",
    "batches",
    "load_aan",
    "load_arrays",
    "load_digits",
    "load_imdb",
    "load_listops",
    "load_mnist1d",
    "load_pathfinder",
    "load_scifar",
    "load_selective_copying",
    "load_smnist",
    "load_sysid",
    "load_task",
    "random_stable_system",
    "simulate",
]
