"""Run configurations and write their outputs: metrics.json, a checkpoint, plots, comparison tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .comparison import DEFAULT_ARMS, ArmOptions, Comparison, run_comparison
from .config import TrainConfig
from .config_file import write_config
from .outputs import record_failure, write_json
from .plots import plot_run
from .run_state import RunInterrupted


def _trainer(backend: str) -> Any:
    if backend == "torch":
        from . import torch_trainer

        return torch_trainer
    from . import jax_trainer

    return jax_trainer


def is_main_process(backend: str) -> bool:
    """Whether this process writes: rank 0 of a ``torchrun`` launch, JAX process 0 of a
    multi-host run, the only process otherwise."""
    if backend != "torch":
        import jax

        return jax.process_index() == 0
    from .distributed import is_main_process as torch_is_main

    return torch_is_main()


def run_and_save(
    config: TrainConfig,
    output: Path,
    *,
    progress: bool = True,
    data: Any = None,
    label: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``config`` and keep ``output`` up to date as it goes: log.csv, metrics.json (at
    every evaluation), best.safetensors, checkpoint.safetensors (see ``run_state``); at the
    end model.safetensors, config.toml and PNG plots. ``resume`` continues from the checkpoint
    in ``output``. Every file is written atomically; a run that fails leaves failure.json
    saying why next to what it wrote, or no folder if it wrote nothing. Only rank 0 of a
    ``torchrun`` launch writes; every rank returns the metrics."""
    trainer = _trainer(config.backend)
    created = not output.exists()
    if resume:
        (output / "failure.json").unlink(missing_ok=True)  # of the run this one continues
    try:
        model, record = trainer.train(config, data=data, progress=progress, label=label, output=output, resume=resume)
    except RunInterrupted:
        raise
    except Exception as error:
        if is_main_process(config.backend):
            record_failure(output, error, created=created)
        raise
    metrics = record.metrics()
    if is_main_process(config.backend):
        trainer.save_model(model, output / "model.safetensors")
        write_json(output / "metrics.json", metrics)
        write_config(config, output / "config.toml")
        plot_run(metrics, output)
    return metrics


def compare(
    config: TrainConfig,
    output: Path,
    *,
    seeds: Sequence[int] = (0,),
    arms: Sequence[str] = DEFAULT_ARMS,
    taus: Sequence[float] | None = None,
    options: ArmOptions | None = None,
    progress: bool = True,
    data: Any = None,
    resume: bool = False,
) -> Comparison:
    """Train ``arms`` (default: the full model, CompreSSM, and a model trained from scratch at
    CompreSSM's final dims) over ``seeds`` and ``taus`` (``SWEEP_TAUS`` for the paper's figure)
    with the same budget, on ``data`` (a ``SequenceDataset``; default: ``config``'s task); write
    ``output``/comparison.md, comparison.json, sweep.png and plots as each arm ends. A failing
    arm is recorded and the others go on; ``resume`` skips arms already done with the same
    configuration. Returns the table and summary (see ``comparison.run_comparison``)."""
    return run_comparison(
        config, output, run_and_save, arms=arms, taus=taus, seeds=seeds, options=options, progress=progress,
        write=is_main_process(config.backend), data=data, resume=resume,
    )
