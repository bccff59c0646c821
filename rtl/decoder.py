"""Instruction decoder: which queue an instruction goes to, and whether it is legal.

Combinational, or a pipeline of one or two register stages (``stages``). The checks are those of
rtl/isa.py, made in this order (the first failing one is the error): ILLEGAL_OPCODE, ILLEGAL_TOKEN,
ZERO_LENGTH, ROW_TOO_LONG, SPAD_RANGE, ACC_RANGE, BAD_CLAMP. Range checks use the full width of the
sums, so nothing wraps.
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

    ``stages``: 0, the outputs are combinational; 1 or 2, the decoder is a pipeline of that many
    register stages (the outputs are those of the word ``stages`` cycles earlier). Every
    opcode's checks are computed whatever the opcode: the field checks and the ends of the
    buffer ranges (adders; registered with ``stages=2``), then the ends against the buffer
    depths (comparators; registered with ``stages`` >= 1), then the opcode selects its checks.
    """
    def __init__(self, *, rows, cols, lanes, scratchpad_depth, accumulator_depth, stages=0):
        if stages not in (0, 1, 2):
            raise ValueError(f"stages must be 0, 1 or 2, not {stages!r}")
        self.rows, self.cols, self.lanes = rows, cols, lanes
        self.scratchpad_depth, self.accumulator_depth = scratchpad_depth, accumulator_depth
        self.stages = stages
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
        lanes, spad, acc = self.lanes, self.scratchpad_depth, self.accumulator_depth
        ld, mm, st, cf = w.load, w.matmul, w.store, w.config
        to_acc = ld.buffer == Buffer.ACCUMULATOR

        def registered(values, name, register):
            """``values`` (a dict) as signals, through a register stage if ``register``."""
            out = {}
            for key, value in values.items():
                out[key] = Signal(len(value), name=f"{name}_{key}")
                domain = m.d.sync if register else m.d.comb
                domain += out[key].eq(value)
            return out

        # Step 1a: the opcode, the field checks and the ends of the buffer ranges (sums), of
        # every opcode, whatever the opcode is.
        a = registered({
            "is_load": op == Opcode.LOAD, "is_matmul": op == Opcode.MATMUL,
            "is_store": op == Opcode.STORE, "is_config": op == Opcode.CONFIG,
            "is_fence": op == Opcode.FENCE, "is_halt": op == Opcode.HALT,
            "tokens": w.header.pop | w.header.push,
            "to_acc": to_acc,
            "load_zero": (ld.rows == 0) | (ld.row_bytes == 0),
            "load_too_long": ld.row_bytes > Mux(to_acc, 4 * lanes, lanes),
            "load_end": ld.sram_row + ld.rows,
            "matmul_zero": mm.rows == 0,
            "matmul_wgt_end": mm.wgt_row + self.rows,
            "matmul_act_end": mm.act_row + mm.rows,
            "matmul_acc_end": mm.acc_row + mm.rows,
            "store_zero": (st.rows == 0) | (st.row_bytes == 0),
            "store_too_long": st.row_bytes > Mux(st.requant, lanes, 4 * lanes),
            "store_end": st.acc_row + st.rows,
            "config_end": cf.params_row + 2,
            "config_clamp": cf.act_min > cf.act_max,
        }, "decode", self.stages >= 2)
        # Step 1b: the ranges against the buffer depths.
        c = registered({
            **{key: a[key] for key in ("is_load", "is_matmul", "is_store", "is_config",
                                       "is_fence", "is_halt", "tokens", "load_zero",
                                       "load_too_long", "matmul_zero", "store_zero",
                                       "store_too_long", "config_clamp")},
            "load_spad": ~a["to_acc"] & (a["load_end"] > spad),
            "load_acc": a["to_acc"] & (a["load_end"] > acc),
            "matmul_spad": (a["matmul_wgt_end"] > spad) | (a["matmul_act_end"] > spad),
            "matmul_acc": a["matmul_acc_end"] > acc,
            "store_acc": a["store_end"] > acc,
            "config_acc": a["config_end"] > acc,
        }, "check", self.stages >= 1)

        # Step 2: the opcode selects its checks.
        own = Signal(3)                    # the instruction's own engine bit (0 for FENCE/HALT)
        legal = Signal()
        m.d.comb += [
            legal.eq(c["is_load"] | c["is_matmul"] | c["is_store"] | c["is_config"] |
                     c["is_fence"] | c["is_halt"]),
            own.eq(Mux(c["is_load"], 1 << Engine.LOAD, 0) |
                   Mux(c["is_matmul"], 1 << Engine.EXEC, 0) |
                   Mux(c["is_store"] | c["is_config"], 1 << Engine.STORE, 0) |
                   Mux(c["is_fence"] | c["is_halt"], 0b111, 0)),
            self.engine.eq(Mux(c["is_matmul"], Engine.EXEC,
                               Mux(c["is_store"] | c["is_config"], Engine.STORE, Engine.LOAD))),
            self.fence.eq(c["is_fence"]),
            self.halt.eq(c["is_halt"]),
        ]
        zero = ((c["is_load"] & c["load_zero"]) | (c["is_matmul"] & c["matmul_zero"]) |
                (c["is_store"] & c["store_zero"]))
        too_long = (c["is_load"] & c["load_too_long"]) | (c["is_store"] & c["store_too_long"])
        spad_range = (c["is_load"] & c["load_spad"]) | (c["is_matmul"] & c["matmul_spad"])
        acc_range = ((c["is_load"] & c["load_acc"]) | (c["is_matmul"] & c["matmul_acc"]) |
                     (c["is_store"] & c["store_acc"]) | (c["is_config"] & c["config_acc"]))
        bad_clamp = c["is_config"] & c["config_clamp"]
        m.d.comb += self.faults.eq(Cat(~legal, (c["tokens"] & own).any(), zero, too_long,
                                       spad_range, acc_range, bad_clamp))
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
