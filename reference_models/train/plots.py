"""PNG plots of a run: HSV spectra over training, state dims over steps, validation metric
over steps and wall-clock time, training loss; and of several runs (arms, seeds)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import LogFormatter, MaxNLocator

from .outputs import atomic_path

#: Strong colours that stay apart (Okabe-Ito without its yellow, then tab10's darker ones),
#: one per run, arm or layer, in order; markers and line styles tell apart what overlaps.
_COLOURS = ("#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
            "#8C564B", "#7F7F7F", "#BCBD22", "#9467BD", "#17BECF")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", ":", "-.")


def hsv_axis_label(metrics: dict[str, Any]) -> str:
    """"Hankel singular value", with the Gramians' horizon when they are time-limited."""
    horizon = metrics.get("horizon")
    return "Hankel singular value" if horizon is None else f"Hankel singular value ({horizon}-step Gramians)"


def plot_hsv_spectra(metrics: dict[str, Any], path: Path) -> Path:
    """One panel per layer: the HSV spectrum (log scale) at each snapshot, coloured by step."""
    history = metrics["hsv_history"]
    layers = list(history[0]["hsv"])
    fig, axes = plt.subplots(1, len(layers), figsize=(4.5 * len(layers), 3.6), squeeze=False)
    colours = plt.cm.viridis([0.85 * i / max(1, len(history) - 1) for i in range(len(history))])  # no pale yellow
    for ax, layer in zip(axes[0], layers, strict=True):
        for snapshot, colour in zip(history, colours, strict=True):
            if layer in snapshot["hsv"]:
                values = [max(v, 1e-16) for v in snapshot["hsv"][layer]]
                ax.semilogy(range(1, len(values) + 1), values, color=colour, linewidth=1.6, label=f"step {snapshot['step']}")
        ax.set(title=layer, xlabel="index", ylabel=hsv_axis_label(metrics))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _plain_log_ticks(ax)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"HSV spectra: {run_label(metrics)}", fontsize=9)
    return _save(fig, path)


def plot_state_dims(metrics: dict[str, Any], path: Path) -> Path:
    """State dimension of every layer against training step; layers that share a dimension
    stay visible (a thick solid line under thinner dashed ones, distinct markers)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    steps = [0] + [e["step"] for e in metrics["evaluations"]]
    dims = [metrics["initial_state_dims"]] + [e["state_dims"] for e in metrics["evaluations"]]
    for i, name in enumerate(layer_names(metrics)):
        ax.step(steps, [d[i] for d in dims], where="post", label=name, color=_colour(i),
                linestyle=_LINESTYLES[i % len(_LINESTYLES)], linewidth=max(1.2, 4.0 - 1.0 * i),
                marker=_MARKERS[i % len(_MARKERS)], markersize=max(3.0, 7.0 - 1.5 * i), markevery=max(1, len(steps) // 12))
    for step in {r["step"] for r in metrics.get("rollbacks", [])}:
        ax.axvline(step, color="tab:red", linestyle=":", linewidth=1.0)
    ax.set(xlabel="step", ylabel="state dimension", title=f"state dimension: {run_label(metrics)}")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, title="layer" + ("; red dotted: rollback" if metrics.get("rollbacks") else ""), title_fontsize=7)
    return _save(fig, path)


def plot_metric_over_time(runs: dict[str, dict[str, Any] | list[dict[str, Any]]], path: Path) -> Path:
    """Validation metric against training step and against wall-clock seconds, one colour and
    marker per run label; a label with several runs (seeds) shows each as a thin line and
    their mean over seeds (at each evaluation) as a thick one."""
    runs = {label: value if isinstance(value, list) else [value] for label, value in runs.items()}
    key = next(k for k in next(iter(runs.values()))[0]["evaluations"][0] if k.startswith("val_"))
    fig, axes = plt.subplots(1, 2, figsize=(12.0, 4.2), sharey=True)
    for i, (label, seeds) in enumerate(runs.items()):
        colour, marker = _colour(i), _MARKERS[i % len(_MARKERS)]
        curves = [([e["step"] for e in m["evaluations"]], [e["wall_clock_s"] for e in m["evaluations"]],
                   [e[key] for e in m["evaluations"]]) for m in seeds]
        for ax, x_of in zip(axes, (0, 1), strict=True):
            if len(curves) > 1:
                for curve in curves:
                    ax.plot(curve[x_of], curve[2], color=colour, linewidth=0.8, alpha=0.45)
            length = min(len(curve[0]) for curve in curves)
            mean_x = [sum(curve[x_of][j] for curve in curves) / len(curves) for j in range(length)]
            mean_y = [sum(curve[2][j] for curve in curves) / len(curves) for j in range(length)]
            seeds_note = f" (mean of {len(curves)} seeds)" if len(curves) > 1 else ""
            ax.plot(mean_x, mean_y, color=colour, linewidth=2.4, marker=marker, markersize=5,
                    markevery=max(1, length // 10), label=f"{label}{seeds_note}")
    axes[0].set(xlabel="step", ylabel=key.replace("_", " "), title="validation metric by training step")
    axes[1].set(xlabel="wall-clock (s)", title="validation metric by wall-clock time")
    for ax in axes:
        ax.grid(alpha=0.3)
    single = _single_run(runs)
    if single is not None:  # its name in the title, its reductions dotted
        reductions = sorted({r["step"] for r in single.get("reductions", [])})
        fig.suptitle(next(iter(runs)) + ("; dotted: reductions" if reductions else ""), fontsize=10)
        for step in reductions:
            axes[0].axvline(step, color="0.5", linestyle=":", linewidth=1.0)
    _legend(axes[1], inside=single is not None)
    return _save(fig, path)


def plot_train_loss(runs: dict[str, dict[str, Any] | list[dict[str, Any]]], path: Path) -> Path | None:
    """Training loss (mean over the batches since the previous evaluation) against step, one
    colour per run label and a thin line per seed; reductions of a single run dotted. None,
    and nothing written, when no run recorded a training loss (metrics.json from before
    ``train_loss`` was recorded)."""
    runs = {label: value if isinstance(value, list) else [value] for label, value in runs.items()}
    curves = {label: [[(e["step"], e["train_loss"]) for e in m["evaluations"] if e.get("train_loss") is not None]
                      for m in seeds] for label, seeds in runs.items()}
    if not any(points for seeds in curves.values() for points in seeds):
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    for i, (label, seeds) in enumerate(curves.items()):
        for j, points in enumerate(seeds):
            if points:
                ax.plot(*zip(*points, strict=True), color=_colour(i), marker=_MARKERS[i % len(_MARKERS)], markersize=3,
                        linewidth=1.8 if len(seeds) == 1 else 1.0, label=label if j == 0 else None)
    single = _single_run(runs)
    if single is not None:
        reductions = sorted({r["step"] for r in single.get("reductions", [])})
        for step in reductions:
            ax.axvline(step, color="0.5", linestyle=":", linewidth=1.0)
        title = f"training loss: {next(iter(runs))}" + ("; dotted: reductions" if reductions else "")
    else:
        title = "training loss (one line per seed)"
    ax.set_yscale("log")
    _plain_log_ticks(ax)
    ax.set(xlabel="step", ylabel="training loss", title=title)
    ax.grid(alpha=0.3, which="both")
    _legend(ax, inside=single is not None)
    return _save(fig, path)


def plot_run(metrics: dict[str, Any], output: Path) -> list[Path]:
    """Every plot of one run into ``output``: hsv_spectra.png, state_dims.png,
    val_metric_over_time.png, train_loss.png (and rank_stability.png when HSVs were logged)."""
    from .stability import plot_rank_stability

    paths = [
        plot_hsv_spectra(metrics, output / "hsv_spectra.png"),
        plot_state_dims(metrics, output / "state_dims.png"),
        plot_metric_over_time({run_label(metrics): metrics}, output / "val_metric_over_time.png"),
        plot_train_loss({run_label(metrics): metrics}, output / "train_loss.png"),
    ]
    if "rank_stability" in metrics:
        paths.append(plot_rank_stability(metrics["rank_stability"], output / "rank_stability.png"))
    return [path for path in paths if path is not None]


def layer_names(metrics: dict[str, Any]) -> list[str]:
    """The layers' names as metrics.json's HSV snapshots give them (``blocks.0.ssm``, ...),
    else ``layer 0``, ``layer 1``, ...: the same names in every plot."""
    count = len(metrics["initial_state_dims"])
    names = list(metrics["hsv_history"][0]["hsv"]) if metrics.get("hsv_history") else []
    return names if len(names) == count else [f"layer {i}" for i in range(count)]


def run_label(metrics: dict[str, Any]) -> str:
    """A run's name for legends and titles: model and its initial state dims, task,
    tolerance (or fixed fraction, or not compressed), seed."""
    config = metrics.get("config")
    if not config:
        return "run"
    if config.get("tau") is not None:
        compression = f"tau {config['tau']:g}"
    else:
        compression = f"fixed {config['fraction']:g}" if config.get("mode") == "fixed" else "not compressed"
    dims = "/".join(str(d) for d in metrics.get("initial_state_dims", []))
    return f"{config['model']} (state {dims}) on {config['task']}, {compression}, seed {config['seed']}"


def _single_run(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The metrics of the only run in ``runs``, or None when there are several."""
    return runs[next(iter(runs))][0] if len(runs) == 1 and len(next(iter(runs.values()))) == 1 else None


def _plain_log_ticks(ax: Any) -> None:
    """Plain numbers (2, 0.5) on a log y axis rather than 2 x 10^0; minor ticks labelled only
    where the axis spans little more than a decade."""
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1.2, 0.5)))
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _legend(ax: Any, *, inside: bool) -> None:
    """The legend in the best corner (one run) or outside on the right (several)."""
    if inside:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))


def _colour(index: int) -> str:
    return _COLOURS[index % len(_COLOURS)]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_hsv_comparison(runs: dict[str, dict[str, Any]], path: Path) -> Path:
    """One panel per layer: the HSV spectra of several runs (label -> metrics). A run whose
    label starts with "compressm" shows its spectra at step 0 and at each reduction; the
    others their spectrum at the end of training."""
    layers = list(next(iter(runs.values()))["hsv_history"][0]["hsv"])
    fig, axes = plt.subplots(1, len(layers), figsize=(4.8 * len(layers), 3.8), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        for i, (label, metrics) in enumerate(runs.items()):
            history = metrics["hsv_history"]
            compressm = label.startswith("compressm")
            snapshots = history[:-1] if compressm else history[-1:]
            shades = plt.cm.Blues([0.4 + 0.6 * j / max(1, len(snapshots) - 1) for j in range(len(snapshots))])
            for snapshot, shade in zip(snapshots, shades, strict=True):
                if layer in snapshot["hsv"]:
                    values = [max(v, 1e-16) for v in snapshot["hsv"][layer]]
                    ax.semilogy(range(1, len(values) + 1), values, "--" if compressm else "-", linewidth=1.8,
                                color=shade if compressm else _colour(i), label=f"{label}, step {snapshot['step']}")
        ax.set(title=layer, xlabel="index", ylabel=hsv_axis_label(next(iter(runs.values()))))
    axes[0][-1].legend(fontsize=6, loc="upper right")
    fig.suptitle("CompreSSM's spectra (dashed, darker = later) before each reduction; the others at the end", fontsize=9)
    return _save(fig, path)


def _state_dim_ticks(dims: list[int]) -> list[float]:
    """1, 2, 5 x 10^k between the smallest and largest of ``dims``, and the smallest itself
    where the first such tick is more than 1.2x above it (or the largest where none lies between)."""
    low, high = min(dims), max(dims)
    decades = range(math.floor(math.log10(low)), math.floor(math.log10(high)) + 1)
    ticks = [m * 10.0**k for k in decades for m in (1, 2, 5) if low <= m * 10.0**k <= high]
    if not ticks or ticks[0] > 1.2 * low:
        ticks.insert(0, low)
    if len(ticks) == 1 and high > low:
        ticks.append(high)
    return ticks


def plot_sweep(summary: dict[str, Any], path: Path) -> Path:
    """Test metric against final total state dim, one panel per point of the run (last step,
    best validation step): every seed's run as a dot, the mean over seeds at each tolerance
    joined by a line per arm, the full model's mean as a dashed line (``summary`` as in
    comparison.json)."""
    metric = summary["metric"]
    points = [(key, title) for key, title in (("", "last step"), ("_at_best_val", "best val step"))
              if any(v is not None for row in summary["rows"] for v in row[f"values{key}"])]
    fig, axes = plt.subplots(1, len(points), figsize=(6.0 * len(points), 4.4), squeeze=False)
    names = list(dict.fromkeys(row["name"] for row in summary["rows"]))
    for ax, (key, title) in zip(axes[0], points, strict=True):
        dims: list[int] = []
        for i, name in enumerate(names):
            colour, marker = _colour(i), _MARKERS[i % len(_MARKERS)]
            rows = [row for row in summary["rows"] if row["name"] == name and row[f"mean{key}"] is not None]
            seeds = [(d, v) for row in rows for d, v in zip(row["total_state_dims"], row[f"values{key}"], strict=True) if v is not None]
            if not seeds:
                continue
            dims.extend(d for d, _ in seeds)
            ax.scatter(*zip(*seeds, strict=True), s=16, alpha=0.45, color=colour, marker=marker)
            means = sorted((row["total_state_dim"], row[f"mean{key}"]) for row in rows)
            ax.plot(*zip(*means, strict=True), marker=marker, color=colour, linewidth=1.8, label=name)
            if rows[0]["arm"] == "full":
                ax.axhline(means[0][1], linestyle="--", linewidth=0.8, color=colour)
        ax.set_xscale("log")  # labelled as plain numbers, minor ticks unlabelled
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(_state_dim_ticks(dims)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set(xlabel="final total state dim", ylabel=f"test {metric}", title=f"test {metric} at the {title}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("dots: one run per seed; lines: mean over seeds at each tolerance; dashed: full model", fontsize=8)
    return _save(fig, path)
