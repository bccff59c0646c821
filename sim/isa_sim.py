"""Instruction-level simulator of Tessera: runs a program held in a memory image.

:class:`Machine` holds what a built accelerator holds between programs -- the memory image, the
scratchpad, the accumulator and the latched requantization parameters -- and :meth:`Machine.run`
executes one program the way the hardware's fetch unit and engines do, instruction by instruction
(no cycles). It leaves the memory image and the buffers exactly as the RTL does, and reports the
same ERROR_CODE / ERROR_INFO. The instruction format and its semantics are those of
:mod:`tessera.rtl.isa` (its docstring); all arithmetic comes from :mod:`tessera.sim.golden`.

Execution model of one :meth:`Machine.run`
==========================================

*Fetch and dispatch.* Instruction ``i`` is the 16 bytes (little-endian) at
``(program_addr + 16*i) mod 2**32``. Dispatch walks the program in order. When it reaches
instruction ``i`` it reads it (a byte outside the memory image: ``BUS_ERROR``), decodes it and
checks it statically; the first failing check, in this order, is the error:

1. ``ILLEGAL_OPCODE``: opcode 0 or 7..15 (reserved bits are ignored everywhere);
2. ``ILLEGAL_TOKEN``: a ``pop``/``push`` bit naming the instruction's own engine, or any bit on
   FENCE/HALT;
3. ``ZERO_LENGTH``: LOAD/STORE with ``rows == 0`` or ``row_bytes == 0``; MATMUL with ``rows == 0``;
4. ``ROW_TOO_LONG``: LOAD ``row_bytes`` above ``lanes`` (scratchpad) or ``4*lanes`` (accumulator);
   STORE ``row_bytes`` above ``lanes`` (``requant`` = 1) or ``4*lanes`` (``requant`` = 0);
5. ``SPAD_RANGE`` / ``ACC_RANGE``: LOAD ``sram_row + rows`` beyond the target buffer;
   MATMUL ``wgt_row + R`` or ``act_row + rows`` beyond the scratchpad (SPAD_RANGE, checked first),
   ``acc_row + rows`` beyond the accumulator; STORE ``acc_row + rows``, CONFIG ``params_row + 2``
   beyond the accumulator;
6. ``BAD_CLAMP``: CONFIG with ``act_min > act_max``.

A checked LOAD/MATMUL/STORE/CONFIG then waits, if needed, until the queue of its engine
(:data:`~tessera.rtl.isa.ENGINE_OF`) holds fewer than :data:`~tessera.rtl.isa.QUEUE_DEPTH`
instructions, and enters it. A FENCE waits until all three queues are empty (an instruction leaves
its queue when it has executed), then dispatch goes on. A HALT stops dispatch; the program ends
successfully once all queues are empty. Reaching ``i == length`` without a HALT is ``NO_HALT``
with error index ``length``. So the check of instruction ``i`` happens as soon as dispatch reaches
it, before it waits for queue space.

*Engines and tokens.* Each engine executes the head of its queue once, for every engine ``F`` in
its ``pop`` set, the counter ``tokens[F -> engine]`` is positive; it takes one token from each,
executes the instruction completely, then adds one to ``tokens[engine -> G]`` for each ``G`` in
``push``. A counter above :data:`~tessera.rtl.isa.TOKEN_LIMIT` is ``TOKEN_OVERFLOW``. A memory
byte outside the image touched by a LOAD or STORE is ``BUS_ERROR``. Token counters and queues are
empty at the start of every run.

*Scheduling.* The loop is: dispatch as far as possible; if the program has ended, stop; otherwise
execute one ready queue head and repeat. By default the ready head with the smallest program
index executes (oldest first); with ``rng`` a uniformly random ready head does, which models any
other interleaving of the engines -- a correctly synchronized program leaves the same memory for
every order. If nothing can be dispatched and no head is ready, the run stops with ``DEADLOCK``
and the smallest program index among the queue heads.

*Errors.* An error stops the run at once; the error index is that of the instruction named above.
What executed before stays done, but after an error only ``error`` and ``error_index`` are the
contract with the RTL: buffers and memory are then unspecified (this simulator writes nothing of
an instruction that fails with ``BUS_ERROR`` or before executing). ``WATCHDOG`` is a timing error
(no progress for a number of cycles) and never occurs here.

*What persists.* Memory, scratchpad, accumulator and the latched CONFIG parameters persist
between runs, like the hardware's state. Before any CONFIG the latch holds multiplier 0, shift 0,
zero point 0, clamp [-128, 127].

Instruction effects
===================

LOAD
    ``for r < rows``: the ``row_bytes`` bytes at ``(dram_addr + r*dram_stride) mod 2**32`` go to
    row ``sram_row + r``: scratchpad rows take them as int8 lanes then zeros up to ``lanes``;
    accumulator rows take them zero-padded to ``4*lanes`` bytes, viewed as ``lanes``
    little-endian int32.
MATMUL
    ``W = spad[wgt_row : wgt_row+R, 0:C]``, ``A = spad[act_row : act_row+rows, 0:R]``;
    ``acc[acc_row : acc_row+rows, 0:C]`` becomes ``golden.gemm(A, W)`` (``accumulate`` = 0) or
    ``golden.gemm(A, W, old)`` (``accumulate`` = 1, int32 wrap). Lanes ``C..lanes-1`` (present
    when R > C) become 0 (``accumulate`` = 0) or stay (``accumulate`` = 1).
CONFIG
    Latches ``multiplier[l] = acc[params_row, l]``, ``shift[l] = clamp(acc[params_row+1, l],
    -31, 30)`` and the instruction's ``zero_point``, ``act_min``, ``act_max``.
STORE
    For each row ``r``, ``x = acc[acc_row + r]``. ``requant`` = 0: the row's bytes are ``x`` as
    little-endian int32; ``requant`` = 1: :func:`requantize_lanes` of ``x`` with the latched
    parameters, as int8. The first ``row_bytes`` bytes go to ``(dram_addr + r*dram_stride) mod
    2**32``; rows are written in order (a later row overwrites an earlier one where they overlap).
"""

import dataclasses
import random

import numpy as np

from tessera.rtl import isa
from tessera.rtl.dma_descriptor import Buffer
from tessera.rtl.isa import ENGINE_OF, QUEUE_DEPTH, TOKEN_LIMIT, Engine, Opcode, ProgramError

from . import golden
from .config import AcceleratorConfig

__all__ = ["Machine", "RunResult", "ProgramFault", "RequantParams", "DecodedInstruction",
           "decode_instruction", "requantize_lanes"]

_ADDRESS_SPACE = 1 << 32


# --- decoding ------------------------------------------------------------------------------------

# Offsets and widths of rtl/isa.py's layouts (isa.FIELDS is read off them, so the format is still
# defined once).
_HEADER = isa.HEADER_FIELDS
_FIELDS = isa.FIELDS


def _bits(word, offset, width):
    return (word >> offset) & ((1 << width) - 1)


@dataclasses.dataclass(frozen=True)
class DecodedInstruction:
    """One decoded instruction word.

    ``opcode`` is the raw 4-bit value (an :class:`~tessera.rtl.isa.Opcode` when legal), ``pop`` and
    ``push`` the raw 3-bit masks (bit ``e`` = :class:`~tessera.rtl.isa.Engine` ``e``), ``fields``
    the opcode's fields as ints (signed fields sign-extended; empty for an illegal opcode).
    """
    opcode: int
    pop: int
    push: int
    fields: dict

    @property
    def legal(self):
        return self.opcode in _FIELDS

    def engines(self, mask_name):
        """The set of :class:`Engine` named by ``pop`` or ``push``."""
        mask = getattr(self, mask_name)
        return {e for e in Engine if mask >> e & 1}


def decode_instruction(word):
    """Decode one 128-bit instruction int with the offsets of :mod:`tessera.rtl.isa`'s layouts.

    Gives the same fields as :func:`tessera.rtl.isa.decode` but does not raise for an illegal
    opcode (the opcode is then kept raw and ``fields`` is empty). Raises ``ValueError`` for a word
    outside [0, 2**128).
    """
    if isinstance(word, bool) or not isinstance(word, (int, np.integer)):
        raise TypeError(f"word must be an int, not {word!r}")
    word = int(word)
    if not 0 <= word < 1 << isa.INSTRUCTION_BITS:
        raise ValueError(f"word must be in [0, 2**{isa.INSTRUCTION_BITS}), not {word!r}")
    opcode = _bits(word, *_HEADER["opcode"])
    pop = _bits(word, *_HEADER["pop"])
    push = _bits(word, *_HEADER["push"])
    fields = {}
    if opcode in _FIELDS:
        opcode = Opcode(opcode)
        for name, offset, width, signed in _FIELDS[opcode]:
            value = _bits(word, offset, width)
            if signed and value >> (width - 1):
                value -= 1 << width
            fields[name] = value
    return DecodedInstruction(opcode, pop, push, fields)


# --- requantization -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RequantParams:
    """Requantization parameters latched by CONFIG: per-lane int32 ``multiplier`` and ``shift``
    (already clamped to [-31, 30]), scalar ``zero_point``, ``act_min``, ``act_max``."""
    multiplier: np.ndarray
    shift: np.ndarray
    zero_point: int = 0
    act_min: int = golden.INT8_MIN
    act_max: int = golden.INT8_MAX

    @classmethod
    def reset(cls, lanes):
        """The values before any CONFIG: multiplier 0, shift 0, zero point 0, [-128, 127]."""
        return cls(np.zeros(lanes, np.int32), np.zeros(lanes, np.int32))


def requantize_lanes(x, params):
    """STORE's requantization of int32 accumulator rows ``x`` (shape (..., lanes)) to int8.

    Per lane: ``left = max(shift, 0)``, ``right = max(-shift, 0)``,
    ``y = RDBPOT(SRDHM(wrap32(x << left), multiplier), right)``,
    ``out = clamp(y + zero_point, act_min, act_max)``, composed from golden's
    ``wrap_int32``, ``saturating_rounding_doubling_high_mul`` and ``rounding_divide_by_pot``.
    Unlike ``golden.requantize`` the multiplier may be any int32 (negative ones included), as the
    hardware takes it from an accumulator row. Equals ``golden.requantize`` where that applies.
    """
    x = np.asarray(x, dtype=np.int64)
    shift = params.shift.astype(np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = golden.wrap_int32(x * (np.int64(1) << left))   # |x * 2**left| <= 2**61: exact
    high = golden.saturating_rounding_doubling_high_mul(shifted, params.multiplier)
    y = golden.rounding_divide_by_pot(high, right).astype(np.int64)
    return np.clip(y + params.zero_point, params.act_min, params.act_max).astype(np.int8)


# --- results -------------------------------------------------------------------------------------

class ProgramFault(Exception):
    """A program stopped with a :class:`~tessera.rtl.isa.ProgramError`; raised by
    :meth:`RunResult.check`. ``error`` and ``index`` are ERROR_CODE and ERROR_INFO."""
    def __init__(self, error, index, detail=""):
        self.error = ProgramError(error)
        self.index = index
        self.detail = detail
        text = f"program stopped with {self.error.name} at instruction {index}"
        super().__init__(f"{text}: {detail}" if detail else text)


@dataclasses.dataclass
class RunResult:
    """Outcome of :meth:`Machine.run`.

    ``error``/``error_index`` are what ERROR_CODE/ERROR_INFO read (``NONE``/0 on success).
    ``instructions`` counts completed instructions: every executed LOAD, MATMUL, STORE and CONFIG,
    every FENCE passed, and the HALT of a successful run; ``counts`` splits it per
    :class:`~tessera.rtl.isa.Opcode`. ``macs`` is the sum over executed MATMULs of ``rows * R * C``
    (array MAC slots used). ``detail`` says in words why the run stopped ("" on success).
    """
    error: ProgramError = ProgramError.NONE
    error_index: int = 0
    instructions: int = 0
    macs: int = 0
    counts: dict = dataclasses.field(default_factory=lambda: {op: 0 for op in Opcode})
    detail: str = ""

    @property
    def ok(self):
        return self.error == ProgramError.NONE

    def check(self):
        """Return ``self`` if the run succeeded, else raise :class:`ProgramFault`."""
        if not self.ok:
            raise ProgramFault(self.error, self.error_index, self.detail)
        return self


@dataclasses.dataclass
class _Queued:
    index: int
    engine: Engine
    instruction: DecodedInstruction


# --- the machine ---------------------------------------------------------------------------------

class Machine:
    """A Tessera accelerator with its memory: ``config`` and a copy of ``memory``.

    Attributes: ``memory`` (bytearray, the memory image at byte address 0), ``scratchpad``
    (int8, ``(scratchpad_depth, lanes)``), ``accumulator`` (int32, ``(accumulator_depth,
    lanes)``), ``requant`` (:class:`RequantParams` latched by the last CONFIG). All start zero /
    reset and persist between :meth:`run` calls.
    """

    def __init__(self, config, memory):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        if not isinstance(memory, (bytes, bytearray, memoryview)):
            raise TypeError(f"memory must be bytes, bytearray or memoryview, "
                            f"not {type(memory).__name__}")
        if len(memory) > _ADDRESS_SPACE:
            raise ValueError(f"memory must be at most 2**32 bytes, not {len(memory)!r}")
        self.config = config
        self.lanes = config.lanes
        self.memory = bytearray(memory)
        self.scratchpad = np.zeros((config.scratchpad_depth, self.lanes), np.int8)
        self.accumulator = np.zeros((config.accumulator_depth, self.lanes), np.int32)
        self.requant = RequantParams.reset(self.lanes)

    # --- static checks ---------------------------------------------------------------------------

    def static_error(self, instruction):
        """The static error of a decoded instruction (:data:`ProgramError.NONE` if it has none),
        with a description; the checks and their order are in the module docstring."""
        op, f = instruction.opcode, instruction.fields
        cfg, lanes = self.config, self.lanes
        if not instruction.legal:
            return ProgramError.ILLEGAL_OPCODE, f"opcode {op} is not an Opcode"
        if op in ENGINE_OF:
            own = 1 << ENGINE_OF[op]
            if (instruction.pop | instruction.push) & own:
                return (ProgramError.ILLEGAL_TOKEN,
                        f"{op.name} pops or pushes its own engine {ENGINE_OF[op].name}")
        elif instruction.pop or instruction.push:
            return ProgramError.ILLEGAL_TOKEN, f"{op.name} has token bits"
        if op in (Opcode.LOAD, Opcode.STORE) and (f["rows"] == 0 or f["row_bytes"] == 0):
            return ProgramError.ZERO_LENGTH, f"rows={f['rows']}, row_bytes={f['row_bytes']}"
        if op == Opcode.MATMUL and f["rows"] == 0:
            return ProgramError.ZERO_LENGTH, "rows=0"
        if op == Opcode.LOAD:
            to_acc = f["buffer"] == Buffer.ACCUMULATOR
            limit = 4 * lanes if to_acc else lanes
            if f["row_bytes"] > limit:
                return ProgramError.ROW_TOO_LONG, f"row_bytes={f['row_bytes']} > {limit}"
            depth = cfg.accumulator_depth if to_acc else cfg.scratchpad_depth
            if f["sram_row"] + f["rows"] > depth:
                return ((ProgramError.ACC_RANGE if to_acc else ProgramError.SPAD_RANGE),
                        f"sram_row + rows = {f['sram_row'] + f['rows']} > {depth}")
        elif op == Opcode.MATMUL:
            for name, count in (("wgt_row", cfg.rows), ("act_row", f["rows"])):
                if f[name] + count > cfg.scratchpad_depth:
                    return (ProgramError.SPAD_RANGE,
                            f"{name} + {count} = {f[name] + count} > {cfg.scratchpad_depth}")
            if f["acc_row"] + f["rows"] > cfg.accumulator_depth:
                return (ProgramError.ACC_RANGE, f"acc_row + rows = {f['acc_row'] + f['rows']} "
                                                f"> {cfg.accumulator_depth}")
        elif op == Opcode.STORE:
            limit = lanes if f["requant"] else 4 * lanes
            if f["row_bytes"] > limit:
                return ProgramError.ROW_TOO_LONG, f"row_bytes={f['row_bytes']} > {limit}"
            if f["acc_row"] + f["rows"] > cfg.accumulator_depth:
                return (ProgramError.ACC_RANGE, f"acc_row + rows = {f['acc_row'] + f['rows']} "
                                                f"> {cfg.accumulator_depth}")
        elif op == Opcode.CONFIG:
            if f["params_row"] + 2 > cfg.accumulator_depth:
                return (ProgramError.ACC_RANGE, f"params_row + 2 = {f['params_row'] + 2} "
                                                f"> {cfg.accumulator_depth}")
            if f["act_min"] > f["act_max"]:
                return (ProgramError.BAD_CLAMP,
                        f"act_min={f['act_min']} > act_max={f['act_max']}")
        return ProgramError.NONE, ""

    # --- memory ----------------------------------------------------------------------------------

    def _row_addresses(self, f, index):
        """Start address of each row of a LOAD/STORE; ``BUS_ERROR`` if a byte is outside."""
        r = np.arange(f["rows"], dtype=np.int64)
        addresses = (f["dram_addr"] + r * f["dram_stride"]) % _ADDRESS_SPACE  # < 2**49: exact
        outside = addresses + f["row_bytes"] > len(self.memory)
        if np.any(outside):
            row = int(np.argmax(outside))
            raise ProgramFault(ProgramError.BUS_ERROR, index,
                               f"row {row} at address {int(addresses[row]):#x} + "
                               f"{f['row_bytes']} bytes is outside the {len(self.memory)}-byte "
                               f"memory image")
        return addresses

    def _fetch(self, program_addr, i):
        address = (program_addr + isa.INSTRUCTION_BYTES * i) % _ADDRESS_SPACE
        if address + isa.INSTRUCTION_BYTES > len(self.memory):
            raise ProgramFault(ProgramError.BUS_ERROR, i,
                               f"instruction at address {address:#x} is outside the "
                               f"{len(self.memory)}-byte memory image")
        word = int.from_bytes(self.memory[address:address + isa.INSTRUCTION_BYTES], "little")
        return decode_instruction(word)

    # --- execution -------------------------------------------------------------------------------

    def _load(self, f, index):
        addresses = self._row_addresses(f, index)
        n = f["row_bytes"]
        memory = np.frombuffer(self.memory, np.uint8)
        data = memory[addresses[:, None] + np.arange(n)]          # (rows, row_bytes) uint8
        rows = slice(f["sram_row"], f["sram_row"] + f["rows"])
        if f["buffer"] == Buffer.ACCUMULATOR:
            padded = np.zeros((f["rows"], 4 * self.lanes), np.uint8)
            padded[:, :n] = data
            self.accumulator[rows] = padded.view("<i4")
        else:
            self.scratchpad[rows] = 0
            self.scratchpad[rows, :n] = data.view(np.int8)

    def _matmul(self, f):
        R, C = self.config.rows, self.config.cols
        w = self.scratchpad[f["wgt_row"]:f["wgt_row"] + R, :C]
        a = self.scratchpad[f["act_row"]:f["act_row"] + f["rows"], :R]
        rows = slice(f["acc_row"], f["acc_row"] + f["rows"])
        if f["accumulate"]:
            self.accumulator[rows, :C] = golden.gemm(a, w, self.accumulator[rows, :C].copy())
        else:
            self.accumulator[rows] = 0
            self.accumulator[rows, :C] = golden.gemm(a, w)
        return f["rows"] * R * C

    def _config(self, f):
        row = f["params_row"]
        self.requant = RequantParams(
            multiplier=self.accumulator[row].copy(),
            shift=np.clip(self.accumulator[row + 1], golden.SHIFT_MIN, golden.SHIFT_MAX)
                    .astype(np.int32),
            zero_point=f["zero_point"], act_min=f["act_min"], act_max=f["act_max"])

    def _store(self, f, index):
        addresses = self._row_addresses(f, index)
        x = self.accumulator[f["acc_row"]:f["acc_row"] + f["rows"]]
        if f["requant"]:
            out = requantize_lanes(x, self.requant).view(np.uint8)
        else:
            out = x.astype("<i4").view(np.uint8)
        n = f["row_bytes"]
        for address, row in zip(addresses.tolist(), out):
            self.memory[address:address + n] = row[:n].tobytes()

    def _execute(self, item, result):
        f = item.instruction.fields
        op = item.instruction.opcode
        if op == Opcode.LOAD:
            self._load(f, item.index)
        elif op == Opcode.MATMUL:
            result.macs += self._matmul(f)
        elif op == Opcode.STORE:
            self._store(f, item.index)
        else:
            self._config(f)

    # --- the program -----------------------------------------------------------------------------

    def run(self, program_addr, length, *, rng=None):
        """Run the ``length`` instructions at byte address ``program_addr``; a :class:`RunResult`.

        ``rng`` (a ``random.Random``) picks a random ready engine at each step instead of the
        oldest ready instruction. Program errors are reported in the result, never raised.
        """
        for name, value in (("program_addr", program_addr), ("length", length)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, not {value!r}")
            if not 0 <= value < _ADDRESS_SPACE:
                raise ValueError(f"{name} must be in [0, 2**32), not {value!r}")
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random or None, not {rng!r}")
        result = RunResult()
        try:
            self._run(int(program_addr), int(length), rng, result)
        except ProgramFault as fault:
            result.error, result.error_index, result.detail = fault.error, fault.index, fault.detail
        return result

    def _run(self, program_addr, length, rng, result):
        queues = {engine: [] for engine in Engine}
        tokens = {(src, dst): 0 for src in Engine for dst in Engine if src != dst}
        next_index = 0
        held = None          # the instruction dispatch has reached, checked, not yet dispatched
        halted = False

        def completed(opcode):
            result.instructions += 1
            result.counts[opcode] += 1

        while True:
            # Dispatch as far as possible.
            while not halted:
                if held is None:
                    if next_index == length:
                        raise ProgramFault(ProgramError.NO_HALT, length,
                                           f"no HALT in {length} instructions")
                    instruction = self._fetch(program_addr, next_index)
                    error, detail = self.static_error(instruction)
                    if error != ProgramError.NONE:
                        raise ProgramFault(error, next_index, detail)
                    held = (next_index, instruction)
                index, instruction = held
                op = instruction.opcode
                if op == Opcode.FENCE:
                    if any(queues.values()):
                        break
                    completed(op)
                elif op == Opcode.HALT:
                    halted = True
                else:
                    queue = queues[ENGINE_OF[op]]
                    if len(queue) >= QUEUE_DEPTH:
                        break
                    queue.append(_Queued(index, ENGINE_OF[op], instruction))
                held = None
                next_index += 1
            if halted and not any(queues.values()):
                completed(Opcode.HALT)
                return

            # Execute one ready queue head.
            heads = [queue[0] for queue in queues.values() if queue]
            ready = [item for item in heads
                     if all(tokens[(src, item.engine)] > 0
                            for src in Engine if item.instruction.pop >> src & 1)]
            if not ready:
                blocked = min(item.index for item in heads)
                raise ProgramFault(ProgramError.DEADLOCK, blocked,
                                   f"queue heads {sorted(item.index for item in heads)} wait for "
                                   f"tokens no dispatched or dispatchable instruction gives")
            if rng is None:
                item = min(ready, key=lambda item: item.index)
            else:
                item = ready[rng.randrange(len(ready))]
            for src in Engine:
                if item.instruction.pop >> src & 1:
                    tokens[(src, item.engine)] -= 1
            self._execute(item, result)
            queues[item.engine].pop(0)
            completed(item.instruction.opcode)
            for dst in Engine:
                if item.instruction.push >> dst & 1:
                    tokens[(item.engine, dst)] += 1
                    if tokens[(item.engine, dst)] > TOKEN_LIMIT:
                        raise ProgramFault(ProgramError.TOKEN_OVERFLOW, item.index,
                                           f"more than {TOKEN_LIMIT} tokens from "
                                           f"{item.engine.name} to {dst.name}")
