"""The JAX trainer's compile clock: JAX's own compile time spans, merged, kept apart from work."""

import equinox as eqx
import jax.numpy as jnp
from hypothesis import given
from hypothesis import strategies as st

from reference_models.train.jax_compile import (
    _covered_seconds,
    array_shapes,
    compile_ahead,
    timed_apart,
)


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 10)), max_size=8))
def test_covered_seconds_is_the_length_of_the_union(starts_and_lengths):
    spans = [(start, start + length) for start, length in starts_and_lengths]
    covered_cells = {cell for start, end in spans for cell in range(start, end)}  # brute force
    assert _covered_seconds([(float(a), float(b)) for a, b in spans]) == len(covered_cells)


def _fresh_function():
    return eqx.filter_jit(lambda x: jnp.sin(x) @ x.T)


def test_timed_apart_counts_compilation_once_per_shape():
    f = _fresh_function()
    x = jnp.ones((3, 4))
    result, working, compiling = timed_apart(lambda: f(x).block_until_ready())
    assert result.shape == (3, 3) and compiling > 0 and working >= 0
    assert timed_apart(lambda: f(x).block_until_ready())[2] == 0  # cached
    assert timed_apart(lambda: f(jnp.ones((5, 4))).block_until_ready())[2] > 0  # new shapes


def test_compile_ahead_leaves_nothing_to_compile_for_the_call():
    f = _fresh_function()
    x = jnp.ones((6, 2))
    assert compile_ahead(f, x) > 0
    assert timed_apart(lambda: f(x).block_until_ready())[2] == 0


def test_array_shapes_change_with_a_reduction_only():
    model = {"A": jnp.zeros((4, 4)), "b": jnp.zeros(4), "name": "layer"}
    assert array_shapes(model) == array_shapes({**model, "A": jnp.ones((4, 4))})
    assert array_shapes(model) != array_shapes({**model, "A": jnp.zeros((3, 3))})
    assert array_shapes(model) == [((4, 4), jnp.zeros(1).dtype), ((4,), jnp.zeros(1).dtype)]
