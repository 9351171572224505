"""compressm_core: Gramians, Hankel singular values and balanced truncation on any array type.

Pure Python array API (NumPy, array-api-strict, PyTorch, JAX, CuPy), batched over leading
axes, discrete time: ``x[k+1] = A x[k] + B u[k]``, ``y[k] = C x[k] + D u[k]``.
"""

from . import layers, ltv, schedule
from .balancing import Reduction, balanced_truncation, hankel_singular_values, rank_for_energy
from .diagonal import real_output_system, to_diagonal
from .energy_rank import EnergyRank, hankel_rank
from .gramians import (
    controllability_gramian,
    gramian_factor,
    gramian_factors,
    gramians,
    observability_gramian,
)
from .lyapunov import lyapunov_residual, solve_continuous_lyapunov, solve_discrete_lyapunov
from .perturbation import ranking_is_stable, weyl_bound
from .systems import DiagonalStateSpace, StateSpace

__all__ = [
    "DiagonalStateSpace",
    "EnergyRank",
    "Reduction",
    "StateSpace",
    "balanced_truncation",
    "controllability_gramian",
    "gramian_factor",
    "gramian_factors",
    "gramians",
    "hankel_rank",
    "hankel_singular_values",
    "layers",
    "ltv",
    "lyapunov_residual",
    "observability_gramian",
    "rank_for_energy",
    "ranking_is_stable",
    "real_output_system",
    "schedule",
    "solve_continuous_lyapunov",
    "solve_discrete_lyapunov",
    "to_diagonal",
    "weyl_bound",
]
