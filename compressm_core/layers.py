"""Framework-free pieces of in-training layer reduction, shared by compressm_torch and compressm_jax.

An adapter reads a layer as a ``DiagonalStateSpace`` (its own arrays), and everything from
there to the smaller diagonal system happens here: which map is balanced (complex or real
output), which balanced states are kept (largest, or the ablations), the truncation and
the re-diagonalisation, and what is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .balancing import Energy, balanced_truncation, rank_for_energy
from .diagonal import real_output_system, to_diagonal
from .schedule import ReductionSchedule, plan_ranks
from .systems import DiagonalStateSpace

Gramians = Literal["complex", "real_output"]
Selection = Literal["largest", "smallest", "random"]

Array = Any


@dataclass(frozen=True)
class LayerReduction:
    """What happened to one layer: its name, dims, HSVs (before) and the H-inf error bound.

    Selective layers reduced by index selection record their energy spectrum
    (``energy_spectrum``) as ``hsv`` and no bound (``error_bound=None``): none holds for
    a time-varying layer on unseen inputs.
    """

    name: str
    old_dim: int
    new_dim: int
    hsv: Array
    error_bound: float | None


@dataclass(frozen=True)
class CompressionEvent:
    """One reduction attempt: when, what changed, the metric around it, and whether it was undone."""

    step: int
    reductions: tuple[LayerReduction, ...]
    metric_before: float
    metric_after: float
    rolled_back: bool


def analysed_system(
    system: DiagonalStateSpace, gramians: Gramians, *, real_output: bool
) -> DiagonalStateSpace:
    """The system whose Gramians decide the reduction of a layer with this ``system``.

    ``"complex"``: ``u -> C x`` (the CompreSSM authors' choice). ``"real_output"``: the map
    ``u -> Re(C x)`` that layers with ``real_output`` compute, of order 2n.
    """
    if gramians not in ("complex", "real_output"):
        msg = f"`gramians` {gramians!r} is unknown; choose 'complex' or 'real_output'"
        raise ValueError(msg)
    if gramians == "complex":
        return system
    if not real_output:
        msg = "`gramians='real_output'` needs layers that output Re(C x); this one outputs C x"
        raise ValueError(msg)
    return real_output_system(system)


def kept_states(rank: int, n: int, selection: Selection, rng: np.random.Generator) -> list[int]:
    """Indices of the balanced states to keep: the ``rank`` largest, smallest, or a random set."""
    if selection == "largest":
        return list(range(rank))
    if selection == "smallest":
        return list(range(n - rank, n))
    if selection == "random":
        return sorted(int(i) for i in rng.permutation(n)[:rank])
    msg = f"`selection` {selection!r} is unknown; choose 'largest', 'smallest' or 'random'"
    raise ValueError(msg)


def reduce_layer_system(
    name: str,
    system: DiagonalStateSpace,
    rank: int,
    *,
    gramians: Gramians = "complex",
    real_output: bool = True,
    selection: Selection = "largest",
    rng: np.random.Generator | None = None,
) -> tuple[DiagonalStateSpace, Array, float]:
    """Balanced truncation of a layer's system to ``rank`` balanced states, re-diagonalised.

    Returns the diagonal system for the smaller layer, the HSVs (before) and the H-inf
    error bound. With ``gramians="real_output"`` the rank counts real states (of 2n) and
    each conjugate pair becomes one complex state. Errors name the layer.
    """
    analysed = analysed_system(system, gramians, real_output=real_output)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 < rank < analysed.n:
        msg = f"layer {name}: `rank` must be an integer in [1, {analysed.n - 1}], got {rank!r}"
        raise ValueError(msg)
    keep = kept_states(
        rank, analysed.n, selection, rng if rng is not None else np.random.default_rng(0)
    )
    try:
        reduction = balanced_truncation(analysed, keep=keep)
        diagonal = to_diagonal(reduction.system, real_output=gramians == "real_output")
    except ValueError as error:
        msg = f"layer {name}: {error}"
        raise ValueError(msg) from None
    return diagonal, reduction.hsv, float(reduction.error_bound)


def energy_spectrum(energy: Sequence[float]) -> np.ndarray:
    """``sqrt`` of a selective layer's state energies (``compressm_core.ltv.state_energy``),
    descending: its "diagonal HSVs", which the schedule reads like HSVs (with
    ``energy="squared"`` the tolerance counts the energies themselves)."""
    return np.sqrt(np.sort(np.asarray(energy, dtype=np.float64))[::-1])


def selected_states(
    name: str,
    energy: Sequence[float],
    rank: int,
    *,
    selection: Selection = "largest",
    rng: np.random.Generator | None = None,
) -> list[int]:
    """The state indices a selective layer keeps: ``rank`` of them by descending
    ``energy`` (n,), the ``selection`` ("largest", or the ablations "smallest", "random")
    taken in that order. Errors name the layer."""
    order = np.argsort(-np.asarray(energy, dtype=np.float64), kind="stable")
    n = len(order)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 < rank < n:
        msg = f"layer {name}: `rank` must be an integer in [1, {n - 1}], got {rank!r}"
        raise ValueError(msg)
    rng = rng if rng is not None else np.random.default_rng(0)
    return [int(order[i]) for i in kept_states(rank, n, selection, rng)]


def require_calibration(selective: Sequence[str], calibration: Any) -> None:
    """ValueError naming the ``selective`` layers when they exist and ``calibration`` is None."""
    if selective and calibration is None:
        msg = (
            f"the model has selective layers {list(selective)}, whose Gramians depend on their "
            "inputs: pass `calibration`, a batch of input sequences (batch, L, d_input)"
        )
        raise ValueError(msg)


def ranks_for_tolerance(hsvs: Mapping[str, Array], tau: float, energy: Energy) -> dict[str, int]:
    """The layers ``tau`` shrinks, with their new ranks: the smallest rank holding ``1 - tau``
    of each layer's HSV energy (``rank_for_energy``), where it is below the current size."""
    ranks = {name: int(rank_for_energy(hsv, tau, energy=energy)) for name, hsv in hsvs.items()}
    return {name: r for name, r in ranks.items() if r < hsvs[name].shape[-1]}


def check_layer_names(ranks: Mapping[str, int], known: Sequence[str]) -> None:
    """ValueError when ``ranks`` names a layer that is not in ``known``."""
    unknown = sorted(set(ranks) - set(known))
    if unknown:
        msg = f"`ranks` names unknown layers {unknown}; the SSM layers are {sorted(known)}"
        raise ValueError(msg)


def planned_ranks(
    schedule: ReductionSchedule, hsvs: Mapping[str, Sequence[float]]
) -> dict[str, int]:
    """The layers ``schedule`` reduces now, with their new ranks (in HSV units), from their HSVs."""
    names = list(hsvs)
    current = [len(hsvs[name]) for name in names]
    planned = plan_ranks(schedule, [[float(v) for v in hsvs[name]] for name in names], current)
    return {name: new for name, new, old in zip(names, planned, current, strict=True) if new < old}
