"""Host side of the serial link to a board's UART bridge (protocol in fpga/protocol.py).

:class:`Link` talks to the bridge through a *transport*: any object with ``write(data)`` and
``read(size)`` (returning at most ``size`` bytes, fewer when its own timeout passes) — a
``serial.Serial`` from pyserial (:func:`open_serial`), a socket wrapped in
:class:`SocketTransport`, or a simulated UART in a testbench. pyserial is imported only by
:func:`open_serial`, so the rest works without it.

What :class:`Link` adds to the frames:

* registers by name (rtl/registers.py's map for the board's configuration) and blocks of memory
  of any size (split into frames of at most ``MAX_BLOCK`` bytes);
* retries of a request the board answered with CRC_ERROR or TIMEOUT (it did not execute it, so
  repeating it is safe); any other error status raises :class:`RemoteError`, a response that
  does not arrive raises :class:`LinkTimeout`, a broken response :class:`LinkError`;
* :meth:`Link.execute`: the driver backend interface (``tessera.sim.driver``): load a memory
  image, run a program, read back the image, ERROR_CODE/ERROR_INFO and the counters.
"""

import time

from tessera.rtl.registers import PERF_COUNTERS, register_map
from tessera.sim.config import AcceleratorConfig

from .protocol import Command, FrameError, ResponseParser, Status, block_requests

__all__ = ["LinkError", "LinkTimeout", "RemoteError", "Link", "SocketTransport", "open_serial",
           "DEFAULT_BAUD"]

#: Baud rate of the board tops (fpga/boards.py).
DEFAULT_BAUD = 115200


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
    """A pyserial ``Serial`` on ``port`` (8N1, ``baud``) to use as a :class:`Link` transport."""
    try:
        import serial
    except ImportError:
        raise ImportError("open_serial needs pyserial (pip install pyserial); any object with "
                          "write() and read() works as a transport without it") from None
    return serial.Serial(port, baudrate=baud, bytesize=8, parity="N", stopbits=1,
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
        self.registers = register_map(**config.as_dict())
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
        self.write_memory(0, memory)
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

