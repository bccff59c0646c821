"""The sliced FIFO (rtl/sliced_fifo.py) in Amaranth's simulator, cycle by cycle against
``amaranth.lib.fifo.SyncFIFO`` (the unbuffered FIFO whose interface and timing it keeps) under
random writes and pops, including writes while full and pops while empty."""

import gc
import random
import warnings

import pytest

from amaranth.hdl import Module, UnusedElaboratable
from amaranth.lib.fifo import SyncFIFO
from amaranth.sim import Simulator

from tessera.rtl.sliced_fifo import SlicedFIFO


@pytest.mark.parametrize("split_read", [False, True], ids=["shared_read", "split_read"])
@pytest.mark.parametrize("slices, slice_width, depth", [(1, 8, 1), (3, 5, 22), (4, 8, 16),
                                                        (2, 3, 7)])
def test_matches_syncfifo(seed, slices, slice_width, depth, split_read):
    """Also: the per-slice copies of ``w_rdy``/``r_rdy`` equal them in every cycle, and with
    ``split_read`` every slice's read enable moves that slice's pointer."""
    rng = random.Random(seed)
    m = Module()
    m.submodules.dut = dut = SlicedFIFO(slice_width=slice_width, slices=slices, depth=depth,
                                        split_read=split_read)
    all_slices = (1 << slices) - 1
    m.submodules.ref = ref = SyncFIFO(width=slices * slice_width, depth=depth)
    seen = {"full": 0, "empty_pop": 0, "popped": 0}

    async def bench(ctx):
        for cycle in range(3000):
            # Phases that fill the FIFO, drain it, and mix.
            p_write, p_read = [(0.9, 0.2), (0.2, 0.9), (0.6, 0.6)][(cycle // 300) % 3]
            write = rng.random() < p_write
            read = rng.random() < p_read
            data = rng.randrange(1 << (slices * slice_width))
            ctx.set(dut.w_en, (1 << slices) - 1 if write else 0)
            ctx.set(dut.w_data, data)
            ctx.set(dut.r_en, (all_slices if split_read else 1) if read else 0)
            ctx.set(ref.w_en, write)
            ctx.set(ref.w_data, data)
            ctx.set(ref.r_en, read)
            for name in ("w_rdy", "r_rdy", "level"):
                got, want = ctx.get(getattr(dut, name)), ctx.get(getattr(ref, name))
                assert got == want, f"cycle {cycle}: {name} {got}, SyncFIFO {want}"
            for name in ("w_rdy", "r_rdy"):
                copies = ctx.get(getattr(dut, f"{name}_copies"))
                assert copies == (all_slices if ctx.get(getattr(ref, name)) else 0), \
                    f"cycle {cycle}: {name}_copies {copies:#b}"
            if ctx.get(ref.r_rdy):
                got, want = ctx.get(dut.r_data), ctx.get(ref.r_data)
                assert got == want, f"cycle {cycle}: r_data {got:#x}, SyncFIFO {want:#x}"
                seen["popped"] += read
            seen["full"] += write and not ctx.get(ref.w_rdy)
            seen["empty_pop"] += read and not ctx.get(ref.r_rdy)
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # The stimulus reached every case it is meant to check.
    assert seen["full"] > 0 and seen["empty_pop"] > 0 and seen["popped"] > 100, seen


@pytest.mark.parametrize("name, kwargs, match", [
    ("slices", dict(slice_width=8, slices=0, depth=4), r"slices must be an integer in \[1, "),
    ("depth", dict(slice_width=8, slices=2, depth=1.5), "depth must be a positive integer"),
])
def test_bad_parameters(name, kwargs, match):
    # The half-built component is collected here, its "created but never used" warning silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises((ValueError, TypeError), match=match) as info:
            SlicedFIFO(**kwargs)
        del info
        gc.collect()
