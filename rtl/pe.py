"""Processing element of the weight-stationary systolic array.

One PE holds two int8 weights (bank 0 and bank 1), multiplies the activation passing through it by
the weight of the bank that the activation names, and adds the product to the partial sum coming
from above::

                     w_in (weight load beat)   psum_in
                          │                       │
                          ▼                       ▼
    act_in, sel_in ──► [act_out, sel_out] ──────────────────────► act_out, sel_out (to the right)
                          │         │
                  bank[sel_in] ─► [weight] ─► (act_out * weight) ─► [product]
                          │                                            │
                          ▼                                            ▼
                     [w_out] (to the PE below)         [psum_out] = psum_in + product

Every box ``[...]`` is a register; there are no clock enables. The multiplier
(:class:`~tessera.rtl.multiplier.RegisteredMultiplier`) has a register on each input (the activation
and the selected ``weight``) and one on its output (``product``), the shape of one hard DSP
multiplier with input and output registers (ECP5 MULT18X18D, iCE40 SB_MAC16); the ``"lut"`` one
adds a stage between them.

Weights are not shifted through the banks: a load beat travels down the column through ``w_out``
and the PE whose ``row`` matches the beat's row writes the beat's value into the named bank. Because
beats and activations travel with the same skew, a bank can be rewritten as soon as the last
activation that uses it has entered the array (see ``tensor_core.py``).

Timing: an activation presented on ``act_in`` in cycle t is in ``act_out`` in t+1, its product in
t+L and its contribution in ``psum_out`` in t+L+1, where L is the multiplier's latency (2 on a
DSP, 3 for ``"lut"``). ``psum_in`` must carry the partial sum of the same activation row in cycle
t+L, which is what the PE above provides when the row reaches it one cycle earlier.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .multiplier import RegisteredMultiplier
from .util import REPLICA

__all__ = ["OPERAND", "PRODUCT", "WeightBeat", "ProcessingElement", "psum_shape"]

#: Shape of activations and weights.
OPERAND = signed(8)
#: Shape of one product: -128 * -128 = 16384 needs 16 signed bits.
PRODUCT = signed(16)


def psum_shape(rows):
    """Signed shape that holds the sum of ``rows`` int8 x int8 products without overflow.

    The largest magnitude is ``rows * 16384`` (all operands -128), so 16 bits plus
    ``ceil(log2(rows))`` suffice; results are sign-extended to int32 at the array's output.
    """
    width = PRODUCT.width + (rows - 1).bit_length()
    assert (1 << (width - 1)) - 1 >= rows * 16384
    return signed(width)


class WeightBeat(data.StructLayout):
    """One weight travelling down a column: which PE row and which bank it is for."""
    def __init__(self, rows):
        super().__init__({
            "valid": unsigned(1),
            "bank":  unsigned(1),
            "row":   unsigned(max(1, (rows - 1).bit_length())),
            "value": OPERAND,
        })


class ProcessingElement(wiring.Component):
    """Multiply-accumulate cell at row ``row`` of an array with ``rows`` rows.

    Parameters
    ----------
    row : int
        Row index of this PE; it stores the weight beats addressed to this row.
    rows : int
        Number of rows of the array (sets the beat's row field and the partial-sum width).
    multiplier : str
        Multiplier implementation, see :class:`~tessera.rtl.multiplier.RegisteredMultiplier`.
    """
    def __init__(self, *, row, rows, multiplier="auto"):
        if not (0 <= row < rows):
            raise ValueError(f"row must be in [0, {rows}), not {row!r}")
        self.row = row
        self.rows = rows
        self.multiplier = RegisteredMultiplier(primitive=multiplier)
        beat = WeightBeat(rows)
        psum = psum_shape(rows)
        super().__init__({
            "act_in":   In(OPERAND),
            "sel_in":   In(1),
            "act_out":  Out(OPERAND),
            "sel_out":  Out(1),
            "w_in":     In(beat),
            "w_out":    Out(beat),
            "psum_in":  In(psum),
            "psum_out": Out(psum),
        })

    def elaborate(self, platform):
        m = Module()

        # Data registers are not reset: whatever they hold after a reset is never tagged valid
        # (the tensor core's tag delay line is reset), and a reset would fan out to every PE. Only
        # the weight beat's ``valid`` is reset, so no bank is written by a stale beat.
        bank = [Signal(OPERAND, name=f"bank{b}", reset_less=True) for b in range(2)]
        with m.If(self.w_in.valid & (self.w_in.row == self.row)):
            with m.If(self.w_in.bank):
                m.d.sync += bank[1].eq(self.w_in.value)
            with m.Else():
                m.d.sync += bank[0].eq(self.w_in.value)
        # The weight beat's control fields and the activation's bank select hold the same value
        # in every PE of an anti-diagonal (they travel with the skew), so synthesis would merge
        # them into one register per anti-diagonal, driving PEs across the whole array (on the
        # 12 x 12 ULX3S build: PE (9, 0) compared the row field held in PE (0, 10)'s register).
        # Named as replicas, the FPGA flows keep each PE's own (rtl/util.py, ``replicate``).
        w_valid = Signal(name=f"w_valid{REPLICA}")
        w_beat = Signal.like(self.w_out, name=f"w_beat{REPLICA}", reset_less=True)  # its
        act = Signal(OPERAND, reset_less=True)                  # ``valid`` is ``w_valid``
        sel = Signal(name=f"sel{REPLICA}", reset_less=True)
        psum = Signal(self.psum_out.shape(), reset_less=True)

        mul = m.submodules.mul = self.multiplier
        m.d.comb += [
            mul.a.eq(self.act_in),
            mul.b.eq(Mux(self.sel_in, bank[1], bank[0])),
            self.w_out.eq(w_beat),
            self.w_out.valid.eq(w_valid),
            self.act_out.eq(act),
            self.sel_out.eq(sel),
            self.psum_out.eq(psum),
        ]
        m.d.sync += [
            w_valid.eq(self.w_in.valid),
            w_beat.eq(self.w_in),
            act.eq(self.act_in),
            sel.eq(self.sel_in),
            psum.eq(self.psum_in + mul.p),
        ]
        return m
