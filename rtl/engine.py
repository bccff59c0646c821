"""What the LOAD, EXEC and STORE engines have in common: their queue and their control port.

Each engine owns an instruction queue (``QUEUE_DEPTH`` entries, filled in program order by the
dispatcher) and talks to the controller (rtl/controller.py) through an :class:`EngineControl`
port::

    queue head ──► wait until every engine in header.pop has a token for us ──► take them (pop)
               ──► execute ──► give a token to every engine in header.push (push)

Tokens are counted by the controller; ``avail`` bit F says that engine F has given this engine at
least one token not yet taken. ``abort`` (an error elsewhere, or a soft reset) stops the engine
from starting anything new and empties its queue; what it is executing runs to its end, so the
memory bus is always left idle and legal.
"""

from amaranth.hdl import Cat, Module, ResetInserter, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .dma_descriptor import DmaError
from .isa import QUEUE_DEPTH, Instruction, ProgramError
from .util import REPLICA, wrap_increment

__all__ = ["QueueEntry", "EngineControl", "InstructionQueue", "INDEX", "attach_queue",
           "IdleFlags", "take_head", "dma_states"]

#: Shape of an instruction index (ERROR_INFO).
INDEX = unsigned(32)
#: Width of one slice of an :class:`InstructionQueue`'s storage (one copy of its pointers each).
SLICE_BITS = 32


class QueueEntry(data.StructLayout):
    """An instruction and its index in the program."""
    def __init__(self):
        super().__init__({"word": Instruction(), "index": INDEX})


class EngineControl(wiring.Signature):
    """Engine <-> controller, from the engine's side.

    * ``abort`` in: start nothing new, drop the queue.
    * ``avail`` in: bit F = a token from engine F is available.
    * ``pop``/``pop_en`` out: take one token from each engine in ``pop`` (one cycle).
    * ``push``/``push_en``/``push_index`` out: give one token to each engine in ``push``;
      ``push_index`` names the instruction (for TOKEN_OVERFLOW).
    * ``error``/``error_en``/``error_index`` out: a ProgramError of instruction ``error_index``.
    * ``busy`` out: an instruction is executing (or, in EXEC, in flight).
    * ``stall`` out: the queue head waits (for tokens or a resource) and nothing executes.
    * ``blocked`` out: the queue head waits for tokens only (deadlock detection).
    * ``head_index`` out: index of the queue head (valid while ``blocked``).
    * ``empty`` out: the queue is empty.
    """
    def __init__(self):
        super().__init__({
            "abort":       In(1),
            "avail":       In(3),
            "pop":         Out(3),
            "pop_en":      Out(1),
            "push":        Out(3),
            "push_en":     Out(1),
            "push_index":  Out(INDEX),
            "error":       Out(4),
            "error_en":    Out(1),
            "error_index": Out(INDEX),
            "busy":        Out(1),
            "stall":       Out(1),
            "blocked":     Out(1),
            "head_index":  Out(INDEX),
            "empty":       Out(1),
        })


class InstructionQueue(wiring.Component):
    """The engine's queue: ``depth`` :class:`QueueEntry` slots, emptied by ``flush``.

    ::

        push ──► [in] ──► storage (memory) ──► [head] ──► engine (``take``)
                  │
        count ────┴── entries anywhere in the queue; ``push.ready`` = not full

    A pushed entry goes into the input register ``in`` (loaded every cycle, so its enable is
    not the dispatcher's logic), is written into the storage in the next cycle (its write enable
    is a flip-flop), and reaches ``head`` (the storage's registered read port) when that is
    empty: three cycles from push to ``valid`` when the queue was empty, and two cycles from a
    ``take`` to the next ``valid``. (``head`` is loaded only while it is empty, so its enable —
    160 flip-flops — comes from two registers of the queue, not from the engine's ``take``
    decision, which depends on the controller's tokens.) ``count`` counts entries wherever they
    are, so the capacity is ``depth`` whatever is in flight, and ``empty`` (a register) is false
    from the cycle after a push: an entry on its way to the head is never invisible to the FENCE
    and end-of-program checks. A ``take`` leaves the count a cycle late (``push.ready`` and
    ``empty`` see it two cycles after the take), which errs on the safe side for both.

    ``head`` is the oldest entry (``valid``), removed by ``take``; ``tokens_ready`` says its pops
    are satisfied by ``avail``.
    """
    def __init__(self, depth=QUEUE_DEPTH):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        self.depth = depth
        super().__init__({
            "push":         In(stream.Signature(QueueEntry())),
            "flush":        In(1),
            "avail":        In(3),
            "head":         Out(QueueEntry()),
            "valid":        Out(1),
            "take":         In(1),
            "tokens_ready": Out(1),
            "empty":        Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        taken = Signal()
        accept = Signal()
        full = Signal()
        count = Signal(range(depth + 1))
        # A take is counted a cycle later (``counted``, a register), so the count and its flags
        # start from flip-flops rather than from the engine's decision to take.
        counted = Signal()
        m.d.comb += [
            self.push.ready.eq(~full & ~self.flush),
            accept.eq(self.push.valid & self.push.ready),
            taken.eq(self.take & self.valid),
            self.tokens_ready.eq((self.head.word.header.pop & ~self.avail) == 0),
        ]
        m.d.sync += counted.eq(taken)
        # Occupancy: the flags are registers, set from comparisons of the count itself.
        with m.If(accept & ~counted):
            m.d.sync += [count.eq(count + 1), full.eq(count == depth - 1), self.empty.eq(0)]
        with m.Elif(counted & ~accept):
            m.d.sync += [count.eq(count - 1), full.eq(0), self.empty.eq(count == 1)]

        in_valid = Signal()
        # Data registers are not reset (``in_valid``/``valid`` say what they hold): a reset or
        # flush would otherwise fan out to 160 more flip-flops.
        in_data = Signal(QueueEntry().size, reset_less=True)
        m.d.sync += [in_valid.eq(accept), in_data.eq(self.push.payload.as_value())]

        # The storage is split into slices of SLICE_BITS, each with its own copy of the write and
        # read pointers (``produce``/``consume``, registers named as replicas so that synthesis
        # keeps them): a pointer reaches the few distributed-RAM cells of its slice, not all of
        # them across the head's 160 flip-flops. (32 bits is two 16-bit-wide block RAMs on
        # devices without distributed RAM, so the split costs none there.)
        # ``load_head`` (the storage holds an entry and ``head`` is empty) is the read enable of
        # the head's 160 flip-flops. Each slice computes it from its own copies of two flags
        # (``stored_any``: ``stored`` is not zero, and ``valid``), registers updated alike, so
        # no one net reaches all of them.
        entry_bits = QueueEntry().size
        stored = Signal(range(depth + 1))
        stored_any = Signal()
        load_head = Signal()
        m.d.comb += load_head.eq(stored_any & ~self.valid)
        stored_any_next = Signal()
        valid_next = Signal()
        m.d.comb += [
            stored_any_next.eq(in_valid | (stored > 1) | (stored_any & ~load_head)),
            valid_next.eq(load_head | (self.valid & ~taken)),
        ]
        m.d.sync += stored_any.eq(stored_any_next)
        heads = []
        for i, lo in enumerate(range(0, entry_bits, SLICE_BITS)):
            slice_stored_any = Signal(name=f"stored_any{REPLICA}{i}")
            slice_valid = Signal(name=f"valid{REPLICA}{i}")
            m.d.sync += [slice_stored_any.eq(stored_any_next), slice_valid.eq(valid_next)]
            slice_load = slice_stored_any & ~slice_valid
            hi = min(lo + SLICE_BITS, entry_bits)
            storage = Memory(shape=hi - lo, depth=depth, init=[])
            m.submodules[f"storage_{i}"] = storage
            write = storage.write_port()
            read = storage.read_port(domain="sync")
            w_ptr = Signal(range(depth), name=f"produce{REPLICA}{i}")
            r_ptr = Signal(range(depth), name=f"consume{REPLICA}{i}")
            m.d.comb += [
                write.addr.eq(w_ptr), write.data.eq(in_data[lo:hi]), write.en.eq(in_valid),
                read.addr.eq(r_ptr), read.en.eq(slice_load),
            ]
            with m.If(in_valid):
                m.d.sync += w_ptr.eq(wrap_increment(w_ptr, depth))
            with m.If(slice_load):
                m.d.sync += r_ptr.eq(wrap_increment(r_ptr, depth))
            heads.append(read.data)
        m.d.comb += self.head.as_value().eq(Cat(*heads))
        with m.If(in_valid & ~load_head):
            m.d.sync += stored.eq(stored + 1)
        with m.Elif(load_head & ~in_valid):
            m.d.sync += stored.eq(stored - 1)
        m.d.sync += self.valid.eq(valid_next)
        return ResetInserter(self.flush)(m)


def attach_queue(m, engine):
    """Add ``engine``'s :class:`InstructionQueue` to ``m``, fed by ``engine.queue``, flushed by
    ``abort``, and wire the control port's queue fields; returns the queue."""
    ctl = engine.control
    q = m.submodules.queue = InstructionQueue()
    wiring.connect(m, wiring.flipped(engine.queue), q.push)
    # The flush comes from a register, a cycle after ``abort`` rises (``abort`` fans out far;
    # nothing is taken from the queue while it is high, and it stays high until the engines are
    # quiet, so the queue is empty by then).
    flush = Signal()
    m.d.sync += flush.eq(ctl.abort)
    m.d.comb += [
        q.flush.eq(flush), q.avail.eq(ctl.avail), ctl.empty.eq(q.empty),
        ctl.head_index.eq(q.head.index), ctl.pop.eq(q.head.word.header.pop),
    ]
    return q


class IdleFlags:
    """Copies of "the engine's state machine is in its idle state", one per :data:`SLICE_BITS`
    of ``insn`` (registers named as replicas, so that synthesis keeps them), and the load of
    ``insn`` from the queue head under them.

    ``insn`` is loaded from the head in every cycle of the idle state, taken or not (it is used
    only after a take, and then holds the head of the take's cycle). Its enable — the width of an
    instruction — is these flags, set by the transitions into the idle state and cleared by the
    take out of it (:func:`take_head`, :func:`dma_states`, :meth:`enter`), not a decode of the
    state register, nor the take decision, which depends on the controller's ``abort`` and
    tokens (a 12 x 12 route: the STORE engine's decode of IDLE, 22 endpoints at 9.2 ns)."""
    def __init__(self, m, q, insn):
        self._m = m
        bits, head = insn.as_value(), q.head.as_value()
        self.flags = []
        for i, lo in enumerate(range(0, len(bits), SLICE_BITS)):
            flag = Signal(init=1, name=f"idle{REPLICA}{i}")
            hi = min(lo + SLICE_BITS, len(bits))
            with m.If(flag):
                m.d.sync += bits[lo:hi].eq(head[lo:hi])
            self.flags.append(flag)

    def enter(self):
        """Call where the state machine goes to its idle state."""
        self._m.d.sync += [flag.eq(1) for flag in self.flags]

    def leave(self):
        """Call where the state machine leaves its idle state."""
        self._m.d.sync += [flag.eq(0) for flag in self.flags]


def take_head(m, q, ctl, idle):
    """In an idle state: report the head as stalled (blocked when its tokens are missing); when
    its tokens are there, take them (``insn`` is loaded under ``idle``, an :class:`IdleFlags`,
    which this clears). Returns the condition under which the head is taken (for the caller's
    state transition)."""
    ready = q.valid & ~ctl.abort & q.tokens_ready
    with m.If(q.valid & ~ctl.abort):
        m.d.comb += [ctl.blocked.eq(~q.tokens_ready), ctl.stall.eq(1)]
    with m.If(ready):
        m.d.comb += [q.take.eq(1), ctl.pop_en.eq(1)]
        idle.leave()
    return ready


def dma_states(m, ctl, descriptor, dma_done, dma_error, idle, issue="ISSUE", wait="WAIT",
               then="IDLE"):
    """The two FSM states of an instruction that is one DMA descriptor (call inside ``m.FSM``):
    ``issue`` offers ``descriptor`` (stalled until the arbiter grants the DMA), ``wait`` waits for
    ``dma_done``, then pushes the instruction's tokens, or reports BUS_ERROR, and goes to ``then``
    (the idle state: ``idle``, an :class:`IdleFlags`, is set)."""
    with m.State(issue):
        m.d.comb += [descriptor.valid.eq(1), ctl.stall.eq(1)]
        with m.If(descriptor.ready):
            m.next = wait
    with m.State(wait):
        m.d.comb += ctl.busy.eq(1)
        with m.If(dma_done):
            with m.If(dma_error == DmaError.NONE):
                m.d.comb += ctl.push_en.eq(1)
            with m.Else():
                m.d.comb += [ctl.error.eq(ProgramError.BUS_ERROR), ctl.error_en.eq(1)]
            idle.enter()
            m.next = then
