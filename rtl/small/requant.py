"""Serial requantizer: int32 accumulator rows to int8, lane by lane on one 16 x 16 multiplier, bit
for bit the requantization of the instruction-level simulator (``requantize_lanes`` in
sim/isa_sim.py) and of the pipelined :class:`~tessera.rtl.requant.Requantizer`.

Per lane ``l``, with any int32 ``multiplier[l]`` and ``shift[l]`` in [-31, 30] (the loaded
parameters)::

    left = max(shift, 0)        right = max(-shift, 0)
    x1   = wrap32(x << left)
    q    = SRDHM(x1, multiplier)      (INT32_MAX if both are INT32_MIN, else the rounded high
                                       word of the doubled product: (p + nudge) / 2**31 toward 0)
    r    = RDBPOT(q, right)           (round half away from zero)
    out  = clamp(r + zero_point, act_min, act_max)

Built for area (the iCE40UP5K variant of Tessera): one multiplier, one shifter, narrow adders.

**Interface.** The requantizer owns the per-lane parameters. ``load_multiplier`` (one cycle)
stores ``params`` (lanes x int32, an accumulator row, lane 0 in the low bits) as the lanes'
multipliers; ``load_shift`` stores each lane of ``params`` clamped to [-31, 30] as its shift (the
CONFIG instruction's ``shift = clamp(acc[params_row + 1, l], -31, 30)``, ``Machine._config`` in
sim/isa_sim.py). Both are taken only while ``busy`` is 0 (the ``done`` cycle and the cycle that
takes ``start`` included: a load there applies to the row that starts) and ignored while
``busy`` is 1. Out of reset the multipliers and the shifts are 0 (``RequantParams.reset``).
``start`` (one cycle) is taken when ``busy`` is 0 and ignored otherwise; ``data`` (lanes x int32)
is copied into the row register then, so the caller may change it afterwards. ``zero_point``,
``act_min`` and ``act_max`` (int8) are read while the row is processed and must be stable from
``start`` to ``done``. ``busy`` is high from the cycle after ``start`` up to the cycle before
``done``; ``done`` pulses for one cycle when ``result`` (lanes x int8) becomes valid, which it
stays until the next ``start`` (loads do not change it). A ``start`` in the ``done`` cycle is
taken.

**Rotation instead of multiplexers.** Lane 0 of every lane register is the lane being worked on,
so nothing selects a lane: at the end of each lane (step 6) the row and the shifts move down by
one lane, the shifts' lane 0 going to the top (a rotation). The multipliers rotate by one 16-bit
digit after steps 2 and 4, so that the digit the multiplier's B side takes is always the lowest
one (no digit multiplexer either). A row thus rotates the parameters exactly ``lanes`` times, and
they are back in their order when ``busy`` falls. The row register is a plain shift register
(its top lane only loads), and it collects the results too: each lane's int8 result enters the
low byte of its top lane and moves down with it, so that ``result[l]`` is the low byte of row
lane ``l`` once all lanes are done. Each of these flip-flops has a two-input multiplexer as its
D input (load or rotate), a LUT4 that shares the flip-flop's logic cell; a lane multiplexer
(about 2 LUT4s per bit for 4 lanes) needs cells of its own, in front of registers that take a
cell each anyway.

**Timing.** ``done`` comes :attr:`SerialRequantizer.cycles` = ``STEPS * lanes + 2`` =
``7 * lanes + 2`` cycles after the cycle that takes ``start`` (one cycle into the row
register's copy, seven per lane, one for the last lane's clamp), and a row can start every
``7 * lanes + 2`` cycles. Lane ``l`` runs in steps 0 .. 6 of cycles ``7 l + 1 .. 7 l + 7``
(``Pij = |x1|_i * |m|_j``, products of 16-bit digits of the magnitudes, below)::

    step  shifter             multiplier operands (registered)    accumulator (in the SB_MAC16)
    0     x1 = x << left      a_pre: digit 0 of x1                (neg registered)
    1     x1                  a_pre: digit 1   a_q, b_q: 0, 0
    2     x1                  a_pre: digit 0   a_q, b_q: 1, 0     acc = N + P00
    3     x1                  a_pre: digit 1   a_q, b_q: 0, 1     acc = (acc >> 16) + P10
    4     x1                                   a_q, b_q: 1, 1     acc = acc + P01
    5     x1                                                      acc = (acc >> 16) + P11
    6     Q >> (right - 1)    tail, first half: rounding and saturation, registered

The multipliers' lowest digit is the lane's digit 0 in steps 0 .. 2 and its digit 1 in steps 3
and 4; from step 5 on it is the next lane's digit 0. The tail's second half (zero point, clamp,
into the row register's top lane) runs in the next lane's step 0, or for the last lane in the
cycle before ``done``.

**Sign and magnitude.** The product is formed from the magnitudes |x1| and |m| (each at most
2**31) and ``neg`` = sign(x1) xor sign(m). Both roundings are then floors of non-negative
numbers: SRDHM is ``Q = (P + N) >> 31`` with ``P = |x1| |m|`` and the nudge ``N = 2**30 - neg``
(``trunc((-P + 1 - 2**30) / 2**31) = -((P + 2**30 - 1) >> 31)``), and RDBPOT, which rounds half
away from zero, is on the magnitude ``R = floor(Q / 2**right + 1/2) = ((Q >> (right - 1)) + 1) >>
1`` (``R = Q`` when ``right`` is 0); ``r = -R`` if ``neg``. gemmlowp's one overflow
(INT32_MIN * INT32_MIN, ``neg`` = 0) gives ``Q = 2**31`` instead of INT32_MAX: every ``right``
rounds both to the same ``R`` (``right`` = 0 saturates either way), so ``Q`` is simply kept with
32 bits.

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
products come A digit first (``P00, P10, P01, P11``: the weights 1, 2**16, 2**16, 2**32 in the
same order as ``P00, P01, P10, P11``) so that B keeps each digit of the multiplier for two
cycles and the rotating multiplier register hands them over in order. The magnitudes' digits
are formed one per cycle: a digit of x1 or m, inverted if negative, plus a carry (the sign for
digit 0, the saved carry out of digit 0 for digit 1): one 16-bit incrementer per operand, not
two 32-bit negations. The A side spends a cycle in ``a_pre`` first (the shifter is in front of
it; the multiplier's B side, from the parameters, issues a cycle later).

**One shifter for both shifts.** ``left`` and ``right`` are never both non-zero, and x1 is needed
only until step 3 while ``Q`` exists only from step 6, so one 32-bit left shifter serves both:
steps 0 .. 5 shift ``x`` by ``left``; step 6 shifts the bit-reversed ``Q`` by ``right - 1`` (the
low five bits of ``~shift``), which read reversed is ``Q >> (right - 1)``. The stored shift is
the form this wants (:data:`SHIFT_CODE`: the sign, the low five bits xor the sign, and an
out-of-range flag that makes them read 30, i.e. a shift of 30 or -31). Its input multiplexer
is the price of sharing (about 40 LUT4s, against about 140 for a second shifter).

**Saturation.** ``R >= 256`` clamps like any larger value (``|zero_point| <= 128``), so the tail
keeps 8 bits of ``Q >> (right - 1)`` (or of ``Q``), its rounding carry and an "at least 256" flag;
``y = zero_point +/- R`` then has 10 bits and two comparisons clamp it.

Registers: the row (32 x lanes, not reset; also the results), the multipliers (32 x lanes) and
the shifts (7 x lanes: :data:`SHIFT_CODE`, the clamp already applied), ``a_pre`` and the tail's
10 bits, a few flags and the step and lane counters. Measured (Yosys 0.70 ``synth_ice40 -dsp``;
logic cells: nextpnr-ice40 0.11.1 ``--pack-only``): ``lanes`` = 4 takes 1 SB_MAC16, 748 SB_LUT4,
60 SB_CARRY and 324 flip-flops in 787 logic cells; ``lanes`` = 2 568 SB_LUT4 and 181 flip-flops
(607 cells); ``lanes`` = 1 470 SB_LUT4 and 110 flip-flops (516 cells). About 260 of the 748
LUT4s are the registers' load-or-rotate multiplexers, in the cells of their flip-flops. (With a
lane multiplexer instead, and the parameter registers and clamp outside, as in the first
version: 605 SB_LUT4, 296 SB_CARRY, 353 flip-flops, 1148 cells for ``lanes`` = 4.) ABC's choices
move the LUT count by some 20 from one change to the next. The critical path (step
counter, shift amount, shifter, tail) routed at 33.9 MHz for ``lanes`` = 4 and for ``lanes`` = 1
on an iCE40UP5K (nextpnr-ice40 0.11.1, seed 1, the ports behind registers; 31.3 and 32.2 MHz
with the lane multiplexer); the target is 24 MHz.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..util import check_dimension

__all__ = ["STEPS", "SHIFT_CODE", "SerialRequantizer", "shift_code"]

#: Cycles per lane.
STEPS = 7


#: A lane's stored shift ``clamp(v, -31, 30)`` of an int32 ``v`` (see :func:`shift_code`):
#: ``neg`` its sign, ``bits`` the low five bits of ``v`` xor the sign (``shift`` or ``-shift - 1``
#: if ``v`` is in range), ``sat``: ``v`` is out of range (>= 31 or <= -32; the shift is 30 or -31,
#: ``bits`` then reads as 30).
SHIFT_CODE = data.StructLayout({"bits": 5, "neg": 1, "sat": 1})


def shift_code(m, value, name):
    """The :data:`SHIFT_CODE` of the int32 ``value`` (a 32-bit Value), computed in ``m``.

    With ``t = value ^ sign`` (bitwise), ``sat`` is ``t[5:31] != 0`` or ``t[:5] == 31``. Its
    partial terms are kept wires, one LUT4 each (three bits of ``t`` and the sign; the low five
    bits' term two): left to itself ABC maps the 27-input function to about 26 LUT4s, not 16."""
    sign = value[31]
    terms = []
    for i in range(5, 31, 3):
        bits = value[i:min(i + 3, 31)]
        term = Signal(name=f"{name}_out_{i}", attrs={"keep": 1})
        m.d.comb += term.eq(bits != sign.replicate(len(bits)))
        terms.append(term)
    top = Signal(name=f"{name}_out_top", attrs={"keep": 1})
    m.d.comb += top.eq(value[:5] == ~sign.replicate(5))
    return Cat(value[:5] ^ sign.replicate(5), sign, Cat(*terms, top).any())


class SerialRequantizer(wiring.Component):
    """``lanes`` lanes of requantization, one lane at a time on one 16 x 16 multiplier.

    Ports: ``load_multiplier``, ``load_shift`` (pulses, taken while not busy) with ``params``
    (lanes x int32): store the per-lane multipliers, or the per-lane shifts clamped to [-31, 30]
    (0 and 0 out of reset); ``start``; ``data`` (lanes x int32, copied at ``start``);
    ``zero_point``, ``act_min``, ``act_max`` (int8), stable until ``done``; ``busy``, ``done``,
    ``result`` (lanes x int8, valid from ``done`` to the next ``start``).

    Attribute ``cycles`` = ``STEPS * lanes + 2``: from the cycle that takes ``start`` to
    ``done``.
    """

    def __init__(self, lanes):
        self.lanes = check_dimension("lanes", lanes)
        self.cycles = STEPS * self.lanes + 2
        super().__init__({
            "start":           In(1),
            "data":            In(data.ArrayLayout(signed(32), lanes)),
            "load_multiplier": In(1),
            "load_shift":      In(1),
            "params":          In(data.ArrayLayout(signed(32), lanes)),
            "zero_point":      In(signed(8)),
            "act_min":         In(signed(8)),
            "act_max":         In(signed(8)),
            "busy":            Out(1),
            "done":            Out(1),
            "result":          Out(data.ArrayLayout(signed(8), lanes)),
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
        take = self.start & ~busy
        with m.If(take):
            m.d.sync += busy.eq(1)
        with m.Elif(fin):
            m.d.sync += busy.eq(0)
        with m.If(busy & ~fin):
            m.d.sync += step.eq(Mux(tail, 0, step + 1))
            with m.If(tail):
                m.d.sync += lane.eq(Mux(lane == lanes - 1, 0, lane + 1))

        # --- Lane registers, lane 0 the one worked on. The row is copied at ``start`` and moves
        # down a lane at the end of each lane (``ending``; its top lane only loads, and takes
        # each lane's result in its low byte). The parameters are loaded while idle and rotate:
        # the shifts by a lane at ``ending``, the multipliers by a digit after steps 2 and 4.
        row = [Signal(32, name=f"row_{l}", reset_less=True) for l in range(lanes)]
        with m.If(take):
            m.d.sync += [row[l].eq(self.data[l]) for l in range(lanes)]
        with m.Elif(ending):
            m.d.sync += [row[l].eq(row[l + 1]) for l in range(lanes - 1)]
        mult = Signal(32 * lanes)               # lane l: bits 32 l .. 32 l + 31
        half = busy & ((step == 2) | (step == 4))
        with m.If(half):
            m.d.sync += mult.eq(Cat(mult[16:], mult[:16]))
        with m.If(~busy & self.load_multiplier):
            m.d.sync += mult.eq(self.params.as_value())
        enc = [Signal(SHIFT_CODE, name=f"shift_{l}") for l in range(lanes)]
        with m.If(ending):
            m.d.sync += [enc[l].eq(enc[(l + 1) % lanes]) for l in range(lanes)]
        codes = [shift_code(m, self.params[l], f"shift_{l}") for l in range(lanes)]
        with m.If(~busy & self.load_shift):
            m.d.sync += [enc[l].eq(codes[l]) for l in range(lanes)]

        x = row[0]
        b_hi = Signal()                         # B takes digit 1 (steps 3, 4)
        m_digit = mult[:16]
        # The lane's multiplier's sign: bit 15 of the lowest digit when that is digit 1.
        m_sign = Signal()
        m.d.comb += m_sign.eq(Mux(b_hi, mult[15], mult[31]))

        # --- The shifter: x << left in steps 0 .. 5, reversed Q << (right - 1) in step 6.
        acc = Signal(32, reset_less=True)       # the SB_MAC16's output register
        q0 = Signal(reset_less=True)
        q = Cat(q0, acc[:31])                   # Q = 2 * acc + q0 (< 2**32)
        right = enc[0].neg                      # right > 0: the tail shifts
        # max(shift, 0) for x; right - 1 for Q (shift < 0); else 0. Out of range: 30.
        sat = enc[0].sat
        amount = Signal(5)
        shifted = Signal(32)
        m.d.comb += [amount.eq(Mux(tail == right, Cat(enc[0].bits[0] & ~sat,
                                                      enc[0].bits[1:] | sat.replicate(4)), 0)),
                     shifted.eq(Mux(tail, q[::-1], x) << amount)]
        x_sign = shifted[31]                    # sign of x1 in steps 0 .. 5
        # The product's sign: written in step 0, so it is the lane's from step 1 (step 2
        # preloads the nudge with it) through the tail's second half (the next step 0).
        neg = Signal(reset_less=True)
        with m.If(step == 0):
            m.d.sync += neg.eq(x_sign ^ m_sign)

        # --- Multiplier operands: magnitude digits, (digit ^ sign) + carry.
        # A: digit of x1, inverted if negative, into ``a_pre`` (steps 0 .. 3: digits 0, 1, 0,
        # 1); incremented into ``a_q`` a cycle later. B: the multipliers' lowest digit (steps
        # 1 .. 4: digits 0, 0, 1, 1) straight into ``b_q``. The carry out of a digit 0 is kept
        # for the digit 1 that follows (``a_carry``, ``b_carry``; written whenever digit 0 is
        # formed).
        a_pre_hi = (step == 1) | (step == 3)
        a_hi = (step == 2) | (step == 4)
        m.d.comb += b_hi.eq((step == 3) | (step == 4))
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
        m.d.sync += [
            u.eq(Mux(right, t[1:9], t[:8]) ^ neg.replicate(8)),
            c.eq((right & t[0]) ^ neg),
            big.eq(t[9:].any() | (~right & t[8])),
        ]

        # --- Tail, second half (the cycle after step 6, ``neg`` still the lane's): zero point
        # and clamp; the result enters the low byte of the row's top lane, so after the last
        # lane lane l's is in row lane l.
        y = Signal(signed(10))                  # zero_point +/- (u + c): [-384, 383]
        m.d.comb += y.eq(self.zero_point + Cat(u, neg, neg).as_signed() + c)
        to_max = Mux(big, ~neg, y > self.act_max)
        to_min = Mux(big, neg, y < self.act_min)
        out = Mux(to_min, self.act_min, Mux(to_max, self.act_max, y[:8]))
        with m.If(pend):
            m.d.sync += row[lanes - 1][:8].eq(out[:8])
        m.d.comb += [self.result[l].eq(row[l][:8]) for l in range(lanes)]
        return m
