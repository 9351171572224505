"""Benchmark: the full Hankel singular value spectrum of LRU-like diagonal systems (issue #2).

Every method runs in one process on one machine, so the ratios in the table compare like
with like. The systems are LRU-like: poles with radius uniform in [0.9, 0.999] and phase
uniform in [0, 2 pi), complex B (n x m) and C (p x n) with Gaussian entries scaled by
1/sqrt(2m) and 1/sqrt(2n).

Methods
  ours         compressm_core.hankel_singular_values(DiagonalStateSpace(poles, B, C)) on NumPy,
               torch (CPU) and JAX (CPU) arrays; on GPU arrays too when a GPU is present.
  (a)          the CompreSSM authors' algorithm: closed-form Gramians by elementwise division,
               then sqrt(|eigvals(P @ Q)|) sorted descending (NumPy).
  (b)          python-control ``control.gram`` (SLICOT sb03md) on the real 2n-state realification
               of the complex map, then sqrt(eig(Wc Wo)); each HSV appears twice, every other one
               is kept. Slow: unbatched systems with n <= --slicot-max-n only, run once.
  (c)          scipy.linalg.solve_discrete_lyapunov for both Gramians (A cast to complex: SciPy is
               silently wrong for real A with complex Q), then sqrt(eig(P Q)); n <= 1024, run once.
  sqrt-ref     float64 square-root method in SciPy: closed-form P and Q, Cholesky factors,
               svdvals(Lq^H Lp). The accuracy reference where (b) did not run.
  rank path    leading HSVs + the energy rank for energy="squared" by a dedicated core function
               (when compressm_core has one) against (a) followed by ``rank_for_energy``.

Accuracy: max_i |sigma_i - sigma_i^ref| / sigma_1^ref (maximum over a batch), against (b)
where it ran and against sqrt-ref elsewhere. Times: median of --repeats calls after one
warm-up call (one call, no warm-up, for the slow peers and for n > 1024).

Usage
  python benchmarks/hsv_benchmark.py                       # the issue's configurations
  python benchmarks/hsv_benchmark.py --skip-slicot --json results.json
  python benchmarks/hsv_benchmark.py --quick --skip-slicot # seconds; used by the smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import _timing
import numpy as np
import scipy
import scipy.linalg
from _timing import cell, fmt, has_module, measure

import compressm_core as cc

#: names under which compressm_core may offer the "leading HSVs + energy rank" path
RANK_FUNCTION_NAMES = (
    "hankel_rank",
    "leading_hankel_singular_values",
    "rank_decision",
)
RANK_TAUS = (0.05,)
RANK_SIZES = (1024,)
REPEAT_MAX_N = 1024  # configurations above this order are timed once, without warm-up
FULL_SIZES = (256, 1024, 2048)
QUICK_SIZES = (128,)  # one size + the small batch: a smoke run, JAX compiles per shape


# --- configurations and systems ------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One benchmark configuration: ``batch`` layers of order n with m inputs and p outputs."""

    n: int
    m: int
    p: int
    batch: tuple[int, ...] = ()
    label: str = ""

    @property
    def name(self) -> str:
        core = (
            f"n={self.n}, m=p={self.m}"
            if self.m == self.p
            else f"n={self.n}, m={self.m}, p={self.p}"
        )
        shape = f"{math.prod(self.batch)} x ({core})" if self.batch else core
        return f"{shape} {self.label}".strip()

    @property
    def repeated(self) -> bool:
        return self.n <= REPEAT_MAX_N


@dataclass(frozen=True)
class LRUSystem:
    """NumPy arrays of a (batch of) diagonal system(s): poles (..., n), B (..., n, m), C (..., p, n)."""

    poles: np.ndarray
    B: np.ndarray
    C: np.ndarray


def make_system(config: Config, seed: int) -> LRUSystem:
    """An LRU-like random system of the configuration (complex128)."""
    rng = np.random.default_rng(seed)
    n, m, p, batch = config.n, config.m, config.p, config.batch
    radius = rng.uniform(0.9, 0.999, (*batch, n))
    phase = rng.uniform(0.0, 2 * np.pi, (*batch, n))
    B = rng.standard_normal((*batch, n, m)) + 1j * rng.standard_normal((*batch, n, m))
    C = rng.standard_normal((*batch, p, n)) + 1j * rng.standard_normal((*batch, p, n))
    return LRUSystem(radius * np.exp(1j * phase), B / np.sqrt(2 * m), C / np.sqrt(2 * n))


def configurations(sizes: Sequence[int], quick: bool, batch: bool) -> list[Config]:
    io = 16 if quick else 64
    configs = [Config(n, io, io) for n in sizes]
    if batch:
        layer = Config(48, 64, 64, (2,)) if quick else Config(384, 512, 512, (6,), "(sCIFAR)")
        configs.append(layer)
    return configs


# --- the peers (NumPy / SciPy / SLICOT), unbatched kernels applied per layer ----------------


def per_layer(kernel: Callable[..., np.ndarray], system: LRUSystem) -> np.ndarray:
    """Apply an unbatched kernel ``(poles, B, C) -> hsv`` to every layer of a batch."""
    batch = system.poles.shape[:-1]
    out = np.empty(system.poles.shape, dtype=float)
    for index in np.ndindex(*batch):
        out[index] = kernel(system.poles[index], system.B[index], system.C[index])
    return out


def closed_form_gramians(poles: np.ndarray, B: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, ...]:
    """P = (B B^H) / (1 - l_i conj(l_j)) and Q = (C^H C) / (1 - conj(l_i) l_j), batched."""
    Bh = np.conj(np.swapaxes(B, -1, -2))
    Ch = np.conj(np.swapaxes(C, -1, -2))
    P = (B @ Bh) / (1 - poles[..., :, None] * np.conj(poles)[..., None, :])
    Q = (Ch @ C) / (1 - np.conj(poles)[..., :, None] * poles[..., None, :])
    return P, Q


def descending(values: np.ndarray) -> np.ndarray:
    return np.flip(np.sort(values, axis=-1), axis=-1)


def authors_hsv(system: LRUSystem) -> np.ndarray:
    """(a) The authors' algorithm: sqrt(|eigvals(P Q)|) of the closed-form Gramians, batched."""
    P, Q = closed_form_gramians(system.poles, system.B, system.C)
    return descending(np.sqrt(np.abs(np.linalg.eigvals(P @ Q))))


def realify(M: np.ndarray) -> np.ndarray:
    """[[Re M, -Im M], [Im M, Re M]]: the real matrix of the complex linear map M."""
    return np.block([[M.real, -M.imag], [M.imag, M.real]])


def slicot_kernel(poles: np.ndarray, B: np.ndarray, C: np.ndarray) -> np.ndarray:
    """(b) control.gram (SLICOT sb03md) on the realified 2n-state system; every other HSV."""
    import control

    A_real, B_real, C_real = realify(np.diag(poles)), realify(B), realify(C)
    D = np.zeros((C_real.shape[0], B_real.shape[1]))
    real_system = control.ss(A_real, B_real, C_real, D, dt=True)
    Wc, Wo = control.gram(real_system, "c"), control.gram(real_system, "o")
    doubled = descending(np.sqrt(np.abs(np.linalg.eigvals(Wc @ Wo))))
    return doubled[0::2]


def scipy_lyapunov_kernel(poles: np.ndarray, B: np.ndarray, C: np.ndarray) -> np.ndarray:
    """(c) SciPy's solve_discrete_lyapunov for P and Q (A complex), then sqrt(eig(P Q))."""
    A = np.diag(poles).astype(complex)
    P = scipy.linalg.solve_discrete_lyapunov(A, B @ B.conj().T)
    Q = scipy.linalg.solve_discrete_lyapunov(A.conj().T, C.conj().T @ C)
    return descending(np.sqrt(np.abs(scipy.linalg.eigvals(P @ Q))))


def psd_factor(X: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of X, or V sqrt(max(w, 0)) from eigh where Cholesky fails."""
    try:
        return scipy.linalg.cholesky(X, lower=True)
    except np.linalg.LinAlgError:
        w, V = scipy.linalg.eigh(X)
        return V * np.sqrt(np.clip(w, 0.0, None))


def sqrt_reference_kernel(poles: np.ndarray, B: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Float64 square-root method in SciPy: svdvals(Lq^H Lp) of the closed-form Gramians."""
    P, Q = closed_form_gramians(poles, B, C)
    return scipy.linalg.svdvals(psd_factor(Q).conj().T @ psd_factor(P))


# --- ours and (a) on each array library ------------------------------------------------------


def ours_numpy(system: LRUSystem) -> Callable[[], Any]:
    return lambda: cc.hankel_singular_values(
        cc.DiagonalStateSpace(system.poles, system.B, system.C)
    )


def ours(poles: Any, B: Any, C: Any) -> Any:
    return cc.hankel_singular_values(cc.DiagonalStateSpace(poles, B, C))


def ours_cholesky(poles: Any, B: Any, C: Any) -> Any:
    """Ours with Cholesky factors chosen statically (under jax.jit, factor="auto" is "eigh",
    valid for semidefinite Gramians too but an eigendecomposition per Gramian)."""
    return cc.hankel_singular_values(cc.DiagonalStateSpace(poles, B, C), factor="cholesky")


def authors_torch(poles: Any, B: Any, C: Any) -> Any:
    """(a) in torch: closed-form Gramians, then sqrt|eigvals(P Q)| sorted descending."""
    import torch

    P = (B @ B.mH) / (1 - poles[..., :, None] * poles.conj()[..., None, :])
    Q = (C.mH @ C) / (1 - poles.conj()[..., :, None] * poles[..., None, :])
    return torch.sort(torch.linalg.eigvals(P @ Q).abs().sqrt(), dim=-1, descending=True).values


def authors_jax(poles: Any, B: Any, C: Any) -> Any:
    """(a) in JAX: closed-form Gramians, then sqrt|eigvals(P Q)| sorted descending."""
    import jax.numpy as jnp

    P = (B @ jnp.conj(jnp.swapaxes(B, -1, -2))) / (1 - poles[..., :, None] * jnp.conj(poles)[..., None, :])
    Q = (jnp.conj(jnp.swapaxes(C, -1, -2)) @ C) / (1 - jnp.conj(poles)[..., :, None] * poles[..., None, :])
    return jnp.flip(jnp.sort(jnp.sqrt(jnp.abs(jnp.linalg.eigvals(P @ Q))), axis=-1), axis=-1)


def on_torch(device: str, hsv: Callable[..., Any]) -> Callable[[LRUSystem], Callable[[], Any]]:
    def prepare(system: LRUSystem) -> Callable[[], Any]:
        import torch

        poles, B, C = (
            torch.as_tensor(x, device=device) for x in (system.poles, system.B, system.C)
        )

        def run() -> Any:
            values = hsv(poles, B, C)
            if device != "cpu":
                torch.cuda.synchronize()
            return values

        return run

    return prepare


def on_jax(
    device_kind: str, hsv: Callable[..., Any], jit: bool = False
) -> Callable[[LRUSystem], Callable[[], Any]]:
    def prepare(system: LRUSystem) -> Callable[[], Any]:
        import jax

        device = jax.devices(device_kind)[0]
        poles, B, C = (jax.device_put(x, device) for x in (system.poles, system.B, system.C))
        compute = jax.jit(hsv) if jit else hsv
        return lambda: compute(poles, B, C).block_until_ready()

    return prepare


def jax_x64() -> contextlib.AbstractContextManager:
    """float64/complex128 for JAX inside the block only (no global switch)."""
    import jax

    return jax.enable_x64(True)


# --- methods -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """A method of the table: ``prepare(system)`` gives the zero-argument call that is timed."""

    key: str
    label: str
    prepare: Callable[[LRUSystem], Callable[[], Any]]
    slow: bool = False  # run once, no warm-up
    max_n: int | None = None
    unbatched_only: bool = False
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    def applies(self, config: Config) -> bool:
        if self.max_n is not None and config.n > self.max_n:
            return False
        return not (self.unbatched_only and config.batch)


def kernel_method(kernel: Callable[..., np.ndarray]) -> Callable[[LRUSystem], Callable[[], Any]]:
    return lambda system: lambda: per_layer(kernel, system)


def build_methods(
    skip_slicot: bool, slicot_max_n: int, device: str = "cpu"
) -> tuple[list[Method], list[str]]:
    """The methods to run here, and notes on the ones that cannot run. ``device="cuda"``
    runs the torch and JAX rows (ours and (a)) on the GPU; NumPy and the peers stay on the CPU."""
    methods = [
        Method("ours-numpy", "ours (NumPy)", ours_numpy),
        Method(
            "authors",
            "(a) authors: sqrt(abs(eigvals(P Q))) (NumPy)",
            lambda s: lambda: authors_hsv(s),
        ),
    ]
    notes = []
    torch_device, torch_name = ("cuda", "torch CUDA") if device == "cuda" else ("cpu", "torch CPU")
    jax_device, jax_name = ("gpu", "JAX GPU") if device == "cuda" else ("cpu", "JAX CPU")
    suffix = "-cuda" if device == "cuda" else ""
    if has_module("torch"):
        methods += [
            Method(f"ours-torch{suffix}", f"ours ({torch_name})", on_torch(torch_device, ours)),
            Method(
                f"authors-torch{suffix}", f"(a) authors ({torch_name})", on_torch(torch_device, authors_torch)
            ),
        ]
    else:
        notes.append("torch is not installed: no torch rows.")
    if has_module("jax"):
        methods += [
            Method(f"ours-jax{suffix}", f"ours ({jax_name})", on_jax(jax_device, ours), context=jax_x64),
            Method(
                f"ours-jax-jit{suffix}",
                f"ours ({jax_name}, jax.jit, factor='cholesky')",
                on_jax(jax_device, ours_cholesky, jit=True),
                context=jax_x64,
            ),
            Method(
                f"authors-jax{suffix}",
                f"(a) authors ({jax_name}, jax.jit)",
                on_jax(jax_device, authors_jax, jit=True),
                context=jax_x64,
            ),
        ]
    else:
        notes.append("jax is not installed: no JAX rows.")
    if skip_slicot:
        notes.append("(b) SLICOT skipped (--skip-slicot).")
    elif not has_module("control"):
        notes.append("(b) SLICOT skipped: python-control is not installed.")
    else:
        methods.append(
            Method(
                "slicot",
                "(b) control.gram (SLICOT), realified 2n",
                kernel_method(slicot_kernel),
                slow=True,
                max_n=slicot_max_n,
                unbatched_only=True,
            )
        )
    methods.append(
        Method(
            "scipy",
            "(c) scipy solve_discrete_lyapunov",
            kernel_method(scipy_lyapunov_kernel),
            slow=True,
            max_n=1024,
        )
    )
    methods.append(
        Method(
            "sqrt-ref",
            "sqrt-ref: SciPy Cholesky + svdvals",
            kernel_method(sqrt_reference_kernel),
            slow=True,
        )
    )
    return methods, notes


# --- timing ------------------------------------------------------------------------------


@dataclass
class Row:
    config: str
    method: str
    key: str
    time_s: float | None = None  # median
    repeats: int = 0
    min_time_s: float | None = None
    speedup_vs_a: float | None = None
    speedup_vs_a_same_backend: float | None = None
    speedup_vs_b: float | None = None
    rel_error: float | None = None
    reference: str = ""
    note: str = ""
    spectrum: np.ndarray | None = field(default=None, repr=False)


def run_method(method: Method, config: Config, system: LRUSystem, repeats: int) -> Row:
    row = Row(config.name, method.label, method.key)
    slow = method.slow or not config.repeated
    row.repeats = 1 if slow else repeats
    try:
        with method.context():
            call = method.prepare(system)
            row.time_s, row.min_time_s, out = measure(call, row.repeats, warmup=not method.slow)
            row.spectrum = _timing.to_numpy(out).astype(float)
    except Exception as error:  # a failing method is a finding, not a crash of the benchmark
        row.time_s, row.repeats = None, 0
        row.note = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
    return row


# --- the rank-decision path --------------------------------------------------------------


def find_rank_function() -> tuple[str | None, Callable[..., Any] | None]:
    for name in RANK_FUNCTION_NAMES:
        function = getattr(cc, name, None)
        if callable(function):
            return name, function
    return None, None


def unpack_rank_result(result: Any) -> tuple[np.ndarray, int]:
    """(leading HSVs, rank) from an object with ``hsv``/``rank`` or a (hsv, rank) tuple."""
    if hasattr(result, "rank"):
        hsv = getattr(result, "hsv", None)
        if hsv is None:
            hsv = result.leading_hsv
        return _timing.to_numpy(hsv).astype(float), int(np.max(_timing.to_numpy(result.rank)))
    first, second = (_timing.to_numpy(x) for x in result)
    if np.ndim(first) == 0:
        first, second = second, first
    return first.astype(float), int(np.max(second))


def authors_rank(system: LRUSystem, tau: float) -> tuple[np.ndarray, int]:
    hsv = authors_hsv(system)
    return hsv, int(np.max(cc.rank_for_energy(hsv, tau, energy="squared")))


def rank_rows(
    config: Config, system: LRUSystem, repeats: int, reference: np.ndarray, tau: float
) -> list[Row]:
    """Ours (a dedicated leading-HSV + rank function, if any) vs (a) + rank_for_energy."""
    ref_rank = int(np.max(cc.rank_for_energy(reference, tau, energy="squared")))
    label = f"rank decision, energy=squared, tau={tau}"
    rows = [
        timed_rank(
            config,
            f"{label}: (a) + rank_for_energy",
            "rank-authors",
            lambda: authors_rank(system, tau),
            repeats,
            reference,
            ref_rank,
        )
    ]
    name, function = find_rank_function()
    if function is None:
        rows.insert(
            0,
            Row(
                config.name,
                f"{label}: ours",
                "rank-ours",
                note="TODO(lead): compressm_core has no leading-HSV + energy-rank "
                f"function yet (looked for {', '.join(RANK_FUNCTION_NAMES)})",
            ),
        )
        return rows
    dsys = cc.DiagonalStateSpace(system.poles, system.B, system.C)
    options = {"energy": "squared"} if "energy" in inspect.signature(function).parameters else {}
    call = lambda: unpack_rank_result(function(dsys, tau=tau, **options))  # noqa: E731
    ours = timed_rank(
        config, f"{label}: ours ({name})", "rank-ours", call, repeats, reference, ref_rank
    )
    authors = rows[0]
    if ours.time_s and authors.time_s:  # against its own (a) pair, timed just before it
        ours.speedup_vs_a, authors.speedup_vs_a = authors.time_s / ours.time_s, 1.0
    return [ours, authors]


def timed_rank(config, label, key, call, repeats, reference, ref_rank) -> Row:
    row = Row(config.name, label, key, repeats=repeats if config.repeated else 1)
    try:
        row.time_s, row.min_time_s, (hsv, rank) = measure(call, row.repeats, config.repeated)
    except Exception as error:
        row.repeats, row.note = 0, f"failed: {type(error).__name__}: {str(error)[:120]}"
        return row
    r = min(rank, hsv.shape[-1], ref_rank)
    row.rel_error = float(np.max(np.abs(hsv[..., :r] - reference[..., :r]) / reference[..., :1]))
    row.note = f"rank {rank} (reference rank {ref_rank}); error over the leading {r} HSVs"
    return row


# --- accuracy and ratios -----------------------------------------------------------------


def relative_error(hsv: np.ndarray, reference: np.ndarray) -> float:
    """max_i |sigma_i - sigma_i^ref| / sigma_1^ref, maximised over a batch."""
    return float(np.max(np.abs(hsv - reference) / reference[..., :1]))


def pick_reference(rows: list[Row]) -> tuple[np.ndarray, str]:
    by_key = {row.key: row for row in rows if row.spectrum is not None}
    if "slicot" in by_key:
        return by_key["slicot"].spectrum, "(b) SLICOT"
    return by_key["sqrt-ref"].spectrum, "sqrt-ref (SciPy float64 Cholesky + svdvals)"


def same_backend_authors(key: str) -> str | None:
    """The key of (a) on the backend of ``ours-...`` (ours-jax-jit-cuda -> authors-jax-cuda)."""
    if not key.startswith("ours-"):
        return None
    backend = key.removeprefix("ours-").replace("-jit", "")
    return "authors" if backend == "numpy" else f"authors-{backend}"


def fill_comparisons(rows: list[Row], reference: np.ndarray, reference_name: str) -> None:
    times = {row.key: row.time_s for row in rows}
    for row in rows:
        if row.time_s is None:
            continue
        if times.get("authors") and row.speedup_vs_a is None:  # rank rows: set by their pair
            row.speedup_vs_a = times["authors"] / row.time_s
        same = times.get(same_backend_authors(row.key) or "")
        if same:
            row.speedup_vs_a_same_backend = same / row.time_s
        if times.get("slicot"):
            row.speedup_vs_b = times["slicot"] / row.time_s
        if row.spectrum is not None:
            row.rel_error = relative_error(row.spectrum, reference)
            row.reference = reference_name
        elif row.rel_error is not None:
            row.reference = reference_name


def run_config(
    config: Config, methods: list[Method], args: argparse.Namespace
) -> tuple[list[Row], list[Stage]]:
    system = make_system(config, args.seed)
    rows = []
    for method in methods:
        if method.applies(config):
            print(f"  {config.name}: {method.label} ...", file=sys.stderr, flush=True)
            rows.append(run_method(method, config, system, args.repeats))
            print(f"    {fmt(rows[-1].time_s, '.4g')} s {rows[-1].note}", file=sys.stderr, flush=True)
    reference, reference_name = pick_reference(rows)
    if config.n in args.rank_n and not config.batch:
        for tau in args.rank_taus:
            rows.extend(rank_rows(config, system, args.repeats, reference, tau))
    fill_comparisons(rows, reference, reference_name)
    stages = [] if args.no_breakdown else stage_breakdown(config, system, args.repeats)
    return rows, stages


# --- where the time goes: stage breakdown of ours and (a), NumPy --------------------------


@dataclass
class Stage:
    config: str
    path: str
    stage: str
    time_s: float


def conj_transpose(x: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(x, -1, -2))


def is_lower_triangular(L: np.ndarray) -> bool:
    return not np.any(np.triu(L, 1))


def ours_stages(system: LRUSystem) -> list[tuple[str, Callable[[], Any]]]:
    """The steps of cc.hankel_singular_values (method="auto", eigh path), each timed on its own."""
    dsys = cc.DiagonalStateSpace(system.poles, system.B, system.C)
    P, Q = cc.gramians(dsys)
    Lp = cc.gramian_factor(P)
    kind = "Cholesky" if is_lower_triangular(Lp) else "eigh fallback"
    H = conj_transpose(Lp) @ (Q @ Lp)
    return [
        ("build P, Q (cc.gramians)", lambda: cc.gramians(dsys)),
        (f"factor Lp (cc.gramian_factor: {kind})", lambda: cc.gramian_factor(P)),
        ("product Lp^H (Q Lp)", lambda: conj_transpose(Lp) @ (Q @ Lp)),
        ("eigvalsh(Lp^H Q Lp)", lambda: np.linalg.eigvalsh(H)),
        ("total: cc.hankel_singular_values", lambda: cc.hankel_singular_values(dsys)),
    ]


def authors_stages(system: LRUSystem) -> list[tuple[str, Callable[[], Any]]]:
    P, Q = closed_form_gramians(system.poles, system.B, system.C)
    PQ = P @ Q
    return [
        (
            "build P, Q (elementwise division)",
            lambda: closed_form_gramians(system.poles, system.B, system.C),
        ),
        ("product P Q", lambda: P @ Q),
        ("eigvals(P Q)", lambda: np.linalg.eigvals(PQ)),
        ("total: authors_hsv", lambda: authors_hsv(system)),
    ]


def stage_breakdown(config: Config, system: LRUSystem, repeats: int) -> list[Stage]:
    repeats = repeats if config.repeated else 1
    stages = []
    for path, steps in (("ours (NumPy)", ours_stages(system)), ("(a)", authors_stages(system))):
        for name, call in steps:
            seconds, _, _ = measure(call, repeats, warmup=config.repeated)
            stages.append(Stage(config.name, path, name, seconds))
    return stages


def breakdown_table(stages: list[Stage]) -> str:
    totals = {(s.config, s.path): s.time_s for s in stages if s.stage.startswith("total")}
    lines = ["| config | path | stage | time (s) | share of total |", "|---|---|---|---:|---:|"]
    for s in stages:
        share = s.time_s / totals[(s.config, s.path)]
        lines.append(f"| {s.config} | {s.path} | {s.stage} | {s.time_s:.4g} | {share:.0%} |")
    return "\n".join(lines)


# --- output ------------------------------------------------------------------------------


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| config | method | time (s), median | min (s) | speed-up vs (a) "
        "| vs (a) same backend | speed-up vs (b) | rel. error | reference | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        time_text = "—" if row.time_s is None else f"{row.time_s:.4g} (x{row.repeats})"
        lines.append(
            f"| {row.config} | {row.method} | {time_text} | {fmt(row.min_time_s, '.4g')} | "
            f"{fmt(row.speedup_vs_a, '.2f')} | {fmt(row.speedup_vs_a_same_backend, '.2f')} | "
            f"{fmt(row.speedup_vs_b, '.1f')} | {fmt(row.rel_error, '.1e')} | {row.reference} | {cell(row.note)} |"
        )
    return "\n".join(lines)


def write_json(
    path: str, rows: list[Row], stages: list[Stage], info: dict[str, Any], argv: Sequence[str]
) -> None:
    records = [{k: v for k, v in asdict(row).items() if k != "spectrum"} for row in rows]
    payload = {
        "command": ["python", "benchmarks/hsv_benchmark.py", *argv],
        "machine": info,
        "rows": records,
        "breakdown": [asdict(stage) for stage in stages],
    }
    with open(path, "w") as stream:
        json.dump(payload, stream, indent=2)


# --- command line ------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(value) for value in text.split(",")]


def float_list(text: str) -> list[float]:
    return [float(value) for value in text.split(",")]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int_list,
        default=None,
        help="comma-separated state orders n of the m=p=64 systems (default 256,1024,2048)",
    )
    parser.add_argument(
        "--no-batch", action="store_true", help="leave out the batched sCIFAR configuration"
    )
    parser.add_argument(
        "--skip-slicot", action="store_true", help="do not run (b) python-control/SLICOT"
    )
    parser.add_argument(
        "--slicot-max-n", type=int, default=1024, help="largest n on which (b) runs"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed calls per fast method (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--rank-n",
        type=int_list,
        default=None,
        help="comma-separated n of the rank-decision rows (default 1024; largest size with --quick)",
    )
    parser.add_argument(
        "--rank-taus",
        type=float_list,
        default=list(RANK_TAUS),
        help="comma-separated tolerances tau of the rank-decision rows (default 0.05)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="n=128 and a batch of 2 x n=48 (smoke run)"
    )
    parser.add_argument(
        "--no-breakdown", action="store_true", help="leave out the per-stage timing of ours and (a)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="cap all thread pools at this many threads (default: leave the libraries' defaults)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the torch and JAX rows run (cuda falls back to the CPU, with a note, without a GPU)",
    )
    parser.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=None,
        help="comma-separated method keys to run (e.g. ours-jax,authors-jax); sqrt-ref always runs",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json", metavar="PATH", help="also write the rows and machine information as JSON"
    )
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else FULL_SIZES)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.rank_n is None:
        args.rank_n = [max(args.sizes)] if args.quick else list(RANK_SIZES)
    return args


def run(args: argparse.Namespace) -> tuple[list[Row], list[Stage], list[str]]:
    device, device_note = _timing.choose_device(args.device)
    if device_note:
        print(device_note, file=sys.stderr, flush=True)
    methods, notes = build_methods(args.skip_slicot, args.slicot_max_n, device)
    if args.only:
        methods = [m for m in methods if m.key in args.only or m.key == "sqrt-ref"]
    notes += [device_note] if device_note else []
    rows, stages = [], []
    for config in configurations(args.sizes, args.quick, not args.no_batch):
        config_rows, config_stages = run_config(config, methods, args)
        rows.extend(config_rows)
        stages.extend(config_stages)
    return rows, stages, notes


def report(rows: list[Row], stages: list[Stage], notes: list[str], info: dict[str, Any]) -> str:
    header = [
        _timing.machine_line(info),
        "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        "",
        markdown_table(rows),
        "",
        "speed-up = t(a) / t(method) and t(b) / t(method) (medians): above 1 means faster than the peer;"
        " 'vs (a) same backend': against (a) run by the same library on the same device;"
        " rank-decision rows: against the (a) + rank_for_energy row of the same tau.",
        f"load average (1, 5, 15 min) after the run: {info.get('load_average_after')}",
        *notes,
    ]
    if stages:
        header += [
            "",
            "Where the time goes (NumPy; each stage timed on its own):",
            "",
            breakdown_table(stages),
        ]
    return "\n".join(header)


def main(argv: Sequence[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    thread_note = _timing.limit_threads(args.threads) if args.threads else "threads: library defaults"
    info = _timing.machine_info()
    info["threads"] = thread_note
    rows, stages, notes = run(args)
    notes.insert(0, thread_note)
    info["load_average_after"] = _timing.load_average()
    print(report(rows, stages, notes, info), flush=True)
    if args.json:
        write_json(args.json, rows, stages, info, sys.argv[1:] if argv is None else list(argv))
    return rows


if __name__ == "__main__":
    main()
