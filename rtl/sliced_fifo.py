"""Sliced FIFO: a first-word-fall-through queue whose storage is split into slices, each with its
own copy of the write enable and of both pointers.

::

    w_en[0] ─► [w_ptr copy 0] ─┐                     ┌─ [r_ptr copy 0] ◄─ pop
    w_data[slice 0] ───────────┴─► storage slice 0 ──┴─► r_data[slice 0]
      ...                              ...                   ...
    w_en[k] ─► [w_ptr copy k] ─┐                     ┌─ [r_ptr copy k] ◄─ pop
    w_data[slice k] ───────────┴─► storage slice k ──┴─► r_data[slice k]

    level (w_en[0], pop) ──► r_rdy, w_rdy (registers)

The same interface and timing as ``amaranth.lib.fifo.SyncFIFO`` (unbuffered: ``r_data`` is the
storage's asynchronous read, valid while ``r_rdy``; a written entry is readable in the next
cycle), except that ``w_en`` has one bit per slice: the writer gives every slice its own copy
of the enable (registers it keeps apart), and must drive them all alike. A wide queue in
distributed RAM is then written and read by pointer and enable registers beside each slice,
not by one register driving every RAM cell across the die; the storage's cells of one slice
are all that a pointer copy reaches. (On a device without distributed RAM the storage is
flip-flops, as SyncFIFO's would be.)

``r_rdy`` and ``w_rdy`` are registers. Writing while ``w_rdy`` is low, or popping (``r_en``)
while ``r_rdy`` is low, does nothing. ``w_rdy_copies`` and ``r_rdy_copies`` are one copy of each
per slice (registers loaded alike), for a writer or reader that is sliced too.

``SlicedFIFO(..., split_read=True)`` also takes ``r_en`` with one bit per slice (all equal, as
``w_en``): each slice's read pointer then moves under its own enable and ``r_rdy`` copy, and a
reader built of one stage per slice (rtl/top.py's store path) drives no net that reaches every
slice.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .util import REPLICA, check_dimension, wrap_increment

__all__ = ["SlicedFIFO", "sliced_fifo_for"]


class SlicedFIFO(wiring.Component):
    """``depth`` entries of ``slices * slice_width`` bits.

    Members: ``w_en`` (In, ``slices`` bits, all equal), ``w_data`` (In), ``w_rdy`` (Out),
    ``r_en`` (In; ``slices`` bits, all equal, with ``split_read``), ``r_data`` (Out), ``r_rdy``
    (Out), ``level`` (Out, entries held), ``w_rdy_copies`` and ``r_rdy_copies`` (Out, ``slices``
    bits, equal to ``w_rdy`` and ``r_rdy``).
    """

    def __init__(self, *, slice_width, slices, depth, split_read=False):
        self.slice_width = check_dimension("slice_width", slice_width, maximum=4096)
        self.slices = check_dimension("slices", slices, maximum=1024)
        self.depth = check_dimension("depth", depth, maximum=4096)
        self.width = slice_width * slices
        self.split_read = split_read
        super().__init__({
            "w_en":   In(slices),
            "w_data": In(self.width),
            "w_rdy":  Out(1, init=1),
            "r_en":   In(slices if split_read else 1),
            "r_data": Out(self.width),
            "r_rdy":  Out(1),
            "level":  Out(range(depth + 1)),
            "w_rdy_copies": Out(slices, init=(1 << slices) - 1),
            "r_rdy_copies": Out(slices),
        })

    def elaborate(self, platform):
        m = Module()
        depth, width = self.depth, self.slice_width

        write = Signal()
        pop = Signal()
        m.d.comb += [write.eq(self.w_en[0] & self.w_rdy), pop.eq(self.r_en[0] & self.r_rdy)]
        # ``level`` and its flags; the flags are set from comparisons of the level itself.
        # ``w_rdy`` and ``r_rdy`` have a copy per slice (``room``, ``ready``), loaded alike, for
        # the slices' write enables and (``split_read``) read enables, and for the outside.
        room = [Signal(name=f"room{REPLICA}{i}", init=1) for i in range(self.slices)]
        ready = [Signal(name=f"ready{REPLICA}{i}") for i in range(self.slices)]
        m.d.comb += [self.w_rdy_copies.eq(Cat(*room)), self.r_rdy_copies.eq(Cat(*ready))]
        with m.If(write & ~pop):
            m.d.sync += [self.level.eq(self.level + 1)]
            m.d.sync += [flag.eq(1) for flag in [self.r_rdy, *ready]]
            m.d.sync += [flag.eq(self.level != depth - 1) for flag in [self.w_rdy, *room]]
        with m.Elif(pop & ~write):
            m.d.sync += [self.level.eq(self.level - 1)]
            m.d.sync += [flag.eq(self.level != 1) for flag in [self.r_rdy, *ready]]
            m.d.sync += [flag.eq(1) for flag in [self.w_rdy, *room]]

        outputs = []
        for i in range(self.slices):
            storage = Memory(shape=width, depth=depth, init=[])
            m.submodules[f"storage_{i}"] = storage
            wr = storage.write_port()
            rd = storage.read_port(domain="comb")
            w_ptr = Signal(range(depth), name=f"w_ptr{REPLICA}{i}")
            r_ptr = Signal(range(depth), name=f"r_ptr{REPLICA}{i}")
            # This slice's copy of the write decision, from its own enable and ``room`` copy.
            slice_write = self.w_en[i] & room[i]
            m.d.comb += [
                wr.addr.eq(w_ptr), wr.data.eq(self.w_data[i * width:(i + 1) * width]),
                wr.en.eq(slice_write),
                rd.addr.eq(r_ptr),
            ]
            with m.If(slice_write):
                m.d.sync += w_ptr.eq(wrap_increment(w_ptr, depth))
            # This slice's copy of the pop: its own enable and ``ready`` copy (or the shared pop).
            slice_pop = self.r_en[i] & ready[i] if self.split_read else pop
            with m.If(slice_pop):
                m.d.sync += r_ptr.eq(wrap_increment(r_ptr, depth))
            outputs.append(rd.data)
        m.d.comb += self.r_data.eq(Cat(*outputs))
        return m


def sliced_fifo_for(width, depth, *, max_slice_width=32, split_read=False):
    """A SlicedFIFO of ``depth`` entries holding ``width`` bits in as few slices of at most
    ``max_slice_width`` bits as possible, of equal width (its ``width`` may exceed ``width`` by
    less than a bit per slice; the writer leaves the extra bits unused)."""
    slices = -(-width // max_slice_width)
    return SlicedFIFO(slice_width=-(-width // slices), slices=slices, depth=depth,
                      split_read=split_read)
