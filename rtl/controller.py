"""Controller: the program's life cycle, the dependency tokens, errors, watchdog and counters.

::

    IDLE ── start ──► BEGIN (one cycle: ``begin`` high, from a register) ──► RUN

    RUN ── HALT dispatched, queues empty, engines and DMA idle ──► IDLE (done)
     │
     ├── error (dispatcher, engine, token overflow, deadlock) ──► RECORD ──► STOP
     │     RECORD: ERROR_CODE/INFO are loaded (one cycle).
     │     STOP: abort = 1 (nothing new starts, queues are emptied); what is
     │     executing finishes, so the bus is left idle ──► IDLE (done, error)
     └── watchdog ──► RECORD ──► RESET: reset the engines and the DMA ──► IDLE (done, error)

Tokens: a counter per ordered pair of engines (src -> dst), cleared by start. A push of src to dst
adds one, a pop by dst from src takes one (both counted in the cycle after the engine's
``push_en``/``pop_en``: they are registered first); ``avail`` of engine E has bit F set while
counter F -> E is non-zero. A push that would pass TOKEN_LIMIT is TOKEN_OVERFLOW.

Deadlock: while running, if no engine is executing, at least one engine's queue head waits for a
token, and the dispatcher cannot move (halted, at a FENCE, or at a full queue), no token can ever
arrive: DEADLOCK, with the smallest index among the waiting heads (raised once the condition has
held for four cycles: the index is found by a pipeline of registers).

Watchdog: ``watchdog`` (0 = off) cycles without progress (an instruction dispatched, a token
taken or given, a row into the array, a handshake on the memory bus) stop the program with
WATCHDOG; the engines cannot finish (the memory stopped answering), so they are reset.

A soft reset (``soft_abort``) stops a running program like an error, with ABORTED. The first
error is kept (ERROR_CODE/ERROR_INFO); the next start clears it.
"""

from functools import reduce
from operator import or_

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .engine import INDEX, EngineControl
from .isa import TOKEN_LIMIT, Engine, ProgramError
from .registers import PERF_COUNTERS
from .util import REPLICA, delay, one_hot_select

__all__ = ["Controller"]

ENGINES = (Engine.LOAD, Engine.EXEC, Engine.STORE)


class Controller(wiring.Component):
    """Ports: ``start`` (CTRL.start), ``soft_abort`` (a soft reset is pending), ``watchdog``;
    ``load``/``exec``/``store`` (EngineControl, flipped); the dispatcher's ``halted``, ``stuck``,
    ``dispatched``, ``dispatch_index``, ``dispatch_error``/``_en``/``_index``; ``fetch_busy``,
    ``dma_busy``, ``progress``, ``mac_active``, ``bytes_read``, ``bytes_written``.
    Out: ``running``, ``begin`` (one-cycle pulse starting a program) and its copies
    ``begin_fetch``/``begin_dispatch`` (separate registers, for the fetch unit and the
    dispatcher), ``stop``,
    ``done`` (pulse), ``error_code``, ``error_index``, ``force_reset`` (pulse) and one ``count_*``
    per performance counter (PERF_COUNTERS)."""
    def __init__(self):
        members = {
            "start":          In(1),
            "soft_abort":     In(1),
            "watchdog":       In(32),
            "load":           In(EngineControl()),
            "exec":           In(EngineControl()),
            "store":          In(EngineControl()),
            "halted":         In(1),
            "stuck":          In(1),
            "dispatched":     In(1),
            "dispatch_index": In(INDEX),
            "dispatch_error": In(4),
            "dispatch_error_en": In(1),
            "dispatch_error_index": In(INDEX),
            "fetch_busy":     In(1),
            "dma_busy":       In(1),
            "progress":       In(1),
            "mac_active":     In(1),
            "bytes_read":     In(32),
            "bytes_written":  In(32),
            "running":        Out(1),
            "begin":          Out(1),
            "begin_fetch":    Out(1),
            "begin_dispatch": Out(1),
            "stop":           Out(1),
            "done":           Out(1),
            "error_code":     Out(4),
            "error_index":    Out(INDEX),
            "force_reset":    Out(1),
        }
        for name in PERF_COUNTERS:
            members[f"count_{name.lower()}"] = Out(32)
        super().__init__(members)

    def engine(self, e):
        return {Engine.LOAD: self.load, Engine.EXEC: self.exec, Engine.STORE: self.store}[e]

    def elaborate(self, platform):
        m = Module()
        begin = self.begin
        # ``begin`` is one register per group of loads (this controller and the engines, the
        # fetch unit, the dispatcher, the performance counters, the token counters), each loaded
        # alike: named as replicas so that synthesis keeps them apart.
        begin_copies = [Signal(name=f"begin{REPLICA}{i}") for i in range(6)]
        m.d.comb += [begin.eq(begin_copies[0]), self.begin_fetch.eq(begin_copies[1]),
                     self.begin_dispatch.eq(begin_copies[2])]
        count_begin = begin_copies[3]
        token_begin = begin_copies[4]
        error_begin = begin_copies[5]

        # --- tokens -----------------------------------------------------------------------------
        # ``nonzero`` (avail) and ``full`` (count == TOKEN_LIMIT) are registers, so the engines'
        # pop decisions and the overflow check start at flip-flops. Their next values come from
        # the flags and from ``one``/``almost_full`` (count == 1, count == TOKEN_LIMIT - 1), not
        # from the counter's adder.
        overflow = Signal()
        # Which engine's push overflowed, and the index of each engine's push, as registers:
        # the index is chosen from them a cycle later, so the pops (which decide whether a push
        # overflows) reach one flip-flop per engine, not the select of a 32-bit multiplexer.
        overflow_by = {src: Signal(name=f"overflow_by_{src.name.lower()}") for src in ENGINES}
        overflow_by_q = {src: Signal(name=f"overflow_by_{src.name.lower()}_q") for src in ENGINES}
        # The engines' pushes and pops are registered here and counted a cycle later: the counters
        # and flags start from these registers, not from the engines' decisions (which depend on
        # the flags: a loop of several LUTs otherwise). A pop is then visible in ``avail`` two
        # cycles after it, which is never too late: after taking its queue's head, an engine sees
        # the next head two cycles later at the earliest (see InstructionQueue).
        pushes = {src: Signal(3, name=f"push_{src.name.lower()}_q") for src in ENGINES}
        pops = {dst: Signal(3, name=f"pop_{dst.name.lower()}_q") for dst in ENGINES}
        push_index_d = {src: Signal(INDEX, name=f"push_index_{src.name.lower()}_d")
                        for src in ENGINES}
        push_index_q = {src: Signal(INDEX, name=f"push_index_{src.name.lower()}_q")
                        for src in ENGINES}
        for e in ENGINES:
            ctl = self.engine(e)
            m.d.sync += [pushes[e].eq(Mux(ctl.push_en, ctl.push, 0)),
                         pops[e].eq(Mux(ctl.pop_en, ctl.pop, 0)),
                         push_index_d[e].eq(ctl.push_index),
                         overflow_by_q[e].eq(overflow_by[e]),
                         push_index_q[e].eq(push_index_d[e])]
        overflow_index_q = Signal(INDEX)
        for src in ENGINES:        # the last engine (in ENGINES order) that overflowed
            with m.If(overflow_by_q[src]):
                m.d.comb += overflow_index_q.eq(push_index_q[src])
        nonzero = {}
        for src in ENGINES:
            for dst in ENGINES:
                if src == dst:
                    continue
                pair = f"{src.name}_{dst.name}".lower()
                count = Signal(range(TOKEN_LIMIT + 1), name=f"tokens_{pair}")
                count_next = Signal.like(count, name=f"tokens_{pair}_next")
                full = Signal(name=f"tokens_{pair}_full")
                almost_full = Signal(name=f"tokens_{pair}_almost_full")
                one = Signal(name=f"tokens_{pair}_one")
                nz = nonzero[src, dst] = Signal(name=f"tokens_{pair}_nonzero")
                inc = pushes[src][dst]
                dec = pops[dst][src]
                up, down = inc & ~dec, dec & ~inc
                m.d.comb += count_next.eq(Mux(token_begin, 0, count + inc - dec))

                def after(k):
                    # count_next == k, from comparisons of the counter itself (in parallel with
                    # the push and pop decisions, not behind the adder)
                    return ~token_begin & Mux(up, count == k - 1,
                                              Mux(down, count == k + 1, count == k))
                m.d.sync += [
                    count.eq(count_next),
                    one.eq(after(1)),
                    almost_full.eq(after(TOKEN_LIMIT - 1)),
                    nz.eq(~token_begin & (up | (nz & ~(down & one)))),
                    full.eq(~token_begin & ((up & almost_full) | (full & ~down))),
                ]
                with m.If(inc & ~dec & full):
                    m.d.comb += [overflow.eq(1), overflow_by[src].eq(1)]
        for dst in ENGINES:
            m.d.comb += self.engine(dst).avail.eq(
                sum(nonzero[src, dst] << src for src in ENGINES if src != dst))

        # --- deadlock -----------------------------------------------------------------------------
        def active(ctl):
            return ctl.busy | (ctl.stall & ~ctl.blocked)

        # The engines' status, registered: it comes out of their take/issue decisions (which
        # depend on the tokens), and feeds the end-of-program, STOP and deadlock conditions, which
        # are stable once true (so a cycle-old view only delays them by a cycle: an engine is
        # active in the cycle it takes a head, and a queue counts that head until two cycles
        # later).
        # The dispatcher's ``stuck`` likewise (it comes out of its dispatch decision; DEADLOCK
        # needs it, like the rest of its condition, to hold for four cycles).
        any_active = Signal()
        any_blocked = Signal()
        stuck = Signal()
        m.d.sync += [
            any_active.eq(active(self.load) | active(self.exec) | active(self.store)),
            any_blocked.eq(self.load.blocked | self.exec.blocked | self.store.blocked),
            stuck.eq(self.stuck),
        ]
        # A deadlock is a stable state (nothing can move), so it is detected through a pipeline
        # of registers: the engines' ``blocked``/``head_index`` are sampled, the smallest waiting
        # index is found in two steps of two cycles each (compare, then select), and DEADLOCK is
        # raised once the condition has held in the five previous cycles (the index, of the
        # engines' state five cycles ago, is then of the deadlock).
        deadlock_now = Signal()
        deadlock_seen = Signal(5)
        deadlock = Signal()
        deadlock_index = Signal(INDEX)
        waiting = []
        for e in ENGINES:
            ctl = self.engine(e)
            blocked = Signal(name=f"blocked_{e.name.lower()}")
            index = Signal(INDEX, name=f"head_index_{e.name.lower()}")
            m.d.sync += [blocked.eq(ctl.blocked), index.eq(ctl.head_index)]
            waiting.append((blocked, index))

        def smaller(a, b, name):
            # Cycle 1: the 32-bit comparison into a register (with both indices); cycle 2: the
            # selection (one comparison and the multiplexer in one cycle were 10.0 ns routed).
            (a_blocked, a_index), (b_blocked, b_index) = a, b
            take_b = Signal(name=f"{name}_take_b")
            seen = [Signal(INDEX, name=f"{name}_a_index"), Signal(INDEX, name=f"{name}_b_index")]
            blocked_1 = Signal(name=f"{name}_blocked_1")
            blocked = Signal(name=f"{name}_blocked")
            index = Signal(INDEX, name=f"{name}_index")
            m.d.sync += [take_b.eq(b_blocked & (~a_blocked | (b_index < a_index))),
                         seen[0].eq(a_index), seen[1].eq(b_index),
                         blocked_1.eq(a_blocked | b_blocked), blocked.eq(blocked_1),
                         index.eq(Mux(take_b, seen[1], seen[0]))]
            return blocked, index

        first_two = smaller(waiting[0], waiting[1], "deadlock_01")
        store_late = (delay(m, waiting[2][0], 2, "deadlock_store_blocked"),
                      delay(m, waiting[2][1], 2, "deadlock_store_index"))
        _, smallest = smaller(first_two, store_late, "deadlock_012")
        m.d.sync += deadlock_seen.eq(Cat(deadlock_now, deadlock_seen[:-1]))
        m.d.comb += [deadlock.eq(deadlock_seen.all()),
                     deadlock_index.eq(smallest)]

        # --- watchdog -----------------------------------------------------------------------------
        quiet = Signal(32)
        # Progress is registered twice (the watchdog counts from two cycles after it): each
        # source — from the bus, the dispatcher and the engines, all over the die — into its own
        # flip-flop, then their OR.
        sources = [self.progress, self.dispatched, self.mac_active,
                   *(ctl.pop_en for ctl in (self.load, self.exec, self.store)),
                   *(ctl.push_en for ctl in (self.load, self.exec, self.store))]
        progress_seen = Signal(len(sources))
        activity = Signal()
        m.d.sync += [progress_seen.eq(Cat(*sources)), activity.eq(progress_seen.any())]
        with m.If(begin | activity | ~self.running):
            m.d.sync += quiet.eq(0)
        with m.Else():
            m.d.sync += quiet.eq(quiet + 1)
        # The comparison is registered: the watchdog fires a cycle after the limit is reached.
        watchdog = Signal()
        m.d.sync += watchdog.eq(self.running & (self.watchdog != 0) & (quiet >= self.watchdog) &
                                ~begin)
        # Its index is chosen from registered copies of the engines' state (stable while the
        # watchdog counts: nothing moves).
        held = {}
        for name, value in (("load_busy", self.load.busy), ("load_index", self.load.error_index),
                            ("store_busy", self.store.busy),
                            ("store_index", self.store.error_index),
                            ("dispatch_index", self.dispatch_index)):
            held[name] = Signal.like(value, name=f"{name}_q")
            m.d.sync += held[name].eq(value)
        watchdog_index = Mux(held["load_busy"], held["load_index"],
                             Mux(held["store_busy"], held["store_index"],
                                 held["dispatch_index"]))

        # --- errors -----------------------------------------------------------------------------
        # Every source's error is registered as it is reported (cycle t: stage A, which the placer
        # may put between the source and the controller), then again beside the controller
        # (stage B). ``pending`` (some error was reported) rises in cycle t+2 from the stage A
        # registers, and ``stop`` (abort) with it; the first of the reports in this priority
        # order is chosen from stage B and registered (``first_error``, cycle t+3), when RECORD
        # loads it.
        sources = [
            ("dispatch", self.dispatch_error_en, self.dispatch_error, self.dispatch_error_index),
            ("load", self.load.error_en, self.load.error, self.load.error_index),
            ("store", self.store.error_en, self.store.error, self.store.error_index),
            ("overflow", overflow, ProgramError.TOKEN_OVERFLOW, None),
            ("watchdog", watchdog, ProgramError.WATCHDOG, watchdog_index),
        ]
        stage_a = []
        for name, en, code, index in sources:
            en_q = Signal(name=f"{name}_error_en")
            code_q = Signal(4, name=f"{name}_error")
            m.d.sync += [en_q.eq(en & self.running), code_q.eq(code)]
            if index is None:      # the overflow's index, chosen from registers (above)
                index_q = overflow_index_q
            else:
                index_q = Signal(INDEX, name=f"{name}_error_index")
                m.d.sync += index_q.eq(index)
            stage_a.append((name, en_q, code_q, index_q))
        stage_a.append(("deadlock", deadlock, ProgramError.DEADLOCK, deadlock_index))
        # Stage B also registers the priority decision, one-hot (``pick_b``: the first source in
        # the order above that reported), so the multiplexer below is an AND-OR of flip-flops.
        reported = []
        pick_b = Signal(len(stage_a))
        earlier = 0
        for i, (name, en_q, code_q, index_q) in enumerate(stage_a):
            en_b = Signal(name=f"{name}_error_en_b")
            code_b = Signal(4, name=f"{name}_error_b")
            index_b = Signal(INDEX, name=f"{name}_error_index_b")
            m.d.sync += [en_b.eq(en_q), code_b.eq(code_q), index_b.eq(index_q),
                         pick_b[i].eq(en_q & ~earlier)]
            earlier = earlier | en_q
            reported.append((en_b, code_b, index_b))
        watchdog_reported = reported[4][0]
        # Some error was reported: one register (the OR of the stage A flags), because ``stop``
        # fans out to every engine and queue.
        pending = Signal()
        any_reported = Signal()        # a report in stage A: a program does not end this cycle
        m.d.comb += any_reported.eq(reduce(or_, (en_q for _, en_q, _, _ in stage_a)))
        m.d.sync += pending.eq(self.running & any_reported)
        error = Signal(4)
        error_index = Signal(INDEX)
        m.d.comb += [error.eq(one_hot_select(pick_b, [code for _, code, _ in reported])),
                     error_index.eq(one_hot_select(pick_b, [index for _, _, index in reported]))]
        # The multiplexer's choice, registered in every cycle (RECORD takes the one of the cycle
        # after ``pending`` rose), and whether the program is then reset (watchdog).
        first_error = Signal(4)
        first_index = Signal(INDEX)
        to_reset = Signal()
        m.d.sync += [first_error.eq(error), first_index.eq(error_index)]

        # --- life cycle ---------------------------------------------------------------------------
        engines_quiet = ~any_active & ~self.fetch_busy & ~self.dma_busy
        # The end conditions, registered: both are stable once true (with HALT dispatched and the
        # queues empty, or with ``stop`` held, nothing new can start), so a cycle-old value is
        # still true, and the state machine's transitions start at flip-flops.
        # (``begin`` clears them: the previous program's HALT is still in ``halted`` then.)
        settled = Signal()
        finished = Signal()
        m.d.sync += [
            settled.eq(~begin & engines_quiet),
            finished.eq(~begin & self.halted & engines_quiet & self.load.empty &
                        self.exec.empty & self.store.empty),
        ]
        # ``stop`` = ``pending`` (in RUN) or ``stopping`` (in RECORD, STOP, RESET): two
        # registers and one gate, as it fans out to every engine, queue and the dispatcher.
        stopping = Signal()
        m.d.comb += self.stop.eq(pending | stopping)
        # ERROR_CODE/ERROR_INFO are written under flags of their own, set by the transition
        # before the write (not under a decode of the state register, which would fan out to all
        # 36 bits): ``error_begin`` (the BEGIN state: clear), ``record_error`` (RECORD: the first
        # error), ``abort_error`` (the first cycle of STOP after a soft abort, with the
        # dispatcher's index of the cycle before) and ``watchdog_error`` (RESET after a watchdog
        # in STOP, with the index of the cycle before). Each write lands no later than the edge
        # that registers ``done`` for STATUS, so STATUS.error and ERROR_CODE never lag STATUS.done.
        record_error = Signal()
        abort_error = Signal()
        watchdog_error = Signal()
        abort_index = Signal(INDEX)
        watchdog_error_index = Signal(INDEX)
        m.d.sync += [record_error.eq(0), abort_error.eq(0), watchdog_error.eq(0),
                     abort_index.eq(held["dispatch_index"]),
                     watchdog_error_index.eq(reported[4][2])]
        with m.If(error_begin):
            m.d.sync += [self.error_code.eq(0), self.error_index.eq(0)]
        with m.Elif(watchdog_error):
            m.d.sync += [self.error_code.eq(ProgramError.WATCHDOG),
                         self.error_index.eq(watchdog_error_index)]
        with m.Elif(record_error):
            m.d.sync += [self.error_code.eq(first_error), self.error_index.eq(first_index)]
        with m.Elif(abort_error):
            m.d.sync += [self.error_code.eq(ProgramError.ABORTED),
                         self.error_index.eq(abort_index)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start & ~self.soft_abort & ~self.dma_busy):
                    m.d.sync += [copy.eq(1) for copy in begin_copies]
                    m.next = "BEGIN"
            with m.State("BEGIN"):
                # ``begin`` is high in this cycle only, from a register: it fans out to the
                # fetch unit, the dispatcher and every counter, and its condition comes from the
                # register file and the DMA. The previous program's error is cleared here too,
                # not in the cycle of the start: the error registers' enable is then the state
                # register, not the start condition.
                m.d.sync += [copy.eq(0) for copy in begin_copies]
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [
                    self.running.eq(1),
                    deadlock_now.eq(stuck & ~any_active & any_blocked),
                ]
                with m.If(pending):
                    m.d.sync += [stopping.eq(1), to_reset.eq(watchdog_reported),
                                 record_error.eq(1)]
                    m.next = "RECORD"
                with m.Elif(self.soft_abort):
                    m.d.sync += [abort_error.eq(1), stopping.eq(1)]
                    m.next = "STOP"
                with m.Elif(finished & ~any_reported):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
            with m.State("RECORD"):
                # The first error, from the registered priority multiplexer (a cycle after
                # ``pending``): ERROR_CODE/INFO are loaded from registers next to them. STOP and
                # RESET come after, so ``done`` never comes before the error.
                m.d.comb += self.running.eq(1)
                with m.If(to_reset):
                    m.next = "RESET"
                with m.Else():
                    m.next = "STOP"
            with m.State("STOP"):
                m.d.comb += self.running.eq(1)
                with m.If(watchdog_reported):
                    m.d.sync += watchdog_error.eq(1)
                    m.next = "RESET"
                with m.Elif(settled):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += stopping.eq(0)
                    m.next = "IDLE"
            with m.State("RESET"):
                m.d.comb += [self.force_reset.eq(1), self.done.eq(1)]
                m.d.sync += stopping.eq(0)
                m.next = "IDLE"
        # The engines' ``abort`` is a register, a cycle after ``stop`` or the soft reset rises:
        # it reaches the three engines and their queues across the die from one flip-flop. (In
        # the cycle ``stop`` rises an engine may still take its queue's head, as the dispatcher
        # may still dispatch; that instruction runs to its end like the ones already running.)
        engine_abort = Signal()
        m.d.sync += engine_abort.eq(self.stop | self.soft_abort)
        for ctl in (self.load, self.exec, self.store):
            m.d.comb += ctl.abort.eq(engine_abort)

        # --- performance counters -----------------------------------------------------------------
        # The events (from the engines, the array and the DMA, all over the die) and ``running``
        # are registered first, so each counter's enable starts at flip-flops beside it: every
        # count runs a cycle behind, over the same window, and is final a cycle after ``done``
        # (a host reads it several cycles later).
        counting = Signal()
        m.d.sync += counting.eq(self.running)
        events = {
            "CYCLES": 1,
            "LOAD_BUSY": self.load.busy, "LOAD_STALL": self.load.stall,
            "EXEC_BUSY": self.exec.busy, "EXEC_STALL": self.exec.stall,
            "STORE_BUSY": self.store.busy, "STORE_STALL": self.store.stall,
            "MAC_ACTIVE": self.mac_active,
        }
        for name, event in events.items():
            count = getattr(self, f"count_{name.lower()}")
            seen = Signal(name=f"{name.lower()}_event")
            m.d.sync += seen.eq(event)
            with m.If(count_begin):
                m.d.sync += count.eq(0)
            with m.Elif(counting & seen):
                m.d.sync += count.eq(count + 1)
        for name, value in (("DMA_BYTES_READ", self.bytes_read),
                            ("DMA_BYTES_WRITTEN", self.bytes_written)):
            value_q = Signal(32, name=f"{name.lower()}_total")
            base = Signal(32, name=f"{name.lower()}_base")
            m.d.sync += value_q.eq(value)
            with m.If(count_begin):
                m.d.sync += base.eq(value_q)
            with m.If(counting):
                m.d.sync += getattr(self, f"count_{name.lower()}").eq(value_q - base)
        return m
