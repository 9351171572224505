"""Selective (Mamba-style) models compressed during training (issue #5), one process.

Per seed, on MNIST-1D (default) or selective copying: the full model (state 64 per layer),
CompreSSM (state indices selected by time-varying Gramian energy, docs/ltv.md) and a model
trained from scratch at CompreSSM's final dims, with the same data, steps and optimiser.
Reports the test metric (selective copying: also the copy accuracy, argmax at the marker
steps, as its trainer metric is the MSE), the final dims, wall-clock, and the training-step
time of the full and the compressed model, timed alternately on the same batch.

    OMP_NUM_THREADS=1 python benchmarks/selective_benchmark.py --seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/selective_benchmark.py --task selective_copying --steps 4000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from reference_models.tasks import load_task
from reference_models.train.checkpoint_torch import load_model
from reference_models.train.config import TrainConfig
from reference_models.train.run import run_and_save

COPYING = {"length": 32, "num_tokens": 8, "num_memorize": 4, "num_samples": 4000}
CONFIG = TrainConfig(
    task="mnist1d",
    model="selective",
    steps=800,
    batch_size=32,
    lr=3e-3,
    d_model=16,
    state_dim=64,
    n_layers=2,
    tau=0.05,
    energy="squared",
    reduce_every=50,
    reduce_from=100,
    reduce_until=0.3,
    rollback_tolerance=0.05,  # MNIST-1D validation accuracy; selective copying: --rollback 0.002 (MSE)
    eval_every=100,
    calibration_size=32,
)


def copy_accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, recall: int) -> float:
    """Fraction of the ``recall`` tokens read back right (argmax at the marker steps)."""
    with torch.no_grad():
        predicted = model(torch.from_numpy(x))[:, -recall:].argmax(-1).numpy()
    return float(np.mean(predicted == y[:, -recall:].argmax(-1)))


def step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        optimizer.zero_grad()
        output = model(x)
        loss = torch.nn.functional.mse_loss(output, y) if y.is_floating_point() else torch.nn.functional.cross_entropy(output, y)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def step_time_ratio(full: torch.nn.Module, compressed: torch.nn.Module, data, batch: int, repeats: int) -> tuple[float, float]:
    """Median step seconds of the full and the compressed model, alternating on one batch."""
    x, y = torch.from_numpy(data.x_train[:batch]), torch.from_numpy(data.y_train[:batch])
    full_times, compressed_times = [], []
    for _ in range(3):
        full_times += step_seconds(full, x, y, repeats)
        compressed_times += step_seconds(compressed, x, y, repeats)
    return statistics.median(full_times), statistics.median(compressed_times)


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=CONFIG.steps)
    parser.add_argument("--tau", type=float, default=CONFIG.tau)
    parser.add_argument("--task", choices=("mnist1d", "selective_copying"), default=CONFIG.task)
    parser.add_argument("--rollback", type=float, default=CONFIG.rollback_tolerance)
    parser.add_argument("--output", type=Path, default=Path("runs/selective_benchmark"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    config = CONFIG.replace(steps=args.steps, tau=args.tau, task=args.task, rollback_tolerance=args.rollback)
    copying = args.task == "selective_copying"
    options = COPYING if copying else {}
    arms: dict[str, list[dict]] = {"full": [], "compressm": [], "small from scratch": []}
    ratios = []
    for seed in args.seeds:
        data = load_task(config.task, seed=seed, **options)
        seeded = config.replace(seed=seed)
        runs = {
            "full": (seeded.replace(tau=None), args.output / f"full_seed{seed}"),
            "compressm": (seeded, args.output / f"compressm_seed{seed}"),
        }
        for name, (run_config, folder) in runs.items():
            arms[name].append(run_and_save(run_config, folder, data=data, progress=False))
        small_dims = tuple(arms["compressm"][-1]["final_state_dims"])
        folder = args.output / f"small_seed{seed}"
        arms["small from scratch"].append(
            run_and_save(seeded.replace(tau=None, state_dim=small_dims), folder, data=data, progress=False)
        )
        models = {}
        for name, prefix in (("full", "full"), ("compressm", "compressm"), ("small from scratch", "small")):
            models[name] = load_model(args.output / f"{prefix}_seed{seed}" / "model.safetensors")
            if copying:
                arms[name][-1]["copy_accuracy"] = copy_accuracy(models[name], data.x_test, data.y_test, COPYING["num_memorize"])
        full_s, compressed_s = step_time_ratio(models["full"], models["compressm"], data, config.batch_size, args.repeats)
        ratios.append((full_s, compressed_s))
        print(f"seed {seed}: dims {small_dims}, step {1e3 * full_s:.1f} ms -> {1e3 * compressed_s:.1f} ms", flush=True)
    full_time = statistics.mean(run["wall_clock_s"] for run in arms["full"])
    metrics = ["copy_accuracy", "test_mse"] if copying else ["test_accuracy"]
    lines = [
        f"| arm | {' | '.join(m.replace('_', ' ') for m in metrics)} | final state dims (per seed) | wall-clock (s) | speed-up vs full |",
        "|---|" + "---|" * (len(metrics) + 3),
    ]
    for name, runs in arms.items():
        seconds = statistics.mean(run["wall_clock_s"] for run in runs)
        dims = ", ".join("/".join(str(d) for d in run["final_state_dims"]) for run in runs)
        values = " | ".join(mean_std([r[m] for r in runs]) for m in metrics)
        lines.append(f"| {name} | {values} | {dims} | {seconds:.1f} | {full_time / seconds:.2f}x |")
    print("\n".join(lines))
    speedups = [full / compressed for full, compressed in ratios]
    print(
        f"\ntraining step, full vs compressed model (same batch, alternating): "
        f"{statistics.mean(speedups):.2f}x faster (per seed: {', '.join(f'{s:.2f}x' for s in speedups)})"
    )
    (args.output / "selective_benchmark.json").write_text(json.dumps({"arms": arms, "step_seconds": ratios}, indent=2))


if __name__ == "__main__":
    main()
