"""int8 x int8 multiplier with input and output registers, on a hard DSP or in logic.

::

    a ─►[A reg]─┐
                ├─► x ─►[P reg]─► p        p(t+2) = a(t) * b(t)     (latency 2: DSP)
    b ─►[B reg]─┘

    a ─►[A reg]─┬─ a[0:4] x b ─►[LO reg]─┐
                │                         ├─► HI * 16 + LO ─►[P reg]─► p
    b ─►[B reg]─┴─ a[4:8] x b ─►[HI reg]─┘     p(t+3) = a(t) * b(t)     (latency 3: "lut")

Implementations (``primitive``), each with its ``latency``:

``"generic"``
    Behavioural Amaranth. Yosys maps the ``*`` onto one DSP multiplier (ECP5 MULT18X18D, iCE40
    SB_MAC16 with ``synth_ice40 -dsp``, which also absorbs the registers) and keeps the registers
    in fabric on ECP5, because ``synth_ecp5`` does not pack registers into MULT18X18D.
``"ecp5"``
    An instance of the ECP5 ``MULT18X18D`` primitive with its own input registers (``REG_INPUTA``,
    ``REG_INPUTB``) and output register (``REG_OUTPUT``) on ``CLK0``, so the whole multiplier
    including its registers sits in the DSP slice. Simulation uses the behavioural model in
    ``tb/models/MULT18X18D.v`` (written from Lattice FPGA-TN-02205, ECP5 sysDSP usage guide).
``"lut"``
    In logic only (no DSP), for arrays larger than the device's DSP count or placed as one
    compact block: the product of the two registered operands is split into two 4 x 8-bit
    partial products (``a``'s low nibble, unsigned, and high nibble, signed), each a balanced
    tree of two levels of shifted-and-selected copies of ``b`` (written as additions, so Yosys
    infers no multiplier cell and maps no DSP), registered, then added: one carry chain per
    stage. Latency 3.
``"auto"`` (default)
    ``"ecp5"`` when elaborated for an ECP5 platform, ``"generic"`` otherwise.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PRIMITIVES", "LATENCY", "RegisteredMultiplier", "check_primitive", "mult18x18d",
           "resolve_primitive"]

PRIMITIVES = ("auto", "generic", "ecp5", "lut")

#: Cycles from an operand to its product, per primitive (``"auto"`` is one of the latency-2 ones).
LATENCY = {"auto": 2, "generic": 2, "ecp5": 2, "lut": 3}


def resolve_primitive(primitive, platform):
    """``primitive``, with ``"auto"`` resolved: ``"ecp5"`` when ``platform`` is an ECP5 platform
    (its DSPs are instantiated), else ``"generic"``."""
    if primitive != "auto":
        return primitive
    return "ecp5" if getattr(platform, "family", None) == "ecp5" else "generic"


def mult18x18d(m, a, b, name):
    """Add an ECP5 ``MULT18X18D`` to ``m`` with its input registers (``REG_INPUTA``,
    ``REG_INPUTB``) and output register (``REG_OUTPUT``) on the ``sync`` clock; return its 36-bit
    signed product ``P``: ``a * b`` of the values ``a`` and ``b`` had two cycles earlier.

    ``a`` and ``b`` are signed values of at most 18 bits (sign-extended to 18; an unsigned operand
    of up to 17 bits is given as ``value.as_signed()`` of one more bit, i.e. zero-extended). The
    registers are not reset and have no enable (reset and enable inputs tied off), so the whole
    multiplier with its three registers sits in the DSP slice. Simulation needs the behavioural
    model ``tb/models/MULT18X18D.v``."""
    a18 = Signal(signed(18), name=f"{name}_a")
    b18 = Signal(signed(18), name=f"{name}_b")
    p36 = Signal(signed(36), name=f"{name}_p")
    m.d.comb += [a18.eq(a), b18.eq(b)]
    ports = {}
    for i in range(18):
        ports[f"i_A{i}"] = a18[i]
        ports[f"i_B{i}"] = b18[i]
        ports[f"i_C{i}"] = Const(0, 1)
    for i in range(36):
        ports[f"o_P{i}"] = p36[i]
    for i in range(4):
        ports[f"i_CLK{i}"] = ClockSignal("sync") if i == 0 else Const(0, 1)
        ports[f"i_CE{i}"] = Const(1, 1) if i == 0 else Const(0, 1)
        ports[f"i_RST{i}"] = Const(0, 1)
    m.submodules[name] = Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
        p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
        p_REG_INPUTC_CLK="NONE",
        p_REG_PIPELINE_CLK="NONE",
        p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
        p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT",
        p_MULT_BYPASS="DISABLED",
        i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1),
        i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
        **ports,
    )
    return p36


def check_primitive(primitive, name="primitive"):
    """``primitive`` if it is one of :data:`PRIMITIVES`; else a ValueError naming it."""
    if primitive not in PRIMITIVES:
        raise ValueError(f"{name} must be one of {', '.join(PRIMITIVES)}, not {primitive!r}")
    return primitive


class RegisteredMultiplier(wiring.Component):
    """``p = a * b`` ``latency`` cycles later (:data:`LATENCY`: 2, or 3 for ``"lut"``); ``a``
    and ``b`` signed 8-bit, ``p`` signed 16-bit. A new pair of operands every cycle.

    The registers are not reset (the DSP's reset inputs are tied low): their contents are only
    ever used ``latency`` cycles after operands were presented, and a reset net would reach every
    PE of the array."""
    a: In(signed(8))
    b: In(signed(8))
    p: Out(signed(16))

    def __init__(self, *, primitive="auto"):
        self.primitive = check_primitive(primitive)
        self.latency = LATENCY[primitive]
        super().__init__()

    def resolved_primitive(self, platform):
        return resolve_primitive(self.primitive, platform)

    def elaborate(self, platform):
        m = Module()
        primitive = self.resolved_primitive(platform)
        if primitive == "ecp5":
            self._elaborate_mult18x18d(m)
            return m
        # In fabric: operand registers, the product (one stage, or two for "lut"), the output
        # register.
        a_reg = Signal(signed(8), reset_less=True)
        b_reg = Signal(signed(8), reset_less=True)
        p_reg = Signal(signed(16), reset_less=True)
        m.d.sync += [a_reg.eq(self.a), b_reg.eq(self.b)]
        if primitive == "lut":
            m.d.sync += p_reg.eq(self._lut_product(m, a_reg, b_reg))
        else:
            m.d.sync += p_reg.eq(a_reg * b_reg)
        m.d.comb += self.p.eq(p_reg)
        return m

    @staticmethod
    def _lut_product(m, a_reg, b_reg):
        """``a_reg * b_reg`` from two registered 4 x 8-bit partial products (a cycle later)."""
        def tree(terms):
            while len(terms) > 1:
                terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                         for i in range(0, len(terms), 2)]
            return terms[0]

        # a = a[0:4] (unsigned, 0 .. 15) + 16 * a[4:8] (signed, -8 .. 7); bit 7 weighs -8 * 16.
        low = [Mux(a_reg[i], b_reg << i, 0) for i in range(4)]
        high = [Mux(a_reg[4 + i], b_reg << i, 0) for i in range(3)] + \
               [Mux(a_reg[7], -(b_reg << 3), 0)]
        lo = Signal(signed(12), reset_less=True)     # -1920 .. 1905
        hi = Signal(signed(12), reset_less=True)     # -1016 .. 1024
        m.d.sync += [lo.eq(tree(low)), hi.eq(tree(high))]
        return (hi << 4) + lo

    def _elaborate_mult18x18d(self, m):
        m.d.comb += self.p.eq(mult18x18d(m, self.a, self.b, "dsp")[:16])
