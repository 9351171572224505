"""An S5-style layer (Smith et al., 2023): a continuous-time diagonal MIMO system, ZOH-discretised.

Lambda = -exp(Lambda_re_log) + i Lambda_im,   step = exp(log_step)   (per state)
Abar = exp(Lambda * step),   Bbar = ((Abar - 1) / Lambda)[:, None] * (B_re + i B_im)
x_k = Abar * x_(k-1) + Bbar u_k,   x_(-1) = 0
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

from ._system import checked_system, clamp_away_from_zero, split_complex
from .scan import linear_recurrence


class S5(eqx.Module):
    """A diagonal continuous-time MIMO recurrence with d_model inputs/outputs and state_dim states.

    Starts as S4D-Lin: ``Lambda = -0.5 + i pi k`` (k = 0..n-1), steps log-uniform in
    ``[step_min, step_max]``; B_re, B_im as N(0, 1 / (2 d_model)), C_re, C_im as N(0, 1 / n),
    D as N(0, 1). Call on one sequence ``u`` (L, d_model) -> (L, d_model); vmap for batches.
    """

    Lambda_re_log: Float[Array, " n"]
    Lambda_im: Float[Array, " n"]
    B_re: Float[Array, "n d_model"]
    B_im: Float[Array, "n d_model"]
    C_re: Float[Array, "d_model n"]
    C_im: Float[Array, "d_model n"]
    D: Float[Array, " d_model"]
    log_step: Float[Array, " n"]
    d_model: int = eqx.field(static=True)
    step_min: float = eqx.field(static=True)
    step_max: float = eqx.field(static=True)

    #: The layer outputs ``Re(C x) + D u`` (see ``compressm_jax.ReducibleSSM``).
    real_output: ClassVar[bool] = True

    def __init__(
        self,
        d_model: int,
        state_dim: int,
        *,
        step_min: float = 1e-3,
        step_max: float = 1e-1,
        key: PRNGKeyArray,
    ) -> None:
        if not 0 < step_min <= step_max:
            msg = f"S5 needs 0 < step_min <= step_max, got step_min={step_min}, step_max={step_max}"
            raise ValueError(msg)
        b_re_key, b_im_key, c_re_key, c_im_key, d_key, step_key = jax.random.split(key, 6)
        self.Lambda_re_log = jnp.full((state_dim,), math.log(0.5))
        self.Lambda_im = math.pi * jnp.arange(state_dim, dtype=self.Lambda_re_log.dtype)
        b_scale = 1 / math.sqrt(2 * d_model)
        c_scale = 1 / math.sqrt(state_dim)
        self.B_re = b_scale * jax.random.normal(b_re_key, (state_dim, d_model))
        self.B_im = b_scale * jax.random.normal(b_im_key, (state_dim, d_model))
        self.C_re = c_scale * jax.random.normal(c_re_key, (d_model, state_dim))
        self.C_im = c_scale * jax.random.normal(c_im_key, (d_model, state_dim))
        self.D = jax.random.normal(d_key, (d_model,))
        self.log_step = jax.random.uniform(
            step_key, (state_dim,), minval=math.log(step_min), maxval=math.log(step_max)
        )
        self.d_model = d_model
        self.step_min = step_min
        self.step_max = step_max

    @property
    def state_dim(self) -> int:
        return self.Lambda_re_log.shape[0]

    def continuous_poles(self) -> Complex[Array, " n"]:
        """``Lambda = -exp(Lambda_re_log) + i Lambda_im``."""
        return -jnp.exp(self.Lambda_re_log) + 1j * self.Lambda_im

    def discretise(self) -> tuple[Complex[Array, " n"], Complex[Array, "n d_model"]]:
        """Zero-order hold: ``(Abar, Bbar)``."""
        Lambda = self.continuous_poles()
        Abar = jnp.exp(Lambda * jnp.exp(self.log_step))
        Bbar = ((Abar - 1) / Lambda)[:, None] * (self.B_re + 1j * self.B_im)
        return Abar, Bbar

    def output_matrix(self) -> Complex[Array, "d_model n"]:
        return self.C_re + 1j * self.C_im

    def __call__(self, u: Float[Array, "L d_model"]) -> Float[Array, "L d_model"]:
        Abar, Bbar = self.discretise()
        states = linear_recurrence(Abar, u @ Bbar.T)
        return jnp.real(states @ self.output_matrix().T) + self.D * u

    def ssm_system(self) -> cc.DiagonalStateSpace:
        """``(Abar, Bbar, C, diag(D))``, complex, differentiable."""
        Abar, Bbar = self.discretise()
        return cc.DiagonalStateSpace(Abar, Bbar, self.output_matrix(), jnp.diag(self.D))

    def with_system(self, system: cc.DiagonalStateSpace) -> S5:
        """A new S5 of order ``system.n`` whose discretised recurrence is ``system``.

        Every new state gets the mean of the old ``log_step`` (reduced states mix the old
        ones, so no single old step belongs to them); then ``Lambda = log(p) / step``
        (principal logarithm), ``B = system.B * Lambda / (p - 1)``, C = system.C,
        D = diag(system.D). ``self`` is unchanged. ValueError if a pole has |p| >= 1.
        """
        poles, B, C, D = checked_system(system, self.d_model, "S5")
        fields = _parameters_of_system(
            poles, B, C, D, jnp.mean(self.log_step), dtype=self.Lambda_re_log.dtype
        )
        return eqx.tree_at(_parameters, self, fields)


@partial(jax.jit, static_argnames="dtype")
def _parameters_of_system(
    poles: Array, B: Array, C: Array, D: Array, log_step: Array, *, dtype: jnp.dtype
) -> tuple[Array, ...]:
    """The S5 parameters, in the order of ``_parameters``, whose ZOH system with step
    ``exp(log_step)`` for every state is ``(poles, B, C, D)``."""
    poles = clamp_away_from_zero(poles)
    log_steps = jnp.full(poles.shape, log_step)
    Lambda = jnp.log(poles) / jnp.exp(log_steps)
    B_re, B_im = split_complex(B * (Lambda / (poles - 1))[:, None], dtype)
    C_re, C_im = split_complex(C, dtype)
    return (
        jnp.log(-jnp.real(Lambda)).astype(dtype),
        jnp.imag(Lambda).astype(dtype),
        B_re,
        B_im,
        C_re,
        C_im,
        D.astype(dtype),
        log_steps.astype(dtype),
    )


def _parameters(layer: S5) -> tuple[Array, ...]:
    return (
        layer.Lambda_re_log,
        layer.Lambda_im,
        layer.B_re,
        layer.B_im,
        layer.C_re,
        layer.C_im,
        layer.D,
        layer.log_step,
    )
