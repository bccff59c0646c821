"""Scratchpad: the on-chip buffer of int8 rows that feeds the tensor core (activations and weights).

One row is ``lanes`` int8 values, the vector the array consumes per cycle. The buffer is a simple
dual-port RAM built on ``amaranth.lib.memory.Memory``, so synthesis infers block RAM (ECP5 DP16KD in
pseudo-dual-port mode, iCE40 EBR) instead of flip-flops. It is split into *groups* of lanes, each
its own memory with its own copies of the address registers, so that no register drives the
address or enable inputs of every block RAM of the buffer across the die::

                       IN      GROUP (a copy per group)   RAM (+ output reg) OUT     FAR
    write addr/en  ─► [reg] ──┬─► [addr, en replica] ─┐
    write data     ─► [reg] ──┼─► [group's lanes]     ├─► Memory (group g) ─┐
    read addr      ─► [reg] ──┼─► [addr replica] ─────┤   one write port,   ├─► [reg] ─► [reg] ─► read
    read_b addr    ─► [reg] ──┴─► [addr replica] ─────┘   two read ports    └─► [reg] ─► [reg] ─► read_b

A group is as many lanes as one block RAM holds side by side at this depth (16 Kbit: one lane for
depth 2048 or more, four for 512 or less; see :func:`group_lanes`). The block RAMs read in every
cycle (their read ports have no enable: an enable would be one more net to every block RAM), so a
port has no ``en``: ``read.data`` is the row at ``read.addr`` of ``read_latency`` (5) cycles
earlier, and readers keep track of which cycles they asked for. The block RAM reads into its own
read register (RAM); OUT takes that register's slow clock-to-out and has no other load than FAR,
so it can sit beside the block RAM (the ECP5 build moves it into the block RAM as the DP16KD's
output register, ``tessera.fpga.bram_outreg``); FAR carries the row to the readers.

``read`` and ``read_b`` are identical, independent read ports: the tensor core's activation stream
uses one and its weight stream the other, so the next weight tile is read while activations stream.
A second read port costs a second copy of the block RAM; Yosys removes it when ``read_b`` is unused.

Timing (every request passes the same registers, so the ports see each other as if there were
none)::

    cycle        t                 t+1 .. t+4        t+5
    write        addr, data, en    (registers)       row stored (visible to reads issued after t)
    read         addr              (registers)       data = row with every write issued before t

A read of the row written in the same cycle is undefined: the block RAM sees both at the same
clock edge, which ECP5 leaves undefined, and the memories are marked ``no_rw_check`` so that
Yosys adds no bypass logic for it (Amaranth's simulation returns the old row). No client does
that: the engines' tokens order a LOAD's writes before the reads of its rows, many cycles apart.
(Until the eleventh session the ports were transparent, and the bypass Yosys built for that sat
between every block RAM and its output register.) Addresses at or above ``depth`` are not allowed
(the DMA checks them, ``DmaError.SRAM_RANGE``).

Both ports take one row per cycle and never stall. Software (the compiler) double-buffers by
address, so the DMA fills one half while the tensor core reads the other.
"""

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .util import check_dimension, replicate

__all__ = ["LANE", "ScratchpadRow", "WriteSignature", "ReadSignature", "Scratchpad",
           "group_lanes"]

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
    """A buffer read port, from the reader's side: ``addr`` out, ``data`` in (``data`` is the row
    at the ``addr`` of ``read_latency`` cycles earlier)."""
    def __init__(self, *, addr_width, shape):
        self.addr_width = addr_width
        self.shape = shape
        super().__init__({
            "addr": Out(addr_width),
            "data": In(shape),
        })


def group_lanes(depth):
    """Lanes per memory of a scratchpad of ``depth`` rows: as many 8-bit lanes as one 16 Kbit
    block RAM holds side by side at that depth (at most 36 bits wide), at least one."""
    return max(1, min(36, (1 << 14) // depth) // 8)


class Scratchpad(wiring.Component):
    """``depth`` rows of ``lanes`` int8 lanes; one write port and two read ports (latency 5).

    Parameters
    ----------
    lanes : int
        int8 lanes per row, 1 .. 256 (the tensor core's ``rows``).
    depth : int
        Number of rows, 1 .. 65536.

    Attributes
    ----------
    read_latency : int
        Cycles from ``read.addr`` to its row in ``read.data`` (5).
    row_bytes : int
        Bytes per row (``lanes``).
    groups : list of range
        The lanes of each memory (see :func:`group_lanes`).
    """
    read_latency = 5

    def __init__(self, *, lanes=8, depth=512):
        self.lanes = check_dimension("lanes", lanes)
        self.depth = check_dimension("depth", depth, maximum=MAX_DEPTH)
        self.row_bytes = lanes
        self.addr_width = max(1, (depth - 1).bit_length())
        per_group = group_lanes(depth)
        self.groups = [range(first, min(first + per_group, lanes))
                       for first in range(0, lanes, per_group)]
        row = ScratchpadRow(lanes)
        super().__init__({
            "write": In(WriteSignature(addr_width=self.addr_width, shape=row)),
            "read":  In(ReadSignature(addr_width=self.addr_width, shape=row)),
            "read_b": In(ReadSignature(addr_width=self.addr_width, shape=row)),
        })

    def elaborate(self, platform):
        m = Module()
        aw = self.addr_width
        copies = len(self.groups)

        # IN: every input registered once (the block RAMs are far from the writer and readers).
        # Data registers are not reset; the write enable is.
        w_en = Signal()
        w_addr = Signal(aw, reset_less=True)
        w_data = Signal(8 * self.lanes, reset_less=True)
        r_addr = Signal(aw, reset_less=True)
        rb_addr = Signal(aw, reset_less=True)
        m.d.sync += [w_en.eq(self.write.en), w_addr.eq(self.write.addr),
                     w_data.eq(self.write.data.as_value()), r_addr.eq(self.read.addr),
                     rb_addr.eq(self.read_b.addr)]

        # GROUP: each memory's address and enable inputs from its own register copy.
        g_w_en = replicate(m, w_en, copies, "write_en")
        g_w_addr = replicate(m, w_addr, copies, "write_addr", reset_less=True)
        g_r_addr = replicate(m, r_addr, copies, "read_addr", reset_less=True)
        g_rb_addr = replicate(m, rb_addr, copies, "read_b_addr", reset_less=True)

        read_data, read_b_data = [], []
        for g, lanes in enumerate(self.groups):
            width = 8 * len(lanes)
            g_data = Signal(width, name=f"write_data_{g}", reset_less=True)
            m.d.sync += g_data.eq(w_data[8 * lanes.start:8 * lanes.stop])
            # The read ports are asynchronous, their address from the GROUP copies; synthesis
            # takes the first register after the read data (RAM) into the block RAM as its
            # read register. ``no_rw_check`` tells Yosys that a read and a write of the same
            # row at the same clock edge never matter, so it adds no bypass logic between the
            # block RAM and OUT (for the transparent ports used before it added a comparator and
            # a multiplexer there: 200 LUTs for four lanes, 11.3 ns in a routed 12 x 12).
            memory = Memory(shape=width, depth=self.depth, init=[], attrs={"no_rw_check": 1})
            m.submodules[f"memory_{g}"] = memory
            wr = memory.write_port()
            rd = memory.read_port(domain="comb")
            rd_b = memory.read_port(domain="comb")
            m.d.comb += [
                wr.addr.eq(g_w_addr[g]), wr.data.eq(g_data), wr.en.eq(g_w_en[g]),
                rd.addr.eq(g_r_addr[g]), rd_b.addr.eq(g_rb_addr[g]),
            ]
            # RAM: the block RAM's own read register; OUT: the block RAM's slow clock-to-out
            # ends at a plain flip-flop (no enable, no reset: on ECP5 it becomes the block RAM's
            # output register); FAR: the register that drives the readers.
            for port, outputs, name in ((rd, read_data, "read"), (rd_b, read_b_data, "read_b")):
                ram = Signal(width, name=f"{name}_ram_{g}", reset_less=True)
                out = Signal(width, name=f"{name}_out_{g}", reset_less=True)
                far = Signal(width, name=f"{name}_data_{g}", reset_less=True)
                m.d.sync += [ram.eq(port.data), out.eq(ram), far.eq(out)]
                outputs.append(far)
        m.d.comb += [self.read.data.eq(Cat(*read_data)),
                     self.read_b.data.eq(Cat(*read_b_data))]
        return m
