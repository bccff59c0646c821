"""Fetch unit: reads the program from memory through the DMA into an instruction FIFO.

::

    start ─► next = 0 ─► while next < length and the FIFO has room for a chunk:
                           DMA LOAD descriptor: program_addr + 16*next, CHUNK instructions
                           (rows of ``word_bytes``: 16, or 4 when accumulator rows are shorter)
             DMA rows ─► [row] ─► assemble 128-bit words ─► [decode] ─► [sums] ─► [checks]
                      ─► FIFO of FetchedEntry ─► [out] ─► dispatcher

The descriptor targets the accumulator only so that the DMA's checks accept it (rows of up to
``4*lanes`` bytes, ``rows`` <= depth); the rows never reach the accumulator: rtl/top.py routes the
DMA's row output to the fetch unit while it owns the DMA.

Instructions are decoded on their way into the FIFO, by a :class:`~tessera.rtl.decoder.Decoder`
with :data:`DECODE_STAGES` (2) register stages: ``[decode]`` holds the instruction while the
decoder adds up every opcode's buffer-range ends, ``[sums]`` while it compares them with the buffer
depths, ``[checks]`` while the opcode selects its own checks; the verdict (checks, target engine,
FENCE, HALT) enters the FIFO with the instruction. The FIFO's writes never wait (a descriptor is
issued only when the FIFO has room for all of it), so the stages cost three cycles of latency and
no stalls, and the decoder is not in front of the dispatcher.

A bus error while fetching does not stop the program at once: the fetch unit stops and records the
index of the first instruction it could not read; the dispatcher reports BUS_ERROR when it reaches
that index (so an error in an instruction before it is reported first, as in the
instruction-level simulator, and prefetching past HALT never fails a program).
"""

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from .decoder import CHECKS, Decoder
from .dma_descriptor import Buffer, Direction, DmaDescriptor, DmaError
from .engine import INDEX, QueueEntry
from .isa import INSTRUCTION_BITS, INSTRUCTION_BYTES
from .register_slice import RegisterSlice
from .sliced_fifo import sliced_fifo_for

__all__ = ["FetchUnit", "FetchedEntry"]

#: Instructions fetched per DMA descriptor, and the FIFO depth (two chunks).
CHUNK = 8
FIFO_DEPTH = 2 * CHUNK

#: Register stages of the decoder's pipeline in the fetch unit (see :class:`Decoder`).
DECODE_STAGES = 2


class FetchedEntry(data.StructLayout):
    """An instruction with its index (``entry``) and the decoder's verdict on it: ``faults``
    (one bit per check of :data:`~tessera.rtl.decoder.CHECKS`), ``engine``, ``fence``,
    ``halt``."""
    def __init__(self):
        super().__init__({"entry": QueueEntry(), "faults": len(CHECKS), "engine": 2,
                          "fence": 1, "halt": 1})


class FetchUnit(wiring.Component):
    """Ports: ``start`` (pulse; samples ``program_addr``/``program_len``), ``abort``,
    ``descriptor``/``dma_done``/``dma_error`` (DMA client), ``row_valid``/``row_data`` (the DMA's
    row output while the fetch unit owns the DMA), ``insn`` (stream of FetchedEntry out),
    ``fault``/``fault_index`` (a bus error stopped fetching before instruction ``fault_index``),
    ``busy`` (a descriptor is outstanding)."""
    def __init__(self, *, rows, cols, lanes, scratchpad_depth, accumulator_depth):
        self.decoder = Decoder(rows=rows, cols=cols, lanes=lanes,
                               scratchpad_depth=scratchpad_depth,
                               accumulator_depth=accumulator_depth, stages=DECODE_STAGES)
        self.word_bytes = INSTRUCTION_BYTES if 4 * lanes >= INSTRUCTION_BYTES else 4
        self.rows_per_insn = INSTRUCTION_BYTES // self.word_bytes
        self.chunk = max(1, min(CHUNK, accumulator_depth // self.rows_per_insn))
        if accumulator_depth < self.rows_per_insn:
            raise ValueError(f"accumulator_depth must be at least {self.rows_per_insn} for the "
                             f"fetch unit, not {accumulator_depth}")
        super().__init__({
            "start":        In(1),
            "abort":        In(1),
            "program_addr": In(32),
            "program_len":  In(32),
            "descriptor":   Out(stream.Signature(DmaDescriptor())),
            "dma_done":     In(1),
            "dma_error":    In(4),
            "row_valid":    In(1),
            "row_data":     In(8 * 4 * lanes),
            "insn":         Out(stream.Signature(FetchedEntry())),
            "fault":        Out(1),
            "fault_index":  Out(INDEX),
            "busy":         Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # The FIFO is unbuffered, in slices of at most 32 bits with their own pointers: the output
        # slice loads the storage's read data, where a buffered FIFO's output register, loaded
        # under the slice's ``ready``, sat between them (routed 12 x 12: 11.6 ns).
        entry_bits = FetchedEntry().size
        fifo = sliced_fifo_for(entry_bits, FIFO_DEPTH)
        m.submodules.fifo = ResetInserter(self.start | self.abort)(fifo)
        out = RegisterSlice(FetchedEntry(), full_rate=False)
        m.submodules.out = ResetInserter(self.start | self.abort)(out)
        popping = Signal()          # an entry leaves the FIFO (for the output slice)

        # Descriptor state, kept in registers so that the descriptor leaves the fetch unit
        # straight from flip-flops (no adders or comparators between them and the DMA arbiter).
        dram_addr = Signal(32)      # address of the first instruction not yet requested
        remaining = Signal(32)      # instructions not yet requested
        chunk = Signal(range(self.chunk + 1))   # min(remaining, chunk): the next descriptor
        credits = Signal(range(FIFO_DEPTH + 1)) # FIFO entries neither filled nor requested
        popped = Signal()           # an entry left the FIFO in the previous cycle
        taken = Signal.like(chunk)  # instructions requested in the previous cycle
        push_index = Signal(32)     # index of the next instruction to enter the FIFO
        part = Signal(range(self.rows_per_insn))
        word = Signal(INSTRUCTION_BITS)

        d = self.descriptor.payload
        m.d.comb += [
            d.dram_addr.eq(dram_addr),
            d.dram_stride.eq(self.word_bytes),
            d.rows.eq(chunk * self.rows_per_insn),
            d.row_bytes.eq(self.word_bytes),
            d.sram_row.eq(0),
            d.buffer.eq(Buffer.ACCUMULATOR),
            d.direction.eq(Direction.LOAD),
        ]

        issued = Signal()
        decode_valid = Signal()     # the first decode stage holds an instruction
        in_flight = [decode_valid]  # the decode stages' valid flags
        pushed = Signal()
        running = Signal()
        waiting = Signal()          # a descriptor is outstanding
        # Whether a descriptor can be issued, from the registers of the previous cycle (so the
        # comparisons are not in front of the DMA arbiter); not in the cycle after an issue
        # (``waiting`` is set then) or a start.
        can_issue = Signal()
        m.d.sync += can_issue.eq(running & ~waiting & ~self.fault & ~issued & ~self.start &
                                 (chunk != 0) & (credits >= chunk))
        m.d.comb += [
            self.descriptor.valid.eq(can_issue & ~self.abort),
            issued.eq(self.descriptor.valid & self.descriptor.ready),
        ]

        # The DMA's outputs are registered on their way in (``row_*``, ``done``, ``error``):
        # all of them a cycle late, so their order is kept, and the wide instruction registers'
        # enables start at a flip-flop here instead of the DMA's and the owner multiplexer's logic.
        row_valid = Signal()
        row_data = Signal(8 * self.word_bytes, reset_less=True)
        dma_done = Signal()
        dma_error = Signal(4)
        m.d.sync += [row_valid.eq(self.row_valid), row_data.eq(self.row_data[:8 * self.word_bytes]),
                     dma_done.eq(self.dma_done), dma_error.eq(self.dma_error)]

        # ``chunk`` follows ``remaining`` a cycle later (a comparison of a register, not behind
        # the subtraction that updates ``remaining``): after an issue nothing issues until the
        # descriptor is done (``waiting``), and a start clears it, so a stale ``chunk`` is never
        # used. (The first descriptor of a program issues a cycle later for it.)
        m.d.sync += chunk.eq(Mux(remaining < self.chunk, remaining, self.chunk))

        with m.If(self.start):
            m.d.sync += [dram_addr.eq(self.program_addr), remaining.eq(self.program_len),
                         chunk.eq(0),
                         push_index.eq(0), credits.eq(FIFO_DEPTH), popped.eq(0), taken.eq(0), part.eq(0),
                         self.fault.eq(0), running.eq(1), waiting.eq(0)]
        with m.Else():
            with m.If(issued):
                m.d.sync += [dram_addr.eq(dram_addr + chunk * INSTRUCTION_BYTES),
                             remaining.eq(remaining - chunk), waiting.eq(1)]
            # A FIFO entry that left (into the output slice) is a credit again one cycle later.
            # The credits of an issued descriptor are taken a cycle later too: no descriptor can
            # issue in that cycle (``waiting`` is set).
            m.d.sync += [popped.eq(popping),
                         taken.eq(Mux(issued, chunk, 0)),
                         credits.eq(credits - taken + popped)]
            with m.If(dma_done & waiting):
                m.d.sync += waiting.eq(0)
                with m.If(dma_error != DmaError.NONE):
                    m.d.sync += [self.fault.eq(1), self.fault_index.eq(push_index), part.eq(0)]

        # Assemble instructions from rows (lowest address first = least significant bits).
        row = row_data
        if self.rows_per_insn == 1:
            complete = row_valid
            complete_word = row
        else:
            complete = row_valid & (part == self.rows_per_insn - 1)
            with m.If(row_valid):
                m.d.sync += [part.eq(Mux(complete, 0, part + 1)),
                             word.eq(Cat(word[8 * self.word_bytes:], row))]
            complete_word = Cat(word[8 * self.word_bytes:], row)
        m.d.comb += pushed.eq(complete & ~self.abort & ~self.start)
        # ``push_index`` counts every complete instruction, also those an abort drops (it is
        # read only for a fault of a running program, and a start clears it): its enable is
        # ``start`` or ``complete``, not the abort and start gating of ``pushed``.
        with m.If(complete & ~self.start):
            m.d.sync += push_index.eq(push_index + 1)

        # Decode stages: a complete instruction spends a cycle in each of the decoder's pipeline
        # stages (``DECODE_STAGES``, plus the one that holds it while the decoder reads it), then
        # enters the FIFO with the verdict.
        dec = m.submodules.decoder = self.decoder
        # The stages' data registers are not reset (their ``valid`` says what they hold).
        decode_word = Signal(INSTRUCTION_BITS, reset_less=True)
        decode_index = Signal(INDEX, reset_less=True)
        m.d.sync += decode_valid.eq(pushed)
        with m.If(pushed):
            m.d.sync += [decode_word.eq(complete_word), decode_index.eq(push_index)]
        # (``checks_*``: the last stage, whose instruction the decoder's verdict is about)
        checks_word, checks_index, checks_valid = decode_word, decode_index, decode_valid
        for stage in range(dec.stages):
            later_word = Signal(INSTRUCTION_BITS, name=f"decode{stage + 1}_word", reset_less=True)
            later_index = Signal(INDEX, name=f"decode{stage + 1}_index", reset_less=True)
            later_valid = Signal(name=f"decode{stage + 1}_valid")
            m.d.sync += [later_word.eq(checks_word), later_index.eq(checks_index),
                         later_valid.eq(checks_valid & ~self.abort & ~self.start)]
            checks_word, checks_index, checks_valid = later_word, later_index, later_valid
            in_flight.append(later_valid)
        m.d.comb += self.busy.eq(waiting | self.descriptor.valid | row_valid | dma_done |
                                 Cat(*in_flight).any())
        entry = Signal(FetchedEntry())
        m.d.comb += [
            dec.word.eq(decode_word),
            entry.entry.word.eq(checks_word),
            entry.entry.index.eq(checks_index),
            entry.faults.eq(dec.faults),
            entry.engine.eq(dec.engine),
            entry.fence.eq(dec.fence),
            entry.halt.eq(dec.halt),
            fifo.w_data.eq(entry.as_value()),
            fifo.w_en.eq((checks_valid & ~self.abort & ~self.start).replicate(fifo.slices)),
        ]

        # The FIFO's head leaves through a register slice (half rate, as the dispatcher takes an
        # instruction at most every other cycle): the dispatcher's head register and the FIFO's
        # read side are placed apart, and no path runs from the FIFO's level to the dispatcher.
        m.d.comb += [
            out.i.payload.eq(fifo.r_data[:entry_bits]),
            out.i.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(out.i.ready),
            popping.eq(fifo.r_rdy & out.i.ready),
        ]
        connect(m, out.o, flipped(self.insn))
        return m
