"""Rank stability evidence: HSVs logged during training, and the Weyl certificate of the kept set.

METHOD.md (Theory): Weyl's inequality for singular values bounds how far every Hankel singular
value moves between two snapshots of a layer by ``||M' - M||_2``, where ``M = Lq^H Lp`` is the
product of its Gramian factors (what ``compressm_core.weyl_bound`` measures). If at step ``s``
the gap ``sigma_r - sigma_(r+1)`` exceeds twice the largest such movement from ``s`` to every
later snapshot, the r largest states at ``s`` provably stay the r largest at every later
snapshot (``compressm_core.ranking_is_stable``): a reduction to rank r at step ``s`` would have
kept the same states as one made later.

- ``StabilityLog`` records ``M`` of every layer every ``every`` steps, at the last step, and
  on both sides of each reduction (memory: snapshots x layers x n^2 x 16 bytes).
- ``certify_ranking`` certifies one layer's snapshots at one order.
- ``StabilityLog.report`` does it for each layer and each stretch of constant order, with the
  rank that ended the stretch: the rank the reduction kept, and for the last stretch the
  rank the energy rule gives on the final HSVs (tolerance mode; none in a run without
  compression). The result goes into metrics.json as "rank_stability".
- ``plot_rank_stability`` draws HSV trajectories with the certified step marked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import compressm_core as cc
from compressm_core.layers import analysed_system, planned_ranks
from compressm_core.layers import factor_product as system_factor_product
from compressm_core.schedule import ReductionSchedule

from .outputs import atomic_path

NORMS = {"frobenius": "fro", "spectral": 2}
_CHUNK = 16  # snapshots whose differences are formed at once
_PAIR_COLOURS = [("tab:blue", "tab:orange"), ("tab:purple", "tab:red"), ("tab:cyan", "tab:brown")]


def _to_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor
        array = array.detach().cpu()
    return np.asarray(array)


def factor_product(layer: Any, gramians: str = "complex", horizon: int | None = None) -> np.ndarray:
    """``M = Lq^H Lp`` (n, n), complex128, of a ``ReducibleSSM`` layer's analysed system (Gramians
    over ``horizon`` steps; None: infinite): its singular values are the layer's HSVs, and
    differences of ``M`` bound their movement."""
    system = layer.ssm_system()
    xp = system.xp
    double = cc.DiagonalStateSpace(
        *(xp.astype(a, xp.complex128) for a in (system.poles, system.B, system.C))
    )
    analysed = analysed_system(double, gramians, real_output=layer.real_output)
    return _to_numpy(system_factor_product(analysed, horizon=horizon)).astype(np.complex128)


def change_bounds(products: np.ndarray, *, norm: str = "frobenius") -> np.ndarray:
    """bound (K,): ``bound[k] = max_(j > k) ||M_j - M_k||`` for products (K, n, n); NaN at k = K-1.

    The Frobenius norm (default) is an upper bound of the spectral norm that needs no SVD.
    """
    if norm not in NORMS:
        raise ValueError(f"`norm` {norm!r} is unknown; choose one of: {', '.join(NORMS)}")
    bound = np.full(len(products), np.nan)
    for k in range(len(products) - 1):
        bound[k] = max(
            np.linalg.norm(
                products[j : j + _CHUNK] - products[k], ord=NORMS[norm], axis=(-2, -1)
            ).max()
            for j in range(k + 1, len(products), _CHUNK)
        )
    return bound


@dataclass(frozen=True)
class RankCertificate:
    """Certification of the top-``rank`` set of one layer over K snapshots of one order.

    steps (K,); hsv (K, n) descending; gap (K,) = hsv[:, rank-1] - hsv[:, rank]; bound (K,)
    from ``change_bounds`` (NaN at the last snapshot, which has no later change); certified
    (K,) = gap > 2 bound (False at the last snapshot); certified_step: the first certified
    step, or None.
    """

    rank: int
    steps: np.ndarray
    hsv: np.ndarray
    gap: np.ndarray
    bound: np.ndarray
    certified: np.ndarray
    certified_step: int | None


def _check_snapshots(steps: Sequence[int], products: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    steps, products = np.asarray(steps), np.asarray(products)
    if products.ndim != 3 or products.shape[1] != products.shape[2] or not len(products):
        raise ValueError(f"`products` must be (K, n, n) with K >= 1, got shape {products.shape}")
    if steps.shape != (len(products),) or np.any(np.diff(steps) < 0):
        raise ValueError(
            f"`steps` must be {len(products)} non-decreasing steps, got {steps.tolist()}"
        )
    return steps, products


def certify_ranking(
    steps: Sequence[int], products: np.ndarray, rank: int, *, norm: str = "frobenius"
) -> RankCertificate:
    """From which step the top-``rank`` HSVs of one layer are certified to stay on top.

    ``products`` (K, n, n) are the layer's factor products ``Lq^H Lp`` at ``steps`` (K,),
    all of one order n. Step k is certified when ``ranking_is_stable(hsv_k, bound_k, rank)``
    holds, ``bound_k`` being the largest change of ``M`` from step k to any later snapshot.

    >>> M = np.stack([np.diag([3.0, 1.0]), np.diag([3.2, 1.1]), np.diag([3.1, 1.0])])
    >>> certify_ranking([0, 10, 20], M, 1).certified_step
    0
    """
    steps, products = _check_snapshots(steps, products)
    hsv = np.linalg.svd(products, compute_uv=False)
    bound = change_bounds(products, norm=norm)
    certified = np.zeros(len(steps), dtype=bool)
    certified[:-1] = np.asarray(cc.ranking_is_stable(hsv[:-1], bound[:-1], rank))
    first = int(steps[np.argmax(certified)]) if certified.any() else None
    gap = hsv[:, rank - 1] - hsv[:, rank]
    return RankCertificate(rank, steps, hsv, gap, bound, certified, first)


def _jsonable(values: np.ndarray) -> list:
    return [None if isinstance(v, float) and np.isnan(v) else v for v in values.tolist()]


def _stretch_rank(
    name: str, hsv: np.ndarray, reduced: bool, schedule: ReductionSchedule | None
) -> tuple[int | None, str]:
    """The rank to certify for a stretch whose last HSVs are ``hsv`` (n,), and where it comes from."""
    if reduced and schedule is not None:
        rank = planned_ranks(schedule, {name: hsv}).get(name)
        return (
            (rank, "reduction")
            if rank is not None
            else (None, "no rank: the schedule plans no cut")
        )
    if not reduced and schedule is not None and schedule.mode == "tolerance":
        rank = int(cc.rank_for_energy(hsv, schedule.tau, energy=schedule.energy))
        return (
            (rank, "energy rule")
            if rank < len(hsv)
            else (None, "no rank: the energy rule keeps all")
        )
    return None, "no rank: no reduction and no tolerance"


@dataclass
class StabilityLog:
    """Factor products of every layer during a run (see the module docstring).

    ``layers(model)`` lists a model's ``(name, ReducibleSSM)`` pairs; ``gramians`` is the
    run's choice ("complex" or "real_output"), ``horizon`` its Gramians' horizon (None: infinite).
    """

    every: int
    total_steps: int
    layers: Callable[[Any], list[tuple[str, Any]]]
    gramians: str = "complex"
    horizon: int | None = None
    steps: dict[str, list[int]] = field(default_factory=dict)
    products: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _state_dims: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name in ("every", "total_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")

    def _add(self, step: int, model: Any, *, new_orders_only: bool = False) -> None:
        for name, layer in self.layers(model):
            if new_orders_only and self._state_dims.get(name) == layer.state_dim:
                continue
            self._state_dims[name] = layer.state_dim
            self.steps.setdefault(name, []).append(step)
            self.products.setdefault(name, []).append(factor_product(layer, self.gramians, self.horizon))

    def observe(self, step: int, model: Any, reduced: Any = None) -> None:
        """Call after training step ``step`` (0 before training) with the model the compressor
        judged and, when it returned another one, ``reduced``: records ``model`` every
        ``every`` steps, at ``total_steps`` and before a reduction, and ``reduced`` after it."""
        if reduced is not None or step % self.every == 0 or step == self.total_steps:
            self._add(step, model)
        if reduced is not None:
            self._add(step, reduced, new_orders_only=True)

    def _stretches(self, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """(steps (K,), products (K, n, n)) of each run of snapshots of one order, in order."""
        steps, products = self.steps[name], self.products[name]
        starts = [0] + [
            i for i in range(1, len(products)) if len(products[i]) != len(products[i - 1])
        ]
        ends = [*starts[1:], len(products)]
        return [
            (np.asarray(steps[a:b]), np.stack(products[a:b]))
            for a, b in zip(starts, ends, strict=True)
        ]

    def report(
        self, schedule: ReductionSchedule | None, *, norm: str = "frobenius"
    ) -> dict[str, Any]:
        """JSON-ready certificates: {"norm", "every", "layers": {name: [stretch, ...]}}.

        Each stretch: "order", "rank" (None where there is nothing to certify), "rank_from",
        "steps", "hsv", "bound", and with a rank "gap", "certified", "certified_step".
        """
        layers = {}
        for name in self.steps:
            stretches = self._stretches(name)
            entries = []
            for i, (steps, products) in enumerate(stretches):
                last_hsv = np.linalg.svd(products[-1], compute_uv=False)
                rank, source = _stretch_rank(name, last_hsv, i + 1 < len(stretches), schedule)
                entry = {
                    "order": products.shape[1],
                    "rank": rank,
                    "rank_from": source,
                    "steps": steps.tolist(),
                }
                if rank is None:
                    hsv = np.linalg.svd(products, compute_uv=False)
                    entry.update(
                        hsv=hsv.tolist(),
                        bound=_jsonable(change_bounds(products, norm=norm)),
                        certified_step=None,
                    )
                else:
                    cert = certify_ranking(steps, products, rank, norm=norm)
                    entry.update(
                        hsv=cert.hsv.tolist(),
                        bound=_jsonable(cert.bound),
                        gap=cert.gap.tolist(),
                        certified=cert.certified.tolist(),
                        certified_step=cert.certified_step,
                    )
                entries.append(entry)
            layers[name] = entries
        return {"norm": norm, "every": self.every, "layers": layers}


def plot_rank_stability(report: dict[str, Any], path: Path) -> Path:
    """One panel per layer: every HSV over the logged steps (log scale), sigma_r and
    sigma_(r+1) highlighted, reductions dotted, the first certified step dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    fig, axes = plt.subplots(1, len(layers), figsize=(4.8 * len(layers), 3.8), squeeze=False)
    for ax, (name, stretches) in zip(axes[0], layers.items(), strict=True):
        notes = []
        for i, stretch in enumerate(stretches):
            steps, hsv, rank = (
                stretch["steps"],
                np.maximum(np.asarray(stretch["hsv"]), 1e-16),
                stretch["rank"],
            )
            ax.semilogy(steps, hsv, color="0.75", lw=0.6, marker="." if len(steps) == 1 else None)
            if rank is not None:
                span = f"steps {steps[0]}-{steps[-1]}"
                for index, colour in zip(
                    (rank - 1, rank), _PAIR_COLOURS[i % len(_PAIR_COLOURS)], strict=True
                ):
                    label = f"$\\sigma_{{{index + 1}}}$, {span}"
                    ax.semilogy(steps, hsv[:, index], color=colour, lw=1.6, label=label)
            if stretch["certified_step"] is not None:
                ax.axvline(stretch["certified_step"], color="tab:green", ls="--", lw=1.2)
                notes.append(f"top-{rank} certified from step {stretch['certified_step']}")
            elif rank is not None:
                notes.append(f"top-{rank} not certified")
            if i + 1 < len(stretches):
                ax.axvline(steps[-1], color="0.3", ls=":", lw=1.0)
        ax.set(title=f"{name}\n" + "; ".join(notes), xlabel="step", ylabel="Hankel singular value")
        ax.title.set_fontsize(8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    plt.close(fig)
    return path
