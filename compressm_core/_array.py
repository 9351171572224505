"""Array-API helpers shared by the core: namespace inference, validation, small kernels.

Every public routine infers its namespace once (``namespace``) and passes ``xp``
down; nothing here imports a framework.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

Array = Any


def namespace(*arrays: Array, xp: Any = None) -> Any:
    """The array namespace of ``arrays`` (or ``xp`` when given)."""
    if xp is not None:
        return xp
    return array_api_compat.array_namespace(*[a for a in arrays if a is not None])


def is_traced(x: Array) -> bool:
    """True while ``x`` is being traced by a compiler (``jax.jit``/``jax.vmap``, ``torch.compile``):
    its values cannot be read on the host, so value checks are skipped and automatic choices that
    need them fall back to their static defaults. Looks only at frameworks already imported."""
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.core.Tracer):
        return True
    torch = sys.modules.get("torch")
    return torch is not None and hasattr(torch, "compiler") and torch.compiler.is_compiling()


def is_jax_traced(x: Array) -> bool:
    """True while ``x`` is a JAX tracer (``jax.jit``, ``jax.vmap``, ``jax.grad``)."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.core.Tracer)


def jax_host_call_on_cpu(
    on_host: Callable[..., Any], compiled: Callable[..., Array], shape: tuple[int, ...], dtype: Any, *args: Array
) -> Array:
    """``compiled(*args)`` for traced JAX ``args``, except where the computation is compiled for a
    CPU: there ``on_host(*numpy_args)`` runs on the host (``jax.pure_callback``), for routines
    XLA's CPU backend lacks or runs much slower. The platform is chosen when the computation is
    lowered (``jax.lax.platform_dependent``); derivatives are those of ``compiled``
    (``jax.custom_jvp``). ``on_host`` must be batched over leading axes: ``jax.vmap`` hands it the
    whole batch. The result has ``shape`` and ``dtype``.

    64-bit values cross to and from the host as 32-bit words: the callback's arrays are made under
    the configuration of the thread that runs it, which ``jax.enable_x64`` used as a context
    manager does not reach (float64 would arrive, or be returned, as float32)."""
    jax = sys.modules["jax"]
    in_dtypes = [x.dtype for x in args]

    def on_numpy(*words: Array) -> Any:
        arrays = (_from_words(to_numpy(w), d) for w, d in zip(words, in_dtypes, strict=True))
        return _to_words(on_host(*arrays), dtype)

    def host(*traced: Array) -> Array:
        words = jax.eval_shape(lambda x: _to_words(x, dtype, jax), jax.ShapeDtypeStruct(shape, dtype))
        returned = jax.pure_callback(on_numpy, words, *(_to_words(x, x.dtype, jax) for x in traced), vmap_method="broadcast_all")
        return _from_words(returned, dtype, jax)

    @jax.custom_jvp
    def call(*traced: Array) -> Array:
        return jax.lax.platform_dependent(*traced, cpu=host, default=compiled)

    @call.defjvp
    def call_jvp(primals: tuple[Array, ...], tangents: tuple[Array, ...]) -> tuple[Array, Array]:
        return jax.jvp(compiled, primals, tangents)

    return call(*args)


def _is_64_bit(dtype: Any) -> bool:
    return np.dtype(dtype) in (np.float64, np.complex128)


def _to_words(x: Array, dtype: Any, jax: Any = None) -> Array:
    """A float64 (complex128) array as uint32 words, (..., 2) ((..., 2, 2): real and imaginary
    parts), in JAX (``jax`` given) or NumPy; other dtypes as they are."""
    if not _is_64_bit(dtype):
        return x
    if jax is None:
        parts = np.stack([x.real, x.imag], axis=-1) if np.iscomplexobj(x) else x
        return np.ascontiguousarray(parts, dtype=np.float64)[..., None].view(np.uint32)
    parts = jax.numpy.stack([x.real, x.imag], axis=-1) if jax.numpy.iscomplexobj(x) else x
    return jax.lax.bitcast_convert_type(parts, jax.numpy.uint32)


def _from_words(words: Array, dtype: Any, jax: Any = None) -> Array:
    """The array of ``dtype`` whose words ``_to_words`` made, in JAX (``jax`` given) or NumPy."""
    if not _is_64_bit(dtype):
        return words
    if jax is None:
        parts = np.ascontiguousarray(words).view(np.float64)[..., 0]
    else:
        parts = jax.lax.bitcast_convert_type(words, jax.numpy.float64)
    return parts[..., 0] + 1j * parts[..., 1] if np.dtype(dtype).kind == "c" else parts


def concrete_bool(x: Array) -> bool | None:
    """``bool(x)``, or None while ``x`` is traced (its value is not known yet)."""
    return None if is_traced(x) else bool(x)


def device_of(x: Array) -> Any:
    return array_api_compat.device(x)


def on_cpu(x: Array) -> bool:
    """Whether ``x`` is in host memory (a CPU device), where NumPy can read it without a transfer."""
    device = device_of(x)
    return getattr(device, "platform", getattr(device, "type", device)) == "cpu"


def is_complex(x: Array, xp: Any) -> bool:
    return xp.isdtype(x.dtype, "complex floating")


def real_dtype(dtype: Any, xp: Any) -> Any:
    """float32 for float32/complex64, float64 for float64/complex128."""
    if dtype in (xp.float32, xp.complex64):
        return xp.float32
    return xp.float64


def complex_dtype(dtype: Any, xp: Any) -> Any:
    """complex64 for float32/complex64, complex128 for float64/complex128."""
    if dtype in (xp.float32, xp.complex64):
        return xp.complex64
    return xp.complex128


def result_dtype(xp: Any, *arrays: Array) -> Any:
    return xp.result_type(*[a.dtype for a in arrays if a is not None])


def eps(dtype: Any, xp: Any) -> float:
    return float(xp.finfo(real_dtype(dtype, xp)).eps)


def mH(x: Array, xp: Any) -> Array:
    """Conjugate transpose of the last two axes."""
    xt = xp.matrix_transpose(x)
    return xp.conj(xt) if is_complex(x, xp) else xt


def conj(x: Array, xp: Any) -> Array:
    return xp.conj(x) if is_complex(x, xp) else x


def eye(n: int, dtype: Any, like: Array, xp: Any) -> Array:
    return xp.eye(n, dtype=dtype, device=device_of(like))


def diag_embed(v: Array, xp: Any) -> Array:
    """(..., n) -> (..., n, n) with ``v`` on the diagonal."""
    n = v.shape[-1]
    return v[..., None] * eye(n, v.dtype, v, xp)


def diagonal(x: Array, xp: Any) -> Array:
    """(..., n, n) -> (..., n)."""
    return xp.linalg.diagonal(x)


def abs2(x: Array, xp: Any) -> Array:
    """|x|^2 elementwise, real-valued."""
    if is_complex(x, xp):
        return xp.real(x) ** 2 + xp.imag(x) ** 2
    return x * x


def frobenius_norm(x: Array, xp: Any) -> Array:
    """Frobenius norm over the last two axes, shape (...)."""
    return xp.sqrt(xp.sum(abs2(x, xp), axis=(-2, -1)))


def to_numpy(x: Array) -> Any:
    """``x`` as a NumPy array on the host: without a copy for CPU tensors and CPU JAX arrays (a
    read-only view for JAX), a copy moved from any other device. Used only where a namespace lacks a routine
    or NumPy's is much faster."""
    if hasattr(x, "detach"):  # torch tensors need detach + cpu before NumPy sees them
        x = x.detach().cpu()
    return np.asarray(x)


def from_numpy(a: Any, like: Array, xp: Any) -> Array:
    """``a`` as an array of ``xp`` on the device of ``like``."""
    return xp.asarray(a, device=device_of(like))


# --- validation -----------------------------------------------------------------


def check_floating(name: str, x: Array, xp: Any) -> None:
    """ValueError unless ``x`` is float32, float64, complex64 or complex128 (half precision
    and bfloat16 have too few digits for Gramians; cast them first)."""
    if x.dtype not in (xp.float32, xp.float64, xp.complex64, xp.complex128):
        msg = (
            f"`{name}` must be float32, float64, complex64 or complex128, got {x.dtype}"
            " (cast half-precision or integer arrays to float32 or float64 first)"
        )
        raise ValueError(msg)


def check_integer(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int (any integer type, e.g. ``np.int64``, but not bool) in [low, high]."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or not low <= number <= high:
        msg = f"`{name}` must be an integer in [{low}, {high}], got {value!r}"
        raise ValueError(msg)
    return number


def check_finite(name: str, x: Array, xp: Any) -> None:
    """ValueError when ``x`` holds NaN or Inf; nothing is checked while ``x`` is traced."""
    finite = xp.isfinite(x)
    if concrete_bool(xp.all(finite)) is False:
        bad = int(xp.sum(xp.astype(xp.logical_not(finite), xp.int64)))
        msg = f"`{name}` holds {bad} NaN or Inf value(s) (shape {tuple(x.shape)})"
        raise ValueError(msg)


def check_square(name: str, x: Array) -> None:
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        msg = f"`{name}` must be a (..., n, n) square matrix, got shape {tuple(x.shape)}"
        raise ValueError(msg)


def batch_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast of several batch shapes; ValueError if they do not broadcast."""
    ndim = max([0, *(len(s) for s in shapes)])
    out = []
    for axis in range(ndim):
        sizes = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            msg = f"batch shapes {shapes} do not broadcast"
            raise ValueError(msg)
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)
