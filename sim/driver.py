"""The Tessera driver: one API to run compiled programs on interchangeable backends.

::

    drv = Driver(AcceleratorConfig(rows=8, cols=8), backend="golden")
    c = drv.gemm(a, b)                 # raw int32 a @ b
    y = drv.dense(layer, x)            # int8, bit-exact with layer.reference(x)
    report = drv.run(program, {"x": x})

A backend is a small object with one method, ``execute(config, memory, program_addr, length)``,
returning an object with ``memory`` (bytes, the image after the run), ``error`` (int
:class:`~tessera.rtl.isa.ProgramError`), ``error_index`` and ``counters`` (dict). Backends by name:

* ``"golden"`` (:class:`GoldenBackend`): the instruction-level simulator
  (:mod:`tessera.sim.isa_sim`); option ``seed`` runs the engines in a random (seeded) interleaving
  instead of oldest-first.
* ``"rtl"`` (:class:`RtlBackend`): the RTL in simulation, through
  ``tessera.tb.rtl_backend.execute`` (imported when first used); options ``sim`` and ``seed``.
* ``"board"`` (:class:`BoardBackend`): a board running Tessera's bitstream, over its USB serial
  port through pyserial and the UART protocol (``tessera.fpga.link``); options ``port``
  (required: ``/dev/ttyUSB0``, ``COM3`` or a pyserial URL such as ``socket://host:port``),
  ``baud``, ``timeout``, ``run_timeout`` and ``retries``.

Any other object with an ``execute`` method can be passed as ``backend`` (e.g. a
``tessera.fpga.link.Link``). A backend may also have ``connect(config)``: the driver calls it
once, when it is created, with its configuration (the board backend opens its port there and
checks that the board's configuration registers read the driver's configuration).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from tessera.rtl.isa import ProgramError

from .compiler import Program, compile_conv2d, compile_dense, compile_gemm, compile_network
from .config import AcceleratorConfig
from .isa_sim import Machine
from .layers import Conv2d, Dense, Network

__all__ = ["Driver", "RunReport", "ExecResult", "AcceleratorError", "GoldenBackend",
           "RtlBackend", "BoardBackend", "BACKENDS"]


def _error_code(code):
    """``code`` as a :class:`ProgramError`, or the int itself if it is not a known code."""
    try:
        return ProgramError(code)
    except ValueError:
        return int(code)


class AcceleratorError(RuntimeError):
    """A program stopped with an error: ``code`` (:class:`ProgramError`) at instruction
    ``index`` (ERROR_CODE and ERROR_INFO)."""

    def __init__(self, code, index, detail=""):
        self.code = _error_code(code)
        self.index = int(index)
        name = getattr(self.code, "name", "an unknown error")
        text = (f"the accelerator stopped with {name} (error code {int(self.code)}) "
                f"at instruction {self.index}")
        super().__init__(f"{text}: {detail}" if detail else text)


@dataclass
class ExecResult:
    """What a backend returns: the memory image after the run, ERROR_CODE, ERROR_INFO, the
    performance counters (by register name) and, when the backend counts them, the instructions
    completed."""
    memory: bytes
    error: int
    error_index: int
    counters: dict = field(default_factory=dict)
    instructions: int | None = None
    detail: str = ""


@dataclass
class RunReport:
    """The result of :meth:`Driver.run`: ``outputs`` by name, ``error`` and ``error_index``
    (NONE/0 unless ``check=False`` let an error through), the backend's ``counters`` and the
    number of ``instructions`` completed (None if the backend does not count them)."""
    outputs: dict
    error: ProgramError
    error_index: int
    counters: dict
    instructions: int | None


class GoldenBackend:
    """Runs programs on the instruction-level simulator. Counters: ``INSTRUCTIONS`` (completed)
    and ``MACS`` (array MAC slots used by MATMULs, rows*R*C each). ``seed``: engines run in a
    random interleaving drawn from ``random.Random(seed)`` (None: oldest instruction first)."""
    name = "golden"

    def __init__(self, *, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, not {seed!r}")
        self.seed = seed

    def execute(self, config, memory, program_addr, length):
        machine = Machine(config, memory)
        rng = None if self.seed is None else random.Random(self.seed)
        result = machine.run(program_addr, length, rng=rng)
        return ExecResult(bytes(machine.memory), int(result.error), int(result.error_index),
                          {"INSTRUCTIONS": result.instructions, "MACS": result.macs},
                          result.instructions, result.detail)


class RtlBackend:
    """Runs programs on the RTL in simulation (``tessera.tb.rtl_backend.execute``); ``sim``
    names the simulator (None: the default one), ``seed`` seeds its randomized memory model."""
    name = "rtl"

    def __init__(self, *, sim=None, seed=None):
        self.sim, self.seed = sim, seed

    def execute(self, config, memory, program_addr, length):
        from tessera.tb.rtl_backend import execute
        return execute(config, bytes(memory), program_addr, length, sim=self.sim, seed=self.seed)


class BoardBackend:
    """Runs programs on a board (``tessera build``, docs/fpga.md) over its serial port: a
    :class:`tessera.fpga.link.Link` on :func:`tessera.fpga.link.open_serial` (pyserial).

    ``port`` is the serial device (``/dev/ttyUSB0``) or a pyserial URL (``socket://host:port``);
    ``baud`` its speed (default: the board tops' 115200); ``timeout`` how long to wait for a
    response, ``run_timeout`` for a program to finish (seconds). The port is opened by
    :meth:`connect` (the driver calls it when it is created), which also reads the board's ID and
    configuration registers and raises ``tessera.fpga.link.ConfigMismatch`` (a ValueError naming
    both configurations) unless they are the driver's. Counters are the board's performance
    counters (CYCLES, MAC_ACTIVE, ...). :meth:`close` closes the port.
    """
    name = "board"

    def __init__(self, *, port=None, baud=None, timeout=1.0, run_timeout=30.0, retries=2):
        if port is None:
            raise ValueError("a board backend needs port: the board's serial port, e.g. "
                             "Driver(config, backend=\"board\", port=\"/dev/ttyUSB0\")")
        if not isinstance(port, str) or not port:
            raise TypeError(f"port must be a serial device name or a pyserial URL (a string), "
                            f"not {port!r}")
        if baud is not None and (isinstance(baud, bool) or not isinstance(baud, int)
                                 or baud < 1):
            raise ValueError(f"baud must be a positive integer, not {baud!r}")
        for name, value in (("timeout", timeout), ("run_timeout", run_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        self.port, self.baud, self.timeout = port, baud, timeout
        self.run_timeout, self.retries = run_timeout, retries
        self.serial = None       # the open pyserial port
        self.link = None         # the Link, once connect() has checked the board

    def _open(self):
        from tessera.fpga.link import DEFAULT_BAUD, open_serial
        if self.serial is None:
            self.serial = open_serial(self.port, DEFAULT_BAUD if self.baud is None else self.baud,
                                      self.timeout)
        return self.serial

    def read_config(self):
        """The board's :class:`AcceleratorConfig`, read from its registers (opens the port)."""
        from tessera.fpga.link import Link
        return Link(self._open(), retries=self.retries).read_config()

    def connect(self, config):
        """Open the port and check that the board is a Tessera of configuration ``config``
        (``ConfigMismatch`` otherwise); returns the :class:`~tessera.fpga.link.Link`."""
        from tessera.fpga.link import Link
        if self.link is not None:
            if config != self.link.config:
                raise ValueError(f"config must be the board's {self.link.config!r}, "
                                 f"not {config!r}")
            return self.link
        link = Link(self._open(), config=config, retries=self.retries)
        try:
            link.check_config()
        except BaseException:
            self.close()
            raise
        self.link = link
        return link

    def execute(self, config, memory, program_addr, length):
        return self.connect(config).execute(config, memory, program_addr, length,
                                            timeout=self.run_timeout)

    def close(self):
        """Close the serial port (a later :meth:`connect` opens it again)."""
        if self.serial is not None:
            self.serial.close()
        self.serial = self.link = None


#: Backends selectable by name.
BACKENDS = {"golden": GoldenBackend, "rtl": RtlBackend, "board": BoardBackend}


def _describe(x):
    if isinstance(x, np.ndarray):
        return f"an array of dtype {x.dtype} with shape {x.shape}"
    return f"{type(x).__name__} {x!r}"


def _int8_array(name, x, ndim=None):
    if not isinstance(x, np.ndarray) or x.dtype != np.int8:
        raise TypeError(f"{name} must be an int8 numpy array, not {_describe(x)}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, not shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} must not be empty, not shape {x.shape}")
    return x


class Driver:
    """Compiles and runs work on one accelerator configuration through one backend.

    ``backend`` is a name in :data:`BACKENDS` (``backend_options`` go to its constructor) or an
    object with an ``execute`` method; a backend's ``connect(config)``, if it has one, is called
    here (``Driver(config, backend="board", port="/dev/ttyUSB0")`` opens the port and checks the
    board's configuration). ``reports`` holds the :class:`RunReport` of each program run by the
    last call (one per program; a network may run several).
    """

    def __init__(self, config=None, backend="golden", **backend_options):
        config = AcceleratorConfig() if config is None else config
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self.config = config
        if isinstance(backend, str):
            if backend not in BACKENDS:
                raise ValueError(f"backend must be one of {sorted(BACKENDS)} or an object with "
                                 f"an execute method, not {backend!r}")
            backend = BACKENDS[backend](**backend_options)
        elif not callable(getattr(backend, "execute", None)):
            raise TypeError(f"backend must be one of {sorted(BACKENDS)} or an object with an "
                            f"execute method, not {backend!r}")
        elif backend_options:
            raise TypeError(f"backend options {sorted(backend_options)} apply only to a backend "
                            f"given by name")
        connect = getattr(backend, "connect", None)
        if callable(connect):
            connect(config)
        self.backend = backend
        self.reports = []

    # --- programs ---------------------------------------------------------------------------------

    def run(self, program, inputs, *, check=True):
        """Run ``program`` with ``inputs`` (name -> array of exactly the input's dtype and shape).

        Returns a :class:`RunReport`. Raises ``TypeError``/``ValueError`` naming the
        input for a missing, unknown or malformed input, and :class:`AcceleratorError` when the
        backend reports an error (unless ``check`` is False; the report then has no outputs).
        """
        self.reports = []
        return self._run(program, inputs, check)

    def _run(self, program, inputs, check=True):
        if not isinstance(program, Program):
            raise TypeError(f"program must be a compiled Program, not {type(program).__name__}")
        if program.config != self.config:
            raise ValueError(f"program was compiled for {program.config}, but the driver's "
                             f"accelerator is {self.config}")
        if not isinstance(inputs, dict):
            raise TypeError(f"inputs must be a dict of input name -> numpy array, "
                            f"not {type(inputs).__name__}")
        missing = [name for name in program.inputs if name not in inputs]
        if missing:
            raise ValueError(f"input {missing[0]!r} is missing (the program's inputs are "
                           f"{list(program.inputs)})")
        unknown = [name for name in inputs if name not in program.inputs]
        if unknown:
            raise ValueError(f"input {unknown[0]!r} is not an input of the program (its inputs are "
                           f"{list(program.inputs)})")
        image = bytearray(program.image)
        for name in program.inputs:
            program.write_input(image, name, inputs[name])
        result = self.backend.execute(self.config, bytes(image), program.program_addr,
                                      program.length)
        error = _error_code(result.error)
        if error != ProgramError.NONE and check:
            raise AcceleratorError(error, result.error_index, getattr(result, "detail", ""))
        outputs = {} if error != ProgramError.NONE else \
            {name: program.read_output(result.memory, name) for name in program.outputs}
        report = RunReport(outputs, error, int(result.error_index), dict(result.counters),
                           getattr(result, "instructions", None))
        self.reports.append(report)
        return report

    def _start(self):
        self.reports = []

    # --- convenience ------------------------------------------------------------------------------

    def gemm(self, a, b):
        """``a @ b`` for int8 ``a`` (M, K) and ``b`` (K, N): the raw int32 (M, N) result."""
        self._start()
        _int8_array("a", a, 2)
        _int8_array("b", b, 2)
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"a has shape {a.shape} and b has shape {b.shape}: the inner "
                             f"dimensions differ")
        program = compile_gemm(self.config, a.shape[0], a.shape[1], b.shape[1])
        return self._run(program, {"a": a, "b": b}).outputs["c"]

    def dense(self, layer, x):
        """A :class:`Dense` layer on int8 ``x`` (M, K): int8 (M, N)."""
        self._start()
        if not isinstance(layer, Dense):
            raise TypeError(f"layer must be a Dense, not {type(layer).__name__}")
        layer.check_input(x)
        program = compile_dense(self.config, layer, x.shape[0])
        return self._run(program, {"x": x}).outputs["y"]

    def conv2d(self, layer, x):
        """A :class:`Conv2d` layer on int8 NHWC ``x``: int8 (N, OH, OW, Cout). The host does the
        im2col (``layer.im2col``) and the accelerator the GEMM."""
        self._start()
        if not isinstance(layer, Conv2d):
            raise TypeError(f"layer must be a Conv2d, not {type(layer).__name__}")
        layer.check_input(x)
        program = compile_conv2d(self.config, layer, x.shape)
        return self._run(program, {"x": layer.im2col(x)}).outputs["y"]

    def network(self, net, x):
        """A :class:`Network` on int8 ``x``: its output, running the programs of
        :func:`compile_network` one after another (host im2col between them where needed)."""
        self._start()
        if not isinstance(net, Network):
            raise TypeError(f"net must be a Network, not {type(net).__name__}")
        _int8_array("x", x)
        compiled = compile_network(self.config, net, x.shape)
        for stage in compiled.stages:
            x = x.reshape(stage.input_shape)
            if stage.host_im2col is not None:
                x = stage.host_im2col.im2col(x)
            x = self._run(stage.program, {"x": x}).outputs["y"]
        return x
