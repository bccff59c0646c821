"""Unit tests of the processing element and its multiplier in Amaranth's own simulator."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from tessera.rtl.multiplier import RegisteredMultiplier
from tessera.rtl.pe import ProcessingElement, psum_shape
from tessera.sim import golden


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def products(dut, a, b):
    """Drive ``dut`` (a RegisteredMultiplier) with one operand pair per cycle; return the product
    that leaves it ``dut.latency`` cycles after each pair."""
    got = []

    async def bench(ctx):
        for i in range(len(a) + dut.latency):
            if i < len(a):
                ctx.set(dut.a, int(a[i]))
                ctx.set(dut.b, int(b[i]))
            await ctx.tick()
            # p(t+L) = a(t) * b(t): after the tick ending cycle i, p holds cycle i-L+1's product
            if i >= dut.latency - 1:
                got.append(ctx.get(dut.p))

    run(dut, bench)
    return np.array(got[:len(a)])


@pytest.mark.parametrize("primitive,latency", [("generic", 2), ("lut", 3)])
def test_multiplier_latency_and_products(primitive, latency, seed):
    """Products of extreme and random operands, a new pair every cycle, ``latency`` cycles later."""
    rng = np.random.default_rng(seed)
    a = np.concatenate([[-128, -128, 127, 127, 0, -1], rng.integers(-128, 128, 500)]).astype(np.int8)
    b = np.concatenate([[-128, 127, -128, 127, 5, -1], rng.integers(-128, 128, 500)]).astype(np.int8)
    expect = golden.gemm(a[:, None], b[None, :])  # outer product: diagonal = a * b
    dut = RegisteredMultiplier(primitive=primitive)
    assert dut.latency == latency
    np.testing.assert_array_equal(products(dut, a, b), np.diag(expect))


def test_lut_multiplier_every_product():
    """All 65,536 operand pairs through the ``"lut"`` multiplier, one pair per cycle."""
    values = np.arange(-128, 128).astype(np.int8)
    expect = golden.gemm(values[:, None], values[None, :])    # expect[i, j] = values[i] * values[j]
    a, b = np.repeat(values, 256), np.tile(values, 256)        # pair k = (k // 256, k % 256)
    dut = RegisteredMultiplier(primitive="lut")
    np.testing.assert_array_equal(products(dut, a, b), expect.ravel())


@pytest.mark.parametrize("primitive", ["generic", "lut"])
def test_pe_banks_select_and_partial_sum(primitive, seed):
    """A PE stores beats addressed to its row in the named bank and multiplies by bank[sel]; the
    partial sum of a row is expected (and its result leaves) the multiplier's latency later."""
    rng = np.random.default_rng(seed)
    rows, row = 4, 2
    dut = ProcessingElement(row=row, rows=rows, multiplier=primitive)
    lat = dut.multiplier.latency
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
        for t in range(len(acts) + lat + 1):
            if t < len(acts):
                ctx.set(dut.act_in, int(acts[t]))
                ctx.set(dut.sel_in, int(sels[t]))
            if t >= lat and t - lat < len(acts):
                ctx.set(dut.psum_in, int(psums[t - lat]))   # psum of the same row, lat cycles later
            await ctx.tick()
            if t >= lat:
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
