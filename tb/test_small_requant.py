"""The serial requantizer (rtl/small/requant.py) in Amaranth's simulator against the instruction-level
simulator's ``requantize_lanes`` (sim/isa_sim.py): random rows (any int32 data and multipliers, and
rows whose results land inside the int8 range, so that the roundings show) requantized several at a
time with the same loaded parameters (which must survive the lane rotation), edge cases (INT32_MIN
squared, wrapping left shifts, ties of both roundings, the clamp at both ends and around the
saturation threshold), the clamp of loaded shifts to [-31, 30], the parameters' reset values, the
start / busy / done protocol and its cycle count, and the iCE40 cells Yosys maps it to.

Every request is driven the same way (:func:`simulate`): its parameter loads, if any
(``load_multiplier`` / ``load_shift`` pulses with an int32 row on ``params``), go into idle cycles
before it (the first of them is the ``done`` cycle of the request before), one of them sometimes
into its ``start`` cycle; ``data``, ``zero_point``, ``act_min`` and ``act_max`` are set and
``start`` is raised for one cycle; then, in every cycle until ``done``, ``busy`` must be high and
``done`` low, and (``noise``) ``data`` and ``params`` change and ``start``, ``load_multiplier`` and
``load_shift`` pulse at random (all to be ignored); ``done`` must come exactly ``dut.cycles``
cycles after ``start``, with ``busy`` low and the expected ``result``, which must then hold through
the idle cycles that follow (loads included) while the inputs change. The expected parameters are
tracked as the CONFIG instruction sets them (``Machine._config``): the multiplier row as it is, the
shift row clamped to [-31, 30]; before any load they are ``RequantParams.reset``."""

import random
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.sim import Simulator

from tessera.rtl.small.requant import STEPS, SerialRequantizer
from tessera.sim import golden
from tessera.sim.isa_sim import RequantParams, requantize_lanes

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

#: Multipliers worth drawing on purpose (SRDHM's overflow operand, signs, zero, the extremes).
SPECIAL_MULTIPLIERS = [0, 1, -1, INT32_MIN, INT32_MIN + 1, INT32_MAX, 1 << 30, -(1 << 30)]
SPECIAL_DATA = [0, 1, -1, INT32_MIN, INT32_MIN + 1, INT32_MAX, INT32_MAX - 1]
#: Shift rows' values outside [-31, 30] (and at its ends), for the clamp: the neighbours of the
#: ends, the extremes, and values whose low six bits alone would read as an in-range shift.
SPECIAL_SHIFTS = [-31, 30, -32, 31, -33, 32, 63, -64, 64, 1000, -1000, INT32_MIN, INT32_MAX,
                  INT32_MIN + 5, INT32_MAX - 40, (1 << 20) + 5, -(1 << 20) + 5, (1 << 30) - 3,
                  -(1 << 6) + 3, (1 << 6) + 3]


def clamp_shift(row):
    """The shifts CONFIG latches from an accumulator row (``Machine._config``)."""
    return [int(v) for v in np.clip(np.array(row, np.int64), golden.SHIFT_MIN, golden.SHIFT_MAX)]


@dataclass
class Request:
    """A row ``x`` to requantize with ``zp``, ``lo``, ``hi``; before it, ``multiplier`` and
    ``shift`` (int32 rows, the shift unclamped) are loaded when not None."""
    x: list
    zp: int
    lo: int
    hi: int
    multiplier: list = None
    shift: list = None


def reference(x, mult, shift, zp, lo, hi):
    """The expected int8 results of row ``x`` with the latched parameters (``shift`` clamped)."""
    params = RequantParams(np.array(mult, np.int32), np.array(shift, np.int32), zp, lo, hi)
    return [int(v) for v in requantize_lanes(np.array(x, np.int64), params)]


def expected(requests, lanes):
    """The expected results of ``requests`` run in order from reset."""
    params = RequantParams.reset(lanes)
    mult, shift = params.multiplier.tolist(), params.shift.tolist()
    results = []
    for request in requests:
        if request.multiplier is not None:
            mult = list(request.multiplier)
        if request.shift is not None:
            shift = clamp_shift(request.shift)
        results.append(reference(request.x, mult, shift, request.zp, request.lo, request.hi))
    return results


def simulate(dut, requests, *, rng, gaps=None, noise=True, loads_at=None):
    """Run ``requests`` through ``dut`` one after the other, checking the protocol every cycle;
    return ``(results, cycles)``, one entry per request. ``gaps[i]``: idle cycles after request
    ``i``'s ``done`` besides those of the next request's loads (0: the next ``start`` is in the
    ``done`` cycle unless loads come first); default random 0 .. 3. A request's loads go in random
    order into idle cycles before its ``start`` (with a random idle cycle between them), or one
    of them into the ``start`` cycle; ``loads_at`` "start": the last one always into the
    ``start`` cycle, "done": from the ``done`` cycle on, one per cycle."""
    lanes = dut.lanes
    gaps = gaps if gaps is not None else [rng.randrange(4) for _ in requests]
    got, counts = [], []

    def set_row(ctx, port, values):
        for lane, value in enumerate(values):
            ctx.set(port[lane], value)

    def garbage():
        return [rng.randint(INT32_MIN, INT32_MAX) for _ in range(lanes)]

    def idle_noise(ctx):
        set_row(ctx, dut.data, garbage())
        set_row(ctx, dut.params, garbage())
        for port in (dut.zero_point, dut.act_min, dut.act_max):
            ctx.set(port, rng.randint(-128, 127))

    async def idle_tick(ctx, index, result, idle):
        """An idle cycle after request ``index`` (``result``: its result; None before the first)."""
        await ctx.tick()
        ctx.set(dut.load_multiplier, 0)
        ctx.set(dut.load_shift, 0)
        assert not ctx.get(dut.done), f"request {index}: done again {idle} cycles on"
        assert not ctx.get(dut.busy), f"request {index}: busy without start"
        if result is not None:
            held = [ctx.get(dut.result[lane]) for lane in range(lanes)]
            assert held == result, f"request {index}: result changed {idle} cycles on"

    async def bench(ctx):
        assert not ctx.get(dut.busy) and not ctx.get(dut.done), "busy or done out of reset"
        result, idle = None, 0
        for index, request in enumerate(requests):
            loads = [(port, row) for port, row in ((dut.load_multiplier, request.multiplier),
                                                    (dut.load_shift, request.shift))
                     if row is not None]
            rng.shuffle(loads)
            to_start = loads_at == "start" or (loads_at is None and rng.random() < 0.3)
            at_start = loads.pop() if loads and to_start else None
            # The idle cycles before the start: the loads (one cycle each, sometimes an idle
            # cycle between), then the gap; the first of them is the done cycle before.
            for port, row in loads:
                if noise:
                    idle_noise(ctx)
                set_row(ctx, dut.params, row)
                ctx.set(port, 1)
                idle += 1
                await idle_tick(ctx, index - 1, result, idle)
                if loads_at is None and rng.random() < 0.3:
                    idle += 1
                    await idle_tick(ctx, index - 1, result, idle)
            for _ in range(gaps[index - 1] if index else 0):
                if noise:
                    idle_noise(ctx)
                idle += 1
                await idle_tick(ctx, index - 1, result, idle)
            set_row(ctx, dut.data, request.x)
            ctx.set(dut.zero_point, request.zp)
            ctx.set(dut.act_min, request.lo)
            ctx.set(dut.act_max, request.hi)
            if at_start is not None:
                port, row = at_start
                set_row(ctx, dut.params, row)
                ctx.set(port, 1)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.load_multiplier, 0)
            ctx.set(dut.load_shift, 0)
            cycles = 1
            while not ctx.get(dut.done):
                assert ctx.get(dut.busy), f"request {index}: busy low {cycles} cycles after start"
                assert cycles < 4 * dut.cycles, f"request {index}: no done"
                if noise:
                    # The row was copied at start; a start or a load while busy is ignored.
                    set_row(ctx, dut.data, garbage())
                    set_row(ctx, dut.params, garbage())
                    ctx.set(dut.start, rng.random() < 0.3)
                    ctx.set(dut.load_multiplier, rng.random() < 0.3)
                    ctx.set(dut.load_shift, rng.random() < 0.3)
                await ctx.tick()
                cycles += 1
            ctx.set(dut.start, 0)
            ctx.set(dut.load_multiplier, 0)
            ctx.set(dut.load_shift, 0)
            assert not ctx.get(dut.busy), f"request {index}: busy high with done"
            result = [ctx.get(dut.result[lane]) for lane in range(lanes)]
            got.append(result)
            counts.append(cycles)
            idle = 0
        for _ in range(gaps[-1] if requests else 0):
            if noise:
                idle_noise(ctx)
            idle += 1
            await idle_tick(ctx, len(requests) - 1, result, idle)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, counts


def check(dut, requests, got, counts):
    for index, (request, result, want, cycles) in enumerate(
            zip(requests, got, expected(requests, dut.lanes), counts)):
        assert result == want, f"request {index} {request}: got {result}, expected {want}"
        assert cycles == dut.cycles, f"request {index}: done after {cycles} cycles"


# --- random rows ---------------------------------------------------------------------------------

def _random_multiplier(rng):
    if rng.random() < 0.25:
        return rng.choice(SPECIAL_MULTIPLIERS)
    return rng.randint(INT32_MIN, INT32_MAX)


def _random_shift(rng):
    """A shift row value: mostly in [-31, 30], else one of SPECIAL_SHIFTS or any int32."""
    draw = rng.random()
    if draw < 0.7:
        return rng.randint(-31, 30)
    if draw < 0.9:
        return rng.choice(SPECIAL_SHIFTS)
    return rng.randint(INT32_MIN, INT32_MAX)


def _random_x(rng, mult, shift):
    """x for a lane with ``mult`` and the clamped ``shift``: any int32 (with the special values),
    or chosen so that the result is near the int8 range (within about +-200), with a random
    fraction so both roundings act."""
    if rng.random() < 0.4 or mult == 0:
        return rng.choice(SPECIAL_DATA) if rng.random() < 0.2 else rng.randint(INT32_MIN, INT32_MAX)
    # result ~ x * 2**shift * mult / 2**31
    target = rng.uniform(-200, 200)
    x = round(target * 2.0 ** (31 - shift) / mult) + rng.randint(-2, 2)
    return max(INT32_MIN, min(INT32_MAX, x))


def random_requests(rng, lanes, count):
    """``count`` requests; the first loads both parameter rows. Of the later ones, in a shuffled
    order, half reuse the parameters of the rows before them, a sixth load a new multiplier row,
    a sixth a new shift row and the rest both. The proportions are fixed, not drawn, so every
    seed exercises reuse as much as the next one."""
    kinds = ["reuse"] * ((count - 1) // 2) + ["mult"] * ((count - 1) // 6) \
        + ["shift"] * ((count - 1) // 6)
    kinds += ["both"] * (count - 1 - len(kinds))
    rng.shuffle(kinds)
    kinds.insert(0, "both")
    requests = []
    mult = shift = None
    for kind in kinds:
        new_mult = [_random_multiplier(rng) for _ in range(lanes)] \
            if kind in ("mult", "both") else None
        new_shift = [_random_shift(rng) for _ in range(lanes)] \
            if kind in ("shift", "both") else None
        mult = new_mult or mult
        shift = clamp_shift(new_shift) if new_shift else shift
        x = [_random_x(rng, m, s) for m, s in zip(mult, shift)]
        zp = rng.randint(-128, 127)
        if rng.random() < 0.3:
            lo, hi = -128, 127
        else:
            lo, hi = sorted((rng.randint(-128, 127), rng.randint(-128, 127)))
        requests.append(Request(x, zp, lo, hi, new_mult, new_shift))
    return requests


@pytest.mark.parametrize("lanes", [1, 2, 3, 4])
@pytest.mark.parametrize("case_seed", [1, 2, 3, None], ids=["s1", "s2", "s3", "session"])
def test_random_rows(lanes, case_seed, seed):
    """Random rows against ``requantize_lanes``: fixed seeds, and the session's (``--seed``).
    Rows in a row with the same parameters check that the rotation brings them back."""
    value = seed if case_seed is None else case_seed
    print(f"case seed={value}")
    rng = random.Random(value * 1000 + lanes)
    dut = SerialRequantizer(lanes)
    requests = random_requests(rng, lanes, max(24, 120 // lanes))
    got, counts = simulate(dut, requests, rng=rng)
    check(dut, requests, got, counts)
    # Most rows reused their parameters; the rows exercised more than saturation: results of the
    # same rows with zero point 0 and the full int8 range, strictly inside it.
    reused = sum(r.multiplier is None and r.shift is None for r in requests)
    assert reused >= len(requests) // 3, reused
    full = [Request(r.x, 0, -128, 127, r.multiplier, r.shift) for r in requests]
    inside = sum(-128 < v < 127 for row in expected(full, lanes) for v in row)
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
    """Requests of ``cases`` ``lanes`` at a time, each loading its own parameters."""
    zp, lo, hi = clamp
    rows = []
    for start in range(0, len(cases), lanes):
        chunk = cases[start:start + lanes]
        chunk += cases[:lanes - len(chunk)]
        x, mult, shift = (list(column) for column in zip(*chunk))
        rows.append(Request(x, zp, lo, hi, mult, shift))
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


# --- the loaded parameters -----------------------------------------------------------------------

def _discriminating_x(shift, wrong):
    """An (x, multiplier) whose result (zero point 0, full range) with ``shift`` differs from that
    with every shift of ``wrong``."""
    pool = [(1, 1), (-1, 1), (INT32_MAX, 1 << 30), (INT32_MIN, 1 << 30), (3, 1 << 30),
            (-(3 << 29), INT32_MIN), (3 << 29, INT32_MIN), (1, 3 << max(0, 29 - shift))]
    pool += [(round(100 * 2.0 ** (31 - shift) / (1 << 30)) | 1, 1 << 30),
             (round(-77 * 2.0 ** (31 - shift) / (1 << 30)) | 1, 1 << 30)]
    for x, m in pool:
        if not (INT32_MIN <= x <= INT32_MAX and INT32_MIN <= m <= INT32_MAX):
            continue
        want = reference([x], [m], [shift], 0, -128, 127)
        if all(reference([x], [m], [w], 0, -128, 127) != want for w in wrong):
            return x, m
    raise AssertionError(f"no discriminating case for shift {shift} against {wrong}")


@pytest.mark.parametrize("lanes", [1, 3, 4])
def test_shift_clamp(lanes, seed):
    """Shift rows are clamped to [-31, 30] as CONFIG clamps them: values outside (SPECIAL_SHIFTS,
    and values with a single one of bits 5 .. 30 unlike the sign) and every value inside. Each
    lane's case tells the clamped shift from its neighbours in [-31, 30] and from the in-range
    shift the value's low six bits would read as."""
    rng = random.Random(seed)
    dut = SerialRequantizer(lanes)
    values = SPECIAL_SHIFTS + list(range(-31, 31))
    # One bit above the low five differs from the sign (bit k of t = value ^ sign), each k.
    values += [(1 << k) + 3 for k in range(5, 31)] + [~((1 << k) | 3) for k in range(5, 31)]
    cases = []
    for value in values:
        shift = clamp_shift([value])[0]
        low = ((value + 32) & 63) - 32
        wrong = {w for w in (shift - 1, shift + 1, low)
                 if golden.SHIFT_MIN <= w <= golden.SHIFT_MAX and w != shift}
        x, m = _discriminating_x(shift, wrong)
        cases.append((x, m, value))
    requests = _rows(cases, lanes, CLAMPS[0])
    got, counts = simulate(dut, requests, rng=rng)
    check(dut, requests, got, counts)


def test_reset_parameters(seed):
    """Without a load the multipliers are 0 (every result is the clamped zero point, where any
    other multiplier would move the results of INT32_MIN and INT32_MAX) and the shifts 0
    (checked after loading only the multipliers); then only the shifts are loaded."""
    rng = random.Random(seed)
    lanes = 4
    dut = SerialRequantizer(lanes)
    x = [100, -60, 37, -41]
    mult = [1 << 30, 1 << 30, -(1 << 30), INT32_MAX]
    extremes = [INT32_MIN, INT32_MAX] * (lanes // 2)
    requests = [Request(extremes, 5, -128, 127), Request(extremes, -7, -10, 10),
                Request(x, 0, -128, 127, multiplier=mult), Request(x, 3, -128, 127),
                Request(x, 0, -128, 127, shift=[-1, -2, 300, -9]), Request(x, 0, -128, 127)]
    want = expected(requests, lanes)
    assert want[0] == [5] * lanes and want[1] == [-7] * lanes
    # Shift 0 shows: in every lane the result differs from those with shift 1 and -1.
    for other in (1, -1):
        moved = reference(x, mult, [other] * lanes, 0, -128, 127)
        assert all(a != b for a, b in zip(want[2], moved)), (want[2], moved)
    got, counts = simulate(dut, requests, rng=rng)
    check(dut, requests, got, counts)


# --- protocol ------------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_protocol(lanes, seed):
    """``start``, ``load_multiplier`` and ``load_shift`` while busy are ignored (each pulses in
    about a third of the busy cycles, with other data and parameters); loads in idle cycles,
    including the ``done`` cycle and the ``start`` cycle, are taken; ``done`` pulses once per
    request, ``dut.cycles`` = 7 * lanes + 2 cycles after ``start``; ``result`` holds while idle
    (up to several row times, the inputs changing); back-to-back requests (``start`` in the
    ``done`` cycle) are taken."""
    rng = random.Random(seed)
    dut = SerialRequantizer(lanes)
    assert STEPS == 7 and dut.cycles == 7 * lanes + 2
    requests = random_requests(rng, lanes, 12)
    gaps = [0, 0, 3 * dut.cycles, 1, 0, 2 * dut.cycles, 0, 5, 0, 0, 1, 0]
    got, counts = simulate(dut, requests, rng=rng, gaps=gaps, noise=True)
    check(dut, requests, got, counts)
    # Every load in the start cycle and in the done cycle, for each kind of load.
    for kind in ("multiplier", "shift"):
        for where in ("start", "done"):
            requests = random_requests(rng, lanes, 6)
            for request in requests[1:]:
                setattr(request, kind, [rng.randint(INT32_MIN, INT32_MAX) for _ in range(lanes)])
                setattr(request, "shift" if kind == "multiplier" else "multiplier", None)
            dut = SerialRequantizer(lanes)
            got, counts = simulate(dut, requests, rng=rng, gaps=[0] * len(requests),
                                   noise=True, loads_at=where)
            check(dut, requests, got, counts)



# --- synthesis -----------------------------------------------------------------------------------

def test_ice40_cells():
    """Yosys ``synth_ice40 -dsp`` puts the multiplier, its operand registers, the accumulator's
    adder and the accumulator into one SB_MAC16; the rest is a few hundred LUT4s (measured with
    Yosys 0.70 for 4 lanes: 748 SB_LUT4, 324 flip-flops, 60 SB_CARRY; 787 logic cells once
    nextpnr packs them). About 260 of the LUT4s are the load-or-rotate multiplexers of the row,
    multiplier and shift registers, each in the logic cell of its flip-flop."""
    from tessera.fpga.synth import synth_stats
    bounds = {"lut": 790, "ff": 340, "carry": 72}
    stats = synth_stats(SerialRequantizer(lanes=4), family="ice40")
    print(f"iCE40, lanes=4: SB_LUT4 {stats['lut']}, flip-flops {stats['ff']}, "
          f"SB_CARRY {stats['carry']}, SB_MAC16 {stats['dsp']}: {stats['cells']}; "
          f"bounds {bounds}")
    assert stats["dsp"] == 1, stats["cells"]
    assert stats["lut"] <= bounds["lut"], stats["cells"]
    # The accumulator (32) and the operand registers (2 x 16) in fabric would exceed this.
    assert stats["ff"] <= bounds["ff"], stats["cells"]
    assert stats["carry"] <= bounds["carry"], stats["cells"]
