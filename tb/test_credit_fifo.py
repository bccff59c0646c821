"""The credit FIFO (rtl/credit_fifo.py) in Amaranth's simulator against a Python queue: a writer
that respects its credits (never more than ``depth`` entries held), random pops, every entry
read once and in order, and each entry at the head exactly two cycles after its write."""

import gc
import random
import warnings
from collections import deque

import pytest

from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from tessera.rtl.credit_fifo import CreditFIFO


@pytest.mark.parametrize("width, depth", [(8, 1), (5, 3), (32, 16), (3, 22)])
def test_order_and_timing(seed, width, depth):
    rng = random.Random(seed)
    dut = CreditFIFO(width=width, depth=depth)
    seen = {"popped": 0, "full": 0, "stalled": 0}

    async def bench(ctx):
        held = deque()          # (data, first cycle at the head), oldest first
        credits = depth
        for cycle in range(3000):
            p_write, p_read = [(0.9, 0.2), (0.2, 0.9), (0.7, 0.7)][(cycle // 300) % 3]
            write = credits > 0 and rng.random() < p_write
            read = rng.random() < p_read
            data = rng.randrange(1 << width)
            seen["full"] += credits == 0
            ctx.set(dut.w_en, write)
            ctx.set(dut.w_data, data)
            ctx.set(dut.r_en, read)
            # The head is the oldest entry once its two cycles have passed.
            visible = bool(held) and held[0][1] <= cycle
            assert ctx.get(dut.r_rdy) == visible, f"cycle {cycle}: r_rdy, expected {visible}"
            if visible:
                got = ctx.get(dut.r_data)
                assert got == held[0][0], f"cycle {cycle}: r_data {got:#x}, expected {held[0][0]:#x}"
                if read:
                    held.popleft()
                    credits += 1
                    seen["popped"] += 1
            elif held:
                seen["stalled"] += 1
            if write:
                held.append((data, cycle + 2))
                credits -= 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # The stimulus filled the queue, drained it, and saw entries not yet visible.
    assert seen["popped"] > 300 and seen["full"] > 0 and seen["stalled"] > 0, seen


def test_bad_depth():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match=r"depth must be an integer in \[1, ") as info:
            CreditFIFO(width=8, depth=0)
        del info
        gc.collect()
