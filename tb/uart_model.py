"""A UART line model for cocotb (8N1, LSB first) and a serial-port look-alike on top of it.

:class:`UartModel` drives a design's receive line and listens to its transmit line. Python acts
once per bit (a ``Timer`` of one bit time), never per clock cycle:

* :meth:`UartModel.send` puts bytes on the line back to back, starting at a falling clock edge
  so that no bit changes at a rising edge; ``bad_stop`` sends chosen bytes with a low stop bit.
* a background task waits for each start bit on the transmit line, samples the 8 data bits and
  the stop bit in the middle of each bit and appends the byte to :attr:`UartModel.received`
  and the simulated time (ns) of its start bit's falling edge to :attr:`UartModel.start_times`
  (which is never emptied); a byte with a low stop bit is counted in
  :attr:`UartModel.frame_errors` and dropped.

:class:`SimulatedSerial` gives the ``write(data)`` / ``read(size)`` interface of a pyserial port
to blocking code running in a ``cocotb.task.bridge`` thread — e.g. :class:`tessera.fpga.link.Link`
— so the host software runs unchanged against the simulated board. ``read`` waits (in simulated
time) until ``size`` bytes are there or ``timeout_ns`` has passed since the call.
"""

from cocotb.task import resume
from cocotb.triggers import Event, FallingEdge, SimTimeoutError, Timer, with_timeout
from cocotb.utils import get_sim_time

__all__ = ["UartModel", "SimulatedSerial"]


class UartModel:
    """UART on ``rx`` (driven: the design receives) and ``tx`` (watched), one bit every
    ``bit_ns`` nanoseconds; ``clk`` aligns the start of transmissions."""

    def __init__(self, rx, tx, clk, bit_ns):
        if bit_ns <= 0:
            raise ValueError(f"bit_ns must be positive, not {bit_ns!r}")
        self.rx, self.tx, self.clk = rx, tx, clk
        self.bit_ns = bit_ns
        self.received = bytearray()
        self.start_times = []
        self.frame_errors = 0
        self._arrived = Event()
        self.rx.value = 1
        self._task = None

    def start(self):
        """Start listening on ``tx`` (call once, after the design's reset)."""
        import cocotb
        self._task = cocotb.start_soon(self._listen())

    async def _listen(self):
        while True:
            await FallingEdge(self.tx)
            start = get_sim_time("ns")
            await Timer(self.bit_ns / 2, "ns")
            if int(self.tx.value):
                continue                               # a glitch, not a start bit
            value = 0
            for i in range(8):
                await Timer(self.bit_ns, "ns")
                value |= int(self.tx.value) << i
            await Timer(self.bit_ns, "ns")
            if int(self.tx.value):
                self.received.append(value)
                self.start_times.append(start)
                self._arrived.set()
            else:
                self.frame_errors += 1

    async def send(self, data, *, bad_stop=()):
        """Send ``data`` (bytes); bytes whose index is in ``bad_stop`` get a low stop bit."""
        await FallingEdge(self.clk)
        for index, byte in enumerate(bytes(data)):
            stop = 0 if index in bad_stop else 1
            for level in (0, *((byte >> i) & 1 for i in range(8)), stop):
                self.rx.value = level
                await Timer(self.bit_ns, "ns")
        self.rx.value = 1

    async def wait_bytes(self, count, timeout_ns):
        """Wait until :attr:`received` holds at least ``count`` bytes; False on timeout."""
        try:
            while len(self.received) < count:
                self._arrived.clear()
                await with_timeout(self._arrived.wait(), timeout_ns, "ns")
        except SimTimeoutError:
            return False
        return True

    def take(self, count):
        """Remove and return up to ``count`` bytes from the front of :attr:`received`."""
        data = bytes(self.received[:count])
        del self.received[:count]
        return data


class SimulatedSerial:
    """A pyserial-like port over a :class:`UartModel`, for code in a ``bridge`` thread."""

    def __init__(self, uart, timeout_ns):
        self.uart = uart
        self.timeout_ns = timeout_ns
        self.written = 0

    @resume
    async def _write(self, data):
        await self.uart.send(data)

    @resume
    async def _read(self, size):
        await self.uart.wait_bytes(size, self.timeout_ns)
        return self.uart.take(size)

    def write(self, data):
        data = bytes(data)
        self._write(data)
        self.written += len(data)
        return len(data)

    def read(self, size):
        return self._read(size)
