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
``o.valid``, one flip-flop, not the upstream logic or ``o.ready``). For a client with one request
outstanding at a time (the DMA arbiter's), or one that takes a payload at most every other cycle
anyway, that costs nothing. With ``copies=N`` (half rate only) the payload's bits are cut into
``N`` slices, each loaded under its own copy of the valid flip-flop: a wide payload spread over
the die then has no enable net with hundreds of loads.
"""

from amaranth.hdl import Module, Shape, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .util import REPLICA, check_dimension

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """``i`` (stream in) to ``o`` (stream out) of ``payload_shape``, one cycle later."""

    def __init__(self, payload_shape, *, full_rate=True, copies=1):
        self.full_rate = full_rate
        self.copies = check_dimension("copies", copies, maximum=1024)
        if full_rate and copies != 1:
            raise ValueError(f"copies must be 1 for a full-rate slice, not {copies!r}")
        bits = Shape.cast(payload_shape).width
        if copies > max(1, bits):
            raise ValueError(f"copies must be at most the payload's {bits} bits, not {copies}")
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
            out_bits, in_bits = Value.cast(out), Value.cast(self.i.payload)
            bits = len(in_bits)
            valids = [out_valid] + [Signal(name=f"out_valid{REPLICA}{k}")
                                    for k in range(1, self.copies)]
            edges = [bits * k // self.copies for k in range(self.copies + 1)]
            m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.eq(out),
                         self.i.ready.eq(~out_valid)]
            for valid, low, high in zip(valids, edges, edges[1:]):
                with m.If(~valid):
                    m.d.sync += [out_bits[low:high].eq(in_bits[low:high]),
                                 valid.eq(self.i.valid)]
                with m.Elif(self.o.ready):
                    m.d.sync += valid.eq(0)
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
