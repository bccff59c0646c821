"""Tessera for small FPGAs: the same instruction set, register map and bus ports as
:class:`~tessera.rtl.top.Tessera`, executed one instruction at a time by one sequencer.

::

    host ─ s_axil ─► RegisterFile ─ start, PROGRAM_ADDR/LEN, DMA hook ─► Sequencer (one FSM)
                          ▲  status, errors, counters, irq                 │  │      │
                          └────────────────────────────────────────────────┘  │      │
        instruction queues (one RAM: 3 x QUEUE_DEPTH entries) ◄─ dispatch ──┘      │
        token counters (6)                                                         ▼
        Scratchpad RAM, Accumulator RAM ◄─► MAC unit (C multipliers) ─ SerialRequantizer
                                        ◄─► RowDma (one row at a time) ─ m_axi (32-bit AXI4)

:class:`~tessera.rtl.top.Tessera` runs three engines concurrently, each with its own queue, a DMA
with bursts in flight, a systolic array of R x C multipliers and a pipelined requantizer per
lane, all built for 125 MHz on a large ECP5; it does not fit an iCE40UP5K (5,280 logic cells).
``TesseraSmall`` keeps every contract a program or a host sees -- the instruction set
(rtl/isa.py), its checks and error codes, the token semantics, the register map (rtl/registers.py)
and the AXI4 / AXI4-Lite ports -- and trades speed for area:

* **One sequencer executes the machine model of docs/isa.md literally**, the way the
  instruction-level simulator (sim/isa_sim.py) does: it dispatches in program order as far as it
  can (fetch one instruction, check it with the same :class:`~tessera.rtl.decoder.Decoder`, put it
  into its engine's queue; FENCE waits for empty queues, HALT stops dispatch), then executes the
  *oldest* queue head whose tokens are available, completely, and repeats. Programs therefore end
  with exactly the memory, buffers, ERROR_CODE and ERROR_INFO of the instruction-level simulator
  in its default (oldest-first) order, DEADLOCK and TOKEN_OVERFLOW included.
* **The queues** are one RAM of ``3 * QUEUE_DEPTH`` entries (instruction and index), with a head
  pointer and a count per engine; 6 token counters of 9 bits (TOKEN_LIMIT = 255 and its overflow).
* **The DMA** (:class:`~tessera.rtl.small.row_dma.RowDma`) moves one row (or one instruction) at a
  time in bursts of 32-bit beats, any alignment.
* **MATMUL** loads the R x C weight tile into registers, then for each activation row computes
  the C column sums with C 8 x 8 multipliers over R cycles (C MACs per cycle; the R x C "array"
  is the shape of the tile, as in Tessera's registers ROWS/COLS).
* **STORE** requantizes a row lane by lane with one multiplier
  (:class:`~tessera.rtl.small.requant.SerialRequantizer`).
* **Performance counters** keep their meaning: CYCLES while a program runs; X_BUSY while the
  sequencer executes an instruction of engine X; X_STALL while engine X's queue holds an
  instruction it is not executing; MAC_ACTIVE once per activation row (R x C MACs each);
  DMA_BYTES_READ/WRITTEN the bytes of the rows moved (16 per instruction fetched). They are kept
  in a block RAM (:class:`~tessera.rtl.small.counters.CounterRam`): read while a program runs,
  they lag by at most 11 cycles; DONE waits until they are exact.
* **Registers** behave as in Tessera (``CTRL.start``, ``STATUS``, the interrupt, the DMA test hook
  with its checks and DMA_ERROR; ``CTRL.soft_reset``: the instruction executing runs to its end,
  then the program stops with ABORTED, ERROR_INFO the index of the next instruction to dispatch,
  and a hook transfer stops at the end of its row; the watchdog: WATCHDOG cycles without a bus
  handshake, a dispatch, an activation row or an instruction's end while the sequencer waits
  for the DMA stop the program and reset the DMA, ERROR_INFO the index of the instruction
  executing or, if none, being fetched).

Only the cycle counts differ from Tessera's. Configuration: ``rows``, ``cols`` (lanes =
max(rows, cols)), ``scratchpad_depth``, ``accumulator_depth``; the bus is 32 bits wide.
"""

from amaranth.hdl import C, Array, Cat, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import connect, flipped

from ..axi import any_handshake
from ..decoder import Decoder
from ..dma_descriptor import Buffer, Direction, DmaError, descriptor_error
from ..isa import (INSTRUCTION_BITS, INSTRUCTION_BYTES, QUEUE_DEPTH, TOKEN_LIMIT, Engine,
                   Instruction, Opcode, ProgramError)
from ..registers import PERF_COUNTERS, dma_descriptor, register_file
from ..top import accelerator_ports
from ..util import NO_RW_CHECK, registered_read, wrap_increment
from .counters import CounterRam
from .requant import SerialRequantizer
from .row_dma import RowDma

__all__ = ["TesseraSmall", "BUS_WIDTH"]

#: The small core's AXI4 data width.
BUS_WIDTH = 32

#: Bits of an instruction index (PROGRAM_LEN and ERROR_INFO are 32 bits).
INDEX_BITS = 32

ENGINES = (Engine.LOAD, Engine.EXEC, Engine.STORE)


#: The queue RAM: a bank per engine and one for the DMA hook's descriptor (``HOOK``), of BANK
#: slots each (a queue uses QUEUE_DEPTH + 1 of them).
HOOK = len(ENGINES)
BANKS = HOOK + 1
BANK = 16
assert QUEUE_DEPTH + 1 <= BANK


class TesseraSmall(wiring.Component):
    """The accelerator for small FPGAs (see the module docstring).

    Parameters (keyword-only): ``rows``, ``cols``, ``scratchpad_depth``, ``accumulator_depth``,
    ``id_width``; ``bus_width`` must be 32 (accepted so configurations read alike).
    """
    def __init__(self, *, rows=2, cols=2, scratchpad_depth=256, accumulator_depth=64,
                 bus_width=BUS_WIDTH, id_width=4):
        if bus_width != BUS_WIDTH:
            raise ValueError(f"TesseraSmall has a {BUS_WIDTH}-bit bus, not bus_width={bus_width!r}")
        self.config = dict(rows=rows, cols=cols, scratchpad_depth=scratchpad_depth,
                           accumulator_depth=accumulator_depth, bus_width=bus_width)
        # The register file validates the configuration with clear messages.
        self.regs = register_file(**self.config)
        self.rows, self.cols = rows, cols
        self.lanes = lanes = max(rows, cols)
        self.scratchpad_depth, self.accumulator_depth = scratchpad_depth, accumulator_depth
        #: Bytes the DMA moves at most at once: an accumulator row or an instruction.
        self.row_bytes = max(4 * lanes, INSTRUCTION_BYTES)
        self.dma = RowDma(row_bytes=self.row_bytes, id_width=id_width)
        self.requantizer = SerialRequantizer(lanes=lanes)
        # One register stage in the decoder (its range checks' carry chains were the iCE40
        # build's critical path); the fetched word stays in the DMA's row register meanwhile.
        self.decoder = Decoder(rows=rows, cols=cols, lanes=lanes,
                               scratchpad_depth=scratchpad_depth,
                               accumulator_depth=accumulator_depth, stages=1)
        super().__init__(accelerator_ports(bus_width=bus_width, id_width=id_width))

    def elaborate(self, platform):
        m = Module()
        rows, cols, lanes = self.rows, self.cols, self.lanes
        regs = m.submodules.regs = self.regs
        dma = self.dma
        # The watchdog resets the DMA (it may hold a transaction the memory never answers).
        dma_reset = Signal()
        m.submodules.dma = ResetInserter(dma_reset)(dma)
        rq = m.submodules.requantizer = self.requantizer
        dec = m.submodules.decoder = self.decoder
        connect(m, flipped(self.s_axil), regs.s_axil)
        connect(m, dma.m_axi, flipped(self.m_axi))

        # --- buffers ----------------------------------------------------------------------------
        # Every RAM is read through an asynchronous port and a register after it (Yosys merges
        # the two into the block RAM), with ``no_rw_check``: the sequencer never uses a word read
        # in the cycle it is written, so on iCE40 no logic emulates a read of the old data (a
        # synchronous Amaranth read port keeps that emulation: about 650 flip-flops here).
        spad = Memory(shape=8 * lanes, depth=self.scratchpad_depth, init=[], attrs=NO_RW_CHECK)
        acc = Memory(shape=32 * lanes, depth=self.accumulator_depth, init=[], attrs=NO_RW_CHECK)
        m.submodules.scratchpad = spad
        m.submodules.accumulator = acc
        spad_w, (spad_r, spad_row) = spad.write_port(), registered_read(m, spad, "spad_row")
        acc_w, (acc_r, acc_row) = acc.write_port(), registered_read(m, acc, "acc_row")
        # (``spad_row``, ``acc_row``: the rows addressed a cycle ago)

        # --- instruction queues -----------------------------------------------------------------
        # One RAM, a bank of BANK slots per engine (address: slot, then bank). A queue is a ring of
        # QUEUE_DEPTH + 1 slots holding at most QUEUE_DEPTH instructions, so the slot after its
        # tail is always free: a fetched instruction is written there as soon as it is checked,
        # and dispatching it only counts it in. Bank HOOK's slot 0 holds the DMA hook's
        # descriptor. The executing instruction is read in place (the read port stays on its
        # slot), so no register holds a copy of it.
        entry = data.StructLayout({"word": Instruction(), "index": INDEX_BITS})
        queue_ram = Memory(shape=entry, depth=BANKS * BANK, init=[], attrs=NO_RW_CHECK)
        m.submodules.queues = queue_ram
        q_w, (q_r, q_data) = queue_ram.write_port(), registered_read(m, queue_ram, "queue_data")
        ring = QUEUE_DEPTH + 1
        head = Array([*(Signal(range(ring), name=f"head_{e.name.lower()}") for e in ENGINES),
                      Signal(range(ring), name="head_hook")])       # the hook's: always 0
        count = Array(Signal(range(QUEUE_DEPTH + 1), name=f"count_{e.name.lower()}")
                      for e in ENGINES)
        queues_empty = Cat(*(c == 0 for c in count)).all()

        def slot_after_tail(engine):
            end = head[engine] + count[engine]
            return Mux(end >= ring, end - ring, end)[:len(head[0])]

        # --- token counters: tokens[(src, dst)] ---------------------------------------------------
        tokens = {(s, d): Signal(range(TOKEN_LIMIT + 2), name=f"tokens_{s.name.lower()}_"
                                 f"{d.name.lower()}")
                  for s in ENGINES for d in ENGINES if s != d}

        # --- sequencer state ----------------------------------------------------------------------
        running = Signal()
        next_index = Signal(INDEX_BITS)     # the next instruction dispatch reads
        held = Signal()                     # the fetched instruction is checked, waits to be
        halted = Signal()                   # dispatched (in its queue's free slot if queued)
        fetched_engine = Signal(2)
        fetched_fence = Signal()
        fetched_halt = Signal()
        cur_engine = Signal(2)              # whose queue head executes (HOOK: the hook's slot)
        cur_is_hook = Signal()              # ``cur`` is the DMA hook's descriptor as a LOAD/STORE
        executing = Signal()                # ``cur`` is executing (counters, watchdog index)
        cur = q_data                        # the executing instruction, read in place: except
        m.d.comb += q_r.addr.eq(Cat(head[cur_engine], cur_engine))  # in SCAN (below), the
        #                                   read port stays on the head of ``cur_engine``
        error_code = Signal(4)
        error_index = Signal(INDEX_BITS)
        dma_error = Signal(4)
        dma_error_addr = Signal(32)
        done = Signal()                     # pulse: a program ended
        hook_done = Signal()                # pulse: a hook transfer ended
        hook_error = Signal()
        m.d.sync += [done.eq(0), hook_done.eq(0)]

        m.d.comb += dec.word.eq(dma.rdata[:INSTRUCTION_BITS])     # the fetched instruction

        # The scan of the queue heads (oldest ready first).
        scan = Signal(range(len(ENGINES) + 1))
        found = Signal()
        best = Signal(INDEX_BITS)
        best_pop = Signal(3)
        any_head = Signal()
        oldest = Signal(INDEX_BITS)          # the smallest index among the heads (DEADLOCK's)

        # Row transfers (LOAD, STORE, the hook): the row counter and the memory address.
        row = Signal(16)
        addr = Signal(32)
        # MATMUL: the weight tile, the activation row, the output row (lanes below C: the column
        # sums, which start from the old accumulator row when accumulating, or from 0).
        weights = [[Signal(signed(8), name=f"w_{r}_{c}") for c in range(cols)]
                   for r in range(rows)]
        act = [Signal(signed(8), name=f"a_{r}") for r in range(rows)]
        sums = [Signal(signed(32), name=f"sum_{lane}") for lane in range(lanes)]
        step = Signal(range(rows + 1))
        mac_row = Signal()                  # pulse: an activation row went through the MACs
        # CONFIG's latched parameters: the per-lane multipliers and shifts are held by the
        # requantizer itself (loaded from the accumulator rows), the rest here.
        zero_point = Signal(signed(8))
        act_min = Signal(signed(8), init=-128)
        act_max = Signal(signed(8), init=127)
        m.d.comb += [rq.params.eq(acc_row), rq.zero_point.eq(zero_point),
                     rq.act_min.eq(act_min), rq.act_max.eq(act_max)]

        # Views of ``cur`` per format.
        word = cur.word
        ld, mm, st, cf = word.load, word.matmul, word.store, word.config
        is_load = word.header.opcode == Opcode.LOAD
        to_acc = Signal()                   # the row transfer's buffer is the accumulator
        move_rows = Mux(is_load, ld.rows, st.rows)
        move_bytes = Mux(is_load, ld.row_bytes, st.row_bytes)
        move_stride = Mux(is_load, ld.dram_stride, st.dram_stride)
        move_sram = Mux(is_load, ld.sram_row, st.acc_row) + row
        requant = ~is_load & st.requant & ~cur_is_hook
        # ``row`` is the instruction's last (of a LOAD, STORE or MATMUL), from a register: ``row``
        # and ``cur`` hold for several cycles before MOVE_WAIT and ACT_WRITE use it (the compare
        # ending in the FSM's next state was the iCE40 build's critical path).
        last_row = Signal()
        m.d.sync += last_row.eq(row + 1 == Mux(word.header.opcode == Opcode.MATMUL, mm.rows,
                                               move_rows))

        # --- soft reset and watchdog ----------------------------------------------------------------
        soft_pending = Signal()
        with m.If(regs.ctrl.soft_reset):
            m.d.sync += soft_pending.eq(1)
        progress = Signal()
        m.d.comb += progress.eq(any_handshake(self.m_axi))
        # The watchdog counts down from WATCHDOG.cycles (reloaded by any activity) and fires,
        # from a register, after the count reached 0 in a cycle without activity: no 32-bit
        # comparator, and its decision is not on the path into the FSM (the iCE40 build's
        # critical path when it was). Activity is registered too (the bus handshakes come from
        # the memory's logic), so the watchdog fires a cycle or two later than WATCHDOG says.
        dispatched = Signal()               # pulse: an instruction entered a queue or completed
        activity = Signal(init=1)
        m.d.sync += activity.eq(progress | dispatched | mac_row | ~running)
        remaining = Signal(32)
        watchdog = Signal()
        with m.If(activity):
            m.d.sync += remaining.eq(regs.watchdog.cycles)
        with m.Elif(remaining != 0):
            m.d.sync += remaining.eq(remaining - 1)
        m.d.sync += watchdog.eq((regs.watchdog.cycles != 0) & (remaining == 0) & ~activity)

        # --- DMA requests ----------------------------------------------------------------------------
        # The request is registered (``dma_go``, set by the state that issues it): the DMA's
        # start then comes from a flip-flop, not from the sequencer's decision logic (on the
        # iCE40 that path, dispatch decision -> DMA start -> the memory's address handshake, was
        # the critical one). The waiting states FETCH and MOVE_WAIT drive the request's fields,
        # from values that hold until the DMA is done.
        dma_go = Signal()
        m.d.sync += dma_go.eq(0)
        m.d.comb += dma.start.eq(dma_go)

        def fail(code, index):
            m.d.sync += [error_code.eq(code), error_index.eq(index), executing.eq(0)]
            m.next = "STOP"

        def dma_failed():
            m.d.sync += [dma_error.eq(dma.error), dma_error_addr.eq(dma.error_addr)]

        begin = Signal()                    # a program starts (clears the counters)
        at_end = Signal()                   # next_index was PROGRAM_LEN a cycle ago
        m.d.sync += at_end.eq(next_index == regs.program_len.length)
        hook_pending = Signal()             # DMA_START was written; the hook waits for IDLE
        hook_desc = dma_descriptor(regs)    # the DMA hook's registers (HOOK, HOOK_CHECKED)
        with m.If(regs.dma_start.start & ~soft_pending):
            m.d.sync += hook_pending.eq(1)

        # --- performance counters ------------------------------------------------------------------
        # In a block RAM, brought up to date round-robin (rtl/small/counters.py): a counter read
        # while a program runs lags by at most a round (11 cycles); DONE waits until they settle.
        # The read index comes from the read address the register file accepts (the RAM's read
        # data arrives in the cycle the register file samples the counter's value).
        events = {
            "CYCLES": running,
            "LOAD_BUSY": executing & (cur_engine == Engine.LOAD),
            "LOAD_STALL": running & (count[Engine.LOAD] != 0) &
                          ~(executing & (cur_engine == Engine.LOAD)),
            "EXEC_BUSY": executing & (cur_engine == Engine.EXEC),
            "EXEC_STALL": running & (count[Engine.EXEC] != 0) &
                          ~(executing & (cur_engine == Engine.EXEC)),
            "STORE_BUSY": executing & (cur_engine == Engine.STORE),
            "STORE_STALL": running & (count[Engine.STORE] != 0) &
                           ~(executing & (cur_engine == Engine.STORE)),
            "MAC_ACTIVE": mac_row,
        }
        # The bytes of every row (or instruction) the DMA moved while the program ran, counted
        # when the transfer ends (the size and direction of the transfer are registered at its
        # start).
        transfer_bytes = Signal.like(dma.nbytes)
        transfer_write = Signal()
        with m.If(dma.start & ~dma.busy):
            m.d.sync += [transfer_bytes.eq(dma.nbytes), transfer_write.eq(dma.write)]
        for name, write in (("DMA_BYTES_READ", 0), ("DMA_BYTES_WRITTEN", 1)):
            events[name] = Mux(running & dma.done & (transfer_write == write), transfer_bytes, 0)
        assert set(events) == set(PERF_COUNTERS)
        counters = m.submodules.counters = CounterRam(
            {name: len(events[name]) for name in PERF_COUNTERS})
        m.d.comb += [counters.clear.eq(begin)]
        m.d.comb += [getattr(counters.inc, name).eq(event) for name, event in events.items()]
        first = regs.register_map[next(iter(PERF_COUNTERS))].offset
        index_bits = len(counters.read_index)
        assert first % (4 << index_bits) == 0, "the counters' base must be aligned to their span"
        m.d.comb += counters.read_index.eq(self.s_axil.araddr[2:2 + index_bits])
        for name in PERF_COUNTERS:
            m.d.comb += getattr(regs, name.lower()).count.eq(counters.read_data)

        with m.FSM(name="sequencer") as sequencer:
            with m.State("IDLE"):
                with m.If(regs.ctrl.start & ~soft_pending):
                    m.d.comb += begin.eq(1)
                    m.d.sync += [running.eq(1), next_index.eq(0), held.eq(0), halted.eq(0),
                                 error_code.eq(0), error_index.eq(0), hook_error.eq(0)]
                    m.d.sync += [c.eq(0) for c in count]
                    m.d.sync += [h.eq(0) for h in head]
                    m.d.sync += [t.eq(0) for t in tokens.values()]
                    m.next = "DISPATCH"
                with m.Elif(hook_pending & ~soft_pending):
                    m.d.sync += hook_pending.eq(0)
                    m.next = "HOOK"
                with m.Elif(soft_pending):
                    m.d.sync += [soft_pending.eq(0), hook_pending.eq(0)]

            # --- the DMA hook: a descriptor from the registers, checked like Tessera's DMA ---
            with m.State("HOOK"):
                row_limit = Mux(hook_desc.buffer == Buffer.ACCUMULATOR, 4 * lanes, lanes)
                depth = Mux(hook_desc.buffer == Buffer.ACCUMULATOR, self.accumulator_depth,
                            self.scratchpad_depth)
                check = descriptor_error(zero_rows=hook_desc.rows == 0,
                                         zero_bytes=hook_desc.row_bytes == 0,
                                         too_long=hook_desc.row_bytes > row_limit,
                                         beyond=hook_desc.sram_row + hook_desc.rows > depth)
                m.d.sync += [dma_error.eq(check), dma_error_addr.eq(hook_desc.dram_addr)]
                m.next = "HOOK_CHECKED"
            with m.State("HOOK_CHECKED"):
                # The check's result is registered (its adders and comparators were the iCE40
                # build's critical path when they also chose the next state).
                with m.If(dma_error != DmaError.NONE):
                    m.d.sync += [hook_done.eq(1), hook_error.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    # The descriptor as a LOAD or a raw STORE in ``cur`` (fields of equal
                    # meaning; ``to_acc`` says which buffer a STORE reads).
                    as_load = hook_desc.direction == Direction.LOAD
                    hook_word = Signal(Instruction())
                    m.d.comb += [
                        hook_word.header.opcode.eq(Mux(as_load, Opcode.LOAD, Opcode.STORE)),
                        hook_word.load.buffer.eq(hook_desc.buffer),
                        hook_word.load.row_bytes.eq(hook_desc.row_bytes),
                        hook_word.load.sram_row.eq(hook_desc.sram_row),
                        hook_word.load.rows.eq(hook_desc.rows),
                        hook_word.load.dram_addr.eq(hook_desc.dram_addr),
                        hook_word.load.dram_stride.eq(hook_desc.dram_stride),
                    ]
                    m.d.comb += [q_w.addr.eq(Cat(C(0, 4), C(HOOK, 2))),
                                 q_w.data.word.eq(hook_word), q_w.en.eq(1)]
                    m.d.sync += [cur_engine.eq(HOOK), cur_is_hook.eq(1), hook_error.eq(0),
                                 to_acc.eq(hook_desc.buffer == Buffer.ACCUMULATOR),
                                 row.eq(0), addr.eq(hook_desc.dram_addr)]
                    m.next = "HOOK_READ"
            with m.State("HOOK_READ"):
                m.next = "MOVE"                 # the read port is on the hook's slot

            # --- dispatch ------------------------------------------------------------------------
            with m.State("DISPATCH"):
                with m.If(soft_pending):
                    fail(ProgramError.ABORTED, next_index)
                with m.Elif(halted):
                    with m.If(queues_empty):
                        m.next = "STOP"                   # the program ended; error_code NONE
                    with m.Else():
                        m.next = "SCAN"
                with m.Elif(held):
                    with m.If(fetched_halt):
                        m.d.sync += [halted.eq(1), held.eq(0), next_index.eq(next_index + 1)]
                    with m.Elif(fetched_fence):
                        with m.If(queues_empty):
                            m.d.comb += dispatched.eq(1)
                            m.d.sync += [held.eq(0), next_index.eq(next_index + 1)]
                        with m.Else():
                            m.next = "SCAN"
                    with m.Elif(count[fetched_engine] == QUEUE_DEPTH):
                        m.next = "SCAN"
                    with m.Else():
                        # Already in the slot after the tail (CHECK): counted in.
                        m.d.comb += dispatched.eq(1)
                        m.d.sync += [count[fetched_engine].eq(count[fetched_engine] + 1),
                                     held.eq(0), next_index.eq(next_index + 1)]
                with m.Else():
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                # The end-of-program check from a register (next_index held since DISPATCH): as
                # a branch of DISPATCH it was the iCE40 build's critical path.
                with m.If(at_end):
                    fail(ProgramError.NO_HALT, next_index)
                with m.Else():
                    m.d.sync += [dma_go.eq(1), dma_error.eq(DmaError.NONE)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [dma.addr.eq(regs.program_addr.addr + (next_index << 4)),
                             dma.nbytes.eq(INSTRUCTION_BYTES)]
                with m.If(watchdog):
                    m.d.comb += dma_reset.eq(1)
                    fail(ProgramError.WATCHDOG, next_index)
                with m.Elif(dma.done):
                    with m.If(dma.error != DmaError.NONE):
                        dma_failed()
                        fail(ProgramError.BUS_ERROR, next_index)
                    with m.Else():
                        m.next = "DECODE"
            with m.State("DECODE"):
                m.next = "CHECK"                # the decoder's register stage
            with m.State("CHECK"):
                # The instruction is in the DMA's row register until the next transfer.
                with m.If(dec.error != ProgramError.NONE):
                    fail(dec.error, next_index)
                with m.Else():
                    with m.If(~dec.fence & ~dec.halt):
                        m.d.comb += [q_w.addr.eq(Cat(slot_after_tail(dec.engine), dec.engine)),
                                     q_w.data.word.eq(dma.rdata[:INSTRUCTION_BITS]),
                                     q_w.data.index.eq(next_index), q_w.en.eq(1)]
                    m.d.sync += [held.eq(1), fetched_engine.eq(dec.engine),
                                 fetched_fence.eq(dec.fence), fetched_halt.eq(dec.halt)]
                    m.next = "DISPATCH"

            # --- choose the oldest ready queue head ------------------------------------------------
            with m.State("SCAN"):
                # Queue ``scan`` is addressed in cycle ``scan``; its head is judged a cycle later.
                m.d.comb += q_r.addr.eq(Cat(head[scan[:2]], scan[:2]))
                m.d.sync += scan.eq(scan + 1)
                with m.If(scan == 0):
                    m.d.sync += [found.eq(0), any_head.eq(0)]
                with m.Else():
                    judged = scan - 1
                    h = q_data
                    pops = h.word.header.pop
                    ready = Signal()
                    for e in ENGINES:
                        waits = [tokens[(s, e)] == 0 for s in ENGINES if s != e]
                        srcs = [s for s in ENGINES if s != e]
                        blocked = (pops[srcs[0]] & waits[0]) | (pops[srcs[1]] & waits[1])
                        with m.If(judged == e):
                            m.d.comb += ready.eq(~blocked)
                    with m.If(count[judged[:2]] != 0):
                        with m.If(~any_head | (h.index < oldest)):
                            m.d.sync += oldest.eq(h.index)
                        m.d.sync += any_head.eq(1)
                        with m.If(ready & (~found | (h.index < best))):
                            m.d.sync += [found.eq(1), best.eq(h.index), best_pop.eq(pops),
                                         cur_engine.eq(judged)]
                    with m.If(scan == len(ENGINES)):
                        m.d.sync += scan.eq(0)
                        m.next = "TAKE"
            with m.State("TAKE"):
                with m.If(soft_pending):
                    fail(ProgramError.ABORTED, next_index)
                with m.Elif(~found):
                    fail(ProgramError.DEADLOCK, oldest)
                with m.Else():
                    for (s, d), t in tokens.items():
                        with m.If((cur_engine == d) & best_pop[s]):
                            m.d.sync += t.eq(t - 1)
                    m.d.sync += cur_is_hook.eq(0)
                    m.next = "START"            # the read port moves to the chosen head
            with m.State("START"):
                # The chosen head is on the read port: its fields decide what runs.
                op = cur.word.header.opcode
                m.d.sync += [executing.eq(1), row.eq(0), step.eq(0),
                             dma_error.eq(Mux((op == Opcode.LOAD) | (op == Opcode.STORE),
                                              DmaError.NONE, dma_error)),
                             to_acc.eq(Mux(op == Opcode.LOAD,
                                           cur.word.load.buffer == Buffer.ACCUMULATOR, 1)),
                             addr.eq(Mux(op == Opcode.LOAD, cur.word.load.dram_addr,
                                         cur.word.store.dram_addr))]
                with m.Switch(op):
                    with m.Case(Opcode.LOAD, Opcode.STORE):
                        m.next = "MOVE"
                    with m.Case(Opcode.MATMUL):
                        m.next = "WEIGHTS"
                    with m.Default():
                        m.next = "CONFIG"

            # --- LOAD, STORE, the hook: one row at a time -------------------------------------------
            with m.State("MOVE"):
                with m.If(is_load):
                    m.d.sync += dma_go.eq(1)
                    m.next = "MOVE_WAIT"
                with m.Else():
                    m.next = "MOVE_READ"
            with m.State("MOVE_READ"):
                # The buffer row is on the read ports.
                with m.If(requant):
                    m.d.comb += [rq.start.eq(1), rq.data.eq(acc_row)]
                    m.next = "MOVE_REQUANT"
                with m.Else():
                    m.d.sync += dma_go.eq(1)
                    m.next = "MOVE_WAIT"
            with m.State("MOVE_REQUANT"):
                with m.If(rq.done):
                    m.d.sync += dma_go.eq(1)
                    m.next = "MOVE_WAIT"
            with m.State("MOVE_WAIT"):
                m.d.comb += [dma.write.eq(~is_load), dma.addr.eq(addr), dma.nbytes.eq(move_bytes),
                             dma.wdata.eq(Mux(requant, rq.result.as_value(),
                                              Mux(to_acc, acc_row, spad_row)))]
                with m.If(watchdog & ~cur_is_hook):
                    m.d.comb += dma_reset.eq(1)
                    fail(ProgramError.WATCHDOG, cur.index)
                with m.Elif(dma.done):
                    with m.If(dma.error != DmaError.NONE):
                        dma_failed()
                        with m.If(cur_is_hook):
                            m.d.sync += [hook_done.eq(1), hook_error.eq(1)]
                            m.next = "IDLE"
                        with m.Else():
                            fail(ProgramError.BUS_ERROR, cur.index)
                    with m.Else():
                        with m.If(is_load):
                            m.d.comb += [
                                spad_w.addr.eq(move_sram), spad_w.data.eq(dma.rdata),
                                spad_w.en.eq(~to_acc),
                                acc_w.addr.eq(move_sram), acc_w.data.eq(dma.rdata),
                                acc_w.en.eq(to_acc),
                            ]
                        m.d.sync += [row.eq(row + 1), addr.eq(addr + move_stride)]
                        with m.If(last_row):
                            with m.If(cur_is_hook):
                                m.d.sync += hook_done.eq(1)
                                m.next = "IDLE"
                            with m.Else():
                                m.next = "RETIRE"
                        with m.Elif(soft_pending & cur_is_hook):
                            m.d.sync += hook_done.eq(1)
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "MOVE"

            # --- MATMUL -------------------------------------------------------------------------------
            with m.State("WEIGHTS"):
                # Weight row ``step`` is addressed in cycle ``step`` and shifted in a cycle later
                # (rows enter at the bottom: after R rows, ``weights[0]`` is W[0]).
                m.d.comb += spad_r.addr.eq(mm.wgt_row + step)
                m.d.sync += step.eq(step + 1)
                with m.If(step != 0):
                    for r in range(rows - 1):
                        m.d.sync += [weights[r][c].eq(weights[r + 1][c]) for c in range(cols)]
                    m.d.sync += [weights[rows - 1][c].eq(spad_row[8 * c:8 * c + 8])
                                 for c in range(cols)]
                with m.If(step == rows):
                    m.next = "ACT"
            with m.State("ACT"):
                m.d.comb += [spad_r.addr.eq(mm.act_row + row), acc_r.addr.eq(mm.acc_row + row)]
                m.d.sync += step.eq(0)
                m.next = "ACT_READ"
            with m.State("ACT_READ"):
                m.d.sync += [a.eq(spad_row[8 * r:8 * r + 8]) for r, a in enumerate(act)]
                m.d.sync += [s.eq(Mux(mm.accumulate, acc_row[32 * lane:32 * lane + 32], 0))
                             for lane, s in enumerate(sums)]
                m.next = "MAC"
            with m.State("MAC"):
                # One reduction step per cycle: act[0] times weight row 0, then both rotate.
                m.d.sync += [sums[c].eq(sums[c] + act[0] * weights[0][c]) for c in range(cols)]
                m.d.sync += [act[r].eq(act[(r + 1) % rows]) for r in range(rows)]
                for r in range(rows):
                    m.d.sync += [weights[r][c].eq(weights[(r + 1) % rows][c])
                                 for c in range(cols)]
                m.d.sync += step.eq(step + 1)
                with m.If(step == rows - 1):
                    m.next = "ACT_WRITE"
            with m.State("ACT_WRITE"):
                m.d.comb += [acc_w.addr.eq(mm.acc_row + row), acc_w.data.eq(Cat(*sums)),
                             acc_w.en.eq(1), mac_row.eq(1)]
                m.d.sync += row.eq(row + 1)
                with m.If(last_row):
                    m.next = "RETIRE"
                with m.Else():
                    m.next = "ACT"

            # --- CONFIG -------------------------------------------------------------------------------
            with m.State("CONFIG"):
                m.d.comb += acc_r.addr.eq(cf.params_row + step)
                m.d.sync += step.eq(step + 1)
                with m.If(step == 1):
                    m.d.comb += rq.load_multiplier.eq(1)        # row params_row
                with m.If(step == 2):
                    m.d.comb += rq.load_shift.eq(1)             # row params_row + 1 (clamped)
                    m.d.sync += [zero_point.eq(cf.zero_point), act_min.eq(cf.act_min),
                                 act_max.eq(cf.act_max)]
                    m.next = "RETIRE"

            # --- the end of an instruction: its queue entry goes, its tokens are given ---------
            with m.State("RETIRE"):
                m.d.comb += dispatched.eq(1)
                m.d.sync += [executing.eq(0),
                             head[cur_engine].eq(wrap_increment(head[cur_engine], ring)),
                             count[cur_engine].eq(count[cur_engine] - 1)]
                pushes = cur.word.header.push
                overflow = Signal()
                for (s, d), t in tokens.items():
                    with m.If((cur_engine == s) & pushes[d]):
                        m.d.sync += t.eq(t + 1)
                        with m.If(t == TOKEN_LIMIT):
                            m.d.comb += overflow.eq(1)
                with m.If(overflow):
                    fail(ProgramError.TOKEN_OVERFLOW, cur.index)
                with m.Else():
                    m.next = "DISPATCH"

            with m.State("STOP"):
                m.d.sync += [running.eq(0), soft_pending.eq(0), executing.eq(0)]
                m.next = "SETTLE"
            with m.State("SETTLE"):
                # The counters' last increments reach their RAM before DONE is seen.
                with m.If(counters.settled):
                    m.d.sync += done.eq(1)
                    m.next = "IDLE"
        # A row transfer keeps the read ports on its buffer row until the DMA is done, so that a
        # STORE's row (or the requantizer's result) holds while the DMA takes it.
        with m.If(sequencer.ongoing("MOVE") | sequencer.ongoing("MOVE_READ") |
                  sequencer.ongoing("MOVE_REQUANT") | sequencer.ongoing("MOVE_WAIT")):
            m.d.comb += [acc_r.addr.eq(move_sram), spad_r.addr.eq(move_sram)]

        # --- status, errors, interrupt ---------------------------------------------------------------
        m.d.comb += [
            regs.status.busy.eq(running | hook_pending | ~sequencer.ongoing("IDLE")),
            regs.status.done_set.eq(done | hook_done),
            regs.status.error.eq((error_code != 0) | hook_error),
            regs.error_code.code.eq(error_code),
            regs.error_info.index.eq(error_index),
            regs.dma_error.code.eq(dma_error),
            regs.dma_error_addr.addr.eq(dma_error_addr),
            self.irq.eq(regs.ctrl.irq_enable & (regs.status.done | regs.status.error)),
        ]
        return m
