"""Host side of the serial link to a board's UART bridge (protocol in fpga/protocol.py).

:class:`Link` talks to the bridge through a *transport*: any object with ``write(data)`` and
``read(size)`` (returning at most ``size`` bytes, fewer when its own timeout passes) — a
pyserial port (:func:`open_serial`: a device such as ``/dev/ttyUSB0`` or a pyserial URL such as
``socket://host:port``), a socket wrapped in :class:`SocketTransport`, or a simulated UART in a
testbench. pyserial is imported only by :func:`open_serial`, so the rest works without it.

What :class:`Link` adds to the frames:

* registers by name (rtl/registers.py's map for the board's configuration) and blocks of memory
  of any size (split into frames of at most ``MAX_BLOCK`` bytes);
* retries of a request the board answered with CRC_ERROR or TIMEOUT (it did not execute it, so
  repeating it is safe); any other error status raises :class:`RemoteError`, a response that
  does not arrive raises :class:`LinkTimeout`, a broken response :class:`LinkError`;
* the board's configuration read from its ID and configuration registers
  (:meth:`Link.read_config`) and checked against the host's (:meth:`Link.check_config`,
  :class:`ConfigMismatch`), so that a program compiled for one array size never runs on another;
* :meth:`Link.execute`: the driver backend interface (``tessera.sim.driver``): load a memory
  image, run a program, read back the image, ERROR_CODE/ERROR_INFO and the counters
  (:meth:`Link.connect`, which the driver calls when it is created, checks the configuration).
"""

import time

from tessera.rtl.registers import DEFAULT_CONFIG, ID_VALUE, PERF_COUNTERS, register_map
from tessera.sim.config import AcceleratorConfig

from .protocol import Command, FrameError, ResponseParser, Status, block_requests

__all__ = ["LinkError", "LinkTimeout", "RemoteError", "ConfigMismatch", "Link", "SocketTransport",
           "open_serial", "DEFAULT_BAUD", "CONFIG_REGISTERS"]

#: Baud rate of the board tops (fpga/boards.py).
DEFAULT_BAUD = 115200

#: The configuration registers (rtl/registers.py) and the AcceleratorConfig field each reads back
#: (the keyword arguments of ``register_map``). Their offsets are the same in every
#: configuration. (The lanes of a buffer row are ``max(ROWS, COLS)``: no register of their own.)
CONFIG_REGISTERS = {name.upper(): name for name in DEFAULT_CONFIG}


def _register_values(config):
    """The values of ``config`` that the configuration registers read back."""
    return {name: getattr(config, name) for name in CONFIG_REGISTERS.values()}


class LinkError(RuntimeError):
    """The link failed: no response, or a response that is not a valid answer."""


class LinkTimeout(LinkError):
    """No complete response arrived within the transport's timeout."""


class RemoteError(LinkError):
    """The board answered a request with an error ``status`` (:class:`Status`)."""

    def __init__(self, status, command, address):
        self.status = status
        self.command = command
        self.address = address
        name = getattr(status, "name", status)
        super().__init__(f"the board answered {name} to {command.name} at {address:#x}")


def _settings(config):
    return ", ".join(f"{key}={value}" for key, value in _register_values(config).items())


class ConfigMismatch(ValueError):
    """The board's accelerator (``board``, read from its configuration registers) is not the
    configuration the host compiles for (``expected``); both are :class:`AcceleratorConfig`."""

    def __init__(self, board, expected):
        self.board = board
        self.expected = expected
        differ = "; ".join(f"{key} {value} on the board, {getattr(expected, key)} expected"
                           for key, value in _register_values(board).items()
                           if value != getattr(expected, key))
        super().__init__(
            f"the board's accelerator is {board.rows}x{board.cols} ({_settings(board)}, read from "
            f"its configuration registers), but the programs are compiled for "
            f"{expected.rows}x{expected.cols} ({_settings(expected)}): {differ}. A program "
            f"compiled for one does not run on the other: use the board's configuration, or "
            f"build and load a bitstream of this one")


class SocketTransport:
    """A connected socket as a transport (e.g. a TCP-to-serial bridge or a simulated board)."""

    def __init__(self, sock, timeout=1.0):
        self.sock = sock
        self.sock.settimeout(timeout)

    def write(self, data):
        self.sock.sendall(bytes(data))
        return len(data)

    def read(self, size):
        import socket
        data = bytearray()
        try:
            while len(data) < size:
                chunk = self.sock.recv(size - len(data))
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        return bytes(data)


def open_serial(port, baud=DEFAULT_BAUD, timeout=1.0):
    """An open pyserial port (8N1, ``baud``, read ``timeout`` in seconds) to use as a
    :class:`Link` transport.

    ``port`` is a device (``/dev/ttyUSB0``, ``COM3``) or any URL pyserial's ``serial_for_url``
    knows, e.g. ``socket://host:port`` (a TCP connection: a serial server, or a simulated board in
    the tests) or ``rfc2217://host:port``. Raises ImportError naming pyserial if it is not
    installed, and pyserial's ``SerialException`` (an OSError) if the port cannot be opened.
    """
    try:
        import serial
    except ImportError:
        raise ImportError("open_serial needs pyserial (pip install pyserial); any object with "
                          "write() and read() works as a transport without it") from None
    if not isinstance(port, str) or not port:
        raise TypeError(f"port must be a serial device name or a pyserial URL (a string), "
                        f"not {port!r}")
    return serial.serial_for_url(port, baudrate=baud, bytesize=8, parity="N", stopbits=1,
                                 timeout=timeout)


class Link:
    """Requests to one board over ``transport``.

    ``config`` (an :class:`AcceleratorConfig`) selects the register map; ``retries`` is how many
    times a request answered with CRC_ERROR or TIMEOUT is sent again.
    """

    def __init__(self, transport, *, config=None, retries=2):
        if not (hasattr(transport, "write") and hasattr(transport, "read")):
            raise TypeError(f"transport must have write() and read(), not {transport!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, not {retries!r}")
        config = AcceleratorConfig() if config is None else config
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self.transport = transport
        self.config = config
        self.registers = register_map(**_register_values(config))
        self.retries = retries
        self.parser = ResponseParser()
        self.retried = 0             # requests sent again after CRC_ERROR / TIMEOUT

    # --- frames -----------------------------------------------------------------------------------
    def _receive(self):
        """The next response (or FrameError) from the transport."""
        while True:
            data = self.transport.read(self.parser.needed())
            if not data:
                self.parser = ResponseParser()          # drop a partial frame
                raise LinkTimeout("no response from the board (check the port, the baud rate "
                                  "and that the bitstream is loaded)")
            done = self.parser.feed(data)
            if done:
                if len(done) > 1:
                    raise LinkError(f"more than one response to one request: {done!r}")
                return done[0]

    def request(self, frame, command, address):
        """Send ``frame`` (a request for ``command`` at ``address``) and return the payload of
        its OK response, retrying after CRC_ERROR and TIMEOUT."""
        for attempt in range(self.retries + 1):
            if hasattr(self.transport, "reset_input_buffer"):     # pyserial: drop stale bytes
                self.transport.reset_input_buffer()
            self.transport.write(frame)
            response = self._receive()
            if isinstance(response, FrameError):
                raise LinkError(f"corrupted response to {command.name} at {address:#x}: "
                                f"{response}")
            if response.status in (Status.CRC_ERROR, Status.TIMEOUT) and attempt < self.retries:
                self.retried += 1
                continue
            if response.status != Status.OK:
                raise RemoteError(response.status, command, address)
            if response.command != command:
                raise LinkError(f"response echoes command {response.command:#04x}, not "
                                f"{command.name}")
            return response.payload
        raise AssertionError("unreachable")

    def _block(self, command, address, data_or_length):
        parts = [self.request(frame, command, addr)
                 for addr, _, frame in block_requests(command, address, data_or_length)]
        return b"".join(parts)

    # --- memory -----------------------------------------------------------------------------------
    def write_memory(self, address, data):
        """Write ``data`` (bytes) to the board's memory at byte ``address``."""
        self._block(Command.WRITE_MEM, address, bytes(data))

    def read_memory(self, address, length):
        """``length`` bytes of the board's memory from byte ``address``."""
        data = self._block(Command.READ_MEM, address, length)
        if len(data) != length:
            raise LinkError(f"asked for {length} bytes at {address:#x}, got {len(data)}")
        return data

    # --- registers --------------------------------------------------------------------------------
    def _register(self, name):
        if name not in self.registers:
            raise ValueError(f"register name must be one of {[r.name for r in self.registers]}, "
                             f"not {name!r}")
        return self.registers[name]

    def _offset(self, name):
        return self._register(name).offset

    def read_words(self, offset, count):
        """``count`` consecutive 32-bit registers from byte ``offset`` (a list of ints)."""
        data = self._block(Command.READ_REG, offset, 4 * count)
        return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]

    def write_words(self, offset, words):
        """Write 32-bit ``words`` to consecutive registers from byte ``offset``."""
        self._block(Command.WRITE_REG, offset,
                    b"".join(int(w).to_bytes(4, "little") for w in words))

    def read_register(self, name):
        """Register ``name`` as ``{field: value}``."""
        register = self._register(name)
        return register.unpack(self.read_words(register.offset, 1)[0])

    def write_register(self, name, **fields):
        """Write register ``name`` with the given field values (the others 0)."""
        register = self._register(name)
        self.write_words(register.offset, [register.pack(**fields)])

    def read_counters(self):
        """The performance counters ``{name: value}`` (one request: they are consecutive)."""
        offsets = [self._offset(name) for name in PERF_COUNTERS]
        if offsets != list(range(offsets[0], offsets[0] + 4 * len(offsets), 4)):
            return {name: self.read_register(name)["count"] for name in PERF_COUNTERS}
        return dict(zip(PERF_COUNTERS, self.read_words(offsets[0], len(offsets))))

    # --- configuration ----------------------------------------------------------------------------
    def read_config(self):
        """The board's :class:`AcceleratorConfig`, read from its ID and configuration registers
        (ROWS .. BUS_WIDTH: the same offsets in every configuration). Raises :class:`LinkError`
        if ID does not read Tessera's value or the values are not a valid configuration."""
        ident = self.read_register("ID")["value"]
        if ident != ID_VALUE:
            raise LinkError(f"the board's ID register reads {ident:#010x}, not Tessera's "
                            f"{ID_VALUE:#010x} (\"TSRA\"): is the Tessera bitstream loaded?")
        names = list(CONFIG_REGISTERS)
        offsets = [self._offset(name) for name in names]
        if offsets == list(range(offsets[0], offsets[0] + 4 * len(offsets), 4)):
            words = self.read_words(offsets[0], len(offsets))
        else:
            words = [self.read_register(name)["value"] for name in names]
        values = {CONFIG_REGISTERS[name]: word for name, word in zip(names, words)}
        try:
            return AcceleratorConfig(**values)
        except ValueError as error:
            raise LinkError(f"the board reports an invalid configuration {values}: "
                            f"{error}") from None

    def check_config(self):
        """Read the board's configuration and raise :class:`ConfigMismatch` (naming both) if it
        is not this link's ``config``; returns the configuration."""
        board = self.read_config()
        if board != self.config:
            raise ConfigMismatch(board, self.config)
        return board

    def connect(self, config):
        """Driver backend hook, called when a driver is created: ``config`` must be this link's
        and the board's (:meth:`check_config`)."""
        if config != self.config:
            raise ValueError(f"config must be the board's {self.config!r}, not {config!r}")
        self.check_config()

    # --- programs ---------------------------------------------------------------------------------
    def execute(self, config, memory, program_addr, length, *, timeout=10.0, poll=0.0):
        """Run a program as a driver backend: write ``memory`` at address 0, run ``length``
        instructions from ``program_addr``, wait for STATUS.done (polling every ``poll``
        seconds, at most ``timeout`` seconds), and return an ``ExecResult`` with the image read
        back (``len(memory)`` bytes), ERROR_CODE, ERROR_INFO and the performance counters."""
        from tessera.sim.driver import ExecResult

        if config != self.config:
            raise ValueError(f"config must be the board's {self.config!r}, not {config!r}")
        memory = bytes(memory)
        try:
            self.write_memory(0, memory)
        except RemoteError as error:
            if error.status != Status.BAD_ADDRESS:
                raise
            raise LinkError(f"the program's memory image ({len(memory)} bytes) does not fit the "
                            f"board's memory: the board refused a write at {error.address:#x} "
                            f"(run smaller batches)") from error
        self.write_register("STATUS", done=1)            # clear a done left from before
        self.write_register("PROGRAM_ADDR", addr=program_addr)
        self.write_register("PROGRAM_LEN", length=length)
        self.write_register("CTRL", start=1)
        deadline = time.monotonic() + timeout
        while True:
            status = self.read_register("STATUS")
            if status["done"] and not status["busy"]:
                break
            if time.monotonic() > deadline:
                raise LinkTimeout(f"the program did not finish within {timeout} s "
                                  f"(STATUS {status})")
            if poll:
                time.sleep(poll)
        error = self.read_register("ERROR_CODE")["code"]
        index = self.read_register("ERROR_INFO")["index"]
        counters = self.read_counters()
        image = self.read_memory(0, len(memory))
        return ExecResult(image, error, index, counters)

