"""Presets: ``TrainConfig``s with the paper's published settings, one per task and tolerance.

``PRESETS["smnist-tau0.01"]`` etc.; ``<task>-full`` is the same model trained without
compression. Use one with ``compressm train --preset NAME --data-dir ...``; any other option
overrides the preset's value.

Where the numbers come from:

- sMNIST and sCIFAR: model, steps and tolerances from the paper (METHOD.md: sMNIST 1 LRU
  block, n=256, H=8, 200k steps, tau 0.01/0.02/0.04; sCIFAR 6 blocks, n=384, H=512, 180k
  steps, tau 0.05/0.10/0.15); batch size, learning rate, weight decay, SSM learning-rate
  factor, dropout, evaluation interval and the reduction window (checks every 2000 steps in
  the first 10% of training, tolerance on the HSV sum, rollback tolerance 0.02) from the
  authors' public configurations (``configs/paper/*.yaml`` of the CompreSSM repository).
- LRA (listops, imdb, aan, pathfinder): model, steps, batch size, optimiser settings, dropout
  and the 10% reduction window from the authors' public LRA run configurations
  (``experiment_configs/repeats/lru/<task>/reduced/*.json``), and their tolerances
  (0.02, 0.03, 0.05, 0.07, 0.10, 0.15). The paper's text gives no LRA settings. Our
  choices: a check every 2000 steps (the interval of the sMNIST/sCIFAR configurations; the
  LRA files do not show theirs) and the evaluation interval, 2.5% of training.

Differences from the authors' runs that the trainer imposes: the learning rate always
follows a cosine decay (the sMNIST configuration has none), with the warm-up of
``warmup_steps`` (the authors' warm-up length is not in their configurations; ours is the
``TrainConfig`` default, except 0 for sMNIST, which has none). LRA inputs are one-hot tokens
through the model's linear encoder, the same as the authors' embedding layer.
"""

from __future__ import annotations

from typing import Any

from .config import TrainConfig

#: Settings shared by every paper preset: the authors' reduction rule and safety net.
_SCHEDULE: dict[str, Any] = {
    "model": "lru",
    "mode": "tolerance",
    "energy": "sum",
    "reduce_every": 2000,
    "reduce_until": 0.1,
    "rollback_tolerance": 0.02,
    "selection": "largest",
    "gramians": "complex",
}

#: Per task: the settings, and the tolerances of the published runs.
_TASKS: dict[str, tuple[dict[str, Any], tuple[float, ...]]] = {
    "smnist": (
        {"n_layers": 1, "state_dim": 256, "d_model": 8, "steps": 200_000, "batch_size": 50,
         "lr": 4e-4, "weight_decay": 0.0, "ssm_lr_factor": 1.0, "warmup_steps": 0,
         "dropout": 0.1, "eval_every": 5000},
        (0.01, 0.02, 0.04),
    ),
    "scifar": (
        {"n_layers": 6, "state_dim": 384, "d_model": 512, "steps": 180_000, "batch_size": 50,
         "lr": 1e-3, "weight_decay": 0.05, "ssm_lr_factor": 0.25, "dropout": 0.1,
         "eval_every": 4500},
        (0.05, 0.10, 0.15),
    ),
    "listops": (
        {"n_layers": 6, "state_dim": 256, "d_model": 128, "steps": 80_000, "batch_size": 32,
         "lr": 1e-3, "weight_decay": 0.05, "ssm_lr_factor": 0.5, "dropout": 0.0,
         "eval_every": 2000},
        (0.02, 0.03, 0.05, 0.07, 0.10, 0.15),
    ),
    "imdb": (
        {"n_layers": 6, "state_dim": 192, "d_model": 256, "steps": 50_000, "batch_size": 32,
         "lr": 1e-3, "weight_decay": 0.05, "ssm_lr_factor": 0.1, "dropout": 0.1,
         "eval_every": 1250},
        (0.02, 0.03, 0.05, 0.07, 0.10, 0.15),
    ),
    "aan": (
        {"n_layers": 6, "state_dim": 256, "d_model": 128, "steps": 100_000, "batch_size": 64,
         "lr": 1e-3, "weight_decay": 0.05, "ssm_lr_factor": 0.5, "dropout": 0.1,
         "eval_every": 2500},
        (0.02, 0.03, 0.05, 0.07, 0.10, 0.15),
    ),
    "pathfinder": (
        {"n_layers": 6, "state_dim": 256, "d_model": 192, "steps": 500_000, "batch_size": 64,
         "lr": 1e-3, "weight_decay": 0.05, "ssm_lr_factor": 0.25, "dropout": 0.0,
         "eval_every": 12_500},
        (0.02, 0.03, 0.05, 0.07, 0.10, 0.15),
    ),
}


def _presets() -> dict[str, TrainConfig]:
    presets = {}
    for task, (settings, taus) in _TASKS.items():
        base = TrainConfig(task=task, tau=None, **_SCHEDULE, **settings)
        presets[f"{task}-full"] = base
        presets.update({f"{task}-tau{tau:g}": base.replace(tau=tau) for tau in taus})
    return presets


PRESETS: dict[str, TrainConfig] = _presets()


def preset(name: str) -> TrainConfig:
    """The preset ``name`` (a key of ``PRESETS``, e.g. "smnist-tau0.01" or "scifar-full").

    >>> config = preset("smnist-tau0.01")
    >>> (config.task, config.n_layers, config.state_dim, config.d_model, config.steps, config.tau)
    ('smnist', 1, 256, 8, 200000, 0.01)
    """
    if name not in PRESETS:
        raise ValueError(f"`preset` {name!r} is unknown; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
