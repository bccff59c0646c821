"""Simulation-speed benchmark of the tensor core: stimulus generated in HDL, not in Python.

``TensorCoreBench`` wraps a :class:`TensorCore` with free-running LFSR sources on the weight and
activation streams (a tile boundary every ``tile_rows`` rows) and an always-ready result sink that
counts results and folds them into a checksum. The cocotb test only starts the clock and waits, so
the measured rate is the simulator's, not Python's. Run it with ``scripts/bench_sim.py``.
"""

import json
import os
import time

import cocotb
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer

from tessera.rtl.tensor_core import TensorCore


class TensorCoreBench(wiring.Component):
    """TensorCore plus HDL stimulus; ``results`` counts result rows, ``checksum`` XORs them."""
    def __init__(self, *, rows, cols, tile_rows=16):
        self.core = TensorCore(rows=rows, cols=cols)
        self.tile_rows = tile_rows
        super().__init__({"results": Out(32), "checksum": Out(32)})

    def elaborate(self, platform):
        m = Module()
        core = m.submodules.core = self.core
        lfsr = Signal(32, init=0xACE1ACE1)
        m.d.sync += lfsr.eq((lfsr << 1) | (lfsr[31] ^ lfsr[21] ^ lfsr[1] ^ lfsr[0]))
        row = Signal(range(self.tile_rows))
        a_go = core.activations.valid & core.activations.ready
        with m.If(a_go):
            m.d.sync += row.eq(Mux(row == self.tile_rows - 1, 0, row + 1))
        m.d.comb += [
            core.weights.valid.eq(1),
            core.weights.payload.as_value().eq(lfsr.replicate(2)),
            core.activations.valid.eq(1),
            core.activations.payload.data.as_value().eq(lfsr.replicate(core.rows)),
            core.activations.payload.last.eq(row == self.tile_rows - 1),
            core.results.ready.eq(1),
        ]
        with m.If(core.results.valid):
            m.d.sync += [
                self.results.eq(self.results + 1),
                self.checksum.eq(self.checksum ^ core.results.payload.as_value()[:32]),
            ]
        return m




@cocotb.test()
async def measure(dut):
    cycles = int(os.environ.get("TESSERA_BENCH_CYCLES", "200000"))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns", impl="gpi").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    start = time.perf_counter()
    await Timer(cycles * 10, unit="ns")   # one Python wake-up, not one per clock edge
    elapsed = time.perf_counter() - start
    results = int(dut.results.value)
    assert results > cycles // 2, f"only {results} results in {cycles} cycles"
    with open(os.environ["TESSERA_BENCH_OUT"], "w") as f:
        json.dump({"cycles": cycles, "seconds": elapsed, "results": results}, f)


@cocotb.test()
async def measure_python_driven(dut):
    """The same core driven by the Python stream drivers of the testbench (one row per cycle)."""
    import numpy as np

    from tessera.sim import golden
    from tessera.sim.tiling import split_gemm
    from tessera.tb.tensor_core_tb import TB

    tb = TB(dut)
    await tb.reset()
    rng = np.random.default_rng(1)
    m = int(os.environ.get("TESSERA_BENCH_ROWS", "2000"))
    a = rng.integers(-128, 128, (m, 4 * tb.rows), dtype=np.int8)
    w = rng.integers(-128, 128, (4 * tb.rows, tb.cols), dtype=np.int8)
    tiles = split_gemm(a, w, tb.rows, tb.cols)
    start = time.perf_counter()
    results, cycles, _ = await tb.run_tiles(tiles)
    elapsed = time.perf_counter() - start
    for tile, got in zip(tiles, results):
        assert np.array_equal(got, golden.gemm(tile.activations, tile.weights))
    with open(os.environ["TESSERA_BENCH_OUT"], "w") as f:
        json.dump({"cycles": cycles, "seconds": elapsed, "results": len(a) * len(tiles)}, f)
