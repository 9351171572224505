"""What a training run records (framework-free): evaluations, reductions, HSV snapshots, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import TrainConfig


def _floats(values: Any) -> list[float]:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu()
    return [float(v) for v in values]


@dataclass
class RunRecord:
    """Filled in by a trainer as the run goes; ``metrics()`` is what metrics.json holds."""

    config: TrainConfig
    kind: str
    initial_dims: list[int]
    current_dims: list[int]
    evaluations: list[dict] = field(default_factory=list)
    reductions: list[dict] = field(default_factory=list)
    rollbacks: list[dict] = field(default_factory=list)
    hsv_history: list[dict] = field(default_factory=list)
    reduction_seconds: float = 0.0
    wall_clock_s: float | None = None
    test_metric: float | None = None
    rank_stability: dict | None = None  # ``StabilityLog.report``, when HSVs were logged

    @classmethod
    def start(cls, config: TrainConfig, kind: str, dims: list[int]) -> RunRecord:
        return cls(config, kind, list(dims), list(dims))

    @property
    def metric_name(self) -> str:
        return "accuracy" if self.kind == "classification" else "mse"

    def hsv_snapshot(self, step: int, hsvs: dict[str, Any]) -> None:
        self.hsv_history.append({"step": step, "hsv": {name: _floats(h) for name, h in hsvs.items()}})

    def evaluation(self, step: int, wall_clock_s: float, val_metric: float, dims: list[int]) -> None:
        self.current_dims = list(dims)
        self.evaluations.append(
            {"step": step, "wall_clock_s": wall_clock_s, f"val_{self.metric_name}": val_metric, "state_dims": list(dims)}
        )

    def reduction_event(self, event: Any) -> None:
        """Record a ``CompressionEvent`` (either backend's)."""
        if event.reductions:
            self.hsv_snapshot(event.step, {r.name: r.hsv for r in event.reductions})
        for reduction in event.reductions:
            entry = {
                "step": event.step,
                "layer": reduction.name,
                "old_dim": reduction.old_dim,
                "new_dim": reduction.new_dim,
                "error_bound": reduction.error_bound,
                f"val_{self.metric_name}_before": event.metric_before,
                f"val_{self.metric_name}_after": event.metric_after,
            }
            (self.rollbacks if event.rolled_back else self.reductions).append(entry)
        if not event.rolled_back:
            names = [r.name for r in event.reductions]
            layer_index = {name: i for i, name in enumerate(self._layer_names(names))}
            for reduction in event.reductions:
                self.current_dims[layer_index[reduction.name]] = reduction.new_dim

    def _layer_names(self, names: list[str]) -> list[str]:
        snapshot = self.hsv_history[0]["hsv"] if self.hsv_history else {}
        return list(snapshot) or names

    def finish(self, wall_clock_s: float, test_metric: float) -> None:
        self.wall_clock_s = wall_clock_s
        self.test_metric = test_metric

    def metrics(self) -> dict[str, Any]:
        return {
            "final_state_dims": list(self.current_dims),
            "initial_state_dims": list(self.initial_dims),
            f"test_{self.metric_name}": self.test_metric,
            "wall_clock_s": self.wall_clock_s,
            "reduction_overhead_s": self.reduction_seconds,
            "reductions": self.reductions,
            "rollbacks": self.rollbacks,
            "evaluations": self.evaluations,
            "hsv_history": self.hsv_history,
            **({"rank_stability": self.rank_stability} if self.rank_stability is not None else {}),
            "config": self.config.to_dict(),
        }
