"""Unit tests of the processing element and its multiplier in Amaranth's own simulator."""

import numpy as np
from amaranth.sim import Simulator

from tessera.rtl.multiplier import RegisteredMultiplier
from tessera.rtl.pe import ProcessingElement, psum_shape
from tessera.sim import golden


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_multiplier_latency_and_products(seed):
    rng = np.random.default_rng(seed)
    a = np.concatenate([[-128, -128, 127, 127, 0, -1], rng.integers(-128, 128, 500)]).astype(np.int8)
    b = np.concatenate([[-128, 127, -128, 127, 5, -1], rng.integers(-128, 128, 500)]).astype(np.int8)
    expect = golden.gemm(a[:, None], b[None, :])  # outer product: diagonal = a * b
    dut = RegisteredMultiplier(primitive="generic")
    got = []

    async def bench(ctx):
        for i in range(len(a) + 2):
            if i < len(a):
                ctx.set(dut.a, int(a[i]))
                ctx.set(dut.b, int(b[i]))
            await ctx.tick()
            if i >= 1:      # p(t+2) = a(t) * b(t): after the tick ending cycle i, p holds i-1's
                got.append(ctx.get(dut.p))

    run(dut, bench)
    np.testing.assert_array_equal(np.array(got[:len(a)]), np.diag(expect))


def test_pe_banks_select_and_partial_sum(seed):
    """A PE stores beats addressed to its row in the named bank and multiplies by bank[sel]."""
    rng = np.random.default_rng(seed)
    rows, row = 4, 2
    dut = ProcessingElement(row=row, rows=rows, multiplier="generic")
    w = rng.integers(-128, 128, 2)
    acts = rng.integers(-128, 128, 40)
    sels = rng.integers(0, 2, 40)
    psums = rng.integers(-(1 << 16), 1 << 16, 40)
    outs = []

    async def bench(ctx):
        # Beats for other rows must be ignored; beats for this row land in their bank.
        for bank in (0, 1):
            ctx.set(dut.w_in, {"valid": 1, "bank": bank, "row": row + 1, "value": 99})
            await ctx.tick()
            ctx.set(dut.w_in, {"valid": 1, "bank": bank, "row": row, "value": int(w[bank])})
            await ctx.tick()
        ctx.set(dut.w_in, {"valid": 0, "bank": 0, "row": row, "value": 55})
        for t in range(len(acts) + 3):
            if t < len(acts):
                ctx.set(dut.act_in, int(acts[t]))
                ctx.set(dut.sel_in, int(sels[t]))
            if t >= 2 and t - 2 < len(acts):
                ctx.set(dut.psum_in, int(psums[t - 2]))   # psum of the same row, 2 cycles later
            await ctx.tick()
            if t >= 2:
                outs.append(ctx.get(dut.psum_out))
            if t == 0:
                assert ctx.get(dut.act_out) == acts[0] and ctx.get(dut.sel_out) == sels[0]

    run(dut, bench)
    expect = psums + acts * w[sels]
    np.testing.assert_array_equal(np.array(outs[:len(acts)]), expect)


def test_psum_shape_holds_extremes():
    for rows in (1, 2, 3, 8, 16, 100, 256):
        shape = psum_shape(rows)
        assert (1 << (shape.width - 1)) - 1 >= rows * 16384, rows
        assert -(1 << (shape.width - 1)) <= rows * -16256, rows
