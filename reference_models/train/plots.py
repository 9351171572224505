"""PNG plots of a run: HSV spectra over training, state dims over steps, validation metric over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_hsv_spectra(metrics: dict[str, Any], path: Path) -> Path:
    """One panel per layer: the HSV spectrum (log scale) at each snapshot, coloured by step."""
    history = metrics["hsv_history"]
    layers = list(history[0]["hsv"])
    fig, axes = plt.subplots(1, len(layers), figsize=(4.5 * len(layers), 3.6), squeeze=False)
    colours = plt.cm.viridis([i / max(1, len(history) - 1) for i in range(len(history))])
    for ax, layer in zip(axes[0], layers, strict=True):
        for snapshot, colour in zip(history, colours, strict=True):
            if layer in snapshot["hsv"]:
                values = [max(v, 1e-16) for v in snapshot["hsv"][layer]]
                ax.semilogy(range(1, len(values) + 1), values, color=colour, label=f"step {snapshot['step']}")
        ax.set(title=layer, xlabel="index", ylabel="Hankel singular value")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_state_dims(metrics: dict[str, Any], path: Path) -> Path:
    """State dimension of every layer against training step."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    steps = [0] + [e["step"] for e in metrics["evaluations"]]
    dims = [metrics["initial_state_dims"]] + [e["state_dims"] for e in metrics["evaluations"]]
    for layer in range(len(dims[0])):
        ax.step(steps, [d[layer] for d in dims], where="post", label=f"layer {layer}")
    ax.set(xlabel="step", ylabel="state dimension", title="state dimension during training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_metric_over_time(runs: dict[str, dict[str, Any]], path: Path) -> Path:
    """Validation metric against wall-clock seconds, one line per run (20 distinct colours)."""
    many = len(runs) > 6
    fig, ax = plt.subplots(figsize=(9.5, 5.0) if many else (5.5, 3.6))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)
    for label, metrics in runs.items():
        key = next(k for k in metrics["evaluations"][0] if k.startswith("val_"))
        ax.plot([e["wall_clock_s"] for e in metrics["evaluations"]], [e[key] for e in metrics["evaluations"]], marker=".", label=label)
        ax.set_ylabel(key.replace("_", " "))
    ax.set(xlabel="wall-clock (s)", title="validation metric over time")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5)) if many else ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_run(metrics: dict[str, Any], output: Path) -> list[Path]:
    from .stability import plot_rank_stability

    paths = [
        plot_hsv_spectra(metrics, output / "hsv_spectra.png"),
        plot_state_dims(metrics, output / "state_dims.png"),
        plot_metric_over_time({"run": metrics}, output / "val_metric_over_time.png"),
    ]
    if "rank_stability" in metrics:
        paths.append(plot_rank_stability(metrics["rank_stability"], output / "rank_stability.png"))
    return paths


def plot_metric_vs_dim(summary: list[dict[str, Any]], path: Path) -> Path:
    """Test metric (mean, std over seeds as error bars) against the final total state dim,
    one series per arm (``name``) across tolerances (``summary`` as in comparison.json)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name in dict.fromkeys(row["name"] for row in summary):
        points = sorted((row["total_state_dim"], row["mean"], row["std"]) for row in summary if row["name"] == name)
        x, y, err = zip(*points, strict=True)
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=name)
    ax.set(xlabel="final total state dim", ylabel=summary[0]["metric"].replace("_", " "), title="test metric vs state dim")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_hsv_comparison(runs: dict[str, dict[str, Any]], path: Path) -> Path:
    """One panel per layer: the HSV spectra of several runs (label -> metrics). A run whose
    label starts with "compressm" shows its spectra at step 0 and at each reduction; the
    others their spectrum at the end of training."""
    layers = list(next(iter(runs.values()))["hsv_history"][0]["hsv"])
    fig, axes = plt.subplots(1, len(layers), figsize=(4.8 * len(layers), 3.8), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        for label, metrics in runs.items():
            history = metrics["hsv_history"]
            snapshots = history[:-1] if label.startswith("compressm") else history[-1:]
            for snapshot in snapshots:
                if layer in snapshot["hsv"]:
                    values = [max(v, 1e-16) for v in snapshot["hsv"][layer]]
                    style = "--" if label.startswith("compressm") else "-"
                    ax.semilogy(range(1, len(values) + 1), values, style, label=f"{label}, step {snapshot['step']}")
        ax.set(title=layer, xlabel="index", ylabel="Hankel singular value")
    axes[0][-1].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
