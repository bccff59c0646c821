"""Scratchpad: the on-chip buffer of int8 rows that feeds the tensor core (activations and weights).

One row is ``lanes`` int8 values, the vector the array consumes per cycle. The buffer is a simple
dual-port RAM built on ``amaranth.lib.memory.Memory``, so synthesis infers block RAM (ECP5 DP16KD in
pseudo-dual-port mode, iCE40 EBR) instead of flip-flops::

                 ┌───────────────────────────────┐
    write.addr ─►│                               │
    write.data ─►│  Memory: depth x lanes x int8 │
    write.en   ─►│                               │
                 │        (one write port,       │─► read.data   (valid the cycle after read.en)
    read.addr  ─►│         two read ports)       │
    read.en    ─►│                               │─► read_b.data
  read_b.addr  ─►│                               │
  read_b.en    ─►│                               │
                 └───────────────────────────────┘

``read`` and ``read_b`` are identical, independent read ports: the tensor core's activation stream
uses one and its weight stream the other, so the next weight tile is read while activations stream.
A second read port costs a second copy of the block RAM; Yosys removes it when ``read_b`` is unused.

Timing::

    cycle        t                 t+1
    write        addr, data, en    row stored (visible to reads issued from t on)
    read         addr, en          data = row including a write in cycle t

A read and a write of the same row in the same cycle return the *new* contents: the read port is
transparent. ECP5 block RAM leaves such a collision undefined, so Yosys adds a bypass either way
(``8 * lanes + 1`` flip-flops, independent of ``depth``); write-through is the cheaper of the two
and the more useful. ``read.data`` holds its value while ``read.en`` is low. Addresses at or above
``depth`` are not allowed (the DMA checks them, ``DmaError.SRAM_RANGE``).

Both ports take one row per cycle and never stall. Software (the compiler) double-buffers by
address, so the DMA fills one half while the tensor core reads the other.
"""

from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .util import check_dimension

__all__ = ["LANE", "ScratchpadRow", "WriteSignature", "ReadSignature", "Scratchpad"]

#: Shape of one scratchpad lane.
LANE = signed(8)

#: Largest depth: buffer rows are addressed by 16-bit fields (``DmaDescriptor.sram_row``).
MAX_DEPTH = 1 << 16


class ScratchpadRow(data.ArrayLayout):
    """One scratchpad row: ``lanes`` int8 lanes, lane 0 in the least significant byte."""
    def __init__(self, lanes):
        super().__init__(LANE, lanes)


class WriteSignature(wiring.Signature):
    """A buffer write port, from the writer's side: ``addr``, ``data``, ``en`` (all outputs)."""
    def __init__(self, *, addr_width, shape):
        self.addr_width = addr_width
        self.shape = shape
        super().__init__({
            "addr": Out(addr_width),
            "data": Out(shape),
            "en":   Out(1),
        })


class ReadSignature(wiring.Signature):
    """A buffer read port, from the reader's side: ``addr`` and ``en`` out, ``data`` in.

    ``data`` is valid in the cycle after the one in which ``en`` was high.
    """
    def __init__(self, *, addr_width, shape):
        self.addr_width = addr_width
        self.shape = shape
        super().__init__({
            "addr": Out(addr_width),
            "en":   Out(1),
            "data": In(shape),
        })


class Scratchpad(wiring.Component):
    """``depth`` rows of ``lanes`` int8 lanes; one write port and one read port (latency 1).

    Parameters
    ----------
    lanes : int
        int8 lanes per row, 1 .. 256 (the tensor core's ``rows``).
    depth : int
        Number of rows, 1 .. 65536.

    Attributes
    ----------
    read_latency : int
        Cycles from ``read.en`` to valid ``read.data`` (1).
    row_bytes : int
        Bytes per row (``lanes``).
    """
    read_latency = 1

    def __init__(self, *, lanes=8, depth=512):
        self.lanes = check_dimension("lanes", lanes)
        self.depth = check_dimension("depth", depth, maximum=MAX_DEPTH)
        self.row_bytes = lanes
        self.addr_width = max(1, (depth - 1).bit_length())
        row = ScratchpadRow(lanes)
        super().__init__({
            "write": In(WriteSignature(addr_width=self.addr_width, shape=row)),
            "read":  In(ReadSignature(addr_width=self.addr_width, shape=row)),
            "read_b": In(ReadSignature(addr_width=self.addr_width, shape=row)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = memory = Memory(shape=ScratchpadRow(self.lanes), depth=self.depth,
                                              init=[])
        wr = memory.write_port()
        rd = memory.read_port(transparent_for=(wr,))
        rd_b = memory.read_port(transparent_for=(wr,))
        m.d.comb += [
            rd_b.addr.eq(self.read_b.addr),
            rd_b.en.eq(self.read_b.en),
            self.read_b.data.eq(rd_b.data),
            wr.addr.eq(self.write.addr),
            wr.data.eq(self.write.data),
            wr.en.eq(self.write.en),
            rd.addr.eq(self.read.addr),
            rd.en.eq(self.read.en),
            self.read.data.eq(rd.data),
        ]
        return m
