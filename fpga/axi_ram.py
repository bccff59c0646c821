"""A synthesizable on-chip RAM with an AXI4 subordinate port and a direct word port.

On a board it stands in for DRAM: Tessera's DMA reaches it through ``s_axi``, the UART bridge
through ``direct``. The storage has ``size // (data_width // 8)`` words and a single address
for reads and writes, so each cycle does one read *or* one write. ``storage`` says what it is
built from: ``"memory"``, an ``amaranth.lib.memory.Memory`` (Yosys maps it onto block RAM, e.g.
ECP5 DP16KD); ``"spram"``, iCE40 SB_SPRAM256KA single-port RAMs (16K x 16 bits each, at most
:data:`ICE40_SPRAMS`), which Yosys does not infer from the Memory (simulation needs a model of
the primitive); ``"auto"`` (default), ``"spram"`` when elaborated for an iCE40 platform, else
``"memory"``. Byte ``a`` is byte lane ``a % (data_width // 8)`` of word ``a // (data_width //
8)``.

Two implementations serve the same ports: the *pipelined* one, built for ECP5 at 125 MHz
(registers before and after the storage, a register slice on W, a read-beat queue), and the
*compact* one (``compact=True``; by default whenever the storage is SPRAM, i.e. on iCE40, whose
board runs at a few tens of MHz), which has none of those timing registers: the storage's
inputs come straight from the port multiplexers and its output is used directly. Both follow
AXI4 and the direct-port rules below; they differ only in latencies (and so in how many read
beats are in flight).

Ports::

    s_axi   In  AXI4Signature          the subordinate port
    direct  In  MemoryPortSignature    word port of the bridge (see "Direct port")

Who uses the memory in a cycle
    The direct port, when it reads or writes; else, if both an AXI write beat (WVALID) and a
    read beat are waiting, the one that did not go last time (they alternate); else whichever
    waits. So the AXI side moves one beat per cycle while the direct port is quiet.
AXI bursts
    One read burst and one write burst at a time: ARREADY (AWREADY) is high while no read
    (write) burst is in progress and, for writes, no B response is waiting. INCR bursts of
    full-width beats (AxSIZE = log2(data_width / 8)) are executed; any other burst answers SLVERR
    on every beat (reads, data 0) or in its B response (writes) and writes nothing. A beat whose
    word lies beyond the memory reads 0 with DECERR or is not written (its burst answers DECERR).
    Beat ``n`` of a burst is at word ``AxADDR // (data_width / 8) + n``. RVALID, RDATA, RRESP,
    RLAST and RID come from flip-flops, so RREADY may drop at any time; with RREADY high a burst
    streams one beat per cycle. W may come before AW (the beats wait for their burst).

    Pipelined: read beats go through an :data:`R_QUEUE_DEPTH`-entry queue with registered
    outputs; the first beat comes in the eighth cycle after the AR handshake's
    (``test_fpga_axi_ram``). Write beats enter through a two-entry register slice (WREADY is a
    flip-flop, high while the slice has room): a beat is written a cycle after its handshake at
    the earliest, one per cycle.

    Compact: the R channel is one output register, loaded from the storage in the cycle after a
    read. A read is issued whenever the read burst has a beat left and the storage is free,
    without knowing whether the output register will have room: if it has none (RVALID high,
    RREADY low) the data is dropped and the same word is read again, so no second buffer is
    needed. The first beat comes in the third cycle after the AR handshake's. WREADY is high
    while a write burst is in progress and the storage is free for a W beat (it depends on the
    direct port's request and the arbitration, not on WVALID); the beat is written in its
    handshake cycle.
Direct port
    ``addr`` is a word index. ``read`` high: ``rvalid`` is high :meth:`AxiRam.direct_read_latency`
    cycles later, for one cycle, and ``rdata`` is then (only then) the word at ``addr``.
    ``write`` (one bit per byte lane) writes the enabled bytes of ``wdata`` to word ``addr``. A
    request is always served (the AXI side then waits); reading and writing in the same cycle is
    not allowed (the write wins, no ``rvalid``). Addresses beyond the memory are ignored (reads
    return an unspecified word).

    Pipelined: the request is registered and served in the next cycle (the AXI arbitration,
    WREADY included, starts at flip-flops, not at the bridge's state machine); the storage's
    inputs and output are registered: :data:`DIRECT_READ_LATENCY` (6) cycles. Compact: the
    request is served in its own cycle and ``rdata`` is the storage's output:
    :data:`COMPACT_DIRECT_READ_LATENCY` (1) cycle.
"""

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from tessera.rtl.axi import AXI4Signature, Burst, Resp
from tessera.rtl.register_slice import RegisterSlice
from tessera.rtl.util import NO_RW_CHECK, delay, is_ice40, registered_read, replicate

__all__ = ["MemoryPortSignature", "AxiRam", "DIRECT_READ_LATENCY", "COMPACT_DIRECT_READ_LATENCY",
           "R_QUEUE_DEPTH", "ICE40_SPRAMS", "SPRAM_WORDS", "STORAGES"]

#: Cycles from a read of the storage (address and enable decided) to its data in ``rdata``
#: (pipelined implementation).
_STORAGE_LATENCY = 5

#: Words of one storage bank (``storage="memory"``): one ECP5 DP16KD as 1024 x 18 bits.
BANK_WORDS = 1024

#: Cycles from a direct-port read request to its ``rdata`` in the pipelined implementation (one
#: more than the storage's: the request register).
DIRECT_READ_LATENCY = _STORAGE_LATENCY + 1

#: Cycles from a direct-port read request to its ``rdata`` in the compact implementation (the
#: storage's own read register).
COMPACT_DIRECT_READ_LATENCY = 1

#: Entries of the read-beat queue of the pipelined implementation (also the read beats issued
#: but not yet taken by the manager).
R_QUEUE_DEPTH = 8

#: Values of ``storage``.
STORAGES = ("auto", "memory", "spram")

#: SB_SPRAM256KA blocks of the largest iCE40 (UP5K), and 16-bit words of each.
ICE40_SPRAMS = 4
SPRAM_WORDS = 1 << 14


class MemoryPortSignature(wiring.Signature):
    """A word port from the user's side: ``addr`` (word index), ``read``, ``write`` (byte
    enables), ``wdata`` out; ``rdata`` and ``rvalid`` (high in the one cycle ``rdata`` is the word
    of a read request) in (see "Direct port" in the module docstring)."""

    def __init__(self, *, addr_width, data_width):
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "addr": Out(addr_width),
            "read": Out(1),
            "write": Out(data_width // 8),
            "wdata": Out(data_width),
            "rdata": In(data_width),
            "rvalid": In(1),
        })

    def __eq__(self, other):
        return (isinstance(other, MemoryPortSignature) and self.addr_width == other.addr_width
                and self.data_width == other.data_width)

    def __repr__(self):
        return (f"MemoryPortSignature(addr_width={self.addr_width}, "
                f"data_width={self.data_width})")


class AxiRam(wiring.Component):
    """AXI4 subordinate RAM of ``size`` bytes with a direct word port (see the module docstring).

    Parameters
    ----------
    size : int
        Bytes: a power of two, at least 4 words of ``data_width`` bits, at most ``2**addr_width``.
    data_width : int
        AXI data width: 32, 64 or 128.
    id_width : int
        AXI ID width, 1 .. 16.
    addr_width : int
        AXI address width (default 32).
    storage : str
        ``"auto"``, ``"memory"`` or ``"spram"`` (see the module docstring).
    compact : bool or None
        The compact implementation (True) or the pipelined one (False); None (default): compact
        when the storage is SPRAM (see :meth:`is_compact`).
    """

    def __init__(self, *, size, data_width, id_width, addr_width=32, storage="auto",
                 compact=None):
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}")
        if compact not in (None, False, True):
            raise ValueError(f"compact must be None, False or True, not {compact!r}")
        self.storage = storage
        self.compact = compact
        self.axi_signature = AXI4Signature(addr_width=addr_width, data_width=data_width,
                                           id_width=id_width)
        self.word_bytes = data_width // 8
        if (isinstance(size, bool) or not isinstance(size, int) or size < 4 * self.word_bytes
                or size & (size - 1) or size > (1 << addr_width)):
            raise ValueError(f"size must be a power of two from {4 * self.word_bytes} to "
                             f"{1 << addr_width} bytes, not {size!r}")
        self.size = size
        self.words = size // self.word_bytes
        self.data_width = data_width
        self.id_width = id_width
        self.addr_width = addr_width
        self.index_width = ceil_log2(self.words)
        super().__init__({
            "s_axi": In(self.axi_signature),
            "direct": In(MemoryPortSignature(addr_width=self.index_width,
                                             data_width=data_width)),
        })

    def _burst(self, m, name, axi_addr, length, size, burst, axi_id):
        """Registers of one burst in progress and the values loaded into them at its handshake."""
        shift = exact_log2(self.word_bytes)
        layout = data.StructLayout({
            "id": self.id_width,
            "word": self.addr_width - shift + 1,    # no wrap: beyond the memory -> DECERR
            "left": 8,                               # beats after the current one
            "supported": 1,
        })
        state = Signal(layout, name=name)
        start = Signal(layout, name=f"{name}_start")
        m.d.comb += [
            start.id.eq(axi_id),
            start.word.eq(axi_addr[shift:]),
            start.left.eq(length),
            start.supported.eq((burst == Burst.INCR) & (size == shift)),
        ]
        return state, start

    def _take_bursts(self, m, make_burst):
        """The read and the write burst in progress, each loaded at its AR/AW handshake with the
        registers ``make_burst`` (:meth:`_burst` or :meth:`_compact_burst`) makes: ARREADY while
        no read burst is active, AWREADY while no write burst is active and no B response
        waits. Returns ``(r, r_active, w, w_active, b_pending, b_resp)``; the caller clears the
        flags and drives B."""
        axi = self.s_axi
        r_active = Signal()
        r, r_start = make_burst(m, "read_burst", axi.araddr, axi.arlen, axi.arsize, axi.arburst,
                                axi.arid)
        w_active = Signal()
        b_pending = Signal()
        b_resp = Signal(2)
        w, w_start = make_burst(m, "write_burst", axi.awaddr, axi.awlen, axi.awsize,
                                axi.awburst, axi.awid)
        m.d.comb += [axi.arready.eq(~r_active), axi.awready.eq(~w_active & ~b_pending)]
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += [r.eq(r_start), r_active.eq(1)]
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += [w.eq(w_start), w_active.eq(1), b_resp.eq(Resp.OKAY)]
        return r, r_active, w, w_active, b_pending, b_resp

    def storage_kind(self, platform):
        """``"spram"`` or ``"memory"``: what the storage is built from for ``platform``."""
        storage = self.storage
        if storage == "auto":
            ice40 = is_ice40(platform)
            storage = "spram" if ice40 else "memory"
        return storage

    def is_compact(self, platform):
        """Whether the compact implementation is built for ``platform``: ``compact`` if given,
        else whether the storage is SPRAM."""
        if self.compact is not None:
            return self.compact
        return self.storage_kind(platform) == "spram"

    def direct_read_latency(self, platform=None):
        """Cycles from a direct-port read request to its ``rdata`` (and ``rvalid``) when built
        for ``platform``: :data:`COMPACT_DIRECT_READ_LATENCY` or :data:`DIRECT_READ_LATENCY`."""
        return COMPACT_DIRECT_READ_LATENCY if self.is_compact(platform) else DIRECT_READ_LATENCY

    def resolved_storage(self, platform):
        """The storage builder of the pipelined implementation for ``platform``:
        :meth:`_spram_storage` or :meth:`_memory_storage`."""
        if self.storage_kind(platform) == "spram":
            return self._spram_storage
        return self._memory_storage

    def _memory_storage(self, m, address, read_en, write_en, wdata, rdata):
        """The storage as ``Memory`` banks of :data:`BANK_WORDS` words per 16-bit slice of the
        word, each slice with its own register copy of ``address`` (the block RAMs of a large
        memory spread over the die: one address register for all of them was 13.7 ns of routing
        to the farthest in a routed 12 x 12 board design). Each bank (one block RAM) reads into
        a register of its own; the bank is chosen from those registers (so no multiplexer
        follows a block RAM's slow clock-to-out: up to 10.9 ns in a routed 12 x 12 board
        design). The banks read in every cycle, without enable (``read_en`` is not used): a read
        port with an enable becomes a hold multiplexer behind the block RAM, and the plain
        register after it can move into the block RAM as its output register
        (tessera.fpga.bram_outreg)."""
        banks = -(-self.words // BANK_WORDS)
        bank_bits = ceil_log2(banks)
        outputs = []
        addrs = replicate(m, address, self.data_width // 16, "ram_addr", reset_less=True)
        for i, addr in enumerate(addrs):
            # BANK: each bank's address and write enable registered again beside it (the slice's
            # address register fed the address inputs of all its banks across the die: routed
            # 12 x 12, up to 13.1 ns); the write data once per slice, to stay in step.
            # The bank of the read: registered with the read, and twice more beside the bank
            # registers.
            bank = addr[ceil_log2(BANK_WORDS):] if bank_bits else Const(0, 1)
            out_bank = delay(m, bank, 3, f"read_bank_{i}", reset_less=True)
            slice_wdata = Signal(16, name=f"wdata_{i}", reset_less=True)
            m.d.sync += slice_wdata.eq(wdata[16 * i:16 * i + 16])
            bank_outs = []
            for b in range(banks):
                depth = min(BANK_WORDS, self.words - b * BANK_WORDS)
                storage = Memory(shape=16, depth=depth, init=[])
                m.submodules[f"storage_{i}_{b}"] = storage
                read_port = storage.read_port(transparent_for=())
                write_port = storage.write_port(granularity=8)
                bank_addr, = replicate(m, addr[:len(read_port.addr)], 1, f"bank_{i}_{b}_addr",
                                       reset_less=True)
                bank_write = Signal(2, name=f"bank_{i}_{b}_write")
                m.d.sync += bank_write.eq(Mux(bank == b, write_en[2 * i:2 * i + 2], 0))
                m.d.comb += [read_port.addr.eq(bank_addr),
                             write_port.addr.eq(bank_addr),
                             write_port.en.eq(bank_write),
                             write_port.data.eq(slice_wdata)]
                out = Signal(16, name=f"bank_{i}_{b}_data", reset_less=True)
                m.d.sync += out.eq(read_port.data)
                bank_outs.append(out)
            outputs.append(Array(bank_outs)[out_bank] if banks > 1 else bank_outs[0])
        m.d.comb += rdata.eq(Cat(*outputs))

    def _spram_storage(self, m, address, read_en, write_en, wdata, rdata):
        """The storage as SB_SPRAM256KA instances: ``data_width / 16`` side by side per bank of
        :data:`SPRAM_WORDS` words, all addressed by one register copy of ``address``."""
        addr = Signal.like(address, name="ram_addr", reset_less=True)
        m.d.sync += addr.eq(address)
        read_en = delay(m, read_en, 1, "ram_read")
        bank = self._spram_bank(addr)
        read_bank = Signal.like(bank)
        with m.If(read_en):
            m.d.sync += read_bank.eq(bank)
        outputs = self._spram_instances(
            m, addr, write_en, wdata, lambda b: (bank == b) & (read_en | write_en.any()))
        # (Two more registers, for the same latency as :meth:`_memory_storage`.)
        selected = Array(outputs)[read_bank] if len(outputs) > 1 else outputs[0]
        m.d.comb += rdata.eq(delay(m, selected, 2, "spram_data", reset_less=True))

    def _spram_bank(self, address):
        """The SPRAM bank of word ``address`` (a constant 0 if there is one bank)."""
        return address[14:] if self.index_width > 14 else Const(0, 1)

    def _spram_instances(self, m, address, write_en, wdata, chip_select):
        """The SB_SPRAM256KA instances, ``data_width / 16`` side by side per bank of
        :data:`SPRAM_WORDS` words, all at ``address`` (its low 14 bits), with CHIPSELECT
        ``chip_select(bank)``; returns each bank's read data (the primitive's output register)."""
        lanes16 = self.data_width // 16
        banks = -(-self.words // SPRAM_WORDS)
        if lanes16 * banks > ICE40_SPRAMS:
            raise ValueError(f"size must fit in {ICE40_SPRAMS} SB_SPRAM256KA of {SPRAM_WORDS} x "
                             f"16 bits on iCE40, not {self.size!r} bytes of {self.data_width}-bit "
                             f"words")
        outputs = []
        for b in range(banks):
            words = []
            for lane in range(lanes16):
                dout = Signal(16, name=f"spram_{b}_{lane}_data")
                enables = write_en[2 * lane:2 * lane + 2]
                m.submodules[f"spram_{b}_{lane}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=address[:14],
                    i_DATAIN=wdata[16 * lane:16 * lane + 16],
                    i_MASKWREN=Cat(enables[0], enables[0], enables[1], enables[1]),
                    i_WREN=write_en.any(),
                    i_CHIPSELECT=chip_select(b),
                    i_CLOCK=ClockSignal(),
                    i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                    o_DATAOUT=dout)
                words.append(dout)
            outputs.append(Cat(*words))
        return outputs

    def elaborate(self, platform):
        if self.is_compact(platform):
            return self._elaborate_compact(platform)
        m = Module()
        axi = self.s_axi
        # The direct port's request, registered (served a cycle after it is made).
        direct = Signal(data.StructLayout({"addr": self.index_width, "read": 1,
                                           "write": self.word_bytes, "wdata": self.data_width}))
        m.d.sync += [direct.addr.eq(self.direct.addr), direct.read.eq(self.direct.read),
                     direct.write.eq(self.direct.write), direct.wdata.eq(self.direct.wdata)]
        addr = Signal(self.index_width)
        read_en = Signal()
        write_en = Signal(self.word_bytes)
        wdata = Signal(self.data_width)
        rdata = Signal(self.data_width, reset_less=True)
        # The storage's inputs and its output are registered (block RAM address, enables and
        # data straight from flip-flops, each block RAM's slow clock-to-out into a register of
        # its own, then the chosen bank into ``rdata``; the memory storage registers each bank's
        # address and write enable once more): read data arrives _STORAGE_LATENCY = 5 cycles
        # after the read is decided (DIRECT_READ_LATENCY = 6 after a direct request, which is
        # registered first).
        # Address and data registers are not reset (the enables are). The storage registers
        # the address (and read enable) itself, in as many copies as it needs.
        ram_write, ram_wdata = Signal.like(write_en), Signal.like(wdata, reset_less=True)
        ram_rdata = Signal.like(rdata)
        m.d.sync += [ram_write.eq(write_en), ram_wdata.eq(wdata), rdata.eq(ram_rdata)]
        self.resolved_storage(platform)(m, addr, read_en, ram_write, ram_wdata, ram_rdata)
        # AXI write beats enter through a register slice: WREADY is a flip-flop, and the
        # arbitration below (which decides whether a beat is taken) stays inside the RAM, not
        # on the manager's W register enable.
        w_layout = data.StructLayout({"data": self.data_width, "strb": self.word_bytes})
        m.submodules.w_slice = w_slice = RegisterSlice(w_layout)
        beat = w_slice.o.payload
        m.d.comb += [w_slice.i.valid.eq(axi.wvalid), w_slice.i.payload.data.eq(axi.wdata),
                     w_slice.i.payload.strb.eq(axi.wstrb), axi.wready.eq(w_slice.i.ready)]
        m.d.comb += [wdata.eq(Mux(direct.write.any(), direct.wdata, beat.data)),
                     self.direct.rdata.eq(rdata)]
        # ``rvalid``: the registered request's read travels beside the storage's latency.
        direct_read = direct.read & ~direct.write.any()
        m.d.comb += self.direct.rvalid.eq(delay(m, direct_read, _STORAGE_LATENCY,
                                                "direct_rvalid"))

        # --- burst registers -------------------------------------------------------------------
        r, r_active, w, w_active, b_pending, b_resp = self._take_bursts(m, self._burst)

        # --- who uses the memory this cycle ----------------------------------------------------
        beat_layout = data.StructLayout({"id": self.id_width, "resp": 2, "last": 1})
        queue_layout = data.StructLayout({"beat": beat_layout, "data": self.data_width})
        m.submodules.r_queue = r_queue = SyncFIFOBuffered(width=queue_layout.size,
                                                            depth=R_QUEUE_DEPTH)
        outstanding = Signal(range(R_QUEUE_DEPTH + 1))
        direct_use = direct.read | direct.write.any()
        read_wants = r_active & (outstanding < R_QUEUE_DEPTH)
        write_wants = w_active & w_slice.o.valid
        prefer_read = Signal()
        read_go = Signal()
        write_go = Signal()
        m.d.comb += [
            read_go.eq(read_wants & ~direct_use & ~(write_wants & ~prefer_read)),
            w_slice.o.ready.eq(w_active & ~direct_use & ~(read_wants & prefer_read)),
            write_go.eq(w_slice.o.valid & w_slice.o.ready),
        ]
        with m.If(read_wants & write_wants & ~direct_use):
            m.d.sync += prefer_read.eq(~prefer_read)

        in_range_r = r.word < self.words
        in_range_w = w.word < self.words
        with m.If(direct_use):
            m.d.comb += [addr.eq(direct.addr), read_en.eq(direct_read),
                         write_en.eq(direct.write)]
        with m.Elif(write_go):
            m.d.comb += [addr.eq(w.word), write_en.eq(Mux(w.supported & in_range_w, beat.strb, 0))]
        with m.Else():
            m.d.comb += [addr.eq(r.word), read_en.eq(read_go)]

        # --- write beats and the B response -----------------------------------------------------
        with m.If(write_go):
            m.d.sync += w.word.eq(w.word + 1)
            with m.If(~w.supported):
                m.d.sync += b_resp.eq(Resp.SLVERR)
            with m.Elif(~in_range_w):
                m.d.sync += b_resp.eq(Resp.DECERR)
            with m.If(w.left == 0):
                m.d.sync += [w_active.eq(0), b_pending.eq(1)]
            with m.Else():
                m.d.sync += w.left.eq(w.left - 1)
        m.d.comb += [axi.bvalid.eq(b_pending), axi.bresp.eq(b_resp), axi.bid.eq(w.id)]
        with m.If(axi.bvalid & axi.bready):
            m.d.sync += b_pending.eq(0)

        # --- read beats: memory, then the R queue ----------------------------------------------
        # The beat travels with its read through the storage's _STORAGE_LATENCY registers.
        issued = Signal(beat_layout, name="requested")
        issued_valid = Signal(name="requested_valid")
        m.d.sync += [
            issued_valid.eq(read_go),
            issued.id.eq(r.id),
            issued.last.eq(r.left == 0),
            issued.resp.eq(Mux(~r.supported, Resp.SLVERR,
                               Mux(in_range_r, Resp.OKAY, Resp.DECERR))),
        ]
        for stage in range(_STORAGE_LATENCY - 1):
            later, later_valid = Signal(beat_layout, name=f"issued_{stage}"), Signal()
            m.d.sync += [later.eq(issued), later_valid.eq(issued_valid)]
            issued, issued_valid = later, later_valid
        with m.If(read_go):
            m.d.sync += r.word.eq(r.word + 1)
            with m.If(r.left == 0):
                m.d.sync += r_active.eq(0)
            with m.Else():
                m.d.sync += r.left.eq(r.left - 1)
        entry = Signal(queue_layout)
        m.d.comb += [
            entry.beat.eq(issued),
            entry.data.eq(Mux(issued.resp == Resp.OKAY, rdata, 0)),
            r_queue.w_en.eq(issued_valid),
            r_queue.w_data.eq(entry.as_value()),
        ]
        head = data.View(queue_layout, r_queue.r_data)
        m.d.comb += [
            axi.rvalid.eq(r_queue.r_rdy),
            axi.rid.eq(head.beat.id), axi.rresp.eq(head.beat.resp),
            axi.rlast.eq(head.beat.last), axi.rdata.eq(head.data),
            r_queue.r_en.eq(axi.rready),
        ]
        m.d.sync += outstanding.eq(outstanding + read_go - (axi.rvalid & axi.rready))
        return m

    # --- compact implementation ------------------------------------------------------------------

    def _compact_burst(self, m, name, axi_addr, length, size, burst, axi_id):
        """Registers of one burst in progress (compact implementation) and the values loaded into
        them at its handshake. The word is kept as an index into the memory plus ``beyond``: the
        word lies beyond the memory (its AxADDR above the memory, or the index wrapped while
        counting) — the same as the pipelined one's wide word compared with the size, without a
        counter of the full address width. ``next`` is ``word + 1`` (its top bit: the index
        wraps), kept in a register so that the next beat's address is a multiplexer away from
        the handshake, not an adder (on the iCE40, RREADY -> adder -> SPRAM address was the
        critical path)."""
        shift = exact_log2(self.word_bytes)
        top = shift + self.index_width
        layout = data.StructLayout({
            "id": self.id_width,
            "word": self.index_width,
            "next": self.index_width + 1,
            "beyond": 1,
            "left": 8,                               # beats after the current one
            "supported": 1,
        })
        state = Signal(layout, name=name, reset_less=True)   # (loaded at the handshake)
        start = Signal(layout, name=f"{name}_start")
        m.d.comb += [
            start.id.eq(axi_id),
            start.word.eq(axi_addr[shift:top]),
            start.next.eq(axi_addr[shift:top] + 1),
            start.beyond.eq(axi_addr[top:].any() if top < len(axi_addr) else 0),
            start.left.eq(length),
            start.supported.eq((burst == Burst.INCR) & (size == shift)),
        ]
        return state, start

    def _compact_storage(self, m, platform, address, write_en, wdata):
        """The storage of the compact implementation at ``address`` (read in every cycle, written
        with ``write_en``); returns its read data, the word at the previous cycle's ``address``
        (valid in the cycle after a read; a write's read data is unspecified). SPRAM: the
        SB_SPRAM256KA instances, always selected (the bank by the address), their outputs used
        directly (the bank chosen by the previous cycle's address). Memory: one ``Memory`` of
        the whole size, read asynchronously into a register that Yosys merges into the block
        RAM; ``no_rw_check`` (a write's read data is not used), so that no logic emulates a
        read-during-write result on iCE40."""
        if self.storage_kind(platform) == "spram":
            bank = self._spram_bank(address)
            read_bank = Signal.like(bank)
            m.d.sync += read_bank.eq(bank)
            outputs = self._spram_instances(m, address, write_en, wdata, lambda b: bank == b)
            return Array(outputs)[read_bank] if len(outputs) > 1 else outputs[0]
        storage = Memory(shape=self.data_width, depth=self.words, init=[], attrs=NO_RW_CHECK)
        m.submodules.storage = storage
        read_port, read_data = registered_read(m, storage, "storage_data")
        write_port = storage.write_port(granularity=8)
        m.d.comb += [read_port.addr.eq(address), write_port.addr.eq(address),
                     write_port.en.eq(write_en), write_port.data.eq(wdata)]
        return read_data

    def _elaborate_compact(self, platform):
        """The compact implementation (see the module docstring): no register between the ports
        and the storage; one R output register, refilled by reading the word again when a read
        found it full."""
        m = Module()
        axi = self.s_axi
        direct = self.direct
        addr = Signal(self.index_width)
        write_en = Signal(self.word_bytes)
        wdata = Signal(self.data_width)
        rdata = self._compact_storage(m, platform, addr, write_en, wdata)
        direct_write = direct.write.any()
        direct_use = direct.read | direct_write
        m.d.comb += [wdata.eq(Mux(direct_write, direct.wdata, axi.wdata)),
                     direct.rdata.eq(rdata)]
        m.d.sync += direct.rvalid.eq(direct.read & ~direct_write)

        # --- burst registers -------------------------------------------------------------------
        r, r_active, w, w_active, b_pending, b_resp = self._take_bursts(m, self._compact_burst)

        # --- the R output register and the read in flight --------------------------------------
        # ``r.word`` is the next beat to enter the R register; ``in_flight``: that word was read
        # in the last cycle, so it is at the storage's output now. It enters the R register if
        # the register is empty or being emptied, else it is dropped (and read again).
        in_flight = Signal()
        r_beat = Signal(data.StructLayout({"id": self.id_width, "resp": 2, "last": 1}))
        r_valid = Signal()
        r_data = Signal(self.data_width, reset_less=True)
        m.d.comb += [axi.rvalid.eq(r_valid), axi.rdata.eq(r_data), axi.rid.eq(r_beat.id),
                     axi.rresp.eq(r_beat.resp), axi.rlast.eq(r_beat.last)]
        commit = in_flight & (~r_valid | axi.rready)
        finishing = commit & (r.left == 0)
        with m.If(commit):
            okay = r.supported & ~r.beyond
            m.d.sync += [
                r_valid.eq(1),
                r_data.eq(Mux(okay, rdata, 0)),
                r_beat.id.eq(r.id),
                r_beat.last.eq(r.left == 0),
                r_beat.resp.eq(Mux(~r.supported, Resp.SLVERR,
                                   Mux(r.beyond, Resp.DECERR, Resp.OKAY))),
                r.word.eq(r.next[:-1]),
                r.next.eq(r.next[:-1] + 1),
                r.beyond.eq(r.beyond | r.next[-1]),
            ]
            with m.If(r.left == 0):
                m.d.sync += r_active.eq(0)
            with m.Else():
                m.d.sync += r.left.eq(r.left - 1)
        with m.Elif(axi.rready):
            m.d.sync += r_valid.eq(0)

        # --- who uses the memory this cycle ----------------------------------------------------
        # The read burst wants the storage while it is in progress (also while the R register is
        # full: the read is then dropped), the write burst while it is in progress and WVALID is
        # high. ``read_wants`` comes from a flip-flop, so RREADY reaches no ready signal.
        read_wants = r_active
        write_wants = w_active & axi.wvalid
        prefer_read = Signal()
        read_go = Signal()
        write_go = Signal()
        m.d.comb += [
            read_go.eq(read_wants & ~direct_use & ~(write_wants & ~prefer_read)),
            axi.wready.eq(w_active & ~direct_use & ~(read_wants & prefer_read)),
            write_go.eq(axi.wvalid & axi.wready),
        ]
        with m.If(read_wants & write_wants & ~direct_use):
            m.d.sync += prefer_read.eq(~prefer_read)
        m.d.sync += in_flight.eq(read_go & ~finishing)

        with m.If(direct_use):
            m.d.comb += [addr.eq(direct.addr), write_en.eq(direct.write)]
        with m.Elif(write_go):
            m.d.comb += [addr.eq(w.word),
                         write_en.eq(Mux(w.supported & ~w.beyond, axi.wstrb, 0))]
        with m.Else():
            m.d.comb += addr.eq(Mux(commit, r.next[:-1], r.word))     # the word to read next

        # --- write beats and the B response -----------------------------------------------------
        with m.If(write_go):
            m.d.sync += [w.word.eq(w.next[:-1]), w.next.eq(w.next[:-1] + 1),
                         w.beyond.eq(w.beyond | w.next[-1])]
            with m.If(~w.supported):
                m.d.sync += b_resp.eq(Resp.SLVERR)
            with m.Elif(w.beyond):
                m.d.sync += b_resp.eq(Resp.DECERR)
            with m.If(w.left == 0):
                m.d.sync += [w_active.eq(0), b_pending.eq(1)]
            with m.Else():
                m.d.sync += w.left.eq(w.left - 1)
        m.d.comb += [axi.bvalid.eq(b_pending), axi.bresp.eq(b_resp), axi.bid.eq(w.id)]
        with m.If(axi.bvalid & axi.bready):
            m.d.sync += b_pending.eq(0)
        return m
