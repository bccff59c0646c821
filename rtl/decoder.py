"""Instruction decoder: which queue an instruction goes to, and whether it is legal.

Purely combinational. The checks are those of rtl/isa.py, made in this order (the first failing
one is the error): ILLEGAL_OPCODE, ILLEGAL_TOKEN, ZERO_LENGTH, ROW_TOO_LONG, SPAD_RANGE, ACC_RANGE,
BAD_CLAMP. Range checks use the full width of the sums, so nothing wraps.
"""

from amaranth.hdl import C, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dma_descriptor import Buffer
from .isa import Engine, Instruction, Opcode, ProgramError

__all__ = ["Decoder", "CHECKS", "first_error"]


class Decoder(wiring.Component):
    """Checks one instruction word against an accelerator configuration.

    Ports: ``word`` (Instruction) in; ``error`` (ProgramError, 0 = legal), ``faults`` (one bit
    per check of :data:`CHECKS`: ``error`` is :func:`first_error` of them), ``engine`` (Engine of
    LOAD/MATMUL/STORE/CONFIG), ``fence``, ``halt`` out.
    """
    def __init__(self, *, rows, cols, lanes, scratchpad_depth, accumulator_depth):
        self.rows, self.cols, self.lanes = rows, cols, lanes
        self.scratchpad_depth, self.accumulator_depth = scratchpad_depth, accumulator_depth
        super().__init__({
            "word":   In(Instruction()),
            "error":  Out(4),
            "faults": Out(len(CHECKS)),
            "engine": Out(2),
            "fence":  Out(1),
            "halt":   Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.word
        op = w.header.opcode
        own = Signal(3)                    # the instruction's own engine bit (0 for FENCE/HALT)
        legal = Signal()
        zero = Signal()
        too_long = Signal()
        spad_range = Signal()
        acc_range = Signal()
        bad_clamp = Signal()
        lanes, spad, acc = self.lanes, self.scratchpad_depth, self.accumulator_depth

        with m.Switch(op):
            with m.Case(Opcode.LOAD):
                ld = w.load
                to_acc = ld.buffer == Buffer.ACCUMULATOR
                m.d.comb += [
                    legal.eq(1), own.eq(1 << Engine.LOAD), self.engine.eq(Engine.LOAD),
                    zero.eq((ld.rows == 0) | (ld.row_bytes == 0)),
                    too_long.eq(ld.row_bytes > Mux(to_acc, 4 * lanes, lanes)),
                    spad_range.eq(~to_acc & (ld.sram_row + ld.rows > spad)),
                    acc_range.eq(to_acc & (ld.sram_row + ld.rows > acc)),
                ]
            with m.Case(Opcode.MATMUL):
                mm = w.matmul
                m.d.comb += [
                    legal.eq(1), own.eq(1 << Engine.EXEC), self.engine.eq(Engine.EXEC),
                    zero.eq(mm.rows == 0),
                    spad_range.eq((mm.wgt_row + self.rows > spad) | (mm.act_row + mm.rows > spad)),
                    acc_range.eq(mm.acc_row + mm.rows > acc),
                ]
            with m.Case(Opcode.STORE):
                st = w.store
                m.d.comb += [
                    legal.eq(1), own.eq(1 << Engine.STORE), self.engine.eq(Engine.STORE),
                    zero.eq((st.rows == 0) | (st.row_bytes == 0)),
                    too_long.eq(st.row_bytes > Mux(st.requant, lanes, 4 * lanes)),
                    acc_range.eq(st.acc_row + st.rows > acc),
                ]
            with m.Case(Opcode.CONFIG):
                cf = w.config
                m.d.comb += [
                    legal.eq(1), own.eq(1 << Engine.STORE), self.engine.eq(Engine.STORE),
                    acc_range.eq(cf.params_row + 2 > acc),
                    bad_clamp.eq(cf.act_min > cf.act_max),
                ]
            with m.Case(Opcode.FENCE):
                m.d.comb += [legal.eq(1), own.eq(0b111), self.fence.eq(1)]
            with m.Case(Opcode.HALT):
                m.d.comb += [legal.eq(1), own.eq(0b111), self.halt.eq(1)]

        tokens = w.header.pop | w.header.push
        m.d.comb += self.faults.eq(Cat(~legal, (tokens & own).any(), zero, too_long, spad_range,
                                       acc_range, bad_clamp))
        m.d.comb += self.error.eq(first_error(self.faults))
        return m


#: The decoder's checks, in the order of their priority: bit i of ``faults`` is check i.
CHECKS = (ProgramError.ILLEGAL_OPCODE, ProgramError.ILLEGAL_TOKEN, ProgramError.ZERO_LENGTH,
          ProgramError.ROW_TOO_LONG, ProgramError.SPAD_RANGE, ProgramError.ACC_RANGE,
          ProgramError.BAD_CLAMP)


def first_error(faults):
    """The ProgramError of the first failing check in ``faults`` (NONE if none fails)."""
    code = C(ProgramError.NONE, 4)
    for bit, error in reversed(list(enumerate(CHECKS))):
        code = Mux(faults[bit], error, code)
    return code
