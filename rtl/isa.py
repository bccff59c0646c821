"""Tessera's instruction set: the one definition of the instruction format.

Programs are sequences of 128-bit instructions in memory (16 bytes each, little-endian: bit 0 of
the instruction is bit 0 of its first byte). The layouts below are Amaranth data layouts; the RTL
decoder views fetched bits through them, and the Python assembler (:func:`encode`) and
disassembler (:func:`decode`) use the very same layouts, so the format exists once.

Every instruction starts with a :class:`Header`: a 4-bit :class:`Opcode` and two 3-bit masks of
:class:`Engine` bits, ``pop`` and ``push``, the dependency tokens (in the style of VTA)::

    bits   0..3   opcode
           4..6   pop    bit e set: before executing, wait for (and take) a token from engine e
           7..9   push   bit e set: after executing, give a token to engine e

The fetch unit sends each instruction to the queue of its engine (:data:`ENGINE_OF`); the three
engines run concurrently and only tokens order them. An engine never pops or pushes its own bit.

===========  =======  ================================================================================
instruction  engine   effect
===========  =======  ================================================================================
LOAD         LOAD     2-D DMA: ``rows`` rows of ``row_bytes`` bytes from ``dram_addr + i*dram_stride``
                      into rows ``sram_row + i`` of ``buffer`` (0 scratchpad, 1 accumulator), the rest
                      of each buffer row zero-filled (exactly a LOAD DmaDescriptor).
MATMUL       EXEC     ``W = spad[wgt_row .. wgt_row+R)[0:C]`` (R x C int8), ``A = spad[act_row ..
                      act_row+rows)[0:R]``; ``acc[acc_row + j] := (accumulate ? acc[acc_row + j] : 0)
                      + A[j] @ W`` for ``j < rows``, int32 wrap. Lanes >= C of the accumulator row
                      get 0 (plus the old value when accumulating).
STORE        STORE    ``rows`` accumulator rows from ``acc_row`` to ``dram_addr + i*dram_stride``,
                      ``row_bytes`` bytes each: raw int32 lanes (``requant`` = 0) or int8 lanes
                      requantized with the last CONFIG (``requant`` = 1).
CONFIG       STORE    Requantization parameters for later STOREs: accumulator row ``params_row``
                      holds the per-lane int32 multipliers, row ``params_row + 1`` the per-lane
                      shifts (TFLite convention, clamped to [-31, 30]); plus the output zero point
                      and the clamp [act_min, act_max] (ReLU, ReLU6 are clamps).
FENCE        fetch    Dispatch nothing more until every queue is empty and every engine is idle.
HALT         fetch    End of program: when all engines are idle, STATUS.done is set.
===========  =======  ================================================================================

Requantization of one lane (the golden model's ``requantize``, bit for bit)::

    left  = max(shift, 0); right = max(-shift, 0)
    y     = RDBPOT(SRDHM(wrap32(x << left), multiplier), right)
    out   = clamp(y + zero_point, act_min, act_max)          (int8)

The program stops with an error (:class:`ProgramError`) in ERROR_CODE and the failing instruction's
index in ERROR_INFO for: an unknown opcode, a token bit on the instruction's own engine (or any on
FENCE/HALT), a zero length, a row longer than the buffer row, a buffer range past the buffer's end,
``act_min > act_max``, a token wait that can never be satisfied (deadlock), a token counter
overflow, no progress for WATCHDOG cycles, a bus error, a program without HALT, and a soft reset
(ABORTED).
"""

import enum

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

__all__ = ["INSTRUCTION_BITS", "INSTRUCTION_BYTES", "Opcode", "Engine", "ENGINE_OF",
           "ProgramError", "Header", "LoadInstruction", "MatmulInstruction", "StoreInstruction",
           "ConfigInstruction", "ControlInstruction", "Instruction", "LAYOUTS", "TOKEN_LIMIT", "QUEUE_DEPTH",
           "encode", "decode", "assemble", "disassemble", "IsaError", "formats_markdown",
           "FIELDS", "HEADER_FIELDS"]

INSTRUCTION_BITS = 128
INSTRUCTION_BYTES = INSTRUCTION_BITS // 8

#: Instructions each engine's queue holds; the fetch unit dispatches in program order and waits
#: while the next instruction's queue is full (the instruction-level simulator models this too).
QUEUE_DEPTH = 8

#: A token counter saturates here; one more push is ``ProgramError.TOKEN_OVERFLOW``.
TOKEN_LIMIT = 255


class Opcode(enum.IntEnum):
    """Instruction opcodes; 0 and 7..15 are illegal (an all-zero word is never a valid program)."""
    LOAD = 1
    MATMUL = 2
    STORE = 3
    CONFIG = 4
    FENCE = 5
    HALT = 6


class Engine(enum.IntEnum):
    """The three engines; bit ``e`` of ``pop``/``push`` names engine ``e``."""
    LOAD = 0
    EXEC = 1
    STORE = 2


#: Engine queue of each opcode (FENCE and HALT stay in the fetch unit).
ENGINE_OF = {
    Opcode.LOAD: Engine.LOAD,
    Opcode.MATMUL: Engine.EXEC,
    Opcode.STORE: Engine.STORE,
    Opcode.CONFIG: Engine.STORE,
}


class ProgramError(enum.IntEnum):
    """ERROR_CODE values. Values are part of the register map."""
    NONE = 0
    ILLEGAL_OPCODE = 1      # opcode 0 or 7..15
    ILLEGAL_TOKEN = 2       # pop/push bit of the instruction's own engine, or any on FENCE/HALT
    ZERO_LENGTH = 3         # rows == 0, or row_bytes == 0
    ROW_TOO_LONG = 4        # row_bytes larger than the buffer row (STORE requant: > lanes bytes)
    SPAD_RANGE = 5          # scratchpad rows beyond its depth
    ACC_RANGE = 6           # accumulator rows beyond its depth
    BAD_CLAMP = 7           # CONFIG with act_min > act_max
    DEADLOCK = 8            # every engine waits for a token no engine can still push
    TOKEN_OVERFLOW = 9      # more than TOKEN_LIMIT tokens pending between two engines
    WATCHDOG = 10           # no progress for WATCHDOG cycles (e.g. memory stopped answering)
    BUS_ERROR = 11          # the memory answered SLVERR/DECERR (details in DMA_ERROR)
    NO_HALT = 12            # the program length was reached without a HALT
    ABORTED = 13            # stopped by CTRL.soft_reset (index: next instruction to dispatch)


class Header(data.StructLayout):
    """The first 10 bits of every instruction."""
    def __init__(self):
        super().__init__({
            "opcode": unsigned(4),
            "pop":    unsigned(3),
            "push":   unsigned(3),
        })


def _instruction(fields):
    """Header, ``fields``, then reserved bits (must be 0) up to 128 bits."""
    used = Shape.cast(Header()).width + sum(Shape.cast(s).width for s in fields.values())
    return {"header": Header(), **fields, "reserved": unsigned(INSTRUCTION_BITS - used)}


class LoadInstruction(data.StructLayout):
    """LOAD: one 2-D DMA transfer from memory into the scratchpad or the accumulator."""
    def __init__(self):
        super().__init__(_instruction({
            "buffer":      unsigned(1),    # 0 scratchpad, 1 accumulator (dma_descriptor.Buffer)
            "row_bytes":   unsigned(12),   # bytes per row, 1 .. bytes of a buffer row
            "sram_row":    unsigned(16),   # first buffer row
            "rows":        unsigned(16),   # rows, >= 1
            "dram_addr":   unsigned(32),   # byte address of the first row (any alignment)
            "dram_stride": unsigned(32),   # bytes between row starts (any value, 0 repeats a row)
        }))


class MatmulInstruction(data.StructLayout):
    """MATMUL: preload the weight tile at ``wgt_row``, stream ``rows`` activation rows."""
    def __init__(self):
        super().__init__(_instruction({
            "accumulate": unsigned(1),     # 1: add to the accumulator rows, 0: overwrite them
            "wgt_row":    unsigned(16),    # first of R scratchpad rows holding W[k, 0:C]
            "act_row":    unsigned(16),    # first of `rows` scratchpad rows holding A[j, 0:R]
            "acc_row":    unsigned(16),    # first of `rows` accumulator rows written
            "rows":       unsigned(16),    # activation rows, >= 1
        }))


class StoreInstruction(data.StructLayout):
    """STORE: accumulator rows to memory, raw int32 or requantized to int8."""
    def __init__(self):
        super().__init__(_instruction({
            "requant":     unsigned(1),    # 1: int8 via the last CONFIG, 0: raw int32 lanes
            "row_bytes":   unsigned(12),   # bytes per row: <= lanes (requant) or 4*lanes (raw)
            "acc_row":     unsigned(16),   # first accumulator row
            "rows":        unsigned(16),   # rows, >= 1
            "dram_addr":   unsigned(32),
            "dram_stride": unsigned(32),
        }))


class ConfigInstruction(data.StructLayout):
    """CONFIG: requantization parameters for the following STOREs."""
    def __init__(self):
        super().__init__(_instruction({
            "params_row": unsigned(16),    # accumulator row of multipliers; shifts in the next row
            "zero_point": signed(8),       # output zero point
            "act_min":    signed(8),       # clamp, act_min <= act_max
            "act_max":    signed(8),
        }))


class ControlInstruction(data.StructLayout):
    """FENCE and HALT: the header only."""
    def __init__(self):
        super().__init__(_instruction({}))


class Instruction(data.UnionLayout):
    """One 128-bit instruction word, viewed as any of the formats."""
    def __init__(self):
        super().__init__({
            "header": Header(),
            "load":   LoadInstruction(),
            "matmul": MatmulInstruction(),
            "store":  StoreInstruction(),
            "config": ConfigInstruction(),
            "control": ControlInstruction(),
            "bits":   unsigned(INSTRUCTION_BITS),
        })


#: Layout of each opcode's format, and the member of :class:`Instruction` that views it.
LAYOUTS = {
    Opcode.LOAD:   ("load", LoadInstruction()),
    Opcode.MATMUL: ("matmul", MatmulInstruction()),
    Opcode.STORE:  ("store", StoreInstruction()),
    Opcode.CONFIG: ("config", ConfigInstruction()),
    Opcode.FENCE:  ("control", ControlInstruction()),
    Opcode.HALT:   ("control", ControlInstruction()),
}


class IsaError(ValueError):
    """An instruction that cannot be encoded (a field out of range, an unknown field)."""


def _mask(engines, what):
    mask = 0
    for engine in engines:
        try:
            mask |= 1 << Engine(engine)
        except ValueError:
            raise IsaError(f"{what} must name engines {[e.name for e in Engine]}, "
                           f"not {engine!r}") from None
    return mask


def _field_table(layout):
    """``[(name, offset, width, signed)]`` of a layout's members other than header/reserved."""
    return [(name, f.offset, Shape.cast(f.shape).width, Shape.cast(f.shape).signed)
            for name, f in layout if name not in ("header", "reserved")]


#: Bit position and width of every field, by opcode, read off the layouts (so that encoding and
#: decoding in Python need no Amaranth constant per instruction, which is ~1000x slower).
FIELDS = {opcode: _field_table(layout) for opcode, (_, layout) in LAYOUTS.items()}
HEADER_FIELDS = {name: (offset, width) for name, offset, width, _ in _field_table(Header())}


def encode(opcode, *, pop=(), push=(), **fields):
    """One instruction as an int (128 bits). ``pop``/``push`` are iterables of :class:`Engine`.

    Every field of the opcode's layout may be given (missing fields are 0); values out of a
    field's range raise :class:`IsaError` naming the field and the value.
    """
    try:
        opcode = Opcode(opcode)
    except ValueError:
        raise IsaError(f"opcode must be one of {[o.name for o in Opcode]}, not {opcode!r}") \
            from None
    word = (int(opcode) << HEADER_FIELDS["opcode"][0] | _mask(pop, "pop") << HEADER_FIELDS["pop"][0]
            | _mask(push, "push") << HEADER_FIELDS["push"][0])
    table = {name: (offset, width, is_signed) for name, offset, width, is_signed in FIELDS[opcode]}
    for name, value in fields.items():
        if name not in table:
            raise IsaError(f"{opcode.name} has no field {name!r}; its fields are {list(table)}")
        offset, width, is_signed = table[name]
        value = int(value)
        lo = -(1 << (width - 1)) if is_signed else 0
        hi = (1 << (width - 1)) - 1 if is_signed else (1 << width) - 1
        if not lo <= value <= hi:
            raise IsaError(f"{opcode.name}.{name} must be in [{lo}, {hi}], not {value}")
        word |= (value & ((1 << width) - 1)) << offset
    return word


def decode(word):
    """``(opcode, fields)`` of one instruction int; ``fields`` holds ints and the pop/push sets.

    Raises :class:`IsaError` for an illegal opcode.
    """
    def bits(offset, width):
        return (word >> offset) & ((1 << width) - 1)

    word = int(word)
    try:
        opcode = Opcode(bits(*HEADER_FIELDS["opcode"]))
    except ValueError:
        raise IsaError(f"illegal opcode {bits(*HEADER_FIELDS['opcode'])}") from None
    fields = {}
    for name, offset, width, is_signed in FIELDS[opcode]:
        value = bits(offset, width)
        fields[name] = value - (1 << width) if is_signed and value >> (width - 1) else value
    pop, push = bits(*HEADER_FIELDS["pop"]), bits(*HEADER_FIELDS["push"])
    fields["pop"] = {e for e in Engine if pop >> e & 1}
    fields["push"] = {e for e in Engine if push >> e & 1}
    return opcode, fields


def assemble(words):
    """Program bytes (little-endian 16-byte words) from instruction ints."""
    return b"".join(int(w).to_bytes(INSTRUCTION_BYTES, "little") for w in words)


def disassemble(program):
    """Instruction ints from program bytes (length a multiple of 16)."""
    if len(program) % INSTRUCTION_BYTES:
        raise IsaError(f"program length must be a multiple of {INSTRUCTION_BYTES} bytes, "
                       f"not {len(program)}")
    return [int.from_bytes(program[i:i + INSTRUCTION_BYTES], "little")
            for i in range(0, len(program), INSTRUCTION_BYTES)]


def formats_markdown():
    """Markdown tables of every instruction format, generated from the layouts (docs/isa.md)."""
    lines = []
    for opcode, (member, layout) in LAYOUTS.items():
        if opcode is Opcode.HALT:
            continue
        title = "FENCE, HALT" if opcode is Opcode.FENCE else opcode.name
        codes = (f"{int(Opcode.FENCE)}, {int(Opcode.HALT)}" if opcode is Opcode.FENCE
                 else str(int(opcode)))
        lines += [f"### {title} (opcode {codes})", "", "| bits | field | type |", "|---|---|---|"]
        for name, field in layout:
            if name == "header":
                for hname, hfield in Header():
                    width = Shape.cast(hfield.shape).width
                    lo = field.offset + hfield.offset
                    lines.append(f"| {lo + width - 1}:{lo} | `{hname}` | unsigned({width}) |")
                continue
            shape = Shape.cast(field.shape)
            lo, hi = field.offset, field.offset + shape.width - 1
            kind = f"{'signed' if shape.signed else 'unsigned'}({shape.width})"
            lines.append(f"| {hi}:{lo} | `{name}` | {kind} |")
        lines.append("")
    return "\n".join(lines)
