"""The requantizer (rtl/requant.py) against the golden model, in Amaranth's simulator: one
pipeline per lane (``units == lanes``) and pipelines time-shared across the lanes (``units <
lanes``, including ``lanes`` not a multiple of ``units``); and as generated Verilog on each
selected simulator (tb/requant_tb.py), with generic multipliers and with ECP5 MULT18X18D
primitives (simulated with tb/models/MULT18X18D.v)."""

import gc
import warnings
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from tessera.rtl.requant import STAGES, Requantizer
from tessera.sim import golden
from tessera.tb import simulators

#: (lanes, units): today's circuit (units == lanes, and units None), and time-shared ones,
#: divisible and not.
SHAPES = [(4, None), (4, 4), (4, 2), (12, 3), (8, 3), (5, 1), (12, 5)]

I32 = np.iinfo(np.int32)


def _id(shape):
    lanes, units = shape
    return f"lanes{lanes}-units{units}"


def _cases(rng, n, lanes):
    """Rows of accumulators with per-lane parameters, corner cases first, then random."""
    corner_x = [I32.min, I32.max, 0, -1, 1, 1 << 30, -(1 << 30), 12345, -12345]
    corner_m = [I32.max, 1 << 30, (1 << 31) - 2, 0, 1, 1518500250]
    corner_s = [-31, 30, 0, -1, 1, -8, 8]
    rows = []
    for x in corner_x:
        for mult in corner_m:
            for s in corner_s:
                rows.append((x, mult, s))
    cases = []
    for start in range(0, len(rows), lanes):
        chunk = rows[start:start + lanes]
        chunk += rows[:lanes - len(chunk)]
        cases.append([np.array([c[j] for c in chunk]) for j in range(3)])
    for _ in range(n):
        x = rng.integers(I32.min, I32.max, lanes, endpoint=True)
        mult = rng.integers(0, I32.max, lanes, endpoint=True)
        s = rng.integers(-31, 30, lanes, endpoint=True)
        cases.append([x, mult, s])
    return cases


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_requantizer_matches_golden(shape, seed):
    """Corner rows (INT32 extremes, corner multipliers, shifts -31..30) and random rows, each with
    its own per-lane parameters, one row at a time: bit-exact with golden.requantize, ``o_valid``
    exactly ``latency`` cycles after ``i_valid`` and for one cycle."""
    lanes, units = shape
    rng = np.random.default_rng(seed)
    cases = _cases(rng, 300 if lanes <= 4 else 100, lanes)
    zp, lo, hi = int(rng.integers(-20, 20)), -100, 110
    dut = Requantizer(lanes=lanes, units=units)
    got = []

    async def bench(ctx):
        ctx.set(dut.zero_point, zp)
        ctx.set(dut.act_min, lo)
        ctx.set(dut.act_max, hi)
        # Parameters are per row here (they are static in use; give each row its own cycle
        # window, so that they are stable while it is in flight).
        for x, mult, s in cases:
            for lane in range(lanes):
                ctx.set(dut.i_data[lane], int(x[lane]))
                ctx.set(dut.multiplier[lane], int(mult[lane]))
                ctx.set(dut.shift[lane], int(s[lane]))
            ctx.set(dut.i_valid, 1)
            await ctx.tick()
            ctx.set(dut.i_valid, 0)
            for _ in range(dut.latency - 1):
                assert ctx.get(dut.o_valid) == 0
                await ctx.tick()
            assert ctx.get(dut.o_valid) == 1
            got.append([ctx.get(dut.o_data[lane]) for lane in range(lanes)])
            await ctx.tick()
            assert ctx.get(dut.o_valid) == 0

    _simulate(dut, bench)
    assert len(got) == len(cases)
    for (x, mult, s), row in zip(cases, got):
        expect = golden.requantize(x.astype(np.int32), mult, s, zp, lo, hi)
        np.testing.assert_array_equal(np.array(row, dtype=np.int8), expect,
                                      err_msg=f"{_id(shape)} seed={seed}: x={x} "
                                              f"multiplier={mult} shift={s}")


@pytest.mark.parametrize("gaps", ["back-to-back", "gaps"])
@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_requantizer_streams_rows(shape, gaps, seed):
    """Rows at the fastest legal rate (one every ``beats`` cycles) or with random gaps (some
    longer than the latency), with fixed per-lane parameters (corner multipliers and shifts among
    random ones): ``o_valid`` pulses exactly once per row, ``latency`` cycles after its
    ``i_valid``, and every row is bit-exact with golden.requantize."""
    lanes, units = shape
    rng = np.random.default_rng(seed)
    dut = Requantizer(lanes=lanes, units=units)
    beats = dut.beats
    assert beats == -(-lanes // (units or lanes))
    assert dut.latency == STAGES + beats + (beats > 1)   # time-shared: an input register
    n = 120
    x = rng.integers(I32.min, I32.max, (n, lanes), endpoint=True)
    x[rng.random((n, lanes)) < 0.1] = I32.min
    x[rng.random((n, lanes)) < 0.1] = I32.max
    mult = rng.integers(0, I32.max, lanes, endpoint=True)
    shift = rng.integers(-31, 30, lanes, endpoint=True)
    corners = [(I32.max, -31), (1 << 30, 30), (0, 0), (1, 1), (1518500250, -8)]
    for k, lane in enumerate(rng.choice(lanes, min(lanes, len(corners)), replace=False)):
        mult[lane], shift[lane] = corners[k]
    zp = int(rng.integers(-20, 20))
    lo = int(rng.integers(-128, 0))
    hi = int(rng.integers(lo, 128))
    if gaps == "back-to-back":
        intervals = [beats] * n
    else:
        intervals = [beats + int(rng.choice([0, 0, 1, 2, 3, dut.latency + 2])) for _ in range(n)]
    starts = np.cumsum([0] + intervals[:-1]).tolist()
    end = starts[-1] + dut.latency + beats + 4
    outputs = []          # (cycle, row)

    async def bench(ctx):
        for lane in range(lanes):
            ctx.set(dut.multiplier[lane], int(mult[lane]))
            ctx.set(dut.shift[lane], int(shift[lane]))
        ctx.set(dut.zero_point, zp)
        ctx.set(dut.act_min, lo)
        ctx.set(dut.act_max, hi)
        pending = dict(zip(starts, range(n)))
        for cycle in range(end):
            i = pending.get(cycle)
            ctx.set(dut.i_valid, int(i is not None))
            if i is not None:
                for lane in range(lanes):
                    ctx.set(dut.i_data[lane], int(x[i, lane]))
            else:
                # Garbage between rows: only the row of the i_valid cycle is taken.
                for lane in range(lanes):
                    ctx.set(dut.i_data[lane], int(rng.integers(I32.min, I32.max)))
            if ctx.get(dut.o_valid):
                outputs.append((cycle, [ctx.get(dut.o_data[lane]) for lane in range(lanes)]))
            await ctx.tick()

    _simulate(dut, bench)
    where = f"{_id(shape)} {gaps} seed={seed}"
    assert [cycle for cycle, _ in outputs] == [s + dut.latency for s in starts], \
        f"{where}: o_valid cycles differ from i_valid + latency {dut.latency}"
    expect = golden.requantize(x.astype(np.int32), mult, shift, zp, lo, hi)
    got = np.array([row for _, row in outputs], dtype=np.int8)
    bad = np.argwhere(got != expect)
    assert bad.size == 0, (f"{where}: {len(bad)} lanes differ, first row {bad[0][0]} lane "
                           f"{bad[0][1]}: x={x[bad[0][0], bad[0][1]]} "
                           f"multiplier={mult[bad[0][1]]} shift={shift[bad[0][1]]}: "
                           f"got {got[tuple(bad[0])]}, golden {expect[tuple(bad[0])]}")


def test_requantizer_parameters():
    """``units`` defaults to ``lanes``; ``beats`` and ``latency``; bad ``units`` are refused
    with a message naming the value. (The unused components are collected here, their "created
    but never used" warnings silenced.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        for lanes, units, beats, latency in [(8, None, 1, 14), (8, 8, 1, 14), (8, 3, 3, 17),
                                             (12, 1, 12, 26), (12, 6, 2, 16), (1, 1, 1, 14)]:
            dut = Requantizer(lanes=lanes, units=units)
            assert (dut.units, dut.beats, dut.latency) == (units or lanes, beats, latency)
            del dut
        for units in (0, 9, -1):
            with pytest.raises(ValueError,
                               match=rf"units must be an integer in \[1, 8\].*not {units}"):
                Requantizer(lanes=8, units=units)
        for units in (2.0, "2", True):
            with pytest.raises(TypeError, match="units must be an integer"):
                Requantizer(lanes=8, units=units)
        gc.collect()


MULT18X18D_MODEL = Path(__file__).resolve().parent / "models" / "MULT18X18D.v"

#: (lanes, units), primitive of the Verilog runs: the ECP5 circuit with one pipeline per lane
#: and with time-shared pipelines, and the generic one (the Amaranth simulations above cover its
#: shapes; each Verilog build costs half a minute).
VERILOG_RUNS = [((4, None), "ecp5"), ((12, 3), "ecp5"), ((4, None), "generic")]


@pytest.mark.parametrize("shape,primitive", VERILOG_RUNS,
                         ids=[f"{_id(shape)}-{primitive}" for shape, primitive in VERILOG_RUNS])
def test_requantizer_verilog(sim, shape, primitive, seed):
    """The generated Verilog (generic multipliers, or ECP5 MULT18X18D instances with the
    behavioural model) streaming rows back to back and with gaps, with corner parameters and
    values: bit-exact with golden.requantize, ``o_valid`` once per row, ``latency`` cycles after
    its ``i_valid`` (tb/requant_tb.py)."""
    lanes, units = shape
    extra = [MULT18X18D_MODEL] if primitive == "ecp5" else []
    design = simulators.build(sim, "requantizer", Requantizer,
                              {"lanes": lanes, "units": units, "primitive": primitive},
                              extra_sources=extra)
    simulators.run(design, "tessera.tb.requant_tb", testcase="streams_rows", seed=seed)
