"""The requantizer (rtl/requant.py) against the golden model, in Amaranth's simulator."""

import numpy as np
from amaranth.sim import Simulator

from tessera.rtl.requant import Requantizer
from tessera.sim import golden

LANES = 4


def _cases(rng, n):
    """Rows of accumulators with per-lane parameters, corner cases first, then random."""
    i32 = np.iinfo(np.int32)
    corner_x = [i32.min, i32.max, 0, -1, 1, 1 << 30, -(1 << 30), 12345, -12345]
    corner_m = [i32.max, 1 << 30, (1 << 31) - 2, 0, 1, 1518500250]
    corner_s = [-31, 30, 0, -1, 1, -8, 8]
    rows = []
    for x in corner_x:
        for mult in corner_m:
            for s in corner_s:
                rows.append((x, mult, s))
    cases = []
    for start in range(0, len(rows), LANES):
        chunk = rows[start:start + LANES]
        chunk += rows[:LANES - len(chunk)]
        cases.append([np.array([c[j] for c in chunk]) for j in range(3)])
    for _ in range(n):
        x = rng.integers(i32.min, i32.max, LANES, endpoint=True)
        mult = rng.integers(0, i32.max, LANES, endpoint=True)
        s = rng.integers(-31, 30, LANES, endpoint=True)
        cases.append([x, mult, s])
    return cases


def test_requantizer_matches_golden(seed):
    rng = np.random.default_rng(seed)
    cases = _cases(rng, 300)
    zp, lo, hi = int(rng.integers(-20, 20)), -100, 110
    dut = Requantizer(lanes=LANES)
    got = []

    async def bench(ctx):
        ctx.set(dut.zero_point, zp)
        ctx.set(dut.act_min, lo)
        ctx.set(dut.act_max, hi)
        # Parameters are per row here (they are static in use; the pipeline carries them along
        # only through S1, so change them with the data and give each row its own cycle window).
        for x, mult, s in cases:
            for lane in range(LANES):
                ctx.set(dut.i_data[lane], int(x[lane]))
                ctx.set(dut.multiplier[lane], int(mult[lane]))
                ctx.set(dut.shift[lane], int(s[lane]))
            ctx.set(dut.i_valid, 1)
            await ctx.tick()
            ctx.set(dut.i_valid, 0)
            for _ in range(Requantizer.latency - 1):
                await ctx.tick()
            assert ctx.get(dut.o_valid) == 1
            got.append([ctx.get(dut.o_data[lane]) for lane in range(LANES)])
            await ctx.tick()
            assert ctx.get(dut.o_valid) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for (x, mult, s), row in zip(cases, got):
        expect = golden.requantize(x.astype(np.int32), mult, s, zp, lo, hi)
        np.testing.assert_array_equal(np.array(row, dtype=np.int8), expect,
                                      err_msg=f"x={x} multiplier={mult} shift={s}")
