"""Requantizer: int32 accumulator rows to int8, the golden model's ``requantize`` bit for bit.

Per lane ``l`` of a row, with the parameters latched by the last CONFIG instruction::

    left  = max(shift[l], 0)                 right = max(-shift[l], 0)
    x1    = wrap32(x << left)                                                   S1
    p     = x1 * multiplier[l]               (64-bit signed product)             S2
    q     = SRDHM: (p + nudge) / 2**31 truncated toward zero, INT32_MAX when
            x1 == multiplier == INT32_MIN    (nudge = 2**30 or 1 - 2**30)        S3
    r     = RDBPOT(q, right): (q >> right) + (remainder > threshold)            S4
    out   = clamp(r + zero_point, act_min, act_max) as int8                      S5

A fixed-latency pipeline (``latency`` = 5 cycles from ``i_valid`` to ``o_valid``) without
back-pressure: the store path reserves room for every row it puts in (see rtl/top.py). The
parameters must be stable while rows are in flight (CONFIG and STORE run in order in the STORE
engine, so they are).
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .util import check_dimension

__all__ = ["SHIFT", "Requantizer"]

#: Shape of a latched per-lane shift, clamped to [-31, 30].
SHIFT = signed(6)

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


class Requantizer(wiring.Component):
    """``lanes`` parallel requantization pipelines.

    Ports: ``i_valid``, ``i_data`` (lanes x int32), parameters ``multiplier`` (lanes x int32),
    ``shift`` (lanes x signed 6), ``zero_point``, ``act_min``, ``act_max`` (int8); ``o_valid``,
    ``o_data`` (lanes x int8), ``latency`` cycles after the input.
    """
    latency = 5

    def __init__(self, *, lanes):
        self.lanes = check_dimension("lanes", lanes)
        super().__init__({
            "i_valid":    In(1),
            "i_data":     In(data.ArrayLayout(signed(32), lanes)),
            "multiplier": In(data.ArrayLayout(signed(32), lanes)),
            "shift":      In(data.ArrayLayout(SHIFT, lanes)),
            "zero_point": In(signed(8)),
            "act_min":    In(signed(8)),
            "act_max":    In(signed(8)),
            "o_valid":    Out(1),
            "o_data":     Out(data.ArrayLayout(signed(8), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        valid = self.i_valid
        for _ in range(self.latency):
            reg = Signal()
            m.d.sync += reg.eq(valid)
            valid = reg
        m.d.comb += self.o_valid.eq(valid)

        for l in range(self.lanes):
            x, mult, shift = self.i_data[l], self.multiplier[l], self.shift[l]
            # S1: left shift with int32 wrap; right shift amount; SRDHM overflow case.
            left = Signal(range(31), name=f"left_{l}")
            m.d.comb += left.eq(Mux(shift > 0, shift, 0))
            x1 = Signal(signed(32), name=f"x1_{l}")
            right1 = Signal(range(32), name=f"right1_{l}")
            mult1 = Signal(signed(32), name=f"mult1_{l}")
            m.d.sync += [
                x1.eq((x << left)[:32]),
                right1.eq(Mux(shift < 0, -shift, 0)),
                mult1.eq(mult),
            ]
            # S2: the product.
            p = Signal(signed(64), name=f"p_{l}")
            overflow2 = Signal(name=f"overflow2_{l}")
            right2 = Signal(range(32), name=f"right2_{l}")
            m.d.sync += [
                p.eq(x1 * mult1),
                overflow2.eq((x1 == INT32_MIN) & (mult1 == INT32_MIN)),
                right2.eq(right1),
            ]
            # S3: rounding doubling high half; C-style division by 2**31 truncates toward zero.
            s = Signal(signed(65), name=f"s_{l}")
            m.d.comb += s.eq(p + Mux(p >= 0, 1 << 30, 1 - (1 << 30)))
            s_adj = Signal(signed(65), name=f"s_adj_{l}")
            m.d.comb += s_adj.eq(s + Mux(s < 0, (1 << 31) - 1, 0))
            q = Signal(signed(32), name=f"q_{l}")
            right3 = Signal(range(32), name=f"right3_{l}")
            m.d.sync += [
                q.eq(Mux(overflow2, INT32_MAX, (s_adj >> 31)[:32])),
                right3.eq(right2),
            ]
            # S4: rounding divide by a power of two (round half away from zero).
            mask = Signal(unsigned(32), name=f"mask_{l}")
            m.d.comb += mask.eq((1 << right3) - 1)
            remainder = Signal(unsigned(32), name=f"remainder_{l}")
            threshold = Signal(unsigned(32), name=f"threshold_{l}")
            m.d.comb += [
                remainder.eq(q.as_unsigned() & mask),
                threshold.eq((mask >> 1) + (q < 0)),
            ]
            r = Signal(signed(32), name=f"r_{l}")
            m.d.sync += r.eq((q >> right3) + (remainder > threshold))
            # S5: zero point and clamp.
            y = Signal(signed(34), name=f"y_{l}")
            m.d.comb += y.eq(r + self.zero_point)
            out = Signal(signed(8), name=f"out_{l}")
            m.d.sync += out.eq(Mux(y < self.act_min, self.act_min,
                                   Mux(y > self.act_max, self.act_max, y[:8])))
            m.d.comb += self.o_data[l].eq(out)
        return m
