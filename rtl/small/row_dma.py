"""Row mover for small FPGAs: one row of up to ``row_bytes`` bytes between a byte address of any
alignment and a row register, over a 32-bit AXI4 manager port, one burst at a time, one byte per
cycle.

Ports::

    start          In   1                    request, taken in a cycle where ``busy`` is low
    write          In   1                    0: memory -> ``rdata``; 1: ``wdata`` -> memory
    addr           In   32                   byte address of the row's first byte (any alignment)
    nbytes         In   range(row_bytes+1)   bytes to move, 1 .. row_bytes (0 is not allowed)
    wdata          In   8*row_bytes          row to write, byte k = bits 8k .. 8k+7; sampled at start
    busy           Out  1                    from the cycle after ``start`` to the cycle before ``done``
    done           Out  1                    one-cycle pulse at the end (error or not), busy is low
    rdata          Out  8*row_bytes          after a read's ``done``: byte k = memory byte
                                             (addr + k) mod 2**32 for k < nbytes, 0 for k >= nbytes;
                                             held until the next ``start``
    error          Out  4    DmaError        of the last transfer: NONE, READ_SLVERR, READ_DECERR,
                                             WRITE_SLVERR or WRITE_DECERR (the first error response)
    error_addr     Out  32                   the failing burst's AxADDR (0 without an error)
    bytes_read     Out  32                   free-running: + nbytes per read done without an error
    bytes_written  Out  32                   free-running: + nbytes per write whose last W beat
                                             was sent (as rtl/dma.py counts a stored row)
    m_axi          Out  AXI4Signature(32, 32, id_width)

``start`` samples ``write``, ``addr``, ``nbytes`` and ``wdata``: the caller may change them in the
next cycle. ``error`` and ``error_addr`` are cleared by ``start`` and hold their value from
``done`` to the next ``start``. ``rdata`` is the row register itself: it is meaningful only after
a read's ``done`` (during a transfer and after a write it holds intermediate values), and after a
read with an error its contents are undefined.

Datapath: one shift register ``row`` of ``row_bytes + 4`` bytes that moves one byte down per
shift (byte ``i`` takes byte ``i + 1``; the top byte takes ``in_byte``), so that every bit costs
one LUT4 (shift or load) and no barrel shifter or byte multiplexer of row width exists::

    read:   R beat ─► lane mux (4:1, lane counter) ─► in_byte ─► row[R+3] ─► ... ─► row[4]
                                                                     rdata = row[4 .. R+3]
    write:  wdata ─► row[4 .. R+3] (at start), row[0 .. 3] = 0
            row ─► (4 - addr % 4 shifts) ─► row[0 .. 3] = W beat ─► 4 shifts per beat ─► ...

* Read: each R beat is held (RREADY low) while its wanted byte lanes, from the row's first lane
  (``addr % 4``, first beat) or 0 to its last lane (``(addr + nbytes - 1) % 4``, last beat) or 3,
  are shifted in, one per cycle; RREADY is high in the cycle of the beat's last wanted lane. After
  the last beat, zero bytes are shifted in until ``row_bytes`` shifts have been made, which puts
  byte 0 of the row at ``row[4]`` and zeros above byte ``nbytes - 1``.
* Write: the row is loaded 4 bytes up (``row[4 + k]`` = byte ``k``) and shifted down ``4 - addr %
  4`` times, so that ``row[0 .. 3]`` is the first beat with byte 0 in lane ``addr % 4``; after each
  W handshake 4 shifts bring the next beat. WSTRB enables the lanes from the first lane (first
  beat) and up to the last lane (last beat), so exactly the bytes ``[addr, addr + nbytes)`` are
  written.

Bursts: the words from ``addr & ~3`` to ``(addr + nbytes - 1) & ~3`` (at most ``row_bytes / 4 +
1`` beats), cut at every 64-byte boundary: each burst is INCR, AxSIZE 2 (4-byte beats), word-
aligned AxADDR, at most 16 beats, and lies inside one aligned 64-byte block, so it never crosses a
4 KiB boundary. (Cutting at 64 bytes rather than at 4 KiB costs an extra burst when a row crosses a
64-byte boundary, but the next burst's address is just the next block and WLAST is "last word of
the row or of the block", with no burst length counter.) AxID, AxLOCK, AxCACHE and AxPROT are 0.
Addresses wrap at 2**32 (a row at 0xFFFFFFFE continues at 0: that is a block boundary too). Only
one burst is outstanding: AR (AW) is issued, all its R beats are taken (its W beats are sent and
its B response received), then the next burst's AR (AW) follows.

Errors: the first R beat or B response with SLVERR or DECERR sets ``error`` (READ_/WRITE_SLVERR/
DECERR) and ``error_addr`` (the failing burst's AxADDR, word-aligned, as rtl/dma.py reports it)
and ends the transfer after that burst: a read takes the remaining beats of the burst with RREADY
high and discards them, no further burst is issued (writes: the failing burst's W beats have all
been sent when its B response arrives; no further burst is issued, so the bytes of later bursts
are not written). ``done`` then pulses as for a good transfer.

Timing (``start`` in cycle ``t``): ``busy`` is high from ``t + 1`` until ``done``; ``done`` is
high for one cycle with ``busy`` already low, so the next ``start`` may come in the ``done`` cycle.
AxVALID rises in ``t + 1`` and every later burst's AxVALID one cycle after the previous burst ended
(last R beat / B response). A read spends one cycle per byte of the row while R beats are offered
(the memory's latency and stalls add to that), then one cycle per zero byte (``row_bytes -
nbytes``), and pulses ``done`` the cycle after the last shift. A write presents W beat ``i`` of
the row in cycle ``t + 5 - addr % 4 + 4 i`` at the earliest (4 cycles per beat, also across
bursts: the shifts go on while B and the next AW are exchanged) and pulses ``done`` the cycle after
the last B handshake. With tb/axi_memory.py and no stalls (AR to first R beat: 3 cycles, B the
cycle after WLAST), measured in tb/test_small_row_dma.py::test_timing:

* read: ``done`` in cycle ``t + row_bytes + 5 + 3 * (bursts - 1)``, whatever ``nbytes``;
* write: ``done`` in cycle ``t + 3 - addr % 4 + 4 * beats`` (``beats = (addr % 4 + nbytes - 1) // 4
  + 1``).

Area (Yosys ``synth_ice40``, ``row_bytes`` 16): about 380 SB_LUT4 and 285 flip-flops, of which
``8 * row_bytes`` LUT4 and ``8 * row_bytes + 32`` flip-flops are the row register, 66 LUT4 and
64 flip-flops the two byte totals (tb/test_small_row_dma.py::test_synth_ice40 bounds it).

``nbytes`` = 0 is not allowed (the caller checks it): the transfer would move whatever words the
wrapped arithmetic gives.

Reset: everything is in the ``sync`` domain; after reset the mover is idle with every VALID and
READY it drives low and nothing outstanding. Transactions the memory still holds (an accepted AR
or AW, W beats not sent, a B response) are forgotten, so a reset in the middle of a burst must
reset the memory side (or the interconnect) too, or be applied only while ``busy`` is low. The
totals ``bytes_read`` / ``bytes_written`` are reset to 0.
"""

from amaranth.hdl import C, Cat, Module, Mux, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..axi import AXI4Signature, Burst
from ..dma_descriptor import DmaError

__all__ = ["RowDma"]


class RowDma(wiring.Component):
    """Moves up to ``row_bytes`` bytes (a multiple of 4 in [4, 256]) between memory and a row
    register (see the module docstring)."""

    def __init__(self, *, row_bytes, id_width=4):
        if isinstance(row_bytes, bool) or not isinstance(row_bytes, int):
            raise TypeError(f"row_bytes must be an integer, not {row_bytes!r}")
        if not (4 <= row_bytes <= 256 and row_bytes % 4 == 0):
            raise ValueError(f"row_bytes must be a multiple of 4 in [4, 256], not {row_bytes!r}")
        self.row_bytes = row_bytes
        super().__init__({
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=32, id_width=id_width)),
            "start": In(1),
            "write": In(1),
            "addr": In(32),
            "nbytes": In(range(row_bytes + 1)),
            "wdata": In(8 * row_bytes),
            "busy": Out(1),
            "done": Out(1),
            "rdata": Out(8 * row_bytes),
            "error": Out(4),
            "error_addr": Out(32),
            "bytes_read": Out(32),
            "bytes_written": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        axi = self.m_axi
        nbytes = self.row_bytes
        words = nbytes // 4

        # --- transfer state (loaded by start; no reset needed) -----------------------------------
        row = Signal(8 * nbytes + 32, reset_less=True)     # byte shift register, see docstring
        base = Signal(26, reset_less=True)      # address bits 6..31 of the row's first byte
        # blocks done (a row spans at most (row_bytes + 62) // 64 + 1 blocks)
        blocks = Signal(range((nbytes + 62) // 64 + 1), reset_less=True)
        block = Signal(26)                      # address bits 6..31 of the current burst
        word = Signal(4, reset_less=True)       # word within the 64-byte block: next beat
        burst_word = Signal(4, reset_less=True)  # ... of the current burst's first beat
        lane = Signal(2, reset_less=True)       # first wanted lane of the beat (read: next lane)
        end_lane = Signal(2, reset_less=True)   # lane of the row's last byte
        # Beats left after the current one; the top bit is set after the row's last beat.
        beats = Signal(Shape.cast(range(words + 1)).width + 1, reset_less=True)
        count = Signal(range(nbytes + 1), reset_less=True)     # nbytes of the transfer
        shifts = Signal(range(nbytes + 1), reset_less=True)    # shifts still to make (see below)
        writing = Signal(reset_less=True)
        failed = Signal()                       # an error response was seen
        bad_lo = Signal(reset_less=True)        # xRESP[0] of the error: DECERR (1) or SLVERR (0)
        m.d.comb += block.eq(base + blocks)

        in_byte = Signal(8)
        shift = Signal()

        last_beat = beats == 0                  # the beat in flight is the row's last
        block_end = word == 15
        last_lane = Mux(last_beat, end_lane, 3)
        # Burst length: up to the row's last word or the block's last word, whichever is first.
        axlen = Mux(beats >= ~word, ~word, beats)[:4]

        take = Signal()
        m.d.comb += take.eq(self.start & ~self.busy)
        first_last = Signal(range(nbytes + 3))  # addr % 4 + nbytes - 1: lane of the last byte
        m.d.comb += first_last.eq(self.addr[:2] + self.nbytes - 1)

        with m.If(take):
            m.d.sync += [
                row.eq(Cat(C(0, 32), self.wdata)),
                base.eq(self.addr[6:]),
                blocks.eq(0),
                word.eq(self.addr[2:6]),
                lane.eq(self.addr[:2]),
                end_lane.eq(first_last[:2]),
                beats.eq(first_last[2:]),
                count.eq(self.nbytes),
                # read: nbytes data shifts, then zeros up to row_bytes shifts;
                # write: 4 - addr % 4 shifts before the first beat.
                shifts.eq(Mux(self.write, 4 - self.addr[:2], nbytes)),
                writing.eq(self.write),
                failed.eq(0),
            ]
        with m.Elif(shift):
            m.d.sync += row.eq(Cat(row[8:], in_byte))
        m.d.comb += self.rdata.eq(row[32:])

        # error and error_addr follow from registers that keep their value until the next start
        # (after an error no burst follows, so block and burst_word stay those of the failing one)
        m.d.comb += [
            self.error.eq(Mux(failed, Mux(writing, Mux(bad_lo, DmaError.WRITE_DECERR,
                                                          DmaError.WRITE_SLVERR),
                                          Mux(bad_lo, DmaError.READ_DECERR,
                                              DmaError.READ_SLVERR)), DmaError.NONE)),
            self.error_addr.eq(Mux(failed, Cat(C(0, 2), burst_word, block), 0)),
        ]
        for prefix in ("ar", "aw"):
            m.d.comb += [
                getattr(axi, f"{prefix}id").eq(0),
                getattr(axi, f"{prefix}addr").eq(Cat(C(0, 2), word, block)),
                getattr(axi, f"{prefix}len").eq(axlen),
                getattr(axi, f"{prefix}size").eq(2),
                getattr(axi, f"{prefix}burst").eq(Burst.INCR),
                getattr(axi, f"{prefix}lock").eq(0),
                getattr(axi, f"{prefix}cache").eq(0),
                getattr(axi, f"{prefix}prot").eq(0),
            ]
        m.d.comb += [
            axi.wdata.eq(row[:32]),
            axi.wstrb.eq(Cat(*((lane <= i) & (last_lane >= i) for i in range(4)))),
            axi.wlast.eq(last_beat | block_end),
        ]

        # A data beat (R or W handshake): advance the word, the beats left, the first lane.
        beat = Signal()
        with m.If(beat):
            m.d.sync += [word.eq(word + 1), beats.eq(beats - 1), lane.eq(0)]

        m.d.sync += self.done.eq(0)

        def finish():
            m.d.sync += self.done.eq(1)
            m.next = "IDLE"

        def latch_error(resp):
            with m.If(resp[1] & ~failed):
                m.d.sync += [failed.eq(1), bad_lo.eq(resp[0])]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(take):
                    m.next = "ADDR"
            with m.State("ADDR"):
                m.d.comb += [
                    self.busy.eq(1),
                    axi.arvalid.eq(~writing),
                    axi.awvalid.eq(writing),
                ]
                with m.If(Mux(writing, axi.awready, axi.arready)):
                    m.d.sync += burst_word.eq(word)
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                with m.If(writing):
                    m.d.comb += [
                        axi.wvalid.eq(shifts == 0),
                        beat.eq(axi.wvalid & axi.wready),
                    ]
                    with m.If(beat & last_beat):
                        m.d.sync += self.bytes_written.eq(self.bytes_written + count)
                    with m.If(beat & axi.wlast):
                        m.next = "RESP"
                with m.Else():
                    m.d.comb += [
                        axi.rready.eq(failed | (lane == last_lane)),
                        beat.eq(axi.rvalid & axi.rready),
                        # the beat's wanted lanes, one per cycle (none once failed)
                        shift.eq(axi.rvalid & ~failed),
                        in_byte.eq(axi.rdata.word_select(lane, 8)),
                    ]
                    with m.If(axi.rvalid & ~axi.rready):
                        m.d.sync += lane.eq(lane + 1)
                    with m.If(beat):
                        latch_error(axi.rresp)
                        with m.If(last_beat | block_end):
                            with m.If(failed | axi.rresp[1]):
                                finish()
                            with m.Elif(last_beat):
                                m.next = "PAD"
                            with m.Else():
                                m.d.sync += blocks.eq(blocks + 1)
                                m.next = "ADDR"
            with m.State("RESP"):
                m.d.comb += [self.busy.eq(1), axi.bready.eq(1)]
                with m.If(axi.bvalid):
                    latch_error(axi.bresp)
                    with m.If(axi.bresp[1] | beats[-1]):
                        finish()
                    with m.Else():
                        m.d.sync += blocks.eq(blocks + 1)
                        m.next = "ADDR"
            with m.State("PAD"):
                # zero bytes above the row's last byte, up to row_bytes shifts in all
                m.d.comb += [self.busy.eq(1), shift.eq(shifts != 0), in_byte.eq(0)]
                with m.If(shifts == 0):
                    m.d.sync += self.bytes_read.eq(self.bytes_read + count)
                    finish()

        # Write: shift while shifts are pending (4 - addr % 4 before the first beat, 4 after each
        # beat, the first of them in the beat's cycle); the W beat is valid when none is pending.
        with m.If(writing & self.busy):
            m.d.comb += shift.eq((shifts != 0) | beat)
        with m.If(writing & beat):
            m.d.sync += shifts.eq(3)
        with m.Elif(shift):
            m.d.sync += shifts.eq(shifts - 1)
        return m
