"""DMA engine: 2-D strided transfers between external memory (AXI4 manager) and the on-chip buffers.

One descriptor (:class:`~tessera.rtl.dma_descriptor.DmaDescriptor`) moves ``rows`` rows of
``row_bytes`` bytes between ``dram_addr + i * dram_stride`` and buffer row ``sram_row + i``. Any
byte alignment of address, stride and length is allowed: loads realign bytes with a rotator,
stores place bytes with a rotator and WSTRB and never write a byte outside ``[row start, row start
+ row_bytes)`` of a row. The DMA is buffer-agnostic: it sees one wide row stream per direction, so a
post-processing stage can later be inserted on the store path.

Ports::

    descriptor     In   DmaDescriptor                   accepted only while idle
    busy           Out  1                               a descriptor is being checked or executed
    done           Out  1                               one-cycle pulse at the end of a descriptor
    error          Out  4    DmaError                   of the last descriptor, held until the next
    error_addr     Out  32                              failing burst's address (or dram_addr)
    bytes_read     Out  32                              free-running count of bytes loaded into rows
    bytes_written  Out  32                              free-running count of bytes stored to memory
    row_write      Out  {buffer, row, data[4*lanes]}    LOAD: one complete buffer row, zero-padded
    row_read_req   Out  {buffer, row}                   STORE: request one buffer row ...
    row_read_data  In   data[4*lanes]                   ... and receive its bytes, in request order
    m_axi          Out  AXI4Signature(32, data_width, id_width)

Block diagram::

                      descriptor
                          │
                 ┌────────▼─────────┐  start/stop   ┌──────────────────┐  AR or AW (one burst
                 │ control FSM,     ├──────────────►│ BurstGenerator   ├─────► register, INCR,
                 │ validation,      │               │ rows -> bursts   │       full-width beats)
                 │ error latch      │◄──────────────┤ <= max_burst,    │
                 └──┬───────┬───────┘  finished     │ never across 4K  │
                    │       │                       └──┬──────┬────────┘
                    │       │        push at issue:    │      │
                    │       │  read_addrs FIFO ◄───────┘      └──► write_addrs FIFO, write_lens FIFO
                    │       │  (credit: <= max_outstanding_reads)  (B error address)  (wlast)
                    │       │        │ (R error address)                               │
       R ──► ReadRealigner ─┼────────┘                                                 │
       rotate by address    │                                                          ▼
       offset, assemble     │  row_read_req ──► buffer ──► row_read_data ──► WritePacker ──► W
       the row, mask bytes  │  (up to ROW_PREFETCH rows ahead)               rotate, WSTRB,
       past row_bytes       │                                                wlast per burst
            │               └─ B ─► error latch, pop write_addrs
            ▼
        row_write

Control state machine (``Dma``)::

    IDLE ──descriptor──► CHECK ──► START ──rejected (ZERO_ROWS, ZERO_BYTES, ROW_TOO_LONG,
                                     │         SRAM_RANGE) ──► IDLE (done, no bus traffic)
                                     ├── LOAD ──► LOAD  until: no burst left or pending, all read
                                     │                  bursts complete (read_addrs empty), last
                                     │                  row delivered ──► IDLE
                                     └── STORE ─► STORE until: no burst left or pending, all W
                                                        beats sent, all B responses received,
                                                        no row request open ──► IDLE

CHECK computes the verdict into a register and START acts on it.

``busy`` is high outside IDLE; ``done`` pulses in the first IDLE cycle, so the next descriptor can
be accepted in the same cycle.

Bursts (``BurstGenerator``): for each row, the bus words from ``addr & ~(B-1)`` to the word holding
the row's last byte (``B`` = bytes per beat) are cut into INCR bursts of at most ``max_burst`` beats
that end at a 4 KiB boundary; AxSIZE is always the full bus width, so every beat is one aligned bus
word. A burst occupies the AR (or AW) register until its handshake; a new one is generated only
when the tracking FIFO has room, which bounds outstanding reads to ``max_outstanding_reads`` and
outstanding writes (AW issued, B not yet received) to the same number. The generator produces one
burst per cycle, so short rows cost one burst each but no idle cycles.

LOAD (``ReadRealigner``): a beat ``k`` of a row whose first byte sits at lane ``o`` of its first
word is rotated right by ``o`` bytes; lanes ``l < B - o`` of the rotated beat are bytes ``k*B + l``
of the row and the others are bytes ``(k-1)*B + l``, so each beat writes two fixed slots of an
assembly register (no variable shifter of row width). After the row's last beat the row, masked to
zero from byte ``row_bytes`` on, moves to the ``row_write`` output register. RREADY falls only when
a row is complete and the previous one has not been taken yet.

STORE (``WritePacker``): a buffer row is loaded into a shift register; each W beat is the window
of the previous and the current ``B``-byte slot rotated by ``o``, the row then shifts by one slot.
WSTRB masks the lanes before the row's first byte (first beat) and after its last byte (last beat).
The next row is loaded in the same cycle as the previous row's last beat leaves, so rows follow
without bubbles. W beats may precede their AW handshake (the burst length is queued when AWVALID
rises), as AXI requires. Buffer rows are requested in order, up to ``ROW_PREFETCH`` rows ahead of the
WritePacker, independently of the AW side (so the buffer's read latency overlaps the bursts).

Errors: SLVERR or DECERR on any R beat or B response latches the first error code (READ_/WRITE_
SLVERR/DECERR) and the address of the burst that got it (from the read_addrs / write_addrs FIFO),
and stops the burst generator. A burst waiting in AR/AW still completes its handshake (AXI forbids
withdrawing a valid). Reads: all outstanding bursts are drained with RREADY high and their data is
discarded; rows completed before the failing beat have been written to the buffer, the failing row
and later rows are not. Writes: W beats of every burst already issued are sent (with their data
and strobes), all B responses are collected, and buffer rows requested but no longer needed are
read and dropped. Then ``done`` pulses and the DMA is idle; the next descriptor starts clean.

Reset: everything is in the ``sync`` domain; after reset every VALID and READY the DMA drives is
low and the DMA is idle. Transactions the memory still holds (an accepted AR with beats to come, an
accepted AW waiting for W beats, a B response) are forgotten by the DMA, so the memory side must be
reset together with the DMA (the testbench connects the AXI memory model to the same reset), or a
soft reset must only be applied while the DMA is idle. Buffer read requests in flight are likewise
forgotten: the buffers' read pipelines share the reset.

Timing: descriptor accepted in cycle t, checked in t+1, started in t+2, first burst generated in
t+3 (AxVALID from t+4). With a memory that answers every cycle, LOAD and STORE move one bus word per cycle after
the start-up latency: measured with cocotbext-axi's memory model, 4096 beats take 4102 cycles
(LOAD) and 4106 cycles (STORE) from descriptor to ``done`` on every bus width (tb/dma_tb.py,
``throughput``).
"""

from amaranth.hdl import C, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .axi import AXI4Signature, Burst, Resp
from .dma_descriptor import Direction, DmaDescriptor, DmaError
from .util import check_dimension

__all__ = ["Dma", "RowWrite", "RowReadRequest", "RowData", "BurstRequest", "WriteBeat",
           "BurstGenerator", "ReadRealigner", "WritePacker"]

BYTE = unsigned(8)


class _State(enum.Enum, shape=3):
    """States of the control state machine (see the module docstring)."""
    IDLE = 0
    CHECK = 1
    START = 2
    LOAD = 3
    STORE = 4


class RowData(data.ArrayLayout):
    """The bytes of one buffer row: ``4 * lanes`` bytes (an accumulator row; the scratchpad uses the
    first ``lanes``)."""
    def __init__(self, lanes):
        super().__init__(BYTE, 4 * lanes)


class RowWrite(data.StructLayout):
    """One complete buffer row written by a LOAD."""
    def __init__(self, lanes):
        super().__init__({"buffer": unsigned(1), "row": unsigned(16), "data": RowData(lanes)})


class RowReadRequest(data.StructLayout):
    """A request for the bytes of one buffer row (STORE)."""
    def __init__(self):
        super().__init__({"buffer": unsigned(1), "row": unsigned(16)})


class BurstRequest(data.StructLayout):
    """One AXI burst: aligned byte address, AxLEN (beats - 1), first burst of its row."""
    def __init__(self):
        super().__init__({"addr": unsigned(32), "len": unsigned(8), "first": unsigned(1)})


class WriteBeat(data.StructLayout):
    """One W beat; ``row_last`` (not on the bus) marks the last beat of a row."""
    def __init__(self, data_width):
        super().__init__({"data": unsigned(data_width), "strb": unsigned(data_width // 8),
                          "last": unsigned(1), "row_last": unsigned(1)})


def _ceil_div(a, b):
    return -(-a // b)


def _row_beats(offset, row_bytes, beat_bytes):
    """Bus words covered by ``row_bytes`` bytes starting at lane ``offset`` of the first word."""
    return (offset + row_bytes + (beat_bytes - 1)) >> exact_log2(beat_bytes)


def _below(m, n, count, beat_bytes, name):
    """A bit mask of ``count`` bytes that keeps bytes ``p < n``, built per slot of ``beat_bytes``
    bytes: full slots, the one partial slot, empty slots (a few small comparators)."""
    shift = exact_log2(beat_bytes)
    width = 8 * beat_bytes
    mask = Signal(8 * count, name=name)
    full_slots = n >> shift
    partial = Signal(width, name=f"{name}_partial")
    m.d.comb += partial.eq((C(1, width + 1) << Cat(C(0, 3), n[:shift])) - 1)
    slots = _ceil_div(count, beat_bytes)
    m.d.comb += mask.eq(Cat(
        Mux(full_slots > slot, C((1 << width) - 1, width), Mux(full_slots == slot, partial, 0))
        for slot in range(slots)))
    return mask


class BurstGenerator(wiring.Component):
    """Cuts the rows of a descriptor into AXI bursts, one per cycle.

    ``start`` samples ``dram_addr`` and ``rows``; ``dram_stride`` and ``row_bytes`` are read while
    running and must stay constant. A burst is generated (``issue``, payload ``issue_payload``) when
    ``credit`` is high, ``stop`` is low and the ``burst`` register is free or being taken; it then
    stays in ``burst`` (valid = AxVALID) until ``burst.ready`` (AxREADY). ``finished`` is high when
    no burst is pending or left (all rows cut, or ``stop``).
    """
    def __init__(self, *, data_width, max_burst):
        self.beat_bytes = data_width // 8
        self.max_burst = max_burst
        super().__init__({
            "start": In(1), "stop": In(1), "credit": In(1),
            "dram_addr": In(32), "dram_stride": In(32), "rows": In(16), "row_bytes": In(16),
            "issue": Out(1), "issue_payload": Out(BurstRequest()),
            "burst": Out(stream.Signature(BurstRequest())),
            "finished": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        beat_bytes, max_burst = self.beat_bytes, self.max_burst
        shift = exact_log2(beat_bytes)
        page_beats = 4096 // beat_bytes

        row_addr = Signal(32)               # byte address of the current row's first byte
        rows_left = Signal(16)              # rows not completely cut yet
        first = Signal()                    # the next burst is the first of its row
        word = Signal(32 - shift)           # next word of the row (when not first)
        left = Signal(17)                   # words of the row not yet in a burst (when not first)

        cur_word = Signal(32 - shift)
        cur_left = Signal(17)
        m.d.comb += [
            cur_word.eq(Mux(first, row_addr[shift:], word)),
            cur_left.eq(Mux(first, _row_beats(row_addr[:shift], self.row_bytes, beat_bytes), left)),
        ]

        to_page_end = Signal(range(page_beats + 1))
        capped = Signal(range(max_burst + 1))
        beats = Signal(range(max_burst + 1))
        m.d.comb += [
            to_page_end.eq(page_beats - cur_word[:12 - shift]),
            capped.eq(Mux(cur_left < max_burst, cur_left, max_burst)),
            beats.eq(Mux(capped < to_page_end, capped, to_page_end)),
        ]

        m.d.comb += [
            self.issue.eq((rows_left != 0) & ~self.stop & self.credit &
                          (~self.burst.valid | self.burst.ready)),
            self.issue_payload.addr.eq(Cat(C(0, shift), cur_word)),
            self.issue_payload.len.eq(beats - 1),
            self.issue_payload.first.eq(first),
            self.finished.eq(~self.burst.valid & ((rows_left == 0) | self.stop)),
        ]

        with m.If(self.start):
            m.d.sync += [row_addr.eq(self.dram_addr), rows_left.eq(self.rows), first.eq(1)]
        with m.Elif(self.issue):
            with m.If(cur_left == beats):       # last burst of the row
                m.d.sync += [
                    row_addr.eq(row_addr + self.dram_stride),
                    rows_left.eq(rows_left - 1),
                    first.eq(1),
                ]
            with m.Else():
                m.d.sync += [word.eq(cur_word + beats), left.eq(cur_left - beats), first.eq(0)]

        with m.If(self.issue):
            m.d.sync += [self.burst.valid.eq(1), self.burst.payload.eq(self.issue_payload)]
        with m.Elif(self.burst.ready):
            m.d.sync += self.burst.valid.eq(0)
        return m


class ReadRealigner(wiring.Component):
    """Turns the R beats of a LOAD (only beats with an OKAY response) into complete buffer rows.

    ``start`` samples ``offset`` (the low address bits of ``dram_addr``); ``stride`` (low bits of
    ``dram_stride``), ``row_bytes``, ``sram_row`` and ``buffer`` must stay constant while running.
    """
    def __init__(self, *, data_width, lanes):
        self.data_width = data_width
        self.beat_bytes = data_width // 8
        self.lanes = lanes
        shift = exact_log2(self.beat_bytes)
        super().__init__({
            "start": In(1), "offset": In(shift), "stride": In(shift), "row_bytes": In(16),
            "sram_row": In(16), "buffer": In(1),
            "beat": In(stream.Signature(unsigned(data_width))),
            "row": Out(stream.Signature(RowWrite(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        width, beat_bytes = self.data_width, self.beat_bytes
        row_len = 4 * self.lanes
        slots = _ceil_div(row_len, beat_bytes) + 1       # a row may touch one word more
        shift = exact_log2(beat_bytes)

        offset = Signal(shift)              # lane of the current row's first byte
        beat = Signal(range(slots + 1))     # beat index within the current row
        index = Signal(16)                  # rows completed
        last = Signal()
        m.d.comb += last.eq(beat == _row_beats(offset, self.row_bytes, beat_bytes) - 1)

        m.d.comb += self.beat.ready.eq(~(last & self.row.valid & ~self.row.ready))
        accept = Signal()
        m.d.comb += accept.eq(self.beat.valid & self.beat.ready)

        # Rotate right by `offset` bytes: rotated lane l holds memory lane (l + offset) mod B.
        # Lanes l < B - offset belong to slot `beat` of the row, the others to slot `beat - 1`.
        # All of this is written as whole-vector operations (one per slot, not one per byte):
        # the same logic, but it simulates much faster in event-driven simulators.
        payload = self.beat.payload
        rotated = Signal(width)
        this_slot = Signal(width)           # bit mask of the lanes that go to slot `beat`
        m.d.comb += [
            rotated.eq(Cat(payload, payload).bit_select(Cat(C(0, 3), offset), width)),
            this_slot.eq((C(1, width + 1) << Cat(C(0, 3), beat_bytes - offset)) - 1),
        ]
        write_mask = Signal(slots * width)
        m.d.comb += write_mask.eq(Mux(accept, Cat(*[
            Mux(beat == slot, this_slot, 0) | Mux(beat == slot + 1, ~this_slot, 0)
            for slot in range(slots)]), 0))
        assembly = Signal(slots * width)
        updated = Signal(slots * width)
        m.d.comb += updated.eq((assembly & ~write_mask) |
                               (Cat(*[rotated] * slots) & write_mask))
        m.d.sync += assembly.eq(updated)

        with m.If(self.start):
            m.d.sync += [offset.eq(self.offset), beat.eq(0), index.eq(0)]
        with m.Elif(accept):
            with m.If(last):
                m.d.sync += [beat.eq(0), offset.eq(offset + self.stride), index.eq(index + 1)]
            with m.Else():
                m.d.sync += beat.eq(beat + 1)

        keep = _below(m, self.row_bytes, row_len, beat_bytes, "keep")
        with m.If(accept & last):
            m.d.sync += [
                self.row.valid.eq(1),
                self.row.payload.buffer.eq(self.buffer),
                self.row.payload.row.eq(self.sram_row + index),
                self.row.payload.data.eq(updated[:8 * row_len] & keep),
            ]
        with m.Elif(self.row.ready):
            m.d.sync += self.row.valid.eq(0)
        return m


class WritePacker(wiring.Component):
    """Turns buffer rows of a STORE into W beats with WSTRB, cut into bursts by ``burst_len``
    (AxLEN of each burst, in order; popped with the burst's last beat).

    ``start`` samples ``offset``; ``stride`` and ``row_bytes`` must stay constant while running.
    """
    def __init__(self, *, data_width, lanes):
        self.data_width = data_width
        self.beat_bytes = data_width // 8
        self.lanes = lanes
        shift = exact_log2(self.beat_bytes)
        super().__init__({
            "start": In(1), "offset": In(shift), "stride": In(shift), "row_bytes": In(16),
            "row": In(stream.Signature(RowData(lanes))),
            "burst_len": In(stream.Signature(unsigned(8))),
            "w": Out(stream.Signature(WriteBeat(data_width))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        width, beat_bytes = self.data_width, self.beat_bytes
        row_len = 4 * self.lanes
        slots = _ceil_div(row_len, beat_bytes) + 1
        shift = exact_log2(beat_bytes)

        shifter = Signal(slots * width)     # the rest of the row, current slot in the low bits
        previous = Signal(width)            # the slot sent in the previous beat
        full = Signal()                     # the shifter holds a row
        offset = Signal(shift)              # lane of the current row's first byte
        beat = Signal(range(slots + 1))     # beat index within the row
        burst_beat = Signal(8)              # beat index within the burst
        row_last = Signal()
        m.d.comb += row_last.eq(beat == _row_beats(offset, self.row_bytes, beat_bytes) - 1)

        advance = Signal()
        m.d.comb += [
            advance.eq(full & self.burst_len.valid & (~self.w.valid | self.w.ready)),
            self.row.ready.eq(~full | (advance & row_last)),
            self.idle.eq(~full & ~self.w.valid),
        ]

        # Lane l of the beat is row byte beat*B + l - offset: the window of (previous, current)
        # that starts `B - offset` bytes into the pair.
        current = shifter[:width]
        window_start = Signal(range(beat_bytes + 1))
        window = Signal(width)
        m.d.comb += [
            window_start.eq(beat_bytes - offset),
            window.eq(Cat(previous, current).bit_select(Cat(C(0, 3), window_start), width)),
        ]
        # Strobes: lanes before the row's first byte (first beat) and after its last (last beat).
        end_lane = Signal(shift)
        strobe = Signal(beat_bytes)
        m.d.comb += end_lane.eq(offset + self.row_bytes - 1)
        all_lanes = (1 << beat_bytes) - 1
        from_first = ~((C(1, beat_bytes) << offset) - 1)[:beat_bytes]        # lanes >= offset
        to_last = ((C(2, beat_bytes + 1) << end_lane) - 1)[:beat_bytes]     # lanes <= end_lane
        m.d.comb += strobe.eq(Mux(beat == 0, from_first, all_lanes) &
                              Mux(row_last, to_last, all_lanes))
        burst_last = Signal()
        m.d.comb += [
            burst_last.eq(burst_beat == self.burst_len.payload),
            self.burst_len.ready.eq(advance & burst_last),
        ]

        with m.If(self.start):
            m.d.sync += [offset.eq(self.offset), beat.eq(0), burst_beat.eq(0), full.eq(0)]
        with m.Elif(advance):
            m.d.sync += [
                previous.eq(current),
                shifter.eq(shifter[width:]),
                burst_beat.eq(Mux(burst_last, 0, burst_beat + 1)),
            ]
            with m.If(row_last):
                m.d.sync += [beat.eq(0), offset.eq(offset + self.stride), full.eq(0)]
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
        with m.If(self.row.valid & self.row.ready):
            m.d.sync += [shifter.eq(self.row.payload), full.eq(1)]

        with m.If(advance):
            m.d.sync += [
                self.w.valid.eq(1),
                self.w.payload.data.eq(window),
                self.w.payload.strb.eq(strobe),
                self.w.payload.last.eq(burst_last),
                self.w.payload.row_last.eq(row_last),
            ]
        with m.Elif(self.w.ready):
            m.d.sync += self.w.valid.eq(0)
        return m


class Dma(wiring.Component):
    """AXI4 DMA engine for 2-D strided LOAD (memory to buffer) and STORE (buffer to memory).

    Parameters (keyword-only)
    ----------
    data_width : int
        AXI data width in bits: 32, 64 or 128.
    id_width : int
        AXI ID width (all transactions use ID 0, so responses return in order).
    lanes : int
        Array lanes: scratchpad rows are ``lanes`` bytes, accumulator rows ``4 * lanes`` bytes.
    scratchpad_depth, accumulator_depth : int
        Rows of each buffer, for the SRAM_RANGE check.
    max_burst : int
        Longest burst in beats, 1 .. 256.
    max_outstanding_reads : int
        Read bursts in flight (AR issued, last R beat not received); write bursts in flight (AW
        issued, B not received) are bounded by the same number.

    Attributes
    ----------
    beat_bytes : int
        Bytes per bus word.
    row_bytes : dict
        Row length in bytes of each :class:`Buffer`.
    """

    #: Buffer rows requested ahead of the WritePacker on STORE.
    ROW_PREFETCH = 4

    def __init__(self, *, data_width=64, id_width=4, lanes=8, scratchpad_depth=256,
                 accumulator_depth=256, max_burst=256, max_outstanding_reads=4):
        if data_width not in (32, 64, 128):
            raise ValueError(f"data_width must be one of [32, 64, 128], not {data_width!r}")
        self.data_width = data_width
        self.id_width = check_dimension("id_width", id_width, maximum=16)
        self.lanes = check_dimension("lanes", lanes, maximum=4096)
        self.scratchpad_depth = check_dimension("scratchpad_depth", scratchpad_depth,
                                                maximum=65536)
        self.accumulator_depth = check_dimension("accumulator_depth", accumulator_depth,
                                                 maximum=65536)
        self.max_burst = check_dimension("max_burst", max_burst, maximum=256)
        self.max_outstanding_reads = check_dimension("max_outstanding_reads",
                                                     max_outstanding_reads, maximum=64)
        self.beat_bytes = data_width // 8
        self.row_bytes = {0: lanes, 1: 4 * lanes}
        super().__init__({
            "descriptor": In(stream.Signature(DmaDescriptor())),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(4),
            "error_addr": Out(32),
            "bytes_read": Out(32),
            "bytes_written": Out(32),
            "row_write": Out(stream.Signature(RowWrite(lanes))),
            "row_read_req": Out(stream.Signature(RowReadRequest())),
            "row_read_data": In(stream.Signature(RowData(lanes))),
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=data_width, id_width=id_width)),
        })

    def elaborate(self, platform):
        m = Module()
        beat_bytes = self.beat_bytes
        shift = exact_log2(beat_bytes)
        axi = self.m_axi
        outstanding = self.max_outstanding_reads

        m.submodules.generator = gen = BurstGenerator(data_width=self.data_width,
                                                      max_burst=self.max_burst)
        m.submodules.realigner = realigner = ReadRealigner(data_width=self.data_width,
                                                           lanes=self.lanes)
        m.submodules.packer = packer = WritePacker(data_width=self.data_width, lanes=self.lanes)
        # Small queues (distributed RAM); SyncFIFO because an entry may be needed the cycle after
        # it is written (a W beat right after AWVALID rises). An entry lives from the cycle its
        # burst is generated to its last R beat (read_addrs) or its B response (write_addrs). One
        # spare entry lets a new burst be generated in the cycle an old one completes.
        m.submodules.read_addrs = read_addrs = SyncFIFO(width=32, depth=outstanding + 1)
        m.submodules.write_addrs = write_addrs = SyncFIFO(width=32, depth=outstanding + 1)
        m.submodules.write_lens = write_lens = SyncFIFO(width=8, depth=outstanding + 1)
        read_credit = Signal()
        write_credit = Signal()
        m.d.comb += [
            read_credit.eq((read_addrs.level < outstanding) |
                           (read_addrs.r_en & read_addrs.r_rdy)),
            write_credit.eq((write_addrs.level < outstanding) |
                            (write_addrs.r_en & write_addrs.r_rdy)),
        ]

        desc = Signal(DmaDescriptor())
        start = Signal()
        loading = Signal()
        storing = Signal()
        failed = Signal()
        m.d.comb += failed.eq(self.error != DmaError.NONE)

        # --- control ------------------------------------------------------------------------------
        # The state decode is written as plain expressions (continuous assignments in Verilog), not
        # with m.FSM: a combinational process that reads only registers is never evaluated by a
        # simulator with SystemVerilog initialisation semantics (Icarus -g2012) until a register
        # changes, which left READY/VALID outputs X after reset.
        state = Signal(_State)
        row_limit = Mux(desc.buffer, self.row_bytes[1], self.row_bytes[0])
        depth = Mux(desc.buffer, self.accumulator_depth, self.scratchpad_depth)
        # CHECK registers the verdict, START acts on it (keeps the comparators off the wide
        # fan-out of ``start``).
        code = Signal(4)
        m.d.sync += code.eq(
            Mux(desc.rows == 0, DmaError.ZERO_ROWS,
            Mux(desc.row_bytes == 0, DmaError.ZERO_BYTES,
            Mux(desc.row_bytes > row_limit, DmaError.ROW_TOO_LONG,
            Mux(desc.sram_row + desc.rows > depth, DmaError.SRAM_RANGE,
                DmaError.NONE)))))
        m.d.comb += [
            self.descriptor.ready.eq(state == _State.IDLE),
            self.busy.eq(state != _State.IDLE),
            start.eq((state == _State.START) & (code == DmaError.NONE)),
            loading.eq(state == _State.LOAD),
            storing.eq(state == _State.STORE),
        ]

        read_drained = Signal()
        write_drained = Signal()
        m.d.sync += self.done.eq(0)
        with m.Switch(state):
            with m.Case(_State.IDLE):
                with m.If(self.descriptor.valid):
                    m.d.sync += [
                        desc.eq(self.descriptor.payload),
                        self.error.eq(DmaError.NONE),
                        self.error_addr.eq(0),
                        state.eq(_State.CHECK),
                    ]
            with m.Case(_State.CHECK):
                m.d.sync += state.eq(_State.START)
            with m.Case(_State.START):
                with m.If(code != DmaError.NONE):
                    m.d.sync += [
                        self.error.eq(code),
                        self.error_addr.eq(desc.dram_addr),
                        self.done.eq(1),
                        state.eq(_State.IDLE),
                    ]
                with m.Elif(desc.direction == Direction.STORE):
                    m.d.sync += state.eq(_State.STORE)
                with m.Else():
                    m.d.sync += state.eq(_State.LOAD)
            with m.Case(_State.LOAD):
                with m.If(read_drained):
                    m.d.sync += [self.done.eq(1), state.eq(_State.IDLE)]
            with m.Case(_State.STORE):
                with m.If(write_drained):
                    m.d.sync += [self.done.eq(1), state.eq(_State.IDLE)]

        # --- bursts -------------------------------------------------------------------------------
        is_store = desc.direction == Direction.STORE
        m.d.comb += [
            gen.start.eq(start),
            gen.stop.eq(failed),
            # No credit outside LOAD/STORE: a generator stopped by an error keeps its rows_left.
            gen.credit.eq((storing & write_credit) | (loading & read_credit)),
            gen.dram_addr.eq(desc.dram_addr),
            gen.dram_stride.eq(desc.dram_stride),
            gen.rows.eq(desc.rows),
            gen.row_bytes.eq(desc.row_bytes),
            gen.burst.ready.eq(Mux(is_store, axi.awready, axi.arready)),
            read_addrs.w_en.eq(gen.issue & loading),
            read_addrs.w_data.eq(gen.issue_payload.addr),
            write_addrs.w_en.eq(gen.issue & storing),
            write_addrs.w_data.eq(gen.issue_payload.addr),
            write_lens.w_en.eq(gen.issue & storing),
            write_lens.w_data.eq(gen.issue_payload.len),
        ]
        for prefix, valid in (("ar", gen.burst.valid & ~is_store),
                              ("aw", gen.burst.valid & is_store)):
            m.d.comb += [
                getattr(axi, f"{prefix}valid").eq(valid),
                getattr(axi, f"{prefix}id").eq(0),
                getattr(axi, f"{prefix}addr").eq(gen.burst.payload.addr),
                getattr(axi, f"{prefix}len").eq(gen.burst.payload.len),
                getattr(axi, f"{prefix}size").eq(shift),
                getattr(axi, f"{prefix}burst").eq(Burst.INCR),
                getattr(axi, f"{prefix}lock").eq(0),
                getattr(axi, f"{prefix}cache").eq(0b0011),     # normal, non-cacheable, bufferable
                getattr(axi, f"{prefix}prot").eq(0b000),
            ]

        # --- LOAD: R -> realigner -> row_write ----------------------------------------------------
        r_done = Signal()
        r_bad = Signal()
        m.d.comb += [
            realigner.start.eq(start),
            realigner.offset.eq(desc.dram_addr[:shift]),
            realigner.stride.eq(desc.dram_stride[:shift]),
            realigner.row_bytes.eq(desc.row_bytes),
            realigner.sram_row.eq(desc.sram_row),
            realigner.buffer.eq(desc.buffer),
            r_bad.eq(axi.rresp[1]),                         # SLVERR or DECERR
            axi.rready.eq(loading & (failed | realigner.beat.ready)),
            realigner.beat.valid.eq(axi.rvalid & loading & ~failed & ~r_bad),
            realigner.beat.payload.eq(axi.rdata),
            r_done.eq(axi.rvalid & axi.rready),
            read_addrs.r_en.eq(r_done & axi.rlast),
        ]
        wiring.connect(m, realigner.row, wiring.flipped(self.row_write))
        with m.If(r_done & r_bad & ~failed):
            m.d.sync += [
                self.error.eq(Mux(axi.rresp == Resp.DECERR, DmaError.READ_DECERR,
                                  DmaError.READ_SLVERR)),
                self.error_addr.eq(read_addrs.r_data),
            ]
        m.d.comb += read_drained.eq(gen.finished & ~read_addrs.r_rdy & ~realigner.row.valid)
        with m.If(self.row_write.valid & self.row_write.ready):
            m.d.sync += self.bytes_read.eq(self.bytes_read + desc.row_bytes)

        # --- STORE: row_read_req -> row_read_data -> packer -> W; B -------------------------------
        rows_started = Signal(17)       # rows whose first burst has been issued
        rows_requested = Signal(17)
        open_requests = Signal(range(self.ROW_PREFETCH + 1))
        request = Signal()
        received = Signal()
        no_more_bursts = Signal()
        m.d.comb += [
            no_more_bursts.eq(gen.finished & ~write_lens.r_rdy),
            # After an error only the rows of bursts already issued are still needed.
            request.eq(storing & (~self.row_read_req.valid | self.row_read_req.ready) &
                       (rows_requested < Mux(failed, rows_started, desc.rows)) &
                       (open_requests < self.ROW_PREFETCH)),
            received.eq(self.row_read_data.valid & self.row_read_data.ready),
        ]
        with m.If(start):
            m.d.sync += [rows_started.eq(0), rows_requested.eq(0)]
        with m.Elif(gen.issue & storing & gen.issue_payload.first):
            m.d.sync += rows_started.eq(rows_started + 1)
        with m.If(request):
            m.d.sync += [
                self.row_read_req.valid.eq(1),
                self.row_read_req.payload.buffer.eq(desc.buffer),
                self.row_read_req.payload.row.eq(desc.sram_row + rows_requested),
                rows_requested.eq(rows_requested + 1),
            ]
        with m.Elif(self.row_read_req.ready):
            m.d.sync += self.row_read_req.valid.eq(0)
        m.d.sync += open_requests.eq(open_requests + request - received)

        m.d.comb += [
            packer.start.eq(start),
            packer.offset.eq(desc.dram_addr[:shift]),
            packer.stride.eq(desc.dram_stride[:shift]),
            packer.row_bytes.eq(desc.row_bytes),
            # After the last burst, rows still arriving are not needed: read and drop them.
            packer.row.valid.eq(self.row_read_data.valid & storing & ~no_more_bursts),
            packer.row.payload.eq(self.row_read_data.payload),
            self.row_read_data.ready.eq(storing & (no_more_bursts | packer.row.ready)),
            packer.burst_len.valid.eq(write_lens.r_rdy),
            packer.burst_len.payload.eq(write_lens.r_data),
            write_lens.r_en.eq(packer.burst_len.ready),
            axi.wvalid.eq(packer.w.valid),
            axi.wdata.eq(packer.w.payload.data),
            axi.wstrb.eq(packer.w.payload.strb),
            axi.wlast.eq(packer.w.payload.last),
            packer.w.ready.eq(axi.wready),
        ]
        with m.If(axi.wvalid & axi.wready & packer.w.payload.row_last):
            m.d.sync += self.bytes_written.eq(self.bytes_written + desc.row_bytes)

        b_done = Signal()
        m.d.comb += [
            axi.bready.eq(storing),
            b_done.eq(axi.bvalid & axi.bready),
            write_addrs.r_en.eq(b_done),
        ]
        with m.If(b_done & axi.bresp[1] & ~failed):
            m.d.sync += [
                self.error.eq(Mux(axi.bresp == Resp.DECERR, DmaError.WRITE_DECERR,
                                  DmaError.WRITE_SLVERR)),
                self.error_addr.eq(write_addrs.r_data),
            ]
        m.d.comb += write_drained.eq(no_more_bursts & ~packer.w.valid & ~write_addrs.r_rdy &
                                     (open_requests == 0) & ~self.row_read_req.valid)
        return m
