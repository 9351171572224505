"""Diagonal linear recurrences ``x_k = poles_k * x_(k-1) + inputs_k`` (``x_(-1) = 0``).

``diagonal_scan`` runs in O(log L) depth with ``jax.lax.associative_scan``;
``sequential_scan`` is the plain ``jax.lax.scan`` loop it is tested against.
``linear_recurrence``, which the time-invariant layers (LRU, S5) call, picks one by backend.
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


def linear_recurrence(
    poles: Inexact[Array, "... n"],
    inputs: Inexact[Array, "... seq n"],
    *,
    axis: int = -2,
) -> Inexact[Array, "... seq n"]:
    """``sequential_scan`` when JAX computes on the CPU, ``diagonal_scan`` on accelerators.

    On a CPU the parallel scan only adds work (about 2 L log L products against L): for the
    demo's LRU (L = 40) the training step compiled 1.6x faster with the loop and ran as fast
    (8 states) or 1.8x faster (128 states), see benchmarks/RESULTS.md; compiling again after
    each reduction is what a JAX run pays for a cut. GPUs and TPUs need the O(log L) depth.
    """
    scan = sequential_scan if jax.default_backend() == "cpu" else diagonal_scan
    return scan(poles, inputs, axis=axis)


def _sequence_axis(axis: int, inputs: Array) -> int:
    if inputs.ndim < 2 or not -inputs.ndim <= axis < inputs.ndim:
        msg = f"`axis` {axis} is not a sequence axis of `inputs` with shape {inputs.shape}"
        raise ValueError(msg)
    return axis % inputs.ndim
