"""The small row mover (rtl/small/row_dma.py) in Amaranth's simulator.

* Against the gateware AXI memory (tb/axi_memory.py) and a Python copy of its contents: seeded
  random reads and writes (addresses anywhere, just below 4 KiB and 64-byte boundaries, any
  alignment; 1 .. row_bytes bytes) under random memory stalls, for 8-, 16- and 32-byte rows;
  DECERR from the memory's ``limit`` on reads and writes; a reset in the middle of bursts; the
  cycle counts of the docstring.
* Against a small Python AXI subordinate (a sparse model of all 2**32 bytes): rows that wrap from
  0xFFFFFFFF to 0, and SLVERR / DECERR injected on R beats and B responses.
* A protocol monitor checks every cycle: AxVALID / WVALID held with a stable payload until the
  handshake, INCR bursts of 4-byte beats with ID 0, at most 16 beats inside one 64-byte block (so
  never across 4 KiB), one burst outstanding, WLAST on each burst's last beat; the bursts of every
  transfer are compared with the documented split, and the bytes with WSTRB set with
  ``[addr, addr + nbytes)``.
* An iCE40 synthesis of ``RowDma(row_bytes=16)`` with a bound on its LUT4 and flip-flop counts.
"""

import gc
import random
import warnings
from collections import deque

import pytest

from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal, UnusedElaboratable
from amaranth.lib import wiring
from amaranth.sim import Simulator

from tessera.rtl.axi import Resp
from tessera.rtl.dma_descriptor import DmaError
from tessera.rtl.small.row_dma import RowDma
from tessera.tb.axi_memory import AxiMemory

MEM_SIZE = 8192                 # two 4 KiB pages
MASK32 = (1 << 32) - 1
READ_ERRORS = {Resp.SLVERR: DmaError.READ_SLVERR, Resp.DECERR: DmaError.READ_DECERR}
WRITE_ERRORS = {Resp.SLVERR: DmaError.WRITE_SLVERR, Resp.DECERR: DmaError.WRITE_DECERR}


def ref_bursts(addr, nbytes):
    """``[(AxADDR, AxLEN)]`` of a row as documented: its words cut at 64-byte boundaries."""
    word = addr & ~3
    beats = (addr % 4 + nbytes - 1) // 4 + 1
    bursts = []
    while beats:
        n = min(beats, 16 - (word // 4) % 16)
        bursts.append((word, n - 1))
        word = (word + 4 * n) & MASK32
        beats -= n
    return bursts


def row_bytes_of(value, count):
    return [(value >> (8 * k)) & 0xFF for k in range(count)]


class Bench(Elaboratable):
    """RowDma connected to an AxiMemory; each with its own reset input."""
    def __init__(self, row_bytes, *, mem_size=MEM_SIZE):
        self.dma = RowDma(row_bytes=row_bytes)
        self.mem = AxiMemory(size=mem_size, data_width=32, id_width=4)
        self.dma_rst = Signal()
        self.mem_rst = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = ResetInserter(self.dma_rst)(self.dma)
        m.submodules.mem = ResetInserter(self.mem_rst)(self.mem)
        wiring.connect(m, self.dma.m_axi, self.mem.s_axi)
        return m


class Monitor:
    """Checks the manager side of the AXI port every cycle (see the module docstring) and logs
    the bursts (``ar``, ``aw``: ``(addr, len)``) and the byte addresses written with WSTRB set."""

    PAYLOADS = {
        "ar": ("araddr", "arlen", "arsize", "arburst", "arid", "arlock", "arcache", "arprot"),
        "aw": ("awaddr", "awlen", "awsize", "awburst", "awid", "awlock", "awcache", "awprot"),
        "w": ("wdata", "wstrb", "wlast"),
    }

    def __init__(self, axi, resets=()):
        self.axi = axi
        self.resets = list(resets)
        self.names = ["rvalid", "rready", "bvalid", "bready"]
        for ch, payload in self.PAYLOADS.items():
            self.names += [f"{ch}valid", f"{ch}ready", *payload]
        self.clear_log()
        self.r_beats = 0            # R handshakes, ever
        self.w_beats = 0            # W handshakes, ever

    def clear_log(self):
        self.ar, self.aw, self.strobed = [], [], []

    async def run(self, ctx):
        sigs = [getattr(self.axi, name) for name in self.names]
        held = {}                   # channel -> payload offered without a handshake
        out = None                  # the outstanding burst: ["r", beats] / ["w", addr, len, beat]
        async for _, _, *values in ctx.tick().sample(*sigs, *self.resets):
            s = dict(zip(self.names, values))
            if any(values[len(sigs):]):
                held, out = {}, None            # both sides reset at this edge
                continue
            for ch, payload in self.PAYLOADS.items():
                valid = s[f"{ch}valid"]
                now = tuple(s[name] for name in payload)
                if ch in held:
                    assert valid and now == held[ch], f"{ch.upper()}VALID dropped or payload changed"
                held.pop(ch, None)
                if valid and not s[f"{ch}ready"]:
                    held[ch] = now
            for ch in ("ar", "aw"):
                if not s[f"{ch}valid"]:
                    continue
                addr, length, size, burst, axid, lock, cache, prot = (
                    s[name] for name in self.PAYLOADS[ch])
                assert out is None, f"{ch.upper()} while a burst is outstanding: {out}"
                assert (size, burst, axid, lock, cache, prot) == (2, 1, 0, 0, 0, 0), s
                assert addr % 4 == 0 and length <= 15, (hex(addr), length)
                assert addr // 64 == (addr + 4 * length) // 64, \
                    f"burst {addr:#x} len {length} leaves its 64-byte block"
            if s["rvalid"] and s["rready"]:
                assert out is not None and out[0] == "r", "R beat without a read burst"
                self.r_beats += 1
                out[1] -= 1
                if out[1] == 0:
                    out = None
            if s["wvalid"]:
                assert out is not None and out[0] == "w", "WVALID without an open write burst"
                _, addr, length, beat = out
                assert s["wlast"] == (beat == length), f"WLAST {s['wlast']} on beat {beat}/{length}"
                if s["wready"]:
                    self.w_beats += 1
                    self.strobed += [(addr + 4 * beat + lane) & MASK32 for lane in range(4)
                                     if s["wstrb"] >> lane & 1]
                    out[3] += 1
                    if beat == length:
                        out = ["b"]
            if s["bvalid"] and s["bready"]:
                assert out == ["b"], f"B handshake with {out} outstanding"
                out = None
            if s["arvalid"] and s["arready"]:
                self.ar.append((s["araddr"], s["arlen"]))
                out = ["r", s["arlen"] + 1]
            if s["awvalid"] and s["awready"]:
                self.aw.append((s["awaddr"], s["awlen"]))
                out = ["w", s["awaddr"], s["awlen"], 0]


async def transfer(ctx, dma, *, write, addr, nbytes, wdata=0, rng=None, limit=5000):
    """One transfer from a start in the current cycle to ``done``; returns the cycles from the
    start to ``done`` and the outputs at ``done``. With ``rng``, the request inputs change
    randomly after the start (they are sampled at the start)."""
    assert not ctx.get(dma.busy)
    ctx.set(dma.start, 1)
    ctx.set(dma.write, write)
    ctx.set(dma.addr, addr)
    ctx.set(dma.nbytes, nbytes)
    ctx.set(dma.wdata, wdata)
    await ctx.tick()
    ctx.set(dma.start, 0)
    cycles = 1
    while True:
        if rng is not None:
            ctx.set(dma.write, rng.randrange(2))
            ctx.set(dma.addr, rng.randrange(1 << 32))
            ctx.set(dma.nbytes, rng.randrange(dma.row_bytes + 1))
            ctx.set(dma.wdata, rng.randrange(1 << (8 * dma.row_bytes)))
        if ctx.get(dma.done):
            break
        assert ctx.get(dma.busy), f"busy low in cycle {cycles} before done"
        await ctx.tick()
        cycles += 1
        assert cycles < limit, "no done"
    assert not ctx.get(dma.busy)
    return {"cycles": cycles, "rdata": ctx.get(dma.rdata), "error": ctx.get(dma.error),
            "error_addr": ctx.get(dma.error_addr)}


async def mem_write_words(ctx, mem, first, words):
    ctx.set(mem.backdoor.we, 1)
    for i, word in enumerate(words):
        ctx.set(mem.backdoor.addr, first + i)
        ctx.set(mem.backdoor.wdata, word)
        await ctx.tick()
    ctx.set(mem.backdoor.we, 0)


async def mem_read_words(ctx, mem, first, count):
    words = []
    for i in range(count + 1):
        if i:
            words.append(ctx.get(mem.backdoor.rdata))   # the word at the previous cycle's addr
        ctx.set(mem.backdoor.addr, min(first + i, mem.words - 1))
        await ctx.tick()
    return words


async def mem_read_bytes(ctx, mem, lo, hi):
    """Memory bytes ``[lo, hi)`` (inside the memory) through the backdoor."""
    first, last = lo // 4, (hi + 3) // 4
    words = await mem_read_words(ctx, mem, first, last - first)
    data = [b for word in words for b in row_bytes_of(word, 4)]
    return data[lo - 4 * first:hi - 4 * first]


async def preload(ctx, mem, rng):
    """Random memory contents; returns the Python copy (a bytearray)."""
    ref = bytearray(rng.randbytes(mem.size))
    await mem_write_words(ctx, mem, 0, [int.from_bytes(ref[a:a + 4], "little")
                                        for a in range(0, mem.size, 4)])
    return ref


def random_row(rng, row_bytes, size=MEM_SIZE):
    """A random (addr, nbytes) inside the memory, often next to a 4 KiB or 64-byte boundary."""
    kind = rng.randrange(4)
    nbytes = rng.choice([1, 2, 3, row_bytes, row_bytes - 1, rng.randint(1, row_bytes)])
    if kind == 0:
        addr = rng.randrange(size - nbytes + 1)
    else:
        boundary = rng.randrange(1, size // (4096 if kind == 1 else 64)) * (4096 if kind == 1
                                                                            else 64)
        addr = boundary - rng.randint(1, nbytes + 3)
    return max(0, min(addr, size - nbytes)), nbytes


def check_read(result, ref, addr, nbytes, row_bytes):
    want = list(ref[addr:addr + nbytes]) + [0] * (row_bytes - nbytes)
    got = row_bytes_of(result["rdata"], row_bytes)
    assert got == want, f"read {addr:#x}+{nbytes}: rdata {bytes(got).hex()}, want {bytes(want).hex()}"


# --- random transfers against AxiMemory -------------------------------------------------------

@pytest.mark.parametrize("row_bytes", [8, 16, 32])
@pytest.mark.parametrize("variant", range(3))
def test_random_transfers(seed, row_bytes, variant):
    rng = random.Random(seed * 1000 + row_bytes * 10 + variant)
    print(f"seed={seed} row_bytes={row_bytes} variant={variant}")
    bench = Bench(row_bytes)
    dma, mem = bench.dma, bench.mem
    monitor = Monitor(dma.m_axi)
    seen = {"reads": 0, "writes": 0, "split": 0, "stalled": 0}

    async def testbench(ctx):
        ref = await preload(ctx, mem, rng)
        read_total = written_total = 0
        # Fixed proportions in a shuffled order, not a coin per transfer, so that no seed falls
        # short of the reads, writes and split rows counted at the end: 40 reads, 40 writes, and
        # a quarter of each redrawn until the row crosses a 64-byte boundary (the rest as drawn).
        plan = [(write, k % 4 == 0) for k in range(40) for write in (0, 1)]
        rng.shuffle(plan)
        for i, (write, must_split) in enumerate(plan):
            if i % 20 == 0:
                threshold = rng.choice([0, 40, 120, 200])
                ctx.set(mem.stall_threshold, threshold)
                ctx.set(mem.seed, rng.randrange(1 << 32))
                ctx.set(mem.seed_load, 1)
                await ctx.tick()
                ctx.set(mem.seed_load, 0)
                seen["stalled"] += threshold > 0
            for _ in range(rng.choice([0, 0, 1, 3])):
                await ctx.tick()
            addr, nbytes = random_row(rng, row_bytes)
            while must_split and len(ref_bursts(addr, nbytes)) == 1:
                addr, nbytes = random_row(rng, row_bytes)
            monitor.clear_log()
            if write:
                data = rng.randrange(1 << (8 * row_bytes))
                result = await transfer(ctx, dma, write=1, addr=addr, nbytes=nbytes, wdata=data,
                                        rng=rng if rng.randrange(2) else None)
                ref[addr:addr + nbytes] = bytes(row_bytes_of(data, nbytes))
                assert sorted(monitor.strobed) == list(range(addr, addr + nbytes))
                lo, hi = max(0, addr - 4), min(MEM_SIZE, addr + nbytes + 4)
                assert await mem_read_bytes(ctx, mem, lo, hi) == list(ref[lo:hi]), \
                    f"write {addr:#x}+{nbytes}"
                written_total += nbytes
                seen["writes"] += 1
            else:
                result = await transfer(ctx, dma, write=0, addr=addr, nbytes=nbytes,
                                        rng=rng if rng.randrange(2) else None)
                check_read(result, ref, addr, nbytes, row_bytes)
                read_total += nbytes
                seen["reads"] += 1
            assert (result["error"], result["error_addr"]) == (DmaError.NONE, 0)
            assert (monitor.aw if write else monitor.ar) == ref_bursts(addr, nbytes)
            assert not (monitor.ar if write else monitor.aw)
            seen["split"] += len(ref_bursts(addr, nbytes)) > 1
            assert ctx.get(dma.bytes_read) == read_total
            assert ctx.get(dma.bytes_written) == written_total
        assert not ctx.get(mem.violation)
        assert bytes(await mem_read_bytes(ctx, mem, 0, MEM_SIZE)) == bytes(ref)

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(monitor.run, background=True)
    sim.add_testbench(testbench)
    sim.run()
    assert seen["reads"] > 20 and seen["writes"] > 20 and seen["split"] > 5, seen


# --- DECERR from the memory's limit ------------------------------------------------------------

@pytest.mark.parametrize("row_bytes", [8, 16, 32])
def test_decerr(seed, row_bytes):
    rng = random.Random(seed * 7 + row_bytes)
    print(f"seed={seed} row_bytes={row_bytes}")
    bench = Bench(row_bytes)
    dma, mem = bench.dma, bench.mem
    monitor = Monitor(dma.m_axi)
    seen = {"read_err": 0, "write_err": 0, "ok": 0, "counted_err": 0}

    async def testbench(ctx):
        ref = await preload(ctx, mem, rng)
        ctx.set(mem.stall_threshold, 100)
        read_total = written_total = 0
        # 15 good reads, 15 good writes, 15 failing reads and 15 failing writes in a shuffled
        # order, not a coin per transfer (which left 5 or fewer of a kind for about one seed in
        # 700): the limit and row are redrawn until the row is on the planned side of the limit.
        plan = [(write, fails) for write in (0, 1) for fails in (False, True)] * 15
        rng.shuffle(plan)
        for write, fails in plan:
            while True:
                limit = rng.randrange(64, MEM_SIZE - 64)
                nbytes = rng.randint(1, row_bytes)
                addr = limit - rng.randint(-8, nbytes + 8)     # across, below or above the limit
                bursts = ref_bursts(addr, nbytes)
                # the first burst whose last beat is at or above the limit fails (reads: its
                # beats from the limit on answer DECERR; writes: the burst answers DECERR)
                failing = [k for k, (a, n) in enumerate(bursts) if a + 4 * n >= limit]
                if bool(failing) == fails:
                    break
            bad = failing[0] if failing else None
            ctx.set(mem.limit, limit)
            await ctx.tick()
            issued = bursts if bad is None else bursts[:bad + 1]
            monitor.clear_log()
            data = rng.randrange(1 << (8 * row_bytes))
            result = await transfer(ctx, dma, write=write, addr=addr, nbytes=nbytes, wdata=data)
            assert (monitor.aw if write else monitor.ar) == issued
            if bad is None:
                assert (result["error"], result["error_addr"]) == (DmaError.NONE, 0)
                seen["ok"] += 1
            else:
                code = DmaError.WRITE_DECERR if write else DmaError.READ_DECERR
                assert (result["error"], result["error_addr"]) == (code, bursts[bad][0]), \
                    (addr, nbytes, limit, result)
                seen["write_err" if write else "read_err"] += 1
            if write:
                # bursts before the failing one are written, the failing one is not
                end = addr + nbytes if bad is None else max(addr, bursts[bad][0])
                ref[addr:end] = bytes(row_bytes_of(data, end - addr))
                if bad is None or bad == len(bursts) - 1:   # the last W beat was sent
                    written_total += nbytes
                    seen["counted_err"] += bad is not None
                lo, hi = max(0, addr - 4), min(MEM_SIZE, addr + nbytes + 4)
                assert await mem_read_bytes(ctx, mem, lo, hi) == list(ref[lo:hi])
            elif bad is None:
                check_read(result, ref, addr, nbytes, row_bytes)
                read_total += nbytes
            assert ctx.get(dma.bytes_read) == read_total
            assert ctx.get(dma.bytes_written) == written_total
        # a good transfer after the errors
        ctx.set(mem.limit, 0)
        result = await transfer(ctx, dma, write=0, addr=100, nbytes=row_bytes)
        check_read(result, ref, 100, row_bytes, row_bytes)
        assert result["error"] == DmaError.NONE
        assert not ctx.get(mem.violation)

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(monitor.run, background=True)
    sim.add_testbench(testbench)
    sim.run()
    assert seen["read_err"] > 5 and seen["write_err"] > 5 and seen["ok"] > 5, seen


# --- reset in the middle of a burst ------------------------------------------------------------

@pytest.mark.parametrize("row_bytes", [16])
def test_reset_mid_burst(seed, row_bytes):
    rng = random.Random(seed + 99)
    print(f"seed={seed}")
    bench = Bench(row_bytes)
    dma, mem = bench.dma, bench.mem
    monitor = Monitor(dma.m_axi, resets=[bench.dma_rst])
    axi = dma.m_axi
    seen = {"mid_r": 0, "mid_w": 0}

    async def testbench(ctx):
        ref = await preload(ctx, mem, rng)
        for i in range(40):
            ctx.set(mem.stall_threshold, rng.choice([0, 100]))
            write = i % 2
            addr, nbytes = 64 * rng.randrange(1, 100) - rng.randint(1, 8), row_bytes
            data = rng.randrange(1 << (8 * row_bytes))
            before = list(ref[addr:addr + nbytes])
            r0, w0 = monitor.r_beats, monitor.w_beats
            ctx.set(dma.start, 1)
            ctx.set(dma.write, write)
            ctx.set(dma.addr, addr)
            ctx.set(dma.nbytes, nbytes)
            ctx.set(dma.wdata, data)
            await ctx.tick()
            ctx.set(dma.start, 0)
            # reset after the first data beat (in the middle of the first burst) or at random
            # (a random cycle may come after a short transfer without stalls has ended: the
            # reset then finds the mover idle, which must be as good)
            wait_beat = i % 4 < 2
            reset_cycle = rng.randrange(1, 20)
            for cycle in range(200):
                if wait_beat and (monitor.r_beats > r0 or monitor.w_beats > w0):
                    break
                if not wait_beat and cycle == reset_cycle:
                    break
                if ctx.get(dma.done):
                    assert not wait_beat, "done before the first data beat"
                    break
                await ctx.tick()
            mid = ctx.get(dma.busy)
            if mid and wait_beat:
                seen["mid_w" if write else "mid_r"] += 1
            ctx.set(bench.dma_rst, 1)
            ctx.set(bench.mem_rst, 1)
            await ctx.tick()
            ctx.set(bench.dma_rst, 0)
            ctx.set(bench.mem_rst, 0)
            for name in ("busy", "done", "error", "error_addr", "bytes_read", "bytes_written"):
                assert ctx.get(getattr(dma, name)) == 0, name
            for name in ("arvalid", "awvalid", "wvalid", "rready", "bready"):
                assert ctx.get(getattr(axi, name)) == 0, name
            total = {0: 0, 1: 0}
            if write:
                # an interrupted write leaves each byte of the row old or new, nothing else
                got = await mem_read_bytes(ctx, mem, addr - 4, addr + nbytes + 4)
                assert got[:4] == list(ref[addr - 4:addr]) and got[-4:] == list(
                    ref[addr + nbytes:addr + nbytes + 4])
                new = row_bytes_of(data, nbytes)
                for k in range(nbytes):
                    assert got[4 + k] in (before[k], new[k])
                ref[addr:addr + nbytes] = bytes(got[4:4 + nbytes])
            for _ in range(rng.randrange(3)):
                await ctx.tick()
            # good transfers after the reset
            for write2 in (0, 1, 0):
                addr2, n2 = random_row(rng, row_bytes)
                data2 = rng.randrange(1 << (8 * row_bytes))
                monitor.clear_log()
                result = await transfer(ctx, dma, write=write2, addr=addr2, nbytes=n2,
                                        wdata=data2)
                assert result["error"] == DmaError.NONE
                if write2:
                    ref[addr2:addr2 + n2] = bytes(row_bytes_of(data2, n2))
                else:
                    check_read(result, ref, addr2, n2, row_bytes)
                total[write2] += n2
            assert (ctx.get(dma.bytes_read), ctx.get(dma.bytes_written)) == (total[0], total[1])
            assert not ctx.get(mem.violation)
        assert bytes(await mem_read_bytes(ctx, mem, 0, MEM_SIZE)) == bytes(ref)

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(monitor.run, background=True)
    sim.add_testbench(testbench)
    sim.run()
    assert seen["mid_r"] > 3 and seen["mid_w"] > 3, seen


# --- cycle counts ------------------------------------------------------------------------------

@pytest.mark.parametrize("row_bytes", [8, 16, 32])
def test_timing(row_bytes):
    """With a memory that never stalls (first R beat 3 cycles after AR): a read pulses ``done``
    ``row_bytes + 5 + 3 * (bursts - 1)`` cycles after ``start``, a write ``4 * beats + 3 - addr %
    4`` cycles after it."""
    bench = Bench(row_bytes)
    dma = bench.dma

    async def testbench(ctx):
        for addr in (0, 1, 2, 3, 60, 62, 4095, 4096 - row_bytes, 1000):
            for nbytes in sorted({1, 2, 5, row_bytes - 1, row_bytes}):
                bursts = len(ref_bursts(addr, nbytes))
                beats = (addr % 4 + nbytes - 1) // 4 + 1
                result = await transfer(ctx, dma, write=0, addr=addr, nbytes=nbytes)
                assert result["cycles"] == row_bytes + 5 + 3 * (bursts - 1), (addr, nbytes)
                result = await transfer(ctx, dma, write=1, addr=addr, nbytes=nbytes)
                assert result["cycles"] == 4 * beats + 3 - addr % 4, (addr, nbytes)
                # back to back: a new start in the done cycle
                assert ctx.get(dma.done) and not ctx.get(dma.busy)

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


# --- Python subordinate: 2**32 wrap, SLVERR and DECERR -----------------------------------------

class SparseMemory:
    """All 2**32 bytes: a byte never written reads as a hash of its address."""
    def __init__(self):
        self.written = {}

    def byte(self, a):
        return self.written.get(a, (a * 0x9E3779B1 >> 11) & 0xFF)

    def word(self, a):
        return sum(self.byte((a + i) & MASK32) << (8 * i) for i in range(4))


class Subordinate:
    """A Python AXI4 subordinate over a :class:`SparseMemory` with random stalls and random
    error responses (``r_err``: per R beat, ``b_err``: per B); logs each burst with its
    responses: ``reads`` ``[(addr, len, [rresp...])]``, ``writes`` ``[(addr, len, bresp)]``."""
    def __init__(self, axi, mem, rng, *, stall=0.3, r_err=0.0, b_err=0.0):
        self.axi, self.mem, self.rng = axi, mem, rng
        self.stall, self.r_err, self.b_err = stall, r_err, b_err
        self.reads, self.writes = [], []

    def resp(self, p):
        if self.rng.random() < p:
            return self.rng.choice([Resp.SLVERR, Resp.DECERR])
        return Resp.OKAY

    async def run(self, ctx):
        a, rng = self.axi, self.rng
        names = ("arvalid", "arready", "araddr", "arlen", "rvalid", "rready", "awvalid",
                 "awready", "awaddr", "awlen", "wvalid", "wready", "wdata", "wstrb", "wlast",
                 "bvalid", "bready")
        r_beats, aw_queue, b_queue = deque(), deque(), deque()

        def go():
            return rng.random() >= self.stall
        async for _, _, *values in ctx.tick().sample(*(getattr(a, n) for n in names)):
            s = dict(zip(names, values))
            if s["arvalid"] and s["arready"]:
                resps = [self.resp(self.r_err) for _ in range(s["arlen"] + 1)]
                self.reads.append((s["araddr"], s["arlen"], resps))
                for i, resp in enumerate(resps):
                    data = self.mem.word((s["araddr"] + 4 * i) & MASK32) if resp == 0 else 0
                    r_beats.append((data, resp, i == s["arlen"]))
            if s["rvalid"] and s["rready"]:
                r_beats.popleft()
            if s["awvalid"] and s["awready"]:
                aw_queue.append([s["awaddr"], s["awlen"], 0])
            if s["wvalid"] and s["wready"]:
                burst = aw_queue[0]
                base = (burst[0] + 4 * burst[2]) & MASK32
                for lane in range(4):
                    if s["wstrb"] >> lane & 1:
                        self.mem.written[(base + lane) & MASK32] = (s["wdata"] >> 8 * lane) & 0xFF
                assert s["wlast"] == (burst[2] == burst[1])
                burst[2] += 1
                if s["wlast"]:
                    aw_queue.popleft()
                    resp = self.resp(self.b_err)
                    self.writes.append((burst[0], burst[1], resp))
                    b_queue.append(resp)
            if s["bvalid"] and s["bready"]:
                b_queue.popleft()
            # next cycle: a VALID not taken stays; new ones and READYs at random
            ctx.set(a.arready, go())
            ctx.set(a.awready, go())
            ctx.set(a.wready, bool(aw_queue) and go())
            rvalid = bool(r_beats) and ((s["rvalid"] and not s["rready"]) or go())
            ctx.set(a.rvalid, rvalid)
            if r_beats:
                data, resp, last = r_beats[0]
                ctx.set(a.rdata, data)
                ctx.set(a.rresp, resp)
                ctx.set(a.rlast, last)
            ctx.set(a.bvalid, bool(b_queue) and ((s["bvalid"] and not s["bready"]) or go()))
            if b_queue:
                ctx.set(a.bresp, b_queue[0])


@pytest.mark.parametrize("row_bytes", [8, 16])
def test_wrap_and_errors_python_subordinate(seed, row_bytes):
    rng = random.Random(seed * 3 + row_bytes)
    print(f"seed={seed} row_bytes={row_bytes}")
    dma = RowDma(row_bytes=row_bytes)
    mem = SparseMemory()
    sub = Subordinate(dma.m_axi, mem, rng, r_err=0.1, b_err=0.15)
    monitor = Monitor(dma.m_axi)
    seen = {"wrap": 0, "read_err": 0, "write_err": 0, "slverr": 0, "decerr": 0, "ok": 0}

    async def testbench(ctx):
        totals = [0, 0]
        for i in range(120):
            if i % 3 == 0:
                nbytes = rng.randint(2, row_bytes)
                addr = (-rng.randint(1, nbytes - 1)) & MASK32      # wraps at 2**32
            else:
                nbytes = rng.randint(1, row_bytes)
                addr = rng.choice([rng.randrange(1 << 32), (rng.randrange(1, 1 << 20) << 12)
                                   - rng.randint(1, nbytes + 3),
                                   -rng.randint(nbytes, nbytes + 3)]) & MASK32
            write = rng.randrange(2)
            data = rng.randrange(1 << (8 * row_bytes))
            row = [(addr + k) & MASK32 for k in range(nbytes)]
            sub.reads.clear()
            sub.writes.clear()
            result = await transfer(ctx, dma, write=write, addr=addr, nbytes=nbytes, wdata=data)
            bursts = ref_bursts(addr, nbytes)
            seen["wrap"] += row[-1] < row[0]
            log = sub.writes if write else sub.reads
            if write:
                failing = [k for k, (_, _, resp) in enumerate(log) if resp != Resp.OKAY]
            else:
                failing = [k for k, (_, _, resps) in enumerate(log) if any(resps)]
            bad = failing[0] if failing else None
            issued = bursts if bad is None else bursts[:bad + 1]
            assert [(b[0], b[1]) for b in log] == issued, (hex(addr), nbytes)
            if bad is None:
                assert (result["error"], result["error_addr"]) == (DmaError.NONE, 0)
                seen["ok"] += 1
            else:
                resp = log[bad][2] if write else next(r for r in log[bad][2] if r)
                code = (WRITE_ERRORS if write else READ_ERRORS)[resp]
                assert (result["error"], result["error_addr"]) == (code, bursts[bad][0])
                seen["write_err" if write else "read_err"] += 1
                seen["slverr" if resp == Resp.SLVERR else "decerr"] += 1
            if write:
                # the bytes of the row in the bursts sent, nothing else (the model writes
                # the data of a burst whatever its response)
                words = {(b + 4 * j) & MASK32 for b, n in issued for j in range(n + 1)}
                new = row_bytes_of(data, nbytes)
                want = {a: new[k] for k, a in enumerate(row) if a & ~3 in words}
                assert mem.written == want
                if bad is None or bad == len(bursts) - 1:
                    totals[1] += nbytes
            else:
                if bad is None:
                    want = [mem.byte(a) for a in row] + [0] * (row_bytes - nbytes)
                    assert row_bytes_of(result["rdata"], row_bytes) == want
                    totals[0] += nbytes
            assert [ctx.get(dma.bytes_read), ctx.get(dma.bytes_written)] == totals
            mem.written.clear()         # each transfer starts from the hashed contents

    sim = Simulator(dma)
    sim.add_clock(1e-6)
    sim.add_testbench(sub.run, background=True)
    sim.add_testbench(monitor.run, background=True)
    sim.add_testbench(testbench)
    sim.run()
    assert all(seen.values()) and seen["wrap"] == 40, seen


# --- construction and synthesis ----------------------------------------------------------------

@pytest.mark.parametrize("row_bytes", [0, 2, 6, 260, 7.0])
def test_bad_row_bytes(row_bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises((ValueError, TypeError), match="row_bytes") as info:
            RowDma(row_bytes=row_bytes)
        del info
        gc.collect()


def test_synth_ice40():
    from tessera.fpga.synth import synth_stats
    stats = synth_stats(RowDma(row_bytes=16), family="ice40")
    print(f"RowDma(row_bytes=16) on iCE40: {stats['lut']} LUT4, {stats['ff']} flip-flops, "
          f"{stats['carry']} SB_CARRY, {stats['bram']} RAM")
    assert stats["bram"] == 0 and stats["dsp"] == 0
    assert stats["lut"] <= 400 and stats["ff"] <= 300, stats
