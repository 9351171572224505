"""What a training run records (framework-free): evaluations, reductions, HSV snapshots, results."""

from __future__ import annotations

import dataclasses
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
    reduction_compile_seconds: float = 0.0  # JAX: compiling for the shapes a reduction made
    wall_clock_s: float | None = None
    test_metric: float | None = None
    test_metric_at_best_val: float | None = None
    best_val_step: int | None = None
    device: str | None = None
    completed_steps: int = 0
    rank_stability: dict | None = None  # ``StabilityLog.report``, when HSVs were logged
    horizon: int | None = None  # the Gramians' horizon in steps (``config.horizon`` resolved); None: infinite

    @classmethod
    def start(cls, config: TrainConfig, kind: str, dims: list[int], horizon: int | None = None) -> RunRecord:
        return cls(config, kind, list(dims), list(dims), horizon=horizon)

    @property
    def metric_name(self) -> str:
        return "accuracy" if self.kind == "classification" else "mse"

    def hsv_snapshot(self, step: int, hsvs: dict[str, Any]) -> None:
        self.hsv_history.append({"step": step, "hsv": {name: _floats(h) for name, h in hsvs.items()}})

    @property
    def improves(self) -> Any:
        """``improves(new, old)``: whether validation metric ``new`` is better than ``old``."""
        return (lambda new, old: new > old) if self.kind == "classification" else (lambda new, old: new < old)

    def evaluation(
        self, step: int, wall_clock_s: float, val_metric: float, dims: list[int], train_loss: float | None = None
    ) -> bool:
        """Record an evaluation (``train_loss``: mean over the training batches since the last
        one); True when ``val_metric`` is the best since the last kept cut (its step becomes
        ``best_val_step``): a model from before a cut, at larger dims, never counts as the best."""
        self.current_dims = list(dims)
        self.completed_steps = step
        best = [e[f"val_{self.metric_name}"] for e in self.evaluations if e["step"] == self.best_val_step]
        self.evaluations.append(
            {"step": step, "wall_clock_s": wall_clock_s, f"val_{self.metric_name}": val_metric,
             "train_loss": train_loss, "state_dims": list(dims)}
        )
        if not best or self.improves(val_metric, best[0]):
            self.best_val_step = step
            return True
        return False

    def reduction_event(self, event: Any) -> None:
        """Record an event of either backend's ``Compressor``: a cut (``CompressionEvent``), or
        the safety net's ``Judgement`` of one; a rolled-back cut moves from ``reductions`` to
        ``rollbacks`` (with the step it was judged at) and its layers get their old dims back."""
        layer_index = {name: i for i, name in enumerate(self._layer_names([r.name for r in event.reductions]))}
        if hasattr(event, "cut_step"):
            if event.rolled_back:
                undone = [entry for entry in self.reductions if entry["step"] == event.cut_step]
                self.reductions = [entry for entry in self.reductions if entry["step"] != event.cut_step]
                self.rollbacks.extend({**entry, "judged_step": event.step, f"val_{self.metric_name}_recovered": event.metric_after}
                                      for entry in undone)
                for reduction in event.reductions:
                    self.current_dims[layer_index[reduction.name]] = reduction.old_dim
            return
        if event.reductions:
            self.hsv_snapshot(event.step, {r.name: r.hsv for r in event.reductions})
            self.best_val_step = None  # the best model is one at the new dims (the authors' rule)
        for reduction in event.reductions:
            self.reductions.append({
                "step": event.step,
                "layer": reduction.name,
                "old_dim": reduction.old_dim,
                "new_dim": reduction.new_dim,
                "error_bound": reduction.error_bound,
                **reduction.moved_poles(),
                f"val_{self.metric_name}_before": event.metric_before,
                f"val_{self.metric_name}_after": event.metric_after,
            })
            self.current_dims[layer_index[reduction.name]] = reduction.new_dim

    def _layer_names(self, names: list[str]) -> list[str]:
        snapshot = self.hsv_history[0]["hsv"] if self.hsv_history else {}
        return list(snapshot) or names

    def finish(self, wall_clock_s: float, test_metric: float, test_metric_at_best_val: float) -> None:
        """The test metric of the last model and of the best-validation one."""
        self.wall_clock_s = wall_clock_s
        self.test_metric = test_metric
        self.test_metric_at_best_val = test_metric_at_best_val

    def state(self) -> dict[str, Any]:
        """Everything recorded so far, JSON-friendly (a checkpoint's copy; see ``from_state``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "config"}

    @classmethod
    def from_state(cls, config: TrainConfig, state: dict[str, Any]) -> RunRecord:
        """The record a checkpoint holds (``state()``); ValueError naming an unknown field."""
        names = {f.name for f in dataclasses.fields(cls)} - {"config"}
        unknown = sorted(set(state) - names)
        if unknown or set(state) != names:
            msg = f"checkpoint field `record` has unknown or missing entries: {unknown or sorted(names - set(state))}"
            raise ValueError(msg)
        return cls(config=config, **state)

    def metrics(self) -> dict[str, Any]:
        """metrics.json: written at every evaluation (``completed_steps`` says how far the run
        got; the test metrics are None until it ends)."""
        return {
            "final_state_dims": list(self.current_dims),
            "initial_state_dims": list(self.initial_dims),
            f"test_{self.metric_name}": self.test_metric,
            f"test_{self.metric_name}_at_best_val": self.test_metric_at_best_val,
            "best_val_step": self.best_val_step,
            "completed_steps": self.completed_steps,
            "device": self.device,
            "wall_clock_s": self.wall_clock_s,
            "reduction_overhead_s": self.reduction_seconds,
            "reduction_compile_s": self.reduction_compile_seconds,
            "reductions": self.reductions,
            "rollbacks": self.rollbacks,
            "evaluations": self.evaluations,
            "hsv_history": self.hsv_history,
            **({"rank_stability": self.rank_stability} if self.rank_stability is not None else {}),
            "horizon": self.horizon,
            "config": self.config.to_dict(),
        }
