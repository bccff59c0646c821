"""cocotb testbench of the whole accelerator, in
:class:`~tessera.tb.accelerator_harness.AcceleratorHarness`.

The host side is :class:`Host`: the clock and reset, cocotbext-axi's ``AxiLiteMaster`` on
``s_axil_*``, registers read and written by name through rtl/registers.py's ``register_map`` (never
by offset), the memory's backdoor (:class:`Backdoor`: blocks of words through the memory's bulk
port, single words through its word port; the memory moves one word per cycle) and its test
inputs. Python acts per register access and per backdoor block, never per cycle of a running
program: the host waits for ``irq`` (with a timeout), so a program of millions of cycles runs at
the simulator's own speed.

Tests:

* ``execute`` runs one program described by a request file and writes a response file (used by
  tb/rtl_backend.py). Request (``.npz``, path in ``TESSERA_REQUEST``): ``image`` (uint8, loaded at
  address 0; memory at and above ``len(image)`` answers DECERR), ``program_addr``, ``length``,
  ``stall_threshold`` (0..255), ``timeout`` (cycles), ``watchdog`` (value for WATCHDOG, -1 = keep
  the reset value) and ``hang_after`` (cycles after START at which the memory stops answering,
  -1 = never). Response (``.npz``, path in ``TESSERA_RESPONSE``): ``image`` (the final memory,
  same length), ``error``, ``error_index``, ``counter_names``/``counter_values`` (the performance
  counters), ``cycles`` (from the CTRL.start write to the interrupt, measured by the testbench: a
  few cycles more than CYCLES), ``dma_error``,
  ``dma_error_addr``, ``timed_out`` and ``message`` (why, when timed out), ``violation`` (the
  memory's protocol-check flag), ``load_seconds``/``read_seconds`` (wall time of the backdoor
  transfers).
* ``dma_hook_round_trip`` moves random data memory -> buffer -> memory through the DMA test hook
  (DMA_ADDR .. DMA_START) and the gateware memory, without and with memory stalls, checks DECERR
  from the memory's limit, and checks that a hanging memory holds a transfer until released.
"""

import json
import os
import time
from dataclasses import dataclass, field

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import (ClockCycles, FallingEdge, RisingEdge, SimTimeoutError, Timer,
                             with_timeout)
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from tessera.rtl.dma_descriptor import Buffer, Direction, DmaError
from tessera.rtl.isa import ProgramError
from tessera.rtl.registers import PERF_COUNTERS, register_map

from .streams import CycleCounter

__all__ = ["PERIOD_NS", "ProgramTimeout", "ProgramResult", "Backdoor", "Host"]

PERIOD_NS = 10

#: Keys of the design parameters that configure the register map.
CONFIG_KEYS = ("rows", "cols", "scratchpad_depth", "accumulator_depth", "bus_width")

#: Cycles of reset before and after the AXI4-Lite master is attached.
RESET_CYCLES = 2

#: Cycles a single register access may take before the host gives up.
REGISTER_TIMEOUT_CYCLES = 1000

#: While ``irq`` is high but STATUS.done is not (the level of an earlier error), the host looks at
#: STATUS again after this many cycles.
RECHECK_CYCLES = 256


class ProgramTimeout(TimeoutError):
    """A program or transfer did not finish within its cycle budget."""


def _enum_or_int(enum, value):
    try:
        return enum(value)
    except ValueError:
        return value


@dataclass
class ProgramResult:
    """What the registers say after a program (or a DMA hook transfer) ended."""
    error: int
    error_index: int
    counters: dict = field(default_factory=dict)
    cycles: int = 0
    dma_error: int = 0
    dma_error_addr: int = 0


class Backdoor:
    """Bulk access to an :class:`~tessera.tb.axi_memory.AxiMemory` through its ``backdoor__*``
    (one word per clock cycle) and ``bulk__*`` (a block of words per request) top-level ports.

    Whole blocks go through the bulk port: Python acts once per block (``len(bulk__wdata)`` bits),
    the memory moves one word per cycle. A load's last partial block goes word by word; a read
    takes whole blocks and keeps the words asked for. The word methods are also public
    (:meth:`load_words`, :meth:`read_words`).

    Inputs change at falling clock edges and outputs are sampled there, half a cycle after the
    rising edge that produced them, so the result does not depend on how a simulator orders
    events at the rising edge. ``period_ns`` must be the clock period.
    """
    def __init__(self, dut, word_bytes, words, period_ns=PERIOD_NS):
        self.dut = dut
        self.word_bytes = word_bytes
        self.words = words
        self.period_ns = period_ns
        self.block_words = len(dut.bulk__wdata) // (8 * word_bytes)
        self.edge = FallingEdge(dut.clk)

    def _span(self, nbytes, offset):
        if offset < 0 or offset % self.word_bytes:
            raise ValueError(f"offset must be a non-negative multiple of {self.word_bytes}, "
                             f"not {offset!r}")
        first = offset // self.word_bytes
        count = -(-nbytes // self.word_bytes)
        if first + count > self.words:
            raise ValueError(f"{nbytes} bytes at offset {offset:#x} do not fit in the memory of "
                             f"{self.words * self.word_bytes} bytes")
        return first, count

    async def _bulk_done(self, edges):
        """Called at the falling edge after the request edge: wait until ``edges`` rising edges
        later, landing a quarter period after a falling edge (never on a clock edge, where the
        order of the timer and the edge would be up to the simulator)."""
        await Timer(round((edges + 0.25) * self.period_ns * 1000), "ps")
        assert not int(self.dut.bulk__busy.value), "bulk request not done in time"

    async def load(self, data, offset=0, *, skip_zeros=False):
        """Write ``data`` (bytes) at byte ``offset`` (word-aligned); the last word is zero-padded.

        ``skip_zeros`` leaves out all-zero blocks and words: only right while the memory still
        holds its initial zeros there (a fresh simulation), and then faster for sparse images."""
        data = bytes(data)
        first, count = self._span(len(data), offset)
        n, k = self.word_bytes, self.block_words
        data += bytes(count * n - len(data))
        block_bytes = k * n
        blocks = count // k
        dut = self.dut
        await self.edge
        for b in range(blocks):
            chunk = data[b * block_bytes:(b + 1) * block_bytes]
            if skip_zeros and chunk.count(0) == block_bytes:
                continue
            dut.bulk__addr.value = first + b * k
            dut.bulk__wdata.value = int.from_bytes(chunk, "little")
            dut.bulk__write.value = 1
            await self.edge                   # taken at the rising edge just passed
            dut.bulk__write.value = 0
            await self._bulk_done(k)
        await self.load_words(data[blocks * block_bytes:], first + blocks * k,
                              skip_zeros=skip_zeros)

    async def load_words(self, data, first, *, skip_zeros=False):
        """Write whole words ``data`` from word ``first`` on, one per cycle."""
        n = self.word_bytes
        addr, wdata, we = self.dut.backdoor__addr, self.dut.backdoor__wdata, self.dut.backdoor__we
        edge = self.edge
        await edge
        we.value = 1
        for index, i in enumerate(range(0, len(data), n), first):
            word = int.from_bytes(data[i:i + n], "little")
            if skip_zeros and not word:
                continue
            addr.value = index
            wdata.value = word
            await edge
        we.value = 0

    async def read(self, nbytes, offset=0):
        """``nbytes`` bytes from byte ``offset`` (word-aligned)."""
        first, count = self._span(nbytes, offset)
        k = self.block_words
        dut = self.dut
        parts = []
        await self.edge
        for block in range(first, first + count, k):
            dut.bulk__addr.value = block
            dut.bulk__read.value = 1
            await self.edge
            dut.bulk__read.value = 0
            await self._bulk_done(k + 1)
            parts.append(dut.bulk__rdata.value.to_unsigned().to_bytes(k * self.word_bytes,
                                                                        "little"))
        return b"".join(parts)[:nbytes]

    async def read_words(self, first, count):
        """``count`` whole words from word ``first`` on, one per cycle (as bytes)."""
        addr, rdata = self.dut.backdoor__addr, self.dut.backdoor__rdata
        self.dut.backdoor__we.value = 0
        edge = self.edge
        await edge
        addr.value = first
        await edge
        words = []
        last = self.words - 1
        for index in range(first + 1, first + count + 1):
            addr.value = min(index, last)
            words.append(rdata.value.to_unsigned())
            await edge
        n = self.word_bytes
        return b"".join(word.to_bytes(n, "little") for word in words)


class Host:
    """The host of one :class:`AcceleratorHarness` simulation (design parameters from
    ``TESSERA_PARAMS`` unless given)."""
    def __init__(self, dut, params=None):
        self.dut = dut
        self.params = params if params is not None else json.loads(os.environ["TESSERA_PARAMS"])
        self.config = {key: self.params[key] for key in CONFIG_KEYS}
        self.regmap = register_map(**self.config)
        self.lanes = max(self.config["rows"], self.config["cols"])
        self.word_bytes = self.config["bus_width"] // 8
        self.mem_size = self.params["mem_size"]
        assert len(dut.backdoor__wdata) == self.config["bus_width"], "bus width of the build"
        self.backdoor = Backdoor(dut, self.word_bytes, self.mem_size // self.word_bytes)
        self.counter = CycleCounter(PERIOD_NS)
        self.axil = None
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start())

    async def start(self, seed):
        """Reset the design, attach the AXI4-Lite master, seed the memory's stall LFSR."""
        dut = self.dut
        dut.rst.value = 1
        for name in ("backdoor__we", "bulk__write", "bulk__read", "stall_threshold", "hang",
                     "seed_load", "limit", "mem_rst"):
            getattr(dut, name).value = 0
        # Under Icarus, combinational outputs can stay X until clock edges have changed some
        # register, so the bus model is attached after two cycles of reset.
        await ClockCycles(dut.clk, RESET_CYCLES)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        for model in (self.axil.write_if, self.axil.read_if):
            model.log.setLevel("WARNING")
        await ClockCycles(dut.clk, RESET_CYCLES)
        dut.rst.value = 0
        dut.seed.value = seed & 0xFFFF_FFFF
        dut.seed_load.value = 1
        await RisingEdge(dut.clk)
        dut.seed_load.value = 0

    async def reset_memory(self):
        """Reset the memory alone (its queued transactions are dropped; its contents are kept),
        as after a WATCHDOG error, when it holds transactions the accelerator has forgotten."""
        self.dut.mem_rst.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.mem_rst.value = 0

    def configure_memory(self, *, stall_threshold=None, hang=None, limit=None):
        """Set the memory's test inputs (those given): stall threshold 0..255, hang, byte limit."""
        if stall_threshold is not None:
            if not 0 <= stall_threshold <= 255:
                raise ValueError(f"stall_threshold must be in [0, 255], not {stall_threshold!r}")
            self.dut.stall_threshold.value = stall_threshold
        if hang is not None:
            self.dut.hang.value = int(bool(hang))
        if limit is not None:
            if not 0 <= limit <= self.mem_size:
                raise ValueError(f"limit must be in [0, {self.mem_size}], not {limit!r}")
            self.dut.limit.value = limit

    # --- registers --------------------------------------------------------------------------------
    async def write(self, name, **fields):
        register = self.regmap[name]
        await self._bounded(self.axil.write_dword(register.offset, register.pack(**fields)),
                            f"write of {name}")

    async def read(self, name):
        register = self.regmap[name]
        word = await self._bounded(self.axil.read_dword(register.offset), f"read of {name}")
        return register.unpack(word)

    async def _bounded(self, coroutine, what):
        try:
            return await with_timeout(coroutine, REGISTER_TIMEOUT_CYCLES * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise ProgramTimeout(f"{what} took more than {REGISTER_TIMEOUT_CYCLES} cycles: the "
                                 f"register port does not answer") from None

    # --- memory -----------------------------------------------------------------------------------
    async def load_image(self, data, offset=0, *, skip_zeros=False):
        await self.backdoor.load(data, offset, skip_zeros=skip_zeros)

    async def read_image(self, nbytes=None, offset=0):
        return await self.backdoor.read(self.mem_size - offset if nbytes is None else nbytes,
                                        offset)

    # --- running ----------------------------------------------------------------------------------
    async def wait_done(self, timeout_cycles, what):
        """Wait until STATUS.done (woken by ``irq``, which needs CTRL.irq_enable); raise
        :class:`ProgramTimeout` after ``timeout_cycles``."""
        deadline = self.counter.cycles + timeout_cycles
        while True:
            remaining = deadline - self.counter.cycles
            if not int(self.dut.irq.value):
                try:
                    if remaining <= 0:
                        raise SimTimeoutError
                    await with_timeout(RisingEdge(self.dut.irq), remaining * PERIOD_NS, "ns")
                except SimTimeoutError:
                    status = await self.read("STATUS")
                    raise ProgramTimeout(f"{what} did not finish within {timeout_cycles} cycles "
                                         f"(STATUS {status})") from None
            status = await self.read("STATUS")
            if status["done"]:
                return status
            await Timer(RECHECK_CYCLES * PERIOD_NS, "ns")

    async def counters(self):
        """The performance counters, by name."""
        return {name: (await self.read(name))["count"] for name in PERF_COUNTERS}

    async def _hang_after(self, cycles):
        await Timer(cycles * PERIOD_NS, "ns")
        self.configure_memory(hang=1)

    async def run_program(self, program_addr, length, timeout_cycles, *, watchdog=None,
                          hang_after=None):
        """Run the program of ``length`` instructions at ``program_addr`` and return its
        :class:`ProgramResult`; raise :class:`ProgramTimeout` if it does not end within
        ``timeout_cycles`` (counted from the CTRL.start write). ``watchdog`` sets WATCHDOG
        first; ``hang_after`` makes the memory stop answering that many cycles after the
        CTRL.start write begins (0: before it)."""
        what = f"program at {program_addr:#x} ({length} instructions)"
        await self.write("PROGRAM_ADDR", addr=program_addr)
        await self.write("PROGRAM_LEN", length=length)
        if watchdog is not None:
            await self.write("WATCHDOG", cycles=watchdog)
        await self.write("CTRL", irq_enable=1)
        await self.write("STATUS", done=1)
        hang_task = None
        if hang_after == 0:
            self.configure_memory(hang=1)
        elif hang_after is not None:
            hang_task = cocotb.start_soon(self._hang_after(hang_after))
        started = self.counter.cycles
        await self.write("CTRL", irq_enable=1, start=1)
        try:
            await self.wait_done(timeout_cycles, what)
        finally:
            if hang_task is not None:
                hang_task.cancel()
        cycles = self.counter.cycles - started
        result = ProgramResult(
            error=_enum_or_int(ProgramError, (await self.read("ERROR_CODE"))["code"]),
            error_index=(await self.read("ERROR_INFO"))["index"],
            counters=await self.counters(),
            cycles=cycles,
            dma_error=_enum_or_int(DmaError, (await self.read("DMA_ERROR"))["code"]),
            dma_error_addr=(await self.read("DMA_ERROR_ADDR"))["addr"],
        )
        await self.write("STATUS", done=1)
        return result

    async def start_dma(self, *, dram_addr, dram_stride, rows, row_bytes, sram_row, buffer,
                        direction):
        """Write the DMA test-hook descriptor and launch it (STATUS.done cleared first)."""
        await self.write("DMA_ADDR", dram_addr=dram_addr)
        await self.write("DMA_STRIDE", dram_stride=dram_stride)
        await self.write("DMA_ROWS", rows=rows, row_bytes=row_bytes)
        await self.write("DMA_SRAM", sram_row=sram_row, buffer=buffer, direction=direction)
        await self.write("CTRL", irq_enable=1)
        await self.write("STATUS", done=1)
        await self.write("DMA_START", start=1)

    async def finish_dma(self, timeout_cycles, what="DMA transfer"):
        """Wait for the transfer launched by :meth:`start_dma`; return ``(DmaError, address)``."""
        await self.wait_done(timeout_cycles, what)
        code = DmaError((await self.read("DMA_ERROR"))["code"])
        addr = (await self.read("DMA_ERROR_ADDR"))["addr"]
        await self.write("STATUS", done=1)
        return code, addr

    async def run_dma(self, timeout_cycles=100_000, **descriptor):
        """One DMA test-hook transfer; returns ``(DmaError, DMA_ERROR_ADDR)``."""
        await self.start_dma(**descriptor)
        return await self.finish_dma(timeout_cycles, f"DMA transfer {descriptor}")


# --- test: one program from a request file --------------------------------------------------------

@cocotb.test()
async def execute(dut):
    """Run the program of the request file ``TESSERA_REQUEST``; write ``TESSERA_RESPONSE``."""
    with np.load(os.environ["TESSERA_REQUEST"], allow_pickle=False) as request:
        image = request["image"].astype(np.uint8).tobytes()
        program_addr = int(request["program_addr"])
        length = int(request["length"])
        stall_threshold = int(request["stall_threshold"])
        timeout = int(request["timeout"])
        watchdog = int(request["watchdog"])
        hang_after = int(request["hang_after"])
    host = Host(dut)
    if len(image) > host.mem_size:
        raise ValueError(f"image of {len(image)} bytes does not fit the build's memory of "
                         f"{host.mem_size} bytes")
    await host.start(cocotb.RANDOM_SEED)
    host.configure_memory(stall_threshold=stall_threshold, limit=len(image))
    clock = time.perf_counter()
    await host.load_image(image, skip_zeros=True)         # a fresh simulation: memory is zero
    load_seconds = time.perf_counter() - clock
    timed_out, message = False, ""
    try:
        result = await host.run_program(program_addr, length, timeout,
                                        watchdog=None if watchdog < 0 else watchdog,
                                        hang_after=None if hang_after < 0 else hang_after)
    except ProgramTimeout as exc:
        timed_out, message = True, str(exc)
        result = ProgramResult(error=0, error_index=0, cycles=timeout)
    clock = time.perf_counter()
    final = await host.read_image(len(image))
    read_seconds = time.perf_counter() - clock
    dut._log.info("backdoor: %d bytes loaded in %.3f s, read in %.3f s; program: %s",
                  len(image), load_seconds, read_seconds, message or f"{result}")
    names = list(PERF_COUNTERS)
    np.savez(
        os.environ["TESSERA_RESPONSE"],
        image=np.frombuffer(final, np.uint8),
        error=int(result.error), error_index=result.error_index,
        counter_names=np.array(names),
        counter_values=np.array([result.counters.get(name, 0) for name in names], np.uint64),
        cycles=result.cycles, dma_error=int(result.dma_error),
        dma_error_addr=result.dma_error_addr, timed_out=timed_out, message=message,
        violation=int(dut.violation.value), load_seconds=load_seconds, read_seconds=read_seconds,
    )


# --- test: the DMA test hook through the gateware memory ------------------------------------------

def _round_trip_expectation(memory, *, src, stride, rows, row_bytes, full, dst, dst_stride):
    """The memory after loading ``rows`` x ``row_bytes`` from ``src`` (zero-filling each buffer
    row to ``full`` bytes) and storing the whole rows to ``dst``."""
    expect = memory.copy()
    for i in range(rows):
        row = np.zeros(full, np.uint8)
        row[:row_bytes] = memory[src + i * stride: src + i * stride + row_bytes]
        expect[dst + i * dst_stride: dst + i * dst_stride + full] = row
    return expect


def _first_difference(got, expect):
    bad = np.flatnonzero(got != expect)
    return (f"{len(bad)} bytes differ, first at {bad[0]:#x} (got {got[bad[0]]:#04x}, expected "
            f"{expect[bad[0]]:#04x})")


@cocotb.test()
async def dma_hook_round_trip(dut):
    """memory -> buffer -> memory through the DMA hook with the gateware memory: exact without and
    with stalls; DECERR above the limit; a hanging memory holds a transfer until released."""
    host = Host(dut)
    seed = cocotb.RANDOM_SEED
    rng = np.random.default_rng(seed)
    await host.start(seed)
    size = host.mem_size
    half = size // 2                    # sources in the lower half, destinations in the upper
    memory = rng.integers(0, 256, size, dtype=np.uint8)
    clock = time.perf_counter()
    await host.load_image(memory.tobytes())
    loaded = time.perf_counter() - clock
    got = np.frombuffer(await host.read_image(), np.uint8)
    assert np.array_equal(got, memory), f"backdoor round trip: {_first_difference(got, memory)}"
    dut._log.info("backdoor: %d words written in %.3f s (%.0f words/s)", size // host.word_bytes,
                  loaded, size // host.word_bytes / loaded)

    full = {Buffer.SCRATCHPAD: host.lanes, Buffer.ACCUMULATOR: 4 * host.lanes}
    depth = {Buffer.SCRATCHPAD: host.config["scratchpad_depth"],
             Buffer.ACCUMULATOR: host.config["accumulator_depth"]}
    transfers = 0
    for threshold in (0, 100):
        host.configure_memory(stall_threshold=threshold)
        for i in range(4):
            buffer = Buffer(i % 2)
            rows = int(rng.integers(1, min(8, depth[buffer]) + 1))
            row_bytes = int(rng.integers(1, full[buffer] + 1))
            stride = row_bytes + int(rng.integers(0, 24))
            src = int(rng.integers(0, half - rows * stride))
            dst_stride = full[buffer] + int(rng.integers(0, 9))
            dst = half + int(rng.integers(0, half - rows * dst_stride))
            sram_row = int(rng.integers(0, depth[buffer] - rows + 1))
            label = (f"stall {threshold}: {rows} rows x {row_bytes} B from {src:#x} (stride "
                     f"{stride}) via {buffer.name} row {sram_row} to {dst:#x}")
            code, _ = await host.run_dma(dram_addr=src, dram_stride=stride, rows=rows,
                                         row_bytes=row_bytes, sram_row=sram_row, buffer=buffer,
                                         direction=Direction.LOAD)
            assert code == DmaError.NONE, f"{label}: load failed with {code!r}"
            code, _ = await host.run_dma(dram_addr=dst, dram_stride=dst_stride, rows=rows,
                                         row_bytes=full[buffer], sram_row=sram_row,
                                         buffer=buffer, direction=Direction.STORE)
            assert code == DmaError.NONE, f"{label}: store failed with {code!r}"
            memory = _round_trip_expectation(memory, src=src, stride=stride, rows=rows,
                                             row_bytes=row_bytes, full=full[buffer], dst=dst,
                                             dst_stride=dst_stride)
            lo = dst - dst % host.word_bytes
            hi = dst + rows * dst_stride
            got = np.frombuffer(await host.read_image(hi - lo, lo), np.uint8)
            assert np.array_equal(got, memory[lo:hi]), \
                f"{label}: {_first_difference(got, memory[lo:hi])} from {lo:#x}"
            transfers += 1
    got = np.frombuffer(await host.read_image(), np.uint8)
    assert np.array_equal(got, memory), f"after the round trips: {_first_difference(got, memory)}"

    # DECERR above the limit: a load from there fails, a store there writes nothing.
    limit = size - 1024
    host.configure_memory(limit=limit)
    spad, lanes = Buffer.SCRATCHPAD, host.lanes
    code, addr = await host.run_dma(dram_addr=limit + 64, dram_stride=lanes, rows=2,
                                    row_bytes=lanes, sram_row=0, buffer=spad,
                                    direction=Direction.LOAD)
    assert code == DmaError.READ_DECERR, f"load above the limit {limit:#x}: {code!r}"
    assert addr >= limit, f"load above the limit {limit:#x}: error address {addr:#x}"
    code, addr = await host.run_dma(dram_addr=limit + 64, dram_stride=lanes, rows=2,
                                    row_bytes=lanes, sram_row=0, buffer=spad,
                                    direction=Direction.STORE)
    assert code == DmaError.WRITE_DECERR, f"store above the limit {limit:#x}: {code!r}"
    host.configure_memory(limit=0)
    got = np.frombuffer(await host.read_image(), np.uint8)
    assert np.array_equal(got, memory), f"after DECERR stores: {_first_difference(got, memory)}"

    # A hanging memory holds a load until it is released; the data then arrives intact.
    rows = min(4, depth[spad])
    host.configure_memory(hang=1)
    await host.start_dma(dram_addr=0x40, dram_stride=lanes, rows=rows, row_bytes=lanes,
                         sram_row=0, buffer=spad, direction=Direction.LOAD)
    await ClockCycles(dut.clk, 200)
    status = await host.read("STATUS")
    assert status["busy"] and not status["done"], \
        f"transfer ended with the memory hanging: {status}"
    host.configure_memory(hang=0)
    code, _ = await host.finish_dma(10_000, "load after the memory hang")
    assert code == DmaError.NONE, f"load after the memory hang: {code!r}"
    code, _ = await host.run_dma(dram_addr=half, dram_stride=lanes, rows=rows, row_bytes=lanes,
                                 sram_row=0, buffer=spad, direction=Direction.STORE)
    assert code == DmaError.NONE, f"store after the memory hang: {code!r}"
    memory = _round_trip_expectation(memory, src=0x40, stride=lanes, rows=rows, row_bytes=lanes,
                                     full=lanes, dst=half, dst_stride=lanes)
    got = np.frombuffer(await host.read_image(), np.uint8)
    assert np.array_equal(got, memory), f"after the memory hang: {_first_difference(got, memory)}"
    assert not int(dut.violation.value), "the memory saw an unsupported or malformed burst"
    dut._log.info("dma_hook_round_trip: %d round trips exact, DECERR and hang checked",
                  transfers)
