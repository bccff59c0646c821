"""Tessera top level: register file, DMA and on-chip buffers behind two standard AXI ports.

This is the memory side of the accelerator; the tensor core and the LOAD/EXEC/STORE engines join
it in a later step. The host drives it through the register file; ``DMA_START`` launches the
descriptor held in the ``DMA_*`` registers (the DMA test hook)::

    host ── s_axil (AXI4-Lite) ──► RegisterFile ── descriptor, start ──► Dma ── m_axi (AXI4) ──► memory
                                        ▲  status, error, irq             │ ▲
                                        └─────────────────────────────────┘ │
                                                           row_write │      │ row_read_req/data
                                                                     ▼      │
                                                      Scratchpad (int8)  Accumulator (int32)

Buffer rows: both buffers have ``lanes = max(rows, cols)`` lanes, so one scratchpad row can feed
the array's activations (``rows`` lanes) or weights (``cols`` lanes). A scratchpad row is ``lanes``
bytes; an accumulator row is ``4 * lanes`` bytes, int32 lanes little-endian (lane 0 first), which is
exactly the DMA's byte order, so rows pass between the DMA and the buffers without reordering.

Register behaviour (see docs/register-map.md for the map):

* ``DMA_START.start``: launches the descriptor in DMA_ADDR .. DMA_SRAM. A start while the DMA is
  busy waits (one deep) and is taken when the DMA is idle; the registers are sampled then.
* ``STATUS.busy``: the DMA is running or a start is waiting. ``STATUS.done`` (write 1 to clear)
  is set when a descriptor completes, with or without error. ``STATUS.error``: the last
  descriptor ended with an error; ``DMA_ERROR.code`` / ``DMA_ERROR_ADDR`` say which and where.
* ``irq`` = ``CTRL.irq_enable & (STATUS.done | STATUS.error)``: level, cleared by clearing done.
* ``CTRL.soft_reset``: stops accepting starts; as soon as the DMA is idle (it always finishes its
  bursts protocol-correctly, so this is bounded), the DMA and the buffers' pipelines are reset for
  one cycle and ``STATUS.done`` is cleared. Registers keep their values, buffer contents are kept.
  The AXI ports never see an abandoned transaction.
"""

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect, flipped

from .accumulator import Accumulator, WriteMode
from .axi import AXI4LiteSignature, AXI4Signature
from .dma import Dma
from .dma_descriptor import Buffer, DmaError
from .registers import ADDR_WIDTH, dma_descriptor, register_file
from .scratchpad import Scratchpad

__all__ = ["Tessera"]

#: Buffer rows that may be requested by the DMA's store path before their data is taken.
READ_SLOTS = 4


class Tessera(wiring.Component):
    """The accelerator's top level.

    Parameters (keyword-only)
    -------------------------
    rows, cols : int
        PE array size (read back in ROWS/COLS); buffer rows have ``max(rows, cols)`` lanes.
    scratchpad_depth, accumulator_depth : int
        Rows of each buffer.
    bus_width : int
        AXI4 data width: 32, 64 or 128.
    id_width : int
        AXI4 ID width.
    """
    def __init__(self, *, rows=8, cols=8, scratchpad_depth=512, accumulator_depth=256,
                 bus_width=64, id_width=4):
        self.config = dict(rows=rows, cols=cols, scratchpad_depth=scratchpad_depth,
                           accumulator_depth=accumulator_depth, bus_width=bus_width)
        # Constructing the register file validates the configuration with clear messages.
        self.regs = register_file(**self.config)
        self.lanes = max(rows, cols)
        self.dma = Dma(data_width=bus_width, id_width=id_width, lanes=self.lanes,
                       scratchpad_depth=scratchpad_depth, accumulator_depth=accumulator_depth)
        self.scratchpad = Scratchpad(lanes=self.lanes, depth=scratchpad_depth)
        self.accumulator = Accumulator(lanes=self.lanes, depth=accumulator_depth)
        super().__init__({
            "s_axil": In(AXI4LiteSignature(addr_width=ADDR_WIDTH)),
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=bus_width, id_width=id_width)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        regs = m.submodules.regs = self.regs

        # Soft reset: wait until the DMA is idle, then reset the engines for one cycle.
        soft_reset_pending = Signal()
        engine_reset = Signal()
        m.d.comb += engine_reset.eq(soft_reset_pending & ~self.dma.busy)
        with m.If(regs.ctrl.soft_reset):
            m.d.sync += soft_reset_pending.eq(1)
        with m.Elif(engine_reset):
            m.d.sync += soft_reset_pending.eq(0)
        engines = ResetInserter(engine_reset)
        dma, spad, acc = self.dma, self.scratchpad, self.accumulator
        m.submodules.dma = engines(dma)
        m.submodules.scratchpad = engines(spad)
        m.submodules.accumulator = engines(acc)

        connect(m, flipped(self.s_axil), regs.s_axil)
        connect(m, dma.m_axi, flipped(self.m_axi))

        # --- DMA test hook: DMA_START launches the descriptor registers -------------------------
        start_pending = Signal()
        with m.If(regs.dma_start.start & ~soft_reset_pending):
            m.d.sync += start_pending.eq(1)
        with m.Elif(dma.descriptor.ready | engine_reset):
            m.d.sync += start_pending.eq(0)
        m.d.comb += [
            dma.descriptor.payload.eq(dma_descriptor(regs)),
            dma.descriptor.valid.eq(start_pending & ~soft_reset_pending),
        ]

        # --- status, errors, interrupt ----------------------------------------------------------
        m.d.comb += [
            regs.status.busy.eq(dma.busy | start_pending),
            regs.status.done_set.eq(dma.done),
            regs.status.error.eq(dma.error != DmaError.NONE),
            regs.dma_error.code.eq(dma.error),
            regs.dma_error_addr.addr.eq(dma.error_addr),
            self.irq.eq(regs.ctrl.irq_enable & (regs.status.done | regs.status.error)),
        ]

        # --- LOAD: DMA rows into the buffers (both write ports never stall) --------------------
        row = dma.row_write.payload
        m.d.comb += [
            dma.row_write.ready.eq(1),
            spad.write.addr.eq(row.row),
            spad.write.data.as_value().eq(row.data.as_value()[:8 * self.lanes]),
            spad.write.en.eq(dma.row_write.valid & (row.buffer == Buffer.SCRATCHPAD)),
            acc.write.addr.eq(row.row),
            acc.write.data.as_value().eq(row.data.as_value()),
            acc.write.mode.eq(WriteMode.OVERWRITE),
            acc.write.en.eq(dma.row_write.valid & (row.buffer == Buffer.ACCUMULATOR)),
        ]

        # --- STORE: buffer rows to the DMA, through a small FIFO with credits -------------------
        # A request is taken only when the FIFO is sure to have room for its data, so the
        # fixed-latency read ports never overflow it. All requests of one descriptor go to one
        # buffer, so data comes back in request order.
        fifo = SyncFIFOBuffered(width=32 * self.lanes, depth=READ_SLOTS)
        m.submodules.read_fifo = engines(fifo)
        in_use = Signal(range(READ_SLOTS + 1))
        req = dma.row_read_req
        to_spad = Signal()
        take = Signal()
        pop = Signal()
        m.d.comb += [
            to_spad.eq(req.payload.buffer == Buffer.SCRATCHPAD),
            req.ready.eq((in_use != READ_SLOTS) & (to_spad | acc.read.ready)),
            take.eq(req.valid & req.ready),
            spad.read.addr.eq(req.payload.row),
            spad.read.en.eq(take & to_spad),
            acc.read.addr.eq(req.payload.row),
            acc.read.en.eq(take & ~to_spad),
            pop.eq(fifo.r_rdy & fifo.r_en),
        ]
        with m.If(engine_reset):
            m.d.sync += in_use.eq(0)
        with m.Else():
            m.d.sync += in_use.eq(in_use + take - pop)
        spad_data_valid = Signal()       # scratchpad read latency is one cycle
        m.d.sync += spad_data_valid.eq(take & to_spad & ~engine_reset)
        with m.If(spad_data_valid):
            m.d.comb += [fifo.w_en.eq(1), fifo.w_data.eq(spad.read.data.as_value())]
        with m.Elif(acc.read.valid):
            m.d.comb += [fifo.w_en.eq(1), fifo.w_data.eq(acc.read.data.as_value())]
        m.d.comb += [
            dma.row_read_data.valid.eq(fifo.r_rdy),
            dma.row_read_data.payload.as_value().eq(fifo.r_data),
            fifo.r_en.eq(dma.row_read_data.ready),
        ]
        return m
