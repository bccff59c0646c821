"""cocotb testbench of the DMA engine (rtl/dma.py) in its harness (tb/dma_harness.py).

Run from pytest by tb/test_dma.py. The memory is ``CheckedAxiRam`` (tb/axi_models.py:
cocotbext-axi's ``AxiRam`` with protocol checks and error injection) on the harness's ``m_axi_*``
ports. The buffers are Amaranth memories in the harness, reached through its test port.

Reset: the memory model is connected to the DUT's reset, so a reset in mid-transfer also drops
the transactions the memory holds (as a system reset of DMA and interconnect would). Bytes already
written to memory or buffers stay; after such a reset the test takes memory and buffers as they
are (``TB.resync``) before checking the next transfers.

Scoreboard: the whole 128 KiB memory image and the buffer rows around each destination are
compared byte for byte with a numpy reference (``reference_load`` / ``reference_store``) after
every transfer; memory and buffers are filled with random bytes first, so guard bytes are checked
too. The bus traffic is compared with the reference burst list (``expected_bursts``): every burst
address and length, and the WSTRB of every write beat. Randomness comes from cocotb's seed
(printed at start-up, replay with ``TESSERA_SEED=<seed>``).

Traffic: each data test cycles through ``TRAFFIC``: no pauses; random pauses on all five AXI
channels; random backpressure on the buffer streams (row_write and row_read_req not ready,
row_read_data held back); both.

Environment: ``TESSERA_DMA_FULL=1`` runs the full sweeps and more random transfers (pytest's slow
tests set it).
"""

import json
import logging
import os
import random
from dataclasses import dataclass, replace

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge, Timer, with_timeout
from cocotbext.axi import AxiBus

from tessera.rtl.dma_descriptor import Buffer, Direction, DmaDescriptor, DmaError
from tessera.tb.axi_models import CheckedAxiRam
from tessera.tb.streams import CycleCounter

PERIOD_NS = 10
MEM_SIZE = 1 << 17
PAGE = 4096
FULL = os.environ.get("TESSERA_DMA_FULL", "0") == "1"
#: (pause probability on each AXI channel, backpressure probability on the buffer streams)
TRAFFIC = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.4), (0.3, 0.4)]
LAYOUT = DmaDescriptor()


@dataclass
class Descriptor:
    dram_addr: int
    dram_stride: int
    rows: int
    row_bytes: int
    sram_row: int
    buffer: int
    direction: int

    def pack(self):
        word = 0
        for name, field in LAYOUT:
            value = getattr(self, name, 0)
            assert 0 <= value < 1 << field.width, f"{name}={value} does not fit"
            word |= value << field.offset
        return word

    def row_addr(self, i):
        return (self.dram_addr + i * self.dram_stride) % (1 << 32)

    def __str__(self):
        kind = "LOAD" if self.direction == Direction.LOAD else "STORE"
        return (f"{kind} addr={self.dram_addr:#x} stride={self.dram_stride} rows={self.rows} "
                f"bytes={self.row_bytes} sram_row={self.sram_row} buffer={self.buffer}")


# --- reference model --------------------------------------------------------------------------

def expected_bursts(desc, beat_bytes, max_burst):
    """The bursts the DMA must issue: (word address, beats, row), in order."""
    bursts = []
    for i in range(desc.rows):
        addr = desc.row_addr(i)
        word = addr - addr % beat_bytes
        beats = -(-(addr % beat_bytes + desc.row_bytes) // beat_bytes)
        while beats:
            count = min(beats, max_burst, (PAGE - word % PAGE) // beat_bytes)
            bursts.append((word, count, i))
            word += count * beat_bytes
            beats -= count
    return bursts


def expected_write_beats(desc, bursts, beat_bytes):
    """(word address, WSTRB) of every W beat: exactly the bytes of each row."""
    beats = []
    for word, count, i in bursts:
        lo = desc.row_addr(i)
        hi = lo + desc.row_bytes
        for k in range(count):
            addr = word + k * beat_bytes
            strb = sum(1 << lane for lane in range(beat_bytes) if lo <= addr + lane < hi)
            beats.append((addr, strb))
    return beats


def reference_load(image, desc, row_len):
    """Buffer rows after a LOAD: the row's bytes, zero-padded to ``row_len``."""
    rows = np.zeros((desc.rows, row_len), np.uint8)
    for i in range(desc.rows):
        base = desc.row_addr(i) % MEM_SIZE
        rows[i, :desc.row_bytes] = image[base:base + desc.row_bytes]
    return rows


def reference_store(image, rows, desc):
    """Memory after a STORE: rows written in order (a later row wins where rows overlap)."""
    image = image.copy()
    for i in range(desc.rows):
        base = desc.row_addr(i) % MEM_SIZE
        image[base:base + desc.row_bytes] = rows[i, :desc.row_bytes]
    return image


def first_faulty_burst(bursts, beat_bytes, faults):
    """Index of the first burst with a beat touching one of the ``faults`` ranges [lo, hi)."""
    for index, (word, count, _) in enumerate(bursts):
        for k in range(count):
            addr = (word + k * beat_bytes) % MEM_SIZE
            if any(addr < hi and lo < addr + beat_bytes for lo, hi in faults):
                return index
    return None


def pauses(rng, probability):
    while True:
        yield rng.random() < probability


@dataclass
class Result:
    error: int
    error_addr: int
    cycles: int


class TB:
    """Clock, reset, the memory model, the buffer mirrors and the checks of one DmaHarness."""
    def __init__(self, dut):
        self.dut = dut
        params = json.loads(os.environ["TESSERA_PARAMS"])
        self.params = params
        self.beat_bytes = params["data_width"] // 8
        self.lanes = params["lanes"]
        self.row_len = {Buffer.SCRATCHPAD: self.lanes, Buffer.ACCUMULATOR: 4 * self.lanes}
        self.depth = {Buffer.SCRATCHPAD: params["scratchpad_depth"],
                      Buffer.ACCUMULATOR: params["accumulator_depth"]}
        self.max_burst = params["max_burst"]
        self.outstanding = params["max_outstanding_reads"]
        # Widths are read from the design and must agree with the parameters.
        assert len(dut.m_axi__wdata) == params["data_width"]
        assert len(dut.tb_wdata) == 8 * 4 * self.lanes
        assert len(dut.descriptor__payload) == LAYOUT.size

        self.seed = cocotb.RANDOM_SEED
        self.rng = np.random.default_rng(self.seed)
        self.py_rng = random.Random(self.seed)
        regression_seed = os.environ.get("COCOTB_RANDOM_SEED", "?")
        dut._log.info("seed %s, this test's seed %d (replay with TESSERA_SEED=%s)",
                      regression_seed, self.seed, regression_seed)
        self.counter = CycleCounter(PERIOD_NS)
        self.ram = None
        for name in ("descriptor__valid", "tb_we", "sram_stall", "seed_load", "monitor_clear"):
            getattr(dut, name).value = 0
        self.image = np.zeros(MEM_SIZE, np.uint8)
        self.buffers = {b: np.zeros((self.depth[b], 4 * self.lanes), np.uint8) for b in Buffer}
        self.transfers = 0
        self.bytes_checked = 0
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start())

    # --- basics ---------------------------------------------------------------------------------
    async def attach_memory(self):
        """Create the memory model once the design's outputs are settled (under Icarus they are
        undriven in the first time step, which the channel models cannot read)."""
        self.dut.rst.value = 1
        await Timer(1, unit="ns")
        self.ram = CheckedAxiRam(AxiBus.from_prefix(self.dut, "m_axi_"), self.dut.clk,
                                 self.dut.rst, size=MEM_SIZE, max_burst=self.max_burst)
        for model in (self.ram.read_if, self.ram.write_if, *self.ram.channels()):
            model.log.setLevel(logging.WARNING)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        await self.reseed()

    async def reseed(self):
        self.dut.seed.value = self.py_rng.randrange(1 << 32)
        self.dut.seed_load.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.seed_load.value = 0

    def set_traffic(self, axi_pause, sram_stall):
        if axi_pause:
            self.ram.set_pause_generators(lambda: pauses(self.py_rng, axi_pause))
        else:
            self.ram.set_pause_generators(None)
        self.dut.sram_stall.value = round(sram_stall * 256)

    def fill_memory(self):
        self.image = self.rng.integers(0, 256, MEM_SIZE, dtype=np.uint8)
        self.ram.mem[:] = self.image.tobytes()

    def memory(self):
        return np.frombuffer(bytes(self.ram.mem), np.uint8)

    async def write_rows(self, buffer, lo, hi, rows=None):
        """Fill buffer rows [lo, hi) (clipped to the buffer) with ``rows`` or random bytes."""
        lo, hi = max(lo, 0), min(hi, self.depth[buffer])
        if hi <= lo:
            return
        if rows is None:
            rows = self.rng.integers(0, 256, (hi - lo, 4 * self.lanes), dtype=np.uint8)
        dut = self.dut
        await FallingEdge(dut.clk)          # a known phase, whatever the caller awaited last
        dut.tb_buffer.value = int(buffer)
        dut.tb_we.value = 1
        for i, row in enumerate(rows):
            dut.tb_row.value = lo + i
            dut.tb_wdata.value = int.from_bytes(row.tobytes(), "little")
            await RisingEdge(dut.clk)
        dut.tb_we.value = 0
        self.buffers[buffer][lo:hi] = rows

    async def read_rows(self, buffer, lo, hi):
        lo, hi = max(lo, 0), min(hi, self.depth[buffer])
        dut = self.dut
        dut.tb_buffer.value = int(buffer)
        rows = np.zeros((max(hi - lo, 0), 4 * self.lanes), np.uint8)
        for i in range(hi - lo):
            dut.tb_row.value = lo + i
            await Timer(1, unit="ns")
            value = int(dut.tb_rdata.value)
            rows[i] = np.frombuffer(value.to_bytes(4 * self.lanes, "little"), np.uint8)
        return rows

    async def check_rows(self, buffer, lo, hi, label):
        lo, hi = max(lo, 0), min(hi, self.depth[buffer])
        got = await self.read_rows(buffer, lo, hi)
        expect = self.buffers[buffer][lo:hi]
        if not np.array_equal(got, expect):
            row, col = np.argwhere(got != expect)[0]
            raise AssertionError(
                f"{label}: buffer {buffer} row {lo + row} byte {col}: got {got[row, col]:#04x}, "
                f"expected {expect[row, col]:#04x}")

    async def resync(self):
        """After a reset in mid-transfer: take memory and buffers as they are."""
        self.image = self.memory().copy()
        for b in Buffer:
            self.buffers[b] = await self.read_rows(b, 0, self.depth[b])

    def check_memory(self, expect, label):
        got = self.memory()
        if not np.array_equal(got, expect):
            bad = np.flatnonzero(got != expect)
            raise AssertionError(
                f"{label}: {len(bad)} memory bytes differ, first at {bad[0]:#x}: got "
                f"{got[bad[0]]:#04x}, expected {expect[bad[0]]:#04x}")

    def counters(self):
        return int(self.dut.bytes_read.value), int(self.dut.bytes_written.value)

    def summary(self, test, **extra):
        """Log and append this test's counts to dma_summary.jsonl in the run directory."""
        record = dict(test=test, params=self.params, transfers=self.transfers,
                      bytes=self.bytes_checked, mismatches=0, **extra)
        self.dut._log.info("%s: %d checked transfers, %d bytes, 0 mismatches %s", test,
                           self.transfers, self.bytes_checked, extra or "")
        with open("dma_summary.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def check_clean(self, label):
        assert not self.ram.violations, f"{label}: AXI protocol: {self.ram.violations[:5]}"
        assert not int(self.dut.sram_fault.value), f"{label}: buffer stream fault"

    # --- one descriptor -------------------------------------------------------------------------
    async def execute(self, desc, timeout_cycles=None):
        """Submit ``desc``, wait for ``done``; return error, error address and cycles."""
        dut = self.dut
        if timeout_cycles is None:
            beats = sum(b for _, b, _ in expected_bursts(desc, self.beat_bytes, self.max_burst))
            timeout_cycles = 40 * (beats + desc.rows) + 2000 if desc.rows and desc.row_bytes \
                else 100
        dut.descriptor__payload.value = desc.pack()
        dut.descriptor__valid.value = 1
        waited = 0
        while True:
            # Sample READY settled before the edge: right after an edge, simulators differ in
            # whether they already show the values the edge produced.
            await ReadOnly()
            ready = int(dut.descriptor__ready.value)
            await RisingEdge(dut.clk)
            if ready:
                break
            waited += 1
            assert waited < 1000, "descriptor not accepted: the DMA never became idle"
        dut.descriptor__valid.value = 0
        accepted = self.counter.cycles
        await with_timeout(RisingEdge(dut.done), timeout_cycles * PERIOD_NS, "ns")
        finished = self.counter.cycles
        await ReadOnly()
        result = Result(int(dut.error.value), int(dut.error_addr.value), finished - accepted)
        assert not int(dut.busy.value), f"{desc}: busy together with done"
        assert int(dut.descriptor__ready.value), f"{desc}: not ready for a descriptor after done"
        await RisingEdge(dut.clk)
        await ReadOnly()
        assert not int(dut.done.value), f"{desc}: done longer than one cycle"
        await RisingEdge(dut.clk)
        return result

    async def transfer(self, desc, label=""):
        """Run a descriptor that must succeed and check everything it touched."""
        label = f"{label} {desc}".strip()
        buffer, lo, hi = desc.buffer, desc.sram_row, desc.sram_row + desc.rows
        if desc.direction == Direction.LOAD:
            await self.write_rows(buffer, lo - 2, hi + 2)       # destination and guard rows
            self.ram.writable = np.zeros(MEM_SIZE, bool)
        else:
            await self.write_rows(buffer, lo, hi)
            writable = np.zeros(MEM_SIZE, bool)
            for i in range(desc.rows):
                base = desc.row_addr(i) % MEM_SIZE
                writable[base:base + desc.row_bytes] = True
            self.ram.writable = writable
        self.ram.clear_log()
        read0, written0 = self.counters()
        result = await self.execute(desc)
        assert result.error == DmaError.NONE, \
            f"{label}: error {DmaError(result.error).name} at {result.error_addr:#x}"
        self.check_clean(label)

        bursts = expected_bursts(desc, self.beat_bytes, self.max_burst)
        plain = [(word, count) for word, count, _ in bursts]
        read1, written1 = self.counters()
        moved = desc.rows * desc.row_bytes
        if desc.direction == Direction.LOAD:
            assert self.ram.read_bursts == plain, \
                f"{label}: read bursts {self.ram.read_bursts[:8]} expected {plain[:8]}"
            assert not self.ram.write_bursts, f"{label}: a LOAD wrote to memory"
            self.buffers[buffer][lo:hi] = reference_load(self.image, desc, 4 * self.lanes)
            await self.check_rows(buffer, lo - 2, hi + 2, label)
            self.check_memory(self.image, label)
            assert (read1 - read0) % (1 << 32) == moved, f"{label}: bytes_read {read1 - read0}"
            assert written1 == written0, f"{label}: bytes_written changed on a LOAD"
        else:
            assert self.ram.write_bursts == plain, \
                f"{label}: write bursts {self.ram.write_bursts[:8]} expected {plain[:8]}"
            beats = expected_write_beats(desc, bursts, self.beat_bytes)
            assert self.ram.write_beats == beats, f"{label}: W beats/WSTRB differ: " + \
                str(next((g, e) for g, e in zip(self.ram.write_beats, beats) if g != e))
            assert not self.ram.read_bursts, f"{label}: a STORE read memory"
            self.image = reference_store(self.image, self.buffers[buffer][lo:hi], desc)
            self.check_memory(self.image, label)
            assert (written1 - written0) % (1 << 32) == moved, \
                f"{label}: bytes_written {written1 - written0}"
            assert read1 == read0, f"{label}: bytes_read changed on a STORE"
        self.transfers += 1
        self.bytes_checked += moved
        return result

    # --- descriptors ----------------------------------------------------------------------------
    def place(self, span, *, near_page=False, alias=False):
        """A start address for ``span`` bytes: anywhere, or within 2 words of a 4 KiB boundary;
        with ``alias``, high address bits set (the memory repeats every MEM_SIZE bytes)."""
        rng, b = self.py_rng, self.beat_bytes
        limit = MEM_SIZE - span - 64
        if near_page:
            page = rng.randrange(1, limit // PAGE + 1) * PAGE
            base = page + rng.randint(-2 * b - 2, b)
            base = min(max(base, 64), limit)
        else:
            base = rng.randrange(64, limit)
        if alias:
            base += rng.randrange(1, (1 << 32) // MEM_SIZE - 1) * MEM_SIZE
        return base

    def random_descriptor(self, direction=None, buffer=None):
        rng, b = self.py_rng, self.beat_bytes
        if direction is None:
            direction = rng.choice(list(Direction))
        if buffer is None:
            buffer = rng.choice(list(Buffer))
        row_len = self.row_len[buffer]
        n = rng.choice([rng.randint(1, min(row_len, 4 * b)), row_len, rng.randint(1, row_len)])
        rows = rng.randint(1, min(self.depth[buffer], 12))
        stride = rng.choice([
            n,                                          # contiguous
            n + rng.randint(1, 3 * b),                  # gaps
            rng.randint(0, max(n - 1, 0)),              # overlapping rows (0: the same row)
            PAGE + rng.randint(-b, b),                  # about a page apart
        ])
        span = (rows - 1) * stride + n
        addr = self.place(span, near_page=rng.random() < 0.5, alias=rng.random() < 0.25)
        sram_row = rng.randint(0, self.depth[buffer] - rows)
        return Descriptor(addr, stride, rows, n, sram_row, buffer, direction)


async def start(dut):
    tb = TB(dut)
    await tb.attach_memory()
    await tb.reset()
    tb.fill_memory()
    return tb


# --- tests ----------------------------------------------------------------------------------------

@cocotb.test()
async def random_transfers(dut):
    """Random LOAD and STORE descriptors (alignment, lengths, strides, buffers), all traffic."""
    tb = await start(dut)
    per_mode = 40 if FULL else 8
    for axi_pause, stall in TRAFFIC:
        tb.set_traffic(axi_pause, stall)
        for _ in range(per_mode):
            await tb.transfer(tb.random_descriptor(), f"random pause={axi_pause} stall={stall}")
    tb.check_clean("random")
    tb.summary("random_transfers")


@cocotb.test()
async def boundary_sweep(dut):
    """Start offsets around a 4 KiB boundary x row lengths 1 .. 4 words and full rows x strides
    smaller than, equal to and larger than the row; both directions, accumulator rows."""
    tb = await start(dut)
    b = tb.beat_bytes
    buffer = Buffer.ACCUMULATOR
    row_len = tb.row_len[buffer]
    if FULL:
        lengths = sorted({*range(1, min(4 * b, row_len) + 1), row_len})
        offsets = list(range(-2 * b - 1, b + 1))
    else:
        lengths = sorted({n for n in (1, 2, b - 1, b, b + 1, 2 * b + 1, 4 * b, row_len)
                          if n <= row_len})
        offsets = [-2 * b - 1, -b - 1, -b, -1, 0, 1, b - 1]
    cases = [(off, n, kind, d) for off in offsets for n in lengths
             for kind in ("smaller", "equal", "larger") for d in Direction]
    if not FULL:
        cases = tb.py_rng.sample(cases, 48)
    for index, (offset, n, kind, direction) in enumerate(cases):
        axi_pause, stall = TRAFFIC[index % len(TRAFFIC)]
        tb.set_traffic(axi_pause, stall)
        stride = {"smaller": max(n // 2, 1), "equal": n, "larger": n + b + 3}[kind]
        rows = 3
        page = tb.py_rng.randrange(2, MEM_SIZE // PAGE - 2) * PAGE
        sram_row = tb.py_rng.randint(0, tb.depth[buffer] - rows)
        desc = Descriptor(page + offset, stride, rows, n, sram_row, buffer, direction)
        await tb.transfer(desc, f"sweep offset={offset} stride={kind}")
    tb.summary("boundary_sweep")


@cocotb.test()
async def throughput(dut):
    """Long transfers with a memory answering at full rate: >= 0.9 bus words per cycle, and the
    read bursts in flight on the bus reach max_outstanding_reads (or one fewer, with bursts short
    enough that one has left the bus while it is still counted: its last beat is in the R
    register slice, or its registered credit is not yet free) and never exceed it."""
    tb = await start(dut)
    tb.set_traffic(0.0, 0.0)
    buffer = Buffer.ACCUMULATOR
    b = tb.beat_bytes
    n = tb.row_len[buffer]
    rows = tb.depth[buffer]
    report = {}
    # Default: unaligned rows (realignment, 4 KiB splits); full: also aligned, contiguous rows.
    for direction in Direction:
        for offset in ((0, 5) if FULL else (5,)):
            stride = n if offset == 0 else n + 3
            while (rows - 1) * stride + n + PAGE > MEM_SIZE:
                rows //= 2
            desc = Descriptor(2 * PAGE + offset, stride, rows, n, 0, buffer, direction)
            dut.monitor_clear.value = 1
            await RisingEdge(dut.clk)
            dut.monitor_clear.value = 0
            result = await tb.transfer(desc, "throughput")
            beats = sum(c for _, c, _ in expected_bursts(desc, b, tb.max_burst))
            words = beats / result.cycles
            name = f"{Direction(direction).name} offset {offset}"
            r_held, w_held = int(dut.r_held.value), int(dut.w_held.value)
            report[name] = dict(cycles=result.cycles, beats=beats, bytes=rows * n,
                                words_per_cycle=round(words, 4),
                                bytes_per_cycle=round(rows * n / result.cycles, 3),
                                rready_low_with_rvalid=r_held, wready_low_with_wvalid=w_held)
            dut._log.info("DMA-THROUGHPUT data_width=%d %s: %d bytes (%d beats) in %d cycles: "
                          "%.3f words/cycle, %.2f bytes/cycle; DMA held R %d cycles, memory "
                          "held W %d cycles", 8 * b, name, rows * n, beats, result.cycles, words,
                          rows * n / result.cycles, r_held, w_held)
            # The goal holds when enough beats can be in flight to cover the memory's latency;
            # corner configurations (one outstanding burst of one beat) are only measured.
            in_flight_beats = tb.outstanding * min(tb.max_burst, -(-n // b))
            if in_flight_beats >= 8:
                assert words >= 0.9, f"{name}: {words:.3f} bus words per cycle < 0.9"
            else:
                dut._log.info("DMA-THROUGHPUT not checked: only %d beats can be in flight",
                              in_flight_beats)
            if direction == Direction.LOAD:
                in_flight = int(dut.reads_in_flight_max.value)
                dut._log.info("DMA-THROUGHPUT read bursts in flight (max): %d", in_flight)
                # Never more than max_outstanding_reads on the bus; at least one fewer: a burst
                # stays counted until its last beat has left the DMA's R register slice, and its
                # credit (a register) is free a cycle after that, so with short bursts one of the
                # tracked bursts may already be off the bus.
                assert tb.outstanding - 1 <= in_flight <= tb.outstanding, \
                    f"{in_flight} read bursts in flight, expected {tb.outstanding - 1} .. " \
                    f"{tb.outstanding}"
    tb.summary("throughput", results=report)


@cocotb.test()
async def rejections(dut):
    """Invalid descriptors: error code, error_addr = dram_addr, done, no bus traffic, idle."""
    tb = await start(dut)
    rng = tb.py_rng
    for buffer in Buffer:
        row_len, depth = tb.row_len[buffer], tb.depth[buffer]
        good = Descriptor(rng.randrange(1 << 32), 64, 2, 1, 0, buffer, Direction.LOAD)
        cases = [
            (replace(good, rows=0), DmaError.ZERO_ROWS),
            (replace(good, rows=0, row_bytes=0), DmaError.ZERO_ROWS),
            (replace(good, row_bytes=0), DmaError.ZERO_BYTES),
            (replace(good, row_bytes=row_len + 1), DmaError.ROW_TOO_LONG),
            (replace(good, row_bytes=0xFFFF), DmaError.ROW_TOO_LONG),
            (replace(good, sram_row=depth - 1, rows=2), DmaError.SRAM_RANGE),
            (replace(good, sram_row=0xFFFF, rows=0xFFFF), DmaError.SRAM_RANGE),
            (replace(good, sram_row=0, rows=depth + 1), DmaError.SRAM_RANGE),
        ]
        for desc, code in cases:
            for direction in Direction:
                desc = replace(desc, direction=direction)
                tb.ram.clear_log()
                counters = tb.counters()
                result = await tb.execute(desc)
                assert result.error == code, \
                    f"{desc}: error {DmaError(result.error).name}, expected {code.name}"
                assert result.error_addr == desc.dram_addr, f"{desc}: error_addr"
                assert result.cycles <= 4, f"{desc}: rejection took {result.cycles} cycles"
                assert not tb.ram.read_bursts and not tb.ram.write_bursts, f"{desc}: bus traffic"
                assert tb.counters() == counters
                tb.check_clean(str(desc))
        # Descriptors that end exactly at the last row and use whole rows are accepted.
        for direction in Direction:
            edge = Descriptor(tb.place(2 * row_len), row_len, 2, row_len, depth - 2, buffer,
                              direction)
            await tb.transfer(edge, "edge of range")
        await tb.transfer(tb.random_descriptor(buffer=buffer), "after rejections")
    tb.summary("rejections", rejected=2 * 2 * 8)


async def error_case(tb, direction, resp, where, short, axi_pause, stall):
    """One descriptor whose memory answers ``resp`` for one byte of row ``where``. Long rows take
    several bursts; short rows (at most one word) let bursts run several rows ahead."""
    rng, b = tb.py_rng, tb.beat_bytes
    buffer = Buffer.ACCUMULATOR
    if short:
        n = rng.randint(1, min(b, tb.row_len[buffer]))
        rows = min(tb.depth[buffer], 16)
    else:
        n = rng.randint(max(1, tb.row_len[buffer] // 2), tb.row_len[buffer])
        rows = min(tb.depth[buffer], 10)
    stride = n + b + rng.randint(0, 8)          # rows share no bus word
    desc = Descriptor(tb.place((rows - 1) * stride + n, near_page=True), stride, rows, n,
                      rng.randint(0, tb.depth[buffer] - rows), buffer, direction)
    row = {"first": 0, "middle": rows // 2, "last": rows - 1}[where]
    fault = desc.row_addr(row) % MEM_SIZE + rng.randrange(n)
    label = (f"{resp.name} in {where} {'short' if short else 'long'} row, pause={axi_pause} "
             f"stall={stall}: {desc}")
    tb.set_traffic(axi_pause, stall)

    lo, hi = desc.sram_row, desc.sram_row + rows
    await tb.write_rows(buffer, lo - 2, hi + 2)
    tb.ram.writable = None
    tb.ram.clear_log()
    tb.ram.inject(fault, fault + 1, resp, "r" if direction == Direction.LOAD else "w")
    read0, written0 = tb.counters()
    result = await tb.execute(desc)
    tb.ram.clear_faults()
    tb.check_clean(label)

    bursts = expected_bursts(desc, b, tb.max_burst)
    bad = first_faulty_burst(bursts, b, [(fault, fault + 1)])
    failing_row = bursts[bad][2]
    kind = "READ" if direction == Direction.LOAD else "WRITE"
    code = DmaError[f"{kind}_{resp.name}"]
    assert result.error == code, \
        f"{label}: error {DmaError(result.error).name}, expected {code.name}"
    assert result.error_addr == bursts[bad][0], \
        f"{label}: error_addr {result.error_addr:#x}, expected {bursts[bad][0]:#x}"
    issued = tb.ram.read_bursts if direction == Direction.LOAD else tb.ram.write_bursts
    plain = [(word, count) for word, count, _ in bursts]
    assert issued == plain[:len(issued)], f"{label}: bursts differ from the reference"
    assert len(issued) <= bad + tb.outstanding + 1, \
        f"{label}: {len(issued)} bursts issued, error in burst {bad}: the DMA did not stop"
    read1, written1 = tb.counters()

    if direction == Direction.LOAD:
        # Rows before the failing one are written, the failing row and later rows are not.
        expect = reference_load(tb.image, desc, 4 * tb.lanes)
        tb.buffers[buffer][lo:lo + failing_row] = expect[:failing_row]
        await tb.check_rows(buffer, lo - 2, hi + 2, label)
        tb.check_memory(tb.image, label)
        assert read1 - read0 == failing_row * n, f"{label}: bytes_read {read1 - read0}"
    else:
        # Bytes of bursts before the failing one are written; bytes of the failing beats are
        # not; later bursts may or may not have been sent; nothing else changes.
        old = tb.image
        new = reference_store(old, tb.buffers[buffer][lo:hi], desc)
        got = tb.memory()
        settled = np.ones(MEM_SIZE, bool)
        for index, (word, count, i) in enumerate(bursts):
            if index < bad:
                continue
            row_lo = desc.row_addr(i) % MEM_SIZE
            for k in range(count):
                w = (word + k * b) % MEM_SIZE
                span = slice(max(w, row_lo), min(w + b, row_lo + n))
                faulty = w < fault + 1 and fault < w + b
                if faulty:
                    new[span] = old[span]
                else:
                    settled[span] = False
        assert np.array_equal(got[settled], new[settled]), f"{label}: memory differs"
        loose = ~settled
        assert np.all((got[loose] == old[loose]) | (got[loose] == new[loose])), \
            f"{label}: memory holds bytes that are neither old nor new"
        assert (written1 - written0) % n == 0 and written1 - written0 <= rows * n
        tb.image = got.copy()
    tb.set_traffic(0.0, 0.0)
    # The DMA is idle and the next descriptor works normally.
    await tb.transfer(tb.random_descriptor(direction=direction), f"after {label}")
    await tb.transfer(tb.random_descriptor(), f"after {label}")


async def error_cases(tb, direction):
    """SLVERR and DECERR x first, middle, last row x long and short rows, cycling the traffic."""
    from cocotbext.axi.constants import AxiResp
    cases = [(resp, where, short) for resp in (AxiResp.SLVERR, AxiResp.DECERR)
             for where in ("first", "middle", "last") for short in (False, True)]
    for index, (resp, where, short) in enumerate(cases):
        axi_pause, stall = TRAFFIC[index % len(TRAFFIC)]
        await error_case(tb, direction, resp, where, short, axi_pause, stall)
    return len(cases)


@cocotb.test()
async def read_errors(dut):
    """SLVERR and DECERR on R beats; each followed by good transfers."""
    tb = await start(dut)
    count = await error_cases(tb, Direction.LOAD)
    tb.summary("read_errors", error_cases=count)


@cocotb.test()
async def write_errors(dut):
    """SLVERR and DECERR on B responses; each followed by good transfers."""
    tb = await start(dut)
    count = await error_cases(tb, Direction.STORE)
    tb.summary("write_errors", error_cases=count)


@cocotb.test()
async def reset_mid_transfer(dut):
    """Reset while reads and while writes are in flight: bus and DMA idle, next transfers exact."""
    tb = await start(dut)
    dut_ = tb.dut
    buffer = Buffer.ACCUMULATOR
    n = tb.row_len[buffer]
    rows = min(tb.depth[buffer], 16)
    for direction in Direction:
        for axi_pause, stall in ((0.0, 0.0), (0.3, 0.4)):
            tb.set_traffic(axi_pause, stall)
            desc = Descriptor(tb.place(rows * n), n, rows, n, 0, buffer, direction)
            await tb.write_rows(buffer, 0, rows)
            tb.ram.writable = None
            beats = sum(c for _, c, _ in expected_bursts(desc, tb.beat_bytes, tb.max_burst))
            dut_.descriptor__payload.value = desc.pack()
            dut_.descriptor__valid.value = 1
            await RisingEdge(dut_.clk)
            dut_.descriptor__valid.value = 0
            await ClockCycles(dut_.clk, tb.py_rng.randint(4, max(5, beats // 2)))
            await ReadOnly()
            assert int(dut_.busy.value), "the transfer ended before the reset"
            in_flight = (int(dut_.m_axi__arvalid.value), int(dut_.m_axi__rvalid.value),
                         int(dut_.m_axi__awvalid.value), int(dut_.m_axi__wvalid.value))
            await RisingEdge(dut_.clk)
            dut_.rst.value = 1
            await ClockCycles(dut_.clk, 2)
            await ReadOnly()
            for name in ("arvalid", "awvalid", "wvalid", "rready", "bready"):
                assert not int(getattr(dut_, f"m_axi__{name}").value), f"{name} high in reset"
            assert not int(dut_.busy.value)
            await RisingEdge(dut_.clk)
            dut_.rst.value = 0
            await RisingEdge(dut_.clk)
            await ReadOnly()
            for name in ("arvalid", "awvalid", "wvalid", "rready", "bready", "done"):
                assert not int(getattr(dut_, f"m_axi__{name}" if name != "done" else name).value), \
                    f"{name} high after reset"
            assert not int(dut_.busy.value) and int(dut_.descriptor__ready.value)
            await RisingEdge(dut_.clk)
            await tb.reseed()
            await tb.resync()
            tb.check_clean("reset")
            dut._log.info("reset during %s (valids AR/R/AW/W = %s) -> idle",
                          Direction(direction).name, in_flight)
            for _ in range(2):
                await tb.transfer(tb.random_descriptor(), "after reset")
            await tb.transfer(replace(desc, dram_addr=tb.place(rows * n)), "after reset, same")
    tb.summary("reset_mid_transfer", resets=4)
