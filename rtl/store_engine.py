"""STORE engine: executes CONFIG and STORE instructions.

::

    queue ──► IDLE ── head, tokens (pop) ──┬─ CONFIG ─► read accumulator rows params_row (multipliers)
                                           │            and params_row + 1 (shifts) ─► latch ─► IDLE
                                           └─ STORE ──► ISSUE descriptor ─► WAIT dma_done ─► IDLE
                                                                 (push tokens, or BUS_ERROR)

During a STORE the DMA requests accumulator rows and rtl/top.py passes them through the
:class:`~tessera.rtl.requant.Requantizer` when ``requant`` is set, with the parameters latched here
(``multiplier``, ``shift`` clamped to [-31, 30], ``zero_point``, ``act_min``, ``act_max``). They
reset to multiplier 0, shift 0, zero point 0 and the full int8 range.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .accumulator import AccumulatorRow
from .dma_descriptor import Buffer, Direction, DmaDescriptor
from .engine import (EngineControl, IdleFlags, QueueEntry, attach_queue, dma_states,
                     take_head)
from .isa import Opcode
from .requant import SHIFT
from .util import replicate

__all__ = ["StoreEngine"]


class StoreEngine(wiring.Component):
    """Ports: ``queue``, ``control``, ``descriptor``/``dma_done``/``dma_error`` (as the LOAD
    engine), ``param_read`` (accumulator read requests for CONFIG: addr/en out) with
    ``acc_data``/``acc_valid`` in (the accumulator read port's output), and the requantization
    state out: ``requant``, ``multiplier``, ``shift``, ``zero_point``, ``act_min``, ``act_max``."""
    def __init__(self, *, lanes, accumulator_addr_width):
        self.lanes = lanes
        super().__init__({
            "queue":      In(stream.Signature(QueueEntry())),
            "control":    Out(EngineControl()),
            "descriptor": Out(stream.Signature(DmaDescriptor())),
            "dma_done":   In(1),
            "dma_error":  In(4),
            "param_read": Out(wiring.Signature({"addr": Out(accumulator_addr_width),
                                                 "en": Out(1)})),
            "acc_data":   In(AccumulatorRow(lanes)),
            "acc_valid":  In(1),
            "requant":    Out(1),
            "multiplier": Out(data.ArrayLayout(signed(32), lanes)),
            "shift":      Out(data.ArrayLayout(SHIFT, lanes)),
            "zero_point": Out(signed(8)),
            "act_min":    Out(signed(8), init=-128),
            "act_max":    Out(signed(8), init=127),
        })

    def elaborate(self, platform):
        m = Module()
        ctl = self.control
        q = attach_queue(m, self)

        insn = Signal(QueueEntry(), reset_less=True)     # used only after a take
        idle = IdleFlags(m, q, insn)
        st, cf = insn.word.store, insn.word.config
        m.d.comb += [
            self.descriptor.payload.dram_addr.eq(st.dram_addr),
            self.descriptor.payload.dram_stride.eq(st.dram_stride),
            self.descriptor.payload.rows.eq(st.rows),
            self.descriptor.payload.row_bytes.eq(st.row_bytes),
            self.descriptor.payload.sram_row.eq(st.acc_row),
            self.descriptor.payload.buffer.eq(Buffer.ACCUMULATOR),
            self.descriptor.payload.direction.eq(Direction.STORE),
            self.requant.eq(st.requant),
            ctl.push.eq(insn.word.header.push),
            ctl.push_index.eq(insn.index),
            ctl.error_index.eq(insn.index),
        ]

        responses = Signal(2)
        # The parameter reads leave from registers, a cycle after the state that asks for them:
        # the accumulator's read address multiplexer and its block RAM bypass comparator start
        # at flip-flops, not at this state machine and the ``params_row + 1`` adder. (The
        # responses are counted by ``acc_valid``, whenever they come.)
        # (``params_row + 1`` is a register too, loaded in every cycle: ``insn`` holds the
        # CONFIG from the cycle after its take, a cycle before that row is read.)
        read_en = Signal()
        read_addr = Signal.like(self.param_read.addr)
        shifts_row = Signal.like(self.param_read.addr, reset_less=True)
        m.d.sync += [self.param_read.en.eq(read_en), self.param_read.addr.eq(read_addr),
                     shifts_row.eq(cf.params_row + 1)]
        # The rows read for CONFIG are latched a cycle after they arrive: the row, the shifts'
        # clamp decisions and the load enables are registered first, so the parameter
        # registers (a row and more) load from flip-flops with an enable that is a flip-flop,
        # not through this state machine and the clamp's comparators. The parameters are used a
        # STORE later, many cycles after the CONFIG's tokens are pushed.
        # The shifts' clamp compares ``row`` (a register), not the accumulator's output, and
        # loads a cycle after the multipliers' row (``load_shifts`` two cycles after the latch).
        latch_multipliers = Signal()
        latch_shifts = Signal()
        compare_shifts = Signal()
        load_shifts = Signal()
        row = Signal.like(self.acc_data, reset_less=True)
        shift_row = Signal(data.ArrayLayout(SHIFT, self.lanes), reset_less=True)
        below = Signal(self.lanes, reset_less=True)       # lane < -31
        above = Signal(self.lanes, reset_less=True)       # lane > 30
        # (``insn`` holds the CONFIG until the cycle after its last state, so its output fields
        # are registered in that cycle for the load a cycle later.)
        zero_point_q = Signal.like(self.zero_point, reset_less=True)
        act_min_q = Signal.like(self.act_min, reset_less=True)
        act_max_q = Signal.like(self.act_max, reset_less=True)
        m.d.sync += [compare_shifts.eq(latch_shifts), load_shifts.eq(compare_shifts),
                     row.eq(self.acc_data), zero_point_q.eq(cf.zero_point),
                     act_min_q.eq(cf.act_min), act_max_q.eq(cf.act_max)]
        for lane in range(self.lanes):
            value = row[lane]
            m.d.sync += [below[lane].eq(value < -31), above[lane].eq(value > 30),
                         shift_row[lane].eq(value[:6])]
        # The multipliers' enable, one copy per lane (each loads that lane's 32 bits: the lanes
        # go to requantizer units far apart; one enable register for all was 187 routed
        # endpoints of up to 11.4 ns in a 12 x 12).
        load_lane = replicate(m, latch_multipliers, self.lanes, "load_multiplier")
        for lane in range(self.lanes):
            with m.If(load_lane[lane]):
                m.d.sync += self.multiplier[lane].eq(row[lane])
        with m.If(load_shifts):
            for lane in range(self.lanes):
                m.d.sync += self.shift[lane].eq(
                    Mux(below[lane], -31, Mux(above[lane], 30, shift_row[lane])))
            m.d.sync += [self.zero_point.eq(zero_point_q),
                         self.act_min.eq(act_min_q), self.act_max.eq(act_max_q)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(take_head(m, q, ctl, idle)):
                    with m.If(q.head.word.header.opcode == Opcode.CONFIG):
                        m.next = "CONFIG_READ_MULTIPLIERS"
                    with m.Else():
                        m.next = "ISSUE"
            with m.State("CONFIG_READ_MULTIPLIERS"):
                m.d.comb += [ctl.busy.eq(1), read_addr.eq(cf.params_row), read_en.eq(1)]
                m.d.sync += responses.eq(0)
                m.next = "CONFIG_READ_SHIFTS"
            with m.State("CONFIG_READ_SHIFTS"):
                m.d.comb += [ctl.busy.eq(1), read_addr.eq(shifts_row), read_en.eq(1)]
                m.next = "CONFIG_LATCH"
            with m.State("CONFIG_LATCH"):
                m.d.comb += ctl.busy.eq(1)
                with m.If(self.acc_valid):
                    m.d.sync += responses.eq(responses + 1)
                    with m.If(responses == 0):
                        m.d.comb += latch_multipliers.eq(1)
                    with m.Else():
                        m.d.comb += [latch_shifts.eq(1), ctl.push_en.eq(1)]
                        idle.enter()
                        m.next = "IDLE"
            dma_states(m, ctl, self.descriptor, self.dma_done, self.dma_error, idle)
        return m
