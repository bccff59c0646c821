"""Simulation harness of the DMA (rtl/dma.py): the DMA, two buffer models and bus monitors.

The harness keeps Python out of the per-cycle path of the buffer side: both buffers are
``amaranth.lib.memory.Memory`` blocks with the DMA's row streams attached, and random backpressure
comes from an LFSR in the hardware. The testbench (tb/dma_tb.py) reaches the buffers through a
test port while the DMA is idle.

Ports (beyond the DMA's own ``m_axi``, ``descriptor``, ``busy``, ``done``, ``error``,
``error_addr``, ``bytes_read``, ``bytes_written``, which pass through unchanged)::

    sram_stall       In  8    probability (x/256) per cycle that row_write or row_read_req is not
                              ready and that a ready row_read_data word is held back
    seed, seed_load  In  32,1 load the LFSR (xorshift32) with ``seed | 1``
    tb_we            In  1    write ``tb_wdata`` into row ``tb_row`` of buffer ``tb_buffer``
    tb_buffer/tb_row In  1,16
    tb_wdata         In  8*4*lanes
    tb_rdata         Out 8*4*lanes  row ``tb_row`` of ``tb_buffer``, read combinationally
    monitor_clear    In  1    clear the monitors below
    reads_in_flight_max Out 8 most read bursts in flight at once (AR handshakes - last R beats)
    sram_fault       Out 1    sticky: a row_write or row_read_req named a row beyond its buffer, or
                              row_read_data words outnumbered the requests
    r_held           Out 32   cycles with RVALID and not RREADY (the DMA stalls the memory)
    w_held           Out 32   cycles with WVALID and not WREADY (the memory stalls the DMA)

Both buffer models store ``4 * lanes`` bytes per row, also for the scratchpad, so the testbench
sees the zero padding of the whole row payload.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tessera.rtl.axi import AXI4Signature
from tessera.rtl.dma import Dma
from tessera.rtl.dma_descriptor import DmaDescriptor

__all__ = ["DmaHarness"]

#: Depth of the buffer read-data queue; also the most row reads the model has in flight.
READ_QUEUE = 4


class DmaHarness(wiring.Component):
    def __init__(self, *, data_width, id_width=4, lanes, scratchpad_depth, accumulator_depth,
                 max_burst=256, max_outstanding_reads=4):
        self.dma_params = dict(data_width=data_width, id_width=id_width, lanes=lanes,
                               scratchpad_depth=scratchpad_depth,
                               accumulator_depth=accumulator_depth, max_burst=max_burst,
                               max_outstanding_reads=max_outstanding_reads)
        self.row_width = 8 * 4 * lanes
        self.depths = (scratchpad_depth, accumulator_depth)
        super().__init__({
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=data_width, id_width=id_width)),
            "descriptor": In(stream.Signature(DmaDescriptor())),
            "busy": Out(1), "done": Out(1), "error": Out(4), "error_addr": Out(32),
            "bytes_read": Out(32), "bytes_written": Out(32),
            "sram_stall": In(8), "seed": In(32), "seed_load": In(1),
            "tb_we": In(1), "tb_buffer": In(1), "tb_row": In(16),
            "tb_wdata": In(self.row_width), "tb_rdata": Out(self.row_width),
            "monitor_clear": In(1), "reads_in_flight_max": Out(8), "sram_fault": Out(1),
            "r_held": Out(32), "w_held": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = dma = Dma(**self.dma_params)
        wiring.connect(m, wiring.flipped(self.m_axi), dma.m_axi)
        wiring.connect(m, wiring.flipped(self.descriptor), dma.descriptor)
        for name in ("busy", "done", "error", "error_addr", "bytes_read", "bytes_written"):
            m.d.comb += getattr(self, name).eq(getattr(dma, name))

        # --- random backpressure ----------------------------------------------------------------
        lfsr = Signal(32, init=1)
        step = [lfsr]
        for op, amount in (("<<", 13), (">>", 17), ("<<", 5)):
            x = step[-1]
            step.append(x ^ ((x << amount)[:32] if op == "<<" else x >> amount))
        with m.If(self.seed_load):
            m.d.sync += lfsr.eq(self.seed | 1)
        with m.Else():
            m.d.sync += lfsr.eq(step[-1])
        stall_write, stall_request, hold_data = (
            lfsr.bit_select(8 * i, 8) < self.sram_stall for i in range(3))

        # --- buffers ----------------------------------------------------------------------------
        memories = []
        for index, depth in enumerate(self.depths):
            mem = Memory(shape=self.row_width, depth=depth, init=[])
            m.submodules[f"buffer_{index}"] = mem
            memories.append(mem)

        # Writes: the test port while tb_we, else the DMA's row_write.
        m.d.comb += dma.row_write.ready.eq(~stall_write)
        row_write = dma.row_write.valid & dma.row_write.ready
        fault = Signal()
        for index, mem in enumerate(memories):
            port = mem.write_port()
            dma_hit = row_write & (dma.row_write.payload.buffer == index)
            m.d.comb += [
                port.addr.eq(Mux(self.tb_we, self.tb_row, dma.row_write.payload.row)),
                port.data.eq(Mux(self.tb_we, self.tb_wdata, dma.row_write.payload.data)),
                port.en.eq(Mux(self.tb_we, self.tb_buffer == index, dma_hit)),
            ]
            with m.If(dma_hit & (dma.row_write.payload.row >= self.depths[index])):
                m.d.sync += fault.eq(1)

        # Test port reads (combinational; only used between transfers).
        test_reads = [mem.read_port(domain="comb") for mem in memories]
        for port in test_reads:
            m.d.comb += port.addr.eq(self.tb_row)
        m.d.comb += self.tb_rdata.eq(Mux(self.tb_buffer, test_reads[1].data, test_reads[0].data))

        # DMA reads: request -> synchronous read -> queue -> row_read_data.
        m.submodules.read_queue = queue = SyncFIFOBuffered(width=self.row_width, depth=READ_QUEUE)
        in_read = Signal()              # a read issued last cycle, its data is on the read port
        in_read_buffer = Signal()
        req = dma.row_read_req
        m.d.comb += req.ready.eq(~stall_request & (queue.level + in_read < READ_QUEUE))
        accept = req.valid & req.ready
        dma_reads = []
        for index, mem in enumerate(memories):
            port = mem.read_port()
            m.d.comb += [port.addr.eq(req.payload.row),
                         port.en.eq(accept & (req.payload.buffer == index))]
            dma_reads.append(port)
            beyond = req.payload.row >= self.depths[index]
            with m.If(accept & (req.payload.buffer == index) & beyond):
                m.d.sync += fault.eq(1)
        m.d.sync += [in_read.eq(accept), in_read_buffer.eq(req.payload.buffer)]
        m.d.comb += [
            queue.w_en.eq(in_read),
            queue.w_data.eq(Mux(in_read_buffer, dma_reads[1].data, dma_reads[0].data)),
        ]
        # A word once offered stays offered (a stream never withdraws valid).
        offered = Signal()
        data = dma.row_read_data
        m.d.comb += [
            data.valid.eq(queue.r_rdy & (offered | ~hold_data)),
            data.payload.eq(queue.r_data),
            queue.r_en.eq(data.ready & data.valid),
        ]
        m.d.sync += offered.eq(data.valid & ~data.ready)

        # Requests minus delivered words never goes negative.
        pending = Signal(range(READ_QUEUE + 2))
        delivered = data.valid & data.ready
        m.d.sync += pending.eq(pending + accept - delivered)
        with m.If(delivered & (pending == 0) & ~accept):
            m.d.sync += fault.eq(1)

        # --- bus monitor ------------------------------------------------------------------------
        axi = self.m_axi
        in_flight = Signal(9)
        ar_done = axi.arvalid & axi.arready
        r_last = axi.rvalid & axi.rready & axi.rlast
        m.d.sync += in_flight.eq(in_flight + ar_done - r_last)
        with m.If(self.monitor_clear):
            m.d.sync += [self.reads_in_flight_max.eq(0), fault.eq(0)]
        with m.Elif(in_flight > self.reads_in_flight_max):
            m.d.sync += self.reads_in_flight_max.eq(in_flight)
        m.d.comb += self.sram_fault.eq(fault)

        # Who waited for whom on the data channels (for the throughput measurement).
        waits = {
            "r_held": axi.rvalid & ~axi.rready,         # the DMA holds the memory back
            "w_held": axi.wvalid & ~axi.wready,         # the memory holds the DMA back
        }
        for name, event in waits.items():
            counter = getattr(self, name)
            with m.If(self.monitor_clear):
                m.d.sync += counter.eq(0)
            with m.Elif(event):
                m.d.sync += counter.eq(counter + 1)
        return m
