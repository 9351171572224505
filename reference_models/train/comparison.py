"""``compressm compare``: CompreSSM against its baselines, over seeds and tolerances, as a table
in the paper's form (test metric mean ± std, final dims, wall-clock, speed-up) and plots.

Arms (every one trained with the same budget, seeds and data):

- ``full``: the model at its initial state dims, no compression (always run: the speed-ups
  are relative to it).
- ``compressm``: CompreSSM at each tolerance ``tau``.
- ``small``: a model trained from scratch at CompreSSM's final dims.
- ``hnn``: the full model trained with the Hankel nuclear norm penalty (HSVs through the core
  at every step), then balanced truncation at ``tau`` without retraining; the untruncated
  model is a row of its own.
- ``distill``: a student at CompreSSM's final dims distilled from the ``full`` model of the
  same seed (its teacher forward passes count in its wall-clock, its training does not).
- ``truncate``: post-training balanced truncation of the ``full`` model at ``tau``;
  ``truncate_dims``: to CompreSSM's final dims.
- ``smallest``, ``random``: CompreSSM keeping the smallest / a random set of balanced states
  (the paper's selection ablations), with the rollback safety net off so that they reduce.

Arms that need another arm (``small`` needs ``compressm``, ...) bring it along.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tasks import load_task
from .config import ARMS, DEFAULT_ARMS, TrainConfig
from .plots import plot_hsv_comparison, plot_metric_over_time, plot_metric_vs_dim

__all__ = ["ARMS", "DEFAULT_ARMS", "ArmOptions", "comparison_table", "resolve_arms", "run_comparison"]
_NEEDS = {
    "small": ("compressm",),
    "distill": ("full", "compressm"),
    "truncate": ("full",),
    "truncate_dims": ("full", "compressm"),
}
_LABELS = {
    "full": "full",
    "hnn_untruncated": "hnn, untruncated",
    "compressm": "compressm",
    "small": "small from scratch",
    "distill": "distillation",
    "truncate": "full + truncation",
    "truncate_dims": "full + truncation to CompreSSM's dims",
    "hnn": "hnn + truncation",
    "smallest": "compressm, keep smallest",
    "random": "compressm, keep random",
}

#: ``run_and_save(config, output, *, progress, data) -> metrics``
TrainAndSave = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class ArmOptions:
    """Settings of the baseline arms: the HNN penalty weight, and the distillation loss's
    soft-target weight and temperature (see ``torch_objectives``)."""

    hnn_weight: float = 1e-3
    distill_weight: float = 0.5
    distill_temperature: float = 2.0

    def __post_init__(self) -> None:
        for name, value, valid, rule in (
            ("hnn_weight", self.hnn_weight, lambda v: v > 0, "> 0"),
            ("distill_weight", self.distill_weight, lambda v: 0 < v <= 1, "in (0, 1]"),
            ("distill_temperature", self.distill_temperature, lambda v: v > 0, "> 0"),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and valid(value)):
                msg = f"`{name}` must be a finite number {rule} for the comparison arms, got {value!r}"
                raise ValueError(msg)


@dataclass
class Row:
    """One row of the table: an arm at one tolerance (``None`` where it has none), its runs per seed."""

    arm: str
    tau: float | None
    label: str
    runs: list[dict[str, Any]] = field(default_factory=list)


def resolve_arms(arms: Sequence[str]) -> tuple[str, ...]:
    """``arms`` with ``full`` and every arm they need, in ``ARMS`` order."""
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown or not arms:
        msg = f"`arms` {list(arms)} holds unknown names {unknown}; choose from: {', '.join(ARMS)}"
        raise ValueError(msg)
    wanted = {"full", *arms}
    for arm in arms:
        wanted.update(_NEEDS.get(arm, ()))
    return tuple(arm for arm in ARMS if arm in wanted)


def _taus(config: TrainConfig, taus: Sequence[float] | None, arms: tuple[str, ...]) -> tuple[float | None, ...]:
    if config.mode == "fixed":
        tolerance_arms = sorted({"hnn", "truncate"} & set(arms))
        if taus or tolerance_arms:
            msg = f"`taus` and the arms {tolerance_arms} need mode 'tolerance', got mode='fixed'"
            raise ValueError(msg)
        return (None,)
    if not taus:
        if config.tau is None:
            msg = "`compare` needs a tolerance: give `tau` or `taus` (or mode='fixed')"
            raise ValueError(msg)
        return (config.tau,)
    return tuple(dict.fromkeys(taus))


def run_comparison(
    config: TrainConfig,
    output: Path,
    train_and_save: TrainAndSave,
    *,
    arms: Sequence[str] = DEFAULT_ARMS,
    taus: Sequence[float] | None = None,
    seeds: Sequence[int] = (0,),
    options: ArmOptions | None = None,
    progress: bool = True,
    write: bool = True,
) -> str:
    """Run ``arms`` (see the module docstring) for every seed and tolerance (``taus``, default
    ``config.tau``); write ``output``/comparison.md, comparison.json and the comparison plots
    (not when ``write`` is False), and return the markdown table.

    Each run has its folder ``<arm>_seed<s>`` (``<arm>_tau<tau>_seed<s>`` with several taus).
    """
    arms = resolve_arms(arms)
    torch_only = sorted({"hnn", "distill"} & set(arms))
    if torch_only and config.backend != "torch":
        msg = f"the arms {torch_only} need backend 'torch', got backend={config.backend!r}"
        raise ValueError(msg)
    tolerances = _taus(config, taus, arms)
    options = options or ArmOptions()
    base = config.replace(hnn_weight=0.0, distill_weight=0.0, teacher=None)
    rows: dict[tuple[str, float | None], Row] = {}
    for seed in seeds:
        seeded = base.replace(seed=seed)
        data = load_task(seeded.task, seed=seed, data_dir=seeded.data_dir, **seeded.task_options())
        arm_runs = _SeedRuns(seeded, output, train_and_save, data, len(tolerances) > 1, progress)
        for (arm, tau), metrics in arm_runs.all(arms, tolerances, options).items():
            label = _LABELS[arm] + (f", tau {tau:g}" if tau is not None and len(tolerances) > 1 else "")
            rows.setdefault((arm, tau), Row(arm, tau, label)).runs.append(metrics)
    ordered = list(rows.values())
    table = comparison_table({row.label: row.runs for row in ordered})
    if write:
        (output / "comparison.md").write_text(table + "\n")
        (output / "comparison.json").write_text(json.dumps(_summary(ordered), indent=2))
        _plots(ordered, output)
    return table


@dataclass
class _SeedRuns:
    """The runs of one seed; folders and configs of every arm."""

    config: TrainConfig
    output: Path
    train_and_save: TrainAndSave
    data: Any
    several_taus: bool
    progress: bool

    def folder(self, arm: str, tau: float | None) -> Path:
        tag = f"_tau{tau:g}" if tau is not None and self.several_taus else ""
        return self.output / f"{arm}{tag}_seed{self.config.seed}"

    def train(self, arm: str, tau: float | None, config: TrainConfig) -> dict[str, Any]:
        return self.train_and_save(config, self.folder(arm, tau), progress=self.progress, data=self.data)

    def truncated(
        self, arm: str, tau: float, source: str, metrics: dict[str, Any], dims: list[int] | None = None
    ) -> dict[str, Any]:
        """The ``source`` arm's trained model truncated at ``tau``, or to ``dims`` where given."""
        from .torch_truncation import truncated_run  # PyTorch, for checkpoints of either backend

        checkpoint = self.folder(source, None) / "model.safetensors"
        target = {"dims": dims} if dims is not None else {"tau": tau}
        _, result = truncated_run(str(checkpoint), metrics, self.data, **target)
        folder = self.folder(arm, tau)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(result, indent=2))
        return result

    def all(self, arms: tuple[str, ...], taus: tuple[float | None, ...], options: ArmOptions) -> dict[tuple[str, float | None], dict[str, Any]]:
        uncompressed = self.config.replace(tau=None, mode="tolerance")
        runs: dict[tuple[str, float | None], dict[str, Any]] = {}
        runs["full", None] = full = self.train("full", None, uncompressed)
        if "hnn" in arms:
            hnn_config = uncompressed.replace(hnn_weight=options.hnn_weight)
            runs["hnn_untruncated", None] = hnn = self.train("hnn", None, hnn_config)
        for tau in taus:
            compressing = self.config.replace(tau=tau) if tau is not None else self.config
            if "compressm" in arms:
                runs["compressm", tau] = compressed = self.train("compressm", tau, compressing)
                dims = tuple(compressed["final_state_dims"])
            if "small" in arms:
                runs["small", tau] = self.train("small", tau, uncompressed.replace(state_dim=dims))
            if "distill" in arms:
                student = uncompressed.replace(
                    state_dim=dims,
                    distill_weight=options.distill_weight,
                    distill_temperature=options.distill_temperature,
                    teacher=str(self.folder("full", None) / "model.safetensors"),
                )
                runs["distill", tau] = self.train("distill", tau, student)
            if "truncate" in arms:
                runs["truncate", tau] = self.truncated("truncate", tau, "full", full)
            if "truncate_dims" in arms:
                runs["truncate_dims", tau] = self.truncated("truncate_dims", tau, "full", full, list(dims))
            if "hnn" in arms:
                runs["hnn", tau] = self.truncated("hnn_truncated", tau, "hnn", hnn)
            for selection in ("smallest", "random"):
                if selection in arms:
                    ablation = compressing.replace(selection=selection, rollback_tolerance=math.inf)
                    runs[selection, tau] = self.train(selection, tau, ablation)
        return runs


def _mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _mean_dims(runs: list[dict[str, Any]]) -> list[float]:
    return [statistics.mean(dims) for dims in zip(*(run["final_state_dims"] for run in runs), strict=True)]


def _number(value: float) -> str:
    return f"{value:.0f}" if value == round(value) else f"{value:.1f}"


def comparison_table(arms: dict[str, list[dict[str, Any]]]) -> str:
    """A markdown table, one row per arm (label -> its runs over seeds; "full" must be one):
    test metric (mean ± std over seeds), final state dims per layer and in total (means over
    seeds), wall-clock (mean) and the speed-up against the full model."""
    metric = next(key for key in arms["full"][0] if key.startswith("test_"))
    full_time = statistics.mean(run["wall_clock_s"] for run in arms["full"])
    lines = [
        f"| arm | {metric.replace('_', ' ')} | final state dims | total state dim | wall-clock (s) | speed-up vs full |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in arms.items():
        seconds = statistics.mean(run["wall_clock_s"] for run in runs)
        dims = _mean_dims(runs)
        lines.append(
            f"| {name} | {_mean_spread([run[metric] for run in runs])} | {'/'.join(_number(d) for d in dims)} "
            f"| {_number(sum(dims))} | {seconds:.1f} | {full_time / seconds:.2f}x |"
        )
    return "\n".join(lines)


def _summary(rows: list[Row]) -> list[dict[str, Any]]:
    summary = []
    for row in rows:
        metric = next(key for key in row.runs[0] if key.startswith("test_"))
        values = [run[metric] for run in row.runs]
        summary.append(
            {
                "arm": row.arm,
                "tau": row.tau,
                "label": row.label,
                "name": _LABELS[row.arm],
                "metric": metric,
                "values": values,
                "mean": statistics.mean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "final_state_dims": [run["final_state_dims"] for run in row.runs],
                "total_state_dim": sum(_mean_dims(row.runs)),
                "wall_clock_s": [run["wall_clock_s"] for run in row.runs],
            }
        )
    return summary


def _plots(rows: list[Row], output: Path) -> None:
    plot_metric_vs_dim(_summary(rows), output / "comparison_metric_vs_dim.png")
    first = {row.arm: row.runs[0] for row in reversed(rows)}  # seed 0, first tau
    spectra = {label: first[arm] for arm, label in (("full", "full, end"), ("hnn_untruncated", "hnn, end"), ("compressm", "compressm")) if arm in first}
    plot_hsv_comparison(spectra, output / "comparison_hsv_spectra.png")
    trained = {row.label: row.runs[0] for row in rows if "evaluations" in row.runs[0]}
    plot_metric_over_time(trained, output / "comparison_val_metric.png")
