"""Tests of the gateware AXI4 memory (tb/axi_memory.py): pytest entry points and the cocotb tests
they run (this module is also the cocotb test module).

The memory is the simulated top level; cocotbext-axi's ``AxiMaster`` drives its ``s_axi_*`` port
and :class:`~tessera.tb.accelerator_tb.Backdoor` its word and bulk ports. A Python bytearray
mirrors the memory and every read is compared with it.

* ``test_parameters`` (plain pytest): bad constructor arguments raise errors naming the value.

* ``random_bursts``: concurrent random writes (random WSTRB edges from unaligned addresses and
  lengths) and reads, without stalls, then with memory stalls and manager-side pauses on all five
  channels; every read and the whole memory afterwards match the mirror.
* ``errors``: DECERR above ``size`` and above the runtime ``limit`` (reads: per beat, data 0;
  writes: the whole burst, nothing written), ``limit`` beyond ``size`` means ``size``, SLVERR for
  FIXED and narrow bursts (which set ``violation``), the memory working normally afterwards.
* ``protocol_checks``: a burst crossing 4 KiB and a W beat with the wrong WLAST set ``violation``,
  a legal burst does not.
* ``backdoor_round_trip``: backdoor writes are read back over AXI, AXI writes over the backdoor;
  word and bulk ports agree; a bulk write across the end of memory writes only the words inside.
* ``throughput``: a 256-beat read burst and four back-to-back 64-beat bursts stream one beat per
  cycle, the first beat ``latency`` cycles after the AR handshake; a 256-beat write burst is
  accepted one beat per cycle.
* ``hang``: with ``hang`` set nothing is accepted or answered; released, the transfers complete.
"""

import gc
import json
import logging
import os
import random
import warnings

import cocotb
import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, with_timeout
from cocotbext.axi import AxiBurstType, AxiBus, AxiMaster, AxiResp

from tessera.tb import simulators
from tessera.tb.accelerator_tb import Backdoor
from tessera.tb.axi_memory import MIN_READ_LATENCY, AxiMemory
from tessera.tb.streams import CycleCounter

# --- pytest: build the memory, run the cocotb tests below -----------------------------------------

CONFIGS = {
    "bus64-latency5": dict(size=1 << 14, data_width=64, id_width=4, latency=5),
    "bus32": dict(size=1 << 14, data_width=32, id_width=2, latency=MIN_READ_LATENCY),
    "bus128": dict(size=1 << 14, data_width=128, id_width=4, latency=MIN_READ_LATENCY),
}

#: Configurations of the quick suite; the others run with --run-slow.
QUICK = ("bus64-latency5",)


@pytest.mark.parametrize("config", [name if name in QUICK else
                                    pytest.param(name, marks=pytest.mark.slow)
                                    for name in CONFIGS])
def test_axi_memory(sim, config, seed):
    design = simulators.build(sim, "axi_memory", AxiMemory, CONFIGS[config])
    simulators.run(design, "tessera.tb.test_axi_memory", seed=seed)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(size=1004), ValueError, "size must be a multiple of 8 bytes .*, not 1004"),
    (dict(size=0), ValueError, r"size must be an integer in \[1, 4294967296\], not 0"),
    (dict(size=1 << 33), ValueError, "size must be an integer in .*, not 8589934592"),
    (dict(latency=2), ValueError, "latency must be an integer >= 3, not 2"),
    (dict(queue_depth=3), ValueError, "queue_depth must be an integer >= 4, not 3"),
    (dict(bulk_words=0), ValueError, r"bulk_words must be an integer in \[1, 1024\], not 0"),
    (dict(data_width=48), ValueError, "data_width must be one of .*, not 48"),
])
def test_parameters(kwargs, error, match):
    args = dict(size=1 << 12, data_width=64, id_width=4)
    args.update(kwargs)
    # The half-built component is collected here, its "created but never used" warning silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(error, match=match) as info:
            AxiMemory(**args)
        del info
        gc.collect()


# --- cocotb ---------------------------------------------------------------------------------------

PERIOD_NS = 10


def _pauses(rng, probability):
    while True:
        yield rng.random() < probability


class MemoryBench:
    """The memory under test: clock, reset, AxiMaster, backdoor and a mirror of the contents."""
    def __init__(self, dut):
        self.dut = dut
        self.params = json.loads(os.environ["TESSERA_PARAMS"])
        self.size = self.params["size"]
        self.word_bytes = self.params["data_width"] // 8
        self.latency = self.params["latency"]
        self.seed = cocotb.RANDOM_SEED
        self.rng = np.random.default_rng(self.seed)
        self.py_rng = random.Random(self.seed)
        self.backdoor = Backdoor(dut, self.word_bytes, self.size // self.word_bytes)
        self.counter = CycleCounter(PERIOD_NS)
        self.mirror = bytearray(self.size)
        self.master = None
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start())

    async def reset(self, *, master=True):
        dut = self.dut
        dut.rst.value = 1
        for name in ("backdoor__we", "bulk__write", "bulk__read", "stall_threshold", "hang",
                     "limit", "seed_load"):
            getattr(dut, name).value = 0
        # Under Icarus, combinational outputs can stay X until clock edges have changed some
        # register, so the bus model is attached after two cycles of reset.
        await ClockCycles(dut.clk, 2)
        if master:
            self.master = AxiMaster(AxiBus.from_prefix(dut, "s_axi_"), dut.clk, dut.rst)
            for model in (self.master.write_if, self.master.read_if, *self.channels()):
                model.log.setLevel(logging.WARNING)
        await ClockCycles(dut.clk, 2)
        dut.rst.value = 0
        dut.seed.value = self.seed & 0xFFFF_FFFF
        dut.seed_load.value = 1
        await RisingEdge(dut.clk)
        dut.seed_load.value = 0
        assert not int(dut.violation.value), "violation set after reset"

    def channels(self):
        w, r = self.master.write_if, self.master.read_if
        return (w.aw_channel, w.w_channel, w.b_channel, r.ar_channel, r.r_channel)

    def set_traffic(self, stall_threshold, pause_probability):
        """Memory stalls (threshold /256) and manager pauses on all five channels."""
        self.dut.stall_threshold.value = stall_threshold
        for channel in self.channels():
            if pause_probability:
                channel.set_pause_generator(_pauses(self.py_rng, pause_probability))
            else:
                channel.clear_pause_generator()

    async def fill(self):
        """Random contents through the backdoor."""
        self.mirror[:] = self.rng.integers(0, 256, self.size, dtype=np.uint8).tobytes()
        await self.backdoor.load(self.mirror)

    async def check_all(self, label):
        got = await self.backdoor.read(self.size)
        if got != self.mirror:
            bad = next(i for i in range(self.size) if got[i] != self.mirror[i])
            raise AssertionError(f"{label}: memory differs from the mirror first at {bad:#x} "
                                 f"(got {got[bad]:#04x}, expected {self.mirror[bad]:#04x})")

    async def write(self, address, data, **kwargs):
        return await with_timeout(self.master.write(address, data, **kwargs),
                                  (200 + 20 * len(data)) * PERIOD_NS, "ns")

    async def read(self, address, length, **kwargs):
        return await with_timeout(self.master.read(address, length, **kwargs),
                                  (200 + 20 * length) * PERIOD_NS, "ns")


@cocotb.test()
async def random_bursts(dut):
    """Concurrent random writes and reads agree with the mirror, without and with stalls."""
    bench = MemoryBench(dut)
    await bench.reset()
    await bench.fill()
    rng = bench.rng
    for stall, pause in ((0, 0.0), (128, 0.3)):
        bench.set_traffic(stall, pause)
        for batch in range(6):
            # A batch: non-overlapping writes and reads in flight together.
            spans, tasks = [], []
            for _ in range(4):
                length = int(rng.integers(1, 600))
                address = int(rng.integers(0, bench.size - length))
                if any(address < hi and lo < address + length for lo, hi in spans):
                    continue
                spans.append((address, address + length))
                if rng.random() < 0.5:
                    data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
                    bench.mirror[address:address + length] = data
                    tasks.append(("write", address, length,
                                  cocotb.start_soon(bench.write(address, data))))
                else:
                    tasks.append(("read", address, length,
                                  cocotb.start_soon(bench.read(address, length))))
            for kind, address, length, task in tasks:
                resp = await task
                label = f"{kind} of {length} B at {address:#x} (stall {stall}, pause {pause})"
                assert resp.resp == AxiResp.OKAY, f"{label}: {resp.resp!r}"
                if kind == "read":
                    expect = bytes(bench.mirror[address:address + length])
                    assert resp.data == expect, f"{label}: data differs"
        await bench.check_all(f"after random bursts (stall {stall}, pause {pause})")
    assert not int(dut.violation.value), "violation set by legal bursts"


@cocotb.test()
async def errors(dut):
    """DECERR above size and limit, SLVERR for unsupported bursts; normal operation after."""
    bench = MemoryBench(dut)
    await bench.reset()
    await bench.fill()
    size, n = bench.size, bench.word_bytes

    # Reads across the end of memory: the beats below answer data, the beats above DECERR and 0.
    resp = await bench.read(size - 4 * n, 8 * n)
    assert resp.resp == AxiResp.DECERR, resp.resp
    assert resp.data == bytes(bench.mirror[size - 4 * n:]) + bytes(4 * n), "read across the end"
    resp = await bench.write(size - 2 * n, bytes(range(4 * n)))
    assert resp.resp == AxiResp.DECERR, resp.resp
    bench.mirror[size - 2 * n:] = bytes(range(2 * n))  # the burst below the end is written
    resp = await bench.write(size + 0x100, bytes(n))
    assert resp.resp == AxiResp.DECERR, resp.resp

    # A runtime limit inside memory: per beat for reads, whole bursts for writes.
    limit = 0x2000 + 2 * n
    dut.limit.value = limit
    resp = await bench.read(0x2000, 6 * n)
    assert resp.resp == AxiResp.DECERR, resp.resp
    assert resp.data == bytes(bench.mirror[0x2000:limit]) + bytes(4 * n), "read across the limit"
    resp = await bench.write(0x2000, bytes([0xA5]) * 6 * n)
    assert resp.resp == AxiResp.DECERR, resp.resp          # nothing of this burst is written
    resp = await bench.write(limit - n, bytes([0x5A]) * n)
    assert resp.resp == AxiResp.OKAY, resp.resp
    bench.mirror[limit - n:limit] = bytes([0x5A]) * n
    dut.limit.value = size + 0x1000                         # beyond size: size
    resp = await bench.read(size - n, n)
    assert resp.resp == AxiResp.OKAY and resp.data == bytes(bench.mirror[size - n:]), resp
    resp = await bench.read(size, n)
    assert resp.resp == AxiResp.DECERR, resp.resp
    dut.limit.value = 0
    assert not int(dut.violation.value), "violation set by legal bursts"

    # Unsupported bursts: SLVERR, data 0, nothing written, and the violation flag.
    resp = await bench.read(0x100, 4 * n, burst=AxiBurstType.FIXED)
    assert resp.resp == AxiResp.SLVERR and resp.data == bytes(4 * n), resp
    resp = await bench.write(0x200, bytes([0xEE]) * 4 * n, burst=AxiBurstType.FIXED)
    assert resp.resp == AxiResp.SLVERR, resp.resp
    resp = await bench.write(0x300, bytes([0xEE]) * 8, size=1)   # 2-byte beats
    assert resp.resp == AxiResp.SLVERR, resp.resp
    assert int(dut.violation.value), "unsupported bursts did not set violation"

    # Still a working memory.
    resp = await bench.write(0x400, bytes(range(3 * n)))
    assert resp.resp == AxiResp.OKAY, resp.resp
    bench.mirror[0x400:0x400 + 3 * n] = bytes(range(3 * n))
    resp = await bench.read(0x3F8, 5 * n)
    assert resp.resp == AxiResp.OKAY and resp.data == bytes(bench.mirror[0x3F8:0x3F8 + 5 * n])
    await bench.check_all("after error responses")


#: Every signal the manager drives (all set to 0 before raw driving).
_MANAGER_SIGNALS = [f"{channel}{name}" for channel in ("ar", "aw") for name in
                    ("id", "addr", "len", "size", "burst", "lock", "cache", "prot", "valid")] + \
                   ["wdata", "wstrb", "wlast", "wvalid", "rready", "bready"]


class _RawAxi:
    """Direct drive of the AR, R, AW, W, B signals (for requests AxiMaster never makes)."""
    def __init__(self, dut):
        self.dut = dut
        self.edge = FallingEdge(dut.clk)

    async def handshake(self, prefix, **signals):
        dut = self.dut
        for name, value in signals.items():
            getattr(dut, f"s_axi__{prefix}{name}").value = value
        getattr(dut, f"s_axi__{prefix}valid").value = 1
        for _ in range(100):
            await self.edge
            ready = int(getattr(dut, f"s_axi__{prefix}ready").value)
            await RisingEdge(dut.clk)
            if ready:
                break
        else:
            raise AssertionError(f"{prefix.upper()} not accepted in 100 cycles")
        getattr(dut, f"s_axi__{prefix}valid").value = 0

    async def drain(self, channel, last_name, count):
        """Take ``count`` responses on R or B (ready held high)."""
        dut = self.dut
        getattr(dut, f"s_axi__{channel}ready").value = 1
        seen = 0
        for _ in range(400):
            await self.edge
            if int(getattr(dut, f"s_axi__{channel}valid").value):
                seen += 1 if last_name is None else int(getattr(dut, last_name).value)
            if seen == count:
                break
        await RisingEdge(dut.clk)
        getattr(dut, f"s_axi__{channel}ready").value = 0
        assert seen == count, f"{count} responses on {channel.upper()} expected, saw {seen}"


@cocotb.test()
async def protocol_checks(dut):
    """A 4 KiB crossing and a wrong WLAST set ``violation``; legal raw bursts do not."""
    bench = MemoryBench(dut)
    n, shift = bench.word_bytes, bench.word_bytes.bit_length() - 1
    raw = _RawAxi(dut)
    for name in _MANAGER_SIGNALS:
        getattr(dut, f"s_axi__{name}").value = 0
    await bench.reset(master=False)
    incr = dict(size=shift, burst=int(AxiBurstType.INCR), id=1)
    # Legal: 4 beats ending exactly at a 4 KiB boundary; a 2-beat write with WLAST on beat 2.
    await raw.handshake("ar", addr=0x1000 - 4 * n, len=3, **incr)
    await raw.drain("r", "s_axi__rlast", 1)
    await raw.handshake("aw", addr=0x800, len=1, **incr)
    for beat in range(2):
        await raw.handshake("w", data=beat, strb=(1 << n) - 1, last=int(beat == 1))
    await raw.drain("b", None, 1)
    assert not int(dut.violation.value), "violation set by legal raw bursts"
    # A read crossing 4 KiB.
    await raw.handshake("ar", addr=0x1000 - 2 * n, len=3, **incr)
    await raw.drain("r", "s_axi__rlast", 1)
    assert int(dut.violation.value), "a burst crossing 4 KiB did not set violation"
    # A write whose WLAST comes on the first of two beats.
    await bench.reset(master=False)
    await raw.handshake("aw", addr=0x800, len=1, **incr)
    for beat in range(2):
        await raw.handshake("w", data=beat, strb=(1 << n) - 1, last=int(beat == 0))
    await raw.drain("b", None, 1)
    assert int(dut.violation.value), "a wrong WLAST did not set violation"


@cocotb.test()
async def backdoor_round_trip(dut):
    """Backdoor writes are seen over AXI; AXI writes are seen over the backdoor."""
    bench = MemoryBench(dut)
    await bench.reset()
    await bench.fill()
    rng = bench.rng
    for _ in range(8):
        length = int(rng.integers(1, 512))
        address = int(rng.integers(0, bench.size - length))
        resp = await bench.read(address, length)
        assert resp.data == bytes(bench.mirror[address:address + length]), \
            f"AXI read of {length} B at {address:#x} after backdoor writes"
        data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        await bench.write(address, data)
        bench.mirror[address:address + length] = data
        lo = address - address % bench.word_bytes
        got = await bench.backdoor.read(address + length - lo, lo)
        assert got == bytes(bench.mirror[lo:address + length]), \
            f"backdoor read of {length} B at {address:#x} after an AXI write"
    # The backdoor at an offset (bulk blocks and single words), then the whole memory, by blocks
    # and by words.
    n, words = bench.word_bytes, bench.size // bench.word_bytes
    offset = 0x1000
    data = rng.integers(0, 256, 777, dtype=np.uint8).tobytes()
    await bench.backdoor.load(data, offset)
    padded = -(-len(data) // n) * n
    bench.mirror[offset:offset + padded] = data + bytes(padded - len(data))
    await bench.check_all("after backdoor writes at an offset")
    assert await bench.backdoor.read_words(0, words) == bytes(bench.mirror), "word-port read"
    # A bulk write across the end of memory writes the words inside and nothing else.
    block = bench.backdoor.block_words
    pattern = rng.integers(0, 256, block * n, dtype=np.uint8).tobytes()
    await FallingEdge(dut.clk)
    dut.bulk__addr.value = words - 2
    dut.bulk__wdata.value = int.from_bytes(pattern, "little")
    dut.bulk__write.value = 1
    await FallingEdge(dut.clk)
    dut.bulk__write.value = 0
    await ClockCycles(dut.clk, block + 2)
    assert not int(dut.bulk__busy.value), "bulk write still busy"
    bench.mirror[-2 * n:] = pattern[:2 * n]
    assert await bench.backdoor.read(3 * n, bench.size - 3 * n) == bytes(bench.mirror[-3 * n:])
    await bench.check_all("after a bulk write across the end")


class _BeatMonitor:
    """Cycle numbers of AR, R, AW and W handshakes, sampled at falling edges."""
    def __init__(self, dut, counter):
        self.dut = dut
        self.counter = counter
        self.events = {"ar": [], "r": [], "aw": [], "w": [], "w_stalled": []}

    async def run(self):
        dut, edge = self.dut, FallingEdge(self.dut.clk)
        while True:
            await edge
            cycle = self.counter.cycles
            for channel in ("ar", "r", "aw", "w"):
                if (int(getattr(dut, f"s_axi__{channel}valid").value)
                        and int(getattr(dut, f"s_axi__{channel}ready").value)):
                    self.events[channel].append(cycle)
            if int(dut.s_axi__wvalid.value) and not int(dut.s_axi__wready.value):
                self.events["w_stalled"].append(cycle)


@cocotb.test()
async def throughput(dut):
    """Reads stream one beat per cycle within and across bursts; writes are taken at full rate."""
    bench = MemoryBench(dut)
    await bench.reset()
    await bench.fill()
    n, latency = bench.word_bytes, bench.latency
    master = bench.master
    for burst_beats in (256, 64):
        master.read_if.max_burst_len = burst_beats          # AxiMaster splits reads at this
        monitor = _BeatMonitor(dut, bench.counter)
        task = cocotb.start_soon(monitor.run())
        beats = 256
        address = 0x1000                                   # 256 beats fit in 4 KiB for n <= 16
        resp = await with_timeout(master.read(address, beats * n), 5000 * PERIOD_NS, "ns")
        task.cancel()
        label = f"{beats}-beat read in bursts of {burst_beats}"
        assert resp.data == bytes(bench.mirror[address:address + beats * n]), f"{label}: data"
        ar, r = monitor.events["ar"], monitor.events["r"]
        assert len(ar) == beats // burst_beats and len(r) == beats, (label, len(ar), len(r))
        assert r[0] - ar[0] == latency, f"{label}: first beat after {r[0] - ar[0]} cycles"
        assert r[-1] - r[0] == beats - 1, f"{label}: {beats} beats took {r[-1] - r[0] + 1} cycles"
        assert r[-1] - ar[0] <= beats + latency, label
        dut._log.info("%s: AR at %d, beats %d..%d: %d beats in %d cycles", label, ar[0], r[0],
                      r[-1], beats, r[-1] - ar[0] + 1)

    # A 256-beat write: every W beat is taken in the cycle it is offered.
    monitor = _BeatMonitor(dut, bench.counter)
    task = cocotb.start_soon(monitor.run())
    data = bench.rng.integers(0, 256, 256 * n, dtype=np.uint8).tobytes()
    resp = await bench.write(0x2000, data)
    task.cancel()
    assert resp.resp == AxiResp.OKAY
    bench.mirror[0x2000:0x2000 + len(data)] = data
    w = monitor.events["w"]
    assert len(w) == 256 and w[-1] - w[0] == 255, f"256 W beats over {w[-1] - w[0] + 1} cycles"
    assert w[0] - monitor.events["aw"][0] <= 1, "first W beat waited after AW"
    await bench.check_all("after the throughput transfers")


@cocotb.test()
async def hang(dut):
    """``hang`` holds every channel; released, the held transfers complete correctly."""
    bench = MemoryBench(dut)
    await bench.reset()
    await bench.fill()
    n = bench.word_bytes
    dut.hang.value = 1
    data = bytes(range(256))[:4 * n]
    write = cocotb.start_soon(bench.master.write(0x600, data))
    read = cocotb.start_soon(bench.master.read(0x200, 8 * n))
    monitor = _BeatMonitor(dut, bench.counter)
    task = cocotb.start_soon(monitor.run())
    await ClockCycles(dut.clk, 100)
    task.cancel()
    assert not write.done() and not read.done(), "a transfer completed while the memory hangs"
    assert not any(monitor.events[c] for c in ("ar", "aw", "w", "r")), \
        f"handshakes while the memory hangs: {monitor.events}"
    dut.hang.value = 0
    resp = await with_timeout(read, 2000 * PERIOD_NS, "ns")
    assert resp.data == bytes(bench.mirror[0x200:0x200 + 8 * n]), "read after the hang"
    assert (await with_timeout(write, 2000 * PERIOD_NS, "ns")).resp == AxiResp.OKAY
    bench.mirror[0x600:0x600 + len(data)] = data
    await bench.check_all("after the hang")
