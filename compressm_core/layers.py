"""Framework-free pieces of in-training layer reduction, shared by compressm_torch and compressm_jax.

An adapter reads a layer as a ``DiagonalStateSpace`` (its own arrays), and everything from
there to the smaller diagonal system happens here: which map is balanced (complex or real
output), which balanced states are kept (largest, or the ablations), the truncation and
the re-diagonalisation, and what is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np

from . import _array as _a
from .balancing import Energy, balanced_truncation, rank_for_energy
from .diagonal import real_output_system, to_diagonal
from .gramians import gramian_factors
from .schedule import (
    ReductionSchedule,
    ScheduleState,
    after_cut,
    after_judgement,
    certificate_holds,
    discarded_energy,
    layer_energy,
    plan_ranks,
    record_original_energy,
    remaining_budget,
    should_roll_back,
)
from .systems import DiagonalStateSpace

Gramians = Literal["complex", "real_output"]
Selection = Literal["largest", "smallest", "random"]

Array = Any


@dataclass(frozen=True)
class LayerReduction:
    """What happened to one layer: its name, dims, HSVs (before) and the H-inf error bound.

    ``error_bound=None`` means no bound: time-limited truncations (a ``horizon``) have no
    a-priori bound, and selective layers reduced by index selection, which record their energy
    spectrum (``energy_spectrum``) as ``hsv`` and the state indices they kept (``kept``), have
    none for a time-varying layer on unseen inputs.

    ``poles_moved_in``: how many of the new layer's poles a time-limited truncation put outside
    the layer's slowest pole and ``reduce_layer_system`` moved in to it, from a largest modulus
    of ``moved_from_modulus`` to ``moved_to_modulus`` (both None when none moved).
    """

    name: str
    old_dim: int
    new_dim: int
    hsv: Array
    error_bound: float | None
    kept: tuple[int, ...] | None = None
    poles_moved_in: int = 0
    moved_from_modulus: float | None = None
    moved_to_modulus: float | None = None

    def moved_poles(self) -> dict[str, Any]:
        """The three pole-move fields by name, as events and metrics write them."""
        return {"poles_moved_in": self.poles_moved_in, "moved_from_modulus": self.moved_from_modulus,
                "moved_to_modulus": self.moved_to_modulus}


@dataclass(frozen=True)
class CompressionEvent:
    """One cut: when, what changed, and the metric just before it and just after it (before
    any recovery training; a cut can cost many points for a moment)."""

    step: int
    reductions: tuple[LayerReduction, ...]
    metric_before: float
    metric_after: float
    #: A cut is never undone when it is made; a later ``Judgement`` may undo it.
    rolled_back: ClassVar[bool] = False


@dataclass(frozen=True)
class Judgement:
    """The safety net's verdict on the cut made at ``cut_step`` (``reductions``), given at
    ``step`` after recovery training: the metric before the cut, the metric after the
    recovery training (``metric_after``), and whether the cut was undone."""

    step: int
    cut_step: int
    reductions: tuple[LayerReduction, ...]
    metric_before: float
    metric_after: float
    rolled_back: bool


Event = CompressionEvent | Judgement


def event_to_dict(event: Event) -> dict[str, Any]:
    """An event as JSON-able data (``event_from_dict`` reads it back)."""
    reductions = [
        {
            "name": r.name, "old_dim": r.old_dim, "new_dim": r.new_dim,
            "hsv": [float(v) for v in np.asarray(r.hsv).tolist()],
            "error_bound": r.error_bound, "kept": None if r.kept is None else list(r.kept),
            **r.moved_poles(),
        }
        for r in event.reductions
    ]
    if isinstance(event, Judgement):
        return {"kind": "judgement", "step": event.step, "cut_step": event.cut_step,
                "reductions": reductions, "metric_before": event.metric_before,
                "metric_after": event.metric_after, "rolled_back": event.rolled_back}
    return {"kind": "cut", "step": event.step, "reductions": reductions,
            "metric_before": event.metric_before, "metric_after": event.metric_after}


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """The event ``event_to_dict`` wrote; a ValueError says what is malformed. Events written
    before the pole-move fields existed read as cuts that moved no poles."""
    try:
        reductions = tuple(
            LayerReduction(
                str(r["name"]), int(r["old_dim"]), int(r["new_dim"]), np.asarray(r["hsv"], dtype=np.float64),
                _optional_float(r["error_bound"]),
                None if r["kept"] is None else tuple(int(i) for i in r["kept"]),
                poles_moved_in=int(r.get("poles_moved_in", 0)),
                moved_from_modulus=_optional_float(r.get("moved_from_modulus")),
                moved_to_modulus=_optional_float(r.get("moved_to_modulus")),
            )
            for r in data["reductions"]
        )
        if data["kind"] == "judgement":
            return Judgement(int(data["step"]), int(data["cut_step"]), reductions, float(data["metric_before"]),
                             float(data["metric_after"]), bool(data["rolled_back"]))
        if data["kind"] == "cut":
            return CompressionEvent(int(data["step"]), reductions, float(data["metric_before"]), float(data["metric_after"]))
    except (KeyError, TypeError, ValueError) as error:
        msg = f"malformed compressor event {data!r}: {error!r}"
        raise ValueError(msg) from None
    msg = f"compressor event kind must be 'cut' or 'judgement', got {data.get('kind')!r}"
    raise ValueError(msg)


def kept_cuts(events: Sequence[Event]) -> list[CompressionEvent]:
    """The cuts of ``events`` that no judgement rolled back (pending ones included)."""
    undone = {e.cut_step for e in events if isinstance(e, Judgement) and e.rolled_back}
    return [e for e in events if isinstance(e, CompressionEvent) and e.step not in undone]


def combined_error_bounds(events: Sequence[Event]) -> dict[str, float]:
    """Per layer, the sum of the H-inf bounds ``2 * sum(discarded sigma)`` of its kept cuts.

    It bounds the sum over cuts of ``||G_before - G_after||_Hinf``, each the change one cut
    made to the layer's map at the moment of that cut; with no training between the cuts
    this bounds ``||G_original - G_final||_Hinf`` (triangle inequality). Cuts without a bound
    (selective layers, time-limited truncations) are left out, and so are layers with none.
    """
    bounds: dict[str, float] = {}
    for event in kept_cuts(events):
        for r in event.reductions:
            if r.error_bound is not None:
                bounds[r.name] = bounds.get(r.name, 0.0) + r.error_bound
    return bounds


def factor_product(system: DiagonalStateSpace, *, horizon: int | None = None) -> Array:
    """``M = Lq^H Lp`` (..., n, n) of ``system``'s Gramian factors (over ``horizon`` steps, None:
    infinite): its singular values are the HSVs, and ``||M' - M||_2`` bounds how far any HSV
    moves between two systems (Weyl)."""
    xp = system.xp
    Lp, Lq = gramian_factors(system, horizon=horizon)
    return _a.mH(Lq, xp) @ Lp


def product_movements(history: Sequence[np.ndarray], product: np.ndarray) -> list[float]:
    """``||product - M_j||_2`` (spectral norm: the tightest Weyl bound) for every remembered
    product ``M_j`` of the same shape."""
    return [float(np.linalg.norm(product - old, ord=2)) for old in history if old.shape == product.shape]


def remember_product(history: Sequence[np.ndarray], product: np.ndarray, count: int) -> list[np.ndarray]:
    """The last ``count`` products of ``product``'s shape, ``product`` last."""
    same = [old for old in history if old.shape == product.shape]
    return [*same, product][-count:]


def products_to_json(memory: Mapping[str, Sequence[np.ndarray]]) -> dict[str, list]:
    """Certificate memory (layer -> complex (n, n) products) as JSON: [real rows, imag rows]."""
    return {
        name: [[np.real(m).tolist(), np.imag(m).tolist()] for m in products]
        for name, products in memory.items()
    }


def products_from_json(data: Mapping[str, Any]) -> dict[str, list[np.ndarray]]:
    """The certificate memory ``products_to_json`` wrote."""
    return {
        name: [np.asarray(re, dtype=np.float64) + 1j * np.asarray(im, dtype=np.float64) for re, im in products]
        for name, products in data.items()
    }


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


class ReducedLayerSystem(NamedTuple):
    """What ``reduce_layer_system`` returns: the diagonal system for the smaller layer, the HSVs
    (before), the H-inf error bound (None: none), and the poles moved in (``LayerReduction``'s
    ``poles_moved_in``, ``moved_from_modulus`` and ``moved_to_modulus``)."""

    system: DiagonalStateSpace
    hsv: Array
    error_bound: float | None
    poles_moved_in: int = 0
    moved_from_modulus: float | None = None
    moved_to_modulus: float | None = None

    def record(self, name: str, old_dim: int, new_dim: int) -> LayerReduction:
        """The ``LayerReduction`` of layer ``name``, from ``old_dim`` to ``new_dim`` states."""
        return LayerReduction(
            name, old_dim, new_dim, self.hsv, self.error_bound,
            poles_moved_in=self.poles_moved_in, moved_from_modulus=self.moved_from_modulus,
            moved_to_modulus=self.moved_to_modulus,
        )


def reduce_layer_system(
    name: str,
    system: DiagonalStateSpace,
    rank: int,
    *,
    gramians: Gramians = "complex",
    real_output: bool = True,
    selection: Selection = "largest",
    rng: np.random.Generator | None = None,
    horizon: int | None = None,
) -> ReducedLayerSystem:
    """Balanced truncation of a layer's system to ``rank`` balanced states, re-diagonalised.

    Returns the diagonal system for the smaller layer, the HSVs (before) and the H-inf
    error bound. With ``gramians="real_output"`` the rank counts real states (of 2n) and
    each conjugate pair becomes one complex state. Errors name the layer.

    With a ``horizon`` the truncation is time-limited (the Gramians over that many steps, see
    ``compressm_core.balanced_truncation``): it has no a-priori bound (None) and does not
    preserve stability, so a reduced pole slower than the layer's slowest pole (in random
    64-state LRU-like layers only when half the states or more were kept; in small layers also
    at lower ranks) is moved in to that pole's modulus, keeping its
    phase (over the horizon this changed the response less than an infinite-horizon
    truncation to the same rank in 11 of 14 cases at or near the unit circle). How many moved
    (counted in the new layer's states), and from what largest modulus to which, is returned.
    """
    analysed = analysed_system(system, gramians, real_output=real_output)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 < rank < analysed.n:
        msg = f"layer {name}: `rank` must be an integer in [1, {analysed.n - 1}], got {rank!r}"
        raise ValueError(msg)
    keep = kept_states(
        rank, analysed.n, selection, rng if rng is not None else np.random.default_rng(0)
    )
    try:
        reduction = balanced_truncation(analysed, keep=keep, horizon=horizon)
        diagonal = to_diagonal(reduction.system, real_output=gramians == "real_output")
    except ValueError as error:
        msg = f"layer {name}: {error}"
        raise ValueError(msg) from None
    if horizon is None:
        return ReducedLayerSystem(diagonal, reduction.hsv, float(reduction.error_bound))
    xp = system.xp
    limit = xp.max(xp.abs(system.poles))
    radius = xp.abs(diagonal.poles)
    moved = int(xp.sum(xp.astype(radius > limit, xp.int64)))
    if moved == 0:
        return ReducedLayerSystem(diagonal, reduction.hsv, None)
    return ReducedLayerSystem(
        within_modulus(diagonal, limit), reduction.hsv, None, moved, float(xp.max(radius)), float(limit)
    )


def within_modulus(system: DiagonalStateSpace, modulus: Array) -> DiagonalStateSpace:
    """``system`` with every pole of modulus above ``modulus`` moved in to it, phase kept."""
    xp = system.xp
    radius = xp.abs(system.poles)
    scale = xp.where(radius > modulus, modulus / radius, xp.ones_like(radius))
    poles = system.poles * xp.astype(scale, system.poles.dtype)
    return DiagonalStateSpace(poles, system.B, system.C, system.D)


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
    """The layers ``schedule`` reduces now, with their new ranks (in HSV units), from their HSVs
    (per-check rules only: no run budget, no certificate; see ``plan_check``)."""
    names = list(hsvs)
    current = [len(hsvs[name]) for name in names]
    planned = plan_ranks(schedule, [[float(v) for v in hsvs[name]] for name in names], current)
    return {name: new for name, new, old in zip(names, planned, current, strict=True) if new < old}


def plan_check(
    schedule: ReductionSchedule,
    state: ScheduleState,
    hsvs: Mapping[str, Sequence[float]],
    movements: Mapping[str, Sequence[float]] | None = None,
) -> tuple[dict[str, int], ScheduleState]:
    """The layers to cut at a check, with their new ranks, and the state with the layers'
    original energies recorded (``budget="run"``).

    The rank rule is ``plan_ranks`` (with each layer's remaining run budget under
    ``budget="run"``); under ``timing="certified"`` only layers whose ``certificate_holds``
    with their ``movements`` (``||M_now - M_j||`` over earlier checks) are cut.
    """
    names = list(hsvs)
    values = {name: [float(v) for v in hsvs[name]] for name in names}
    state = record_original_energy(
        schedule, state, {name: layer_energy(schedule, values[name]) for name in names}
    )
    allowed = (
        [remaining_budget(schedule, state, name) for name in names] if schedule.budget == "run" else None
    )
    current = [len(values[name]) for name in names]
    planned = plan_ranks(schedule, [values[name] for name in names], current, allowed_discard=allowed)
    ranks = {name: new for name, new, old in zip(names, planned, current, strict=True) if new < old}
    if schedule.timing == "certified":
        moved = movements or {}
        ranks = {
            name: rank for name, rank in ranks.items()
            if certificate_holds(schedule, values[name], rank, moved.get(name, ()))
        }
    return ranks, state


def discarded_energies(
    schedule: ReductionSchedule, hsvs: Mapping[str, Sequence[float]], ranks: Mapping[str, int]
) -> dict[str, float]:
    """The energy each layer of ``ranks`` discards when cut to its rank (``discarded_energy``)."""
    return {
        name: discarded_energy(schedule, [float(v) for v in hsvs[name]], rank)
        for name, rank in ranks.items()
    }


Memory = dict[str, list[np.ndarray]]


def plan_certified(
    schedule: ReductionSchedule, state: ScheduleState, memory: Memory, products: Mapping[str, np.ndarray]
) -> tuple[dict[str, int], ScheduleState, Memory]:
    """``plan_check`` under certified timing from the layers' factor ``products`` (complex
    (n, n); their singular values are the HSVs), with the certificate's ``memory`` (the last
    ``certify_over`` products per layer) before and after this check."""
    hsvs = {name: np.linalg.svd(m, compute_uv=False).tolist() for name, m in products.items()}
    moved = {name: product_movements(memory.get(name, []), m) for name, m in products.items()}
    ranks, state = plan_check(schedule, state, hsvs, moved)
    count = schedule.certify_over
    memory = {name: remember_product(memory.get(name, []), m, count) for name, m in products.items()}
    return ranks, state, memory


def record_cut(
    schedule: ReductionSchedule,
    state: ScheduleState,
    memory: Memory,
    step: int,
    reductions: Sequence[LayerReduction],
    ranks: Mapping[str, int],
    metric_before: float,
    metric_after: float,
) -> tuple[ScheduleState, Memory, CompressionEvent]:
    """A cut at ``step`` to ``ranks`` (HSV units): the state after it (``after_cut``, with the
    energy each layer discarded), the memory without the cut layers (their order changed)
    and its event."""
    hsvs = {r.name: np.asarray(r.hsv).tolist() for r in reductions}
    discarded = discarded_energies(schedule, hsvs, ranks)
    state = after_cut(schedule, state, step, metric_before=metric_before, discarded=discarded)
    memory = {name: m for name, m in memory.items() if name not in ranks}
    return state, memory, CompressionEvent(step, tuple(reductions), metric_before, metric_after)


def record_judgement(
    schedule: ReductionSchedule, state: ScheduleState, events: Sequence[Event], step: int, metric_recovered: float
) -> tuple[ScheduleState, Judgement]:
    """The safety net's verdict at ``step`` on the pending cut (``should_roll_back`` against the
    metric before it): the state after it and its event."""
    pending = state.pending
    if pending is None:
        msg = "no cut awaits judgement"
        raise ValueError(msg)
    rolled_back = should_roll_back(schedule, pending.metric_before, metric_recovered)
    cut = next(e for e in reversed(events) if isinstance(e, CompressionEvent) and e.step == pending.cut_step)
    judgement = Judgement(step, pending.cut_step, cut.reductions, pending.metric_before, metric_recovered, rolled_back)
    return after_judgement(schedule, state, rolled_back=rolled_back), judgement


def compressor_state(state: ScheduleState, events: Sequence[Event], memory: Memory) -> dict[str, Any]:
    """A compressor's progress as JSON-able data: schedule state (with the pending judgement's
    metadata), events and the certificate's memory (``read_compressor_state`` reads it)."""
    return {
        "state": state.to_dict(),
        "events": [event_to_dict(event) for event in events],
        "products": products_to_json(memory),
    }


def read_compressor_state(
    data: Mapping[str, Any], *, has_checkpoint: bool
) -> tuple[ScheduleState, list[Event], Memory]:
    """What ``compressor_state`` wrote; ValueError if it is malformed, or if a pending
    judgement and the checkpoint of its cut (``has_checkpoint``) do not come together."""
    if not isinstance(data, Mapping) or set(data) != {"state", "events", "products"}:
        msg = f"a compressor state needs exactly the keys ['events', 'products', 'state'], got {data!r}"
        raise ValueError(msg)
    state = ScheduleState.from_dict(data["state"])
    events = [event_from_dict(event) for event in data["events"]]
    if (state.pending is not None) != has_checkpoint:
        msg = (
            "a compressor state with a pending judgement needs the checkpoint of its cut "
            "(`pending_model` and its optimizer state), and one without needs none"
        )
        raise ValueError(msg)
    return state, events, products_from_json(data["products"])
