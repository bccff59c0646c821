"""Simulation top level of the whole accelerator: Tessera with its memory modelled in gateware.

:class:`AcceleratorHarness` instantiates :class:`~tessera.rtl.top.Tessera` and an
:class:`~tessera.tb.axi_memory.AxiMemory` and connects Tessera's ``m_axi`` manager port to the
memory's subordinate port inside the design, so a simulation of any length needs no Python on the
memory side. Only top-level ports are visible to cocotb; they are::

    s_axil           In  AXI4LiteSignature  Tessera's register port (Verilog ``s_axil__awaddr``
                                            ...; for cocotbext-axi
                                            ``AxiLiteBus.from_prefix(dut, "s_axil_")``)
    irq              Out 1                  Tessera's interrupt
    backdoor         In  BackdoorSignature  the memory's word port (``backdoor__addr`` ...)
    bulk             In  BulkSignature      the memory's block port (``bulk__addr`` ...)
    stall_threshold, hang, seed, seed_load, limit   In   the memory's test inputs, passed through
    mem_rst          In  1                  resets the memory alone (e.g. after a WATCHDOG error,
                                            when it still holds transactions Tessera forgot)
    violation        Out 1                  the memory's sticky protocol-check flag

See tb/axi_memory.py for what the memory ports do. The clock and reset are ``clk`` and ``rst``.
"""

from amaranth.hdl import Module, ResetInserter
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from tessera.rtl.axi import AXI4LiteSignature
from tessera.rtl.registers import ADDR_WIDTH
from tessera.rtl.cores import accelerator

from .axi_memory import MIN_READ_LATENCY, AxiMemory

__all__ = ["AcceleratorHarness", "DEFAULT_MEM_SIZE", "ID_WIDTH"]

#: Default bytes of modelled memory.
DEFAULT_MEM_SIZE = 1 << 16

#: AXI ID width of Tessera's memory port in the harness (Tessera's default).
ID_WIDTH = 4

#: Memory test inputs passed through from the top level to the memory.
_PASSED_INPUTS = ("stall_threshold", "hang", "seed", "seed_load", "limit")


class AcceleratorHarness(wiring.Component):
    """Tessera plus an :class:`AxiMemory` of ``mem_size`` bytes on its memory port.

    Parameters (keyword-only)
    -------------------------
    mem_size : int
        Bytes of memory (default 64 KiB); a multiple of ``bus_width // 8``.
    mem_latency : int
        The memory's read latency in cycles (see :class:`AxiMemory`; default the minimum).
    **tessera_params
        ``rows``, ``cols``, ``scratchpad_depth``, ``accumulator_depth``, ``bus_width``,
        ``id_width``, ``requant_units`` of :class:`Tessera` (Tessera's defaults for those not
        given); ``core="small"`` builds :class:`~tessera.rtl.small.top.TesseraSmall` instead (see
        ``AcceleratorConfig.core``).
    """
    def __init__(self, *, mem_size=DEFAULT_MEM_SIZE, mem_latency=MIN_READ_LATENCY,
                 **tessera_params):
        tessera_params.setdefault("id_width", ID_WIDTH)
        self.tessera = accelerator(**tessera_params)
        axi = self.tessera.m_axi.signature
        self.memory = AxiMemory(size=mem_size, data_width=axi.data_width,
                                id_width=axi.id_width, addr_width=axi.addr_width,
                                latency=mem_latency)
        memory_ports = self.memory.signature.members
        super().__init__({
            "s_axil": In(AXI4LiteSignature(addr_width=ADDR_WIDTH)),
            "irq": Out(1),
            "backdoor": memory_ports["backdoor"],
            "bulk": memory_ports["bulk"],
            **{name: memory_ports[name] for name in _PASSED_INPUTS},
            "violation": Out(1),
            "mem_rst": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.tessera = tessera = self.tessera
        m.submodules.memory = ResetInserter(self.mem_rst)(self.memory)
        memory = self.memory
        connect(m, tessera.m_axi, memory.s_axi)
        connect(m, flipped(self.s_axil), tessera.s_axil)
        connect(m, flipped(self.backdoor), memory.backdoor)
        connect(m, flipped(self.bulk), memory.bulk)
        m.d.comb += [getattr(memory, name).eq(getattr(self, name)) for name in _PASSED_INPUTS]
        m.d.comb += [self.irq.eq(tessera.irq), self.violation.eq(memory.violation)]
        return m
