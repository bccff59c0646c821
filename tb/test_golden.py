"""Tests for the numerical golden model ``tessera.sim.golden``.

Two kinds of tests:

* hand-checked cases, with the arithmetic worked out in comments;
* property tests comparing the vectorized numpy code against reference
  formulations written here with Python ints / ``fractions.Fraction`` (exact,
  arbitrary precision). The references never call the code under test, and
  they are written from the *mathematical* definitions (round half up, round
  half away from zero, wrap modulo 2**32, ...) rather than by transcribing
  the bit tricks used in ``golden.py``.

Random tests use a seeded ``numpy.random.Generator``. Each prints its seed
(shown by pytest on failure, or always with ``-s``). Reproduce with
``TESSERA_SEED=<int> pytest tb/test_golden.py`` (or ``--seed <int>``).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import pytest

from tessera.sim import golden as g

I32_MIN = -(2**31)
I32_MAX = 2**31 - 1
DEFAULT_SEED = 0x7E55E7A


# ---------------------------------------------------------------------------
# Seeds and random data
# ---------------------------------------------------------------------------


def make_rng() -> np.random.Generator:
    """Generator seeded from $TESSERA_SEED if set, else DEFAULT_SEED; prints the seed.

    tb/conftest.py exports TESSERA_SEED for the whole session (from --seed, the
    environment, or a fresh random seed), so under pytest every run is
    reproducible from the printed seed.
    """
    env = os.environ.get("TESSERA_SEED", "").strip()
    seed = int(env) if env else DEFAULT_SEED
    print(f"seed={seed}")
    return np.random.default_rng(seed)


# Values that break fixed-point code: the int32 limits, 0, +-1, and the
# powers of two / half-way points around the Q31 rounding positions.
INT32_SPECIAL = [
    I32_MIN, I32_MIN + 1, I32_MAX, I32_MAX - 1, 0, 1, -1, 2, -2, 3, -3,
    2**30, -(2**30), 2**30 - 1, -(2**30) + 1, 2**30 + 1, -(2**30) - 1,
    2**15, -(2**15), 3 * 2**29, -3 * 2**29, 2**16 - 1, -(2**16) + 1,
]


def int32_mix(rng: np.random.Generator, n: int) -> np.ndarray:
    """n int32 values (as int64): 1/3 uniform, 1/3 log-uniform magnitude, 1/3 special."""
    uniform = rng.integers(I32_MIN, I32_MAX, size=n, endpoint=True)
    bits = rng.integers(0, 32, size=n)  # magnitude < 2**bits, bits in [0, 31]
    mag = rng.integers(0, 2**bits)
    logu = np.where(rng.integers(0, 2, size=n) == 1, mag, -mag)
    special = rng.choice(np.array(INT32_SPECIAL, dtype=np.int64), size=n)
    which = rng.integers(0, 3, size=n)
    return np.choose(which, [uniform, logu, special]).astype(np.int64)


def to_i32(values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.int64)
    assert arr.min(initial=0) >= I32_MIN and arr.max(initial=0) <= I32_MAX
    return arr.astype(np.int32)


# ---------------------------------------------------------------------------
# Independent exact reference formulations (Python ints / Fractions)
# ---------------------------------------------------------------------------

HALF = Fraction(1, 2)


def ref_wrap32(v: int) -> int:
    """Two's-complement wrap: the unique w in [-2**31, 2**31) with w == v (mod 2**32)."""
    w = v % 2**32
    return w - 2**32 if w >= 2**31 else w


def ref_round_half_up(q: Fraction) -> int:
    return math.floor(q + HALF)


def ref_round_half_away(q: Fraction) -> int:
    r = math.floor(abs(q) + HALF)
    return r if q >= 0 else -r


def ref_srdhm(a: int, b: int) -> int:
    """2*a*b / 2**32 rounded to nearest, ties toward +inf; saturates at INT32_MIN**2."""
    if a == b == I32_MIN:
        return I32_MAX
    return ref_round_half_up(Fraction(a * b, 2**31))


def ref_srdhm_c(a: int, b: int) -> int:
    """Literal transcription of gemmlowp's C code (nudge, then truncating division)."""
    if a == b == I32_MIN:
        return I32_MAX
    ab = a * b
    s = ab + (2**30 if ab >= 0 else 1 - 2**30)
    q = abs(s) // 2**31  # C '/' truncates toward zero
    return q if s >= 0 else -q


def ref_rdbpot(x: int, e: int) -> int:
    """x / 2**e rounded to nearest, ties away from zero."""
    return ref_round_half_away(Fraction(x, 2**e))


def ref_mbqm(x: int, m: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return ref_rdbpot(ref_srdhm(ref_wrap32(x * 2**left), m), right)


def ref_requantize(acc: int, m: int, shift: int, zp: int, lo: int, hi: int) -> int:
    return min(max(ref_mbqm(acc, m, shift) + zp, lo), hi)


def ref_gemm(a: np.ndarray, b: np.ndarray, acc=None) -> np.ndarray:
    """Accumulate like the hardware: start from acc, wrap to int32 after every MAC."""
    M, K = a.shape
    N = b.shape[1]
    al, bl = a.tolist(), b.tolist()
    accb = np.broadcast_to(np.zeros((), np.int64) if acc is None else acc, (M, N)).tolist()
    out = [[0] * N for _ in range(M)]
    for m in range(M):
        for n in range(N):
            s = accb[m][n]
            for k in range(K):
                s = ref_wrap32(s + al[m][k] * bl[k][n])
            out[m][n] = s
    return np.array(out, dtype=np.int64).reshape(M, N)


def ref_quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier from the definition, with exact rationals (no frexp)."""
    if real == 0:
        return 0, 0
    f, shift = Fraction(real), 0
    while f >= 1:  # normalise to f in [1/2, 1)
        f, shift = f / 2, shift + 1
    while f < HALF:
        f, shift = f * 2, shift - 1
    q = ref_round_half_away(f * 2**31)
    if q == 2**31:
        q, shift = q // 2, shift + 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return 2**31 - 1, 30
    return q, shift


def test_reference_self_consistency():
    # The "round half up" SRDHM reference and the literal C transcription agree
    # (this is what licenses describing SRDHM as floor(a*b/2**31 + 1/2)).
    rng = make_rng()
    a, b = int32_mix(rng, 3000).tolist(), int32_mix(rng, 3000).tolist()
    for x, y in zip(a + INT32_SPECIAL * 2, b + INT32_SPECIAL[::-1] + INT32_SPECIAL):
        assert ref_srdhm(x, y) == ref_srdhm_c(x, y), (x, y)


# ---------------------------------------------------------------------------
# wrap_int32
# ---------------------------------------------------------------------------


def test_wrap_int32_hand_cases():
    cases = {
        0: 0, 1: 1, -1: -1, I32_MAX: I32_MAX, I32_MIN: I32_MIN,
        2**31: I32_MIN,        # one past INT32_MAX
        -(2**31) - 1: I32_MAX,  # one below INT32_MIN
        2**32: 0, 2**32 + 5: 5, -(2**32): 0,
        2**63 - 1: -1,          # low 32 bits all ones
        -(2**63): 0,
        2**100 + 7: 7,          # arbitrary-precision Python int
        -(2**100) - 1: -1,
    }
    got = g.wrap_int32(list(cases))
    assert got.dtype == np.int32
    assert got.tolist() == list(cases.values())
    assert g.wrap_int32(2**31) == I32_MIN and g.wrap_int32(2**31).dtype == np.int32


@pytest.mark.parametrize(
    "dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
)
def test_wrap_int32_all_int_dtypes(dtype):
    rng = make_rng()
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, size=2000, endpoint=True, dtype=dtype)
    x[:2] = [info.min, info.max]
    got = g.wrap_int32(x)
    assert got.dtype == np.int32 and got.shape == x.shape
    assert got.tolist() == [ref_wrap32(int(v)) for v in x.tolist()]


def test_wrap_int32_rejects_non_integers():
    with pytest.raises(TypeError, match="x must be an integer"):
        g.wrap_int32(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="x must be an integer"):
        g.wrap_int32(1.5)
    with pytest.raises(TypeError, match="integers only"):
        g.wrap_int32([2**70, 0.5])


# ---------------------------------------------------------------------------
# SaturatingRoundingDoublingHighMul
# ---------------------------------------------------------------------------

SRDHM_CASES = [
    # (a, b, expected)   value of a*b/2**31 -> rounded half up
    (I32_MIN, I32_MIN, I32_MAX),        # 2**62/2**31 = 2**31: the one overflow -> saturate
    (I32_MIN, I32_MAX, I32_MIN + 1),    # -2**31*(2**31-1)/2**31 = -(2**31-1) exactly
    (I32_MAX, I32_MIN, I32_MIN + 1),    # commutative
    (I32_MAX, I32_MAX, I32_MAX - 1),    # (2**31-1)**2/2**31 = 2**31 - 2 + 2**-31 -> 2**31-2
    (I32_MIN, 1, -1),                   # -2**31/2**31 = -1 exactly
    (I32_MIN, -1, 1),                   # +1 exactly
    (I32_MIN + 1, I32_MIN, I32_MAX),    # (2**62 - 2**31)/2**31 = 2**31 - 1 exactly, no saturation
    (2**30, 1, 1),                      # a*b = 2**30: +0.5 tie -> 1
    (-(2**30), 1, 0),                   # a*b = -2**30: -0.5 tie -> 0 (toward +inf)
    (1, -(2**30), 0),                   # same, other operand order
    (2**30, 3, 2),                      # a*b = 3*2**30: +1.5 tie -> 2
    (2**30, -3, -1),                    # a*b = -3*2**30: -1.5 tie -> -1
    (-(2**30), -3, 2),                  # +1.5 -> 2
    (2**15, 2**15, 1),                  # 2**30 again, via a different factorisation
    (-(2**15), 2**15, 0),               # -0.5 -> 0
    (2**30 + 1, 1, 1),                  # 0.5 + 2**-31 -> 1
    (2**30 - 1, 1, 0),                  # 0.5 - 2**-31 -> 0
    (-(2**30) - 1, 1, -1),              # -0.5 - 2**-31 -> -1
    (-(2**30) + 1, 1, 0),               # -0.5 + 2**-31 -> 0
    (2**30, 2**30, 2**29),              # Q31: 0.5 * 0.5 = 0.25 -> 2**29
    (1, 1, 0),                          # 2**-31 -> 0
    (-1, 1, 0),                         # -2**-31 -> 0
    (0, 0, 0),
    (0, I32_MIN, 0),
    (I32_MAX, 0, 0),
]


@pytest.mark.parametrize("a,b,expected", SRDHM_CASES)
def test_srdhm_hand_cases(a, b, expected):
    assert ref_srdhm(a, b) == expected  # the hand arithmetic agrees with the reference
    got = g.saturating_rounding_doubling_high_mul(np.int32(a), np.int32(b))
    assert got == expected and got.dtype == np.int32


def test_srdhm_vectorized_hand_cases():
    a, b, expected = (list(t) for t in zip(*SRDHM_CASES))
    got = g.saturating_rounding_doubling_high_mul(to_i32(a), to_i32(b))
    assert got.dtype == np.int32
    assert got.tolist() == expected


def test_srdhm_random_against_reference():
    rng = make_rng()
    n = 6000
    a, b = int32_mix(rng, n), int32_mix(rng, n)
    # Exact ties: a*b = (odd) * 2**30, so a*b/2**31 = odd/2 lies half way.
    i = rng.integers(0, 31, size=n)
    odd_a = 2 * rng.integers(0, 2 ** (30 - i)) + 1  # odd_a * 2**i < 2**31
    odd_b = 2 * rng.integers(0, 2**i) + 1  # odd_b * 2**(30-i) < 2**31
    ta = odd_a * 2**i * rng.choice([-1, 1], size=n)
    tb = odd_b * 2 ** (30 - i) * rng.choice([-1, 1], size=n)
    a, b = np.concatenate([a, ta]), np.concatenate([b, tb])
    assert all((x * y) % 2**31 == 2**30 for x, y in zip(ta.tolist(), tb.tolist()))
    got = g.saturating_rounding_doubling_high_mul(to_i32(a), to_i32(b))
    assert got.dtype == np.int32 and got.shape == a.shape
    expected = [ref_srdhm(x, y) for x, y in zip(a.tolist(), b.tolist())]
    assert got.tolist() == expected


def test_srdhm_broadcasts_and_accepts_python_ints():
    got = g.saturating_rounding_doubling_high_mul(to_i32([[2**30], [-(2**30)]]), [1, 3, -3])
    # rows: +-2**30 * [1, 3, -3] / 2**31 = +-[0.5, 1.5, -1.5]
    assert got.tolist() == [[1, 2, -1], [0, -1, 2]]


# ---------------------------------------------------------------------------
# RoundingDivideByPOT
# ---------------------------------------------------------------------------

RDBPOT_CASES = [
    # (x, exponent, expected)   x / 2**e, rounded half away from zero
    (5, 1, 3), (-5, 1, -3),     # +-2.5 -> +-3
    (4, 1, 2), (-4, 1, -2),     # exact
    (3, 1, 2), (-3, 1, -2),     # +-1.5 -> +-2
    (1, 1, 1), (-1, 1, -1),     # +-0.5 -> +-1
    (6, 2, 2), (-6, 2, -2),     # +-1.5 -> +-2
    (5, 2, 1), (-5, 2, -1),     # +-1.25 -> +-1
    (7, 2, 2), (-7, 2, -2),     # +-1.75 -> +-2
    (2, 2, 1), (-2, 2, -1),     # +-0.5 -> +-1
    (1, 2, 0), (-1, 2, 0),      # +-0.25 -> 0
    (10, 3, 1), (-10, 3, -1),   # +-1.25 -> +-1
    (12, 3, 2), (-12, 3, -2),   # +-1.5 -> +-2
    # exponent 0 is the identity
    (I32_MIN, 0, I32_MIN), (I32_MAX, 0, I32_MAX), (0, 0, 0), (-1, 0, -1), (1, 0, 1),
    # exponent 31
    (I32_MIN, 31, -1),          # -2**31/2**31 = -1 exactly
    (I32_MAX, 31, 1),           # (2**31-1)/2**31 = 0.99999... -> 1
    (-1, 31, 0), (1, 31, 0),    # +-2**-31 -> 0
    (2**30, 31, 1),             # 0.5 tie -> 1
    (-(2**30), 31, -1),         # -0.5 tie -> -1
    (2**30 - 1, 31, 0),         # just below 0.5 -> 0
    (-(2**30) + 1, 31, 0),      # just above -0.5 -> 0
    (2**30 + 1, 31, 1), (-(2**30) - 1, 31, -1),
    (0, 31, 0),
    # exponent 30
    (I32_MIN, 30, -2), (I32_MAX, 30, 2),  # -2 exactly; 1.99999... -> 2
    (3 * 2**29, 30, 2), (-3 * 2**29, 30, -2),  # +-1.5 -> +-2
    # large negative values, other exponents
    (-1000, 4, -63),            # -62.5 -> -63
    (-1000, 5, -31),            # -31.25 -> -31
    (I32_MIN + 1, 1, -(2**30)),  # -(2**30) + 0.5 -> -(2**30) (tie away from zero)
    (I32_MAX, 1, 2**30),         # 2**30 - 0.5 -> 2**30
]


@pytest.mark.parametrize("x,e,expected", RDBPOT_CASES)
def test_rdbpot_hand_cases(x, e, expected):
    assert ref_rdbpot(x, e) == expected
    got = g.rounding_divide_by_pot(np.int32(x), e)
    assert got == expected and got.dtype == np.int32


def test_rdbpot_vectorized_hand_cases():
    x, e, expected = (list(t) for t in zip(*RDBPOT_CASES))
    got = g.rounding_divide_by_pot(to_i32(x), np.array(e))
    assert got.dtype == np.int32 and got.tolist() == expected


def test_rdbpot_random_against_reference():
    rng = make_rng()
    n = 8000
    x = int32_mix(rng, n)
    e = rng.integers(0, 32, size=n)
    # Exact ties: x = (odd) * 2**(e-1) for e >= 1.
    te = rng.integers(1, 32, size=n // 4)
    tx = (2 * rng.integers(0, 2 ** (32 - te) // 2) + 1) * 2 ** (te - 1)
    tx = np.where(rng.integers(0, 2, size=te.size) == 1, tx, -tx)
    tx = np.clip(tx, I32_MIN, I32_MAX)
    x, e = np.concatenate([x, tx]), np.concatenate([e, te])
    got = g.rounding_divide_by_pot(to_i32(x), e)
    assert got.dtype == np.int32
    assert got.tolist() == [ref_rdbpot(v, k) for v, k in zip(x.tolist(), e.tolist())]


def test_rdbpot_scalar_exponent_and_broadcasting():
    rng = make_rng()
    x = int32_mix(rng, 500)
    for e in (0, 1, 7, 30, 31):
        got = g.rounding_divide_by_pot(to_i32(x), e)
        assert got.tolist() == [ref_rdbpot(v, e) for v in x.tolist()]
    xs = to_i32([[-7], [7], [I32_MIN]])
    got = g.rounding_divide_by_pot(xs, np.array([0, 1, 2, 31]))
    # -7: [-7, -3.5->-4, -1.75->-2, ~0->0]; 7: mirrored; INT32_MIN: [-2**31, -2**30, -2**29, -1]
    assert got.tolist() == [[-7, -4, -2, 0], [7, 4, 2, 0], [I32_MIN, -(2**30), -(2**29), -1]]


@pytest.mark.parametrize("bad", [32, -1, 100])
def test_rdbpot_rejects_bad_exponent(bad):
    with pytest.raises(ValueError, match=rf"exponent must be in \[0, 31\], got {bad}"):
        g.rounding_divide_by_pot(np.int32(5), bad)
    with pytest.raises(ValueError, match=rf"got {bad}"):
        g.rounding_divide_by_pot(to_i32([1, 2, 3]), np.array([0, bad, 1]))


# ---------------------------------------------------------------------------
# MultiplyByQuantizedMultiplier
# ---------------------------------------------------------------------------

MBQM_CASES = [
    # (x, multiplier, shift, expected)
    (1000, 2**30, 0, 500),   # 1000 * 0.5
    (1000, 2**30, 1, 1000),  # left shift 1: SRDHM(2000, 2**30) = 1000
    (1000, 2**30, -1, 250),  # SRDHM = 500, then 500 / 2 = 250
    (3, 2**30, 0, 2),        # 1.5 -> 2 (SRDHM tie toward +inf)
    (-3, 2**30, 0, -1),      # -1.5 -> -1 (SRDHM tie toward +inf)
    # Double rounding: 5 * 0.5 * 0.5 = 1.25, but SRDHM(5, 2**30) = 2.5 -> 3,
    # then RDBPOT(3, 1) = 1.5 -> 2.
    (5, 2**30, -1, 2),
    (-5, 2**30, -1, -1),     # SRDHM = -2.5 -> -2, RDBPOT(-2, 1) = -1
    (1, 2**30, 30, 2**29),   # left shift 30, no wrap: SRDHM(2**30, 2**30) = 2**29
    # Left shift wraps: 2**30 << 1 = 2**31 -> INT32_MIN; SRDHM(INT32_MIN, 2**30) = -2**30
    # (the unwrapped answer would be +2**30).
    (2**30, 2**30, 1, -(2**30)),
    # 3 << 30 = 3*2**30 -> wraps to 3*2**30 - 2**32 = -2**30; SRDHM(-2**30, 2**31-1)
    # = (-2**61 + 2**30)/2**31 = -2**30 + 0.5 -> tie toward +inf -> -2**30 + 1.
    (3, I32_MAX, 30, -(2**30) + 1),
    (100, I32_MAX, 30, 0),   # 100 * 2**30 = 25 * 2**32 wraps to exactly 0
    (12345, 0, 5, 0),        # multiplier 0
    (I32_MIN, I32_MAX, 0, I32_MIN + 1),  # SRDHM(INT32_MIN, INT32_MAX) = -(2**31 - 1)
    (I32_MAX, I32_MAX, 0, I32_MAX - 1),
    # right shift 31: SRDHM = 2**31 - 2, / 2**31 = 0.99999... -> 1
    (I32_MAX, I32_MAX, -31, 1),
    (I32_MIN, I32_MAX, -31, -1),  # -(2**31-1)/2**31 -> -1
    (-1000, 3 * 2**29, -2, -188),  # SRDHM = -1000*0.75 = -750 exactly; -750/4 = -187.5 -> -188
]


@pytest.mark.parametrize("x,m,s,expected", MBQM_CASES)
def test_mbqm_hand_cases(x, m, s, expected):
    assert ref_mbqm(x, m, s) == expected
    got = g.multiply_by_quantized_multiplier(np.int32(x), m, s)
    assert got == expected and got.dtype == np.int32


def random_multipliers(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mostly normalised Q31 multipliers [2**30, 2**31), plus 0, 1, INT32_MAX and arbitrary."""
    normal = rng.integers(2**30, I32_MAX, size=n, endpoint=True)
    anyval = rng.integers(0, I32_MAX, size=n, endpoint=True)
    special = rng.choice(np.array([0, 1, 2**30, 2**30 + 1, 3 * 2**29, I32_MAX]), size=n)
    return np.choose(rng.integers(0, 3, size=n), [normal, anyval, special])


def test_mbqm_random_against_reference():
    rng = make_rng()
    n = 6000
    x = int32_mix(rng, n)
    m = random_multipliers(rng, n)
    s = rng.integers(-31, 31, size=n)
    s[:2] = [-31, 30]
    # Elementwise parameters (a 1-D x with per-channel parameters of the same length).
    got = g.multiply_by_quantized_multiplier(to_i32(x), to_i32(m), s.astype(np.int32))
    assert got.dtype == np.int32
    assert got.tolist() == [ref_mbqm(*t) for t in zip(x.tolist(), m.tolist(), s.tolist())]


def test_mbqm_error_bound_against_real_product():
    # Without left-shift wrap, the result is x*m*2**(shift-31) rounded twice:
    # |error| <= 1/2 (RDBPOT) + 1/2 * 2**-right (SRDHM).
    rng = make_rng()
    n = 3000
    x = int32_mix(rng, n)
    m = random_multipliers(rng, n)
    s = rng.integers(-31, 31, size=n)
    left = np.maximum(s, 0)
    x = np.clip(x, -(2**31 // 2**left), (2**31 - 1) // 2**left)  # no wrap on the left shift
    got = g.multiply_by_quantized_multiplier(to_i32(x), to_i32(m), s)
    for xv, mv, sv, r in zip(x.tolist(), m.tolist(), s.tolist(), got.tolist()):
        exact = Fraction(xv * mv) * Fraction(2) ** (sv - 31)
        bound = HALF + HALF * Fraction(2) ** min(sv, 0)
        assert abs(r - exact) <= bound, (xv, mv, sv, r)


def test_mbqm_per_channel_broadcasts_over_last_axis():
    rng = make_rng()
    x = int32_mix(rng, 40 * 6).reshape(5, 8, 6)
    m = random_multipliers(rng, 6)
    s = np.array([-31, -7, -1, 0, 3, 30])
    got = g.multiply_by_quantized_multiplier(to_i32(x), m, s)
    assert got.shape == x.shape and got.dtype == np.int32
    for c in range(6):
        col = [ref_mbqm(v, int(m[c]), int(s[c])) for v in x[..., c].ravel().tolist()]
        assert got[..., c].ravel().tolist() == col
        # per-channel == per-tensor call with that channel's parameters
        assert np.array_equal(
            got[..., c], g.multiply_by_quantized_multiplier(to_i32(x[..., c]), int(m[c]), int(s[c]))
        )


def test_mbqm_argument_errors():
    x = to_i32([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"shift must be in \[-31, 30\], got 31"):
        g.multiply_by_quantized_multiplier(x, 2**30, 31)
    with pytest.raises(ValueError, match=r"shift must be in \[-31, 30\], got -32"):
        g.multiply_by_quantized_multiplier(x, 2**30, np.array([0, -32, 0]))
    with pytest.raises(ValueError, match=r"multiplier must be in \[0, 2147483647\], got -1"):
        g.multiply_by_quantized_multiplier(x, -1, 0)
    with pytest.raises(ValueError, match=r"multiplier must be in \[0, 2147483647\], got 2147483648$"):
        g.multiply_by_quantized_multiplier(x, 2**31, 0)
    with pytest.raises(ValueError, match=r"multiplier has 2 per-channel entries but x.shape\[-1\] is"):
        g.multiply_by_quantized_multiplier(x, [2**30, 2**30], 0)
    with pytest.raises(ValueError, match="shift must be a scalar .* or 1-D"):
        g.multiply_by_quantized_multiplier(x, 2**30, np.zeros((1, 3), np.int32))
    with pytest.raises(ValueError, match=r"x must be in \[-2147483648, 2147483647\], got 2147483648$"):
        g.multiply_by_quantized_multiplier([2**31], 2**30, 0)
    with pytest.raises(TypeError, match="multiplier must be an integer"):
        g.multiply_by_quantized_multiplier(x, 0.5, 0)


# ---------------------------------------------------------------------------
# QuantizeMultiplier
# ---------------------------------------------------------------------------

QM_CASES = [
    # (real, (multiplier, shift))     real = q * 2**shift, q in [0.5, 1)
    (0.0, (0, 0)),
    (-0.0, (0, 0)),
    (0.5, (2**30, 0)),                 # q = 0.5, shift 0: 0.5 * 2**31 = 2**30
    (1.0, (2**30, 1)),                 # 1 = 0.5 * 2**1
    (0.25, (2**30, -1)),
    (0.75, (3 * 2**29, 0)),            # 0.75 * 2**31 = 1610612736
    (1, (2**30, 1)),                   # ints are accepted
    (1e-10, (0, 0)),                   # 1e-10 = 0.8589934592 * 2**-33: shift < -31 -> (0, 0)
    (2.0**-32, (2**30, -31)),          # 0.5 * 2**-31: smallest kept shift
    (2.0**-33, (0, 0)),                # 0.5 * 2**-32: underflow
    # (1 - 2**-53) * 2**-32: q * 2**31 = 2**31 - 2**-22 rounds up to 2**31 -> carry:
    # (2**30, -31), so the carry rescues it from the underflow check.
    (math.nextafter(2.0**-32, 0), (2**30, -31)),
    # Values that round up to 2**31: q*2**31 = 2**31 - 0.25 and 2**31 - 0.5 (tie, away from 0)
    (1 - 2.0**-33, (2**30, 1)),
    (1 - 2.0**-32, (2**30, 1)),
    (math.nextafter(1.0, 0), (2**30, 1)),
    (1 - 2.0**-32 - 2.0**-40, (2**31 - 1, 0)),  # 2**31 - 0.5 - 2**-9 -> 2**31 - 1
    # Ties round half away from zero (Python's round() would give 2**30 here):
    (0.5 + 2.0**-32, (2**30 + 1, 0)),  # q * 2**31 = 2**30 + 0.5 -> 2**30 + 1
    (0.5 + 2.0**-33, (2**30, 0)),      # 2**30 + 0.25 -> 2**30
    # Large values: shift > 30 saturates to (2**31 - 1, 30)
    (2.0**30 - 1, (2**31 - 2, 30)),    # q = 1 - 2**-30, q*2**31 = 2**31 - 2: still fits
    (2.0**30, (2**31 - 1, 30)),        # 0.5 * 2**31 -> shift 31 -> clamped
    (2.0**30 + 1, (2**31 - 1, 30)),    # > 2**30 -> clamped
    (1e12, (2**31 - 1, 30)),
]


@pytest.mark.parametrize("real,expected", QM_CASES)
def test_quantize_multiplier_hand_cases(real, expected):
    assert ref_quantize_multiplier(real) == expected
    got = g.quantize_multiplier(real)
    assert got == expected
    assert type(got[0]) is int and type(got[1]) is int


def test_quantize_multiplier_numpy_scalars():
    assert g.quantize_multiplier(np.float32(0.5)) == (2**30, 0)
    assert g.quantize_multiplier(np.float64(0.75)) == (3 * 2**29, 0)
    assert g.quantize_multiplier(np.array(1.0)) == (2**30, 1)


@pytest.mark.parametrize(
    "bad,pattern",
    [(-1, "got -1"), (-0.5, "got -0.5"), (float("nan"), "got nan"),
     (float("inf"), "got inf"), (float("-inf"), "got -inf")],
)
def test_quantize_multiplier_rejects(bad, pattern):
    with pytest.raises(ValueError, match=rf"real_multiplier must be finite and >= 0, {pattern}"):
        g.quantize_multiplier(bad)


def test_quantize_multiplier_rejects_numpy_scalars():
    with pytest.raises(ValueError, match=r"got nan$"):
        g.quantize_multiplier(np.float64("nan"))
    with pytest.raises(ValueError, match=r"got -1.0$"):
        g.quantize_multiplier(np.float32(-1))


def test_quantize_multiplier_type_errors():
    with pytest.raises(TypeError, match="quantize_multipliers"):
        g.quantize_multiplier(np.array([0.5, 0.25]))
    with pytest.raises(TypeError, match="real_multiplier must be a real number"):
        g.quantize_multiplier("0.5")


def random_scales(rng: np.random.Generator, n: int) -> np.ndarray:
    """Log-uniform positive doubles over 2**-40 .. 2**35, plus constructed rounding ties."""
    logu = np.exp2(rng.uniform(-40, 35, size=n))
    k = rng.integers(2**30, 2**31, size=n)  # q * 2**31 = k + 1/2 exactly: a tie
    ties = np.ldexp((k + 0.5) / 2.0**31, rng.integers(-33, 33, size=n))
    specials = np.array([0.0, 0.5, 1.0, 2.0**-32, 2.0**-33, 2.0**30, 1 - 2.0**-32])
    return np.concatenate([logu, ties, specials])


def test_quantize_multiplier_random_against_reference():
    rng = make_rng()
    scales = random_scales(rng, 600)
    expected = [ref_quantize_multiplier(r) for r in scales.tolist()]
    assert [g.quantize_multiplier(r) for r in scales.tolist()] == expected
    m, s = g.quantize_multipliers(scales)
    assert m.dtype == np.int32 and s.dtype == np.int32
    assert list(zip(m.tolist(), s.tolist())) == expected
    # Sanity of the representation: multiplier * 2**(shift-31) is within half a
    # unit (2**(shift-32)) of the real scale, unless clamped or underflowed.
    for r, (mv, sv) in zip(scales.tolist(), expected):
        if r != 0 and mv not in (0, 2**31 - 1):
            assert 2**30 <= mv < 2**31
            approx = Fraction(mv) * Fraction(2) ** (sv - 31)
            assert abs(approx - Fraction(r)) <= Fraction(2) ** (sv - 32)


def test_quantize_multipliers_hand_and_errors():
    m, s = g.quantize_multipliers([0.5, 1.0, 0.25, 1e-10, 0.0, 1e12])
    assert m.tolist() == [2**30, 2**30, 2**30, 0, 0, 2**31 - 1]
    assert s.tolist() == [0, 1, -1, 0, 0, 30]
    with pytest.raises(ValueError, match=r"scales must be finite and >= 0, got -2.0 at index 1"):
        g.quantize_multipliers([1.0, -2.0])
    with pytest.raises(ValueError, match="got nan at index 0"):
        g.quantize_multipliers(np.array([np.nan]))
    with pytest.raises(ValueError, match=r"scales must be 1-D"):
        g.quantize_multipliers(np.ones((2, 2)))


# ---------------------------------------------------------------------------
# gemm
# ---------------------------------------------------------------------------


def test_gemm_hand_case():
    a = np.array([[1, 2], [-3, 4]], dtype=np.int8)
    b = np.array([[5, -6, 0], [7, 8, -128]], dtype=np.int8)
    # row 0: [1*5+2*7, 1*-6+2*8, 2*-128] = [19, 10, -256]
    # row 1: [-15+28, 18+32, 4*-128]     = [13, 50, -512]
    got = g.gemm(a, b)
    assert got.dtype == np.int32 and got.tolist() == [[19, 10, -256], [13, 50, -512]]
    bias = np.array([1, -10, 256], dtype=np.int32)
    assert g.gemm(a, b, bias).tolist() == [[20, 0, 0], [14, 40, -256]]


def test_gemm_wraps_like_int32_accumulator():
    # (-128) * (-128) = 2**14 per term. K = 131072 = 2**17 gives 2**31: one past
    # INT32_MAX, wraps to INT32_MIN. K = 131071 gives 2**31 - 2**14 = 2147467264,
    # the largest K that cannot overflow (131072 * 2**14 > INT32_MAX, and the most
    # negative product -128*127 = -16256 needs K >= 132105 to go below INT32_MIN).
    for k, expected in [(131072, I32_MIN), (131071, 2**31 - 2**14)]:
        a = np.full((1, k), -128, dtype=np.int8)
        assert g.gemm(a, a.T).tolist() == [[expected]]
    # Negative side: -16256 * 132104 = -2147482624 still fits; * 132105 = -2147498880
    # wraps to -2147498880 + 2**32 = 2147468416.
    for k, expected in [(132104, -2147482624), (132105, 2147468416)]:
        a = np.full((1, k), -128, dtype=np.int8)
        b = np.full((k, 2), 127, dtype=np.int8)
        assert g.gemm(a, b).tolist() == [[expected, expected]]


def test_gemm_wraps_several_times():
    # 400000 * 2**14 = 6553600000 = 2**32 + 2258632704 -> 2258632704 - 2**32 = -2036334592
    # (and the +1/-1 variants shift it by one product of -128 * +-1).
    k = 400000
    a = np.full((1, k), -128, dtype=np.int8)
    b = np.full((k, 3), -128, dtype=np.int8)
    b[0, 1], b[0, 2] = 127, -127  # change one product from 2**14 to -16256 / +16256
    assert ref_wrap32(k * 2**14) == -2036334592
    expected = [ref_wrap32((k - 1) * 2**14 + p) for p in (2**14, -16256, 16256)]
    assert g.gemm(a, b).tolist() == [expected]


def test_gemm_large_random_against_int64_matmul():
    # Big enough to exercise blocked BLAS paths; checked against numpy's int64
    # matmul reduced with Python-style modulo (not the code under test).
    rng = make_rng()
    M, K, N = 48, 3000, 40
    a = rng.choice(np.array([-128, -127, -1, 0, 1, 126, 127], dtype=np.int8), size=(M, K))
    b = rng.integers(-128, 128, size=(K, N)).astype(np.int8)
    b[:, :8] = -128  # columns dominated by the largest products
    acc = to_i32(int32_mix(rng, N))
    exact = a.astype(np.int64) @ b.astype(np.int64) + acc
    expected = (exact + 2**31) % 2**32 - 2**31
    assert np.array_equal(g.gemm(a, b, acc), expected)


def test_gemm_acc_addition_wraps():
    one = np.ones((1, 1), dtype=np.int8)
    # INT32_MAX + 1 -> INT32_MIN; INT32_MIN + (-1) -> INT32_MAX
    assert g.gemm(one, one, np.array([I32_MAX], np.int32)).tolist() == [[I32_MIN]]
    assert g.gemm(one, -one, np.array([[I32_MIN]], np.int32)).tolist() == [[I32_MAX]]
    # (N,) bias, (M, N) accumulator, (M, 1) and 0-d all broadcast
    a = np.array([[1], [2]], dtype=np.int8)
    b = np.array([[3, 4]], dtype=np.int8)  # a @ b = [[3, 4], [6, 8]]
    assert g.gemm(a, b, np.array([10, 20], np.int32)).tolist() == [[13, 24], [16, 28]]
    assert g.gemm(a, b, np.array([[1], [2]], np.int32)).tolist() == [[4, 5], [8, 10]]
    assert g.gemm(a, b, np.int32(I32_MAX)).tolist() == [[I32_MIN + 2, I32_MIN + 3],
                                                         [I32_MIN + 5, I32_MIN + 7]]


def test_gemm_empty_k():
    a = np.zeros((2, 0), dtype=np.int8)
    b = np.zeros((0, 3), dtype=np.int8)
    assert g.gemm(a, b).tolist() == [[0, 0, 0]] * 2
    assert g.gemm(a, b, np.array([1, 2, 3], np.int32)).tolist() == [[1, 2, 3]] * 2


def test_gemm_random_against_reference():
    rng = make_rng()
    for trial in range(30):
        M, K, N = (int(v) for v in rng.integers(1, [9, 65, 9]))
        a = rng.integers(-128, 128, size=(M, K)).astype(np.int8)
        b = rng.integers(-128, 128, size=(K, N)).astype(np.int8)
        if trial % 3 == 0:  # stress the extremes
            a[rng.random(a.shape) < 0.5] = -128
            b[rng.random(b.shape) < 0.5] = -128
        acc_shape = [None, (N,), (M, N), (M, 1)][trial % 4]
        acc = None
        if acc_shape is not None:
            acc = to_i32(int32_mix(rng, math.prod(acc_shape))).reshape(acc_shape)
        got = g.gemm(a, b, acc)
        assert got.dtype == np.int32 and got.shape == (M, N)
        assert np.array_equal(got, ref_gemm(a, b, acc))


def test_gemm_argument_errors():
    a = np.zeros((2, 3), np.int8)
    b = np.zeros((3, 4), np.int8)
    with pytest.raises(TypeError, match="a must have dtype int8, not float64"):
        g.gemm(np.zeros((2, 3)), b)
    with pytest.raises(TypeError, match="b must have dtype int8, not int16"):
        g.gemm(a, b.astype(np.int16))
    with pytest.raises(TypeError, match="b must have dtype int8, not uint8"):
        g.gemm(a, b.astype(np.uint8))
    with pytest.raises(TypeError, match="a must be a numpy array with dtype int8, not list"):
        g.gemm([[1, 2, 3]], b)
    with pytest.raises(ValueError, match=r"a must be 2-D \(M, K\), got shape \(3,\)"):
        g.gemm(np.zeros(3, np.int8), b)
    with pytest.raises(ValueError, match=r"b must be 2-D \(K, N\), got shape \(1, 3, 4\)"):
        g.gemm(a, b[None])
    with pytest.raises(ValueError, match=r"inner dimensions differ: a has shape \(2, 3\) \(K=3\)"):
        g.gemm(a, np.zeros((4, 4), np.int8))
    with pytest.raises(TypeError, match="acc must have dtype int32, not int64"):
        g.gemm(a, b, np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="acc must be a numpy array with dtype int32, not int"):
        g.gemm(a, b, 5)
    with pytest.raises(
        ValueError, match=r"acc with shape \(3,\) is not broadcastable to the result shape \(2, 4\)"
    ):
        g.gemm(a, b, np.zeros(3, np.int32))
    with pytest.raises(ValueError, match=r"acc with shape \(5, 2, 4\) is not broadcastable"):
        g.gemm(a, b, np.zeros((5, 2, 4), np.int32))


# ---------------------------------------------------------------------------
# requantize and dense
# ---------------------------------------------------------------------------


def test_requantize_per_channel_hand_case():
    acc = np.array([[100, 100, 100, -100], [-7, 7, 0, I32_MAX]], dtype=np.int32)
    mult = np.array([2**30, 2**30, 2**30, 3 * 2**29])  # 0.5, 0.5, 0.5, 0.75
    shift = np.array([0, -1, 1, -2])
    # row 0: 100*0.5 = 50; 50/2 = 25; (200)*0.5 = 100; -100*0.75 = -75, -75/4 = -18.75 -> -19
    # row 1: -7*0.5 = -3.5 -> -3 (SRDHM tie toward +inf); SRDHM(7) = 3.5 -> 4, 4/2 = 2;
    #        0; SRDHM(2**31-1, 3*2**29) = 1610612735.25 -> 1610612735, /4 -> 402653184 (.75 -> up)
    y = [[50, 25, 100, -19], [-3, 2, 0, 402653184]]
    ref = [[ref_mbqm(int(acc[i, c]), int(mult[c]), int(shift[c])) for c in range(4)] for i in range(2)]
    assert ref == y
    got = g.requantize(acc, mult, shift, output_zero_point=3)
    # + 3, then clamp to [-128, 127]
    assert got.dtype == np.int8 and got.tolist() == [[53, 28, 103, -16], [0, 5, 3, 127]]
    got = g.requantize(acc, mult, shift, output_zero_point=3, act_min=3, act_max=100)  # ReLU-ish
    assert got.tolist() == [[53, 28, 100, 3], [3, 5, 3, 100]]


def test_requantize_zero_point_addition_does_not_wrap():
    # y = SRDHM(INT32_MAX, INT32_MAX) = 2**31 - 2; + 127 would overflow int32
    # (and wrap to a large negative number); the contract clamps to 127.
    acc = np.array([I32_MAX, I32_MIN], dtype=np.int32)
    assert g.requantize(acc, I32_MAX, 0, output_zero_point=127).tolist() == [127, -128]
    # y = -(2**31 - 1) for INT32_MIN; - 128 would underflow int32.
    assert g.requantize(acc, I32_MAX, 0, output_zero_point=-128).tolist() == [127, -128]
    assert g.requantize(np.int32(-5), 2**30, 0, output_zero_point=-128) == -128


def test_requantize_random_against_reference():
    rng = make_rng()
    for trial in range(12):
        M, N = (int(v) for v in rng.integers(1, [40, 17]))
        acc = to_i32(int32_mix(rng, M * N)).reshape(M, N)
        if trial % 2 == 0:  # realistic accumulators, where the clamp is not always hit
            acc = to_i32(rng.integers(-(2**20), 2**20, size=(M, N)))
        if trial % 3 == 0:  # per-tensor
            mult, shift = int(random_multipliers(rng, 1)[0]), int(rng.integers(-31, 31))
            mcol, scol = [mult] * N, [shift] * N
        else:  # per-channel
            mult, shift = random_multipliers(rng, N), rng.integers(-31, 31, size=N).astype(np.int32)
            mcol, scol = mult.tolist(), shift.tolist()
        zp = int(rng.integers(-128, 128))
        lo, hi = sorted(int(v) for v in rng.integers(-128, 128, size=2))
        if trial % 4 == 1:
            lo, hi = -128, 127
        got = g.requantize(acc, mult, shift, zp, lo, hi)
        assert got.dtype == np.int8 and got.shape == (M, N)
        expected = [
            [ref_requantize(v, mcol[c], scol[c], zp, lo, hi) for c, v in enumerate(row)]
            for row in acc.tolist()
        ]
        assert got.tolist() == expected


def test_requantize_typical_scales_track_real_arithmetic():
    # With scales from quantize_multipliers, requantize is within 1 of
    # round(acc * scale) + zp (double rounding), before the clamp.
    rng = make_rng()
    scales = np.exp2(rng.uniform(-20, 2, size=8))
    mult, shift = g.quantize_multipliers(scales)
    acc = to_i32(rng.integers(-(2**16), 2**16, size=(50, 8)))
    got = g.requantize(acc, mult, shift, output_zero_point=-5)
    for row, out in zip(acc.tolist(), got.tolist()):
        for c, (v, o) in enumerate(zip(row, out)):
            ideal = Fraction(v) * Fraction(scales[c]) - 5
            if -128 < ideal < 127:
                assert abs(o - ideal) <= Fraction(3, 2), (v, c, o, float(ideal))


def test_requantize_argument_errors():
    acc = np.zeros((2, 3), np.int32)
    with pytest.raises(TypeError, match="acc must have dtype int32, not int64"):
        g.requantize(acc.astype(np.int64), 2**30, 0)
    with pytest.raises(ValueError, match=r"output_zero_point must be in \[-128, 127\], got 128"):
        g.requantize(acc, 2**30, 0, output_zero_point=128)
    with pytest.raises(TypeError, match="output_zero_point must be an integer"):
        g.requantize(acc, 2**30, 0, output_zero_point=0.0)
    with pytest.raises(ValueError, match=r"act_min must be in \[-128, 127\], got -129"):
        g.requantize(acc, 2**30, 0, act_min=-129)
    with pytest.raises(ValueError, match=r"act_max must be in \[-128, 127\], got 128"):
        g.requantize(acc, 2**30, 0, act_max=128)
    with pytest.raises(ValueError, match="act_min must be <= act_max, got act_min=10, act_max=5"):
        g.requantize(acc, 2**30, 0, act_min=10, act_max=5)
    with pytest.raises(ValueError, match=r"multiplier has 2 per-channel entries but acc.shape\[-1\] is"):
        g.requantize(acc, [2**30, 2**30], 0)
    with pytest.raises(ValueError, match=r"shift has 4 per-channel entries but acc.shape\[-1\] is"):
        g.requantize(acc, 2**30, np.zeros(4, np.int32))
    with pytest.raises(ValueError, match=r"shift must be in \[-31, 30\], got 31"):
        g.requantize(acc, 2**30, [0, 31, 0])
    with pytest.raises(ValueError, match=r"per-channel multiplier .* needs acc with at least one"):
        g.requantize(np.int32(1), [2**30], 0)


def test_dense_hand_case():
    x = np.array([[1, 2], [3, 4]], dtype=np.int8)
    w = np.array([[1, -1], [1, 1]], dtype=np.int8)
    bias = np.array([10, -10], dtype=np.int32)
    # x @ w = [[3, 1], [7, 1]]; + bias = [[13, -9], [17, -9]]
    # * 0.5 (multiplier 2**30, shift 0): 6.5 -> 7, -4.5 -> -4, 8.5 -> 9 (ties toward +inf)
    # + zp -1 = [[6, -5], [8, -5]]; ReLU (act_min = zp = -1) -> [[6, -1], [8, -1]]
    assert g.dense(x, w, bias, 2**30, 0, output_zero_point=-1).tolist() == [[6, -5], [8, -5]]
    assert g.dense(x, w, bias, 2**30, 0, -1, act_min=-1).tolist() == [[6, -1], [8, -1]]
    # No bias: [[3, 1], [7, 1]] * 0.5 = [[1.5->2, 0.5->1], [3.5->4, 1]]
    assert g.dense(x, w, None, 2**30, 0).tolist() == [[2, 1], [4, 1]]


def test_dense_random_against_reference():
    rng = make_rng()
    M, K, N = 6, 48, 5
    x = rng.integers(-128, 128, size=(M, K)).astype(np.int8)
    w = rng.integers(-128, 128, size=(K, N)).astype(np.int8)
    bias = to_i32(rng.integers(-(2**20), 2**20, size=N))
    mult, shift = random_multipliers(rng, N), rng.integers(-20, 2, size=N)
    got = g.dense(x, w, bias, mult, shift, 7, -100, 120)
    acc = ref_gemm(x, w, bias)
    expected = [[ref_requantize(int(acc[i, c]), int(mult[c]), int(shift[c]), 7, -100, 120)
                 for c in range(N)] for i in range(M)]
    assert got.dtype == np.int8 and got.tolist() == expected


def test_dense_argument_errors():
    x = np.zeros((2, 3), np.int8)
    w = np.zeros((3, 4), np.int8)
    with pytest.raises(TypeError, match="x must have dtype int8, not float64"):
        g.dense(x.astype(np.float64), w, None, 2**30, 0)
    with pytest.raises(TypeError, match="w must have dtype int8, not int32"):
        g.dense(x, w.astype(np.int32), None, 2**30, 0)
    with pytest.raises(TypeError, match="bias must have dtype int32, not int64"):
        g.dense(x, w, np.zeros(4, np.int64), 2**30, 0)
    with pytest.raises(
        ValueError, match=r"bias must have shape \(N,\) = \(4,\) to match w \(3, 4\), got shape \(3,\)"
    ):
        g.dense(x, w, np.zeros(3, np.int32), 2**30, 0)
    with pytest.raises(ValueError, match=r"bias must be 1-D"):
        g.dense(x, w, np.zeros((2, 4), np.int32), 2**30, 0)
    with pytest.raises(ValueError, match=r"inner dimensions differ: x has shape \(2, 3\)"):
        g.dense(x, np.zeros((2, 4), np.int8), None, 2**30, 0)
