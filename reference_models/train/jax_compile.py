"""How long JAX spends compiling, so that the trainer can keep it apart from a reduction's work.

Every reduction gives the model new shapes, and JAX compiles every program it runs on them
once: the read-out of the layers' systems, the optimizer rebuild, the evaluation and the
training step. That cost does not depend on the analysis and is recorded on its own
(``reduction_compile_s`` in metrics.json), as PyTorch, which compiles nothing, would have it.
The durations come from JAX itself (``jax.monitoring`` time spans of tracing, lowering and
XLA compilation, hits of the persistent compilation cache included), merged so that nested
spans count once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jax

COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def _covered_seconds(spans: list[tuple[float, float]]) -> float:
    """The length of the union of the intervals ``spans`` [(start, end), ...]."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@contextmanager
def compile_spans() -> Iterator[list[tuple[float, float]]]:
    """Collects the (start, end) time spans of every JAX compilation in the ``with`` block."""
    spans: list[tuple[float, float]] = []

    def listener(event: str, start: float, end: float, **_: Any) -> None:
        if event in COMPILE_EVENTS:
            spans.append((start, end))

    jax.monitoring.register_event_time_span_listener(listener)
    try:
        yield spans
    finally:
        jax.monitoring.unregister_event_time_span_listener(listener)


def timed_apart(call: Callable[[], Any]) -> tuple[Any, float, float]:
    """``call()``, its wall-clock seconds without JAX compilation, and the compilation seconds
    (tracing, lowering and XLA) spent inside it."""
    with compile_spans() as spans:
        start = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - start
    compiling = min(_covered_seconds(spans), elapsed)
    return result, elapsed - compiling, compiling


def array_shapes(tree: Any) -> list[tuple[tuple[int, ...], Any]]:
    """The (shape, dtype) of every array leaf of ``tree``, in order: what a compiled program
    is specialised to (a reduction changes them)."""
    return [(leaf.shape, leaf.dtype) for leaf in jax.tree_util.tree_leaves(tree) if hasattr(leaf, "shape")]


def compile_ahead(function: Any, *args: Any) -> float:
    """Compile the jitted ``function`` for ``args`` now (``lower(*args).compile()``) so that its
    next call with arrays of these shapes runs at once; the seconds it took."""
    start = time.perf_counter()
    function.lower(*args).compile()
    return time.perf_counter() - start
