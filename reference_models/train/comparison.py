"""``compressm compare``: CompreSSM against its baselines, over seeds and tolerances, as a table
in the paper's form (test metric mean ± std, final dims, wall-clock, speed-up), paired
differences per seed, and plots.

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

Arms that need another arm (``small`` needs ``compressm``, ...) bring it along. An arm that
raises is recorded with its error and the others go on (those that need it are skipped);
each arm's outcome is written as soon as it ends, and ``resume`` reads back the arms done
before with the same settings. The tables show the test metric at the last step and at the
best validation step, and CompreSSM paired seed by seed with small-from-scratch and the full
model (see ``comparison_report``); ``sweep.png`` plots the test metric against the final
total state dim over the tolerances (``SWEEP_TAUS`` for the paper's figure).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tasks import SequenceDataset, load_task
from .comparison_report import (
    ArmResult,
    Row,
    comparison_table,
    paired_differences,
    paired_tables,
    summary,
)
from .config import ARMS, DEFAULT_ARMS, TrainConfig
from .outputs import write_json, write_text
from .plots import plot_hsv_comparison, plot_metric_over_time, plot_sweep, plot_train_loss
from .run_state import RunInterrupted, resumed_config

__all__ = ["ARMS", "DEFAULT_ARMS", "SWEEP_TAUS", "ArmOptions", "Comparison", "resolve_arms", "run_comparison"]
#: ``compare --sweep``: tolerances doubling from 0.01 to 0.32 (log-spaced), from the paper's
#: 0.01-0.15 to where most of the state is cut.
SWEEP_TAUS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32)
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

#: Run folders whose name is not the arm's.
_FOLDERS = {"hnn_untruncated": "hnn", "hnn": "hnn_truncated"}

#: ``run_and_save(config, output, *, progress, data) -> metrics``
TrainAndSave = Callable[..., dict[str, Any]]
#: An arm and its tolerance (None where it has none).
Key = tuple[str, float | None]
#: Runs an arm, writes its folder and returns its metrics; told whether an earlier run of the
#: arm was interrupted (then a trained arm continues from its checkpoint).
Action = Callable[[bool], dict[str, Any]]


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


def _check(config: TrainConfig, arms: tuple[str, ...], seeds: Sequence[int]) -> None:
    """What would make arms fail for sure, refused before anything trains."""
    torch_only = sorted({"hnn", "distill"} & set(arms))
    if torch_only and config.backend != "torch":
        msg = f"the arms {torch_only} need backend 'torch', got backend={config.backend!r}"
        raise ValueError(msg)
    if "truncate_dims" in arms and config.gramians != "complex":
        msg = f"the arm 'truncate_dims' needs gramians='complex' (one HSV per state), got gramians={config.gramians!r}"
        raise ValueError(msg)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        msg = f"`seeds` must be one or more integers, got {list(seeds)!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class Comparison:
    """What ``compare`` returns: ``table`` (comparison.md: the table and the paired
    differences) and ``summary`` (comparison.json, see ``comparison_report.summary``)."""

    table: str
    summary: dict[str, Any]

    @property
    def failures(self) -> list[dict[str, Any]]:
        """The arms that raised an error (arm, tau, seed, error type and message)."""
        return [entry for entry in self.summary["failures"] if entry["status"] == "failed"]


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
    data: SequenceDataset | None = None,
    resume: bool = False,
) -> Comparison:
    """Run ``arms`` (see the module docstring) for every seed and tolerance (``taus``, default
    ``config.tau``; ``SWEEP_TAUS`` for the paper's figure) on ``data`` (default: the config's
    task, loaded per seed) and write, unless ``write`` is False, ``output``/comparison.md,
    comparison.json, sweep.png and the comparison plots.

    Each run has its folder ``<arm>_seed<s>`` (``<arm>_tau<tau>_seed<s>`` with several taus),
    and ``arms/<folder>.json`` says, as soon as the arm ends, whether it is done or failed
    (with the error) and with which configuration; the tables are rewritten after every arm.
    An arm that raises is recorded and the others go on; arms that need it are skipped.
    With ``resume``, arms already done with the same configuration are read back, not retrained
    (a ``data`` given here is not part of the configuration: resume only with the same data).
    """
    arms = resolve_arms(arms)
    _check(config, arms, seeds)
    tolerances = _taus(config, taus, arms)
    options = options or ArmOptions()
    base = config.replace(hnn_weight=0.0, distill_weight=0.0, teacher=None)
    report = _Report(output, len(tolerances) > 1, write)
    for seed in dict.fromkeys(seeds):
        seeded = base.replace(seed=seed)
        seed_data = data if data is not None else load_task(seeded.task, seed=seed, data_dir=seeded.data_dir, **seeded.task_options())
        report.metric = "accuracy" if seed_data.kind == "classification" else "mse"
        runs = _SeedRuns(seeded, output, train_and_save, seed_data, len(tolerances) > 1, progress, write, resume, report.add)
        runs.all(arms, tolerances, options)
    return report.finish()


@dataclass
class _Report:
    """comparison.md and comparison.json, rewritten after every arm; plots at the end."""

    output: Path
    several_taus: bool
    write: bool
    metric: str = "accuracy"
    results: list[ArmResult] = field(default_factory=list)

    def rows(self) -> list[Row]:
        rows: dict[Key, Row] = {}
        for result in self.results:
            name = _LABELS[result.arm]
            label = name + (f", tau {result.tau:g}" if result.tau is not None and self.several_taus else "")
            rows.setdefault((result.arm, result.tau), Row(result.arm, result.tau, name, label)).results.append(result)
        return list(rows.values())

    def add(self, result: ArmResult) -> None:
        self.results.append(result)
        self.save()

    def save(self) -> Comparison:
        rows = self.rows()
        pairs = paired_tables(paired_differences(self.results, self.metric), self.metric)
        table = "\n\n".join(part for part in (comparison_table(rows, self.metric), pairs) if part)
        comparison = Comparison(table, summary(rows, self.results, self.metric))
        if self.write:
            self.output.mkdir(parents=True, exist_ok=True)
            write_text(self.output / "comparison.md", table + "\n")
            write_json(self.output / "comparison.json", comparison.summary)
        return comparison

    def finish(self) -> Comparison:
        comparison = self.save()
        if self.write and any(r.status == "done" for r in self.results):
            plot_sweep(comparison.summary, self.output / "sweep.png")
            first = {row.arm: row.done[0] for row in reversed(self.rows()) if row.done}  # first seed and tau
            spectra = {label: first[arm] for arm, label in (("full", "full, end"), ("hnn_untruncated", "hnn, end"), ("compressm", "compressm")) if "hsv_history" in first.get(arm, {})}
            if spectra:
                plot_hsv_comparison(spectra, self.output / "comparison_hsv_spectra.png")
            trained = {row.label: row.done for row in self.rows() if row.done and "evaluations" in row.done[0]}
            if trained:  # every seed
                plot_metric_over_time(trained, self.output / "comparison_val_metric.png")
                plot_train_loss(trained, self.output / "comparison_train_loss.png")
        return comparison


@dataclass
class _SeedRuns:
    """The runs of one seed: folders, configurations and dependencies of every arm."""

    config: TrainConfig
    output: Path
    train_and_save: TrainAndSave
    data: SequenceDataset
    several_taus: bool
    progress: bool
    write: bool
    resume: bool
    on_result: Callable[[ArmResult], None]
    results: dict[Key, ArmResult] = field(default_factory=dict)

    def folder(self, key: Key) -> Path:
        arm, tau = key
        tag = f"_tau{tau:g}" if tau is not None and self.several_taus else ""
        return self.output / f"{_FOLDERS.get(arm, arm)}{tag}_seed{self.config.seed}"

    def attempt(self, key: Key, needs: Sequence[Key], prepare: Callable[[], tuple[dict[str, Any], Action]]) -> None:
        """Unless an arm it ``needs`` is not done: ``prepare()`` the arm ``key`` (its spec, to
        recognise an earlier run, and the action that runs it and writes its folder), then,
        unless resuming finds it done before with the same spec, run it (told whether an
        earlier run of it was interrupted: it has a folder but no outcome); record the outcome."""
        arm, tau = key
        seed, folder = self.config.seed, self.folder(key)
        record = self.output / "arms" / f"{folder.name}.json"
        blocked = [self.results[need] for need in needs if self.results[need].status != "done"]
        if blocked:
            self._record(ArmResult(arm, tau, seed, "skipped", reason=f"needs {blocked[0].describe()}, which {blocked[0].status}"))
            return
        try:
            spec, action = prepare()
        except ValueError as error:  # an invalid per-arm setting fails this arm only
            spec, action = {"invalid": str(error)}, lambda interrupted, invalid=error: _raise(invalid)
        spec = json.loads(json.dumps(spec))  # as it reads back from the record
        if self.resume and _finished_before(record, folder, spec):
            self._record(ArmResult(arm, tau, seed, "done", json.loads((folder / "metrics.json").read_text())))
            return
        try:
            result = ArmResult(arm, tau, seed, "done", action(self.resume and folder.is_dir() and not record.is_file()))
        except RunInterrupted:
            raise
        except Exception as error:  # recorded with its type and message; the other arms go on
            result = ArmResult(arm, tau, seed, "failed", error={"type": type(error).__name__, "message": str(error)})
            print(f"compressm compare: {result.describe()} {result.outcome()}; the other arms go on", file=sys.stderr)
        if self.write:
            record.parent.mkdir(parents=True, exist_ok=True)
            write_json(record, {"arm": arm, "tau": tau, "seed": seed, "status": result.status, "error": result.error, "spec": spec})
        self._record(result)

    def _record(self, result: ArmResult) -> None:
        self.results[result.arm, result.tau] = result
        self.on_result(result)

    def clear(self, folder: Path) -> None:
        """Remove what an earlier failed, unfinished or differently configured run left."""
        if self.write and folder.is_dir():
            shutil.rmtree(folder)

    def train(self, key: Key, config: Callable[[], TrainConfig], needs: Sequence[Key] = ()) -> None:
        """The arm ``key`` trained with ``config()`` (built once the arms it needs are done)."""

        folder = self.folder(key)

        def prepare() -> tuple[dict[str, Any], Action]:
            arm_config = config()

            def action(interrupted: bool) -> dict[str, Any]:
                if interrupted and _checkpoint_of(folder, arm_config):
                    print(f"compressm compare: {folder.name} continues from its checkpoint", file=sys.stderr)
                    return self.train_and_save(arm_config, folder, progress=self.progress, data=self.data, label=folder.name, resume=True)
                self.clear(folder)
                return self.train_and_save(arm_config, folder, progress=self.progress, data=self.data, label=folder.name)

            return {"config": arm_config.to_dict()}, action

        self.attempt(key, needs, prepare)

    def truncated(self, key: Key, source: Key, dims_of: Key | None = None) -> None:
        """The ``source`` arm's trained model truncated at the tolerance of ``key``, or to the
        final dims of the arm ``dims_of`` where given; its metrics.json written."""
        def prepare() -> tuple[dict[str, Any], Action]:
            metrics = self.results[source].metrics
            target = {"dims": list(self.results[dims_of].metrics["final_state_dims"])} if dims_of else {"tau": key[1]}

            def action(interrupted: bool) -> dict[str, Any]:
                self.clear(self.folder(key))
                # PyTorch reads checkpoints of either backend
                from .torch_truncation import truncated_run

                _, result = truncated_run(str(self.folder(source) / "model.safetensors"), metrics, self.data, **target)
                if self.write:
                    self.folder(key).mkdir(parents=True, exist_ok=True)
                    write_json(self.folder(key) / "metrics.json", result)
                return result

            return {"truncate": source[0], "source_config": metrics["config"], **target}, action

        self.attempt(key, [source, *([dims_of] if dims_of else [])], prepare)

    def all(self, arms: tuple[str, ...], taus: tuple[float | None, ...], options: ArmOptions) -> None:
        full = ("full", None)
        uncompressed = self.config.replace(tau=None, mode="tolerance")
        self.train(full, lambda: uncompressed)
        if "hnn" in arms:
            self.train(("hnn_untruncated", None), lambda: uncompressed.replace(hnn_weight=options.hnn_weight))
        for tau in taus:
            compressing = self.config.replace(tau=tau) if tau is not None else self.config
            compressed = ("compressm", tau)
            dims = lambda c=compressed: tuple(self.results[c].metrics["final_state_dims"])  # noqa: E731
            if "compressm" in arms:
                self.train(compressed, lambda c=compressing: c)
            if "small" in arms:
                self.train(("small", tau), lambda d=dims: uncompressed.replace(state_dim=d()), [compressed])
            if "distill" in arms:
                student = lambda d=dims: uncompressed.replace(  # noqa: E731
                    state_dim=d(), distill_weight=options.distill_weight, distill_temperature=options.distill_temperature,
                    teacher=str(self.folder(full) / "model.safetensors"),
                )
                self.train(("distill", tau), student, [full, compressed])
            if "truncate" in arms:
                self.truncated(("truncate", tau), full)
            if "truncate_dims" in arms:
                self.truncated(("truncate_dims", tau), full, compressed)
            if "hnn" in arms:
                self.truncated(("hnn", tau), ("hnn_untruncated", None))
            for selection in ("smallest", "random"):
                if selection in arms:
                    self.train((selection, tau), lambda s=selection, c=compressing: c.replace(selection=s, rollback_tolerance=math.inf))


def _raise(error: Exception) -> dict[str, Any]:
    raise error


def _checkpoint_of(folder: Path, config: TrainConfig) -> bool:
    """Whether ``folder`` holds a checkpoint of a run of ``config`` to continue from."""
    try:
        previous = resumed_config(folder, config.device, config.checkpoint_every, config.tensorboard)
    except ValueError:  # none, or unreadable: start over
        return False
    return previous.to_dict() == config.to_dict()


def _finished_before(record: Path, folder: Path, spec: dict[str, Any]) -> bool:
    """Whether ``record`` says the arm in ``folder`` is done with the configuration ``spec``."""
    if not (record.is_file() and (folder / "metrics.json").is_file()):
        return False
    previous = json.loads(record.read_text())
    return previous.get("status") == "done" and previous.get("spec") == spec
