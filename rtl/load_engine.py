"""LOAD engine: executes LOAD instructions, one DMA descriptor each.

::

    queue ──► IDLE ── head, tokens ──► ISSUE ── descriptor taken ──► WAIT ── dma_done ──► IDLE
                       (pop)            (request the DMA)              (push, or BUS_ERROR)

The DMA writes the rows into the buffers itself (rtl/top.py routes them by owner); the engine only
turns the instruction into a :class:`~tessera.rtl.dma_descriptor.DmaDescriptor` and waits for it to
finish, so tokens are pushed only when every row is in its buffer.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .dma_descriptor import Direction, DmaDescriptor, DmaError
from .engine import EngineControl, InstructionQueue, QueueEntry
from .isa import ProgramError

__all__ = ["LoadEngine"]


class LoadEngine(wiring.Component):
    """Ports: ``queue`` (instructions in), ``control`` (EngineControl), ``descriptor`` (to the
    DMA arbiter), ``dma_done``/``dma_error`` (the DMA's end-of-descriptor pulse and error code,
    routed to the engine that owns the DMA)."""
    def __init__(self):
        super().__init__({
            "queue":      In(stream.Signature(QueueEntry())),
            "control":    Out(EngineControl()),
            "descriptor": Out(stream.Signature(DmaDescriptor())),
            "dma_done":   In(1),
            "dma_error":  In(4),
        })

    def elaborate(self, platform):
        m = Module()
        ctl = self.control
        q = m.submodules.queue = InstructionQueue()
        wiring.connect(m, wiring.flipped(self.queue), q.push)
        m.d.comb += [q.flush.eq(ctl.abort), q.avail.eq(ctl.avail), ctl.empty.eq(~q.valid)]

        insn = Signal(QueueEntry())
        ld = insn.word.load
        m.d.comb += [
            self.descriptor.payload.dram_addr.eq(ld.dram_addr),
            self.descriptor.payload.dram_stride.eq(ld.dram_stride),
            self.descriptor.payload.rows.eq(ld.rows),
            self.descriptor.payload.row_bytes.eq(ld.row_bytes),
            self.descriptor.payload.sram_row.eq(ld.sram_row),
            self.descriptor.payload.buffer.eq(ld.buffer),
            self.descriptor.payload.direction.eq(Direction.LOAD),
            ctl.head_index.eq(q.head.index),
            ctl.push.eq(insn.word.header.push),
            ctl.push_index.eq(insn.index),
            ctl.error_index.eq(insn.index),
            ctl.pop.eq(q.head.word.header.pop),
        ]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(q.valid & ~ctl.abort):
                    m.d.comb += [ctl.blocked.eq(~q.tokens_ready), ctl.stall.eq(1)]
                    with m.If(q.tokens_ready):
                        m.d.comb += [q.take.eq(1), ctl.pop_en.eq(1)]
                        m.d.sync += insn.eq(q.head)
                        m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [self.descriptor.valid.eq(1), ctl.stall.eq(1)]
                with m.If(self.descriptor.ready):
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += ctl.busy.eq(1)
                with m.If(self.dma_done):
                    with m.If(self.dma_error == DmaError.NONE):
                        m.d.comb += ctl.push_en.eq(1)
                    with m.Else():
                        m.d.comb += [ctl.error.eq(ProgramError.BUS_ERROR), ctl.error_en.eq(1)]
                    m.next = "IDLE"
        return m
