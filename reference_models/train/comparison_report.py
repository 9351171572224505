"""What ``compressm compare`` reports: the table (comparison.md), the paired differences per
seed, and the summary (comparison.json), from the arms' results, failed and skipped ones too.

Every run is reported twice: its test metric at the last step (``test_<metric>``) and at the
step of its best validation metric (``test_<metric>_at_best_val``, what the paper reports).
Paired differences are *improvements*: CompreSSM minus the other arm for accuracy, the other
arm minus CompreSSM for MSE, so that a positive number always means CompreSSM did better.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

#: Which test metric: at the last step, or at the step of the best validation metric.
POINTS = {"last": "last step", "best_val": "best val step"}
#: The arms CompreSSM is paired with, seed by seed.
PARTNERS = {"small": "small from scratch", "full": "full"}


@dataclass(frozen=True)
class ArmResult:
    """One arm at one tolerance and seed: ``done`` (with its metrics), ``failed`` (with the
    error's type and message) or ``skipped`` (with the reason: an arm it needs failed)."""

    arm: str
    tau: float | None
    seed: int
    status: str
    metrics: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    reason: str | None = None

    def describe(self) -> str:
        """e.g. "compressm (tau 0.1, seed 0)"."""
        tau = f"tau {self.tau:g}, " if self.tau is not None else ""
        return f"{self.arm} ({tau}seed {self.seed})"

    def outcome(self) -> str:
        """Why there is no result: "failed: ValueError: ..." or "skipped: needs ..."."""
        if self.status == "failed":
            return f"failed: {self.error['type']}: {self.error['message']}"
        return f"skipped: {self.reason}"


@dataclass
class Row:
    """One row of the table: an arm (``name``: how to call it) at one tolerance (``label``:
    the name with the tolerance where there are several), its results over seeds."""

    arm: str
    tau: float | None
    name: str
    label: str
    results: list[ArmResult] = field(default_factory=list)

    @property
    def done(self) -> list[dict[str, Any]]:
        return [r.metrics for r in self.results if r.status == "done"]


def metric_name(metrics: dict[str, Any]) -> str:
    """"accuracy" (classification) or "mse" (regression), from a run's metrics."""
    return "accuracy" if "test_accuracy" in metrics else "mse"


def test_value(metrics: dict[str, Any], metric: str, point: str) -> float | None:
    """The test metric at ``point`` ("last" or "best_val"); None where the run has none
    (post-training truncation has no validation history, older runs lack the key)."""
    return metrics.get(f"test_{metric}" if point == "last" else f"test_{metric}_at_best_val")


def total_state_dim(metrics: dict[str, Any]) -> int:
    return sum(metrics["final_state_dims"])


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_spread(values: list[float], signed: bool = False) -> str:
    if not values:
        return "—"
    mean, std = _mean_std(values)
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text if len(values) == 1 else f"{text} ± {std:.4f}"


def _number(value: float) -> str:
    return f"{value:.0f}" if value == round(value) else f"{value:.1f}"


def _values(runs: list[dict[str, Any]], metric: str, point: str) -> list[float]:
    return [v for v in (test_value(run, metric, point) for run in runs) if v is not None]


def comparison_table(rows: list[Row], metric: str) -> str:
    """A markdown table, one row per arm and tolerance: test metric at the last step and at the
    best validation step (mean ± std over the seeds that finished), final state dims per layer
    and in total, wall-clock and speed-up against the full model (means), and the seeds that
    failed or were skipped."""
    full = next((row.done for row in rows if row.arm == "full" and row.done), None)
    full_time = statistics.mean(run["wall_clock_s"] for run in full) if full else None
    lines = [
        f"| arm | test {metric}, last step | test {metric}, best val step | final state dims "
        "| total state dim | wall-clock (s) | speed-up vs full | not run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        runs = row.done
        missing = "; ".join(f"seed {r.seed} {r.outcome()}" for r in row.results if r.status != "done")
        if not runs:
            lines.append(f"| {row.label} | — | — | — | — | — | — | {missing} |")
            continue
        dims = [statistics.mean(d) for d in zip(*(run["final_state_dims"] for run in runs), strict=True)]
        seconds = statistics.mean(run["wall_clock_s"] for run in runs)
        speed_up = f"{full_time / seconds:.2f}x" if full_time else "—"
        lines.append(
            f"| {row.label} | {_mean_spread(_values(runs, metric, 'last'))} | {_mean_spread(_values(runs, metric, 'best_val'))} "
            f"| {'/'.join(_number(d) for d in dims)} | {_number(sum(dims))} | {seconds:.1f} | {speed_up} | {missing} |"
        )
    return "\n".join(lines)


def paired_differences(results: list[ArmResult], metric: str) -> list[dict[str, Any]]:
    """Per tolerance and seed where CompreSSM finished: its improvement over each partner
    (``PARTNERS``) that finished, at both points, with the total state dims and wall-clocks."""
    sign = 1.0 if metric == "accuracy" else -1.0
    done = {(r.arm, r.tau, r.seed): r.metrics for r in results if r.status == "done"}
    pairs = []
    for (arm, tau, seed), compressed in done.items():
        if arm != "compressm":
            continue
        partners = {name: done.get((name, tau if name != "full" else None, seed)) for name in PARTNERS}
        partners = {name: run for name, run in partners.items() if run is not None}
        improvement = {
            name: {
                point: sign * (test_value(compressed, metric, point) - test_value(run, metric, point))
                for point in POINTS
                if test_value(compressed, metric, point) is not None and test_value(run, metric, point) is not None
            }
            for name, run in partners.items()
        }
        runs = {"compressm": compressed, **partners}
        pairs.append(
            {
                "tau": tau,
                "seed": seed,
                "improvement": improvement,
                "total_state_dim": {name: total_state_dim(run) for name, run in runs.items()},
                "wall_clock_s": {name: run["wall_clock_s"] for name, run in runs.items()},
            }
        )
    return sorted(pairs, key=lambda pair: (pair["tau"] or 0.0, pair["seed"]))


def paired_summary(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per tolerance, partner and point: the improvements over seeds, their mean and std, and
    in how many seeds CompreSSM did better."""
    summary = []
    for tau in dict.fromkeys(pair["tau"] for pair in pairs):
        for partner in PARTNERS:
            for point in POINTS:
                seeds, values = [], []
                for pair in pairs:
                    value = pair["improvement"].get(partner, {}).get(point)
                    if pair["tau"] == tau and value is not None:
                        seeds.append(pair["seed"])
                        values.append(value)
                if values:
                    mean, std = _mean_std(values)
                    wins = sum(v > 0 for v in values)
                    summary.append({"tau": tau, "versus": partner, "at": point, "seeds": seeds,
                                    "improvements": values, "mean": mean, "std": std, "wins": wins})
    return summary


def paired_tables(pairs: list[dict[str, Any]], metric: str) -> str:
    """Markdown: the mean improvement per tolerance, partner and point, then every seed."""
    if not pairs:
        return ""
    rule = "CompreSSM minus the other arm" if metric == "accuracy" else "the other arm minus CompreSSM"
    lines = [
        f"Paired by seed: improvement in test {metric} = {rule} (positive: CompreSSM better).",
        "",
        "| tau | CompreSSM vs | test metric at | improvement (mean ± std) | CompreSSM better in |",
        "|---|---|---|---|---|",
    ]
    for entry in paired_summary(pairs):
        tau = "—" if entry["tau"] is None else f"{entry['tau']:g}"
        lines.append(
            f"| {tau} | {PARTNERS[entry['versus']]} | {POINTS[entry['at']]} | "
            f"{_mean_spread(entry['improvements'], signed=True)} | {entry['wins']} of {len(entry['improvements'])} seeds |"
        )
    lines += [
        "",
        "| tau | seed | total state dim: CompreSSM / small / full | improvement vs small: last / best val "
        "| improvement vs full: last / best val | wall-clock (s): CompreSSM / small / full |",
        "|---|---|---|---|---|---|",
    ]
    for pair in pairs:
        tau = "—" if pair["tau"] is None else f"{pair['tau']:g}"
        dims = " / ".join(str(pair["total_state_dim"].get(arm, "—")) for arm in ("compressm", *PARTNERS))
        seconds = " / ".join(
            f"{pair['wall_clock_s'][arm]:.1f}" if arm in pair["wall_clock_s"] else "—" for arm in ("compressm", *PARTNERS)
        )
        improvements = [
            " / ".join(
                f"{pair['improvement'][partner][point]:+.4f}" if point in pair["improvement"].get(partner, {}) else "—"
                for point in POINTS
            )
            for partner in PARTNERS
        ]
        lines.append(f"| {tau} | {pair['seed']} | {dims} | {improvements[0]} | {improvements[1]} | {seconds} |")
    return "\n".join(lines)


def summary(rows: list[Row], results: list[ArmResult], metric: str) -> dict[str, Any]:
    """comparison.json: the metric, one entry per row (values per seed at both points, dims,
    wall-clocks, seeds not run and why), the paired differences, and every failed or skipped arm."""
    entries = []
    for row in rows:
        runs = [r for r in row.results if r.status == "done"]
        entry: dict[str, Any] = {"arm": row.arm, "tau": row.tau, "name": row.name, "label": row.label, "seeds": [r.seed for r in runs]}
        for point, suffix in (("last", ""), ("best_val", "_at_best_val")):
            values = [test_value(r.metrics, metric, point) for r in runs]
            known = [v for v in values if v is not None]
            mean, std = _mean_std(known) if known else (None, None)
            entry |= {f"values{suffix}": values, f"mean{suffix}": mean, f"std{suffix}": std}
        entry |= {
            "best_val_step": [r.metrics.get("best_val_step") for r in runs],
            "final_state_dims": [r.metrics["final_state_dims"] for r in runs],
            "total_state_dims": [total_state_dim(r.metrics) for r in runs],
            "total_state_dim": statistics.mean(total_state_dim(r.metrics) for r in runs) if runs else None,
            "wall_clock_s": [r.metrics["wall_clock_s"] for r in runs],
            "not_run": [{"seed": r.seed, "status": r.status, "why": r.outcome()} for r in row.results if r.status != "done"],
        }
        entries.append(entry)
    pairs = paired_differences(results, metric)
    return {
        "metric": metric,
        "higher_is_better": metric == "accuracy",
        "keys": {"last": f"test_{metric}", "best_val": f"test_{metric}_at_best_val"},
        "rows": entries,
        "paired": pairs,
        "paired_summary": paired_summary(pairs),
        "failures": [
            {"arm": r.arm, "tau": r.tau, "seed": r.seed, "status": r.status, "error": r.error, "reason": r.reason}
            for r in results
            if r.status != "done"
        ],
    }


def headline(summary: dict[str, Any]) -> list[str]:
    """One plain sentence per tolerance: CompreSSM's total state against the full model's, its
    speed-up, and its paired difference (test metric at the last step) to small-from-scratch
    and to the full model; accuracy in points, MSE as a ratio. Empty without those arms."""
    rows = {(row["arm"], row["tau"]): row for row in summary["rows"] if row["seeds"]}
    full = next((row for (arm, _), row in rows.items() if arm == "full"), None)
    paired = {(e["tau"], e["versus"]): e for e in summary["paired_summary"] if e["at"] == "last"}
    sentences = []
    for (arm, tau), row in rows.items():
        if arm != "compressm" or full is None:
            continue
        speed_up = statistics.mean(full["wall_clock_s"]) / statistics.mean(row["wall_clock_s"])
        seeds = len(row["seeds"])
        text = (
            f"CompreSSM (tau {tau:g}, {seeds} seed{'s' if seeds > 1 else ''}) cut the state from "
            f"{full['total_state_dim']:g} to {row['total_state_dim']:.3g} in total and trained {speed_up:.1f}x "
            f"faster than the full model"
        )
        comparisons = []
        for partner, name in (("small", "small-from-scratch at the same size"), ("full", "the full model")):
            entry = paired.get((tau, partner))
            other = rows.get((partner, tau if partner == "small" else None))
            if entry is None or other is None:
                continue
            wins = f"better in {entry['wins']} of {len(entry['improvements'])} seeds"
            if summary["higher_is_better"]:
                points = 100 * entry["mean"]
                side = "above" if points >= 0 else "below"
                comparisons.append(f"{abs(points):.1f} points {side} {name} ({wins})")
                quantity = "test accuracy"
            else:
                ratio = other["mean"] / row["mean"]
                side = "lower" if ratio >= 1 else "higher"
                factor = ratio if ratio >= 1 else 1 / ratio
                comparisons.append(f"{factor:.2g}x {side} than {name} ({wins})")
                quantity = "test MSE"
        if comparisons:
            text += f"; at the last step its {quantity} is " + " and ".join(comparisons)
        sentences.append(text + ".")
    return sentences
