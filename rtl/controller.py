"""Controller: the program's life cycle, the dependency tokens, errors, watchdog and counters.

::

    IDLE ── start ──► RUN ── HALT dispatched, queues empty, engines and DMA idle ──► IDLE (done)
                       │
                       ├── error (dispatcher, engine, token overflow, deadlock) ──► STOP
                       │     STOP: abort = 1 (nothing new starts, queues are emptied); what is
                       │     executing finishes, so the bus is left idle ──► IDLE (done, error)
                       └── watchdog ──► reset the engines and the DMA ──► IDLE (done, error)

Tokens: a counter per ordered pair of engines (src -> dst), cleared by start. A push of src to dst
adds one, a pop by dst from src takes one; ``avail`` of engine E has bit F set while counter
F -> E is non-zero. A push that would pass TOKEN_LIMIT is TOKEN_OVERFLOW.

Deadlock: while running, if no engine is executing, at least one engine's queue head waits for a
token, and the dispatcher cannot move (halted, at a FENCE, or at a full queue), no token can ever
arrive: DEADLOCK, with the smallest index among the waiting heads.

Watchdog: ``watchdog`` (0 = off) cycles without progress (an instruction dispatched, a token
taken or given, a row into the array, a handshake on the memory bus) stop the program with
WATCHDOG; the engines cannot finish (the memory stopped answering), so they are reset.

A soft reset (``soft_abort``) stops a running program like an error, with ABORTED. The first
error is kept (ERROR_CODE/ERROR_INFO); the next start clears it.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .engine import INDEX, EngineControl
from .isa import TOKEN_LIMIT, Engine, ProgramError
from .registers import PERF_COUNTERS

__all__ = ["Controller"]

ENGINES = (Engine.LOAD, Engine.EXEC, Engine.STORE)


class Controller(wiring.Component):
    """Ports: ``start`` (CTRL.start), ``soft_abort`` (a soft reset is pending), ``watchdog``;
    ``load``/``exec``/``store`` (EngineControl, flipped); the dispatcher's ``halted``, ``stuck``,
    ``dispatched``, ``dispatch_index``, ``dispatch_error``/``_en``/``_index``; ``fetch_busy``,
    ``dma_busy``, ``progress``, ``mac_active``, ``bytes_read``, ``bytes_written``.
    Out: ``running``, ``begin`` (one-cycle pulse starting fetch and dispatch), ``stop``,
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

        # --- tokens -----------------------------------------------------------------------------
        overflow = Signal()
        overflow_index = Signal(INDEX)
        counters = {}
        for src in ENGINES:
            for dst in ENGINES:
                if src == dst:
                    continue
                count = counters[src, dst] = Signal(range(TOKEN_LIMIT + 1),
                                                    name=f"tokens_{src.name}_{dst.name}".lower())
                inc = self.engine(src).push_en & self.engine(src).push[dst]
                dec = self.engine(dst).pop_en & self.engine(dst).pop[src]
                with m.If(begin):
                    m.d.sync += count.eq(0)
                with m.Else():
                    m.d.sync += count.eq(count + inc - dec)
                with m.If(inc & ~dec & (count == TOKEN_LIMIT)):
                    m.d.comb += [overflow.eq(1), overflow_index.eq(self.engine(src).push_index)]
        for dst in ENGINES:
            m.d.comb += self.engine(dst).avail.eq(
                sum((counters[src, dst] != 0) << src for src in ENGINES if src != dst))

        # --- deadlock -----------------------------------------------------------------------------
        def active(ctl):
            return ctl.busy | (ctl.stall & ~ctl.blocked)

        any_active = active(self.load) | active(self.exec) | active(self.store)
        any_blocked = self.load.blocked | self.exec.blocked | self.store.blocked
        deadlock = Signal()
        deadlock_index = Signal(INDEX)
        index = Signal(INDEX)
        m.d.comb += index.eq((1 << 32) - 1)
        for e in ENGINES:
            ctl = self.engine(e)
            index = Mux(ctl.blocked & (ctl.head_index < index), ctl.head_index, index)
        m.d.comb += deadlock_index.eq(index)

        # --- watchdog -----------------------------------------------------------------------------
        quiet = Signal(32)
        activity = (self.progress | self.dispatched | self.mac_active |
                    self.load.pop_en | self.exec.pop_en | self.store.pop_en |
                    self.load.push_en | self.exec.push_en | self.store.push_en)
        with m.If(begin | activity | ~self.running):
            m.d.sync += quiet.eq(0)
        with m.Else():
            m.d.sync += quiet.eq(quiet + 1)
        watchdog = Signal()
        m.d.comb += watchdog.eq(self.running & (self.watchdog != 0) & (quiet >= self.watchdog))
        watchdog_index = Mux(self.load.busy, self.load.error_index,
                             Mux(self.store.busy, self.store.error_index, self.dispatch_index))

        # --- errors -----------------------------------------------------------------------------
        error = Signal(4)
        error_index = Signal(INDEX)
        with m.If(self.dispatch_error_en):
            m.d.comb += [error.eq(self.dispatch_error), error_index.eq(self.dispatch_error_index)]
        with m.Elif(self.load.error_en):
            m.d.comb += [error.eq(self.load.error), error_index.eq(self.load.error_index)]
        with m.Elif(self.store.error_en):
            m.d.comb += [error.eq(self.store.error), error_index.eq(self.store.error_index)]
        with m.Elif(overflow):
            m.d.comb += [error.eq(ProgramError.TOKEN_OVERFLOW), error_index.eq(overflow_index)]
        with m.Elif(watchdog):
            m.d.comb += [error.eq(ProgramError.WATCHDOG), error_index.eq(watchdog_index)]
        with m.Elif(deadlock):
            m.d.comb += [error.eq(ProgramError.DEADLOCK), error_index.eq(deadlock_index)]

        # --- life cycle ---------------------------------------------------------------------------
        engines_quiet = ~any_active & ~self.fetch_busy & ~self.dma_busy
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start & ~self.soft_abort & ~self.dma_busy):
                    m.d.comb += begin.eq(1)
                    m.d.sync += [self.error_code.eq(0), self.error_index.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [
                    self.running.eq(1),
                    deadlock.eq(self.stuck & ~any_active & any_blocked),
                ]
                with m.If(error != ProgramError.NONE):
                    m.d.sync += [self.error_code.eq(error), self.error_index.eq(error_index)]
                    with m.If(watchdog):
                        m.next = "RESET"
                    with m.Else():
                        m.next = "STOP"
                with m.Elif(self.soft_abort):
                    m.d.sync += [self.error_code.eq(ProgramError.ABORTED),
                                 self.error_index.eq(self.dispatch_index)]
                    m.next = "STOP"
                with m.Elif(self.halted & engines_quiet & self.load.empty & self.exec.empty &
                            self.store.empty):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
            with m.State("STOP"):
                m.d.comb += [self.running.eq(1), self.stop.eq(1)]
                with m.If(watchdog):
                    m.d.sync += [self.error_code.eq(ProgramError.WATCHDOG),
                                 self.error_index.eq(watchdog_index)]
                    m.next = "RESET"
                with m.Elif(engines_quiet):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
            with m.State("RESET"):
                m.d.comb += [self.stop.eq(1), self.force_reset.eq(1), self.done.eq(1)]
                m.next = "IDLE"
        for ctl in (self.load, self.exec, self.store):
            m.d.comb += ctl.abort.eq(self.stop | self.soft_abort)

        # --- performance counters -----------------------------------------------------------------
        events = {
            "CYCLES": 1,
            "LOAD_BUSY": self.load.busy, "LOAD_STALL": self.load.stall,
            "EXEC_BUSY": self.exec.busy, "EXEC_STALL": self.exec.stall,
            "STORE_BUSY": self.store.busy, "STORE_STALL": self.store.stall,
            "MAC_ACTIVE": self.mac_active,
        }
        for name, event in events.items():
            count = getattr(self, f"count_{name.lower()}")
            with m.If(begin):
                m.d.sync += count.eq(0)
            with m.Elif(self.running & event):
                m.d.sync += count.eq(count + 1)
        for name, value in (("DMA_BYTES_READ", self.bytes_read),
                            ("DMA_BYTES_WRITTEN", self.bytes_written)):
            base = Signal(32, name=f"{name.lower()}_base")
            with m.If(begin):
                m.d.sync += base.eq(value)
            with m.If(self.running):
                m.d.sync += getattr(self, f"count_{name.lower()}").eq(value - base)
        return m
