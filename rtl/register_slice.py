"""Register slice: a stream stage whose outputs, ``i.ready`` included, are all flip-flops.

::

    i.valid, i.payload ──►┌────────┐──► o.valid, o.payload     (from the ``out`` register)
                          │ out    │
    i.ready ◄── ~spare ───│ spare  │◄── o.ready
                          └────────┘

A two-entry skid buffer: ``out`` holds the payload offered downstream; ``spare`` catches the one
payload accepted in the cycle in which ``out`` was full and not taken (``i.ready`` was promised a
cycle earlier, from registers only). So a stream through the slice keeps its full rate (one
transfer per cycle when both sides allow it), adds one cycle of latency, and cuts every
combinational path between its two sides: upstream logic never sees the downstream ``ready``,
downstream logic starts at flip-flops. Used where a bus enters a block that takes decisions on it
(the DMA's AXI R channel).

Order and contents are kept: every accepted payload leaves once, in order. The payload registers
are not reset (``valid`` says what they hold).

``RegisterSlice(shape, full_rate=False)`` leaves out ``spare``: ``i.ready`` is ``~o.valid``, so
a transfer at most every other cycle, and ``out`` loads in every cycle it is empty (its enable is
``o.valid``, one flip-flop, not the upstream logic). For a client with one request outstanding
at a time (the DMA arbiter's), that costs nothing.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """``i`` (stream in) to ``o`` (stream out) of ``payload_shape``, one cycle later."""

    def __init__(self, payload_shape, *, full_rate=True):
        self.full_rate = full_rate
        super().__init__({
            "i": In(stream.Signature(payload_shape)),
            "o": Out(stream.Signature(payload_shape)),
        })

    def elaborate(self, platform):
        m = Module()
        out = Signal.like(self.o.payload, reset_less=True)
        spare = Signal.like(self.o.payload, reset_less=True)
        out_valid = Signal()
        if not self.full_rate:
            m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.eq(out),
                         self.i.ready.eq(~out_valid)]
            with m.If(~out_valid):
                m.d.sync += [out.eq(self.i.payload), out_valid.eq(self.i.valid)]
            with m.Elif(self.o.ready):
                m.d.sync += out_valid.eq(0)
            return m
        spare_valid = Signal()
        m.d.comb += [
            self.o.valid.eq(out_valid),
            self.o.payload.eq(out),
            self.i.ready.eq(~spare_valid),
        ]
        accept = self.i.valid & ~spare_valid
        # ``spare`` takes the input in every cycle it is empty (its enable is one flip-flop);
        # it counts as holding a payload only when ``spare_valid`` is set.
        with m.If(~spare_valid):
            m.d.sync += spare.eq(self.i.payload)
        with m.If(~out_valid | self.o.ready):
            # ``out`` is free at the end of this cycle: refill it, oldest first.
            with m.If(spare_valid):
                m.d.sync += [out.eq(spare), out_valid.eq(1), spare_valid.eq(0)]
            with m.Else():
                m.d.sync += [out.eq(self.i.payload), out_valid.eq(accept)]
        with m.Elif(accept):
            m.d.sync += spare_valid.eq(1)
        return m
