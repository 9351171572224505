"""Helpers shared by the diagonal SSM layers: complex dtypes, reading systems, rebuilding."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor, nn

import compressm_core as cc

Layer = TypeVar("Layer", bound=nn.Module)


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """complex128 for float64, complex64 otherwise."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def checked_system(
    system: cc.DiagonalStateSpace, d_model: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(poles, B, C, D_diagonal)`` of an unbatched, stable, square (d_model in and out) system.

    poles, B and C are cast to complex (real systems are accepted); ``D_diagonal`` is the
    real part of the diagonal of ``system.D`` (zeros when it is None).
    Raises ValueError for batched or mis-shaped systems and for poles with |p| >= 1 or p = 0.
    """
    if system.poles.ndim != 1:
        msg = f"`system` must be unbatched (poles of shape (n,)), got poles {tuple(system.poles.shape)}"
        raise ValueError(msg)
    if (system.m, system.p) != (d_model, d_model):
        msg = f"`system` must map {d_model} inputs to {d_model} outputs, got m={system.m}, p={system.p}"
        raise ValueError(msg)
    modulus = system.poles.abs()
    if bool((modulus >= 1).any()):
        msg = f"layer is unstable after reduction: `system` has a pole of modulus {float(modulus.max()):.6g} >= 1"
        raise ValueError(msg)
    if bool((modulus == 0).any()):
        msg = "`system` has a pole at 0, which the layer's exp parameterisation cannot represent"
        raise ValueError(msg)
    if system.D is None:
        diagonal = torch.zeros(d_model, dtype=modulus.dtype, device=modulus.device)
    else:
        diagonal = torch.real(torch.diagonal(system.D))
    dtype = complex_dtype(modulus.dtype)
    return system.poles.to(dtype), system.B.to(dtype), system.C.to(dtype), diagonal


def rebuild(layer: Layer, state_dim: int, values: dict[str, Tensor]) -> Layer:
    """A new layer like ``layer`` (class, ``layer.hyper_parameters()``, dtype, device, training
    mode, requires_grad of each parameter) of order ``state_dim`` whose parameters are the
    real tensors ``values`` (cast and copied).

    The new layer is built with ``torch.nn.utils.skip_init``: no random initialisation runs,
    so the global random number generator is left untouched.
    """
    reference = next(layer.parameters())
    new = nn.utils.skip_init(
        type(layer),
        state_dim=state_dim,
        device=reference.device,
        dtype=reference.dtype,
        **layer.hyper_parameters(),
    )
    with torch.no_grad():
        for name, old in layer.named_parameters(recurse=False):
            parameter = getattr(new, name)
            parameter.copy_(values[name].to(parameter.dtype))
            parameter.requires_grad_(old.requires_grad)
    return new.train(layer.training)
