"""cocotb testbench of the tensor core (rtl/tensor_core.py).

Run from pytest by tb/test_tensor_core.py. Every check compares against ``tessera.sim.golden``;
data comes from a numpy generator seeded with cocotb's seed (printed by cocotb at start-up and by
the pytest side), so a failure replays with ``TESSERA_SEED=<seed>``.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from tessera.sim import golden
from tessera.sim.tiling import assemble, split_gemm
from tessera.tb.streams import CycleCounter, StreamSink, StreamSource, pack, unpack

PERIOD_NS = 10


class TB:
    """Owns the clock, reset and the three stream drivers of one TensorCore."""
    def __init__(self, dut, *, idle=0.0, stall=0.0):
        self.dut = dut
        params = json.loads(os.environ["TESSERA_PARAMS"])
        self.rows, self.cols = params["rows"], params["cols"]
        # Widths are read from the design and must agree with the parameters.
        assert len(dut.weights__payload) == 8 * self.cols
        assert len(dut.activations__payload) == 8 * self.rows + 1
        assert len(dut.results__payload) == 32 * self.cols + 1
        self.seed = cocotb.RANDOM_SEED
        self.np_rng = np.random.default_rng(self.seed)
        self.py_rng = random.Random(self.seed)
        self.counter = CycleCounter(PERIOD_NS)
        self.weights = StreamSource(dut, "weights", dut.clk, rng=self.py_rng, idle=idle)
        self.activations = StreamSource(dut, "activations", dut.clk, rng=self.py_rng, idle=idle)
        self.results = StreamSink(dut, "results", dut.clk, rng=self.py_rng, stall=stall)
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start())

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def set_traffic(self, idle, stall):
        self.weights.idle = self.activations.idle = idle
        self.results.stall = stall

    async def run_tiles(self, tiles):
        """Stream ``tiles`` back to back; return (per-tile int32 results, cycles, last flags)."""
        weight_words = [pack(row, 8) for t in tiles for row in t.weights]
        act_words = []
        for t in tiles:
            m = len(t.activations)
            for i, row in enumerate(t.activations):
                act_words.append(pack(row, 8) | (int(i == m - 1) << (8 * self.rows)))
        self.weights.first_cycle = None
        w_task = self.weights.start(weight_words, self.counter)
        a_task = self.activations.start(act_words, self.counter)
        r_task = self.results.start(len(act_words), self.counter)
        await w_task
        await a_task
        words = await r_task
        cycles = self.results.last_cycle - self.weights.first_cycle + 1
        results, lasts, pos = [], [], 0
        for t in tiles:
            m = len(t.activations)
            chunk = words[pos:pos + m]
            pos += m
            results.append(np.array([unpack(w, 32, self.cols) for w in chunk], np.int64))
            lasts.append([(w >> (32 * self.cols)) & 1 for w in chunk])
        return results, cycles, lasts

    async def check_gemm(self, a, w, label):
        """Run ``a @ w`` tile by tile and compare every tile and the sum with the golden model."""
        tiles = split_gemm(a, w, self.rows, self.cols)
        results, cycles, lasts = await self.run_tiles(tiles)
        for i, (tile, got, last) in enumerate(zip(tiles, results, lasts)):
            expect = golden.gemm(tile.activations, tile.weights)
            if not np.array_equal(got, expect):
                bad = np.argwhere(got != expect)[0]
                raise AssertionError(
                    f"{label}: tile {i} (k={tile.k}, n={tile.n}) row {bad[0]} col {bad[1]}: "
                    f"got {got[tuple(bad)]}, expected {expect[tuple(bad)]} (seed {self.seed})")
            m = len(tile.activations)
            assert last == [0] * (m - 1) + [1], f"{label}: tile {i} last flags {last}"
        total = assemble(tiles, results, w.shape[1])
        np.testing.assert_array_equal(total, golden.gemm(a, w), err_msg=label)
        return cycles, len(tiles)


def random_int8(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


TRAFFIC = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.6)]


@cocotb.test()
async def random_shapes(dut):
    """Random GEMM shapes (M = 1, K = 1, odd sizes) under every traffic pattern."""
    tb = TB(dut)
    await tb.reset()
    rng = tb.np_rng
    r, c = tb.rows, tb.cols
    shapes = [(1, 1, 1), (1, r, c), (r, 1, c), (3, 2 * r + 1, c + 1), (2 * r + 3, r, 2 * c - 1)]
    for _ in range(4):
        shapes.append(tuple(int(x) for x in rng.integers(1, [3 * r + 4, 3 * r + 2, 2 * c + 3])))
    for idle, stall in TRAFFIC:
        tb.set_traffic(idle, stall)
        for m, k, n in shapes:
            a, w = random_int8(rng, (m, k)), random_int8(rng, (k, n))
            await tb.check_gemm(a, w, f"M={m} K={k} N={n} idle={idle} stall={stall}")
    dut._log.info("random_shapes: %d GEMMs x %d traffic patterns bit-exact", len(shapes),
                  len(TRAFFIC))


@cocotb.test()
async def extreme_values(dut):
    """All -128, all 127 and alternating signs; K at which a single tile's sum is largest."""
    tb = TB(dut)
    await tb.reset()
    r, c = tb.rows, tb.cols
    k = int(os.environ.get("TESSERA_EXTREME_K", 4 * r))
    m = max(r, 4)
    alternating = np.where((np.arange(k) % 2) == 0, -128, 127).astype(np.int8)
    cases = {
        "all -128": (np.full((m, k), -128, np.int8), np.full((k, c), -128, np.int8)),
        "all 127": (np.full((m, k), 127, np.int8), np.full((k, c), 127, np.int8)),
        "-128 x 127": (np.full((m, k), -128, np.int8), np.full((k, c), 127, np.int8)),
        "alternating": (np.tile(alternating, (m, 1)), np.tile(alternating[:, None], (1, c))),
    }
    for idle, stall in [(0.0, 0.0), (0.3, 0.5)]:
        tb.set_traffic(idle, stall)
        for name, (a, w) in cases.items():
            await tb.check_gemm(a, w, f"{name} K={k}")
    expect = golden.gemm(cases["all -128"][0][:1], cases["all -128"][1][:, :1])[0, 0]
    dut._log.info("extreme_values: K=%d bit-exact, all -128 sums to %d", k, expect)


@cocotb.test()
async def back_to_back_tiles(dut):
    """T tiles of M >= rows rows each, no bubbles: total cycles must be T*M + O(rows + cols)."""
    tb = TB(dut)
    await tb.reset()
    rng = tb.np_rng
    r, c = tb.rows, tb.cols
    m = max(r, 4)
    n_tiles = 12
    a = random_int8(rng, (m, n_tiles * r))
    w = random_int8(rng, (n_tiles * r, c))
    tb.set_traffic(0.0, 0.0)
    cycles, tiles = await tb.check_gemm(a, w, "back-to-back")
    assert tiles == n_tiles
    # First weight transfer to last result: R cycles to load the first tile, T*M rows, then the
    # pipeline (rows + cols + 1) and the result FIFO (2 cycles).
    bound = n_tiles * m + 2 * (r + c) + 4
    dut._log.info("back_to_back_tiles: T=%d M=%d took %d cycles (T*M=%d, bound %d, T*(M+R)=%d)",
                  n_tiles, m, cycles, n_tiles * m, bound, n_tiles * (m + r))
    assert cycles <= bound, f"{cycles} cycles for {n_tiles} tiles of {m} rows exceeds {bound}"


@cocotb.test()
async def reset_mid_stream(dut):
    """A reset in the middle of a tile drops everything in flight; the next GEMM is exact."""
    tb = TB(dut)
    await tb.reset()
    rng = tb.np_rng
    r, c = tb.rows, tb.cols
    tiles = split_gemm(random_int8(rng, (4 * r, 3 * r)), random_int8(rng, (3 * r, c)), r, c)
    words = [pack(row, 8) for t in tiles for row in t.weights]
    w_task = tb.weights.start(words)
    a_task = tb.activations.start([pack(row, 8) for row in tiles[0].activations])
    await ClockCycles(dut.clk, r + 3)
    w_task.cancel()
    a_task.cancel()
    tb.dut.weights__valid.value = 0
    tb.dut.activations__valid.value = 0
    await tb.reset()
    await ClockCycles(dut.clk, 2)
    assert int(dut.results__valid.value) == 0, "results still valid after reset"
    a, w = random_int8(rng, (2 * r + 1, 2 * r)), random_int8(rng, (2 * r, c + 1))
    await tb.check_gemm(a, w, "after reset")
