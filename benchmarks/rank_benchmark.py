"""The rank decision for energy = sum of squared HSVs: ``hankel_rank`` vs the full spectrum.

For each tau: (a) the authors' algorithm (Gramians by elementwise division, sqrt|eigvals(P Q)|)
followed by the energy rank; (full) ``compressm_core.hankel_singular_values`` followed by
``rank_for_energy``; and ``compressm_core.hankel_rank`` (a block Krylov space, rank never too
small, certified equal where its two-sided bound closes). Same system, same process, median of
--repeats after a warm-up, the three taking turns (a change of load hits all alike); the ranks
of all three are printed so that any difference shows.

    python benchmarks/rank_benchmark.py --n 1024 --m 64 --taus 0.3 0.2 0.1 0.05
    python benchmarks/rank_benchmark.py --device cuda        # torch arrays on the GPU
"""

from __future__ import annotations

import argparse
import sys

import _timing
import numpy as np

import compressm_core as cc


def lru_like(n: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """poles (n,), B (n, m), C (m, n) of an LRU-like system (complex128)."""
    rng = np.random.default_rng(seed)
    poles = rng.uniform(0.9, 0.999, n) * np.exp(1j * rng.uniform(0, 2 * np.pi, n))
    B = (rng.standard_normal((n, m)) + 1j * rng.standard_normal((n, m))) / np.sqrt(2 * m)
    C = (rng.standard_normal((m, n)) + 1j * rng.standard_normal((m, n))) / np.sqrt(2 * n)
    return poles, B, C


def authors_rank(poles: np.ndarray, B: np.ndarray, C: np.ndarray, tau: float) -> int:
    P = (B @ B.conj().T) / (1 - poles[:, None] * poles.conj()[None, :])
    Q = (C.conj().T @ C) / (1 - poles.conj()[:, None] * poles[None, :])
    hsv = np.sort(np.sqrt(np.abs(np.linalg.eigvals(P @ Q))))[::-1]
    return int(cc.rank_for_energy(hsv, tau, energy="squared"))


def full_spectrum_rank(system: cc.DiagonalStateSpace, tau: float) -> int:
    return int(cc.rank_for_energy(cc.hankel_singular_values(system), tau, energy="squared"))


def system_on(device: str, arrays: tuple[np.ndarray, ...]) -> cc.DiagonalStateSpace:
    """The system as NumPy arrays (cpu) or torch CUDA tensors (cuda)."""
    if device == "cpu":
        return cc.DiagonalStateSpace(*arrays)
    import torch

    return cc.DiagonalStateSpace(*(torch.as_tensor(a, device="cuda") for a in arrays))


def main(argv: list[str] | None = None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--m", type=int, default=64)
    parser.add_argument("--taus", type=float, nargs="+", default=[0.3, 0.2, 0.1, 0.05])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    device, note = _timing.choose_device(args.device)
    if note:
        print(note, file=sys.stderr, flush=True)
    arrays = lru_like(args.n, args.m)
    system = system_on(device, arrays)
    info = _timing.machine_info()
    print(f"{_timing.machine_line(info)}\nn = {args.n}, m = p = {args.m}, device {device}\n")
    rows = []
    for tau in args.taus:
        (t_a, r_a), (t_full, r_full), (t_fast, fast) = _timing.measure_alternately(
            [
                lambda tau=tau: authors_rank(*arrays, tau),
                lambda tau=tau: full_spectrum_rank(system, tau),
                lambda tau=tau: cc.hankel_rank(system, tau),
            ],
            args.repeats,
        )
        rows.append(
            (
                tau,
                r_a,
                r_full,
                int(fast.rank),
                f"{int(fast.rank) / args.n:.1%}",
                fast.dimension,
                fast.certified,
                f"{t_a:.3f}",
                f"{t_full:.3f}",
                f"{t_fast:.3f}",
                f"{t_full / t_fast:.1f}x",
                f"{t_a / t_fast:.1f}x",
            )
        )
    header = (
        "tau", "rank (a)", "rank full", "rank hankel_rank", "rank / n", "subspace",
        "certified", "(a) s", "full s", "hankel_rank s", "vs full", "vs (a)",
    )  # fmt: skip
    print(_timing.markdown_table(header, rows, align="rrrrrrlrrrrr"))
    print(f"\nload average (1, 5, 15 min) after the run: {_timing.load_average()}")
    return rows


if __name__ == "__main__":
    main()
