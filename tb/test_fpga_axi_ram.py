"""The board's on-chip RAM (fpga/axi_ram.py) in Amaranth's simulator, against a byte model.

Concurrent traffic: AXI write bursts into one region (random WSTRB, random gaps in WVALID), AXI
read bursts from a second region (random RREADY), and direct-port reads and writes in a third —
all at once, so the arbitration between the three is exercised. Then every byte is read back
through AXI and compared with the model; bursts beyond the memory answer DECERR, bursts of an
unsupported size or type answer SLVERR and write nothing. The behaviour tests run on both
implementations (``compact`` False: pipelined, True: compact), with ``Memory`` storage (the
simulator does not model SB_SPRAM256KA; tb/test_fpga_uart.py runs it with Yosys' model).
"""

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from tessera.fpga.axi_ram import COMPACT_DIRECT_READ_LATENCY, DIRECT_READ_LATENCY, AxiRam
from tessera.rtl.axi import Burst, Resp

SIZE = 1024
WIDTH = 32
WORD = WIDTH // 8
REGIONS = {"axi_write": (0, 256), "axi_read": (256, 512), "direct": (512, 1024)}
#: The implementations: pipelined and compact.
MODES = pytest.mark.parametrize("compact", [False, True], ids=["pipelined", "compact"])


def _run(dut, testbenches, deadline=20000):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in testbenches:
        sim.add_testbench(bench)
    sim.run_until(deadline * 1e-6)


async def _read_burst(ctx, axi, rng, word, beats, *, size=2, burst=Burst.INCR, ident=1,
                      ready_prob=1.0):
    """One read burst; returns [(data, resp, last, id)] per beat."""
    ctx.set(axi.arid, ident)
    ctx.set(axi.araddr, word * WORD)
    ctx.set(axi.arlen, beats - 1)
    ctx.set(axi.arsize, size)
    ctx.set(axi.arburst, burst)
    ctx.set(axi.arvalid, 1)
    await ctx.tick().until(axi.arready)
    ctx.set(axi.arvalid, 0)
    got = []
    while len(got) < beats:
        ready = int(rng.random() < ready_prob)
        ctx.set(axi.rready, ready)
        _, _, valid, data, resp, last, rid = await ctx.tick().sample(
            axi.rvalid, axi.rdata, axi.rresp, axi.rlast, axi.rid)
        if valid and ready:
            got.append((data, resp, last, rid))
    ctx.set(axi.rready, 0)
    return got


async def _write_burst(ctx, axi, rng, word, words, strobes, *, size=2, burst=Burst.INCR,
                       ident=2, valid_prob=1.0):
    """One write burst of ``words`` with ``strobes``; returns (bresp, bid)."""
    ctx.set(axi.awid, ident)
    ctx.set(axi.awaddr, word * WORD)
    ctx.set(axi.awlen, len(words) - 1)
    ctx.set(axi.awsize, size)
    ctx.set(axi.awburst, burst)
    ctx.set(axi.awvalid, 1)
    await ctx.tick().until(axi.awready)
    ctx.set(axi.awvalid, 0)
    for i, (data, strobe) in enumerate(zip(words, strobes)):
        while rng.random() >= valid_prob:
            await ctx.tick()
        ctx.set(axi.wdata, data)
        ctx.set(axi.wstrb, strobe)
        ctx.set(axi.wlast, int(i == len(words) - 1))
        ctx.set(axi.wvalid, 1)
        await ctx.tick().until(axi.wready)
        ctx.set(axi.wvalid, 0)
    ctx.set(axi.bready, 1)
    resp, bid = await ctx.tick().sample(axi.bresp, axi.bid).until(axi.bvalid)
    ctx.set(axi.bready, 0)
    return resp, bid


async def _hold_monitor(ctx, axi):
    """AXI4's rule for the subordinate's channels: a beat offered (R) or a response (B) stays,
    unchanged, until it is taken. Runs until the simulation ends."""
    held = {}
    async for _, _, *values in ctx.tick().sample(
            axi.rvalid, axi.rready, axi.rdata, axi.rresp, axi.rlast, axi.rid,
            axi.bvalid, axi.bready, axi.bresp, axi.bid):
        r, b = tuple(values[:6]), tuple(values[6:])
        for channel, (valid, ready, *payload) in (("R", r), ("B", b)):
            if channel in held:
                assert valid and payload == held[channel], \
                    f"{channel} changed before it was taken: {held[channel]} -> {payload}"
                del held[channel]
            if valid and not ready:
                held[channel] = payload


def _apply(model, word, data, strobe):
    for lane in range(WORD):
        if strobe >> lane & 1:
            model[word * WORD + lane] = data >> (8 * lane) & 0xFF


def _word(model, word):
    return int.from_bytes(model[word * WORD:(word + 1) * WORD], "little")


@MODES
def test_concurrent_traffic_matches_model(seed, compact):
    """Random concurrent AXI writes, AXI reads and direct accesses in disjoint regions: every
    read returns the model's data with OKAY and the right RLAST/RID, every write answers OKAY,
    a direct read's ``rvalid`` is high exactly the read latency after it, R and B hold a beat
    until it is taken, and the final contents equal the model byte for byte."""
    rng = random.Random(seed)
    dut = AxiRam(size=SIZE, data_width=WIDTH, id_width=2, compact=compact)
    latency = dut.direct_read_latency()
    model = bytearray(SIZE)
    axi, direct = dut.s_axi, dut.direct
    done = {"writer": False, "reader": False, "direct": False}

    async def preload(ctx):
        lo, hi = REGIONS["axi_read"]
        for word in range(lo // WORD, hi // WORD):
            value = rng.getrandbits(WIDTH)
            _apply(model, word, value, (1 << WORD) - 1)
            ctx.set(direct.addr, word)
            ctx.set(direct.wdata, value)
            ctx.set(direct.write, (1 << WORD) - 1)
            await ctx.tick()
        ctx.set(direct.write, 0)

    async def writer(ctx):
        await ctx.tick().repeat(70)
        lo, hi = (x // WORD for x in REGIONS["axi_write"])
        for _ in range(12):
            beats = rng.randint(1, 16)
            word = rng.randrange(lo, hi - beats + 1)
            words = [rng.getrandbits(WIDTH) for _ in range(beats)]
            strobes = [rng.randrange(1 << WORD) for _ in range(beats)]
            resp, bid = await _write_burst(ctx, axi, rng, word, words, strobes,
                                           valid_prob=0.7)
            assert (resp, bid) == (Resp.OKAY, 2), f"write burst at word {word}: {resp}, {bid}"
            for i, (data, strobe) in enumerate(zip(words, strobes)):
                _apply(model, word + i, data, strobe)
        done["writer"] = True

    async def reader(ctx):
        await ctx.tick().repeat(70)
        lo, hi = (x // WORD for x in REGIONS["axi_read"])
        for _ in range(12):
            beats = rng.randint(1, 24)
            word = rng.randrange(lo, hi - beats + 1)
            got = await _read_burst(ctx, axi, rng, word, beats, ready_prob=0.6)
            expect = [(_word(model, word + i), Resp.OKAY, int(i == beats - 1), 1)
                      for i in range(beats)]
            assert got == expect, f"read burst of {beats} at word {word}: {got} != {expect}"
        done["reader"] = True

    async def direct_user(ctx):
        await ctx.tick().repeat(70)
        lo, hi = (x // WORD for x in REGIONS["direct"])
        for _ in range(150):
            word = rng.randrange(lo, hi)
            ctx.set(direct.addr, word)
            if rng.random() < 0.5:
                value, strobe = rng.getrandbits(WIDTH), rng.randrange(1, 1 << WORD)
                ctx.set(direct.wdata, value)
                ctx.set(direct.write, strobe)
                await ctx.tick()
                ctx.set(direct.write, 0)
                _apply(model, word, value, strobe)
            else:
                ctx.set(direct.read, 1)
                await ctx.tick()
                ctx.set(direct.read, 0)
                for _ in range(latency - 1):
                    assert not ctx.get(direct.rvalid), f"direct read of {word}: early rvalid"
                    await ctx.tick()
                assert ctx.get(direct.rvalid), f"direct read of {word}: no rvalid"
                assert ctx.get(direct.rdata) == _word(model, word), f"direct read of {word}"
                await ctx.tick()
                assert not ctx.get(direct.rvalid), f"direct read of {word}: rvalid too long"
            for _ in range(rng.randrange(3)):
                await ctx.tick()
        done["direct"] = True

    async def final(ctx):
        while not all(done.values()):
            await ctx.tick()
        for word in range(0, SIZE // WORD, 64):
            got = await _read_burst(ctx, axi, rng, word, 64)
            for i, (data, resp, _, _) in enumerate(got):
                assert (data, resp) == (_word(model, word + i), Resp.OKAY), \
                    f"word {word + i}: {data:#x} {resp}, model {_word(model, word + i):#x}"
        done["final"] = True

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in (preload, writer, reader, direct_user, final):
        sim.add_testbench(bench)
    async def monitor(ctx):
        await _hold_monitor(ctx, axi)

    sim.add_testbench(monitor, background=True)
    sim.run_until(20000e-6)
    assert done.get("final"), "the traffic did not finish in time"


@MODES
def test_error_responses_write_nothing(seed, compact):
    """A burst running past the end of the memory answers DECERR on the beats beyond it (reads,
    data 0) or in B (writes, whose beats inside the memory are written, the others not); narrow
    and FIXED bursts answer SLVERR and write nothing; a burst whose AxADDR lies far above the
    memory (its low bits inside it) answers DECERR and writes nothing."""
    rng = random.Random(seed)
    dut = AxiRam(size=SIZE, data_width=WIDTH, id_width=2, compact=compact)
    axi = dut.s_axi
    result = {}

    async def bench(ctx):
        last = SIZE // WORD - 1
        got = await _read_burst(ctx, axi, rng, last - 1, 4)
        result["read_past_end"] = [(d, r) for d, r, _, _ in got]
        result["write_past_end"] = await _write_burst(ctx, axi, rng, last - 1, [1, 2, 3, 4],
                                                      [0xF] * 4)
        result["narrow_write"] = await _write_burst(ctx, axi, rng, 0, [0xFFFFFFFF] * 2,
                                                    [0xF] * 2, size=1)
        result["fixed_write"] = await _write_burst(ctx, axi, rng, 4, [0xFFFFFFFF] * 2,
                                                   [0xF] * 2, burst=Burst.FIXED)
        got = await _read_burst(ctx, axi, rng, 0, 2, size=0)
        result["narrow_read"] = [(d, r) for d, r, _, _ in got]
        got = await _read_burst(ctx, axi, rng, 0, 8)
        result["after"] = [d for d, _, _, _ in got]
        got = await _read_burst(ctx, axi, rng, last - 1, 2)
        result["end"] = [d for d, _, _, _ in got]
        alias = (1 << 24) + 8                    # word 8 plus a multiple of the memory
        result["far_write"] = await _write_burst(ctx, axi, rng, alias, [0x12345678] * 2,
                                                 [0xF] * 2)
        got = await _read_burst(ctx, axi, rng, alias, 2)
        result["far_read"] = [(d, r) for d, r, _, _ in got]
        got = await _read_burst(ctx, axi, rng, 8, 2)
        result["after_far"] = [d for d, _, _, _ in got]

    _run(dut, [bench])
    assert result["read_past_end"] == [(0, Resp.OKAY), (0, Resp.OKAY), (0, Resp.DECERR),
                                       (0, Resp.DECERR)], result["read_past_end"]
    assert result["write_past_end"] == (Resp.DECERR, 2)
    assert result["narrow_write"] == (Resp.SLVERR, 2)
    assert result["fixed_write"] == (Resp.SLVERR, 2)
    assert result["narrow_read"] == [(0, Resp.SLVERR)] * 2
    assert result["after"] == [0] * 8, "an unsupported burst wrote"
    assert result["end"] == [1, 2], "the in-range beats of a DECERR write burst are written"
    assert result["far_write"] == (Resp.DECERR, 2)
    assert result["far_read"] == [(0, Resp.DECERR)] * 2
    assert result["after_far"] == [0, 0], "a burst above the memory wrote into it"


@pytest.mark.parametrize("bad", [0, 100, 1 << 40, 24])
def test_bad_size_is_refused(bad):
    # The half-built component is collected here, its "created but never used" warning silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match=f"size must be .*not {bad!r}") as info:
            AxiRam(size=bad, data_width=WIDTH, id_width=1)
        del info
        gc.collect()



@MODES
@pytest.mark.parametrize("storage", ["memory", "spram"])
def test_read_burst_streams_one_beat_per_cycle(storage, compact):
    """With RREADY high, a 16-beat burst's beats come on consecutive cycles, the first in the
    eighth (pipelined: the R queue is deep enough for the storage's latency) or third (compact)
    cycle after the one whose clock edge took AR."""
    dut = AxiRam(size=SIZE, data_width=WIDTH, id_width=2, storage=storage, compact=compact)
    axi = dut.s_axi
    arrivals = []

    async def bench(ctx):
        ctx.set(axi.araddr, 0)
        ctx.set(axi.arlen, 15)
        ctx.set(axi.arsize, 2)
        ctx.set(axi.arburst, Burst.INCR)
        ctx.set(axi.arvalid, 1)
        ctx.set(axi.rready, 1)
        cycle = 0
        while not ctx.get(axi.arready):
            await ctx.tick()
            cycle += 1
        handshake = cycle
        await ctx.tick()
        cycle += 1
        ctx.set(axi.arvalid, 0)
        while len(arrivals) < 16 and cycle < 100:
            if ctx.get(axi.rvalid):
                arrivals.append(cycle - handshake)
            await ctx.tick()
            cycle += 1

    _run(dut, [bench], deadline=200)
    first = 3 if compact else 8
    assert arrivals == list(range(first, first + 16)), arrivals


@MODES
def test_write_data_before_address(seed, compact):
    """W beats offered before their AW (allowed by AXI4) wait for it and are written; RREADY
    held low for a while keeps RVALID and the beat, then the burst continues."""
    rng = random.Random(seed)
    dut = AxiRam(size=SIZE, data_width=WIDTH, id_width=2, compact=compact)
    axi = dut.s_axi
    values = [rng.getrandbits(WIDTH) for _ in range(3)]
    result = {}

    async def bench(ctx):
        ctx.set(axi.wdata, values[0])
        ctx.set(axi.wstrb, 0xF)
        ctx.set(axi.wvalid, 1)
        ctx.set(axi.awid, 3)
        ctx.set(axi.awaddr, 40 * WORD)
        ctx.set(axi.awlen, len(values) - 1)
        ctx.set(axi.awsize, 2)
        ctx.set(axi.awburst, Burst.INCR)
        sent = cycle = 0
        while sent < len(values):
            ctx.set(axi.awvalid, int(cycle == 5) | ctx.get(axi.awvalid))
            _, _, awvalid, awready, wready = await ctx.tick().sample(axi.awvalid, axi.awready,
                                                                     axi.wready)
            cycle += 1
            if awvalid and awready:
                ctx.set(axi.awvalid, 0)
            if wready:
                sent += 1
                if sent < len(values):
                    ctx.set(axi.wdata, values[sent])
                    ctx.set(axi.wlast, int(sent == len(values) - 1))
        ctx.set(axi.wvalid, 0)
        ctx.set(axi.bready, 1)
        result["b"] = await ctx.tick().sample(axi.bresp, axi.bid).until(axi.bvalid)
        ctx.set(axi.bready, 0)
        # Read back with RREADY low until the first beat has waited 10 cycles.
        ctx.set(axi.arid, 1)
        ctx.set(axi.araddr, 40 * WORD)
        ctx.set(axi.arlen, len(values) - 1)
        ctx.set(axi.arsize, 2)
        ctx.set(axi.arburst, Burst.INCR)
        ctx.set(axi.arvalid, 1)
        await ctx.tick().until(axi.arready)
        ctx.set(axi.arvalid, 0)
        await ctx.tick().until(axi.rvalid)
        first = ctx.get(axi.rdata)
        for _ in range(10):
            await ctx.tick()
            assert ctx.get(axi.rvalid) and ctx.get(axi.rdata) == first, "R changed while stalled"
        result["read"] = await _read_burst_beats(ctx, axi, len(values))

    _run(dut, [bench], deadline=400)
    assert tuple(result["b"]) == (Resp.OKAY, 3), result["b"]
    assert result["read"] == values, result["read"]


async def _read_burst_beats(ctx, axi, beats):
    """The data of ``beats`` R beats with RREADY high (the AR handshake already made)."""
    ctx.set(axi.rready, 1)
    got = []
    while len(got) < beats:
        _, _, valid, data = await ctx.tick().sample(axi.rvalid, axi.rdata)
        if valid:
            got.append(data)
    ctx.set(axi.rready, 0)
    return got


def test_implementation_choice():
    """Compact by default exactly when the storage is SPRAM (given, or ``auto`` on iCE40); the
    direct-port read latency follows the implementation."""
    class Platform:
        def __init__(self, family):
            self.family = family

    def ram(**kwargs):
        return AxiRam(size=SIZE, data_width=WIDTH, id_width=1, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        assert ram(storage="spram").is_compact(None)
        assert not ram(storage="memory").is_compact(Platform("ice40"))
        assert ram().is_compact(Platform("ice40"))
        assert not ram().is_compact(Platform("ecp5"))
        assert not ram().is_compact(None)
        assert not ram(storage="spram", compact=False).is_compact(Platform("ice40"))
        assert ram(compact=True).is_compact(None)
        assert ram(storage="spram").direct_read_latency() == COMPACT_DIRECT_READ_LATENCY
        assert ram().direct_read_latency(Platform("ecp5")) == DIRECT_READ_LATENCY
        with pytest.raises(ValueError, match="compact must be"):
            ram(compact="yes")
        gc.collect()
