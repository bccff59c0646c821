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

CHECK registers each check of the descriptor (a flag per check and buffer), START combines the
flags and acts on them. The burst generator starts preparing the first rows in CHECK; it gets no
credit outside LOAD and STORE, so a rejected descriptor issues nothing.

``busy`` is high outside IDLE; ``done`` pulses in the first IDLE cycle, so the next descriptor can
be accepted in the same cycle.

Bursts (``BurstGenerator``): for each row, the bus words from ``addr & ~(B-1)`` to the word holding
the row's last byte (``B`` = bytes per beat) are cut into INCR bursts of at most ``max_burst`` beats
that end at a 4 KiB boundary; AxSIZE is always the full bus width, so every beat is one aligned bus
word. A burst waits in the AR (or AW) output register until its handshake; the register has a
spare entry (a skid buffer), so generating a burst never waits for AxREADY. A new burst is
generated only while its tracking FIFO holds fewer than ``max_outstanding_reads`` entries (a
registered credit: a completed burst frees its entry for the next cycle's generation), which
bounds outstanding reads to ``max_outstanding_reads`` and outstanding writes (AW issued, B not yet
received) to the same number. The generator produces one burst per cycle, so short rows cost one
burst each but no idle cycles: the current row's state
(next word, words left, words to the page end, their difference, and whether the next burst is
the row's last, ends at the page end or is ``max_burst`` long) lives in registers and changes per
burst by constants or register moves only; the next row's state is prepared one row ahead from its
address (``dram_addr + i * dram_stride``).

LOAD: R beats enter through a register slice (rtl/register_slice.py: one cycle, full rate; the bus
RREADY is its flip-flop while loading), then the ``ReadRealigner``: a beat ``k`` of a row whose
first byte sits at lane ``o`` of its first word is rotated right by ``o`` bytes; lanes
``l < B - o`` of the rotated beat are bytes ``k*B + l`` of the row and the others are bytes
``(k-1)*B + l``, so each beat writes two fixed slots of an assembly register (no variable shifter
of row width); the rotation and the assembly are two register stages. After the row's last beat the
row, masked to zero from byte ``row_bytes`` on, moves to the ``row_write`` output register. RREADY
falls only when a row is complete and the previous one has not been taken yet. Which beat is a
row's last is kept in registers (``_RowTracker``: the lanes of the current and the next row's first
and last byte, a down-counter of the row's beats), so RREADY is one LUT level from registers.

STORE (``WritePacker``): buffer rows wait in two row buffers (each loaded only while empty, so
``ready`` is a flip-flop); a filler pushes the rows' ``B``-byte slots, in order, into a small word
queue, and each W beat is the window of the last two words taken from it (in registers), rotated
by ``o``. WSTRB masks the lanes before the row's first byte (first beat) and after its last byte
(last beat). The filler moves to the next buffered row right after a row's last slot, so rows
follow without bubbles. W beats may precede their AW handshake (the burst
length is queued when the burst is generated), as AXI requires. The first beat of a burst takes the
burst's length from the head of its FIFO (and pops it), the other beats are counted in registers; W
beats leave through an output register with a spare entry, so no logic waits for WREADY. Buffer
rows are requested in order, up to ``row_prefetch`` rows ahead of the WritePacker, independently of
the AW side (so the buffer's read latency overlaps the bursts).

Errors: SLVERR or DECERR on any R beat or B response latches the first error code (READ_/WRITE_
SLVERR/DECERR) and the address of the burst that got it (from the read_addrs / write_addrs FIFO),
and stops the burst generator. A burst already generated (waiting in AR/AW or in its spare entry)
still completes its handshake (AXI forbids withdrawing a valid). Reads: all outstanding bursts are
drained with RREADY high and their data is discarded; rows completed before the failing beat have
been written to the buffer, the failing row and later rows are not. Writes: W beats of every burst
already issued are sent (with their data and strobes), all B responses are collected, and buffer
rows requested but no longer needed are read and dropped. Then ``done`` pulses and the DMA is
idle; the next descriptor starts clean.

Reset: everything is in the ``sync`` domain; after reset every VALID and READY the DMA drives is
low and the DMA is idle. Transactions the memory still holds (an accepted AR with beats to come, an
accepted AW waiting for W beats, a B response) are forgotten by the DMA, so the memory side must be
reset together with the DMA (the testbench connects the AXI memory model to the same reset), or a
soft reset must only be applied while the DMA is idle. Buffer read requests in flight are likewise
forgotten: the buffers' read pipelines share the reset.

Timing: descriptor accepted in cycle t, checked in t+1 (the burst generator starts preparing the
first rows), started in t+2 (a rejected descriptor pulses ``done`` in t+3), first burst generated
in t+4 (AxVALID from t+5). With a memory that answers every cycle, LOAD and STORE move one bus word
per cycle after the start-up latency: measured with cocotbext-axi's memory model, 4096 beats of
aligned rows take 4104 cycles (LOAD) and 4107 cycles (STORE) from descriptor to ``done`` on the 32-
and 128-bit buses, 2048 beats 2056 and 2059 cycles on the 64-bit bus (tb/dma_tb.py,
``throughput`` with ``TESSERA_DMA_FULL=1``).

Paths: every register-to-register path is meant to stay within about four LUT levels plus one
short adder (125 MHz on an ECP5 -6; ``scripts/timing_paths.py`` estimates them). The descriptor
checks are registered in CHECK; the burst generator keeps the current and the next row's state in
registers; which beat ends a row is kept in registers (``_RowTracker``); AxREADY and WREADY only
move output registers that have a spare entry; the R channel is registered on entry (the
realigner's RREADY is one LUT level from registers); the generator's credits are registers.
"""

import operator
from functools import reduce

from amaranth.hdl import C, Cat, Module, Mux, ResetInserter, Shape, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .axi import AXI4Signature, Burst, Resp
from .dma_descriptor import Direction, DmaDescriptor, DmaError, descriptor_error
from .register_slice import RegisterSlice
from .sliced_fifo import SlicedFIFO, sliced_fifo_for
from .util import REPLICA, check_dimension, replicate, zero_unless

__all__ = ["Dma", "RowWrite", "RowReadRequest", "RowData", "BurstRequest", "WriteBeat",
           "BurstGenerator", "ReadRealigner", "WritePacker"]

BYTE = unsigned(8)
PAGE = 4096


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


class _BurstBeats(data.StructLayout):
    """The beats of a burst as the WritePacker counts them: one (``single``), two (``pair``) or
    ``rest + 2``."""
    def __init__(self):
        super().__init__({"rest": unsigned(8), "single": unsigned(1), "pair": unsigned(1)})


def _ceil_div(a, b):
    return -(-a // b)


def _sum_exceeds(a, b, limit):
    """``a + b > limit`` for unsigned ``a``, ``b`` and a constant ``limit`` with a single carry
    chain: the sign of ``a + b + (-limit - 1)``, the three operands first reduced to two by a
    carry-save step (one LUT level)."""
    width = max(len(a), len(b), (limit + 1).bit_length()) + 2
    k = C((1 << width) - limit - 1, width)
    total = (a ^ b ^ k) + (((a & b) | (a & k) | (b & k)) << 1)
    return ~total[width - 1]


def _output_register(m, out, push, payload, name):
    """Drive the stream ``out`` from a register with one spare entry behind it (a skid buffer).

    ``payload`` is pushed when ``push`` is high, which is allowed only while the returned
    ``spare_valid`` (a register) is low. ``out.ready`` therefore only moves the two registers: no
    logic on the pushing side waits for it, and a stream that is always ready still takes one
    entry per cycle. ``out.valid`` stays high until the handshake (a valid is never withdrawn).
    The payload registers are not reset (the valid flags say what they hold)."""
    spare_valid = Signal(name=f"{name}_spare_valid")
    spare = Signal(out.payload.shape(), name=f"{name}_spare", reset_less=True)
    held = Signal(out.payload.shape(), name=f"{name}_payload", reset_less=True)
    m.d.comb += out.payload.eq(held)
    with m.If(~spare_valid):
        m.d.sync += spare.eq(payload)
    with m.If(~out.valid | out.ready):
        m.d.sync += [
            out.valid.eq(spare_valid | push),
            held.eq(Mux(spare_valid, spare, payload)),
            spare_valid.eq(0),
        ]
    with m.Elif(push):
        m.d.sync += spare_valid.eq(1)
    return spare_valid


class _RowTracker:
    """Where each row of a transfer starts and ends within its bus words, and which beat of the
    current row is its last, all in registers (for ReadRealigner and WritePacker).

    A row whose first byte sits at lane ``o`` of its first word has its last byte at lane
    ``e = (o + row_bytes - 1) mod B`` of word ``(row_bytes - 1) // B + c`` of the row, where ``c``
    is the carry of ``o + (row_bytes - 1) mod B`` (``c`` is high exactly when ``e < o``). The
    tracker keeps ``o`` and ``e`` of the current and of the next row (the next row starts
    ``stride`` lanes further), so the beat count of the next row is one comparison and a choice
    between two constants away when the current row ends.

    ``start`` samples ``offset``; ``row_bytes`` must be stable from the cycle before ``start`` and,
    like ``stride``, stay constant while running. ``step``: the current beat is done.
    """
    def __init__(self, m, *, start, step, offset, stride, row_bytes, beat_bytes, max_beats, name):
        shift = exact_log2(beat_bytes)
        # Constants of the descriptor (registered: valid one cycle after row_bytes).
        end_delta = Signal(shift, name=f"{name}_end_delta")     # (row_bytes - 1) mod B
        words = Signal(range(max_beats + 1), name=f"{name}_words")  # (row_bytes - 1) // B
        words_1 = Signal(range(max_beats + 1), name=f"{name}_words_1")  # ... + 1
        single = Signal(name=f"{name}_single")     # words == 0
        m.d.sync += [
            end_delta.eq((row_bytes - 1)[:shift]),
            words.eq((row_bytes - 1) >> shift),
            words_1.eq((row_bytes + beat_bytes - 1) >> shift),
            single.eq(row_bytes <= beat_bytes),
        ]

        self.offset = Signal(shift, name=f"{name}_offset")      # lane of the row's first byte
        self.end_lane = Signal(shift, name=f"{name}_end_lane")  # lane of the row's last byte
        next_offset = Signal(shift, name=f"{name}_next_offset")
        next_end = Signal(shift, name=f"{name}_next_end")
        self.first = Signal(name=f"{name}_first")   # the current beat is the row's first
        self.last = Signal(name=f"{name}_last")     # the current beat is the row's last
        remaining = Signal(range(max_beats + 1), name=f"{name}_remaining")  # beats after this

        carry = Signal(name=f"{name}_carry0")
        next_carry = Signal(name=f"{name}_next_carry")
        m.d.comb += [
            carry.eq((offset + end_delta)[shift]),
            next_carry.eq(next_end < next_offset),
        ]
        with m.If(start):
            m.d.sync += [
                self.offset.eq(offset),
                self.end_lane.eq(offset + end_delta),
                next_offset.eq(offset + stride),
                next_end.eq(offset + end_delta + stride),
                remaining.eq(Mux(carry, words_1, words)),
                self.last.eq(single & ~carry),
                self.first.eq(1),
            ]
        with m.Elif(step):
            with m.If(self.last):
                m.d.sync += [
                    self.offset.eq(next_offset),
                    self.end_lane.eq(next_end),
                    next_offset.eq(next_offset + stride),
                    next_end.eq(next_end + stride),
                    remaining.eq(Mux(next_carry, words_1, words)),
                    self.last.eq(single & ~next_carry),
                    self.first.eq(1),
                ]
            with m.Else():
                m.d.sync += [
                    remaining.eq(remaining - 1),
                    self.last.eq(remaining == 1),
                    self.first.eq(0),
                ]


#: Lanes of the write packer's row buffers whose full flags are cleared from one copy of the
#: clear decision.
LANE_GROUP = 4

#: Copies of the burst generator's issue decision: one per slice of its row state.
ROW_STATE_SLICE = 32
ISSUE_COPIES = 3


class BurstGenerator(wiring.Component):
    """Cuts the rows of a descriptor into AXI bursts, one per cycle.

    ``start`` samples ``dram_addr`` and ``rows``; ``dram_stride`` and ``row_bytes`` are read while
    running and must stay constant from ``start`` on. The first burst can be generated three
    cycles after ``start`` (two cycles prepare the first rows). A burst is generated (``issue``,
    payload ``issue_payload``) when ``credit`` is high, ``stop`` is low and the output register has
    room; it then waits in ``burst`` (valid = AxVALID) until ``burst.ready`` (AxREADY). The output
    register has a spare entry, so ``issue`` does not depend on ``burst.ready``. ``issue_beats``
    is the burst's length as the WritePacker counts it. ``finished`` is high when no burst is
    pending or left (all rows cut, or ``stop``).

    ``max_row_bytes`` bounds ``row_bytes`` (counters are sized for it). ``stop`` and ``credit``
    have :data:`ISSUE_COPIES` bits, all equal (copies of one register each, kept apart by the
    driver): the decision to generate a burst is made once per 32-bit slice of the row state,
    each from its own copies of the flags it needs, so no one gate enables the whole row state
    (routed 12 x 12: 104 enables behind one gate at up to 10.8 ns).
    """
    def __init__(self, *, data_width, max_burst, max_row_bytes=65535):
        self.beat_bytes = data_width // 8
        self.max_burst = max_burst
        self.max_row_bytes = max_row_bytes
        super().__init__({
            "start": In(1), "stop": In(ISSUE_COPIES), "credit": In(ISSUE_COPIES),
            "dram_addr": In(32), "dram_stride": In(32), "rows": In(16), "row_bytes": In(16),
            "issue": Out(1), "issue_payload": Out(BurstRequest()),
            "issue_beats": Out(_BurstBeats()),
            "burst": Out(stream.Signature(BurstRequest())),
            "finished": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        beat_bytes, max_burst = self.beat_bytes, self.max_burst
        shift = exact_log2(beat_bytes)
        page_beats = PAGE // beat_bytes
        low_bits = exact_log2(page_beats)          # word index bits within a page
        max_beats = _ceil_div(self.max_row_bytes, beat_bytes) + 1
        diff_shape = Shape.cast(range(-page_beats, max_beats + 1))

        # A row of n bytes starting at lane o covers words(o) = q1 + c bus words, where
        # q1 = ceil(n / B) and c is the carry of o + (n - 1) mod B. Constants of the descriptor,
        # registered (valid one cycle after start, when the first row is prepared):
        n = self.row_bytes
        end_delta = Signal(shift)                   # (n - 1) mod B
        q1 = Signal(range(max_beats + 1))
        q2 = Signal(range(max_beats + 1))           # q1 + 1
        k0 = Signal(diff_shape)                     # q1 - 1 - page_beats
        k1 = Signal(diff_shape)                     # q1 - page_beats
        k2 = Signal(diff_shape)                     # q1 + 1 - page_beats
        fits1 = Signal()                            # q1 <= max_burst
        fits2 = Signal()                            # q1 + 1 <= max_burst
        m.d.sync += [
            end_delta.eq((n - 1)[:shift]),
            q1.eq((n + beat_bytes - 1) >> shift),
            q2.eq((n + 2 * beat_bytes - 1) >> shift),
            k0.eq((n - 1 - PAGE) >> shift),
            k1.eq((n + beat_bytes - 1 - PAGE) >> shift),
            k2.eq((n + 2 * beat_bytes - 1 - PAGE) >> shift),
            fits1.eq(n <= max_burst * beat_bytes),
            fits2.eq(n <= (max_burst - 1) * beat_bytes),
        ]

        # The state of a row: its next word (page number and word within the page), the words
        # left (`left`), the words to the end of the page (`page_left`), their difference, and
        # what the next burst is: the row's last (left <= max_burst and left <= page_left) or
        # cut at the page end (page_left <= max_burst) or max_burst long.
        row_layout = data.StructLayout({
            "word_low": low_bits, "page": 32 - 12, "left": range(max_beats + 1),
            "page_left": range(page_beats + 1), "diff": diff_shape, "end": 1, "page_cut": 1,
        })

        # Rows are prepared in a pipeline that advances by one row when the current row's last
        # burst is generated: `addr` (address of the row after `upcoming`) -> `upcoming` (state of
        # the row after the current one) -> `cur`.
        # Data registers (not reset): `fill` and `active` say when they hold a row.
        addr = Signal(32, reset_less=True)
        upcoming = Signal(row_layout, reset_less=True)
        fresh = Signal(row_layout)                  # state of the row at `addr`
        wl = addr[shift:12]
        carry = Signal()
        sums = [Signal(diff_shape, name=f"page_sum{i}") for i in range(3)]
        m.d.comb += [
            carry.eq((addr[:shift] + end_delta)[shift]),
            sums[0].eq(wl + k0),
            sums[1].eq(wl + k1),
            sums[2].eq(wl + k2),
            fresh.word_low.eq(wl),
            fresh.page.eq(addr[12:]),
            fresh.left.eq(Mux(carry, q2, q1)),
            fresh.page_left.eq(page_beats - wl),
            fresh.diff.eq(Mux(carry, sums[2], sums[1])),
            # left <= page_left  <=>  diff <= 0  <=>  diff - 1 < 0
            fresh.end.eq(Mux(carry, fits2 & sums[1][-1], fits1 & sums[0][-1])),
            fresh.page_cut.eq(wl >= page_beats - max_burst),
        ]

        cur = Signal(row_layout, reset_less=True)
        active = Signal()                           # `cur` is a row with bursts left
        first = Signal()                            # the next burst is the first of its row
        rows_left = Signal(16)                      # rows not completely cut, `cur` included
        last_row = Signal()                         # rows_left == 1
        any_rows = Signal()
        fill = Signal(2)                            # start-up: [0] addr valid, [1] upcoming valid

        # The issue decision, once per copy: copy 0 is ``issue`` (and moves everything but the
        # row state), copy s the enable of slice s of ``cur`` and ``upcoming``. Each has its own
        # copies of ``active`` and of the output register's ``spare_valid`` (registers updated
        # alike) and of the inputs ``stop`` and ``credit``.
        actives = [active] + [Signal(name=f"active{REPLICA}{s}") for s in range(1, ISSUE_COPIES)]
        spares = [Signal(name=f"burst_spare{REPLICA}{s}") for s in range(ISSUE_COPIES)]
        issues = [Signal(name=f"issue_{s}") for s in range(ISSUE_COPIES)]
        m.d.comb += [issue.eq(act & ~self.stop[s] & self.credit[s] & ~spare)
                     for s, (issue, act, spare) in enumerate(zip(issues, actives, spares))]
        for issue, spare in zip(issues, spares):
            with m.If(~self.burst.valid | self.burst.ready):
                m.d.sync += spare.eq(0)
            with m.Elif(issue):
                m.d.sync += spare.eq(1)

        len_of = [(cur.left - 1)[:8], (cur.page_left - 1)[:8], C(max_burst - 1, 8)]
        spare_valid = Signal()
        m.d.comb += [
            self.issue.eq(issues[0]),
            self.issue_payload.addr.eq(Cat(C(0, shift), cur.word_low, cur.page)),
            self.issue_payload.len.eq(Mux(cur.end, len_of[0],
                                          Mux(cur.page_cut, len_of[1], len_of[2]))),
            self.issue_payload.first.eq(first),
        ]
        # The same length for the WritePacker, also straight from registers.
        def of_burst(row_end, page_end, other):
            return Mux(cur.end, row_end, Mux(cur.page_cut, page_end, other))
        m.d.comb += [
            self.issue_beats.rest.eq(of_burst((cur.left - 2)[:8], (cur.page_left - 2)[:8],
                                              C((max_burst - 2) % 256, 8))),
            self.issue_beats.single.eq(of_burst(cur.left == 1, cur.page_left == 1,
                                                int(max_burst == 1))),
            self.issue_beats.pair.eq(of_burst(cur.left == 2, cur.page_left == 2,
                                              int(max_burst == 2))),
        ]
        row_done = Signal()
        m.d.comb += row_done.eq(self.issue & cur.end)

        # What ``cur`` becomes when it moves (the next row, or the rest of this one); it depends
        # on registers only. ``issue`` (which waits for the credit) only enables the update.
        cur_next = Signal(row_layout)
        m.d.comb += cur_next.eq(cur)
        with m.If(fill[1] | cur.end):
            m.d.comb += cur_next.eq(upcoming)
        with m.Elif(cur.page_cut):
            # The burst ends at the page end: the row goes on at the next page.
            m.d.comb += [
                cur_next.word_low.eq(0),
                cur_next.page.eq(cur.page + 1),
                cur_next.left.eq(cur.diff),
                cur_next.page_left.eq(page_beats),
                cur_next.diff.eq(cur.diff - page_beats),
                cur_next.end.eq(cur.diff <= max_burst),
                cur_next.page_cut.eq(int(page_beats <= max_burst)),
            ]
        with m.Else():
            # A burst of max_burst words inside the page.
            m.d.comb += [
                cur_next.word_low.eq(cur.word_low + max_burst),
                cur_next.left.eq(cur.left - max_burst),
                cur_next.page_left.eq(cur.page_left - max_burst),
                cur_next.end.eq((cur.left <= 2 * max_burst) & (cur.diff <= 0)),
                cur_next.page_cut.eq(cur.page_left <= 2 * max_burst),
            ]

        with m.If(self.start):
            m.d.sync += [
                addr.eq(self.dram_addr), fill.eq(0b01),
                rows_left.eq(self.rows), last_row.eq(self.rows == 1), any_rows.eq(self.rows != 0),
            ]
            m.d.sync += [flag.eq(0) for flag in actives]
        with m.Else():
            m.d.sync += fill.eq(fill << 1)
            with m.If(fill.any() | row_done):
                m.d.sync += addr.eq(addr + self.dram_stride)
            with m.If(fill[1]):
                m.d.sync += [flag.eq(any_rows) for flag in actives]
            with m.If(row_done):
                m.d.sync += [rows_left.eq(rows_left - 1), last_row.eq(rows_left == 2)]
                with m.If(last_row):
                    m.d.sync += [flag.eq(0) for flag in actives]
            with m.If(fill[1] | self.issue):
                m.d.sync += first.eq(fill[1] | cur.end)
            # The row state in slices, each under its own copy of the decision.
            cur_bits, next_bits = cur.as_value(), cur_next.as_value()
            upcoming_bits, fresh_bits = upcoming.as_value(), fresh.as_value()
            assert len(cur_bits) <= ISSUE_COPIES * ROW_STATE_SLICE
            for s, lo in enumerate(range(0, len(cur_bits), ROW_STATE_SLICE)):
                hi = min(lo + ROW_STATE_SLICE, len(cur_bits))
                with m.If(fill.any() | (issues[s] & cur.end)):
                    m.d.sync += upcoming_bits[lo:hi].eq(fresh_bits[lo:hi])
                with m.If(fill[1] | issues[s]):
                    m.d.sync += cur_bits[lo:hi].eq(next_bits[lo:hi])

        _output_register(m, self.burst, self.issue, self.issue_payload, "burst")
        m.d.comb += spare_valid.eq(spares[0])
        m.d.comb += self.finished.eq(~fill.any() & ~self.burst.valid & ~spare_valid &
                                     (~active | self.stop))
        return m


class ReadRealigner(wiring.Component):
    """Turns the R beats of a LOAD (only beats with an OKAY response) into complete buffer rows.

    ``start`` samples ``offset`` (the low address bits of ``dram_addr``); ``stride`` (low bits of
    ``dram_stride``), ``row_bytes``, ``sram_row`` and ``buffer`` must be stable from the cycle
    before ``start`` and stay constant while running.
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
            "pending": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        width, beat_bytes = self.data_width, self.beat_bytes
        row_len = 4 * self.lanes
        slots = _ceil_div(row_len, beat_bytes) + 1       # a row may touch one word more

        accept = Signal()                   # a beat enters the rotation stage
        rows = _RowTracker(m, start=self.start, step=accept, offset=self.offset,
                           stride=self.stride, row_bytes=self.row_bytes, beat_bytes=beat_bytes,
                           max_beats=slots, name="row")
        offset = rows.offset
        slot = Signal(slots, init=1)        # one-hot: the beat index within the current row
        next_row = Signal(16, reset_less=True)  # buffer row of the row being assembled

        # Two stages: ROTATE registers the beat rotated into place with what the assembly needs
        # to know about it (which bytes of the assembly it writes, whether it ends its row), and
        # ASSEMBLE writes it into the assembly register. So the byte rotation and the assembly
        # multiplexers are not one path, and the assembly's enable is a flip-flop and the
        # output's handshake. ``pending``: a beat is in ROTATE.
        rotated_q = Signal(width, reset_less=True)
        # Which bytes of the assembly the beat in ROTATE writes (``mask_q``, one bit per byte of
        # the assembly), decided as the beat is accepted: the assembly and the row register then
        # load through one LUT per bit (routed 12 x 12: the mask from the slot register in front
        # of them was 9.9 ns to the row register, 40 endpoints).
        mask_q = Signal(slots * beat_bytes, reset_less=True)
        last_q = Signal(reset_less=True)
        row_q = Signal(16, reset_less=True)
        valid_q = Signal()
        assemble = Signal()                 # the beat in ROTATE moves into the assembly
        blocked = Signal()                  # it is its row's last and the row register is full
        m.d.comb += [
            blocked.eq(self.row.valid & ~self.row.ready),
            assemble.eq(valid_q & ~(last_q & blocked)),
            self.beat.ready.eq(~valid_q | assemble),
            accept.eq(self.beat.valid & self.beat.ready),
            self.pending.eq(valid_q),
        ]
        # Each slot of the assembly register (``width`` flip-flops) loads under its own copy of
        # ``assemble``, from its own copies of ``valid_q`` and ``last_q`` (registers updated
        # alike): one enable for the whole register was a net of 448 loads (routed 12 x 12:
        # 24 endpoints of up to 10.2 ns).
        slot_assemble = []
        for i in range(slots):
            valid_copy = Signal(name=f"valid{REPLICA}{i}")
            last_copy = Signal(name=f"last{REPLICA}{i}", reset_less=True)
            copy_assemble = Signal(name=f"assemble_{i}")
            m.d.comb += copy_assemble.eq(valid_copy & ~(last_copy & blocked))
            with m.If(accept):
                m.d.sync += [valid_copy.eq(1), last_copy.eq(rows.last)]
            with m.Elif(copy_assemble):
                m.d.sync += valid_copy.eq(0)
            slot_assemble.append(copy_assemble)

        # Rotate right by `offset` bytes: rotated lane l holds memory lane (l + offset) mod B.
        # Lanes l < B - offset of beat k belong to slot k of the row, the others to slot k - 1
        # (k is one-hot in `slot`). All of this is written as whole-vector operations (one per
        # slot, not one per byte): the same logic, but it simulates much faster in event-driven
        # simulators.
        payload = self.beat.payload
        with m.If(accept):
            m.d.sync += [
                rotated_q.eq(Cat(payload, payload).bit_select(Cat(C(0, 3), offset), width)),
                mask_q.eq(Cat(
                    (slot[i] & (offset < beat_bytes - lane)) |
                    ((slot[i + 1] & ~(offset < beat_bytes - lane)) if i + 1 < slots else 0)
                    for i in range(slots) for lane in range(beat_bytes))),
                last_q.eq(rows.last), row_q.eq(next_row),
            ]
        with m.If(accept):
            m.d.sync += valid_q.eq(1)
        with m.Elif(assemble):
            m.d.sync += valid_q.eq(0)
        write_mask = Signal(slots * width)
        m.d.comb += write_mask.eq(Cat(bit.replicate(8) for bit in mask_q))
        assembly = Signal(slots * width, reset_less=True)
        updated = Signal(slots * width)
        m.d.comb += updated.eq((assembly & ~write_mask) |
                               (Cat(*[rotated_q] * slots) & write_mask))
        for i in range(slots):
            with m.If(slot_assemble[i]):
                m.d.sync += assembly[i * width:(i + 1) * width].eq(
                    updated[i * width:(i + 1) * width])

        with m.If(self.start):
            m.d.sync += [slot.eq(1), next_row.eq(self.sram_row)]
        with m.Elif(accept):
            with m.If(rows.last):
                m.d.sync += [slot.eq(1), next_row.eq(next_row + 1)]
            with m.Else():
                m.d.sync += slot.eq(slot << 1)

        # Bytes of the row kept (p < row_bytes): a constant of the descriptor, in two register
        # stages (slot and lane comparisons, then per byte: the slot is below row_bytes' slot, or
        # is that slot and the lane is below). Ready two cycles after start, before any beat.
        shift = exact_log2(beat_bytes)
        slot_of_end = self.row_bytes >> shift
        lane_below = Signal(beat_bytes, reset_less=True)
        slot_below = Signal(slots, reset_less=True)
        slot_at = Signal(slots, reset_less=True)
        keep_bytes = Signal(row_len, reset_less=True)
        m.d.sync += [
            lane_below.eq(Cat(self.row_bytes[:shift] > lane for lane in range(beat_bytes))),
            slot_below.eq(Cat(slot_of_end > i for i in range(slots))),
            slot_at.eq(Cat(slot_of_end == i for i in range(slots))),
            keep_bytes.eq(Cat(slot_below[p // beat_bytes] |
                              (slot_at[p // beat_bytes] & lane_below[p % beat_bytes])
                              for p in range(row_len))),
        ]
        keep = Cat(bit.replicate(8) for bit in keep_bytes)
        row_out = Signal.like(self.row.payload, reset_less=True)   # ``row.valid`` qualifies it
        m.d.comb += self.row.payload.eq(row_out)
        # The row register loads in every cycle it is free (a row completes only then: ``beat``
        # waits otherwise), so its enable is the handshake alone, not the beat logic; with a
        # consumer that is always ready (the Tessera top) it has no enable at all.
        with m.If(~self.row.valid | self.row.ready):
            m.d.sync += [
                self.row.valid.eq(assemble & last_q),
                row_out.buffer.eq(self.buffer),
                row_out.row.eq(row_q),
                row_out.data.eq(updated[:8 * row_len] & keep),
            ]
        return m


#: Words the WritePacker's filler may be ahead of its beats (the depth of its word queue: two
#: keep one word per cycle flowing; more let a row's buffer free earlier).
WORD_QUEUE_DEPTH = 4


class WritePacker(wiring.Component):
    """Turns buffer rows of a STORE into W beats with WSTRB, cut into bursts by ``burst_len``
    (the length of each burst, in order, as :class:`_BurstBeats`).

    The first beat of a burst is counted from the head of ``burst_len``, which is popped with that
    beat; the rest of the burst from registers (``pending`` is high while beats of a burst whose
    length was popped are left). ``w`` comes from an output register with a spare entry, so no
    logic waits for ``w.ready``; ``sending`` is high while a beat waits there.

    ``start`` samples ``offset``; ``stride`` and ``row_bytes`` must be stable from the cycle before
    ``start`` and stay constant while running. ``row_lane_valid`` is ``row.valid`` again, one copy
    per 32-bit lane of the row (all equal to it), for each lane's row buffer loads.
    """
    def __init__(self, *, data_width, lanes):
        self.data_width = data_width
        self.beat_bytes = data_width // 8
        self.lanes = lanes
        shift = exact_log2(self.beat_bytes)
        super().__init__({
            "start": In(1), "offset": In(shift), "stride": In(shift), "row_bytes": In(16),
            "row": In(stream.Signature(RowData(lanes))),
            "row_lane_valid": In(lanes),
            "burst_len": In(stream.Signature(_BurstBeats())),
            "w": Out(stream.Signature(WriteBeat(data_width))),
            "pending": Out(1),
            "sending": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        width, beat_bytes = self.data_width, self.beat_bytes
        row_len = 4 * self.lanes
        slots = _ceil_div(row_len, beat_bytes) + 1

        advance = Signal()                  # one W beat is produced
        rows = _RowTracker(m, start=self.start, step=advance, offset=self.offset,
                           stride=self.stride, row_bytes=self.row_bytes, beat_bytes=beat_bytes,
                           max_beats=slots, name="row")
        # Rows wait in two row buffers, each loaded only while it is empty: its enable is the
        # incoming ``valid`` and two flip-flops, and ``row.ready`` is a flip-flop's value, so
        # neither waits for the beat logic (a single buffer refilled in the cycle of its row's
        # last beat, or a shifting register, put that logic in front of hundreds of enables).
        # The buffers load in 32-bit lanes, each under its own copies of ``fill`` and the full
        # flags (updated alike): one load decision for a whole row buffer was a net to 384
        # enables across the die (routed 12 x 12: up to 12.4 ns).
        row_bits = len(self.row.payload.as_value())
        buffers = [Signal(row_bits, name=f"row_buffer{i}", reset_less=True) for i in range(2)]
        buffer_full = [Signal(name=f"row_buffer{i}_full") for i in range(2)]
        loaded = [Signal(name=f"row_buffer{i}_loaded") for i in range(2)]
        fill = Signal()                     # the buffer the next row goes into
        lane_fill = [Signal(name=f"fill{REPLICA}{k}") for k in range(self.lanes)]
        lane_full = [[Signal(name=f"row_buffer{i}_full{REPLICA}{k}") for k in range(self.lanes)]
                     for i in range(2)]
        fill_full = Mux(fill, buffer_full[1], buffer_full[0])

        # The words of the rows go, in order, into a small queue (``words``): a filler walks the
        # slots of the row in buffer ``send``, one word per cycle while the queue has room, and
        # its own row tracker (``fill_rows``, stepped by its pushes) says which word is a row's
        # last (the buffer is then free). The beats are cut from the word taken from the queue
        # (``current``) and the one before it (``previous``). So the multiplexer that picks a word
        # from 2 x ``slots`` spread over the row buffers is steered by the filler's flip-flops
        # (a copy of ``send`` per slot, updated alike, and a one-hot slot register) and its push
        # by a registered credit flag, never by the beat logic's ``advance`` (``current``
        # loaded from the buffers under ``advance``: routed 12 x 12, 11.3-12.6 ns, 10-11 ns of
        # it routing). The queue is a SlicedFIFO (32-bit slices).
        push = Signal()                     # the filler puts a word into the queue
        fill_rows = _RowTracker(m, start=self.start, step=push, offset=self.offset,
                                stride=self.stride, row_bytes=self.row_bytes,
                                beat_bytes=beat_bytes, max_beats=slots, name="fill")
        send = Signal()                     # the buffer of the row being pushed
        send_slot = [Signal(name=f"send{REPLICA}{j}") for j in range(slots)]
        slot_at = Signal(slots, init=1)     # one-hot: the slot pushed next

        def slot_words(value):
            # The row's slots, then padding: the slot after a row's last byte is part of the
            # last beat's pair (its lanes are never strobed).
            padded = Cat(value, C(0, slots * width - row_bits))
            return [padded.word_select(i, width) for i in range(slots)]
        words = [slot_words(buffer) for buffer in buffers]
        send_full = Mux(send, loaded[1], loaded[0])
        queue = sliced_fifo_for(width, WORD_QUEUE_DEPTH, split_read=True)
        m.submodules.words = ResetInserter(self.start)(queue)
        # A pushed word reaches the queue a cycle later, through two levels of registers: each
        # slot's word (from the buffer ``send``, or zero unless it is the slot pushed), a
        # register per slot beside that slot's data, then their OR into the queue's storage with
        # a registered write enable (one copy per slice). The word multiplexer over the row
        # buffers, which span some 20 columns, was one path into the storage (routed 12 x 12:
        # 9.9 ns). The filler counts the queue's free entries itself (``credits``, words pushed
        # and not yet read out), as the queue's ``w_rdy`` does not yet see the word in flight.
        slot_regs = []
        for j, (sel, w0, w1) in enumerate(zip(send_slot, *words)):
            reg = Signal(width, name=f"push_slot{j}", reset_less=True)
            m.d.sync += reg.eq(zero_unless(slot_at[j], Mux(sel, w1, w0)))
            slot_regs.append(reg)
        pushed = replicate(m, push, queue.slices, "word_push")
        credits = Signal(range(WORD_QUEUE_DEPTH + 1), init=WORD_QUEUE_DEPTH)
        has_credit = Signal(init=1)
        popped = queue.r_en[0] & queue.r_rdy
        credits_next = Signal.like(credits)
        m.d.comb += [
            credits_next.eq(credits - push + popped),
            push.eq(send_full & has_credit & ~self.start),
            queue.w_en.eq(Cat(*pushed)),
            queue.w_data.eq(reduce(operator.or_, slot_regs)),
        ]
        with m.If(self.start):
            m.d.sync += [credits.eq(WORD_QUEUE_DEPTH), has_credit.eq(1)]
        with m.Else():
            m.d.sync += [credits.eq(credits_next), has_credit.eq(credits_next != 0)]
        # A buffer has two full flags: ``loaded`` for the filler (cleared as the row's last word
        # is pushed) and ``buffer_full`` with its per-lane copies for the loads (cleared two
        # cycles later, all in the same cycle: a ``freed`` pulse, then a copy of it per group of
        # LANE_GROUP lanes, each clearing its lanes' copies). The clear decision (the push, which
        # waits for the queue's credit) then reaches the lanes across the die from flip-flops
        # (routed 12 x 12: the push through the clear into a lane's full flag, up to 10.1 ns). A
        # buffer takes its next row two cycles later for it.
        freed = [Signal(name=f"row_buffer{i}_freed") for i in range(2)]
        groups = -(-self.lanes // LANE_GROUP)
        freed_groups = [replicate(m, freed[i], groups + 1, f"row_buffer{i}_freed_group")
                        for i in range(2)]
        m.d.sync += [freed[i].eq(push & fill_rows.last & (send == i) & ~self.start)
                     for i in range(2)]
        with m.If(push):
            with m.If(fill_rows.last):
                # The row is in the queue: the filler is done with its buffer; the other
                # buffer's row follows.
                with m.If(send):
                    m.d.sync += loaded[1].eq(0)
                with m.Else():
                    m.d.sync += loaded[0].eq(0)
                m.d.sync += [sel.eq(~send) for sel in [send, *send_slot]]
                m.d.sync += slot_at.eq(1)
            with m.Else():
                m.d.sync += slot_at.eq(slot_at << 1)
        # The queue's head moves into ``current`` (the word being sent) whenever ``current`` is
        # free or being sent: the beat window reads two registers, not the queue's storage
        # (its asynchronous read in front of the window cost 2 ns: routed 12 x 12, 12.1 ns).
        current = Signal(width, reset_less=True)    # qualified by ``current_valid``
        current_valid = Signal()
        previous = Signal(width, reset_less=True)
        with m.If(~current_valid | advance):
            m.d.sync += current_valid.eq(queue.r_rdy)

        # Burst lengths: after the first beat of a burst (from the head of `burst_len`), `rest`
        # and `rest_last` count the others.
        in_burst = Signal()                 # beats of a burst after its first one are left
        rest = Signal(8)                    # beats of the burst after the next one
        rest_last = Signal()                # the next beat is the burst's last (rest == 0)
        head = self.burst_len.payload

        beat = Signal(WriteBeat(width))
        spare_valid = Signal()
        m.d.comb += [
            advance.eq(current_valid & ~spare_valid & (in_burst | self.burst_len.valid)),
            self.row.ready.eq(~fill_full),
            self.burst_len.ready.eq(advance & ~in_burst),
            self.pending.eq(in_burst),
        ]
        with m.If(self.start):
            m.d.sync += in_burst.eq(0)
        with m.Elif(advance):
            with m.If(in_burst):
                m.d.sync += [in_burst.eq(~rest_last), rest.eq(rest - 1),
                             rest_last.eq(rest == 1)]
            with m.Else():
                m.d.sync += [in_burst.eq(~head.single), rest.eq(head.rest),
                             rest_last.eq(head.pair)]

        # Lane l of the beat is row byte beat*B + l - offset: the window of (previous, current)
        # that starts `B - offset` bytes into the pair. With the lanes in reverse order it starts
        # `offset` bytes into the pair (no subtraction before the multiplexers).
        window = Signal(width)

        def reverse(value):
            return Cat(value.word_select(i, 8) for i in reversed(range(len(value) // 8)))
        m.d.comb += window.eq(reverse(reverse(Cat(previous, current))
                                      .bit_select(Cat(C(0, 3), rows.offset), width)))
        # Strobes: lanes before the row's first byte (first beat) and after its last (last beat).
        all_lanes = (1 << beat_bytes) - 1
        from_first = Cat(rows.offset <= lane for lane in range(beat_bytes))
        to_last = Cat(rows.end_lane >= lane for lane in range(beat_bytes))
        m.d.comb += [
            beat.data.eq(window),
            beat.strb.eq(Mux(rows.first, from_first, all_lanes) &
                         Mux(rows.last, to_last, all_lanes)),
            beat.last.eq(Mux(in_burst, rest_last, head.single)),
            beat.row_last.eq(rows.last),
        ]

        # ``current`` and ``previous`` load in slices of the queue's width, each under its own
        # copy of ``advance`` (and of the queue read), from its own copies of ``current_valid``,
        # the output register's ``spare_valid`` and ``in_burst`` (registers updated alike, with
        # the queue's per-slice read enables and ``r_rdy`` copies): one ``advance`` loading all of
        # them was routed 12 x 12 at 10.0 ns (36 endpoints).
        for j in range(queue.slices):
            lo, hi = j * queue.slice_width, min((j + 1) * queue.slice_width, width)
            valid_copy = Signal(name=f"current_valid{REPLICA}{j}")
            spare_copy = Signal(name=f"w_spare_valid{REPLICA}{j}")
            burst_copy = Signal(name=f"in_burst{REPLICA}{j}")
            advance_copy = Signal(name=f"advance_{j}")
            take_copy = Signal(name=f"take_{j}")
            m.d.comb += [
                advance_copy.eq(valid_copy & ~spare_copy & (burst_copy | self.burst_len.valid)),
                take_copy.eq(~valid_copy | advance_copy),
                queue.r_en[j].eq(take_copy),
            ]
            with m.If(take_copy):
                m.d.sync += [current[lo:hi].eq(queue.r_data[lo:hi]),
                             valid_copy.eq(queue.r_rdy_copies[j])]
            with m.If(advance_copy):
                m.d.sync += previous[lo:hi].eq(current[lo:hi])
            with m.If(~self.w.valid | self.w.ready):
                m.d.sync += spare_copy.eq(0)
            with m.Elif(advance_copy):
                m.d.sync += spare_copy.eq(1)
            with m.If(self.start):
                m.d.sync += [burst_copy.eq(0), valid_copy.eq(0)]
            with m.Elif(advance_copy):
                m.d.sync += burst_copy.eq(Mux(burst_copy, ~rest_last, ~head.single))
        for i in range(2):
            with m.If(freed_groups[i][groups]):
                m.d.sync += buffer_full[i].eq(0)
            for k in range(self.lanes):
                with m.If(freed_groups[i][k // LANE_GROUP]):
                    m.d.sync += lane_full[i][k].eq(0)
        with m.If(self.start):
            m.d.sync += [flag.eq(0) for flag in [*buffer_full, *loaded, *lane_full[0],
                                                 *lane_full[1], *freed_groups[0],
                                                 *freed_groups[1]]]
            m.d.sync += [sel.eq(fill) for sel in [send, *send_slot]]
            m.d.sync += [slot_at.eq(1), current_valid.eq(0)]
        with m.If(self.row.valid & self.row.ready):
            m.d.sync += fill.eq(~fill)
            for i in range(2):
                with m.If(fill == i):
                    m.d.sync += [buffer_full[i].eq(1), loaded[i].eq(1)]
        payload = self.row.payload.as_value()
        for k in range(self.lanes):
            lane = slice(32 * k, 32 * (k + 1))
            with m.If(self.row_lane_valid[k] &
                      ~Mux(lane_fill[k], lane_full[1][k], lane_full[0][k])):
                m.d.sync += lane_fill[k].eq(~lane_fill[k])
                for i in range(2):
                    with m.If(lane_fill[k] == i):
                        m.d.sync += [buffers[i][lane].eq(payload[lane]), lane_full[i][k].eq(1)]

        m.d.comb += spare_valid.eq(_output_register(m, self.w, advance, beat, "w"))
        m.d.comb += self.sending.eq(self.w.valid | spare_valid)
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
    row_prefetch : int
        Buffer rows requested ahead of the WritePacker on STORE (default :data:`ROW_PREFETCH`);
        enough to cover the buffer side's latency keeps short rows streaming.

    Attributes
    ----------
    beat_bytes : int
        Bytes per bus word.
    row_bytes : dict
        Row length in bytes of each :class:`Buffer`.
    """

    #: Default buffer rows requested ahead of the WritePacker on STORE.
    ROW_PREFETCH = 4

    def __init__(self, *, data_width=64, id_width=4, lanes=8, scratchpad_depth=256,
                 accumulator_depth=256, max_burst=256, max_outstanding_reads=4,
                 row_prefetch=ROW_PREFETCH):
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
        self.row_prefetch = check_dimension("row_prefetch", row_prefetch, maximum=64)
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
                                                      max_burst=self.max_burst,
                                                      max_row_bytes=self.row_bytes[1])
        m.submodules.realigner = realigner = ReadRealigner(data_width=self.data_width,
                                                           lanes=self.lanes)
        m.submodules.packer = packer = WritePacker(data_width=self.data_width, lanes=self.lanes)
        # Small queues (distributed RAM); unbuffered because an entry may be needed the cycle
        # after it is written. An entry lives from the cycle its burst is generated to its last R
        # beat (read_addrs) or its B response (write_addrs), or until the WritePacker sends the
        # burst's first beat (write_lens). One spare entry lets a new burst be generated in the
        # cycle an old one completes. SlicedFIFOs of one slice (SyncFIFO's interface and timing):
        # their ``r_rdy``/``w_rdy`` are flip-flops, not decoded from the level (routed 12 x 12:
        # the packer's beat logic started at write_lens' level, 10.9 ns).
        def queue(width):
            return SlicedFIFO(slice_width=width, slices=1, depth=outstanding + 1)
        m.submodules.read_addrs = read_addrs = queue(32)
        m.submodules.write_addrs = write_addrs = queue(32)
        m.submodules.write_lens = write_lens = queue(_BurstBeats().size)
        # Credit: fewer than `outstanding` bursts of the running direction tracked. The credit
        # is one register (computed from the FIFOs' next levels and the direction registers), so
        # the generator's `issue` — the enable of its row state and of the burst register — is
        # one gate on flip-flops, not the R and B channels and the realigner's ready. A burst
        # that completes frees its credit a cycle later. (The direction is a cycle old: the
        # generator is not active in a transfer's first cycles, while it fills its pipeline.)
        # The R channel enters through a register slice: the realigner, the error latch and the
        # read tracking start at its flip-flops, and RREADY on the bus is a flip-flop. (A beat in
        # the slice has left the bus but not the tracking FIFO, so the outstanding-read bound
        # holds on the bus too.)
        r_slice = m.submodules.r_slice = RegisterSlice(data.StructLayout({
            "data": self.data_width, "resp": 2, "last": 1}))
        r = r_slice.o.payload
        rvalid = r_slice.o.valid
        rready = r_slice.o.ready
        credit = Signal()

        def level_next(fifo):
            return fifo.level + (fifo.w_en & fifo.w_rdy) - (fifo.r_en & fifo.r_rdy)

        desc = Signal(DmaDescriptor(), reset_less=True)     # loaded when a descriptor is taken
        start = Signal()                    # START with an accepted descriptor (a register)
        loading = Signal()                  # state == LOAD (a register of its own)
        storing = Signal()                  # state == STORE (a register of its own)
        no_more_bursts = Signal()           # STORE: every burst generated and sent (below)
        # ``storing & ~drop_rows`` (rows go to the packer), one register per 32-bit lane of the
        # row, loaded alike: ``drop_rows`` is ``storing & no_more_bursts`` a cycle late, and the
        # state machine below overrides the copies as it sets or clears ``storing``. Each lane's
        # row buffer loads under its own copy, not behind one gate across the die (routed
        # 12 x 12: ``storing`` through that gate to a lane's full flag was the critical path,
        # 10.6 ns, 9.1 of it routing).
        row_accept = [Signal(name=f"row_accept{REPLICA}{k}") for k in range(self.lanes)]
        m.d.sync += [flag.eq(storing & ~no_more_bursts) for flag in row_accept]
        # (``credit`` and ``failed`` have copies for the burst generator: ISSUE_COPIES each.)
        credits = [credit] + [Signal(name=f"credit{REPLICA}{i}") for i in range(1, ISSUE_COPIES)]
        m.d.sync += [flag.eq((storing & (level_next(write_addrs) < outstanding)) |
                             (loading & (level_next(read_addrs) < outstanding)))
                     for flag in credits]
        failed = Signal()                   # error != NONE (a register of its own)
        faileds = [failed] + [Signal(name=f"failed{REPLICA}{i}") for i in range(1, ISSUE_COPIES)]

        # --- control ------------------------------------------------------------------------------
        # The state decode is written as plain expressions (continuous assignments in Verilog), not
        # with m.FSM: a combinational process that reads only registers is never evaluated by a
        # simulator with SystemVerilog initialisation semantics (Icarus -g2012) until a register
        # changes, which left READY/VALID outputs X after reset.
        state = Signal(_State)
        # Each check of the descriptor is registered as the descriptor is taken (from the
        # incoming payload, in IDLE), and in CHECK their combination goes into ``start`` (START
        # with an accepted descriptor), a register of its own: its many loads (the STORE request
        # counters, the realigner, the packer, the state machine) start at a flip-flop, not behind
        # the checks (routed 12 x 12: 11.0 ns to the STORE request row's enable), and ``start``
        # is one gate after the check registers, not behind the range check's adders (routed
        # 12 x 12: 11.8 ns). In START a rejected descriptor (``~start``) gets its error code
        # from the checks.
        zero_rows = Signal()
        zero_bytes = Signal()
        too_long = Signal(2)                # per buffer
        beyond = Signal(2)                  # per buffer
        incoming = self.descriptor.payload
        with m.If(state == _State.IDLE):
            m.d.sync += [
                zero_rows.eq(incoming.rows == 0),
                zero_bytes.eq(incoming.row_bytes == 0),
                too_long.eq(Cat(incoming.row_bytes > self.row_bytes[0],
                                incoming.row_bytes > self.row_bytes[1])),
                beyond.eq(Cat(_sum_exceeds(incoming.sram_row, incoming.rows,
                                           self.scratchpad_depth),
                              _sum_exceeds(incoming.sram_row, incoming.rows,
                                           self.accumulator_depth))),
            ]
        m.d.sync += start.eq((state == _State.CHECK) & ~zero_rows & ~zero_bytes &
                             ~too_long.bit_select(desc.buffer, 1) &
                             ~beyond.bit_select(desc.buffer, 1))
        code = Signal(4)
        m.d.comb += code.eq(descriptor_error(zero_rows=zero_rows, zero_bytes=zero_bytes,
                                             too_long=too_long.bit_select(desc.buffer, 1),
                                             beyond=beyond.bit_select(desc.buffer, 1)))
        m.d.comb += [
            self.descriptor.ready.eq(state == _State.IDLE),
            self.busy.eq(state != _State.IDLE),
        ]

        read_drained = Signal()
        write_drained = Signal()
        r_error = Signal()
        b_error = Signal()
        b_resp = Signal(2, reset_less=True)     # the last B response's BRESP, registered
        m.d.sync += self.done.eq(0)
        # ``desc`` loads the incoming payload in every cycle of IDLE (it is used only after
        # IDLE, and then holds the payload of the cycle the descriptor was taken), under flags
        # of its own that say "IDLE" (``idle``, one copy per 32 bits of the descriptor, set and
        # cleared with the state): a decode of the state register as the enable of its ~110
        # flip-flops was routed 12 x 12 at 9.8 ns (33 endpoints).
        desc_bits = desc.as_value()
        chunks = range(0, len(desc_bits), 32)
        idle = [Signal(init=1, name=f"idle{REPLICA}{i}") for i in range(len(chunks))]
        for flag, lo in zip(idle, chunks):
            hi = min(lo + 32, len(desc_bits))
            with m.If(flag):
                m.d.sync += desc_bits[lo:hi].eq(self.descriptor.payload.as_value()[lo:hi])
        with m.Switch(state):
            with m.Case(_State.IDLE):
                with m.If(self.descriptor.valid):
                    m.d.sync += [state.eq(_State.CHECK), *(flag.eq(0) for flag in idle)]
            with m.Case(_State.CHECK):
                m.d.sync += state.eq(_State.START)
            with m.Case(_State.START):
                with m.If(~start):
                    m.d.sync += [self.done.eq(1), state.eq(_State.IDLE),
                                 *(flag.eq(1) for flag in idle)]
                with m.Elif(desc.direction == Direction.STORE):
                    m.d.sync += [storing.eq(1), state.eq(_State.STORE),
                                 *(flag.eq(1) for flag in row_accept)]
                with m.Else():
                    m.d.sync += [loading.eq(1), state.eq(_State.LOAD)]
            with m.Case(_State.LOAD):
                with m.If(read_drained):
                    m.d.sync += [self.done.eq(1), loading.eq(0), state.eq(_State.IDLE),
                                 *(flag.eq(1) for flag in idle)]
            with m.Case(_State.STORE):
                with m.If(write_drained):
                    m.d.sync += [self.done.eq(1), storing.eq(0), state.eq(_State.IDLE),
                                 *(flag.eq(1) for flag in idle),
                                 *(flag.eq(0) for flag in row_accept)]

        # Error latch: cleared when a descriptor is accepted, set by a rejection or by the first
        # error response. The value depends on the state only, the events just enable the latch.
        with m.If((self.descriptor.valid & (state == _State.IDLE)) |
                  ((state == _State.START) & ~start) | r_error | b_error):
            m.d.sync += [
                self.error.eq(
                    Mux(loading, Mux(r.resp == Resp.DECERR, DmaError.READ_DECERR,
                                     DmaError.READ_SLVERR),
                    Mux(storing, Mux(b_resp == Resp.DECERR, DmaError.WRITE_DECERR,
                                     DmaError.WRITE_SLVERR),
                    Mux(state == _State.START, code, DmaError.NONE)))),
                self.error_addr.eq(
                    Mux(loading, read_addrs.r_data,
                    Mux(storing, write_addrs.r_data,
                    Mux(state == _State.START, desc.dram_addr, 0)))),
                *(flag.eq(state != _State.IDLE) for flag in faileds),
            ]

        # --- bursts -------------------------------------------------------------------------------
        is_store = desc.direction == Direction.STORE
        m.d.comb += [
            # The generator prepares the first rows while the descriptor is checked; it gets no
            # credit outside LOAD/STORE, so a rejected descriptor issues nothing (and a generator
            # stopped by an error keeps its rows_left).
            gen.start.eq(state == _State.CHECK),
            gen.stop.eq(Cat(*faileds)),
            gen.credit.eq(Cat(*credits)),
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
            write_lens.w_data.eq(gen.issue_beats),
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
        # (RREADY only while loading, as before: low after reset and between descriptors.)
        m.d.comb += [
            r_slice.i.valid.eq(axi.rvalid & loading),
            r_slice.i.payload.data.eq(axi.rdata),
            r_slice.i.payload.resp.eq(axi.rresp),
            r_slice.i.payload.last.eq(axi.rlast),
            axi.rready.eq(r_slice.i.ready & loading),
        ]
        r_done = Signal()
        r_bad = Signal()
        m.d.comb += [
            realigner.start.eq(start),
            realigner.offset.eq(desc.dram_addr[:shift]),
            realigner.stride.eq(desc.dram_stride[:shift]),
            realigner.row_bytes.eq(desc.row_bytes),
            realigner.sram_row.eq(desc.sram_row),
            realigner.buffer.eq(desc.buffer),
            r_bad.eq(r.resp[1]),                            # SLVERR or DECERR
            rready.eq(loading & (failed | realigner.beat.ready)),
            realigner.beat.valid.eq(rvalid & loading & ~failed & ~r_bad),
            realigner.beat.payload.eq(r.data),
            r_done.eq(rvalid & rready),
            read_addrs.r_en.eq(r_done & r.last),
        ]
        wiring.connect(m, realigner.row, wiring.flipped(self.row_write))
        # (with ~failed, RREADY is loading & realigner.beat.ready)
        m.d.comb += r_error.eq(rvalid & r_bad & loading & ~failed & realigner.beat.ready)
        m.d.comb += read_drained.eq(gen.finished & ~read_addrs.r_rdy & ~realigner.pending &
                                    ~realigner.row.valid)
        with m.If(self.row_write.valid & self.row_write.ready):
            m.d.sync += self.bytes_read.eq(self.bytes_read + desc.row_bytes)

        # --- STORE: row_read_req -> row_read_data -> packer -> W; B -------------------------------
        # Buffer rows are requested in order while fewer than row_prefetch are open, up to
        # desc.rows; after an error only the rows whose first burst was generated are needed.
        # Both limits are kept as registered flags: `more_rows` (rows left to request) and
        # `more_started` (started - requested > 0, with `started` one cycle behind the burst).
        req = self.row_read_req
        req_row = Signal(16, reset_less=True)   # buffer row of the next request
        req_left = Signal(16)               # rows not yet requested
        more_rows = Signal()                # req_left != 0
        started = Signal()                  # a row's first burst was generated last cycle
        ahead = Signal(range(-2 * self.row_prefetch - 4, outstanding + 8))  # started - requested
        more_started = Signal()             # ahead > 0
        open_requests = Signal(range(self.row_prefetch + 1))
        request = Signal()
        received = Signal()
        drop_rows = Signal()                # no_more_bursts, registered
        m.d.sync += drop_rows.eq(storing & no_more_bursts)
        m.d.comb += [
            no_more_bursts.eq(gen.finished & ~write_lens.r_rdy & ~packer.pending),
            request.eq(storing & (~req.valid | req.ready) &
                       Mux(failed, more_started, more_rows) &
                       (open_requests < self.row_prefetch)),
            received.eq(self.row_read_data.valid & self.row_read_data.ready),
        ]
        m.d.sync += started.eq(gen.issue & gen.issue_payload.first)
        with m.If(start):
            m.d.sync += [
                req_row.eq(desc.sram_row),
                req_left.eq(desc.rows),
                more_rows.eq(1),
                ahead.eq(0),
                more_started.eq(0),
            ]
        with m.Else():
            m.d.sync += ahead.eq(ahead + started - request)
            with m.Switch(Cat(request, started)):
                with m.Case(0b10):
                    m.d.sync += more_started.eq(ahead >= 0)
                with m.Case(0b01):
                    m.d.sync += more_started.eq(ahead >= 2)
                with m.Default():
                    m.d.sync += more_started.eq(ahead >= 1)
            with m.If(request):
                m.d.sync += [
                    req_row.eq(req_row + 1),
                    req_left.eq(req_left - 1),
                    more_rows.eq(req_left != 1),
                ]
        with m.If(request):
            m.d.sync += [
                req.valid.eq(1),
                req.payload.buffer.eq(desc.buffer),
                req.payload.row.eq(req_row),
            ]
        with m.Elif(req.ready):
            m.d.sync += req.valid.eq(0)
        m.d.sync += open_requests.eq(open_requests + request - received)

        m.d.comb += [
            packer.start.eq(start),
            packer.offset.eq(desc.dram_addr[:shift]),
            packer.stride.eq(desc.dram_stride[:shift]),
            packer.row_bytes.eq(desc.row_bytes),
            # After the last burst, rows still arriving are not needed: read and drop them (from
            # the cycle after; a row the packer takes in between is never sent).
            packer.row.valid.eq(self.row_read_data.valid & storing & ~drop_rows),
            packer.row.payload.eq(self.row_read_data.payload),
            packer.row_lane_valid.eq(Cat(self.row_read_data.valid & flag for flag in row_accept)),
            self.row_read_data.ready.eq(storing & (drop_rows | packer.row.ready)),
            packer.burst_len.valid.eq(write_lens.r_rdy),
            packer.burst_len.payload.eq(write_lens.r_data),
            write_lens.r_en.eq(packer.burst_len.ready),
        ]
        # W leaves through a register slice: the packer's output register, whose inputs are the
        # beat window's logic, then stays beside the packer, and the route to the memory is
        # between two flip-flops (routed 12 x 12: the row offset through the window into the
        # output register placed toward the memory, 9.1 ns of routing, 114 endpoints up to
        # 11.7 ns). Every beat is sent before its burst's B response, so the slice is empty
        # when the STORE's last response is in.
        w_slice = m.submodules.w_slice = RegisterSlice(WriteBeat(self.data_width))
        wiring.connect(m, packer.w, w_slice.i)
        m.d.comb += [
            axi.wvalid.eq(w_slice.o.valid),
            axi.wdata.eq(w_slice.o.payload.data),
            axi.wstrb.eq(w_slice.o.payload.strb),
            axi.wlast.eq(w_slice.o.payload.last),
            w_slice.o.ready.eq(axi.wready),
        ]
        with m.If(axi.wvalid & axi.wready & w_slice.o.payload.row_last):
            m.d.sync += self.bytes_written.eq(self.bytes_written + desc.row_bytes)

        # A B response is registered before it is used (``b_done``, ``b_resp``: BREADY is
        # ``storing``, a register, so nothing waits): the write tracking FIFO's pop, the write
        # credit and the error latch start at flip-flops, not at the memory's BVALID across the
        # die. A burst's credit is freed a cycle after its response.
        b_done = Signal()
        m.d.comb += axi.bready.eq(storing)
        m.d.sync += [b_done.eq(axi.bvalid & storing), b_resp.eq(axi.bresp)]
        m.d.comb += write_addrs.r_en.eq(b_done)
        m.d.comb += b_error.eq(b_done & b_resp[1] & ~failed)
        m.d.comb += write_drained.eq(no_more_bursts & ~packer.sending & ~write_addrs.r_rdy &
                                     (open_requests == 0) & ~req.valid)
        return m
