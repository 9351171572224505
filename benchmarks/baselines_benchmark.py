"""The cost of Hankel nuclear norm (HNN) regularisation against CompreSSM (issue #6), in one process.

1. Step times, measured in alternating rounds on the same batches: a training step of the
   full model, of the full model with the HNN penalty (HSVs through ``compressm_core`` at
   every step, forward and backward), and of the model at CompreSSM's dims; plus the penalty
   alone. Ratios: HNN / full and HNN / compressed.
2. With ``--runs FOLDER`` (a ``compressm compare`` output with the hnn and compressm arms):
   the measured wall-clock of every HNN run against CompreSSM's at each tau and seed, and
   CompreSSM's reduction overhead (its share of CompreSSM's wall-clock).

    python benchmarks/baselines_benchmark.py --runs runs/results/mnist1d
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from reference_models.torch_models import SequenceModel
from reference_models.train.torch_objectives import hankel_nuclear_norm

#: (name, n_layers, d_model, full state dim, compressed dims, sequence length, batch)
CONFIGS = (
    ("demo (MNIST-1D)", 2, 32, 128, (65, 61), 40, 64),
    ("sMNIST-like (1 block, H=8)", 1, 8, 256, (47,), 784, 16),
)


def _stepper(model: SequenceModel, x: torch.Tensor, y: torch.Tensor, hnn_weight: float):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> float:
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if hnn_weight:
            loss = loss + hnn_weight * hankel_nuclear_norm(model).to(loss.dtype)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def _penalty_only(model: SequenceModel):
    def step() -> float:
        start = time.perf_counter()
        hankel_nuclear_norm(model).backward()
        return time.perf_counter() - start

    return step


def step_times(config: tuple, repeats: int, rounds: int) -> dict[str, float]:
    """Median seconds per step of each kind, in ``rounds`` alternating rounds of ``repeats``."""
    _, layers, d_model, n, dims, length, batch = config
    torch.manual_seed(0)
    options = {"d_input": 1, "d_output": 10, "d_model": d_model, "n_layers": layers}
    full = SequenceModel(state_dim=n, **options)
    hnn = SequenceModel(state_dim=n, **options)
    hnn.load_state_dict(full.state_dict())
    small = SequenceModel(state_dim=list(dims), **options)
    x, y = torch.randn(batch, length, 1), torch.randint(0, 10, (batch,))
    steps = {
        "full": _stepper(full, x, y, 0.0),
        "full + HNN": _stepper(hnn, x, y, 1e-3),
        "compressed": _stepper(small, x, y, 0.0),
        "HNN penalty alone": _penalty_only(SequenceModel(state_dim=n, **options)),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm-up
    for _ in range(rounds):
        for name, step in steps.items():
            times[name] += [step() for _ in range(repeats)]
    return {name: statistics.median(values) for name, values in times.items()}


def measured_runs(folder: Path) -> list[str]:
    """Lines comparing the HNN runs' wall-clock with CompreSSM's, and CompreSSM's overhead."""
    summary = json.loads((folder / "comparison.json").read_text())["rows"]
    by_arm = {(row["arm"], row["tau"]): row for row in summary}
    lines = []
    hnn = by_arm.get(("hnn_untruncated", None))
    for (arm, tau), row in by_arm.items():
        if arm != "compressm" or hnn is None:
            continue
        truncated = by_arm[("hnn", tau)]["wall_clock_s"]
        ratios = [h / c for h, c in zip(truncated, row["wall_clock_s"], strict=True)]
        lines.append(
            f"tau {tau}: HNN + truncation {statistics.mean(truncated):.1f} s vs CompreSSM "
            f"{statistics.mean(row['wall_clock_s']):.1f} s: {statistics.mean(ratios):.2f}x (seeds {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    shares = []
    for path in sorted(folder.glob("compressm*_seed*/metrics.json")):
        metrics = json.loads(path.read_text())
        shares.append(metrics["reduction_overhead_s"] / metrics["wall_clock_s"])
    if shares:
        lines.append(
            f"CompreSSM reduction overhead: {100 * statistics.mean(shares):.2f}% of its wall-clock "
            f"(max {100 * max(shares):.2f}%, {len(shares)} runs)"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="steps per kind and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--runs", type=Path, default=None, help="a compare output with the hnn and compressm arms")
    args = parser.parse_args(argv)
    print("| config | full (ms) | full + HNN (ms) | compressed (ms) | HNN penalty alone (ms) | HNN / full | HNN / compressed |")
    print("|---|---|---|---|---|---|---|")
    for config in CONFIGS:
        t = step_times(config, args.repeats, args.rounds)
        print(
            f"| {config[0]}, n={config[3]} -> {'/'.join(map(str, config[4]))} | {1e3 * t['full']:.1f} | {1e3 * t['full + HNN']:.1f} "
            f"| {1e3 * t['compressed']:.1f} | {1e3 * t['HNN penalty alone']:.1f} | {t['full + HNN'] / t['full']:.2f}x "
            f"| {t['full + HNN'] / t['compressed']:.2f}x |"
        )
    if args.runs is not None:
        print("\n" + "\n".join(measured_runs(args.runs)))


if __name__ == "__main__":
    main()
