"""Run configurations and write their outputs: metrics.json, a checkpoint, plots, comparison tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .comparison import DEFAULT_ARMS, ArmOptions, run_comparison
from .config import TrainConfig
from .plots import plot_run


def _trainer(backend: str) -> Any:
    if backend == "torch":
        from . import torch_trainer

        return torch_trainer
    from . import jax_trainer

    return jax_trainer


def is_main_process(backend: str) -> bool:
    """Whether this process writes: every process but ranks > 0 of a ``torchrun`` launch."""
    if backend != "torch":
        return True
    from .distributed import is_main_process as torch_is_main

    return torch_is_main()


def run_and_save(config: TrainConfig, output: Path, *, progress: bool = True, data: Any = None) -> dict[str, Any]:
    """Train ``config``, then write ``output``/metrics.json, model.safetensors and PNG plots
    (only rank 0 of a ``torchrun`` launch writes; every rank returns the metrics)."""
    output.mkdir(parents=True, exist_ok=True)
    trainer = _trainer(config.backend)
    model, record = trainer.train(config, data=data, progress=progress)
    metrics = record.metrics()
    if is_main_process(config.backend):
        trainer.save_model(model, output / "model.safetensors")
        (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
        plot_run(metrics, output)
    return metrics


def compare(
    config: TrainConfig,
    output: Path,
    *,
    seeds: Sequence[int] = (0,),
    arms: Sequence[str] = DEFAULT_ARMS,
    taus: Sequence[float] | None = None,
    options: ArmOptions | None = None,
    progress: bool = True,
) -> str:
    """Train ``arms`` (default: the full model, CompreSSM, and a model trained from scratch at
    CompreSSM's final dims) over ``seeds`` and ``taus`` with the same budget; write
    ``output``/comparison.md, comparison.json and plots, return the table (see
    ``comparison.run_comparison``)."""
    return run_comparison(
        config, output, run_and_save, arms=arms, taus=taus, seeds=seeds, options=options, progress=progress,
        write=is_main_process(config.backend)
    )
