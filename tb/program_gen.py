"""Random programs for the differential test (instruction-level simulator vs RTL).

:func:`random_program` builds a memory image holding random data and a random but well-ordered
program: every field of every instruction is drawn at random within its legal range (any
alignment, strides of 0, smaller and larger than the row, requantization with arbitrary int32
parameters, overwrite and accumulate, R != C), and every instruction waits, through a dependency
token, for the one before it when that one ran on another engine (FENCEs are sprinkled in too). So
the final memory image does not depend on timing, and the simulator and the RTL must agree on it
byte for byte. :func:`faulty_program` plants one error of a chosen kind. :func:`gemm_image` is a
compiled GEMM with random int8 operands written into its image. :class:`Image` builds an image by
hand (data blocks at chosen alignments, then a program) for directed tests.
"""

from dataclasses import dataclass

import numpy as np

from tessera.rtl.isa import ENGINE_OF, TOKEN_LIMIT, Engine, Opcode, ProgramError, assemble, \
    encode
from tessera.sim.isa_sim import Machine

__all__ = ["GeneratedProgram", "Image", "random_program", "faulty_program", "gemm_image",
           "FAULTS", "MEMORY_SIZE"]

#: Size of the memory image (bytes); addresses at or above it answer DECERR.
MEMORY_SIZE = 1 << 16
#: Region of the image holding the program.
PROGRAM_BYTES = 1 << 13


@dataclass
class GeneratedProgram:
    image: bytes
    length: int
    program_addr: int = 0
    expected_error: ProgramError = ProgramError.NONE
    expected_index: int = 0


class Image:
    """A memory image under construction: data blocks at chosen alignments, then the program."""

    def __init__(self, pad=3):
        self.data = bytearray(b"\x77" * pad)   # the first block lands at an odd address

    def put(self, payload, align=1):
        while len(self.data) % align:
            self.data.append(0x77)
        address = len(self.data)
        self.data += bytes(payload)
        return address

    def reserve(self, size, fill=0xEE):
        return self.put(bytes([fill]) * size)

    def machine(self, cfg, words, align=16):
        """A Machine holding this image with ``words`` appended; ``(machine, program_addr)``."""
        address = self.put(assemble(words), align)
        return Machine(cfg, self.data), address

    def run(self, cfg, words, **kwargs):
        m, address = self.machine(cfg, words)
        return m, m.run(address, len(words), **kwargs)


class _Builder:
    def __init__(self, config, rng):
        self.config, self.rng = config, rng
        self.words = []            # (opcode, fields)
        self.engines = []

    def add(self, opcode, **fields):
        self.words.append((Opcode(opcode), fields))

    def rand(self, lo, hi):
        """Integer in [lo, hi]."""
        return int(self.rng.integers(lo, hi + 1))

    def region(self, rows, row_bytes, stride, lo, hi):
        """A memory address such that ``rows`` rows fit in [lo, hi)."""
        span = (rows - 1) * stride + row_bytes
        return self.rand(lo, max(lo, hi - span))

    def stride(self, row_bytes):
        kind = self.rng.integers(4)
        return [0, row_bytes, row_bytes + self.rand(1, 40), self.rand(1, 300)][kind]

    # --- instructions with random fields --------------------------------------------------------
    def load(self, buffer=None, rows=None, sram_row=None):
        cfg = self.config
        buffer = self.rand(0, 1) if buffer is None else buffer
        depth = cfg.accumulator_depth if buffer else cfg.scratchpad_depth
        row_max = cfg.lanes * (4 if buffer else 1)
        rows = self.rand(1, min(depth, 12)) if rows is None else rows
        row_bytes = self.rand(1, row_max)
        stride = self.stride(row_bytes)
        sram_row = self.rand(0, depth - rows) if sram_row is None else sram_row
        self.add(Opcode.LOAD, buffer=buffer, rows=rows, row_bytes=row_bytes, sram_row=sram_row,
                 dram_stride=stride,
                 dram_addr=self.region(rows, row_bytes, stride, PROGRAM_BYTES, MEMORY_SIZE))

    def matmul(self):
        cfg = self.config
        rows = self.rand(1, min(cfg.scratchpad_depth, cfg.accumulator_depth, 16))
        self.add(Opcode.MATMUL, accumulate=self.rand(0, 1),
                 wgt_row=self.rand(0, cfg.scratchpad_depth - cfg.rows),
                 act_row=self.rand(0, cfg.scratchpad_depth - rows),
                 acc_row=self.rand(0, cfg.accumulator_depth - rows), rows=rows)

    def config_insn(self):
        lo = self.rand(-128, 127)
        self.add(Opcode.CONFIG, params_row=self.rand(0, self.config.accumulator_depth - 2),
                 zero_point=self.rand(-128, 127), act_min=lo, act_max=self.rand(lo, 127))

    def store(self):
        cfg = self.config
        requant = self.rand(0, 1)
        rows = self.rand(1, min(cfg.accumulator_depth, 12))
        row_bytes = self.rand(1, cfg.lanes * (1 if requant else 4))
        stride = self.stride(row_bytes)
        self.add(Opcode.STORE, requant=requant, rows=rows, row_bytes=row_bytes,
                 acc_row=self.rand(0, cfg.accumulator_depth - rows), dram_stride=stride,
                 dram_addr=self.region(rows, row_bytes, stride, MEMORY_SIZE // 2,
                                       MEMORY_SIZE - 4096))

    # --- tokens and encoding ----------------------------------------------------------------------
    def encode(self, chain=True):
        """Instruction words; with ``chain`` each instruction waits for the previous one."""
        words = []
        previous = None                  # (index into words, engine)
        pending = []
        for opcode, fields in self.words:
            fields = dict(fields)
            engine = ENGINE_OF.get(opcode)
            pop = set(fields.pop("pop", ()))
            push = set(fields.pop("push", ()))
            if chain and engine is not None and previous is not None and previous[1] != engine:
                pending[previous[0]][2].add(engine)      # previous pushes to us
                pop.add(previous[1])
            pending.append([opcode, fields, push, pop])
            if engine is not None:
                previous = (len(pending) - 1, engine)
            elif opcode is Opcode.FENCE:
                previous = None
        for opcode, fields, push, pop in pending:
            words.append(encode(opcode, pop=sorted(pop), push=sorted(push), **fields))
        return words


def _image(rng, words):
    image = bytearray(rng.integers(0, 256, MEMORY_SIZE, dtype=np.uint8).tobytes())
    code = assemble(words)
    assert len(code) <= PROGRAM_BYTES, len(code)
    image[:len(code)] = code
    return bytes(image)


def random_program(config, rng, *, instructions=40):
    """A random, fully ordered program of about ``instructions`` instructions ending in HALT."""
    b = _Builder(config, rng)
    # Fill both buffers completely and set the requantization parameters first, so the result
    # does not depend on what earlier programs left in the accelerator (buffers and CONFIG
    # persist across programs, and a program stopped by an error leaves them timing-dependent).
    for buffer, depth, row in ((0, config.scratchpad_depth, config.lanes),
                               (1, config.accumulator_depth, 4 * config.lanes)):
        b.add(Opcode.LOAD, buffer=buffer, rows=depth, row_bytes=row, sram_row=0,
              dram_stride=int(rng.integers(1, 8)), dram_addr=PROGRAM_BYTES)
    b.config_insn()
    kinds = [b.load, b.matmul, b.matmul, b.store, b.config_insn]
    for _ in range(instructions):
        if rng.random() < 0.05:
            b.add(Opcode.FENCE)
        kinds[int(rng.integers(len(kinds)))]()
    b.add(Opcode.HALT)
    words = b.encode()
    return GeneratedProgram(_image(rng, words), len(words))


#: Faults :func:`faulty_program` can plant, with the error each must give.
FAULTS = {
    "illegal_opcode": ProgramError.ILLEGAL_OPCODE,
    "own_token": ProgramError.ILLEGAL_TOKEN,
    "zero_rows": ProgramError.ZERO_LENGTH,
    "row_too_long": ProgramError.ROW_TOO_LONG,
    "spad_range": ProgramError.SPAD_RANGE,
    "acc_range": ProgramError.ACC_RANGE,
    "bad_clamp": ProgramError.BAD_CLAMP,
    "deadlock": ProgramError.DEADLOCK,
    "token_overflow": ProgramError.TOKEN_OVERFLOW,
    "load_bus_error": ProgramError.BUS_ERROR,
    "store_bus_error": ProgramError.BUS_ERROR,
    "fetch_bus_error": ProgramError.BUS_ERROR,
    "no_halt": ProgramError.NO_HALT,
}


def faulty_program(config, rng, fault):
    """A short valid prefix, then an instruction with ``fault`` (a key of :data:`FAULTS`).

    The expected error index is the planted instruction's (for ``fetch_bus_error`` and
    ``no_halt``: the first index past the prefix).
    """
    if fault not in FAULTS:
        raise ValueError(f"fault must be one of {sorted(FAULTS)}, not {fault!r}")
    cfg = config
    b = _Builder(config, rng)
    for _ in range(int(rng.integers(0, 4))):
        [b.load, b.matmul, b.store][int(rng.integers(3))]()
    plant = {
        "own_token": lambda: b.add(Opcode.MATMUL, rows=1, pop=[Engine.EXEC]),
        "zero_rows": lambda: b.add(Opcode.STORE, rows=0, row_bytes=4),
        "row_too_long": lambda: b.add(Opcode.STORE, requant=1, rows=1, row_bytes=cfg.lanes + 1),
        "spad_range": lambda: b.add(Opcode.MATMUL, rows=1,
                                    wgt_row=cfg.scratchpad_depth - cfg.rows + 1),
        "acc_range": lambda: b.add(Opcode.LOAD, buffer=1, rows=2, row_bytes=4,
                                   sram_row=cfg.accumulator_depth - 1, dram_addr=PROGRAM_BYTES),
        "bad_clamp": lambda: b.add(Opcode.CONFIG, act_min=5, act_max=4),
        "load_bus_error": lambda: b.add(Opcode.LOAD, rows=2, row_bytes=4,
                                        dram_addr=MEMORY_SIZE - 4, dram_stride=64),
        "store_bus_error": lambda: b.add(Opcode.STORE, rows=1, row_bytes=4,
                                         dram_addr=MEMORY_SIZE + 64),
    }
    program_addr = 0
    if fault in plant:
        plant[fault]()
    elif fault == "deadlock":
        # After a FENCE nothing is pending: a pop of a token nobody gives waits forever.
        b.add(Opcode.FENCE)
        b.add(Opcode.STORE, rows=1, row_bytes=4, dram_addr=MEMORY_SIZE // 2, pop=[Engine.LOAD])
    elif fault == "token_overflow":
        b.add(Opcode.FENCE)
        for _ in range(TOKEN_LIMIT + 1):
            b.add(Opcode.LOAD, rows=1, row_bytes=1, dram_addr=PROGRAM_BYTES, push=[Engine.EXEC])
    words = b.encode()
    index = len(words) - 1                      # the planted instruction
    length = None
    if fault == "illegal_opcode":
        words.append(int(rng.choice([0, 7, 8, 15])) | (int(rng.integers(0, 1 << 60)) << 10))
        index = len(words) - 1
    elif fault == "fetch_bus_error":
        # The program ends at the end of memory; the instructions after it cannot be fetched.
        index = len(words)
        program_addr = MEMORY_SIZE - 16 * len(words)
        length = len(words) + 3
    elif fault == "no_halt":
        index = len(words)
        length = len(words)
    if length is None:
        words.append(encode(Opcode.HALT))
        length = len(words)
    image = bytearray(_image(rng, []))
    code = assemble(words)
    image[program_addr:program_addr + len(code)] = code
    return GeneratedProgram(bytes(image), length, program_addr, FAULTS[fault], index)


def gemm_image(config, rng, m, k, n):
    """``compile_gemm(config, m, k, n)`` with random int8 ``a`` (m x k) and ``b`` (k x n) drawn
    from ``rng`` (a numpy Generator) and written into a copy of its image: returns ``(program,
    a, b, image)``, ``image`` a bytearray."""
    from tessera.sim.compiler import compile_gemm
    program = compile_gemm(config, m, k, n)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    image = bytearray(program.image)
    program.write_input(image, "a", a)
    program.write_input(image, "b", b)
    return program, a, b, image
