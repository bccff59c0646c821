"""Serial requantizer: int32 accumulator rows to int8, lane by lane on one 16 x 16 multiplier, bit
for bit the requantization of the instruction-level simulator (``requantize_lanes`` in
sim/isa_sim.py) and of the pipelined :class:`~tessera.rtl.requant.Requantizer`.

Per lane ``l``, with any int32 ``multiplier[l]`` and ``shift[l]`` in [-31, 30]::

    left = max(shift, 0)        right = max(-shift, 0)
    x1   = wrap32(x << left)
    q    = SRDHM(x1, multiplier)      (INT32_MAX if both are INT32_MIN, else the rounded high
                                       word of the doubled product: (p + nudge) / 2**31 toward 0)
    r    = RDBPOT(q, right)           (round half away from zero)
    out  = clamp(r + zero_point, act_min, act_max)

Built for area (the iCE40UP5K variant of Tessera): one multiplier, one shifter, narrow adders.

**Interface.** ``start`` (one cycle) is taken when ``busy`` is 0 and ignored otherwise; ``data``
(lanes x int32) is copied into the row register then, so the caller may change it afterwards.
``multiplier`` (lanes x int32), ``shift`` (lanes x signed 6), ``zero_point``, ``act_min`` and
``act_max`` (int8) are read while the row is processed and must be stable from ``start`` to
``done``. ``busy`` is high from the cycle after ``start`` up to the cycle before ``done``;
``done`` pulses for one cycle when ``result`` (lanes x int8) becomes valid, which it stays until
the next ``start``. A ``start`` in the ``done`` cycle is taken.

**Timing.** ``done`` comes :attr:`SerialRequantizer.cycles` = ``STEPS * lanes + 2`` =
``7 * lanes + 2`` cycles after the cycle that takes ``start`` (one cycle into the row
register's copy, seven per lane, one for the last lane's clamp), and a row can start every
``7 * lanes + 2`` cycles. Lane ``l`` runs in steps 0 .. 6 of cycles ``7 l + 1 .. 7 l + 7``
(``Pij = |x1|_i * |m|_j``, products of 16-bit digits of the magnitudes, below)::

    step  shifter             multiplier operands (registered)    accumulator (in the SB_MAC16)
    0     x1 = x << left      a_pre: digit 0 of x1
    1     x1                  a_pre: digit 0   a_q, b_q: 0, 0
    2     x1                  a_pre: digit 1   a_q, b_q: 0, 1     acc = N + P00
    3     x1                  a_pre: digit 1   a_q, b_q: 1, 0     acc = (acc >> 16) + P01
    4     x1                                   a_q, b_q: 1, 1     acc = acc + P10
    5     x1                                                      acc = (acc >> 16) + P11
    6     Q >> (right - 1)    tail, first half: rounding and saturation, registered

The tail's second half (zero point, clamp, into ``result``) runs in the next lane's step 0, or
for the last lane in the cycle before ``done``.

**Sign and magnitude.** The product is formed from the magnitudes |x1| and |m| (each at most
2**31) and ``neg`` = sign(x1) xor sign(m). Both roundings are then floors of non-negative
numbers: SRDHM is ``Q = (P + N) >> 31`` with ``P = |x1| |m|`` and the nudge ``N = 2**30 - neg``
(``trunc((-P + 1 - 2**30) / 2**31) = -((P + 2**30 - 1) >> 31)``), and RDBPOT, which rounds half
away from zero, is on the magnitude ``R = floor(Q / 2**right + 1/2) = ((Q >> (right - 1)) + 1) >>
1`` (``R = Q`` when ``right`` is 0); ``r = -R`` if ``neg``. gemmlowp's one overflow (INT32_MIN * INT32_MIN, ``neg`` = 0) gives ``Q = 2**31``
instead of INT32_MAX: every ``right`` rounds both to the same ``R`` (``right`` = 0 saturates
either way), so ``Q`` is simply kept with 32 bits.

**The 32 x 32 product** is four 16 x 16 unsigned products of 16-bit digits (``v = v_1 2**16 +
v_0``; ``v_1 <= 2**15`` as ``v <= 2**31``), one per cycle on one multiplier, summed least
significant first into a 32-bit accumulator that drops 16 finished low bits when it moves up a
digit weight (steps 3 and 5): after step 5 it holds ``(P + N) >> 32``, and bit 31 of ``P + N``
was its bit 15 before step 5 (kept in ``q0``), so ``Q = 2 * acc + q0``. 32 bits suffice: before
step 5 the sum is at most ``((65535**2 + 2**30) >> 16) + 2 * 65535 * 32767 < 2**32``. The nudge
is the accumulator's start value instead of zero, so the accumulation needs no carry input:
``acc = base + a_q * b_q`` (``base`` is ``N``, ``acc`` or ``acc >> 16``, one LUT per bit) is the
shape Yosys' ``synth_ice40 -dsp`` packs whole into one SB_MAC16 -- ``a_q``, ``b_q`` as its input
registers, the 32-bit adder with ``base`` on its C/D inputs, ``acc`` as its output register. The
magnitudes' digits are formed one per cycle: a digit of x1 or m, inverted if negative, plus a
carry (the sign for digit 0, the saved carry out of digit 0 for digit 1): one 16-bit incrementer
per operand, not two 32-bit negations. The A side spends a cycle in ``a_pre`` first (the shifter
is in front of it; the multiplier's B side, from the parameters, issues a cycle later).

**One shifter for both shifts.** ``left`` and ``right`` are never both non-zero, and x1 is needed
only until step 3 while ``Q`` exists only from step 6, so one 32-bit left shifter serves both:
steps 0 .. 5 shift ``x`` by ``left``; step 6 shifts the bit-reversed ``Q`` by ``right - 1`` (the
low five bits of ``~shift``), which read reversed is ``Q >> (right - 1)``. Its input multiplexer
is the price of sharing (about 40 LUT4s, against about 140 for a second shifter).

**Saturation.** ``R >= 256`` clamps like any larger value (``|zero_point| <= 128``), so the tail
keeps 8 bits of ``Q >> (right - 1)`` (or of ``Q``), its rounding carry and an "at least 256" flag;
``y = zero_point +/- R`` then has 10 bits and two comparisons clamp it.

Registers: the row (32 x lanes, not reset), the result (8 x lanes; a shift register that each
lane's clamp enters at the top), ``a_pre`` and the tail's 11 bits, a few flags and the step and
lane counters. Measured (Yosys 0.70 ``synth_ice40 -dsp``): ``lanes`` = 4 takes 1 SB_MAC16, 572
SB_LUT4, 60 SB_CARRY and 201 flip-flops, ``lanes`` = 1 446 SB_LUT4 and 80 flip-flops (each lane
more: about 40 LUT4s of multiplexers and 40 flip-flops; ABC's choices move the LUT count by some
20 from one change to the next). The critical path (lane multiplexer, shifter, saturation flag)
routed at 30.0 MHz for ``lanes`` = 4 and 31.8 MHz for ``lanes`` = 1 on an iCE40UP5K
(nextpnr-ice40 0.11.1, seed 1, the ports behind registers); the target is 24 MHz.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..requant import SHIFT
from ..util import check_dimension

__all__ = ["STEPS", "SerialRequantizer"]

#: Cycles per lane.
STEPS = 7


class SerialRequantizer(wiring.Component):
    """``lanes`` lanes of requantization, one lane at a time on one 16 x 16 multiplier.

    Ports: ``start``; ``data`` (lanes x int32, copied at ``start``); parameters ``multiplier``
    (lanes x int32), ``shift`` (lanes x signed 6, in [-31, 30]), ``zero_point``, ``act_min``,
    ``act_max`` (int8), stable until ``done``; ``busy``, ``done``, ``result`` (lanes x int8).

    Attribute ``cycles`` = ``STEPS * lanes + 2``: from the cycle that takes ``start`` to
    ``done``.
    """

    def __init__(self, lanes):
        self.lanes = check_dimension("lanes", lanes)
        self.cycles = STEPS * self.lanes + 2
        super().__init__({
            "start":      In(1),
            "data":       In(data.ArrayLayout(signed(32), lanes)),
            "multiplier": In(data.ArrayLayout(signed(32), lanes)),
            "shift":      In(data.ArrayLayout(SHIFT, lanes)),
            "zero_point": In(signed(8)),
            "act_min":    In(signed(8)),
            "act_max":    In(signed(8)),
            "busy":       Out(1),
            "done":       Out(1),
            "result":     Out(data.ArrayLayout(signed(8), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes

        # --- Control: step 0 .. STEPS-1 of lane ``lane``; ``pend``: the tail's second half of
        # the lane before; ``fin``: that of the last lane (the counters have wrapped to 0 and
        # hold).
        busy = Signal()
        done = Signal()
        pend = Signal()
        fin = Signal()
        step = Signal(range(STEPS))
        lane = Signal(range(max(lanes, 2)))
        tail = step == STEPS - 1
        ending = busy & tail
        m.d.comb += [self.busy.eq(busy), self.done.eq(done)]
        m.d.sync += [pend.eq(ending), fin.eq(ending & (lane == lanes - 1)), done.eq(fin)]
        row = Signal.like(self.data, reset_less=True)
        with m.If(self.start & ~busy):
            m.d.sync += [busy.eq(1), row.eq(self.data)]
        with m.Elif(fin):
            m.d.sync += busy.eq(0)
        with m.If(busy & ~fin):
            m.d.sync += step.eq(Mux(tail, 0, step + 1))
            with m.If(tail):
                m.d.sync += lane.eq(Mux(lane == lanes - 1, 0, lane + 1))

        # --- The lane's operands (multiplexers on ``lane``). Intermediate values are signals so
        # that the simulator evaluates them once, not at each of their uses.
        x = Signal(32)
        shift = Signal(SHIFT)
        b_hi = Signal()                         # which digit of the multiplier B takes
        m_digit = Signal(16)
        m_sign = Signal()
        m.d.comb += [
            x.eq(row.as_value().word_select(lane, 32)),
            shift.eq(self.shift.as_value().word_select(lane, 6)),
            m_digit.eq(self.multiplier.as_value().word_select(Cat(b_hi, lane), 16)),
            m_sign.eq(Cat(*(self.multiplier[l][31] for l in range(lanes))).bit_select(lane, 1)),
        ]

        # --- The shifter: x << left in steps 0 .. 5, reversed Q << (right - 1) in step 6.
        acc = Signal(32, reset_less=True)       # the SB_MAC16's output register
        q0 = Signal(reset_less=True)
        q = Cat(q0, acc[:31])                   # Q = 2 * acc + q0 (< 2**32)
        right = shift[5]                        # right > 0: the tail shifts
        # max(shift, 0) for x; right - 1 = ~shift for Q (shift < 0); else 0.
        amount = Signal(5)
        shifted = Signal(32)
        m.d.comb += [amount.eq(Mux(tail == right, shift[:5] ^ right.replicate(5), 0)),
                     shifted.eq(Mux(tail, q[::-1], x) << amount)]
        x_sign = shifted[31]                    # sign of x1 in steps 0 .. 5
        # The product's sign: written in every step of the lane but its tail, so it is the
        # lane's from step 1 on (step 2 preloads the nudge with it) up to and during the tail.
        neg = Signal(reset_less=True)
        with m.If(~tail):
            m.d.sync += neg.eq(x_sign ^ m_sign)

        # --- Multiplier operands: magnitude digits, (digit ^ sign) + carry.
        # A: digit of x1, inverted if negative, into ``a_pre`` (steps 0 .. 3: digits 0, 0, 1,
        # 1); incremented into ``a_q`` a cycle later. B: digit of the multiplier (steps 1 .. 4:
        # digits 0, 1, 0, 1) straight into ``b_q``. The carry out of a digit 0 is kept for the
        # digit 1 that follows (``a_carry``, ``b_carry``; written whenever digit 0 is formed).
        a_pre_hi = (step == 2) | (step == 3)
        a_hi = (step == 3) | (step == 4)
        m.d.comb += b_hi.eq((step == 2) | (step == 4))
        a_pre = Signal(16, reset_less=True)
        a_pre_sign = Signal(reset_less=True)
        m.d.sync += [a_pre.eq(Mux(a_pre_hi, shifted[16:], shifted[:16]) ^ x_sign.replicate(16)),
                     a_pre_sign.eq(x_sign)]
        a_carry = Signal(reset_less=True)
        b_carry = Signal(reset_less=True)
        a_sum = a_pre + Mux(a_hi, a_carry, a_pre_sign)
        b_sum = (m_digit ^ m_sign.replicate(16)) + Mux(b_hi, b_carry, m_sign)
        a_q = Signal(16, reset_less=True)       # the SB_MAC16's input registers
        b_q = Signal(16, reset_less=True)
        m.d.sync += [a_q.eq(a_sum[:16]), b_q.eq(b_sum[:16])]
        with m.If(~a_hi):
            m.d.sync += a_carry.eq(a_sum[16])
        with m.If(~b_hi):
            m.d.sync += b_carry.eq(b_sum[16])

        # --- Accumulator: acc = base + a_q * b_q in every cycle (only steps 2 .. 5 matter).
        # ``base`` is N = 2**30 - neg (step 2), acc >> 16 (steps 3, 5) or acc, written per bit
        # as a function of acc[i], acc[i + 16] and two selects so that it is one LUT4 per bit:
        # ``load`` picks N, whose bits are ``neg`` (0 .. 29), ~neg (30), 0 (31), carried by
        # ``sel``; otherwise ``sel`` picks acc >> 16.
        load = step == 2
        sel = Signal()
        m.d.comb += sel.eq(Mux(load, neg, (step == 3) | (step == 5)))
        base = Signal(32)
        for i in range(32):
            nudge = sel if i < 30 else ~sel if i == 30 else 0
            shifted_down = acc[i + 16] if i < 16 else 0
            m.d.comb += base[i].eq(Mux(load, nudge, Mux(sel, shifted_down, acc[i])))
        m.d.sync += acc.eq(base + a_q * b_q)
        with m.If(step == 5):
            m.d.sync += q0.eq(acc[15])          # bit 31 of P + N, dropped in step 5

        # --- Tail, first half (step 6): T = Q >> (right - 1), or Q; the magnitude is
        # R = T[1:9] + T[0] (or T[:8] + 0) = u + c unless ``big`` (then R >= 256 and only the sign
        # matters). Registered with the sign applied: u ^ neg and c ^ neg, so that the second
        # half adds zero_point + (neg ? ~u : u) + (neg ? ~c : c) = zero_point +/- (u + c).
        t = shifted[::-1]
        u = Signal(8, reset_less=True)
        c = Signal(reset_less=True)
        big = Signal(reset_less=True)
        tail_neg = Signal(reset_less=True)
        m.d.sync += [
            u.eq(Mux(right, t[1:9], t[:8]) ^ neg.replicate(8)),
            c.eq((right & t[0]) ^ neg),
            big.eq(t[9:].any() | (~right & t[8])),
            tail_neg.eq(neg),
        ]

        # --- Tail, second half (the cycle after step 6): zero point and clamp; the result enters
        # the top of the result shift register, so after the last lane lane l is in result[l].
        y = Signal(signed(10))                  # zero_point +/- (u + c): [-384, 383]
        m.d.comb += y.eq(self.zero_point + Cat(u, tail_neg, tail_neg).as_signed() + c)
        to_max = Mux(big, ~tail_neg, y > self.act_max)
        to_min = Mux(big, tail_neg, y < self.act_min)
        out = Mux(to_min, self.act_min, Mux(to_max, self.act_max, y[:8]))
        result = Signal(8 * lanes, reset_less=True)
        with m.If(pend):
            m.d.sync += result.eq(Cat(result[8:], out[:8]))
        m.d.comb += self.result.eq(result)
        return m
