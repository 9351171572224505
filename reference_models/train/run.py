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


def run_and_save(config: TrainConfig, output: Path, *, progress: bool = True, data: Any = None) -> dict[str, Any]:
    """Train ``config``, then write ``output``/metrics.json, model.safetensors and PNG plots."""
    output.mkdir(parents=True, exist_ok=True)
    trainer = _trainer(config.backend)
    model, record = trainer.train(config, data=data, progress=progress)
    metrics = record.metrics()
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
        config, output, run_and_save, arms=arms, taus=taus, seeds=seeds, options=options, progress=progress
    )
