"""Dispatcher: sends fetched instructions, in program order, to the LOAD, EXEC and STORE queues.

::

    fetch FIFO ──────────────► [head] ─┬─ illegal ──────► error (code, index); stop
                                       ├─ LOAD ─────────► LOAD queue   ┐ waits while the target
                                       ├─ MATMUL ───────► EXEC queue   │ queue is full
                                       ├─ STORE, CONFIG ► STORE queue  ┘
                                       ├─ FENCE ─► wait until every queue is empty and every
                                       │           engine idle
                                       └─ HALT ──► ``halted``: dispatch nothing more

A dispatched instruction reaches its queue a cycle later, from registers (the instruction and a
``valid`` per queue). The fetch unit has decoded each instruction
(:class:`~tessera.rtl.fetch.FetchedEntry`: the decoder's checks, one bit each, target engine,
FENCE, HALT); ``[head]`` is a register holding the oldest one, so dispatch decisions start at
flip-flops. The first failing check is the error.

Whether the target queue has room is decided here too, from credits: the dispatcher counts the
entries it put into each queue minus the heads that queue's engine took (``*_taken``, seen a
cycle late), so its count is never below what the queue holds and a push always finds room. The
``full`` flags are registers next to ``[head]``: the dispatch decision depends on no signal from
another block. ``[head]`` itself is loaded only while it is empty (its enable is a register), so
at most one instruction is dispatched every other cycle.

Also reported here, when the dispatcher gets to them: NO_HALT (the next instruction would be
number ``program_len``) and BUS_ERROR for an instruction the fetch unit could not read.
``stuck`` says the dispatcher cannot move without an engine moving first (halted, waiting at a
FENCE or on a full queue, or stopped): one input of the controller's deadlock detection.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .decoder import first_error
from .engine import INDEX, QueueEntry
from .fetch import FetchedEntry
from .isa import QUEUE_DEPTH, Engine, ProgramError

__all__ = ["Dispatcher"]


class Dispatcher(wiring.Component):
    """Ports: ``start``, ``stop`` (controller), ``program_len``; ``insn`` in (fetch FIFO, a stream
    of FetchedEntry); ``fault``/``fault_index`` (fetch unit); ``engines_idle`` (every queue empty,
    nothing executing); ``load``/``exec``/``store`` queue streams out (``valid`` only when the
    queue has room: its ``ready`` is then always high); ``load_taken``/``exec_taken``/
    ``store_taken`` (the engine took its queue's head); ``halted``, ``stuck``, ``index`` (next
    instruction); ``error``/``error_en``/``error_index`` out; ``dispatched`` (a pulse per
    instruction dispatched).

    ``queue_depth``: entries of each queue (their capacity, :data:`~tessera.rtl.isa.QUEUE_DEPTH`).
    """
    def __init__(self, queue_depth=QUEUE_DEPTH):
        self.queue_depth = queue_depth
        super().__init__({
            "start":        In(1),
            "stop":         In(1),
            "program_len":  In(32),
            "insn":         In(stream.Signature(FetchedEntry())),
            "fault":        In(1),
            "fault_index":  In(INDEX),
            "engines_idle": In(1),
            "load":         Out(stream.Signature(QueueEntry())),
            "exec":         Out(stream.Signature(QueueEntry())),
            "store":        Out(stream.Signature(QueueEntry())),
            "load_taken":   In(1),
            "exec_taken":   In(1),
            "store_taken":  In(1),
            "halted":       Out(1),
            "stuck":        Out(1),
            "index":        Out(INDEX),
            "error":        Out(4),
            "error_en":     Out(1),
            "error_index":  Out(INDEX),
            "dispatched":   Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # The head of the fetch FIFO moves, with the decoder's verdict, into the ``head``
        # register; dispatch works from that register only.
        head = Signal(FetchedEntry(), reset_less=True)      # ``head_valid`` says what it holds
        head_valid = Signal()
        head_bad = Signal()        # any of the head's checks failed
        head_error = Signal(4)
        m.d.comb += head_error.eq(first_error(head.faults))
        take = Signal()
        # The head is loaded only while it is empty: the fetch FIFO's ``ready`` and the head's
        # enable (its widest fan-out) are one register, not the dispatch decision. An
        # instruction is dispatched at most every other cycle, far above what the engines take
        # (each instruction keeps its engine busy for many cycles).
        m.d.comb += self.insn.ready.eq(~head_valid)
        with m.If(self.start):
            m.d.sync += head_valid.eq(0)
        with m.Elif(~head_valid):
            m.d.sync += head_valid.eq(self.insn.valid)
        with m.Elif(take):
            m.d.sync += head_valid.eq(0)
        with m.If(~head_valid):
            m.d.sync += [head.eq(self.insn.payload), head_bad.eq(self.insn.payload.faults.any())]

        length = Signal(32)
        active = Signal()
        go = Signal()              # the head is a LOAD/MATMUL/STORE/CONFIG offered to its queue
        target_ready = Signal()
        queues = {Engine.LOAD: (self.load, self.load_taken),
                  Engine.EXEC: (self.exec, self.exec_taken),
                  Engine.STORE: (self.store, self.store_taken)}
        # The queues are fed from registers (a cycle after the dispatch decision): the queues'
        # write side and counters start at flip-flops here, not at the decision. ``entry`` is
        # loaded every cycle (it is the head a cycle later); each queue's ``valid`` is its push.
        entry = Signal(QueueEntry(), reset_less=True)
        m.d.sync += entry.eq(head.entry)
        in_transit = []
        for engine, (queue, taken) in queues.items():
            # Credits: ``count`` entries in the queue as far as the dispatcher knows (its pushes,
            # minus the engine's takes a cycle late); ``full`` is a register, set from
            # comparisons of the count itself.
            name = engine.name.lower()
            count = Signal(range(self.queue_depth + 1), name=f"{name}_count")
            full = Signal(name=f"{name}_full")
            taken_seen = Signal(name=f"{name}_taken_seen")
            pushed = Signal(name=f"{name}_pushed")
            push = Signal(name=f"{name}_push")      # ``pushed``, registered
            m.d.comb += [
                queue.payload.eq(entry),
                pushed.eq(go & (head.engine == engine) & ~full),
                queue.valid.eq(push),
            ]
            m.d.sync += push.eq(pushed)
            in_transit.append(push)
            with m.If(head.engine == engine):
                m.d.comb += target_ready.eq(~full)
            m.d.sync += taken_seen.eq(taken)
            with m.If(self.start):
                m.d.sync += [count.eq(0), full.eq(0)]
            with m.Elif(pushed & ~taken_seen):
                m.d.sync += [count.eq(count + 1), full.eq(count == self.queue_depth - 1)]
            with m.Elif(taken_seen & ~pushed):
                m.d.sync += [count.eq(count - 1), full.eq(0)]

        with m.If(self.start):
            m.d.sync += [active.eq(1), self.halted.eq(0), self.index.eq(0),
                         length.eq(self.program_len)]
        with m.Elif(self.stop):
            m.d.sync += active.eq(0)
        # (An error does not clear ``active``: the failing instruction is not taken, so nothing
        # moves until the controller's ``stop``.)

        # With no instruction at the head: the next one could not be fetched, or the program has
        # no more. Both are comparisons of registers, made a cycle ahead (``index`` only moves by
        # dispatching an instruction, which neither condition allows, so they are never stale
        # when they are true; they are cleared by ``start``).
        # ``at_end`` is compared in two registered steps (bytes, then their AND), so it follows
        # ``index`` two cycles late: a 32-bit comparison in one cycle was a routed 12 x 12 path of
        # 9.2 ns. Late is safe: it is never true while an instruction can be dispatched.
        at_fault = Signal()
        at_end = Signal()
        byte_equal = [Signal(name=f"at_end_byte{i}") for i in range(-(-len(length) // 8))]
        with m.If(self.start):
            m.d.sync += [at_fault.eq(0), at_end.eq(0), *(flag.eq(0) for flag in byte_equal)]
        with m.Else():
            m.d.sync += [at_fault.eq(self.fault & (self.fault_index == self.index)),
                         at_end.eq(Cat(*byte_equal).all())]
            m.d.sync += [flag.eq(self.index[8 * i:8 * i + 8] == length[8 * i:8 * i + 8])
                         for i, flag in enumerate(byte_equal)]

        # ``engines_idle`` as of the previous cycle, and nothing dispatched since nor on its way
        # to a queue (a FENCE waits one cycle longer; the engines cannot get work while it waits,
        # so it cannot be stale).
        idle = Signal()
        m.d.sync += idle.eq(self.engines_idle & ~take & ~Cat(*in_transit).any())

        # ``stop`` clears ``active`` (a register) but does not gate dispatch in the cycle it rises:
        # it fans out far, and an instruction dispatched in that cycle goes to a queue that
        # ``stop`` is emptying (and its index is not reported).
        running = active & ~self.halted
        m.d.comb += self.error_index.eq(self.index)
        with m.If(running):
            with m.If(head_valid):
                with m.If(head_bad):
                    m.d.comb += [self.error.eq(head_error), self.error_en.eq(1)]
                with m.Elif(head.halt):
                    m.d.comb += take.eq(1)
                    m.d.sync += self.halted.eq(1)
                with m.Elif(head.fence):
                    m.d.comb += [take.eq(idle), self.stuck.eq(~idle)]
                with m.Else():
                    m.d.comb += [go.eq(1), take.eq(target_ready), self.stuck.eq(~target_ready)]
            # An instruction the fetch unit could not read, or one past the end of the program,
            # never reaches the decode stage.
            with m.Elif(at_fault):
                m.d.comb += [self.error.eq(ProgramError.BUS_ERROR), self.error_en.eq(1)]
            with m.Elif(at_end):
                m.d.comb += [self.error.eq(ProgramError.NO_HALT), self.error_en.eq(1)]
        with m.Else():
            m.d.comb += self.stuck.eq(1)
        m.d.comb += self.dispatched.eq(take)
        with m.If(take):
            m.d.sync += self.index.eq(self.index + 1)
        return m
