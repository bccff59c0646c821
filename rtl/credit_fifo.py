"""Credit FIFO: a first-word-fall-through queue for a writer that holds a credit for every entry
(so it never writes into a full queue), whose write side and read side share nothing but a
registered copy of the write pointer.

::

    w_en ──► [w_ptr] ──► storage write port ◄── w_data
                │
                └──► [w_seen] ──┐            (a copy of w_ptr, a cycle later)
                                ├─► r_rdy = (w_seen != r_ptr)
    r_en & r_rdy ──► [r_ptr] ───┴─► storage read port ──► r_data

A SlicedFIFO keeps a level that both sides update, and its ``w_rdy``/``r_rdy`` follow from it: the
writer's and the reader's registers meet in one place, and where the two sides of the queue sit
far apart on the die (the tensor core's result FIFOs: the array's bottom edge on one side, the
EXEC engine's result writer on the other) that place is far from one of them. Here the writer's
side is its pointer and the storage's write port alone, and the reader's side its pointer and
``w_seen``: the one connection between them is ``w_ptr`` into ``w_seen``, a register-to-register
transfer that may take the whole cycle.

Timing: an entry written (``w_en``) in cycle ``t`` is at the head (``r_rdy``) from cycle ``t + 2``
(a SyncFIFO: ``t + 1``). ``r_data`` is the storage's asynchronous read, valid while ``r_rdy``;
``r_en`` pops the head when ``r_rdy``. There is no ``w_rdy``: the writer must not write while
``depth`` entries are held (counting entries not yet seen by the reader); a write then would
overwrite the oldest entry.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .util import check_dimension, wrap_increment

__all__ = ["CreditFIFO"]


class CreditFIFO(wiring.Component):
    """``depth`` entries of ``width`` bits. Members: ``w_en``, ``w_data`` (In), ``r_en`` (In),
    ``r_data``, ``r_rdy`` (Out)."""

    def __init__(self, *, width, depth):
        self.width = check_dimension("width", width, maximum=4096)
        self.depth = check_dimension("depth", depth, maximum=4096)
        super().__init__({
            "w_en":   In(1),
            "w_data": In(width),
            "r_en":   In(1),
            "r_data": Out(width),
            "r_rdy":  Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # One slot more than ``depth``: equal pointers mean empty, so ``depth`` entries fit.
        slots = self.depth + 1
        m.submodules.storage = storage = Memory(shape=self.width, depth=slots, init=[])
        wr = storage.write_port()
        rd = storage.read_port(domain="comb")
        w_ptr = Signal(range(slots))
        w_seen = Signal(range(slots))
        r_ptr = Signal(range(slots))
        m.d.comb += [
            wr.addr.eq(w_ptr), wr.data.eq(self.w_data), wr.en.eq(self.w_en),
            rd.addr.eq(r_ptr), self.r_data.eq(rd.data),
            self.r_rdy.eq(w_seen != r_ptr),
        ]
        with m.If(self.w_en):
            m.d.sync += w_ptr.eq(wrap_increment(w_ptr, slots))
        m.d.sync += w_seen.eq(w_ptr)
        with m.If(self.r_en & self.r_rdy):
            m.d.sync += r_ptr.eq(wrap_increment(r_ptr, slots))
        return m
