"""Tessera numerical golden model: the single arithmetic contract of the project.

The RTL testbenches, the instruction simulator, the compiler and the driver all
use this module, and only this module, for int8/int32 arithmetic.
Everything here is exact integer arithmetic, numpy-vectorized. Floating
point appears only in :func:`quantize_multiplier` (which turns a real scale
into an integer multiplier once, at compile time) and, as a speed-up that is
provably exact, inside :func:`gemm`.

Conventions
===========

* ``int8``  is the range [INT8_MIN, INT8_MAX]   = [-128, 127].
* ``int32`` is the range [INT32_MIN, INT32_MAX] = [-2**31, 2**31 - 1].
* ``wrap32(v) = ((v + 2**31) mod 2**32) - 2**31`` (two's-complement wrap).
* ``/`` below is exact rational division; ``floor``/``trunc`` are explicit.
* The last axis of an accumulator is the output channel ``n``. Per-channel
  parameters are 1-D arrays of length N that broadcast over that axis; a
  scalar parameter applies to the whole tensor.

Data path of one dense (fully connected / 1x1 conv / matmul) layer
==================================================================

1. GEMM with wrapping int32 accumulator (:func:`gemm`)::

       acc[m, n] = wrap32( sum_k a[m, k] * b[k, n]  +  bias[n] )

   The sum is formed exactly (int64 values) and wrapped once at the end. Because
   ``wrap32`` is a ring homomorphism (mod 2**32), this is bit-identical to the
   hardware accumulator, which wraps in two's complement after every
   multiply-accumulate, whatever the accumulation order. With all operands
   -128 the products are 2**14, so K <= 131071 can never overflow and
   K = 131072 can (131072 * 2**14 = 2**31 wraps to INT32_MIN).

   Input/weight zero points are not part of this model: ``a`` and ``b`` are
   the raw int8 codes. A compiler handling a non-zero input zero point ``zx``
   folds it into the bias, ``bias'[n] = bias[n] - zx * sum_k b[k, n]``, which
   is exact modulo 2**32.

2. Fixed-point rescale (:func:`multiply_by_quantized_multiplier`), TFLite's
   ``MultiplyByQuantizedMultiplier`` (the gemmlowp "double rounding" variant)
   with a Q31 ``multiplier`` in [0, INT32_MAX] and ``shift`` in [-31, 30]
   (TFLite sign convention: positive = left shift)::

       left  = max(shift, 0)
       right = max(-shift, 0)
       y     = RDBPOT( SRDHM( wrap32(acc * 2**left), multiplier ), right )

   where (gemmlowp)::

       SRDHM(a, b)  = INT32_MAX                        if a == b == INT32_MIN
                    = trunc((a*b + nudge) / 2**31)     otherwise,
                      nudge = 2**30 if a*b >= 0 else 1 - 2**30
                    = floor(a*b / 2**31 + 1/2)         (round half up, i.e.
                                                        ties toward +inf)

       RDBPOT(x, e) = floor(x / 2**e) + (1 if r > t else 0),
                      r = x mod 2**e  (= x & (2**e - 1)),
                      t = floor((2**e - 1) / 2) + (1 if x < 0 else 0)
                    = round-half-away-from-zero(x / 2**e)

   The left shift wraps in two's complement, like TFLite's optimized kernels
   (the reference kernel's signed overflow is undefined behaviour in C++).
   Note the result is rounded twice (once in SRDHM, once in RDBPOT), so it
   can differ by one from round(acc * multiplier * 2**(shift - 31)); that is
   the contract, matching TFLite's non-``TFLITE_SINGLE_ROUNDING`` build.

3. Output stage (:func:`requantize`)::

       out = int8( clamp( y + output_zero_point, act_min, act_max ) )

   with the addition done in int64 (no int32 overflow). Fused activations are
   expressed purely through ``act_min``/``act_max``: none is [-128, 127];
   ReLU is ``act_min = output_zero_point``; ReLU6 is
   ``act_min = output_zero_point``,
   ``act_max = min(127, output_zero_point + round(6 / output_scale))`` (round
   half away from zero, as TFLite) -- computed by the caller.

:func:`dense` chains the three steps.

Choosing the multiplier (:func:`quantize_multiplier`, TFLite's
``QuantizeMultiplier``): for a real scale ``s = input_scale * weight_scale /
output_scale`` (computed by the caller in float64), ``frexp(s) = (q, e)`` with
``q`` in [0.5, 1); ``multiplier = round_half_away(q * 2**31)``, ``shift = e``
(so ``s ~= multiplier * 2**(shift - 31)``), with the carry, underflow and
overflow adjustments documented on the function. :func:`quantize_multipliers`
does the same elementwise for a 1-D array of per-channel scales.

Input checking
==============

Data-path functions (:func:`gemm`, :func:`requantize`, :func:`dense`) are
strict about dtypes: int8 operands, int32 accumulators/biases, no silent
casts. The fixed-point primitives (:func:`saturating_rounding_doubling_high_mul`,
:func:`rounding_divide_by_pot`, :func:`multiply_by_quantized_multiplier`) and
the parameters (multiplier, shift, zero point, activation bounds) accept any
integer dtype or Python ints, but every value must lie in the documented range.
Violations raise ``TypeError`` (wrong kind of object/dtype) or ``ValueError``
(wrong shape or value); the message names the argument and what was given.

Scalar (0-d) inputs give numpy scalars; array inputs give numpy arrays.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "INT8_MIN",
    "INT8_MAX",
    "INT32_MIN",
    "INT32_MAX",
    "wrap_int32",
    "gemm",
    "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "quantize_multiplier",
    "quantize_multipliers",
    "requantize",
    "dense",
]

INT8_MIN = -(2**7)
INT8_MAX = 2**7 - 1
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

# Shift range accepted by multiply_by_quantized_multiplier (TFLite convention,
# positive = left shift). -31 is the smallest shift QuantizeMultiplier emits;
# 30 is the largest.
SHIFT_MIN = -31
SHIFT_MAX = 30


# ---------------------------------------------------------------------------
# Internal helpers
# ---------------------------------------------------------------------------


def _is_int_kind(dtype: np.dtype) -> bool:
    return dtype.kind in "iu"


def _describe(value) -> str:
    """Short description of a bad value for error messages."""
    if isinstance(value, np.ndarray):
        return f"array of dtype {value.dtype} with shape {value.shape}"
    return f"{value!r} ({type(value).__name__})"


def _first_bad(arr: np.ndarray, bad: np.ndarray):
    """First offending element of ``arr`` (as a Python number) where ``bad``."""
    v = arr[bad].flat[0]
    return v.item() if isinstance(v, np.generic) else v


_is_python_or_numpy_int = np.frompyfunc(
    lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)), 1, 1
)


def _int_values(name: str, value, lo: int, hi: int) -> np.ndarray:
    """Return ``value`` as an int64 ndarray after checking kind and range.

    Accepts Python ints (of any size), sequences of them, and numpy arrays /
    scalars of any integer dtype. Every element must lie in [lo, hi].
    """
    arr = np.asarray(value)
    if arr.dtype == object:
        if arr.size and not np.all(np.asarray(_is_python_or_numpy_int(arr), dtype=bool)):
            raise TypeError(f"{name} must contain integers only, got {_describe(value)}")
    elif not _is_int_kind(arr.dtype):
        raise TypeError(f"{name} must be an integer or integer array, not {_describe(value)}")
    if arr.size:
        bad = (arr < lo) | (arr > hi)
        if np.any(bad):
            raise ValueError(
                f"{name} must be in [{lo}, {hi}], got {_first_bad(arr, np.asarray(bad))}"
            )
    return arr.astype(np.int64)


def _int_scalar(name: str, value, lo: int, hi: int) -> int:
    """Check a per-tensor integer parameter and return it as a Python int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if not (isinstance(value, np.ndarray) and value.ndim == 0 and _is_int_kind(value.dtype)):
            raise TypeError(f"{name} must be an integer, not {_describe(value)}")
    v = int(value)
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def _require_array(name: str, value, kind_itemsize: tuple[str, int], dtype_name: str) -> np.ndarray:
    """Strict dtype check for data-path operands (no casting)."""
    if not isinstance(value, (np.ndarray, np.generic)):
        raise TypeError(
            f"{name} must be a numpy array with dtype {dtype_name}, not {type(value).__name__}"
        )
    arr = np.asarray(value)
    if (arr.dtype.kind, arr.dtype.itemsize) != kind_itemsize:
        raise TypeError(f"{name} must have dtype {dtype_name}, not {arr.dtype}")
    return arr


def _wrap64(x: np.ndarray) -> np.ndarray:
    """wrap32 for int64 arrays whose values are far from the int64 limits."""
    return (((x + 2**31) & 0xFFFFFFFF) - 2**31).astype(np.int32)


def _per_channel(name: str, value, lo: int, hi: int, x: np.ndarray, x_name: str) -> np.ndarray:
    """Validate a per-tensor (0-d) or per-channel (N,) parameter against ``x``."""
    arr = _int_values(name, value, lo, hi)
    if arr.ndim == 0:
        return arr
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a scalar (per-tensor) or 1-D (per-channel), got shape {arr.shape}"
        )
    if x.ndim == 0:
        raise ValueError(
            f"per-channel {name} (shape {arr.shape}) needs {x_name} with at least one axis, "
            f"got a scalar {x_name}"
        )
    if arr.shape[0] != x.shape[-1]:
        raise ValueError(
            f"{name} has {arr.shape[0]} per-channel entries but {x_name}.shape[-1] is "
            f"{x.shape[-1]} ({x_name}.shape = {x.shape})"
        )
    return arr


def _srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SRDHM on int64 arrays holding int32 values; returns int32."""
    ab = a * b  # |ab| <= 2**62: exact in int64
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    s = ab + nudge
    # C-style division by 2**31: truncate toward zero.
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, q).astype(np.int32)


def _rdbpot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """RDBPOT on int64 arrays (x holds int32 values, exponent in [0, 31]); returns int32."""
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return ((x >> exponent) + (remainder > threshold)).astype(np.int32)


def _mbqm(x: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """MultiplyByQuantizedMultiplier on validated int64 arrays; returns int32."""
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = _wrap64(x * (np.int64(1) << left))  # |x * 2**left| <= 2**61
    return _rdbpot(_srdhm(shifted.astype(np.int64), multiplier), right)


def _gemm(a, b, acc, names: tuple[str, str, str]) -> np.ndarray:
    a_name, b_name, acc_name = names
    a = _require_array(a_name, a, ("i", 1), "int8")
    b = _require_array(b_name, b, ("i", 1), "int8")
    if a.ndim != 2:
        raise ValueError(f"{a_name} must be 2-D (M, K), got shape {a.shape}")
    if b.ndim != 2:
        raise ValueError(f"{b_name} must be 2-D (K, N), got shape {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"inner dimensions differ: {a_name} has shape {a.shape} (K={a.shape[1]}) but "
            f"{b_name} has shape {b.shape} (K={b.shape[0]})"
        )
    out_shape = (a.shape[0], b.shape[1])
    # The exact integer sum, as int64. |a*b| <= 2**14, so |sum| <= K * 2**14. For
    # K <= 2**31 every product and every partial sum is an integer below 2**45 < 2**53,
    # hence exactly representable in float64 whatever the summation order, and the
    # (much faster) float64 BLAS product is exact. Otherwise use int64 (no overflow
    # before K > 2**49).
    if a.shape[1] <= 2**31:
        total = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    else:  # pragma: no cover - needs > 2 GiB operands
        total = a.astype(np.int64) @ b.astype(np.int64)
    if acc is not None:
        acc = _require_array(acc_name, acc, ("i", 4), "int32")
        try:
            bshape = np.broadcast_shapes(acc.shape, out_shape)
        except ValueError:
            bshape = None
        if bshape != out_shape:
            raise ValueError(
                f"{acc_name} with shape {acc.shape} is not broadcastable to the result "
                f"shape {out_shape}"
            )
        total = total + acc.astype(np.int64)
    return _wrap64(total)


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def wrap_int32(x):
    """Wrap integers to int32 in two's complement: ``((x + 2**31) mod 2**32) - 2**31``.

    ``x`` may be a Python int (any size), a sequence of them, or a numpy array
    or scalar of any integer dtype (signed or unsigned). Only the low 32 bits
    of each value are kept, exactly like a 32-bit hardware register.
    Returns ``np.int32`` (a numpy scalar for scalar input). Raises ``TypeError``
    for non-integer input (floats, bools).
    """
    arr = np.asarray(x)
    if arr.dtype == object:
        if arr.size and not np.all(np.asarray(_is_python_or_numpy_int(arr), dtype=bool)):
            raise TypeError(f"x must contain integers only, got {_describe(x)}")
        # Arbitrary-precision Python ints: reduce exactly, then the value fits int64.
        reduced = np.asarray((arr + 2**31) % 2**32 - 2**31, dtype=object).astype(np.int64)
        return reduced.astype(np.int32)[()]
    if not _is_int_kind(arr.dtype):
        raise TypeError(f"x must be an integer or integer array, not {_describe(x)}")
    # Signed -> uint64 is a modulo-2**64 conversion; keep the low 32 bits and
    # reinterpret them as int32.
    low = arr.astype(np.uint64) & np.uint64(0xFFFFFFFF)
    return low.astype(np.uint32).view(np.int32)[()]


def gemm(a, b, acc=None):
    """int8 x int8 -> int32 matrix product with a wrapping accumulator.

    ``out[m, n] = wrap32( sum_k int(a[m, k]) * int(b[k, n]) + acc[m, n] )``

    * ``a``: ``np.ndarray`` of dtype int8, shape (M, K).
    * ``b``: ``np.ndarray`` of dtype int8, shape (K, N).
    * ``acc``: optional int32 array broadcastable to (M, N) -- e.g. a (N,) bias
      or an (M, N) accumulator from a previous K-tile.

    The sum is computed exactly (as int64; via float64 BLAS where that is
    provably exact, see the code) and wrapped once; that equals the hardware's
    int32 accumulator, which wraps in two's complement at every step (wrapping
    commutes with addition modulo 2**32). Returns int32 (M, N).

    Raises ``TypeError`` for wrong dtypes ("a must have dtype int8, not
    float64") and ``ValueError`` for wrong ranks, mismatched K, or an ``acc``
    that does not broadcast to (M, N).
    """
    return _gemm(a, b, acc, ("a", "b", "acc"))


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp ``SaturatingRoundingDoublingHighMul``, elementwise.

    ``a`` and ``b`` are int32 values (any integer dtype or Python ints, each in
    [INT32_MIN, INT32_MAX]; they broadcast against each other)::

        if a == b == INT32_MIN:  result = INT32_MAX          (the only overflow)
        else:
            ab     = int64(a) * int64(b)
            nudge  = 2**30 if ab >= 0 else 1 - 2**30
            result = trunc((ab + nudge) / 2**31)              (C-style, toward 0)

    Equivalently ``floor(a*b / 2**31 + 1/2)``: the high word of ``2*a*b``
    rounded to nearest with ties toward +infinity. Returns int32.
    """
    a64 = _int_values("a", a, INT32_MIN, INT32_MAX)
    b64 = _int_values("b", b, INT32_MIN, INT32_MAX)
    return _srdhm(a64, b64)[()]


def rounding_divide_by_pot(x, exponent):
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero.

    ``x`` holds int32 values; ``exponent`` is an integer in [0, 31], scalar or
    an array broadcastable with ``x``::

        mask      = 2**exponent - 1
        remainder = x & mask
        threshold = (mask >> 1) + (1 if x < 0 else 0)
        result    = (x >> exponent) + (1 if remainder > threshold else 0)

    (``>>`` is an arithmetic shift, i.e. floor division.) ``exponent == 0`` is
    the identity. Returns int32. Raises ``ValueError`` naming the value for an
    exponent outside [0, 31].
    """
    x64 = _int_values("x", x, INT32_MIN, INT32_MAX)
    e64 = _int_values("exponent", exponent, 0, 31)
    return _rdbpot(x64, e64)[()]


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """TFLite ``MultiplyByQuantizedMultiplier`` (double-rounding variant).

    Computes approximately ``x * multiplier * 2**(shift - 31)``::

        left_shift  = max(shift, 0)
        right_shift = max(-shift, 0)
        result = RDBPOT( SRDHM( wrap32(x * 2**left_shift), multiplier ), right_shift )

    * ``x``: int32 values, any shape; the last axis is the output channel.
    * ``multiplier``: integer(s) in [0, INT32_MAX] (a Q31 fraction; normally
      in [2**30, 2**31 - 1] or 0, as produced by :func:`quantize_multiplier`).
    * ``shift``: integer(s) in [-31, 30], TFLite sign convention
      (positive = left shift).

    ``multiplier`` and ``shift`` are each either a scalar (per-tensor) or a
    1-D array of length ``x.shape[-1]`` (per-output-channel).

    The left shift wraps in two's complement (like TFLite's optimized
    kernels); callers that want no wrap must keep ``x * 2**left_shift``
    within int32.
    Returns int32.
    """
    x64 = _int_values("x", x, INT32_MIN, INT32_MAX)
    m64 = _per_channel("multiplier", multiplier, 0, INT32_MAX, x64, "x")
    s64 = _per_channel("shift", shift, SHIFT_MIN, SHIFT_MAX, x64, "x")
    return _mbqm(x64, m64, s64)[()]


def _quantize_multipliers_core(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized QuantizeMultiplier for a validated float64 array (finite, >= 0)."""
    q, e = np.frexp(real)  # real = q * 2**e, q in [0.5, 1) (q = 0 for real = 0)
    v = np.ldexp(q, 31)  # q * 2**31, exact (power-of-two scaling)
    fl = np.floor(v)
    # Round half away from zero (v >= 0); v - fl is exact.
    q_fixed = fl.astype(np.int64) + (v - fl >= 0.5)
    shift = e.astype(np.int64)
    carry = q_fixed == 2**31
    q_fixed = np.where(carry, q_fixed // 2, q_fixed)
    shift = np.where(carry, shift + 1, shift)
    underflow = shift < -31
    q_fixed = np.where(underflow, 0, q_fixed)
    shift = np.where(underflow, 0, shift)
    overflow = shift > 30
    q_fixed = np.where(overflow, INT32_MAX, q_fixed)
    shift = np.where(overflow, 30, shift)
    return q_fixed, shift


def quantize_multiplier(real_multiplier) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: real scale -> (multiplier, shift) as Python ints.

    For ``real_multiplier == 0``: ``(0, 0)``. Otherwise::

        q, shift = math.frexp(real_multiplier)      # real = q * 2**shift, q in [0.5, 1)
        q_fixed  = round_half_away_from_zero(q * 2**31)
        if q_fixed == 2**31:  q_fixed //= 2;  shift += 1
        if shift < -31:       q_fixed, shift = 0, 0              # underflow: all bits shifted out
        if shift > 30:        q_fixed, shift = 2**31 - 1, 30     # saturate

    so that ``real_multiplier ~= q_fixed * 2**(shift - 31)``. The result feeds
    :func:`multiply_by_quantized_multiplier`. ``real_multiplier`` is a single
    real number (Python/numpy float or int); for a 1-D array of per-channel
    scales use :func:`quantize_multipliers`. Raises ``ValueError`` naming the
    value for negative, NaN or infinite input.
    """
    if isinstance(real_multiplier, np.ndarray) and real_multiplier.ndim == 0:
        real_multiplier = real_multiplier[()]
    if isinstance(real_multiplier, (np.ndarray, list, tuple)):
        raise TypeError(
            "quantize_multiplier takes a single number; use quantize_multipliers() for a "
            f"per-channel array, got {_describe(real_multiplier)}"
        )
    if isinstance(real_multiplier, (bool, np.bool_)) or not isinstance(
        real_multiplier, numbers.Real
    ):
        raise TypeError(f"real_multiplier must be a real number, not {_describe(real_multiplier)}")
    try:
        r = float(real_multiplier)  # numpy scalars are converted to float64
    except OverflowError:  # a Python int beyond the float range
        r = math.inf
    if not math.isfinite(r) or r < 0:
        shown = real_multiplier if type(real_multiplier) is int else r
        raise ValueError(f"real_multiplier must be finite and >= 0, got {shown!r}")
    m, s = _quantize_multipliers_core(np.array([r], dtype=np.float64))
    return int(m[0]), int(s[0])


def quantize_multipliers(scales) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel :func:`quantize_multiplier`: 1-D scales -> (multipliers, shifts).

    Applies exactly the :func:`quantize_multiplier` formula to each element of
    the 1-D array ``scales`` (float or integer dtype, converted to float64) and
    returns two int32 arrays of the same length, ready to pass as per-channel
    ``multiplier``/``shift`` to :func:`requantize`. Raises ``ValueError``
    naming the first negative, NaN or infinite scale.
    """
    arr = np.asarray(scales)
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise TypeError(f"scales must be a real-valued array, not {_describe(scales)}")
    if arr.ndim != 1:
        raise ValueError(f"scales must be 1-D (one scale per channel), got shape {arr.shape}")
    r = arr.astype(np.float64)
    bad = ~np.isfinite(r) | (r < 0)
    if np.any(bad):
        raise ValueError(
            f"scales must be finite and >= 0, got {float(r[bad][0])!r} "
            f"at index {int(np.argmax(bad))}"
        )
    m, s = _quantize_multipliers_core(r)
    return m.astype(np.int32), s.astype(np.int32)


def requantize(acc, multiplier, shift, output_zero_point=0, act_min=INT8_MIN, act_max=INT8_MAX):
    """int32 accumulator -> int8 output (TFLite int8 output stage).

    ::

        y   = multiply_by_quantized_multiplier(acc, multiplier, shift)
        out = int8( clamp( int64(y) + output_zero_point, act_min, act_max ) )

    * ``acc``: ``np.ndarray`` of dtype int32, any shape; the last axis is the
      output channel.
    * ``multiplier`` in [0, INT32_MAX], ``shift`` in [-31, 30]: scalars
      (per-tensor) or 1-D arrays of length ``acc.shape[-1]`` (per-channel).
    * ``output_zero_point`` in [-128, 127] (per-tensor integer).
    * ``-128 <= act_min <= act_max <= 127`` (integers).

    The zero-point addition cannot overflow (done in int64). Fused activation
    is only the clamp: ReLU is ``act_min = output_zero_point``; ReLU6 is
    ``act_min = output_zero_point`` and ``act_max = min(127, output_zero_point
    + round(6 / output_scale))``, which the caller computes. Returns int8.
    """
    acc = _require_array("acc", acc, ("i", 4), "int32")
    zp = _int_scalar("output_zero_point", output_zero_point, INT8_MIN, INT8_MAX)
    lo = _int_scalar("act_min", act_min, INT8_MIN, INT8_MAX)
    hi = _int_scalar("act_max", act_max, INT8_MIN, INT8_MAX)
    if lo > hi:
        raise ValueError(f"act_min must be <= act_max, got act_min={lo}, act_max={hi}")
    acc64 = acc.astype(np.int64)
    m64 = _per_channel("multiplier", multiplier, 0, INT32_MAX, acc64, "acc")
    s64 = _per_channel("shift", shift, SHIFT_MIN, SHIFT_MAX, acc64, "acc")
    y = _mbqm(acc64, m64, s64).astype(np.int64) + zp
    return np.clip(y, lo, hi).astype(np.int8)[()]


def dense(x, w, bias, multiplier, shift, output_zero_point=0, act_min=INT8_MIN, act_max=INT8_MAX):
    """Quantized dense layer: ``requantize(gemm(x, w, bias), multiplier, shift, ...)``.

    * ``x``: int8 (M, K) activations; ``w``: int8 (K, N) weights.
    * ``bias``: int32 (N,) or ``None`` (zero points of ``x`` folded in by the
      caller, see the module docstring).
    * ``multiplier``/``shift``: per-tensor scalars or per-channel (N,) arrays.
    * ``output_zero_point``, ``act_min``, ``act_max``: as in :func:`requantize`.

    Returns int8 (M, N). Errors name ``x``, ``w`` and ``bias``.
    """
    if bias is not None:
        bias = _require_array("bias", bias, ("i", 4), "int32")
        if bias.ndim != 1:
            raise ValueError(f"bias must be 1-D with shape (N,), got shape {bias.shape}")
        if isinstance(w, np.ndarray) and w.ndim == 2 and bias.shape[0] != w.shape[1]:
            raise ValueError(
                f"bias must have shape (N,) = ({w.shape[1]},) to match w {w.shape}, "
                f"got shape {bias.shape}"
            )
    acc = _gemm(x, w, bias, ("x", "w", "bias"))
    return requantize(acc, multiplier, shift, output_zero_point, act_min, act_max)
