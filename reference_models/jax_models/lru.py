"""The Linear Recurrent Unit (Orvieto et al., 2023) as a reducible Equinox layer.

lambda = exp(-exp(nu_log) + i exp(theta_log)),   gamma = exp(gamma_log)
x_k = lambda * x_(k-1) + (gamma * (B_re + i B_im)) u_k,   x_(-1) = 0
y_k = Re((C_re + i C_im) x_k) + D * u_k
"""



from __future__ import annotations

import math
from functools import partial
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Complex, Float, PRNGKeyArray

import compressm_core as cc

from .._indices import check_lru_ring
from ._system import checked_system, clamp_away_from_zero, split_complex
from .scan import linear_recurrence


class LRU(eqx.Module):
    """A diagonal complex MIMO recurrence with d_model inputs/outputs and state_dim states.

    Poles start uniformly on the ring ``r_min <= |lambda| <= r_max`` with phases in
    ``[0, max_phase]``; ``gamma = sqrt(1 - |lambda|^2)`` normalises the input. B_re, B_im
    start as N(0, 1 / (2 d_model)), C_re, C_im as N(0, 1 / n), D as N(0, 1).
    Call on one sequence ``u`` (L, d_model) -> (L, d_model); vmap for batches.
    """

    nu_log: Float[Array, " n"]
    theta_log: Float[Array, " n"]
    gamma_log: Float[Array, " n"]
    B_re: Float[Array, "n d_model"]
    B_im: Float[Array, "n d_model"]
    C_re: Float[Array, "d_model n"]
    C_im: Float[Array, "d_model n"]
    D: Float[Array, " d_model"]
    d_model: int = eqx.field(static=True)
    r_min: float = eqx.field(static=True)
    r_max: float = eqx.field(static=True)
    max_phase: float = eqx.field(static=True)

    #: The layer outputs ``Re(C x) + D u`` (see ``compressm_jax.ReducibleSSM``).
    real_output: ClassVar[bool] = True

    def __init__(
        self,
        d_model: int,
        state_dim: int,
        *,
        r_min: float = 0.9,
        r_max: float = 0.999,
        max_phase: float = 2 * math.pi,
        key: PRNGKeyArray,
    ) -> None:
        check_lru_ring(r_min, r_max)
        u1_key, u2_key, b_re_key, b_im_key, c_re_key, c_im_key, d_key = jax.random.split(key, 7)
        u1 = jax.random.uniform(u1_key, (state_dim,))
        u2 = jax.random.uniform(u2_key, (state_dim,))
        self.nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        self.theta_log = jnp.log(max_phase * u2)
        modulus = jnp.exp(-jnp.exp(self.nu_log))
        self.gamma_log = jnp.log(jnp.sqrt(1 - modulus**2))
        b_scale = 1 / math.sqrt(2 * d_model)
        c_scale = 1 / math.sqrt(state_dim)
        self.B_re = b_scale * jax.random.normal(b_re_key, (state_dim, d_model))
        self.B_im = b_scale * jax.random.normal(b_im_key, (state_dim, d_model))
        self.C_re = c_scale * jax.random.normal(c_re_key, (d_model, state_dim))
        self.C_im = c_scale * jax.random.normal(c_im_key, (d_model, state_dim))
        self.D = jax.random.normal(d_key, (d_model,))
        self.d_model = d_model
        self.r_min = r_min
        self.r_max = r_max
        self.max_phase = max_phase

    @property
    def state_dim(self) -> int:
        return self.nu_log.shape[0]

    def poles(self) -> Complex[Array, " n"]:
        return jnp.exp(-jnp.exp(self.nu_log) + 1j * jnp.exp(self.theta_log))

    def input_matrix(self) -> Complex[Array, "n d_model"]:
        """``gamma[:, None] * (B_re + i B_im)``."""
        return jnp.exp(self.gamma_log)[:, None] * (self.B_re + 1j * self.B_im)

    def output_matrix(self) -> Complex[Array, "d_model n"]:
        return self.C_re + 1j * self.C_im

    def __call__(self, u: Float[Array, "L d_model"]) -> Float[Array, "L d_model"]:
        states = linear_recurrence(self.poles(), u @ self.input_matrix().T)
        return jnp.real(states @ self.output_matrix().T) + self.D * u

    def ssm_system(self) -> cc.DiagonalStateSpace:
        """``(lambda, gamma * B, C, diag(D))``, complex, differentiable."""
        return cc.DiagonalStateSpace(
            self.poles(), self.input_matrix(), self.output_matrix(), jnp.diag(self.D)
        )

    def with_system(self, system: cc.DiagonalStateSpace) -> LRU:
        """A new LRU of order ``system.n`` whose recurrence is ``system``; ``self`` is unchanged.

        nu_log = log(-log|p|), theta_log = log(arg p) with arg p in (0, 2 pi] (a real positive
        pole gets 2 pi), gamma_log = log(sqrt(1 - |p|^2)), B = system.B / gamma, C = system.C,
        D = diag(system.D). ValueError if a pole has |p| >= 1.
        """
        poles, B, C, D = checked_system(system, self.d_model, "LRU")
        fields = _parameters_of_system(poles, B, C, D, dtype=self.nu_log.dtype)
        return eqx.tree_at(_parameters, self, fields)


@partial(jax.jit, static_argnames="dtype")
def _parameters_of_system(
    poles: Array, B: Array, C: Array, D: Array, *, dtype: jnp.dtype
) -> tuple[Array, ...]:
    """The LRU parameters, in the order of ``_parameters``, whose system is ``(poles, B, C, D)``."""
    poles = clamp_away_from_zero(poles)
    modulus = jnp.abs(poles)
    phase = jnp.mod(jnp.angle(poles), 2 * jnp.pi)
    phase = jnp.where(phase == 0, 2 * jnp.pi, phase)
    gamma = jnp.sqrt(1 - modulus**2)
    B_re, B_im = split_complex(B / gamma[:, None], dtype)
    C_re, C_im = split_complex(C, dtype)
    return (
        jnp.log(-jnp.log(modulus)).astype(dtype),
        jnp.log(phase).astype(dtype),
        jnp.log(gamma).astype(dtype),
        B_re,
        B_im,
        C_re,
        C_im,
        D.astype(dtype),
    )


def _parameters(layer: LRU) -> tuple[Array, ...]:
    return (
        layer.nu_log,
        layer.theta_log,
        layer.gamma_log,
        layer.B_re,
        layer.B_im,
        layer.C_re,
        layer.C_im,
        layer.D,
    )
