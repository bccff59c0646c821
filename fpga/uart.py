"""UART receiver and transmitter: 8 data bits, no parity, 1 stop bit (8N1), LSB first.

Both take ``divisor``, the clock cycles per bit (``round(clock_hz / baud)``), as an elaboration
parameter. The line idles high; a byte is a low start bit, 8 data bits and a high stop bit.

:class:`UartRx`
    ``rx`` passes a two-flip-flop synchronizer. A falling edge starts a byte; the start bit is
    checked again half a bit later (a shorter low pulse is ignored), then each data bit and the
    stop bit are sampled one ``divisor`` apart, near the middle of each bit. In the cycle after the
    stop bit's sample, ``valid`` is high for one cycle with ``data`` and ``frame_error`` (the stop
    bit was low); the receiver then waits for the next falling edge. There is no buffering: the
    user takes ``data`` in the cycle ``valid`` is high.
:class:`UartTx`
    A byte is taken from the ``data``/``valid`` handshake when ``ready`` is high and sent as
    10 bits of ``divisor`` cycles each; ``ready`` is high again in the cycle after the stop bit
    ends, so back-to-back bytes follow without idle time. ``byte`` is the byte being sent, a
    register: from the cycle after its handshake through the first data bit's ``divisor`` cycles
    (then it shifts).
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["MIN_DIVISOR", "check_divisor", "UartRx", "UartTx"]

#: Smallest ``divisor`` accepted: the receiver needs a few cycles per bit to sample mid-bit.
MIN_DIVISOR = 4


def check_divisor(divisor):
    """``divisor`` if it is an integer >= :data:`MIN_DIVISOR`, else a ValueError naming it."""
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer >= {MIN_DIVISOR} (clock cycles per bit), "
                         f"not {divisor!r}")
    return divisor


class UartRx(wiring.Component):
    """8N1 receiver: ``rx`` line in; ``data``, ``valid`` (one cycle per byte) and
    ``frame_error`` out (see the module docstring)."""
    rx: In(1, init=1)
    data: Out(8)
    valid: Out(1)
    frame_error: Out(1)

    def __init__(self, *, divisor):
        self.divisor = check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(self.divisor))
        bit = Signal(range(10))          # 0: start bit, 1..8: data, 9: stop bit
        shift = Signal(8)
        # ``valid``/``frame_error`` come from registers (a cycle after the stop bit's sample).
        m.d.sync += [self.valid.eq(0), self.frame_error.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += [timer.eq(self.divisor // 2 - 1), bit.eq(0)]
                    m.next = "BITS"
            with m.State("BITS"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(bit + 1)]
                    with m.If(bit == 0):
                        with m.If(line):               # glitch, not a start bit
                            m.next = "IDLE"
                    with m.Elif(bit == 9):
                        m.d.sync += [self.valid.eq(1), self.frame_error.eq(~line)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += shift.eq(Cat(shift[1:], line))
        m.d.comb += self.data.eq(shift)
        return m


class UartTx(wiring.Component):
    """8N1 transmitter: ``data``/``valid``/``ready`` handshake in, ``tx`` line out (see the
    module docstring)."""
    data: In(8)
    valid: In(1)
    ready: Out(1)
    tx: Out(1, init=1)
    byte: Out(8)

    def __init__(self, *, divisor):
        self.divisor = check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        bits = Signal(range(11))         # bits still to send, including the one on the line
        frame = Signal(10, init=0x3FF)   # the line is frame[0]
        m.d.comb += [self.tx.eq(frame[0]), self.ready.eq(bits == 0), self.byte.eq(frame[1:9])]
        with m.If(bits == 0):
            with m.If(self.valid):
                m.d.sync += [frame.eq(Cat(Const(0, 1), self.data, Const(1, 1))), bits.eq(10),
                             timer.eq(self.divisor - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [frame.eq(Cat(frame[1:], Const(1, 1))), bits.eq(bits - 1),
                         timer.eq(self.divisor - 1)]
        return m
