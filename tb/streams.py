"""cocotb drivers for ``amaranth.lib.stream`` interfaces, shared by every testbench.

An Amaranth stream member ``name`` becomes the Verilog ports ``name__valid``, ``name__ready`` and
``name__payload``. Payloads are packed integers; :func:`pack` and :func:`unpack` convert between
lists of lanes and those integers (lane 0 in the least significant bits, like Amaranth's
``ArrayLayout``).

Handshake sampling follows the usual cocotb pattern: right after ``await RisingEdge(clk)`` the
simulator still shows the values that were present at the edge, so ``valid & ready`` read there tells
whether a transfer happened at that edge.
"""

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import RisingEdge

__all__ = ["pack", "unpack", "Stream", "Stalled", "StreamSource", "StreamSink", "CycleCounter"]


def pack(values, width):
    """Pack signed or unsigned lane values (lane 0 first) into one integer of ``width``-bit lanes."""
    mask = (1 << width) - 1
    word = 0
    for i, value in enumerate(values):
        word |= (int(value) & mask) << (i * width)
    return word


def unpack(word, width, count, *, signed=True):
    """Split an integer into ``count`` lanes of ``width`` bits (lane 0 first)."""
    mask = (1 << width) - 1
    lanes = []
    for i in range(count):
        lane = (word >> (i * width)) & mask
        if signed and lane >> (width - 1):
            lane -= 1 << width
        lanes.append(lane)
    return lanes


class Stream:
    """The three ports of stream ``name`` of ``dut``."""
    def __init__(self, dut, name):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.width = len(self.payload)


class Stalled(AssertionError):
    """A stream made no transfer for ``patience`` cycles: the design (or the test) is stuck."""


class StreamSource:
    """Drives a stream from a list of payload integers, idling with probability ``idle``.

    Raises :class:`Stalled` when the stream accepts nothing for ``patience`` cycles in a row.
    """
    def __init__(self, dut, name, clk, *, rng, idle=0.0, patience=10_000):
        self.port = Stream(dut, name)
        self.clk = clk
        self.rng = rng
        self.idle = idle
        self.patience = patience
        self.name = name
        self.sent = 0
        self.first_cycle = None     # cycle of the first transfer (with a CycleCounter)
        self.port.valid.value = 0

    async def send(self, items, counter=None):
        port = self.port
        items = list(items)
        index = 0
        waited = 0
        port.valid.value = 0
        while index < len(items):
            if self.idle and self.rng.random() < self.idle:
                port.valid.value = 0
            else:
                port.valid.value = 1
                port.payload.value = items[index]
            await RisingEdge(self.clk)
            if port.valid.value and port.ready.value:
                if index == 0 and counter is not None and self.first_cycle is None:
                    self.first_cycle = counter.cycles
                index += 1
                self.sent += 1
                waited = 0
            else:
                waited += 1
                if waited > self.patience:
                    raise Stalled(f"{self.name}: no transfer for {self.patience} cycles after "
                                  f"{index} of {len(items)} items")
        port.valid.value = 0

    def start(self, items, counter=None):
        return cocotb.start_soon(self.send(items, counter))


class StreamSink:
    """Accepts payloads from a stream, refusing with probability ``stall`` each cycle.

    Raises :class:`Stalled` when nothing arrives for ``patience`` cycles in a row.
    """
    def __init__(self, dut, name, clk, *, rng, stall=0.0, patience=10_000):
        self.port = Stream(dut, name)
        self.clk = clk
        self.rng = rng
        self.stall = stall
        self.patience = patience
        self.name = name
        self.received = []
        self.last_cycle = None
        self.port.ready.value = 0

    async def receive(self, count, counter=None):
        port = self.port
        target = len(self.received) + count
        waited = 0
        while len(self.received) < target:
            port.ready.value = 0 if (self.stall and self.rng.random() < self.stall) else 1
            await RisingEdge(self.clk)
            if port.valid.value and port.ready.value:
                self.received.append(int(port.payload.value))
                waited = 0
                if counter is not None:
                    self.last_cycle = counter.cycles
            else:
                waited += 1
                if waited > self.patience:
                    raise Stalled(f"{self.name}: nothing received for {self.patience} cycles; "
                                  f"got {len(self.received)} of {target}")
        port.ready.value = 0
        return self.received[-count:] if count else []

    def start(self, count, counter=None):
        return cocotb.start_soon(self.receive(count, counter))


class CycleCounter:
    """Cycle count of a clock of ``period_ns``, read from simulation time (no per-cycle Python)."""
    def __init__(self, period_ns):
        self.period_ns = period_ns

    @property
    def cycles(self):
        return round(get_sim_time(unit="ns") / self.period_ns)
