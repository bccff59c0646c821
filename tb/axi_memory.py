"""An AXI4 memory in gateware, so that long simulations keep Python out of the per-cycle path.

:class:`AxiMemory` is an AXI4 subordinate backed by one ``amaranth.lib.memory.Memory`` of ``size``
bytes (``size // (data_width // 8)`` words of ``data_width`` bits, byte ``a`` in byte lane
``a % (data_width // 8)`` of word ``a // (data_width // 8)``). It is a testbench component, not
part of the accelerator.

Ports::

    s_axi            In  AXI4Signature  the subordinate port (Verilog ``s_axi__awaddr`` ...)
    backdoor         In  BackdoorSignature  word access for the testbench, see "Backdoor"
    bulk             In  BulkSignature      block access for the testbench, see "Backdoor"
    stall_threshold  In  8    random stalls: see "Stalls"; 0 = never stall
    hang             In  1    1 = accept nothing and start no response (watchdog tests)
    seed, seed_load  In  32,1 load the stall LFSR from ``seed`` (any value)
    limit            In  addr_width+1  bytes that answer: beats at or above ``min(limit, size)``
                              answer DECERR; 0 means ``size``
    violation        Out 1    sticky until reset: a request this memory does not support or that
                              broke a rule it checks (see "Checks")

Reads
    AR requests go into a queue (``queue_depth`` deep). The head burst issues one beat per cycle to
    a synchronous memory read port; data and response pass ``latency - MIN_READ_LATENCY`` extra
    pipeline registers into an R queue, and a credit counter keeps the R queue from overflowing
    when the manager holds RREADY low. Consecutive bursts follow each other without a gap, so with
    RREADY high the memory sustains one R beat per cycle (``data_width / 8`` bytes per cycle), and
    the first beat of a burst on an idle memory appears ``latency`` cycles after its AR handshake.
    Each beat answers on its own: OKAY with the word, DECERR (data 0) if its address is at or above
    the limit, SLVERR (data 0) for every beat of an unsupported burst.
Writes
    AW requests go into a queue; WREADY is high while an AW burst is known (the memory waits for
    AW before taking W, which AXI allows) and the B queue has room. Each W beat writes the bytes
    enabled by WSTRB; after the burst's last beat one B response goes into the B queue. A burst
    whose last beat lies at or above the limit answers DECERR and writes nothing (no beat of it);
    an unsupported burst answers SLVERR and writes nothing.
Addresses
    INCR bursts of full-width beats (AxSIZE = log2(data_width / 8)) are supported; FIXED, WRAP and
    narrower sizes are unsupported (SLVERR). A start address that is not word-aligned addresses the
    word that contains it (its data comes from WSTRB / the manager picks its bytes), the next beat
    the following word. Beat ``n`` of a burst is at ``aligned(AxADDR) + n * data_width / 8``,
    computed without wrapping at ``2**addr_width``.
Stalls
    A 64-bit xorshift LFSR steps every cycle; one of its bytes per channel is compared with
    ``stall_threshold``. When the byte is below the threshold, that cycle ARREADY, AWREADY, WREADY
    (each with its own byte) are low, and RVALID / BVALID stay low unless already high (a VALID
    once raised stays high until its handshake). ``hang`` acts like a stall on every channel,
    every cycle.
Backdoor
    ``backdoor.addr`` is a word index; ``backdoor.rdata`` is the word at the ``addr`` of the
    previous cycle; ``backdoor.we`` writes ``backdoor.wdata`` (all bytes) to word ``addr`` at the
    clock edge. It uses its own memory ports, independent of the AXI side; a backdoor write and an
    AXI write to the same word in the same cycle leave either value.

    ``bulk`` moves ``bulk_words`` words per request through the same ports, one word per cycle,
    so that a testbench acts once per block instead of once per word. A request is taken at a
    clock edge where ``bulk.busy`` is low and ``bulk.write`` or ``bulk.read`` is high (write wins);
    ``busy`` is high from that edge until the block is done. Write: word ``addr + i`` (``i <
    bulk_words``) gets ``wdata[i * data_width +: data_width]`` at the ``(i + 1)``-th edge after
    the request; ``addr`` and ``wdata`` must hold until ``busy`` falls, which it does at the last
    of these edges; words at or beyond the end of memory are not written. Read: ``rdata[i *
    data_width +: data_width]`` receives word ``addr + i`` (0 beyond the end of memory); it is
    complete when ``busy`` falls, ``bulk_words + 1`` edges after the request, and holds until the
    next read. While ``busy`` is high the word port is ignored.
Checks (``violation``)
    An AR or AW that is not INCR or not full-width, or whose beats cross a 4 KiB boundary; a W beat
    whose WLAST differs from "this is the burst's last beat".
Reset
    The synchronous reset empties the queues, drops transactions in flight, stops a bulk request
    and clears ``violation``; memory contents are kept (they start as zeros).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from tessera.rtl.axi import AXI4Signature, Burst, Resp

__all__ = ["AxiMemory", "BackdoorSignature", "BulkSignature", "MIN_READ_LATENCY",
           "DEFAULT_BULK_WORDS"]

#: Cycles from an AR handshake (cycle 0) to its first R beat on an idle memory without extra
#: pipeline registers: the AR queue shows it in cycle 1, the read port is addressed in cycle 1, the
#: word enters the R queue in cycle 2 and leaves it in cycle 3.
MIN_READ_LATENCY = 3

#: Words per bulk request (see "Backdoor").
DEFAULT_BULK_WORDS = 64

#: Bytes of the boundary AXI bursts must not cross.
BOUNDARY_4K = 4096


class BackdoorSignature(wiring.Signature):
    """The testbench's word port, from the testbench's side: ``addr`` (word index), ``wdata``,
    ``we`` out; ``rdata`` (the word at last cycle's ``addr``) in."""
    def __init__(self, *, addr_width, data_width):
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "addr": Out(addr_width),
            "wdata": Out(data_width),
            "we": Out(1),
            "rdata": In(data_width),
        })

    def __eq__(self, other):
        return (isinstance(other, BackdoorSignature) and self.addr_width == other.addr_width and
                self.data_width == other.data_width)

    def __repr__(self):
        return f"BackdoorSignature(addr_width={self.addr_width}, data_width={self.data_width})"


class BulkSignature(wiring.Signature):
    """The testbench's block port, from the testbench's side: ``addr`` (first word index),
    ``wdata`` (``words`` words, word 0 in the low bits), ``write``, ``read`` out; ``rdata`` (the
    words read), ``busy`` in."""
    def __init__(self, *, addr_width, data_width, words):
        self.addr_width = addr_width
        self.data_width = data_width
        self.words = words
        super().__init__({
            "addr": Out(addr_width),
            "wdata": Out(data_width * words),
            "write": Out(1),
            "read": Out(1),
            "rdata": In(data_width * words),
            "busy": In(1),
        })

    def __eq__(self, other):
        return (isinstance(other, BulkSignature) and self.addr_width == other.addr_width and
                self.data_width == other.data_width and self.words == other.words)

    def __repr__(self):
        return (f"BulkSignature(addr_width={self.addr_width}, data_width={self.data_width}, "
                f"words={self.words})")


def _check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, not {value!r}")
    return value


class AxiMemory(wiring.Component):
    """AXI4 subordinate memory of ``size`` bytes (see the module docstring for its behaviour).

    Parameters
    ----------
    size : int
        Bytes of memory: a positive multiple of ``data_width // 8``, at most ``2**addr_width``.
    data_width : int
        AXI data width in bits: 32, 64 or 128.
    id_width : int
        AXI ID width, 1 .. 16.
    addr_width : int
        AXI address width, 12 .. 64 (default 32).
    latency : int
        Cycles from an AR handshake to the burst's first R beat on an idle memory, >= 3
        (:data:`MIN_READ_LATENCY`, the default). Beats stream at one per cycle whatever the latency.
    queue_depth : int
        Bursts the AR and the AW queue each hold (>= 4; default 8) and B responses the B queue
        holds.
    bulk_words : int
        Words per ``bulk`` request, 1 .. 1024 (default :data:`DEFAULT_BULK_WORDS`).
    """
    def __init__(self, *, size, data_width, id_width, addr_width=32, latency=MIN_READ_LATENCY,
                 queue_depth=8, bulk_words=DEFAULT_BULK_WORDS):
        self.axi_signature = AXI4Signature(addr_width=addr_width, data_width=data_width,
                                           id_width=id_width)
        self.word_bytes = data_width // 8
        _check_int("size", size, 1, 1 << addr_width)
        if size % self.word_bytes:
            raise ValueError(f"size must be a multiple of {self.word_bytes} bytes (the bus width), "
                             f"not {size!r}")
        self.size = size
        self.words = size // self.word_bytes
        self.latency = _check_int("latency", latency, MIN_READ_LATENCY)
        self.queue_depth = _check_int("queue_depth", queue_depth, 4)
        self.bulk_words = _check_int("bulk_words", bulk_words, 1, 1024)
        self.data_width = data_width
        self.id_width = id_width
        self.addr_width = addr_width
        super().__init__({
            "s_axi": In(self.axi_signature),
            "backdoor": In(BackdoorSignature(addr_width=self._index_width(),
                                             data_width=data_width)),
            "bulk": In(BulkSignature(addr_width=self._index_width(), data_width=data_width,
                                     words=self.bulk_words)),
            "stall_threshold": In(8),
            "hang": In(1),
            "seed": In(32),
            "seed_load": In(1),
            "limit": In(addr_width + 1),
            "violation": Out(1),
        })

    # --- helpers ----------------------------------------------------------------------------------
    def _request_layout(self):
        return data.StructLayout({
            "id": self.id_width,
            "addr": self.addr_width,
            "len": 8,
            "supported": 1,
        })

    def _request(self, m, name, axid, addr, length, size, burst):
        """The request record for the queue and whether it breaks a checked rule."""
        layout = self._request_layout()
        request = Signal(layout, name=name)
        supported = (burst == Burst.INCR) & (size == exact_log2(self.word_bytes))
        shift = exact_log2(self.word_bytes)
        first_word = addr[shift:12]                 # word of the start address within its 4 KiB
        crosses = ((first_word + length + 1) << shift) > BOUNDARY_4K
        m.d.comb += [
            request.id.eq(axid), request.addr.eq(addr), request.len.eq(length),
            request.supported.eq(supported),
        ]
        return request, ~supported | crosses

    def _beat_address(self, addr, beat):
        """Byte address (``addr_width + 1`` bits, no wrap) of beat ``beat`` of a burst at
        ``addr``."""
        shift = exact_log2(self.word_bytes)
        aligned = Cat(Const(0, shift), addr[shift:])
        return (aligned + (beat << shift))[:self.addr_width + 1]

    def _index_width(self):
        return max(1, ceil_log2(self.words))

    def _word_index(self, address):
        return address[exact_log2(self.word_bytes):][:self._index_width()]

    def elaborate(self, platform):
        m = Module()
        axi = self.s_axi

        # --- stall source -------------------------------------------------------------------------
        lfsr = Signal(64, init=0x9E3779B97F4A7C15)
        x = lfsr
        for op, amount in (("<<", 13), (">>", 7), ("<<", 17)):
            x = x ^ ((x << amount)[:64] if op == "<<" else x >> amount)
        with m.If(self.seed_load):
            m.d.sync += lfsr.eq(Cat(self.seed | 1, Const(0x9E3779B9, 32)))
        with m.Else():
            m.d.sync += lfsr.eq(x)
        stall_ar, stall_aw, stall_w, stall_r, stall_b = (
            (lfsr.bit_select(8 * i, 8) < self.stall_threshold) | self.hang for i in range(5))

        limit = Signal(self.addr_width + 1)
        m.d.comb += limit.eq(Mux((self.limit == 0) | (self.limit > self.size), self.size,
                                 self.limit))

        m.submodules.storage = storage = Memory(shape=self.data_width, depth=self.words, init=[])
        violation = Signal()
        m.d.comb += self.violation.eq(violation)

        # --- read address queue -------------------------------------------------------------------
        layout = self._request_layout()
        m.submodules.ar_queue = ar_queue = SyncFIFO(width=layout.size, depth=self.queue_depth)
        ar, ar_bad = self._request(m, "ar_request", axi.arid, axi.araddr, axi.arlen, axi.arsize,
                                   axi.arburst)
        m.d.comb += [
            axi.arready.eq(ar_queue.w_rdy & ~stall_ar),
            ar_queue.w_en.eq(axi.arvalid & axi.arready),
            ar_queue.w_data.eq(ar.as_value()),
        ]
        with m.If(ar_queue.w_en & ar_bad):
            m.d.sync += violation.eq(1)

        # --- read beats: issue, memory, pipeline, R queue -----------------------------------------
        extra = self.latency - MIN_READ_LATENCY
        r_depth = extra + 3              # >= pipeline stages + 2: full rate with RREADY high
        beat_layout = data.StructLayout({
            "id": self.id_width, "resp": 2, "last": 1,
        })
        r_layout = data.StructLayout({
            "id": self.id_width, "resp": 2, "last": 1, "data": self.data_width,
        })
        m.submodules.r_queue = r_queue = SyncFIFO(width=r_layout.size, depth=r_depth)
        head = data.View(layout, ar_queue.r_data)
        beat = Signal(8)
        outstanding = Signal(range(r_depth + 1))
        issue = Signal()
        address = self._beat_address(head.addr, beat)
        is_last = beat == head.len
        m.d.comb += issue.eq(ar_queue.r_rdy & (outstanding < r_depth))
        with m.If(issue):
            with m.If(is_last):
                m.d.comb += ar_queue.r_en.eq(1)
                m.d.sync += beat.eq(0)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)

        read = storage.read_port()
        m.d.comb += [read.addr.eq(self._word_index(address)), read.en.eq(issue)]
        issued = Signal(beat_layout)
        issued_valid = Signal()
        m.d.sync += [
            issued_valid.eq(issue),
            issued.id.eq(head.id),
            issued.last.eq(is_last),
            issued.resp.eq(Mux(~head.supported, Resp.SLVERR,
                               Mux(address < limit, Resp.OKAY, Resp.DECERR))),
        ]
        stage = Signal(r_layout)
        stage_valid = issued_valid
        m.d.comb += [
            stage.id.eq(issued.id), stage.resp.eq(issued.resp), stage.last.eq(issued.last),
            stage.data.eq(Mux(issued.resp == Resp.OKAY, read.data, 0)),
        ]
        for i in range(extra):
            next_stage = Signal(r_layout, name=f"read_stage_{i}")
            next_valid = Signal(name=f"read_stage_{i}_valid")
            m.d.sync += [next_stage.eq(stage), next_valid.eq(stage_valid)]
            stage, stage_valid = next_stage, next_valid
        m.d.comb += [r_queue.w_en.eq(stage_valid), r_queue.w_data.eq(stage.as_value())]

        r_out = data.View(r_layout, r_queue.r_data)
        r_held = Signal()                # RVALID was high without RREADY: it must stay high
        m.d.comb += [
            axi.rvalid.eq(r_queue.r_rdy & (r_held | ~stall_r)),
            axi.rid.eq(r_out.id), axi.rresp.eq(r_out.resp), axi.rlast.eq(r_out.last),
            axi.rdata.eq(r_out.data),
            r_queue.r_en.eq(axi.rvalid & axi.rready),
        ]
        m.d.sync += [
            r_held.eq(axi.rvalid & ~axi.rready),
            outstanding.eq(outstanding + issue - r_queue.r_en),
        ]

        # --- write address queue ------------------------------------------------------------------
        m.submodules.aw_queue = aw_queue = SyncFIFO(width=layout.size, depth=self.queue_depth)
        aw, aw_bad = self._request(m, "aw_request", axi.awid, axi.awaddr, axi.awlen, axi.awsize,
                                   axi.awburst)
        m.d.comb += [
            axi.awready.eq(aw_queue.w_rdy & ~stall_aw),
            aw_queue.w_en.eq(axi.awvalid & axi.awready),
            aw_queue.w_data.eq(aw.as_value()),
        ]
        with m.If(aw_queue.w_en & aw_bad):
            m.d.sync += violation.eq(1)

        # --- write beats and responses ------------------------------------------------------------
        b_layout = data.StructLayout({"id": self.id_width, "resp": 2})
        m.submodules.b_queue = b_queue = SyncFIFO(width=b_layout.size, depth=self.queue_depth)
        w_head = data.View(layout, aw_queue.r_data)
        w_beat = Signal(8)
        w_address = self._beat_address(w_head.addr, w_beat)
        w_last_address = self._beat_address(w_head.addr, w_head.len)
        w_resp = Signal(2)
        m.d.comb += w_resp.eq(Mux(~w_head.supported, Resp.SLVERR,
                                  Mux(w_last_address < limit, Resp.OKAY, Resp.DECERR)))
        w_is_last = w_beat == w_head.len
        w_take = Signal()
        m.d.comb += [
            axi.wready.eq(aw_queue.r_rdy & b_queue.w_rdy & ~stall_w),
            w_take.eq(axi.wvalid & axi.wready),
        ]
        write = storage.write_port(granularity=8)
        m.d.comb += [
            write.addr.eq(self._word_index(w_address)),
            write.data.eq(axi.wdata),
            write.en.eq(Mux(w_take & (w_resp == Resp.OKAY), axi.wstrb, 0)),
        ]
        b_in = Signal(b_layout)
        m.d.comb += [b_in.id.eq(w_head.id), b_in.resp.eq(w_resp),
                     b_queue.w_data.eq(b_in.as_value())]
        with m.If(w_take):
            with m.If(axi.wlast != w_is_last):
                m.d.sync += violation.eq(1)
            with m.If(w_is_last):
                m.d.comb += [aw_queue.r_en.eq(1), b_queue.w_en.eq(1)]
                m.d.sync += w_beat.eq(0)
            with m.Else():
                m.d.sync += w_beat.eq(w_beat + 1)

        b_out = data.View(b_layout, b_queue.r_data)
        b_held = Signal()
        m.d.comb += [
            axi.bvalid.eq(b_queue.r_rdy & (b_held | ~stall_b)),
            axi.bid.eq(b_out.id), axi.bresp.eq(b_out.resp),
            b_queue.r_en.eq(axi.bvalid & axi.bready),
        ]
        m.d.sync += b_held.eq(axi.bvalid & ~axi.bready)

        # --- backdoor: the word port, or the bulk engine while it is busy -------------------------
        backdoor_write = storage.write_port(granularity=8)
        backdoor_read = storage.read_port()
        bulk, words = self.bulk, self.bulk_words
        writing = Signal()              # a bulk write issues word `count` this cycle
        reading = Signal()              # a bulk read issues word `count` this cycle
        count = Signal(range(words + 1))
        base = Signal(self._index_width())
        word = Signal(self._index_width() + 11)          # base + count, never wraps
        arriving = Signal()             # the word issued last cycle is on the read port
        arriving_slot = Signal(range(words))
        arriving_valid = Signal()       # ... and lies inside the memory
        m.d.comb += [
            bulk.busy.eq(writing | reading | arriving),
            word.eq(base + count),
        ]
        with m.If(~bulk.busy & (bulk.write | bulk.read)):
            m.d.sync += [writing.eq(bulk.write), reading.eq(~bulk.write), count.eq(0),
                         base.eq(bulk.addr)]
        with m.Elif(writing | reading):
            with m.If(count == words - 1):
                m.d.sync += [writing.eq(0), reading.eq(0)]
            m.d.sync += count.eq(count + 1)
        m.d.sync += [arriving.eq(reading), arriving_slot.eq(count),
                     arriving_valid.eq(word < self.words)]
        with m.If(arriving):
            m.d.sync += bulk.rdata.word_select(arriving_slot, self.data_width).eq(
                Mux(arriving_valid, backdoor_read.data, 0))

        with m.If(bulk.busy):
            m.d.comb += [
                backdoor_write.addr.eq(word),
                backdoor_write.data.eq(bulk.wdata.word_select(count, self.data_width)),
                backdoor_write.en.eq((writing & (word < self.words)).replicate(self.word_bytes)),
                backdoor_read.addr.eq(word),
            ]
        with m.Else():
            m.d.comb += [
                backdoor_write.addr.eq(self.backdoor.addr),
                backdoor_write.data.eq(self.backdoor.wdata),
                backdoor_write.en.eq(self.backdoor.we.replicate(self.word_bytes)),
                backdoor_read.addr.eq(self.backdoor.addr),
            ]
        m.d.comb += self.backdoor.rdata.eq(backdoor_read.data)
        return m
