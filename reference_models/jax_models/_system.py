"""Checks and conversions shared by the layers' ``with_system``: a core system -> parameters."""



from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Complex, Float

import compressm_core as cc


def _known_true(condition: Array) -> bool:
    """``bool(condition)``, or False while tracing (the value is not known yet)."""
    try:
        return bool(condition)
    except jax.errors.ConcretizationTypeError:
        return False


def _check_shapes(system: cc.DiagonalStateSpace, d_model: int, layer: str) -> None:
    if not isinstance(system, cc.DiagonalStateSpace):
        msg = f"{layer}.with_system needs a compressm_core.DiagonalStateSpace, got {type(system).__name__}"
        raise ValueError(msg)
    if system.poles.ndim != 1 or system.m != d_model or system.p != d_model:
        msg = (
            f"{layer}.with_system: `system` must have poles (n,), B (n, {d_model}) and "
            f"C ({d_model}, n), got poles {tuple(system.poles.shape)}, B {tuple(system.B.shape)}, "
            f"C {tuple(system.C.shape)}"
        )
        raise ValueError(msg)


def _complex(x: Array) -> Complex[Array, "*shape"]:
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.complex64))


def checked_system(
    system: cc.DiagonalStateSpace, d_model: int, layer: str
) -> tuple[Complex[Array, " n"], Complex[Array, "n m"], Complex[Array, "p n"], Float[Array, " p"]]:
    """``(poles, B, C, diagonal of D)`` of a system a layer can take, as complex JAX arrays
    (D real: only ``Re(D)`` acts on the real output of real inputs; zeros when D is None).

    ValueError unless ``system`` is one unbatched ``DiagonalStateSpace`` with B (n, d_model),
    C (d_model, n), all poles inside the unit circle and a diagonal D (values are checked
    when they are concrete, not while tracing).
    """
    _check_shapes(system, d_model, layer)
    poles = _complex(system.poles)
    modulus = jnp.abs(poles)
    if _known_true(jnp.any(modulus >= 1)):
        msg = (
            f"{layer}.with_system: `system.poles` is unstable after reduction: a pole has "
            f"modulus {float(jnp.max(modulus)):.6g} >= 1"
        )
        raise ValueError(msg)
    B, C = _complex(system.B), _complex(system.C)
    if system.D is None:
        return poles, B, C, jnp.zeros(system.p, dtype=modulus.dtype)
    D = jnp.asarray(system.D)
    diagonal = jnp.diagonal(D)
    if _known_true(jnp.any(D != jnp.diag(diagonal))):
        msg = f"{layer}.with_system: `system.D` must be diagonal (the layer's D acts per channel)"
        raise ValueError(msg)
    return poles, B, C, jnp.real(diagonal)


def clamp_away_from_zero(poles: Complex[Array, " n"]) -> Complex[Array, " n"]:
    """Poles with modulus at least the dtype's smallest normal number, so that ``log|p|`` is
    finite; the change is far below the recurrence's rounding."""
    modulus = jnp.abs(poles)
    tiny = jnp.finfo(modulus.dtype).tiny
    return jnp.where(modulus < tiny, tiny, poles)


def split_complex(x: Complex[Array, "*shape"], dtype: jnp.dtype) -> tuple[Array, Array]:
    """Real and imaginary parts of ``x``, cast to the real ``dtype``."""
    return jnp.real(x).astype(dtype), jnp.imag(x).astype(dtype)
