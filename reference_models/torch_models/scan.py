"""Linear recurrences ``x_k = poles_k * x_(k-1) + inputs_k`` (elementwise, ``x_(-1) = 0``).

``diagonal_scan`` is the one the models use: an odd-even parallel prefix scan (the
work-efficient scheme of ``jax.lax.associative_scan``) with ceil(log2 L) levels of
vectorised tensor operations and no Python loop over the sequence. ``sequential_scan``
is the plain loop, kept as a reference for tests and benchmarks. Both are differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def _check_shapes(poles: Tensor, inputs: Tensor) -> bool:
    """True when ``poles`` is time-varying; ValueError when the shapes do not fit."""
    if inputs.ndim < 2:
        msg = f"`inputs` must have shape (..., L, n), got {tuple(inputs.shape)}"
        raise ValueError(msg)
    if poles.ndim == 1 and poles.shape[0] == inputs.shape[-1]:
        return False
    if poles.ndim >= 2 and poles.shape[-2:] == inputs.shape[-2:]:
        return True
    msg = (
        f"`poles` must have shape (n,) or (..., L, n) matching `inputs` {tuple(inputs.shape)}, "
        f"got {tuple(poles.shape)}"
    )
    raise ValueError(msg)


def _pairs(x: Tensor) -> tuple[Tensor, Tensor]:
    """Elements 0, 2, 4, ... and 1, 3, 5, ... along axis -2 (even length).

    Built from ``unflatten``/``unbind`` rather than strided slicing: their backward is one
    ``stack``, where slicing would zero-fill a full-size gradient per slice.
    """
    return x.unflatten(-2, (x.shape[-2] // 2, 2)).unbind(-2)


def _odd_even_scan(poles: Tensor, inputs: Tensor, time_varying: bool) -> Tensor:
    """Combine neighbouring pairs, scan the pairs (half the length), then fill in the evens."""
    length = inputs.shape[-2]
    if length <= 1:
        return inputs
    if length % 2:  # pad one step at the end, drop its state
        padded_poles = F.pad(poles, (0, 0, 0, 1)) if time_varying else poles
        states = _odd_even_scan(padded_poles, F.pad(inputs, (0, 0, 0, 1)), time_varying)
        return F.pad(states, (0, 0, 0, -1))
    left, right = _pairs(inputs)
    left_poles, right_poles = _pairs(poles) if time_varying else (poles, poles)
    odd = _odd_even_scan(
        right_poles * left_poles, torch.addcmul(right, right_poles, left), time_varying
    )
    even = torch.addcmul(left, left_poles, F.pad(odd, (0, 0, 1, -1)))  # x_2j = a_2j x_2j-1 + u_2j
    return torch.stack([even, odd], dim=-2).flatten(-3, -2)


def diagonal_scan(poles: Tensor, inputs: Tensor) -> Tensor:
    """All states of ``x_k = poles_k * x_(k-1) + inputs_k`` with ``x_(-1) = 0``, (..., L, n).

    ``inputs`` is (..., L, n), usually complex; ``poles`` is (n,) (time-invariant) or
    (..., L, n) (time-varying, broadcastable against ``inputs``). O(L n) work in
    ceil(log2 L) vectorised levels.
    """
    time_varying = _check_shapes(poles, inputs)
    return _odd_even_scan(poles, inputs, time_varying)


def sequential_scan(poles: Tensor, inputs: Tensor) -> Tensor:
    """The same recurrence as ``diagonal_scan`` by a Python loop over L (reference only)."""
    time_varying = _check_shapes(poles, inputs)
    steps = inputs.unbind(-2)  # one backward node for all steps, unlike indexing per step
    step_poles = poles.unbind(-2) if time_varying else [poles] * len(steps)
    state = torch.zeros_like(steps[0])
    states = []
    for pole, step in zip(step_poles, steps, strict=True):
        state = pole * state + step
        states.append(state)
    return torch.stack(states, dim=-2)
