"""Requantizer: int32 accumulator rows to int8, the golden model's ``requantize`` bit for bit.

Per lane ``l`` of a row, with the parameters latched by the last CONFIG instruction::

    left  = max(shift[l], 0)                 right = max(-shift[l], 0)
    x1    = wrap32(x << left)                                                   S1
    p     = x1 * multiplier[l]               (64-bit signed product: the operands
            registered again, four 16 x 16-bit partial products, then three
            adder stages)                                                       S2a, S2b .. S5
    q     = SRDHM: (p + nudge) / 2**31 truncated toward zero, INT32_MAX when
            x1 == multiplier == INT32_MIN    (nudge = 2**30 or 1 - 2**30)        S6, S7
    r     = RDBPOT(q, right): (q >> right) + (remainder > threshold)            S8, S9
    out   = clamp(r + zero_point, act_min, act_max) as int8                      S10 .. S12

Each stage is at most one carry chain or a small multiplexer tree deep (125 MHz on ECP5). Each of
these :data:`STAGES`-stage pipelines has one 32 x 32-bit signed multiplier, built from four
16 x 16-bit products (on ECP5, 4 MULT18X18D). ``units`` says how many pipelines there are:

* ``units == lanes`` (the default): one pipeline per lane. A row is accepted every cycle into a
  row register (S0) and comes out ``latency`` = ``STAGES + 1`` (14) cycles after its
  ``i_valid``; ``beats`` = 1.
* ``units < lanes``: the pipelines are time-shared. A row takes ``beats = ceil(lanes / units)``
  cycles. The input is registered first, per unit (``i_valid`` and the output parameters as one
  replica per unit, the unit's lanes and their parameters as plain registers: on a large array
  the units sit far apart, so nothing a unit loads is shared with another unit). A cycle after
  ``i_valid`` each unit latches its lanes of the row into a row register; in the ``j``-th cycle
  after that, lane ``j*units + u`` (slice ``j``; the last slice may be partial) enters pipeline
  ``u`` from that register, which shifts down by one lane every cycle, with its multiplier and
  shift from a registered multiplexer (nothing but registers in front of S1, so the S1 path is as
  short as with ``units == lanes``). Results of slices ``0 .. beats-2`` are collected in an
  output row register; ``o_valid`` is high for one cycle, with the whole row on ``o_data``, when
  the last slice leaves the last stage: ``latency`` = ``beats + STAGES + 1`` cycles after
  ``i_valid``. ``i_valid`` must be at least ``beats`` cycles apart.

A fixed-latency pipeline without back-pressure: the store path reserves room for every row it
puts in, and takes rows at most every ``beats`` cycles (see rtl/top.py). The parameters must be
stable while rows are in flight (CONFIG and STORE run in order in the STORE engine, so they are).
"""

from functools import reduce
from operator import or_

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .multiplier import mult18x18d, resolve_primitive
from .util import check_dimension, delay, replicate

__all__ = ["SHIFT", "STAGES", "Requantizer", "check_units"]

#: Shape of a latched per-lane shift, clamped to [-31, 30].
SHIFT = signed(6)

#: Register stages of one lane pipeline (S1, S2a, S2b, S3 .. S12).
STAGES = 13

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def check_units(units, *, lanes, name="units"):
    """Multiplier pipelines of a requantizer of ``lanes`` lanes: ``units`` (an integer in
    [1, lanes]), or ``lanes`` when ``units`` is None. Raises with a message naming the value."""
    if units is None:
        return lanes
    if isinstance(units, bool) or not isinstance(units, int):
        raise TypeError(f"{name} must be an integer in [1, {lanes}] (the lanes) or None, "
                        f"not {units!r}")
    if not 1 <= units <= lanes:
        raise ValueError(f"{name} must be an integer in [1, {lanes}] (the lanes) or None, "
                         f"not {units!r}")
    return units


def _lane_pipeline(m, x, mult, shift, zero_point, act_min, act_max, index, dsp):
    """Add the S1 .. S12 pipeline of one lane (or unit) ``index`` to ``m``: requantize ``x``
    with ``mult`` and ``shift``; return the registered int8 result, :data:`STAGES` cycles later.

    Every stage is at most one carry chain or one small multiplexer tree deep, for 125 MHz on
    ECP5; the product is four 16 x 16-bit partial products (one MULT18X18D each) summed in three
    stages. ``dsp``: the partial products are ECP5 MULT18X18D instances whose input registers
    take S1's ``x1`` and ``mult1`` (S2a) and whose output registers are S2b (nothing but routing
    between a fabric register and the DSP, and no logic between the DSP's multiplier and a
    register); else behavioural, with the same registers in fabric (Yosys maps the products onto
    DSPs and keeps the registers outside)."""
    def stage(value, shape, name):
        # Data registers are not reset (the valid delay line says what they hold): a reset would
        # fan out to every one of them.
        reg = Signal(shape, name=f"{name}_{index}", reset_less=True)
        m.d.sync += reg.eq(value)
        return reg

    def later(value, name, stages):
        for i in range(stages):
            value = stage(value, value.shape(), f"{name}{i}")
        return value

    # S1: left shift with int32 wrap; right shift amount.
    # (max(shift, 0) from the sign bit: no comparator in front of the barrel shifter.)
    left = Signal(range(31), name=f"left_{index}")
    m.d.comb += left.eq(Mux(shift[-1], 0, shift[:5]))
    x1 = stage((x << left)[:32], signed(32), "x1")
    right = stage(Mux(shift < 0, -shift, 0), range(32), "right")
    mult1 = stage(mult, signed(32), "mult1")
    # S2: partial products of x1 = xh * 2**16 + xl and mult1 = mh * 2**16 + ml; the SRDHM
    # overflow case (x1 == mult1 == INT32_MIN).
    # (S2 is two stages, S2a and S2b: the operands' registers, then the products' registers.)
    if dsp:
        def half(value, high):      # as an 18-bit signed DSP operand (low half zero-extended)
            return value[16:].as_signed() if high else Cat(value[:16], C(0, 1)).as_signed()
        products = {}
        for name, hx, hm in (("ll", 0, 0), ("lh", 0, 1), ("hl", 1, 0), ("hh", 1, 1)):
            products[name] = mult18x18d(m, half(x1, hx), half(mult1, hm), f"pp_{name}_{index}")
        ll = products["ll"][:32]
        lh = products["lh"][:33].as_signed()
        hl = products["hl"][:33].as_signed()
        hh = products["hh"][:32].as_signed()
    else:
        x2, mult2 = stage(x1, signed(32), "x2"), stage(mult1, signed(32), "mult2")
        xl, xh = x2[:16], x2[16:].as_signed()
        ml, mh = mult2[:16], mult2[16:].as_signed()
        ll = stage(xl * ml, unsigned(32), "pp_ll")
        lh = stage(xl * mh, signed(33), "pp_lh")
        hl = stage(xh * ml, signed(33), "pp_hl")
        hh = stage(xh * mh, signed(32), "pp_hh")
    overflow = stage((x1 == INT32_MIN) & (mult1 == INT32_MIN), 1, "overflow")
    # S3 .. S5: p = hh * 2**32 + (lh + hl) * 2**16 + ll, the 64-bit product.
    mid = stage(lh + hl, signed(34), "pp_mid")
    ll3, hh3 = stage(ll, unsigned(32), "pp_ll3"), stage(hh, signed(32), "pp_hh3")
    low = stage((mid << 16) + ll3, signed(51), "pp_low")
    hh4 = stage(hh3, signed(32), "pp_hh4")
    p = stage((hh4 << 32) + low, signed(64), "p")
    # S6, S7: rounding doubling high half; C-style division by 2**31 truncates toward zero.
    s = stage(p + Mux(p >= 0, 1 << 30, 1 - (1 << 30)), signed(65), "s")
    q = stage(Mux(later(overflow, "overflow_", 5), INT32_MAX,
                  ((s + Mux(s < 0, (1 << 31) - 1, 0)) >> 31)[:32]), signed(32), "q")
    # S8, S9: rounding divide by a power of two (round half away from zero).
    # The mask of the bits shifted out is a register, computed a stage ahead from ``right``.
    right7 = later(right, "right_", 6)
    mask = stage((1 << right7) - 1, unsigned(32), "mask")
    right8 = stage(right7, right7.shape(), "right_6")
    # The arithmetic shift in two steps, one per stage: by whole bytes (right8's high bits) in
    # S8, by the rest in S9, while the rounding is decided (a 32-bit shifter by 0 .. 31 in one
    # stage: routed 12 x 12, 9.3 ns).
    shifted = stage(q >> Cat(C(0, 3), right8[3:]), signed(32), "shifted")
    remainder = stage(q.as_unsigned() & mask, unsigned(32), "remainder")
    threshold = stage((mask >> 1) + (q < 0), unsigned(32), "threshold")
    round_up = stage(remainder > threshold, 1, "round_up")
    right9 = stage(right8[:3], unsigned(3), "right_7")
    shifted9 = stage(shifted >> right9, signed(32), "shifted9")
    # S10 .. S12: zero point, then the clamp's two comparisons (registered, with the low byte),
    # then its multiplexer: a comparison and the multiplexer after it in one stage were routed
    # 12 x 12 paths of up to 9.8 ns.
    y = stage(shifted9 + round_up + zero_point, signed(34), "y")
    below = stage(y < act_min, 1, "below")
    above = stage(y > act_max, 1, "above")
    y8 = stage(y[:8], signed(8), "y8")
    return stage(Mux(below, act_min, Mux(above, act_max, y8)), signed(8), "out")


class Requantizer(wiring.Component):
    """``lanes`` lanes of requantization on ``units`` multiplier pipelines (default ``lanes``).

    Ports: ``i_valid``, ``i_data`` (lanes x int32), parameters ``multiplier`` (lanes x int32),
    ``shift`` (lanes x signed 6), ``zero_point``, ``act_min``, ``act_max`` (int8); ``o_valid``,
    ``o_data`` (lanes x int8), ``latency`` cycles after the input.

    Attributes: ``units``; ``beats`` = ``ceil(lanes / units)``, the fewest cycles between two
    ``i_valid`` pulses (1: a row every cycle); ``latency`` = ``STAGES + beats``, plus one when
    ``beats`` > 1. ``o_valid`` pulses once per row.

    ``primitive``: how the partial products are built: ``"ecp5"``, MULT18X18D instances with
    their input and output registers (simulation needs ``tb/models/MULT18X18D.v``);
    ``"generic"``, behavioural; ``"auto"`` (default), ``"ecp5"`` when elaborated for an ECP5
    platform. The results and the timing are the same.
    """

    PRIMITIVES = ("auto", "generic", "ecp5")

    def __init__(self, *, lanes, units=None, primitive="auto"):
        if primitive not in self.PRIMITIVES:
            raise ValueError(f"primitive must be one of {', '.join(self.PRIMITIVES)}, "
                             f"not {primitive!r}")
        self.primitive = primitive
        self.lanes = check_dimension("lanes", lanes)
        self.units = check_units(units, lanes=lanes)
        self.beats = -(-lanes // self.units)
        # One cycle in the row register, then one per slice after the first; time-shared
        # units have an input register in front of it.
        self.latency = STAGES + self.beats + (self.beats > 1)
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

    def _pipeline(self, m, x, mult, shift, index, dsp):
        return _lane_pipeline(m, x, mult, shift, self.zero_point, self.act_min, self.act_max,
                              index, dsp)

    def elaborate(self, platform):
        m = Module()
        dsp = resolve_primitive(self.primitive, platform) == "ecp5"
        if self.beats == 1:
            # S0: the row register (the accumulator's block RAM output is not behind the left
            # shift of S1 then).
            row = Signal.like(self.i_data, reset_less=True)
            m.d.sync += row.eq(self.i_data)
            m.d.comb += self.o_valid.eq(delay(m, self.i_valid, STAGES + 1, "valid"))
            for l in range(self.lanes):
                out = self._pipeline(m, row[l], self.multiplier[l], self.shift[l], l, dsp)
                m.d.comb += self.o_data[l].eq(out)
            return m

        lanes, units, beats = self.lanes, self.units, self.beats

        # S0a: the input, registered per unit. On a large array the units' multipliers sit far
        # apart (the ULX3S floorplan puts them on different DSP rows), so each unit has its own
        # registers: ``valid`` and the output parameters as replicas (one per unit), the row's
        # lanes and the per-lane parameters it uses as plain registers (the parameters are
        # stable while rows are in flight; their copies are a cycle late, which the latency
        # covers). No register of a unit then loads from a signal shared with the other units.
        valids = replicate(m, self.i_valid, units, "in_valid")
        outputs = {name: replicate(m, getattr(self, name), units, name, reset_less=True)
                   for name in ("zero_point", "act_min", "act_max")}

        # Slice j enters the pipelines in the j-th cycle after the row's ``valid`` copy.
        outs = []
        for u in range(units):
            valid = valids[u]
            unit_lanes = [j * units + u for j in range(beats) if j * units + u < lanes]
            data_in = [Signal(signed(32), name=f"data_in_{l}", reset_less=True)
                       for l in unit_lanes]
            mults = [Signal(signed(32), name=f"mult_in_{l}", reset_less=True)
                     for l in unit_lanes]
            shifts = [Signal(SHIFT, name=f"shift_in_{l}", reset_less=True) for l in unit_lanes]
            for l, d, mu, sh in zip(unit_lanes, data_in, mults, shifts):
                m.d.sync += [d.eq(self.i_data[l]), mu.eq(self.multiplier[l]),
                             sh.eq(self.shift[l])]
            # Which slice enters next, one-hot (bit j: slice j); zero when idle.
            phase = Signal(beats, name=f"phase_{u}")
            select = Signal(beats, name=f"select_{u}")
            m.d.comb += select.eq(Mux(valid, 1, phase))
            m.d.sync += phase.eq(Mux(valid, 0b10, phase << 1))   # bit beats-1 shifts out
            # S0b (registers only): the unit's lanes of the row, loaded with ``valid`` and then
            # shifted down a lane every cycle, so slice j's lane is in ``row[0]`` in the j-th
            # cycle after the load; the slice's multiplier and shift from a registered AND-OR
            # multiplexer on the one-hot select.
            row = [Signal(signed(32), name=f"row_{l}", reset_less=True) for l in unit_lanes]
            for k in range(len(row)):
                following = row[k + 1] if k + 1 < len(row) else 0
                m.d.sync += row[k].eq(Mux(valid, data_in[k], following))
            mult0 = Signal(signed(32), name=f"mult0_{u}", reset_less=True)
            shift0 = Signal(SHIFT, name=f"shift0_{u}", reset_less=True)
            m.d.sync += [
                mult0.eq(reduce(or_, (Mux(select[j], mults[j], 0) for j in range(len(row))))),
                shift0.eq(reduce(or_, (Mux(select[j], shifts[j], 0) for j in range(len(row))))),
            ]
            if u == 0:
                # Which slice is in S0b (one-hot; zero: none): unit 0 has every slice.
                tag = Signal(beats)
                m.d.sync += tag.eq(select)
            outs.append(_lane_pipeline(m, row[0], mult0, shift0, outputs["zero_point"][u],
                                       outputs["act_min"][u], outputs["act_max"][u], u, dsp))

        # Slice j leaves the last stage when its tag bit does: slices 0 .. beats-2 are collected, the last
        # one completes the row.
        done = delay(m, tag, STAGES, "slice")
        m.d.comb += self.o_valid.eq(done[beats - 1])
        for j in range(beats):
            for u in range(units):
                lane = j * units + u
                if lane >= lanes:
                    continue
                if j == beats - 1:
                    m.d.comb += self.o_data[lane].eq(outs[u])
                else:
                    collected = Signal(signed(8), name=f"collected_{lane}", reset_less=True)
                    with m.If(done[j]):
                        m.d.sync += collected.eq(outs[u])
                    m.d.comb += self.o_data[lane].eq(collected)
        return m
