"""Performance counters for small FPGAs: 32-bit counters kept in a block RAM and brought up to date
one at a time, round-robin, instead of one 32-bit adder and register per counter.

Ports (``n`` counters, named by the ``widths`` dict, in its order)::

    clear       In   1                  every counter becomes 0 (this cycle's increments are dropped)
    inc         In   StructLayout(widths)  per counter: the amount to add this cycle (0 .. 2**w - 1)
    read_index  In   range(n)           counter to read (any value >= n reads an unspecified word)
    read_data   Out  32                 the counter ``read_index`` named a cycle ago, as written to
                                        the RAM (see "Exactness")
    settled     Out  1                  every increment and clear so far is in the RAM

How it works::

    inc ──► pending[i] += inc[i]  (a small register per counter, wide enough for n cycles' worth)
    ptr ──► RAM read port A ──► old ──┐
                                      + pending[ptr - 1] ─► RAM write (address ptr - 1)
                                          pending[ptr - 1] = inc[ptr - 1] (this cycle's)
    read_index ──► RAM read port B ──► read_data

A pointer visits counter ``i`` every ``n`` cycles: its RAM word is read, and the cycle after, the
word plus the counter's pending amount is written back while the pending amount restarts from that
cycle's increment. So each counter costs a ``pending`` register of ``bits(n * (2**w - 1))`` bits
instead of 32 flip-flops and a 32-bit adder; the RAM, its two read ports (two block RAM copies on
iCE40) and one shared adder serve all counters. ``clear`` zeroes the pending amounts and marks
every counter *fresh*: its next visit writes the pending amount alone, ignoring the stale word.
Counters are fresh after reset too, so the RAM is zeroed within ``n`` cycles of a reset, like
registers with a reset value of 0.

Exactness: an increment (or a clear) in cycle ``c`` is written to the RAM in one of the cycles
``c + 1 .. c + n`` (the visit of its counter), so ``read_data`` in cycle ``t`` includes every
increment up to cycle ``t - n - 2`` and lags the true count by at most ``n + 1`` cycles'
increments. ``settled`` is high from ``n + 1`` cycles after the last nonzero increment or clear on:
then ``read_data`` is exact. Counters wrap at 2**32.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..util import NO_RW_CHECK, registered_read, wrap_increment

__all__ = ["CounterRam"]

WIDTH = 32


class CounterRam(wiring.Component):
    """``len(widths)`` 32-bit counters in a block RAM (see the module docstring). ``widths``: dict
    counter name -> bits of its per-cycle increment (at least 1)."""

    def __init__(self, widths):
        widths = dict(widths)
        if len(widths) < 2:
            raise ValueError(f"CounterRam needs at least 2 counters, not {len(widths)}")
        for name, width in widths.items():
            if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= WIDTH:
                raise ValueError(f"increment width of counter {name!r} must be an integer in "
                                 f"[1, {WIDTH}], not {width!r}")
        self.widths = widths
        super().__init__({
            "clear": In(1),
            "inc": In(data.StructLayout(widths)),
            "read_index": In(range(len(widths))),
            "read_data": Out(WIDTH),
            "settled": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        names = list(self.widths)
        n = len(names)
        ram = m.submodules.ram = Memory(shape=WIDTH, depth=n, init=[], attrs=NO_RW_CHECK)
        visit_r, old = registered_read(m, ram, "old")
        host_r, host_data = registered_read(m, ram, "host_data")
        write = ram.write_port()
        m.d.comb += [host_r.addr.eq(self.read_index), self.read_data.eq(host_data)]

        # pending[i]: increments not yet in the RAM, at most n cycles' worth.
        incs = [getattr(self.inc, name) for name in names]
        pending = [Signal(Shape.cast(range(n * ((1 << self.widths[name]) - 1) + 1)),
                          name=f"pending_{name}") for name in names]
        fresh = Signal(n, init=(1 << n) - 1)        # the RAM word is stale: write pending alone

        # The visit: ``ptr`` is read in this cycle, written (as ``visited``) in the next one.
        ptr = Signal(range(n))
        visited = Signal(range(n), init=n - 1)
        m.d.sync += [ptr.eq(wrap_increment(ptr, n)), visited.eq(ptr)]
        m.d.comb += visit_r.addr.eq(ptr)

        flushed = Signal(max(len(p) for p in pending))     # pending[visited]
        with m.Switch(visited):
            for i, p in enumerate(pending):
                with m.Case(i):
                    m.d.comb += flushed.eq(p)
        m.d.comb += [
            write.addr.eq(visited),
            write.data.eq(Mux(fresh.bit_select(visited, 1), 0, old) + flushed),
            write.en.eq(1),
        ]
        for i, (p, inc) in enumerate(zip(pending, incs)):
            m.d.sync += p.eq(Mux(visited == i, inc, p + inc))
            with m.If(visited == i):
                m.d.sync += fresh[i].eq(0)

        # settled: n + 1 cycles without an increment or a clear (see the module docstring).
        quiet = Signal(range(n + 2))
        with m.If(self.clear | Cat(*incs).any()):
            m.d.sync += quiet.eq(0)
        with m.Elif(quiet != n + 1):
            m.d.sync += quiet.eq(quiet + 1)
        m.d.comb += self.settled.eq(quiet == n + 1)

        with m.If(self.clear):
            m.d.sync += [p.eq(0) for p in pending]
            m.d.sync += fresh.eq(Const((1 << n) - 1, n))
        return m
