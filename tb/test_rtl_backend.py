"""Tests of the RTL execution harness (tb/accelerator_harness.py, tb/accelerator_tb.py) and the
``rtl`` backend (tb/rtl_backend.py), on each selected simulator.

* The DMA test hook moves random data memory -> buffer -> memory through the gateware memory,
  without and with stalls, plus DECERR and a memory hang (cocotb test ``dma_hook_round_trip``).
* :func:`execute` of a program that cannot finish (the memory hangs from START, the watchdog is
  off) raises :class:`RtlTimeout` with the untouched image, instead of hanging.
* :func:`execute` of a one-instruction HALT program and of a LOAD/STORE program: the error code,
  the final memory (against the instruction-level simulator) and the counters; a memory that
  stops answering mid-program ends it with WATCHDOG.
* :func:`execute` refuses bad arguments with messages that name the bad value.
"""

import numpy as np
import pytest

from tessera.rtl.isa import Engine, Opcode, ProgramError, assemble, encode
from tessera.sim.config import AcceleratorConfig
from tessera.tb import simulators
from tessera.tb.accelerator_harness import ID_WIDTH, AcceleratorHarness
from tessera.tb.rtl_backend import DESIGN_NAME, MIN_MEM_SIZE, RtlTimeout, execute, memory_size

#: A small accelerator: quick to build on both simulators.
CONFIG = AcceleratorConfig(rows=4, cols=4, scratchpad_depth=64, accumulator_depth=32, bus_width=64)

#: Cycle budget of the programs below (they need a few hundred cycles).
TIMEOUT = 20_000


@pytest.mark.parametrize("bus_width", [pytest.param(32, marks=pytest.mark.slow),
                                       pytest.param(64, marks=pytest.mark.slow_on_icarus),
                                       pytest.param(128, marks=pytest.mark.slow)])
def test_dma_hook_round_trip(sim, bus_width, seed):
    # With the 64-bit bus these are the parameters execute() builds for CONFIG and small images,
    # so the two share one build.
    params = dict(CONFIG.as_dict(), bus_width=bus_width, id_width=ID_WIDTH,
                  mem_size=MIN_MEM_SIZE)
    design = simulators.build(sim, DESIGN_NAME, AcceleratorHarness, params)
    simulators.run(design, "tessera.tb.accelerator_tb", testcase="dma_hook_round_trip", seed=seed)


def _image(rng, size, program_addr, program):
    """``size`` random bytes with ``program`` at ``program_addr``."""
    image = bytearray(rng.integers(0, 256, size, dtype="uint8").tobytes())
    image[program_addr:program_addr + len(program)] = program
    return bytes(image)


def test_execute_timeout(sim, seed):
    """A program that cannot finish ends in RtlTimeout, with the memory as it was."""
    image = _image(np.random.default_rng(seed), 4096, 0x100, assemble([encode(Opcode.HALT)]))
    with pytest.raises(RtlTimeout, match="did not finish within 3000 cycles") as info:
        execute(CONFIG, image, 0x100, 1, sim=sim, seed=seed, timeout_cycles=3000, watchdog=0,
                hang_after=0)
    assert info.value.memory == image


def test_execute_halt(sim, seed):
    """A HALT alone: no error, memory unchanged, the counters show one instruction fetched."""
    image = _image(np.random.default_rng(seed), 4096, 0x200, assemble([encode(Opcode.HALT)]))
    result = execute(CONFIG, image, 0x200, 1, sim=sim, seed=seed, timeout_cycles=TIMEOUT)
    assert result.error == ProgramError.NONE, result
    assert result.memory == image
    assert 0 < result.counters["CYCLES"] <= result.cycles + 10, result
    assert result.counters["DMA_BYTES_READ"] >= 16, result
    assert result.counters["DMA_BYTES_WRITTEN"] == 0, result


@pytest.mark.parametrize("stall_threshold", [0, 128])
def test_execute_load_store(sim, stall_threshold, seed):
    """LOAD rows into the accumulator, STORE them elsewhere: the same memory as the
    instruction-level simulator, with and without memory stalls."""
    from tessera.sim.isa_sim import Machine      # only this test needs the ISA simulator
    rng = np.random.default_rng(seed)
    full = 4 * CONFIG.lanes
    rows = int(rng.integers(1, 9))
    row_bytes = int(rng.integers(1, full + 1))
    program = assemble([
        encode(Opcode.LOAD, push=[Engine.STORE], buffer=1, row_bytes=row_bytes, sram_row=3,
               rows=rows, dram_addr=0x400 + int(rng.integers(0, 64)), dram_stride=row_bytes + 5),
        encode(Opcode.STORE, pop=[Engine.LOAD], requant=0, row_bytes=full, acc_row=3, rows=rows,
               dram_addr=0x800 + int(rng.integers(0, 64)), dram_stride=full + 3),
        encode(Opcode.HALT),
    ])
    image = _image(rng, 4096, 0, program)
    machine = Machine(CONFIG, image)
    expected = machine.run(0, 3)
    assert expected.error == ProgramError.NONE, expected
    result = execute(CONFIG, image, 0, 3, sim=sim, seed=seed, stall_threshold=stall_threshold,
                     timeout_cycles=TIMEOUT)
    assert result.error == ProgramError.NONE, result
    got, want = np.frombuffer(result.memory, np.uint8), np.frombuffer(bytes(machine.memory),
                                                                    np.uint8)
    bad = np.flatnonzero(got != want)
    assert not len(bad), (f"{len(bad)} bytes differ from the instruction-level simulator, first "
                          f"at {bad[0]:#x}")
    assert result.counters["DMA_BYTES_WRITTEN"] == rows * full, result.counters


def test_execute_watchdog(sim, seed):
    """The memory stops answering in the middle of a long LOAD (one burst per row, hundreds of
    cycles): the program ends with WATCHDOG."""
    program = assemble([
        encode(Opcode.LOAD, buffer=0, row_bytes=CONFIG.lanes, sram_row=0,
               rows=CONFIG.scratchpad_depth, dram_addr=0x400, dram_stride=48),
        encode(Opcode.HALT),
    ])
    image = _image(np.random.default_rng(seed), 4096, 0, program)
    result = execute(CONFIG, image, 0, 2, sim=sim, seed=seed, timeout_cycles=TIMEOUT,
                     watchdog=500, hang_after=60)
    assert result.error == ProgramError.WATCHDOG, result
    assert result.memory == image


def test_memory_size():
    """Builds come in powers of two from MIN_MEM_SIZE up."""
    assert memory_size(1) == MIN_MEM_SIZE
    assert memory_size(MIN_MEM_SIZE) == MIN_MEM_SIZE
    assert memory_size(MIN_MEM_SIZE + 1) == 2 * MIN_MEM_SIZE
    assert memory_size(3 << 20) == 4 << 20


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(config=dict(rows=4)), TypeError, "config must be an AcceleratorConfig"),
    (dict(memory=[1, 2, 3]), TypeError, "memory must be bytes"),
    (dict(memory=b""), ValueError, "memory must not be empty"),
    (dict(program_addr=-1), ValueError, r"program_addr must be in \[0, 4294967295\], not -1"),
    (dict(length=1.5), TypeError, "length must be an integer, not 1.5"),
    (dict(stall_threshold=256), ValueError, "stall_threshold must be in .*, not 256"),
    (dict(timeout_cycles=0), ValueError, "timeout_cycles must be in .*, not 0"),
    (dict(sim="modelsim"), ValueError, "sim must be one of .*, not 'modelsim'"),
])
def test_execute_arguments(kwargs, error, match):
    """Bad arguments are refused before anything is built."""
    args = dict(config=CONFIG, memory=bytes(64), program_addr=0, length=1)
    args.update(kwargs)
    config, memory = args.pop("config"), args.pop("memory")
    program_addr, length = args.pop("program_addr"), args.pop("length")
    with pytest.raises(error, match=match):
        execute(config, memory, program_addr, length, **args)
