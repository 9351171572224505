"""Shared by the benchmark scripts: wall-clock timing, the machine and its load, thread caps,
the compute device, and markdown tables.

Scripts run as ``python benchmarks/NAME.py`` import it as ``import _timing`` (the script's folder
is on ``sys.path``); tests that load a script from its file put ``benchmarks/`` on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def measure(call: Callable[[], Any], repeats: int, warmup: bool = True) -> tuple[float, float, Any]:
    """Median and minimum wall time of ``repeats`` calls (after one untimed call when ``warmup``),
    and the last result."""
    if warmup:
        call()
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), out


def measure_alternately(calls: Sequence[Callable[[], Any]], repeats: int) -> list[tuple[float, Any]]:
    """Median wall time and last result of each call, the calls taking turns (one untimed
    round first): a change of the machine's load hits every call alike."""
    outs = [call() for call in calls]
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            outs[i] = call()
            times[i].append(time.perf_counter() - start)
    return [(statistics.median(t), out) for t, out in zip(times, outs, strict=True)]


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of an array of any library (torch tensors are moved to the host first)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)


# --- the device ------------------------------------------------------------------------------


def has_module(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def torch_cuda_available() -> bool:
    if not has_module("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def jax_gpu_available() -> bool:
    if not has_module("jax"):
        return False
    import jax

    try:
        return len(jax.devices("gpu")) > 0
    except RuntimeError:
        return False


def choose_device(requested: str) -> tuple[str, str | None]:
    """``("cuda", None)`` when CUDA was asked for and torch or JAX sees a GPU; otherwise
    ``("cpu", note)`` with a one-line note saying why (printed by the scripts)."""
    if requested not in ("cpu", "cuda"):
        msg = f"`--device` must be 'cpu' or 'cuda', got {requested!r}"
        raise ValueError(msg)
    if requested == "cpu":
        return "cpu", None
    if torch_cuda_available() or jax_gpu_available():
        return "cuda", None
    return "cpu", "--device cuda: no GPU is visible to torch or JAX here; running on the CPU instead"


def limit_threads(threads: int) -> str:
    """Cap every BLAS/OpenMP pool (threadpoolctl), torch and, before its import, XLA at ``threads``."""
    if "jax" not in sys.modules:
        flags = f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={threads}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    for name in ("torch", "jax"):  # load their thread pools first, so that the limit reaches them
        with contextlib.suppress(ImportError):
            __import__(name)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return f"threads capped at {threads} for torch/XLA only (threadpoolctl is not installed)"
    threadpool_limits(limits=threads)
    return f"threads capped at {threads} (--threads): BLAS/OpenMP via threadpoolctl, torch, XLA"


# --- the machine -----------------------------------------------------------------------------


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (as ``uptime`` shows them), where the OS has them."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def library_versions() -> dict[str, str]:
    import scipy

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }
    for name in ("torch", "jax", "control", "slycot"):
        with contextlib.suppress(ImportError):
            versions[name] = getattr(__import__(name), "__version__", "?")
    return versions


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu": cpu_model(), "os.cpu_count": os.cpu_count()}
    if has_module("torch"):
        import torch

        info["torch.get_num_threads"] = torch.get_num_threads()
    info["load_average_1_5_15"] = load_average()
    info["versions"] = library_versions()
    return info


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"machine: {info['cpu']}, os.cpu_count()={info['os.cpu_count']}, "
        f"torch.get_num_threads()={info.get('torch.get_num_threads', '—')}, "
        f"load average {info['load_average_1_5_15']}"
    )


# --- tables ----------------------------------------------------------------------------------


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``, or an em dash for a missing value."""
    return "—" if value is None else format(value, spec)


def cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A markdown table; ``align`` holds one character per column, "r" for right-aligned."""
    rules = ["---:" if a == "r" else "---" for a in align.ljust(len(header), "l")]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rules) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)
