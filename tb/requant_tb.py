"""cocotb testbench of the requantizer (rtl/requant.py) as generated Verilog.

Run from pytest by tb/test_requant.py (``test_requantizer_verilog``), on every selected simulator,
for the generic circuit and for the ECP5 one (MULT18X18D primitives, simulated with
tb/models/MULT18X18D.v). Every row is compared bit for bit with ``tessera.sim.golden.requantize``;
data comes from a numpy generator seeded with cocotb's seed (printed at start-up, by cocotb and by
this testbench, and by the pytest side), so a failure replays with ``TESSERA_SEED=<seed>``.

The design's parameters (``lanes``, ``units`` and, where given, ``primitive``) arrive as JSON in
``TESSERA_PARAMS``. The timing contract (``beats``, ``latency``) is read from the Amaranth
component built from the same parameters, so that the Verilog is held to exactly what the
component promises.
"""

import gc
import json
import os
import warnings

import cocotb
import numpy as np
from amaranth.hdl import UnusedElaboratable
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from tessera.rtl.requant import Requantizer
from tessera.sim import golden
from tessera.tb.streams import pack, unpack

PERIOD_NS = 10

I32 = np.iinfo(np.int32)

#: Rows per phase.
ROWS = 150

#: (multiplier, shift) corner pairs given to some lanes, one list per phase.
CORNERS = [
    [(I32.max, -31), (1 << 30, 30), (0, 0), (1, 1), (I32.max, 30), (1 << 30, -31)],
    [(I32.max, 30), (1, -31), (1 << 30, 0), (0, 30), (I32.max, 0), (1, 30)],
]

#: Accumulator values mixed into the random rows.
CORNER_X = [I32.min, I32.max, 0, -1]


def contract(params):
    """``(beats, latency)`` of the Amaranth component built from ``params`` (which is then
    dropped; its "created but never used" warning is silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        design = Requantizer(**params)
        beats, latency = design.beats, design.latency
        del design
        gc.collect()
    return beats, latency


class TB:
    """Owns the clock and reset of one Requantizer and drives its rows."""
    def __init__(self, dut):
        self.dut = dut
        self.params = json.loads(os.environ["TESSERA_PARAMS"])
        self.lanes = self.params["lanes"]
        units = self.params.get("units") or self.lanes
        self.beats, self.latency = contract(self.params)
        assert self.beats == -(-self.lanes // units), (self.beats, self.lanes, units)
        # Array ports are flat vectors in the Verilog; their widths must agree with the lanes.
        assert len(dut.i_data) == 32 * self.lanes
        assert len(dut.multiplier) == 32 * self.lanes
        assert len(dut.shift) == 6 * self.lanes
        assert len(dut.o_data) == 8 * self.lanes
        # cocotb derives each test's RANDOM_SEED from the run's seed (COCOTB_RANDOM_SEED, which
        # is TESSERA_SEED) and the test's name: the run's seed is the one that replays.
        self.seed = cocotb.RANDOM_SEED
        self.run_seed = os.environ.get("COCOTB_RANDOM_SEED", "?")
        self.rng = np.random.default_rng(self.seed)
        self.where = f"params={self.params} seed={self.run_seed}"
        dut.i_valid.value = 0
        dut.i_data.value = 0
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start())

    async def tick(self):
        """One clock edge; return the ``o_valid`` and ``o_data`` of the cycle that ended (the
        values present at the edge)."""
        await RisingEdge(self.dut.clk)
        value = self.dut.o_valid.value
        assert value.is_resolvable, f"o_valid is {value} ({self.where})"
        valid = int(value)
        row = None
        if valid:
            data = self.dut.o_data.value
            assert data.is_resolvable, f"o_data is {data} with o_valid ({self.where})"
            row = unpack(int(data), 8, self.lanes)
        return valid, row

    async def reset(self):
        """Reset for 3 cycles; nothing may come out from the first reset edge on. (At the very
        first edge, at time 0, the registers' initial values may not be visible yet: Icarus
        shows X there.)"""
        self.dut.rst.value = 1
        await RisingEdge(self.dut.clk)
        for _ in range(2):
            valid, _row = await self.tick()
            assert not valid, f"o_valid during reset ({self.where})"
        self.dut.rst.value = 0
        valid, _row = await self.tick()
        assert not valid, f"o_valid in the cycle after reset ({self.where})"

    def draw_parameters(self, corners):
        """Random per-lane multipliers and shifts, the ``corners`` pairs on randomly chosen lanes;
        random zero point and clamp range. Applied to the ports and returned."""
        rng, lanes = self.rng, self.lanes
        mult = rng.integers(0, I32.max, lanes, endpoint=True, dtype=np.int64)
        shift = rng.integers(-31, 30, lanes, endpoint=True, dtype=np.int64)
        count = min(lanes, len(corners))
        for (m, s), lane in zip(corners, rng.choice(lanes, count, replace=False)):
            mult[lane], shift[lane] = m, s
        zp = int(rng.integers(-20, 20, endpoint=True))
        lo = int(rng.integers(-128, 0))
        hi = int(rng.integers(lo, 128))
        dut = self.dut
        dut.multiplier.value = pack(mult, 32)
        dut.shift.value = pack(shift, 6)
        dut.zero_point.value = pack([zp], 8)
        dut.act_min.value = pack([lo], 8)
        dut.act_max.value = pack([hi], 8)
        return mult, shift, zp, lo, hi

    def draw_rows(self, n):
        """``n`` random int32 rows, with INT32_MIN, INT32_MAX, 0 and -1 mixed in."""
        x = self.rng.integers(I32.min, I32.max, (n, self.lanes), endpoint=True, dtype=np.int64)
        for value in CORNER_X:
            x[self.rng.random((n, self.lanes)) < 0.06] = value
        return x

    async def stream(self, x, intervals, lead):
        """Idle ``lead`` cycles, then give row ``i`` of ``x`` with ``i_valid`` and ``intervals[i]``
        cycles later the next one; ``i_data`` is random while ``i_valid`` is low. Run until the
        last row has had time to come out (and a few cycles more), recording every cycle's
        outputs. Return the ``i_valid`` cycles and the ``(cycle, row)`` of every ``o_valid``,
        cycles counted from the start of the stream."""
        dut, rng = self.dut, self.rng
        starts = (lead + np.cumsum([0] + list(intervals[:-1]))).tolist()
        end = starts[-1] + self.latency + self.beats + 4
        pending = dict(zip(starts, range(len(x))))
        outputs = []
        for cycle in range(end):
            i = pending.get(cycle)
            dut.i_valid.value = int(i is not None)
            if i is not None:
                dut.i_data.value = pack(x[i], 32)
            else:
                # Garbage between rows: only the row of the i_valid cycle is taken.
                dut.i_data.value = pack(rng.integers(I32.min, I32.max, self.lanes,
                                                     endpoint=True), 32)
            valid, row = await self.tick()
            if valid:
                outputs.append((cycle, row))
        dut.i_valid.value = 0
        return starts, outputs

    def check(self, label, x, starts, outputs, mult, shift, zp, lo, hi):
        """``o_valid`` once per row, ``latency`` cycles after its ``i_valid``, nothing before the
        first row; every row bit-exact with golden.requantize."""
        where = f"{label} {self.where}"
        early = [cycle for cycle, _ in outputs if cycle < starts[0] + self.latency]
        assert not early, (f"{where}: o_valid at cycles {early} before the first row could come "
                           f"out (its i_valid at cycle {starts[0]}, latency {self.latency})")
        cycles = [cycle for cycle, _ in outputs]
        expect_cycles = [s + self.latency for s in starts]
        if cycles != expect_cycles:
            i = next(i for i, (a, b) in enumerate(zip(cycles + [None], expect_cycles + [None]))
                     if a != b)
            raise AssertionError(
                f"{where}: {len(cycles)} o_valid pulses for {len(starts)} rows, each expected "
                f"exactly latency={self.latency} cycles after its i_valid; pulse {i} at cycle "
                f"{cycles[i] if i < len(cycles) else None}, expected at "
                f"{expect_cycles[i] if i < len(expect_cycles) else None} (row {i}'s i_valid at "
                f"{starts[i] if i < len(starts) else None}); pulses from there: "
                f"{cycles[i:i + 6]}, i_valid from there: {starts[i:i + 6]}")
        expect = golden.requantize(x.astype(np.int32), mult, shift, zp, lo, hi)
        got = np.array([row for _, row in outputs], dtype=np.int64)
        for i in range(len(x)):
            bad = np.flatnonzero(got[i] != expect[i])
            if bad.size:
                raise AssertionError(
                    f"{where}: row {i} (i_valid at cycle {starts[i]}) differs in lanes "
                    f"{bad.tolist()}: got {got[i, bad].tolist()}, golden "
                    f"{expect[i, bad].tolist()}; x={x[i, bad].tolist()} "
                    f"multiplier={mult[bad].tolist()} shift={shift[bad].tolist()} "
                    f"zero_point={zp} act_min={lo} act_max={hi}")


@cocotb.test()
async def streams_rows(dut):
    """Two phases of ``ROWS`` rows, each with its own parameters (corner multipliers and shifts
    on some lanes): first at the fastest legal rate (``i_valid`` every ``beats`` cycles), then
    with random gaps (some longer than the latency). ``o_valid`` pulses exactly once per row,
    ``latency`` cycles after its ``i_valid``, never before the first row, and every row equals
    golden.requantize bit for bit."""
    tb = TB(dut)
    dut._log.info("requant_tb: seed %s (replay with TESSERA_SEED=%s; test seed %d), params %s, "
                  "beats %d, latency %d", tb.run_seed, tb.run_seed, tb.seed, tb.params, tb.beats,
                  tb.latency)
    await tb.reset()
    rng = tb.rng
    gaps = [0, 0, 1, 2, 3, tb.latency + 2]
    phases = [
        ("back-to-back", [tb.beats] * ROWS),
        ("gaps", [tb.beats + int(rng.choice(gaps)) for _ in range(ROWS)]),
    ]
    for (label, intervals), corners in zip(phases, CORNERS):
        params = tb.draw_parameters(corners)
        x = tb.draw_rows(ROWS)
        lead = int(rng.integers(1, 6))
        starts, outputs = await tb.stream(x, intervals, lead)
        tb.check(label, x, starts, outputs, *params)
        dut._log.info("requant_tb %s: %d rows bit-exact, o_valid %d cycles after i_valid",
                      label, ROWS, tb.latency)
