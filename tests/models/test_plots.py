"""The run and comparison plots: what each draws, layer names, seeds, the training-loss fallback."""

from __future__ import annotations

import matplotlib.colors as mcolors
import pytest

from reference_models.train import plots


def metrics(seed: int = 0, tau: float | None = 0.1, train_loss: bool = True, dims=((8, 8), (5, 5))) -> dict:
    """A small metrics.json: two layers with equal dims at every step (their lines overlap)."""
    evaluations = [
        {"step": step, "wall_clock_s": 0.5 * step + seed, "val_accuracy": 0.1 * i + 0.01 * seed, "state_dims": list(d)}
        | ({"train_loss": 2.0 / (i + 1)} if train_loss else {})
        for i, (step, d) in enumerate(zip((10, 20), dims, strict=True))
    ]
    return {
        "initial_state_dims": [8, 8],
        "final_state_dims": list(dims[-1]),
        "evaluations": evaluations,
        "reductions": [{"step": 20, "layer": "blocks.0.ssm", "old_dim": 8, "new_dim": 5}],
        "rollbacks": [],
        "hsv_history": [{"step": 0, "hsv": {"blocks.0.ssm": [1.0, 0.5, 0.1], "blocks.1.ssm": [1.0, 0.2, 0.01]}}],
        "config": {"model": "lru", "task": "digits", "tau": tau, "mode": "tolerance", "fraction": 0.1, "seed": seed},
    }


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save (kept open for inspection)."""
    saved = []

    def keep(fig, path):
        saved.append(fig)
        fig.savefig(path)
        return path

    monkeypatch.setattr(plots, "_save", keep)
    yield saved
    for fig in saved:
        plots.plt.close(fig)


def legend_texts(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_plot_run_writes_every_plot_with_the_same_layer_names(figures, tmp_path):
    paths = plots.plot_run(metrics(), tmp_path)
    assert sorted(path.name for path in paths) == [
        "hsv_spectra.png", "state_dims.png", "train_loss.png", "val_metric_over_time.png"
    ]
    assert all(path.stat().st_size > 0 for path in paths)
    (dims_axes,) = figures[1].axes
    assert legend_texts(dims_axes) == ["blocks.0.ssm", "blocks.1.ssm"]  # as in metrics.json
    assert [ax.get_title() for ax in figures[0].axes] == ["blocks.0.ssm", "blocks.1.ssm"]  # hsv_spectra.png


def test_overlapping_layers_stay_distinguishable(figures, tmp_path):
    plots.plot_state_dims(metrics(), tmp_path / "dims.png")
    first, second = figures[0].axes[0].get_lines()[:2]
    assert list(first.get_ydata()) == list(second.get_ydata())  # same dims: the lines overlap
    looks = [(line.get_color(), line.get_linestyle(), line.get_marker(), line.get_linewidth()) for line in (first, second)]
    assert all(a != b for a, b in zip(*looks, strict=True))


def test_every_seed_is_drawn_and_every_arm_has_a_strong_colour_of_its_own(figures, tmp_path):
    runs = {
        "full": [metrics(seed, tau=None) for seed in (0, 1, 2)],
        "compressm tau=0.1": [metrics(seed) for seed in (0, 1, 2)],
        "small": [metrics(seed, tau=None) for seed in (0, 1, 2)],
    }
    plots.plot_metric_over_time(runs, tmp_path / "cmp.png")
    by_step, by_time = figures[0].axes
    for ax in (by_step, by_time):
        assert len(ax.get_lines()) == 3 * (3 + 1)  # three seeds and their mean per arm
    assert legend_texts(by_time) == [f"{label} (mean of 3 seeds)" for label in runs]
    means = [line for line in by_time.get_lines() if line.get_linewidth() > 2]
    colours = [mcolors.to_rgb(line.get_color()) for line in means]
    assert len(set(colours)) == 3
    assert all(max(colour) - min(colour) > 0.4 or max(colour) < 0.3 for colour in colours)  # saturated or black
    assert by_step.get_lines()[-1].get_ydata()[-1] == pytest.approx(0.1 + 0.01)  # mean of seeds 0, 1, 2


def test_a_single_run_legend_names_the_run(figures, tmp_path):
    plots.plot_run(metrics(seed=3, tau=0.05), tmp_path)
    val_figure = figures[2]
    assert legend_texts(val_figure.axes[1]) == ["lru (state 8/8) on digits, tau 0.05, seed 3"]
    assert plots.run_label(metrics(tau=None)) == "lru (state 8/8) on digits, not compressed, seed 0"
    assert plots.run_label({"evaluations": []}) == "run"


def test_training_loss_plot_reads_old_metrics_without_it(figures, tmp_path):
    paths = plots.plot_run(metrics(train_loss=False), tmp_path)
    assert "train_loss.png" not in [path.name for path in paths]
    assert not (tmp_path / "train_loss.png").exists()
    assert plots.plot_train_loss({"a": metrics(train_loss=False)}, tmp_path / "loss.png") is None
    assert plots.plot_train_loss({"a": [metrics(), metrics(1)]}, tmp_path / "loss.png") == tmp_path / "loss.png"
    (ax,) = figures[-1].axes
    assert len(ax.get_lines()) == 2 and list(ax.get_lines()[0].get_ydata()) == [2.0, 1.0]


def test_layer_names_fall_back_to_indices():
    assert plots.layer_names({"initial_state_dims": [4, 4, 4], "hsv_history": []}) == ["layer 0", "layer 1", "layer 2"]


@pytest.mark.parametrize(("horizon", "label"), [(None, "Hankel singular value"), (40, "Hankel singular value (40-step Gramians)")])
def test_hsv_axes_say_which_gramians_the_values_come_from(figures, tmp_path, horizon, label):
    run = metrics() | {"horizon": horizon}
    plots.plot_hsv_spectra(run, tmp_path / "spectra.png")
    plots.plot_hsv_comparison({"full": run, "compressm": run}, tmp_path / "comparison.png")
    assert {ax.get_ylabel() for fig in figures for ax in fig.axes} == {label}


def test_sweep_axis_labels_plain_dims_without_crowded_minor_labels(figures, tmp_path):
    row = {"arm": "compressm", "name": "compressm", "total_state_dim": 22, "total_state_dims": [14, 30], "values": [0.9, 0.8],
           "mean": 0.85, "values_at_best_val": [None, None], "mean_at_best_val": None}
    full = row | {"arm": "full", "name": "full", "total_state_dim": 256, "total_state_dims": [256, 256], "values": [0.95, 0.94], "mean": 0.945}
    plots.plot_sweep({"metric": "accuracy", "rows": [full, row]}, tmp_path / "sweep.png")
    (ax,) = figures[0].axes
    figures[0].canvas.draw()
    shown = [t.get_text() for t in ax.get_xticklabels() if t.get_text() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
    assert shown == ["14", "20", "50", "100", "200"]  # the smallest dim too: below the first 1-2-5 tick
    assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
