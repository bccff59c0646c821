"""int8 x int8 multiplier with input and output registers (latency 2), mapped onto a hard DSP.

::

    a ─►[A reg]─┐
                ├─► x ─►[P reg]─► p        p(t+2) = a(t) * b(t)
    b ─►[B reg]─┘

Implementations (``primitive``):

``"generic"``
    Behavioural Amaranth. Yosys maps the ``*`` onto one DSP multiplier (ECP5 MULT18X18D, iCE40
    SB_MAC16 with ``synth_ice40 -dsp``, which also absorbs the registers) and keeps the registers
    in fabric on ECP5, because ``synth_ecp5`` does not pack registers into MULT18X18D.
``"ecp5"``
    An instance of the ECP5 ``MULT18X18D`` primitive with its own input registers (``REG_INPUTA``,
    ``REG_INPUTB``) and output register (``REG_OUTPUT``) on ``CLK0``, so the whole multiplier
    including its registers sits in the DSP slice. Simulation uses the behavioural model in
    ``tb/models/MULT18X18D.v`` (written from Lattice FPGA-TN-02205, ECP5 sysDSP usage guide).
``"auto"`` (default)
    ``"ecp5"`` when elaborated for an ECP5 platform, ``"generic"`` otherwise.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, ResetSignal, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PRIMITIVES", "RegisteredMultiplier"]

PRIMITIVES = ("auto", "generic", "ecp5")


class RegisteredMultiplier(wiring.Component):
    """``p = a * b`` two cycles later; ``a`` and ``b`` signed 8-bit, ``p`` signed 16-bit."""
    a: In(signed(8))
    b: In(signed(8))
    p: Out(signed(16))

    def __init__(self, *, primitive="auto"):
        if primitive not in PRIMITIVES:
            raise ValueError(f"primitive must be one of {', '.join(PRIMITIVES)}, not {primitive!r}")
        self.primitive = primitive
        super().__init__()

    def resolved_primitive(self, platform):
        if self.primitive != "auto":
            return self.primitive
        return "ecp5" if getattr(platform, "family", None) == "ecp5" else "generic"

    def elaborate(self, platform):
        m = Module()
        if self.resolved_primitive(platform) == "ecp5":
            self._elaborate_mult18x18d(m)
        else:
            a_reg = Signal(signed(8))
            b_reg = Signal(signed(8))
            m.d.sync += [
                a_reg.eq(self.a),
                b_reg.eq(self.b),
                self.p.eq(a_reg * b_reg),
            ]
        return m

    def _elaborate_mult18x18d(self, m):
        a18 = Signal(signed(18))
        b18 = Signal(signed(18))
        p36 = Signal(signed(36))
        m.d.comb += [a18.eq(self.a), b18.eq(self.b), self.p.eq(p36[:16])]
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
            ports[f"i_RST{i}"] = ResetSignal("sync") if i == 0 else Const(0, 1)
        m.submodules.dsp = Instance(
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
