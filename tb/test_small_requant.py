"""The serial requantizer (rtl/small/requant.py) in Amaranth's simulator against the instruction-level
simulator's ``requantize_lanes`` (sim/isa_sim.py): random rows (any int32 data and multipliers, and
rows whose results land inside the int8 range, so that the roundings show), edge cases (INT32_MIN
squared, wrapping left shifts, ties of both roundings, the clamp at both ends and around the
saturation threshold), the start / busy / done protocol and its cycle count, and the iCE40 cells
Yosys maps it to.

Every request is driven the same way (:func:`simulate`): the parameters and ``data`` are set and
``start`` is raised for one cycle; then, in every cycle until ``done``, ``busy`` must be high and
``done`` low, and (``noise``) ``data`` changes and ``start`` pulses at random (both to be
ignored); ``done`` must come exactly ``dut.cycles`` cycles after ``start``, with ``busy`` low and
the expected ``result``, which must then hold through the idle cycles that follow while ``data``
and the parameters change."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from tessera.rtl.small.requant import STEPS, SerialRequantizer
from tessera.sim.isa_sim import RequantParams, requantize_lanes

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

#: Multipliers worth drawing on purpose (SRDHM's overflow operand, signs, zero, the extremes).
SPECIAL_MULTIPLIERS = [0, 1, -1, INT32_MIN, INT32_MIN + 1, INT32_MAX, 1 << 30, -(1 << 30)]
SPECIAL_DATA = [0, 1, -1, INT32_MIN, INT32_MIN + 1, INT32_MAX, INT32_MAX - 1]


def reference(request):
    """The expected int8 results of ``request`` = (x, multiplier, shift, zp, act_min, act_max)."""
    x, mult, shift, zp, lo, hi = request
    params = RequantParams(np.array(mult, np.int32), np.array(shift, np.int32), zp, lo, hi)
    return [int(v) for v in requantize_lanes(np.array(x, np.int64), params)]


def simulate(dut, requests, *, rng, gaps=None, noise=True):
    """Run ``requests`` through ``dut`` one after the other, checking the protocol every cycle;
    return ``(results, cycles)``, one entry per request. ``gaps[i]``: idle cycles after request
    ``i``'s ``done`` (0: the next ``start`` is in the ``done`` cycle); default random 0 .. 3."""
    lanes = dut.lanes
    gaps = gaps if gaps is not None else [rng.randrange(4) for _ in requests]
    got, counts = [], []

    def set_data(ctx, values):
        for lane, value in enumerate(values):
            ctx.set(dut.data[lane], value)

    def set_params(ctx, mult, shift, zp, lo, hi):
        for lane in range(lanes):
            ctx.set(dut.multiplier[lane], mult[lane])
            ctx.set(dut.shift[lane], shift[lane])
        ctx.set(dut.zero_point, zp)
        ctx.set(dut.act_min, lo)
        ctx.set(dut.act_max, hi)

    def garbage():
        return [rng.randint(INT32_MIN, INT32_MAX) for _ in range(lanes)]

    async def bench(ctx):
        assert not ctx.get(dut.busy) and not ctx.get(dut.done), "busy or done out of reset"
        for index, request in enumerate(requests):
            x, mult, shift, zp, lo, hi = request
            set_data(ctx, x)
            set_params(ctx, mult, shift, zp, lo, hi)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 1
            while not ctx.get(dut.done):
                assert ctx.get(dut.busy), f"request {index}: busy low {cycles} cycles after start"
                assert cycles < 4 * dut.cycles, f"request {index}: no done"
                if noise:
                    # The row was copied at start; a start while busy is ignored.
                    set_data(ctx, garbage())
                    ctx.set(dut.start, rng.random() < 0.3)
                await ctx.tick()
                cycles += 1
            ctx.set(dut.start, 0)
            assert not ctx.get(dut.busy), f"request {index}: busy high with done"
            result = [ctx.get(dut.result[lane]) for lane in range(lanes)]
            got.append(result)
            counts.append(cycles)
            for idle in range(gaps[index]):
                if noise:
                    set_data(ctx, garbage())
                    set_params(ctx, garbage(), [rng.randint(-31, 30) for _ in range(lanes)],
                               *(rng.randint(-128, 127) for _ in range(3)))
                await ctx.tick()
                assert not ctx.get(dut.done), f"request {index}: done again {idle + 1} cycles on"
                assert not ctx.get(dut.busy), f"request {index}: busy without start"
                held = [ctx.get(dut.result[lane]) for lane in range(lanes)]
                assert held == result, f"request {index}: result changed {idle + 1} cycles on"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, counts


def check(dut, requests, got, counts):
    for index, (request, result, cycles) in enumerate(zip(requests, got, counts)):
        want = reference(request)
        assert result == want, (f"request {index} {request}: got {result}, expected {want}")
        assert cycles == dut.cycles, f"request {index}: done after {cycles} cycles"


# --- random rows ---------------------------------------------------------------------------------

def _random_lane(rng):
    """(x, multiplier, shift): any int32 (with the special values), or chosen so that the result
    is near the int8 range (within about +-200), with a random fraction so both roundings act."""
    shift = rng.randint(-31, 30)
    if rng.random() < 0.25:
        mult = rng.choice(SPECIAL_MULTIPLIERS)
    else:
        mult = rng.randint(INT32_MIN, INT32_MAX)
    if rng.random() < 0.4 or mult == 0:
        x = rng.choice(SPECIAL_DATA) if rng.random() < 0.2 else rng.randint(INT32_MIN, INT32_MAX)
        return x, mult, shift
    # result ~ x * 2**shift * mult / 2**31
    target = rng.uniform(-200, 200)
    x = round(target * 2.0 ** (31 - shift) / mult) + rng.randint(-2, 2)
    return max(INT32_MIN, min(INT32_MAX, x)), mult, shift


def random_request(rng, lanes):
    lane_cases = [_random_lane(rng) for _ in range(lanes)]
    x, mult, shift = (list(column) for column in zip(*lane_cases))
    zp = rng.randint(-128, 127)
    if rng.random() < 0.3:
        lo, hi = -128, 127
    else:
        lo, hi = sorted((rng.randint(-128, 127), rng.randint(-128, 127)))
    return x, mult, shift, zp, lo, hi


@pytest.mark.parametrize("lanes", [1, 2, 3, 4])
@pytest.mark.parametrize("case_seed", [1, 2, 3, None], ids=["s1", "s2", "s3", "session"])
def test_random_rows(lanes, case_seed, seed):
    """Random rows against ``requantize_lanes``: fixed seeds, and the session's (``--seed``)."""
    value = seed if case_seed is None else case_seed
    print(f"case seed={value}")
    rng = random.Random(value * 1000 + lanes)
    dut = SerialRequantizer(lanes)
    requests = [random_request(rng, lanes) for _ in range(max(24, 120 // lanes))]
    got, counts = simulate(dut, requests, rng=rng)
    check(dut, requests, got, counts)
    # The rows exercised more than saturation: results of the same lanes with zero point 0 and
    # the full int8 range, strictly inside it.
    inside = sum(-128 < v < 127 for x, mult, shift, *_ in requests
                 for v in reference((x, mult, shift, 0, -128, 127)))
    assert inside >= len(requests) * lanes // 6, inside


# --- edge cases ----------------------------------------------------------------------------------

def _edge_lanes():
    """(x, multiplier, shift) cases for the arithmetic; see the comments."""
    cases = []
    # INT32_MIN * INT32_MIN: SRDHM's one overflow (INT32_MAX), then every kind of right shift
    # (-23 .. -25: around the saturation of the int8 clamp; -31: the last bit).
    cases += [(INT32_MIN, INT32_MIN, s) for s in (0, -1, -2, -7, -8, -22, -23, -24, -25, -30, -31)]
    # INT32_MIN times its neighbours (no overflow), both signs.
    cases += [(x, m, s) for x, m in ((INT32_MIN, INT32_MAX), (INT32_MAX, INT32_MIN),
                                     (INT32_MIN, INT32_MIN + 1), (INT32_MIN, -1), (INT32_MIN, 1),
                                     (INT32_MAX, INT32_MAX), (-1, INT32_MIN))
              for s in (0, -23, -24, -31)]
    # Left shifts that wrap: x << left keeps 32 bits (INT32_MIN << 1 == 0, INT32_MAX << 1 == -2);
    # small multipliers too, so that the products land in range.
    cases += [(x, m, s) for x in (INT32_MIN, INT32_MAX, INT32_MIN + 1, 0x40000000, 0x12345678,
                                  -0x1234567)
              for m in (100, -100, INT32_MIN, 1 << 30) for s in (1, 16, 17, 30)]
    # SRDHM ties: x * 2**30 / 2**31 = x / 2 (ties go to +infinity: 0.5 -> 1, -0.5 -> 0), and
    # their neighbours (multiplier 2**30 +- 1); shift 0.
    for x in (1, 3, 255, 257):
        for m in (1 << 30, (1 << 30) + 1, (1 << 30) - 1, -(1 << 30)):
            cases += [(x, m, 0), (-x, m, 0)]
    # RDBPOT ties (q = 2**(r-1) * odd, half away from zero) and their neighbours: x = 2q with
    # multiplier 2**30 gives q exactly.
    for r in (1, 2, 8, 30):
        for k in (1, 3, 255):
            q = k << (r - 1)
            for v in (q - 1, q, q + 1):
                if 2 * v <= INT32_MAX:
                    cases += [(2 * v, 1 << 30, -r), (-2 * v, 1 << 30, -r)]
    # Both roundings at once: odd x (an SRDHM tie), then a right shift of 1 or 2.
    cases += [(x, 1 << 30, s) for x in (1, -1, 3, -3, 5, -5, 7, -7) for s in (-1, -2)]
    # Zero operands, a shift of 30 from a small x.
    cases += [(0, INT32_MIN, -5), (12345, 0, 7), (0, 0, 30), (1, 1 << 30, 30), (3, INT32_MAX, 30),
              (-3, INT32_MAX, 30)]
    return cases


def _clamp_lanes():
    """(x, multiplier, shift) cases for the clamp: |r| around the saturation threshold 256
    (exactly and by rounding from 511, 513), a few small values of both signs, and INT32_MIN
    squared."""
    cases = [(2 * v, 1 << 30, 0) for v in (255, 256, 257, -255, -256, -257, 0, 3, -5, 7, 100)]
    cases += [(2 * v, 1 << 30, -1) for v in (509, 510, 511, 512, 513, -511, -512, -513)]
    cases += [(INT32_MIN, INT32_MIN, 0), (INT32_MIN, INT32_MAX, 0), (INT32_MIN, INT32_MIN, -24)]
    return cases


#: (zero_point, act_min, act_max): full range, the extremes of the zero point (the clamp meets
#: the saturation threshold), narrow windows on both sides, a single value, half ranges.
CLAMPS = [(0, -128, 127), (127, -128, 127), (-128, -128, 127), (100, -5, 7), (-100, -20, 20),
          (5, 3, 3), (0, 0, 127), (0, -128, 0)]


def _rows(cases, lanes, clamp):
    zp, lo, hi = clamp
    rows = []
    for start in range(0, len(cases), lanes):
        chunk = cases[start:start + lanes]
        chunk += cases[:lanes - len(chunk)]
        x, mult, shift = (list(column) for column in zip(*chunk))
        rows.append((x, mult, shift, zp, lo, hi))
    return rows


@pytest.mark.parametrize("lanes", [1, 4])
def test_edge_cases(lanes, seed):
    """The arithmetic's edge cases with the full int8 range, zero point 0 and 127; the clamp's
    with every clamp of CLAMPS."""
    rng = random.Random(seed)
    dut = SerialRequantizer(lanes)
    requests = _rows(_edge_lanes(), lanes, CLAMPS[0]) + _rows(_edge_lanes(), lanes, CLAMPS[1])
    for clamp in CLAMPS:
        requests += _rows(_clamp_lanes(), lanes, clamp)
    got, counts = simulate(dut, requests, rng=rng, gaps=[0] * len(requests), noise=False)
    check(dut, requests, got, counts)
    # The clamp took both ends and the middle.
    values = [v for row in got for v in row]
    assert {-128, 127, 3, -5, 7, 0, -20, 20} <= set(values)


# --- protocol ------------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_protocol(lanes, seed):
    """``start`` while busy is ignored (a random pulse in about a third of the busy cycles, with
    other data); ``done`` pulses once per request, ``dut.cycles`` = 7 * lanes + 2 cycles after
    ``start``; ``result`` holds while idle (up to several row times, the inputs changing);
    back-to-back requests (``start`` in the ``done`` cycle) are taken."""
    rng = random.Random(seed)
    dut = SerialRequantizer(lanes)
    assert STEPS == 7 and dut.cycles == 7 * lanes + 2
    requests = [random_request(rng, lanes) for _ in range(12)]
    gaps = [0, 0, 3 * dut.cycles, 1, 0, 2 * dut.cycles, 0, 5, 0, 0, 1, 0]
    got, counts = simulate(dut, requests, rng=rng, gaps=gaps, noise=True)
    check(dut, requests, got, counts)


# --- synthesis -----------------------------------------------------------------------------------

def test_ice40_cells():
    """Yosys ``synth_ice40 -dsp`` puts the multiplier, its operand registers, the accumulator's
    adder and the accumulator into one SB_MAC16; the rest is a few hundred LUT4s (measured with
    Yosys 0.70 for 4 lanes: 572 SB_LUT4, 201 flip-flops, 60 SB_CARRY)."""
    from tessera.fpga.synth import synth_stats
    stats = synth_stats(SerialRequantizer(lanes=4), family="ice40")
    print(f"iCE40, lanes=4: SB_LUT4 {stats['lut']}, flip-flops {stats['ff']}, "
          f"SB_CARRY {stats['carry']}, SB_MAC16 {stats['dsp']}: {stats['cells']}")
    assert stats["dsp"] == 1, stats["cells"]
    assert stats["lut"] <= 640, stats["cells"]
    # The accumulator (32) and the operand registers (2 x 16) in fabric would exceed this.
    assert stats["ff"] <= 220, stats["cells"]
    assert stats["carry"] <= 72, stats["cells"]
