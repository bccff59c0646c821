"""The ``rtl`` execution backend: run a program on the simulated RTL of the whole accelerator.

:func:`execute` builds :class:`~tessera.tb.accelerator_harness.AcceleratorHarness` (Tessera plus a
gateware AXI memory) with :func:`tessera.tb.simulators.build`, writes a request file, runs the
``execute`` test of tb/accelerator_tb.py with :func:`tessera.tb.simulators.run` and reads the
response file, all in a temporary directory. The memory image is loaded at address 0; the memory
answers DECERR at and above ``len(memory)`` (rounded up to a whole bus word), like the
instruction-level simulator's BUS_ERROR for bytes outside the image.

The memory's size is a build parameter: it is the image size rounded up to a power of two, at
least :data:`MIN_MEM_SIZE`, so that images of similar size share one build. Builds are cached per
process by :mod:`tessera.tb.simulators`: the first call for a configuration converts the design to
Verilog and compiles it, later calls only start the simulator.
"""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tessera.rtl.dma_descriptor import DmaError
from tessera.rtl.isa import ProgramError
from tessera.sim.config import AcceleratorConfig

from . import simulators
from .accelerator_harness import ID_WIDTH, AcceleratorHarness

__all__ = ["ExecResult", "RtlTimeout", "execute", "memory_size", "MIN_MEM_SIZE",
           "DEFAULT_TIMEOUT_CYCLES", "DEFAULT_SEED"]

#: Smallest memory built (bytes).
MIN_MEM_SIZE = 1 << 16

#: Cycle budget of a program when ``timeout_cycles`` is None.
DEFAULT_TIMEOUT_CYCLES = 10_000_000

#: Seed of the memory's stall pattern when ``seed`` is None.
DEFAULT_SEED = 1

#: Name of the harness's Verilog module (and of its build directories).
DESIGN_NAME = "accelerator_harness"


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one program on the RTL.

    ``memory``: the final image (same length as the input); ``error``: ERROR_CODE (a
    :class:`ProgramError` when the code is known); ``error_index``: ERROR_INFO; ``counters``: the
    performance counters by register name (CYCLES .. DMA_BYTES_WRITTEN); ``cycles``: from the
    CTRL.start write to the interrupt as the testbench measured it (a few cycles more than
    CYCLES); ``dma_error``/``dma_error_addr``: DMA_ERROR, DMA_ERROR_ADDR (details of a BUS_ERROR).
    """
    memory: bytes
    error: int
    error_index: int
    counters: dict = field(default_factory=dict)
    cycles: int = 0
    dma_error: int = 0
    dma_error_addr: int = 0


class RtlTimeout(TimeoutError):
    """The program did not end within its cycle budget; ``memory`` is the image at that point."""
    def __init__(self, message, memory):
        super().__init__(message)
        self.memory = memory


def memory_size(nbytes):
    """Bytes of memory built for an image of ``nbytes``: the next power of two, at least
    :data:`MIN_MEM_SIZE`."""
    return max(MIN_MEM_SIZE, 1 << max(0, nbytes - 1).bit_length())


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], not {value!r}")
    return int(value)


def _enum_or_int(enum, value):
    try:
        return enum(value)
    except ValueError:
        return value


def execute(config, memory, program_addr, length, *, sim=None, seed=None, stall_threshold=0,
            timeout_cycles=None, quiet=True, watchdog=None, hang_after=None):
    """Run the program of ``length`` instructions at ``program_addr`` in ``memory`` on the RTL.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator to build.
    memory : bytes-like
        The memory image, loaded at address 0 (not modified).
    program_addr, length : int
        PROGRAM_ADDR and PROGRAM_LEN.
    sim : str or None
        ``"verilator"`` or ``"icarus"``; None: the first of :func:`simulators.selected`
        (Verilator when it is installed, unless ``TESSERA_SIM`` says otherwise).
    seed : int or None
        Seed of the memory's stall pattern and of cocotb (None: :data:`DEFAULT_SEED`).
    stall_threshold : int
        0..255: the memory stalls each channel in about ``stall_threshold / 256`` of the cycles.
    timeout_cycles : int or None
        Cycle budget from START (None: :data:`DEFAULT_TIMEOUT_CYCLES`); beyond it
        :class:`RtlTimeout` is raised.
    quiet : bool
        Send the build and simulator output to log files instead of the terminal.
    watchdog : int or None
        Value written to WATCHDOG before START (None: keep the reset value).
    hang_after : int or None
        Cycles after START at which the memory stops answering (None: never).

    Returns :class:`ExecResult`.
    """
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    if not isinstance(memory, (bytes, bytearray, memoryview)):
        raise TypeError(f"memory must be bytes, bytearray or memoryview, not "
                        f"{type(memory).__name__}")
    image = bytes(memory)
    if not image:
        raise ValueError("memory must not be empty, not b''")
    if len(image) > 1 << 32:
        raise ValueError(f"memory must be at most 4 GiB, not {len(image)} bytes")
    program_addr = _check_int("program_addr", program_addr, 0, (1 << 32) - 1)
    length = _check_int("length", length, 0, (1 << 32) - 1)
    stall_threshold = _check_int("stall_threshold", stall_threshold, 0, 255)
    if timeout_cycles is None:
        timeout_cycles = DEFAULT_TIMEOUT_CYCLES
    timeout_cycles = _check_int("timeout_cycles", timeout_cycles, 1, 1 << 62)
    watchdog = -1 if watchdog is None else _check_int("watchdog", watchdog, 0, (1 << 32) - 1)
    hang_after = -1 if hang_after is None else _check_int("hang_after", hang_after, 0, 1 << 62)
    seed = DEFAULT_SEED if seed is None else _check_int("seed", seed, 0, (1 << 32) - 1)
    if sim is None:
        sim = simulators.selected()[0]
    elif sim not in simulators.SIMULATORS:
        raise ValueError(f"sim must be one of {', '.join(simulators.SIMULATORS)} or None, "
                         f"not {sim!r}")

    params = dict(config.as_dict(), id_width=ID_WIDTH, mem_size=memory_size(len(image)))
    design = simulators.build(sim, DESIGN_NAME, AcceleratorHarness, params, quiet=quiet)
    with tempfile.TemporaryDirectory(prefix="tessera-rtl-") as tmp:
        request, response = Path(tmp) / "request.npz", Path(tmp) / "response.npz"
        np.savez(request, image=np.frombuffer(image, np.uint8), program_addr=program_addr,
                 length=length, stall_threshold=stall_threshold, timeout=timeout_cycles,
                 watchdog=watchdog, hang_after=hang_after)
        try:
            simulators.run(design, "tessera.tb.accelerator_tb", testcase="execute", seed=seed,
                           extra_env={"TESSERA_REQUEST": str(request),
                                      "TESSERA_RESPONSE": str(response)},
                           quiet=quiet)
        except AssertionError as exc:
            log = simulators.run_directory(design, "execute") / "sim.log"
            raise RuntimeError(f"RTL simulation of the program failed: {exc}"
                               + (f" (simulator log: {log})" if quiet else "")) from None
        with np.load(response, allow_pickle=False) as answer:
            final = answer["image"].tobytes()
            if int(answer["violation"]):
                raise RuntimeError(f"the memory saw a burst it does not support or a malformed "
                                   f"one (see tb/axi_memory.py, 'Checks') [{sim}, {config}]")
            if bool(answer["timed_out"]):
                raise RtlTimeout(f"{answer['message']} [{sim}, {config}, seed {seed}]", final)
            counters = dict(zip((str(name) for name in answer["counter_names"]),
                                (int(value) for value in answer["counter_values"])))
            return ExecResult(
                memory=final,
                error=_enum_or_int(ProgramError, int(answer["error"])),
                error_index=int(answer["error_index"]),
                counters=counters,
                cycles=int(answer["cycles"]),
                dma_error=_enum_or_int(DmaError, int(answer["dma_error"])),
                dma_error_addr=int(answer["dma_error_addr"]),
            )
