"""Run configurations and write their outputs: metrics.json, a checkpoint, plots, comparison tables."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..tasks import load_task
from .config import TrainConfig
from .plots import plot_metric_over_time, plot_run


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
    config: TrainConfig, output: Path, *, seeds: tuple[int, ...] = (0,), progress: bool = True
) -> str:
    """Train the full model, CompreSSM, and a model trained from scratch at CompreSSM's final
    dims, with the same budget and seeds; write ``output``/comparison.md and plots, return the table."""
    if not config.compresses:
        msg = "`compare` needs a compressing configuration (`tau` or mode='fixed')"
        raise ValueError(msg)
    arms: dict[str, list[dict[str, Any]]] = {"full": [], "compressm": [], "small from scratch": []}
    for seed in seeds:
        seeded = config.replace(seed=seed)
        data = load_task(seeded.task, seed=seed, data_dir=seeded.data_dir, **seeded.task_options())
        arms["full"].append(run_and_save(seeded.replace(tau=None, mode="tolerance"), output / f"full_seed{seed}", progress=progress, data=data))
        compressed = run_and_save(seeded, output / f"compressm_seed{seed}", progress=progress, data=data)
        arms["compressm"].append(compressed)
        small = seeded.replace(tau=None, mode="tolerance", state_dim=tuple(compressed["final_state_dims"]))
        arms["small from scratch"].append(run_and_save(small, output / f"small_seed{seed}", progress=progress, data=data))
    table = comparison_table(arms)
    (output / "comparison.md").write_text(table + "\n")
    plot_metric_over_time({name: runs[0] for name, runs in arms.items()}, output / "comparison_val_metric.png")
    return table




def _mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def comparison_table(arms: dict[str, list[dict[str, Any]]]) -> str:
    """A markdown table: test metric (mean ± std over seeds), final dims, wall-clock, speed-up."""
    metric = next(key for key in arms["full"][0] if key.startswith("test_"))
    full_time = statistics.mean(run["wall_clock_s"] for run in arms["full"])
    lines = [
        f"| arm | {metric.replace('_', ' ')} | final state dims | wall-clock (s) | speed-up vs full |",
        "|---|---|---|---|---|",
    ]
    for name, runs in arms.items():
        seconds = statistics.mean(run["wall_clock_s"] for run in runs)
        dims = "/".join(str(d) for d in runs[0]["final_state_dims"])
        lines.append(
            f"| {name} | {_mean_spread([run[metric] for run in runs])} | {dims} | {seconds:.1f} | {full_time / seconds:.2f}x |"
        )
    return "\n".join(lines)
