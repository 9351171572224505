"""Random stable discrete-time systems (NumPy arrays) and the Hypothesis strategies that draw them.

Hypothesis draws the structure (order, inputs, outputs, batch shape, real or complex, with or
without D) and a seed; the entries come from NumPy's generator, so that examples are generic
(distinct poles, minimal systems) rather than shrunk to degenerate ones.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

settings.register_profile("core", max_examples=30, deadline=None)
settings.register_profile("core-slow", max_examples=12, deadline=None)
CORE = settings.get_profile("core")
CORE_SLOW = settings.get_profile("core-slow")

MAX_ORDER = 12
BATCH_SHAPES = [(), (2,), (2, 3)]
seeds = st.integers(0, 2**32 - 1)
#: which of A, B, C are complex: all real, all complex, or mixed (torch's matmul does not promote)
COMPLEX_FLAGS = st.sampled_from([False, True, (False, True, False), (False, False, True)])


class Dense(NamedTuple):
    A: np.ndarray  # (..., n, n)
    B: np.ndarray  # (..., n, m)
    C: np.ndarray  # (..., p, n)
    D: np.ndarray | None  # (..., p, m)

    def members(self):
        """(index, unbatched system) for each member of the batch."""
        for index in np.ndindex(self.A.shape[:-2]):
            yield index, Dense(*(None if M is None else M[index] for M in self))


class Diagonal(NamedTuple):
    poles: np.ndarray  # (..., n)
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray | None

    def dense(self) -> Dense:
        n = self.poles.shape[-1]
        return Dense(self.poles[..., :, None] * np.eye(n), self.B, self.C, self.D)

    def members(self):
        """(index, unbatched system) for each member of the batch."""
        for index in np.ndindex(self.poles.shape[:-1]):
            yield index, Diagonal(*(None if M is None else M[index] for M in self))


def gaussian(rng: np.random.Generator, shape, is_complex: bool) -> np.ndarray:
    if is_complex:
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)
    return rng.standard_normal(shape)


def complex_poles(rng, n, radius=(0.05, 0.98)) -> np.ndarray:
    """Poles with modulus in ``radius`` and uniformly random phases."""
    return rng.uniform(*radius, n) * np.exp(1j * rng.uniform(-np.pi, np.pi, n))


def well_conditioned(rng, n, is_complex) -> np.ndarray:
    """A random invertible matrix with condition number at most 4."""
    left, _ = np.linalg.qr(gaussian(rng, (n, n), is_complex))
    right, _ = np.linalg.qr(gaussian(rng, (n, n), is_complex))
    return left @ np.diag(rng.uniform(0.5, 2.0, n)) @ right


def real_block_diagonal(rng, n, max_radius) -> np.ndarray:
    """A real matrix with random real poles and 2x2 rotation-scaling blocks (conjugate pairs)."""
    M = np.zeros((n, n))
    i = 0
    while i < n:
        r = rng.uniform(0.05, max_radius)
        if i + 1 < n and rng.random() < 0.5:
            phi = rng.uniform(0.1, np.pi - 0.1)
            M[i : i + 2, i : i + 2] = r * np.array(
                [[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]]
            )
            i += 2
        else:
            M[i, i] = r * rng.choice([-1.0, 1.0])
            i += 1
    return M


def stable_matrix(rng, n, is_complex, max_radius=0.95) -> np.ndarray:
    """A dense matrix with spectral radius < ``max_radius``: a random similarity of a stable one."""
    if is_complex:
        core = np.diag(complex_poles(rng, n, (0.05, max_radius)))
    else:
        core = real_block_diagonal(rng, n, max_radius)
    T = well_conditioned(rng, n, is_complex)
    return T @ core @ np.linalg.inv(T)


def hurwitz_matrix(rng, n, is_complex) -> np.ndarray:
    """A dense matrix whose eigenvalues have real parts in [-2, -0.1]."""
    real = -rng.uniform(0.1, 2.0, n)
    imaginary = rng.uniform(-2.0, 2.0, n)
    if is_complex:
        core = np.diag(real + 1j * imaginary)
    else:
        core = np.diag(real)
        for i in range(0, n - 1, 2):  # pairs real[i] +- i imaginary[i]
            core[i, i + 1], core[i + 1, i] = imaginary[i], -imaginary[i]
            core[i + 1, i + 1] = real[i]
    T = well_conditioned(rng, n, is_complex)
    return T @ core @ np.linalg.inv(T)


def _batched(make, batch):
    """Stack ``make()`` over the batch shape (each call returns a tuple of arrays or None)."""
    if not batch:
        return make()
    members = [make() for _ in range(int(np.prod(batch)))]
    return tuple(
        None if parts[0] is None else np.stack(parts).reshape(*batch, *parts[0].shape)
        for parts in zip(*members, strict=True)
    )


def make_dense(rng, n, m, p, *, is_complex=False, batch=(), with_d=False) -> Dense:
    """A stable dense system; ``is_complex`` is one flag or one per matrix (A, B, C); D follows C."""
    complex_a, complex_b, complex_c = (
        (is_complex,) * 3 if isinstance(is_complex, bool) else is_complex
    )

    def one():
        return (
            stable_matrix(rng, n, complex_a),
            gaussian(rng, (n, m), complex_b),
            gaussian(rng, (p, n), complex_c),
            gaussian(rng, (p, m), complex_c) if with_d else None,
        )

    return Dense(*_batched(one, batch))


def make_diagonal(rng, n, m, p, *, batch=(), with_d=False, real_d=False) -> Diagonal:
    """A complex diagonal (LRU-like) system; ``real_d`` makes D real, as the LRU's is."""

    def one():
        D = gaussian(rng, (p, m), not real_d) if with_d else None
        return (
            complex_poles(rng, n),
            gaussian(rng, (n, m), True),
            gaussian(rng, (p, n), True),
            D,
        )

    return Diagonal(*_batched(one, batch))


@st.composite
def dense_systems(draw, *, is_complex=None, batch=True, min_n=1) -> Dense:
    """Stable dense systems, real or complex, MIMO, optionally batched."""
    shape = draw(st.sampled_from(BATCH_SHAPES)) if batch else ()
    return make_dense(
        np.random.default_rng(draw(seeds)),
        draw(st.integers(min_n, MAX_ORDER)),
        draw(st.integers(1, 4)),
        draw(st.integers(1, 4)),
        is_complex=draw(COMPLEX_FLAGS) if is_complex is None else is_complex,
        batch=shape,
        with_d=draw(st.booleans()),
    )


@st.composite
def diagonal_systems(draw, *, batch=True, min_n=1) -> Diagonal:
    """Stable complex diagonal systems, MIMO, optionally batched."""
    shape = draw(st.sampled_from(BATCH_SHAPES)) if batch else ()
    return make_diagonal(
        np.random.default_rng(draw(seeds)),
        draw(st.integers(min_n, MAX_ORDER)),
        draw(st.integers(1, 4)),
        draw(st.integers(1, 4)),
        batch=shape,
        with_d=draw(st.booleans()),
    )


def systems(*, batch=True, min_n=1):
    """Dense (real or complex) and complex diagonal stable systems, as ``Dense``."""
    return st.one_of(
        dense_systems(batch=batch, min_n=min_n),
        diagonal_systems(batch=batch, min_n=min_n).map(Diagonal.dense),
    )


def fixed_dense_systems() -> list[Dense]:
    """Batched (2,) systems of order 5 with 2 inputs and 3 outputs: real, complex, and real A
    with complex B. The same shapes throughout, so that JAX compiles each operation once."""
    rng = np.random.default_rng(2024)
    return [
        make_dense(rng, 5, 2, 3, is_complex=flags, batch=(2,), with_d=True)
        for flags in (False, True, (False, True, False))
    ]


def fixed_diagonal_system() -> Diagonal:
    """A batched (2,) complex diagonal system of order 5 with 2 inputs and 3 outputs."""
    return make_diagonal(np.random.default_rng(2025), 5, 2, 3, batch=(2,), with_d=True)
