"""The register slice (rtl/register_slice.py) in Amaranth's simulator: order and contents under
random valid/ready, full rate (half rate without the spare entry), and ``i.ready`` independent of
``o.ready`` within a cycle."""

import random

import pytest

from amaranth.sim import Simulator

from tessera.rtl.register_slice import RegisterSlice


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("full_rate", [True, False])
def test_random_traffic_keeps_order_and_contents(seed, full_rate):
    rng = random.Random(seed)
    dut = RegisterSlice(16, full_rate=full_rate)
    sent, received = [], []

    async def bench(ctx):
        value = rng.randrange(1 << 16)
        for cycle in range(4000):
            offer = rng.random() < rng.choice([0.3, 0.9, 1.0])
            take = rng.random() < rng.choice([0.3, 0.9, 1.0])
            ctx.set(dut.i.valid, offer)
            ctx.set(dut.i.payload, value)
            ready_before = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, not take)          # i.ready must not follow o.ready
            assert ctx.get(dut.i.ready) == ready_before, f"cycle {cycle}: i.ready is combinational"
            ctx.set(dut.o.ready, take)
            assert ctx.get(dut.i.ready) == ready_before, f"cycle {cycle}: i.ready is combinational"
            if ctx.get(dut.o.valid) and take:
                received.append(ctx.get(dut.o.payload))
            if offer and ctx.get(dut.i.ready):
                sent.append(value)
                value = rng.randrange(1 << 16)
            await ctx.tick()

    _run(dut, bench)
    assert len(sent) > 1000
    assert received == sent[:len(received)] and len(sent) - len(received) <= (2 if full_rate else 1)


def test_full_rate():
    """Always valid, always ready: one transfer per cycle after the first cycle of latency."""
    dut = RegisterSlice(8)
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        for cycle in range(50):
            ctx.set(dut.i.payload, cycle)
            assert ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                got.append((cycle, ctx.get(dut.o.payload)))
            await ctx.tick()

    _run(dut, bench)
    assert got == [(cycle, cycle - 1) for cycle in range(1, 50)]


def test_half_rate_without_spare():
    """``full_rate=False``: always valid, always ready: a transfer every other cycle, one cycle of
    latency, and the slice never holds two payloads."""
    dut = RegisterSlice(8, full_rate=False)
    got, accepted = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        for cycle in range(50):
            ctx.set(dut.i.payload, cycle)
            assert ctx.get(dut.i.ready) == (not ctx.get(dut.o.valid))
            if ctx.get(dut.i.ready):
                accepted.append(cycle)
            if ctx.get(dut.o.valid):
                got.append((cycle, ctx.get(dut.o.payload)))
            await ctx.tick()

    _run(dut, bench)
    assert accepted == list(range(0, 50, 2))
    assert got == [(cycle + 1, cycle) for cycle in range(0, 49, 2)]
