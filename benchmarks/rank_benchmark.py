"""The rank decision for energy = sum of squared HSVs: ``hankel_rank`` vs the authors' algorithm.

(a) builds the Gramians by elementwise division, takes sqrt|eigvals(P Q)| and then the energy
rank; ``compressm_core.hankel_rank`` uses trace(P Q) and subspace iteration (certified never to
return too small a rank). Same system, same process, median of 3 after a warm-up.

    python benchmarks/rank_benchmark.py --n 1024 --m 64 --taus 0.3 0.2 0.1 0.05
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import compressm_core as cc


def lru_like(n: int, m: int, seed: int = 0) -> cc.DiagonalStateSpace:
    rng = np.random.default_rng(seed)
    poles = rng.uniform(0.9, 0.999, n) * np.exp(1j * rng.uniform(0, 2 * np.pi, n))
    B = (rng.standard_normal((n, m)) + 1j * rng.standard_normal((n, m))) / np.sqrt(2 * m)
    C = (rng.standard_normal((m, n)) + 1j * rng.standard_normal((m, n))) / np.sqrt(2 * n)
    return cc.DiagonalStateSpace(poles, B, C)


def authors_rank(sys: cc.DiagonalStateSpace, tau: float) -> int:
    lam, B, C = sys.poles, sys.B, sys.C
    P = (B @ B.conj().T) / (1 - lam[:, None] * lam.conj()[None, :])
    Q = (C.conj().T @ C) / (1 - lam.conj()[:, None] * lam[None, :])
    hsv = np.sort(np.sqrt(np.abs(np.linalg.eigvals(P @ Q))))[::-1]
    return int(cc.rank_for_energy(hsv, tau, energy="squared"))


def median_seconds(f, repeats: int = 3) -> tuple[float, int]:
    f()
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--m", type=int, default=64)
    parser.add_argument("--taus", type=float, nargs="+", default=[0.3, 0.2, 0.1, 0.05])
    args = parser.parse_args(argv)
    sys = lru_like(args.n, args.m)
    print(f"n = {args.n}, m = p = {args.m}\n")
    print("| tau | rank (a) | rank hankel_rank | (a) s | hankel_rank s | speed-up |")
    print("|---|---|---|---|---|---|")
    for tau in args.taus:
        t_a, r_a = median_seconds(lambda tau=tau: authors_rank(sys, tau))
        t_f, r_f = median_seconds(lambda tau=tau: int(cc.hankel_rank(sys, tau).rank))
        print(f"| {tau} | {r_a} | {r_f} | {t_a:.3f} | {t_f:.3f} | {t_a / t_f:.1f}x |")


if __name__ == "__main__":
    main()
