"""The run's log as training goes: log.csv always (one row per evaluation and per reduction,
flushed at once, so a killed run keeps it), TensorBoard scalars with ``tensorboard=True``.

log.csv columns: ``step, event, wall_clock_s, lr, train_loss, train_metric, val_metric,
state_dims, layer, old_dim, new_dim``; ``event`` is "evaluation", "reduction" (a cut), "kept" or
"rollback" (the safety net's judgement of a cut);
``state_dims`` joins the layers' dims with ";" (after the event); ``train_loss`` and ``train_metric`` are means
over the training batches since the previous evaluation.
"""

from __future__ import annotations

import csv
import importlib
from pathlib import Path
from typing import Any

COLUMNS = (
    "step", "event", "wall_clock_s", "lr", "train_loss", "train_metric", "val_metric",
    "state_dims", "layer", "old_dim", "new_dim",
)


def _summary_writer(folder: Path, purge_step: int | None) -> Any:
    """TensorBoard's SummaryWriter (PyTorch's, else tensorboardX's); ValueError naming the
    extra to install when neither is available."""
    for module in ("torch.utils.tensorboard", "tensorboardX"):
        try:
            writer = importlib.import_module(module).SummaryWriter
        except ImportError:
            continue
        return writer(log_dir=str(folder), purge_step=purge_step)
    msg = '`--tensorboard` needs TensorBoard: pip install "compressm[tensorboard]" (or tensorboardX)'
    raise ValueError(msg)


class RunLog:
    """Appends to ``folder``/log.csv (and TensorBoard events under ``folder``/tensorboard).

    ``resume_step``: continue a resumed run's log, dropping rows after that step (written
    after the checkpoint the run resumes from)."""

    def __init__(self, folder: Path, metric: str, *, tensorboard: bool = False, resume_step: int | None = None):
        self.metric = metric
        self.path = folder / "log.csv"
        self._writer = _summary_writer(folder / "tensorboard", resume_step) if tensorboard else None
        kept = self._rows_up_to(resume_step) if resume_step is not None else []
        self._file = self.path.open("w", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS)
        self._csv.writeheader()
        self._csv.writerows(kept)
        self._file.flush()

    def _rows_up_to(self, step: int) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as handle:
            return [row for row in csv.DictReader(handle) if row.get("step", "").isdigit() and int(row["step"]) <= step]

    def _write(self, row: dict[str, Any]) -> None:
        self._csv.writerow(row)
        self._file.flush()

    def evaluation(
        self, step: int, wall_clock_s: float, lr: float, train_loss: float | None,
        train_metric: float | None, val_metric: float, dims: list[int],
    ) -> None:
        """A row for the evaluation at ``step``."""
        self._write({
            "step": step, "event": "evaluation", "wall_clock_s": f"{wall_clock_s:.3f}", "lr": lr,
            "train_loss": train_loss, "train_metric": train_metric, "val_metric": val_metric,
            "state_dims": ";".join(str(d) for d in dims),
        })
        if self._writer is not None:
            scalars = {"train/loss": train_loss, f"train/batch_{self.metric}": train_metric,
                       f"val/{self.metric}": val_metric, "lr": lr}
            for name, value in scalars.items():
                if value is not None:
                    self._writer.add_scalar(name, value, step)
            for layer, dim in enumerate(dims):
                self._writer.add_scalar(f"state_dim/layer_{layer}", dim, step)
            self._writer.flush()

    def reduction(self, event: Any, dims: list[int]) -> None:
        """One row per layer of a ``CompressionEvent`` (either backend's); ``dims``: the
        layers' dims after it."""
        kind = "reduction" if not hasattr(event, "cut_step") else "rollback" if event.rolled_back else "kept"
        for reduction in event.reductions:
            self._write({
                "step": event.step, "event": kind, "state_dims": ";".join(str(d) for d in dims),
                "layer": reduction.name, "old_dim": reduction.old_dim, "new_dim": reduction.new_dim,
            })
        if self._writer is not None:
            self._writer.add_text("reductions", describe_event(event), event.step)
            self._writer.flush()

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def describe_reduction(reduction: Any) -> str:
    """"blocks.0.ssm 16 -> 9", and the poles a time-limited cut moved in to the layer's largest
    modulus, if any: "blocks.0.ssm 16 -> 9 (2 poles moved in to |lambda| = 0.9725, from up to 1.003)"."""
    change = f"{reduction.name} {reduction.old_dim} -> {reduction.new_dim}"
    moved = reduction.poles_moved_in
    if not moved:
        return change
    poles = "pole" if moved == 1 else "poles"
    return (f"{change} ({moved} {poles} moved in to |lambda| = {reduction.moved_to_modulus:.6g}, "
            f"from up to {reduction.moved_from_modulus:.6g})")


def describe_event(event: Any) -> str:
    """One line for a cut ("step 40: cut blocks.0.ssm 16 -> 9 ...", with the poles it moved in, see
    ``describe_reduction``) or a judgement of one ("step 60: cut of step 40 (blocks.0.ssm 16 -> 9)
    rolled back: val 0.61 -> 0.52")."""
    if not hasattr(event, "cut_step"):
        changes = ", ".join(describe_reduction(r) for r in event.reductions)
        return f"step {event.step}: cut {changes} (val {event.metric_before:.4g} -> {event.metric_after:.4g} right after)"
    changes = ", ".join(f"{r.name} {r.old_dim} -> {r.new_dim}" for r in event.reductions)
    verdict = "rolled back" if event.rolled_back else "kept"
    return f"step {event.step}: cut of step {event.cut_step} ({changes}) {verdict}: val {event.metric_before:.4g} -> {event.metric_after:.4g}"
