"""Post-training balanced truncation of a trained model (no retraining): the `truncate`,
`truncate_dims` and `hnn` arms of ``compressm compare``. Checkpoints of either backend load here."""

from __future__ import annotations

import time
from typing import Any

from torch import nn

import compressm_torch as ct

from ..tasks import SequenceDataset
from .checkpoint_torch import load_model
from .torch_trainer import evaluate


def truncate(
    model: nn.Module,
    config: dict[str, Any],
    *,
    tau: float | None = None,
    dims: list[int] | None = None,
    horizon: int | None = None,
) -> ct.Compressed:
    """``compressm_torch.compress`` of ``model`` to tolerance ``tau`` (with the run's energy) or
    to per-layer ``dims`` (layers already at or below their dim are kept), with the run's
    Gramians over ``horizon`` steps (the run's, resolved; None: infinite); ``config`` is the
    run's config as a dict."""
    if (tau is None) == (dims is None):
        msg = f"give exactly one of `tau` or `dims`, got tau={tau}, dims={dims}"
        raise ValueError(msg)
    if tau is not None:
        return ct.compress(model, tau=tau, energy=config["energy"], gramians=config["gramians"], horizon=horizon)
    if config["gramians"] != "complex":
        msg = f"truncation to given `dims` needs gramians='complex' (one HSV per state), got {config['gramians']!r}"
        raise ValueError(msg)
    layers = ct.reducible_layers(model)
    if len(dims) != len(layers):
        msg = f"`dims` must hold one dim per SSM layer ({len(layers)}), got {dims}"
        raise ValueError(msg)
    ranks = {name: d for (name, layer), d in zip(layers, dims, strict=True) if d < layer.state_dim}
    return ct.compress(model, ranks=ranks, gramians="complex", horizon=horizon)


def truncated_run(
    checkpoint: str,
    source: dict[str, Any],
    data: SequenceDataset,
    *,
    tau: float | None = None,
    dims: list[int] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Truncate the model at ``checkpoint`` (see ``truncate``) and evaluate it on the test split.

    ``source`` is the trained run's metrics; its Gramians' horizon is the run's (metrics of runs
    from before the horizon existed have none: infinite, as they used). The result's wall-clock
    is the training's plus the truncation's; it keeps the test metric before truncation, the
    error bounds (None: time-limited truncation has none) and the poles a time-limited
    truncation moved in (``moved_poles``, see ``compressm_core.layers.LayerReduction``).
    """
    model = load_model(checkpoint)
    horizon = source.get("horizon")
    start = time.perf_counter()
    compressed = truncate(model, source["config"], tau=tau, dims=dims, horizon=horizon)
    seconds = time.perf_counter() - start
    metric = next(key for key in source if key.startswith("test_"))
    return compressed.model, {
        "final_state_dims": [layer.state_dim for _, layer in ct.reducible_layers(compressed.model)],
        "initial_state_dims": source["final_state_dims"],
        metric: evaluate(compressed.model, data.x_test, data.y_test, data.kind),
        f"{metric}_before_truncation": source[metric],
        "wall_clock_s": source["wall_clock_s"] + seconds,
        "truncation_s": seconds,
        "truncation": {"tau": tau, "dims": dims, "horizon": horizon},
        "error_bounds": {r.name: r.error_bound for r in compressed.reductions},
        "moved_poles": {r.name: r.moved_poles() for r in compressed.reductions},
        "hsv": {r.name: [float(v) for v in r.hsv] for r in compressed.reductions},
        "config": source["config"],
    }
