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

from .dma_descriptor import Direction, DmaDescriptor
from .engine import (EngineControl, IdleFlags, QueueEntry, attach_queue, dma_states,
                     take_head)

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
        q = attach_queue(m, self)
        insn = Signal(QueueEntry(), reset_less=True)     # used only after a take
        idle = IdleFlags(m, q, insn)
        ld = insn.word.load
        d = self.descriptor.payload
        m.d.comb += [
            d.dram_addr.eq(ld.dram_addr),
            d.dram_stride.eq(ld.dram_stride),
            d.rows.eq(ld.rows),
            d.row_bytes.eq(ld.row_bytes),
            d.sram_row.eq(ld.sram_row),
            d.buffer.eq(ld.buffer),
            d.direction.eq(Direction.LOAD),
            ctl.push.eq(insn.word.header.push),
            ctl.push_index.eq(insn.index),
            ctl.error_index.eq(insn.index),
        ]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(take_head(m, q, ctl, idle)):
                    m.next = "ISSUE"
            dma_states(m, ctl, self.descriptor, self.dma_done, self.dma_error, idle)
        return m
