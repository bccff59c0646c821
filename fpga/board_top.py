"""The board top without pins: Tessera, on-chip RAM for its memory and the UART bridge.

::

    rx ─► UartBridge ─ csr (AXI4-Lite) ─► Tessera.s_axil
    tx ◄─      │                          Tessera.m_axi ─► AxiRam.s_axi
               └──── mem (word port) ───────────────────► AxiRam.direct
                                          Tessera.irq ─► irq

:class:`SimBoardTop` is what a board top (fpga/boards.py) puts between its clock, reset and UART
pins, and what the simulation tests drive through ``rx``/``tx``. Memory addresses 0 ..
``mem_size - 1`` are the RAM for both Tessera and the host; Tessera's DMA gets DECERR above.
The RAM's contents are not cleared by reset (they start as zeros after configuration).
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect

from tessera.rtl.cores import accelerator

from .axi_ram import AxiRam
from .uart_bridge import UartBridge

__all__ = ["SimBoardTop", "DEFAULT_MEM_SIZE", "ID_WIDTH"]

#: Bytes of on-chip RAM when none is given.
DEFAULT_MEM_SIZE = 1 << 16

#: AXI ID width of Tessera's memory port on a board.
ID_WIDTH = 1


class SimBoardTop(wiring.Component):
    """Tessera + :class:`AxiRam` + :class:`UartBridge`; ports ``rx`` (in, idles high), ``tx``
    (out) and ``irq`` (Tessera's interrupt, e.g. for an LED).

    Parameters (keyword-only)
    -------------------------
    rows, cols, scratchpad_depth, accumulator_depth, bus_width, multiplier, core
        The accelerator's parameters (its defaults for those not given); ``core="small"``
        builds :class:`~tessera.rtl.small.top.TesseraSmall` (see ``tessera.rtl.cores``).
    mem_size : int
        Bytes of on-chip RAM (a power of two).
    divisor : int
        Clock cycles per UART bit.
    timeout : int
        Most cycles between two bytes of a request (see :class:`UartBridge`).
    ram_storage : str
        What the RAM is built from (:class:`AxiRam`'s ``storage``; default ``"auto"``).
    bridge_registered : bool or None
        :class:`UartBridge`'s ``registered`` (default None: by the platform).
    """

    def __init__(self, *, mem_size=DEFAULT_MEM_SIZE, divisor, timeout, ram_storage="auto",
                 bridge_registered=None, **tessera_params):
        tessera_params.setdefault("id_width", ID_WIDTH)
        self.tessera = accelerator(**tessera_params)
        axi = self.tessera.m_axi.signature
        self.ram = AxiRam(size=mem_size, data_width=axi.data_width, id_width=axi.id_width,
                          addr_width=axi.addr_width, storage=ram_storage)
        self.bridge = UartBridge(divisor=divisor, mem_size=mem_size, data_width=axi.data_width,
                                 timeout=timeout, registered=bridge_registered)
        self.config = dict(self.tessera.config, mem_size=mem_size)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "irq": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tessera = tessera = self.tessera
        m.submodules.ram = ram = self.ram
        m.submodules.bridge = bridge = self.bridge
        connect(m, tessera.m_axi, ram.s_axi)
        connect(m, bridge.csr, tessera.s_axil)
        connect(m, bridge.mem, ram.direct)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx), self.irq.eq(tessera.irq)]
        return m
