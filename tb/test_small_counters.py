"""The block-RAM performance counters (rtl/small/counters.py) in Amaranth's simulator against a
plain model (one Python integer per counter):

* random increments of every width (1-bit events, 5-bit byte counts, a 32-bit increment that wraps
  the counter), in bursts with idle stretches between them, occasional clears (some in the same
  cycle as increments, which are dropped) and a random counter read in every cycle;
* in every cycle: ``settled`` is high exactly when the last nonzero increment or clear (or the
  reset) lies ``n + 2`` or more cycles back; when it is high, ``read_data`` equals the model's
  count; when no clear lies in the window, the small counters read between the model's count
  ``n + 2`` cycles ago and its count now (the documented lag);
* a reset in the middle of counting zeroes every counter (the RAM keeps its words; the first
  round of visits overwrites them);
* construction errors, and the iCE40 cells Yosys maps it to.
"""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from tessera.rtl.small.counters import CounterRam

WIDTHS = {"cycles": 1, "busy": 1, "bytes_read": 5, "stall": 1, "bytes_written": 5, "big": 32}
SMALL = [name for name, width in WIDTHS.items() if width < 32]


def _bench(dut):
    """A module with the DUT and a sync domain whose reset the testbench drives."""
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.dut = dut
    return top, sync


def _run(seed, cycles, reset_at=None):
    rng = random.Random(seed)
    dut = CounterRam(WIDTHS)
    names = list(WIDTHS)
    n = len(names)
    top, sync = _bench(dut)
    checked = {"settled": 0, "bounded": 0}

    async def testbench(ctx):
        counts = dict.fromkeys(names, 0)
        history = [dict(counts)]        # history[k]: the counts after cycle k (0: the reset)
        last_event = last_clear = 0     # the reset is a clear in cycle 0
        read_index = [0]                # read_index[k]: the index driven in cycle k
        active = False
        for cycle in range(1, cycles + 1):
            # --- the outputs of this cycle (from the registers the previous edge updated) ---
            settled = ctx.get(dut.settled)
            assert settled == (cycle - last_event >= n + 2), (cycle, last_event, settled)
            index = read_index[cycle - 1]
            if cycle >= 2 and index < n:
                name, value = names[index], ctx.get(dut.read_data)
                if settled:
                    assert value == counts[name], (cycle, name, value, counts[name])
                    checked["settled"] += 1
                if name in SMALL and cycle - n - 3 > last_clear:
                    low, high = history[cycle - n - 2][name], history[cycle - 2][name]
                    assert low <= value <= high, (cycle, name, low, value, high)
                    checked["bounded"] += 1
            # --- this cycle's inputs ---
            reset = cycle == reset_at
            ctx.set(sync.rst, reset)
            if rng.random() < 0.03:
                active = not active
            clear = rng.random() < 0.004
            incs = {}
            for name, width in WIDTHS.items():
                if active and rng.random() < 0.6:
                    incs[name] = (rng.randrange(1 << 32) if width == 32 and rng.random() < 0.3
                                  else rng.randrange(1 << width))
                else:
                    incs[name] = 0
            if rng.random() < 0.2:      # mostly in range; sometimes beyond the last counter
                index = rng.randrange(1 << len(dut.read_index))
            read_index.append(index)
            ctx.set(dut.clear, clear)
            ctx.set(dut.read_index, index)
            for name in names:
                ctx.set(getattr(dut.inc, name), incs[name])
            if clear or reset:          # this cycle's increments are dropped
                counts = dict.fromkeys(names, 0)
                last_event = last_clear = cycle
            else:
                for name in names:
                    counts[name] = (counts[name] + incs[name]) % (1 << 32)
                if any(incs.values()):
                    last_event = cycle
            history.append(dict(counts))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return checked


def test_random_counting(seed):
    """Random increments, clears and reads against the model (see the module docstring)."""
    print(f"seed {seed}")
    checked = _run(seed, 4000)
    # The run reached both checks many times (idle stretches and reads inside bursts).
    assert checked["settled"] > 200 and checked["bounded"] > 1000, checked


def test_reset_zeroes_the_counters(seed):
    """A reset in the middle of counting: the counters read 0 (then count again) once settled."""
    print(f"seed {seed}")
    checked = _run(seed, 1500, reset_at=700)
    assert checked["settled"] > 50, checked


@pytest.mark.parametrize("widths, match", [
    ({"a": 1}, "at least 2 counters"),
    ({"a": 1, "b": 0}, "counter 'b'"),
    ({"a": 1, "b": 33}, "counter 'b'"),
    ({"a": True, "b": 1}, "counter 'a'"),
])
def test_bad_widths(widths, match):
    with pytest.raises(ValueError, match=match):
        CounterRam(widths)


def test_synth_ice40():
    """Ten counters as the small core has them: block RAM (two copies of a 32-bit word: four
    SB_RAM40_4K) and less logic than the ten 32-bit registers and adders it replaces (320
    flip-flops, about 320 LUT4 and 300 carries; fifteenth session: 233 LUT4, 73 flip-flops)."""
    from tessera.fpga.synth import synth_stats
    widths = {f"event{i}": 1 for i in range(8)} | {"bytes_read": 5, "bytes_written": 5}
    stats = synth_stats(CounterRam(widths), family="ice40")
    print(f"CounterRam(10 counters) on iCE40: {stats['lut']} LUT4, {stats['ff']} flip-flops, "
          f"{stats['carry']} SB_CARRY, {stats['bram']} RAM")
    assert stats["bram"] == 4 and stats["dsp"] == 0, stats
    assert stats["lut"] <= 250 and stats["ff"] <= 90, stats
