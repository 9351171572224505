"""Diagonal linear recurrences ``x_k = poles_k * x_(k-1) + inputs_k`` (``x_(-1) = 0``).

``diagonal_scan`` runs in O(log L) depth with ``jax.lax.associative_scan``;
``sequential_scan`` is the plain ``jax.lax.scan`` loop it is tested against.
"""



from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Inexact


def _compose(earlier: tuple[Array, Array], later: tuple[Array, Array]) -> tuple[Array, Array]:
    """Two affine maps ``x -> a x + b`` applied one after the other: ``later o earlier``."""
    a_earlier, b_earlier = earlier
    a_later, b_later = later
    return a_later * a_earlier, a_later * b_earlier + b_later


@partial(jax.jit, static_argnames="axis")
def diagonal_scan(
    poles: Inexact[Array, "... n"],
    inputs: Inexact[Array, "... seq n"],
    *,
    axis: int = -2,
) -> Inexact[Array, "... seq n"]:
    """All states of ``x_k = poles_k * x_(k-1) + inputs_k`` with ``x_(-1) = 0``, in parallel.

    ``inputs`` is (L, n) or (batch, L, n) with the sequence along ``axis``; ``poles`` is
    (n,) for a time-invariant recurrence or (L, n) / (batch, L, n) for a time-varying one,
    broadcast against ``inputs``. Returns the states, shaped like ``inputs``.
    """
    axis = _sequence_axis(axis, inputs)
    dtype = jnp.result_type(poles, inputs)
    poles = jnp.broadcast_to(poles, inputs.shape).astype(dtype)
    _, states = jax.lax.associative_scan(_compose, (poles, inputs.astype(dtype)), axis=axis)
    return states


@partial(jax.jit, static_argnames="axis")
def sequential_scan(
    poles: Inexact[Array, "... n"],
    inputs: Inexact[Array, "... seq n"],
    *,
    axis: int = -2,
) -> Inexact[Array, "... seq n"]:
    """The same recurrence as ``diagonal_scan``, one step at a time with ``jax.lax.scan``."""
    axis = _sequence_axis(axis, inputs)
    dtype = jnp.result_type(poles, inputs)
    poles = jnp.moveaxis(jnp.broadcast_to(poles, inputs.shape).astype(dtype), axis, 0)
    inputs = jnp.moveaxis(inputs.astype(dtype), axis, 0)

    def step(state: Array, pole_and_input: tuple[Array, Array]) -> tuple[Array, Array]:
        pole, value = pole_and_input
        state = pole * state + value
        return state, state

    _, states = jax.lax.scan(step, jnp.zeros_like(inputs[0]), (poles, inputs))
    return jnp.moveaxis(states, 0, axis)


def _sequence_axis(axis: int, inputs: Array) -> int:
    if inputs.ndim < 2 or not -inputs.ndim <= axis < inputs.ndim:
        msg = f"`axis` {axis} is not a sequence axis of `inputs` with shape {inputs.shape}"
        raise ValueError(msg)
    return axis % inputs.ndim
