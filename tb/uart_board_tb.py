"""cocotb tests of :class:`~tessera.fpga.board_top.SimBoardTop` through its UART pins only.

The host is the real host software, :class:`tessera.fpga.link.Link`, running in a
``cocotb.task.bridge`` thread over :class:`~tessera.tb.uart_model.SimulatedSerial`; hand-made
frames (fpga/protocol.py) go straight to the :class:`~tessera.tb.uart_model.UartModel`.

Tests (design parameters in ``TESSERA_PARAMS``, randomness from ``COCOTB_RANDOM_SEED``):

* ``gemm``: runs one program through :meth:`Link.execute` (image written over the UART, START,
  STATUS polled, image read back). Request ``.npz`` (path in ``TESSERA_REQUEST``): ``image``,
  ``program_addr``, ``length``; response ``.npz`` (``TESSERA_RESPONSE``): ``image``, ``error``,
  ``error_index``, ``counter_names``/``counter_values``, ``id`` (the ID register), ``retried``.
* ``corrupted_frames``: frames with a flipped payload bit, a wrong CRC, a bad stop bit, an
  unknown command, bad lengths and addresses, and an unmapped register each get their error
  status and change nothing; bytes before the sync byte are ignored.
* ``truncated_frames``: a frame cut off after a random number of bytes gets TIMEOUT, not before
  the bridge's timeout has passed, and changes nothing; the next frame works.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import bridge
from cocotb.triggers import ClockCycles, Timer
from cocotb.utils import get_sim_time

from tessera.fpga.link import Link, RemoteError
from tessera.fpga.protocol import (MAX_BLOCK, Command, ResponseParser, Status, encode_request,
                                   raw_request)
from tessera.rtl.registers import ID_VALUE
from tessera.sim.config import AcceleratorConfig

from .uart_model import SimulatedSerial, UartModel

PERIOD_NS = 10
CONFIG_KEYS = ("rows", "cols", "scratchpad_depth", "accumulator_depth", "bus_width")


class Board:
    """The simulated board: clock, reset, UART model, a :class:`Link` and raw-frame helpers."""

    def __init__(self, dut):
        self.dut = dut
        self.params = json.loads(os.environ["TESSERA_PARAMS"])
        self.config = AcceleratorConfig(**{k: self.params[k] for k in CONFIG_KEYS})
        self.mem_size = self.params["mem_size"]
        self.timeout_cycles = self.params["timeout"]
        self.bit_ns = self.params["divisor"] * PERIOD_NS
        self.uart = UartModel(dut.rx, dut.tx, dut.clk, self.bit_ns)
        # A response starts within the bridge's timeout plus a register block's execution.
        self.response_ns = (self.timeout_cycles + 4000) * PERIOD_NS
        self.serial = SimulatedSerial(self.uart, self.response_ns + 20 * self.bit_ns)
        self.link = Link(self.serial, config=self.config, retries=0)
        self.rng = random.Random(cocotb.RANDOM_SEED)

    async def start(self):
        cocotb.start_soon(Clock(self.dut.clk, PERIOD_NS, unit="ns").start())
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)
        self.uart.start()

    async def call(self, method, *args, **kwargs):
        """``self.link.method(*args, **kwargs)`` in a bridge thread."""
        return await bridge(getattr(self.link, method))(*args, **kwargs)

    async def exchange(self, frame, **send_options):
        """Send a raw ``frame`` and return the one response to it."""
        stray = bytes(self.uart.received)
        assert not stray, f"stray bytes before a request: {stray!r}"
        await self.uart.send(frame, **send_options)
        return await self.response()

    async def response(self):
        parser = ResponseParser()
        while True:
            arrived = await self.uart.wait_bytes(1, self.response_ns)
            assert arrived, "no response from the bridge"
            done = parser.feed(self.uart.take(len(self.uart.received)))
            if done:
                assert len(done) == 1 and not isinstance(done[0], Exception), done
                assert not parser.buffer and not self.uart.received, "bytes after the response"
                return done[0]


def _expect(response, status, command, what):
    assert response.status == status, f"{what}: expected {status.name}, got {response!r}"
    assert response.command == int(command), f"{what}: command echo {response!r}"
    assert response.payload == b"", f"{what}: an error response carries no payload"


@cocotb.test()
async def gemm(dut):
    board = Board(dut)
    await board.start()
    request = np.load(os.environ["TESSERA_REQUEST"])
    ident = (await board.call("read_register", "ID"))["value"]
    result = await board.call("execute", board.config, request["image"].tobytes(),
                              int(request["program_addr"]), int(request["length"]))
    np.savez(os.environ["TESSERA_RESPONSE"],
             image=np.frombuffer(result.memory, np.uint8), error=result.error,
             error_index=result.error_index, counter_names=list(result.counters),
             counter_values=list(result.counters.values()), id=ident,
             retried=board.link.retried)


@cocotb.test()
async def corrupted_frames(dut):
    board = Board(dut)
    await board.start()
    rng = board.rng
    base = rng.randrange(0, board.mem_size - 64)
    original = bytes(rng.randrange(256) for _ in range(48))
    await board.call("write_memory", base, original)
    program_addr = board.link.registers["PROGRAM_ADDR"].offset
    await board.call("write_register", "PROGRAM_ADDR", addr=0x1234)

    async def unchanged(what):
        memory = await board.call("read_memory", base, len(original))
        assert memory == original, f"{what} changed the memory: {memory.hex()} != {original.hex()}"
        value = (await board.call("read_register", "PROGRAM_ADDR"))["addr"]
        assert value == 0x1234, f"{what} changed PROGRAM_ADDR to {value:#x}"

    new = bytes(rng.randrange(256) for _ in range(len(original)))
    frame = bytearray(encode_request(Command.WRITE_MEM, base, payload=new))
    bit = rng.randrange(8 * len(new))
    frame[8 + bit // 8] ^= 1 << (bit % 8)
    _expect(await board.exchange(frame), Status.CRC_ERROR, Command.WRITE_MEM,
            f"payload bit {bit} flipped")
    await unchanged("a frame with a flipped payload bit")

    frame = bytearray(encode_request(Command.WRITE_REG, program_addr,
                                     payload=(0xBEEF).to_bytes(4, "little")))
    frame[-rng.randrange(1, 3)] ^= 1 << rng.randrange(8)
    _expect(await board.exchange(frame), Status.CRC_ERROR, Command.WRITE_REG, "CRC byte flipped")
    await unchanged("a register write with a wrong CRC")

    frame = encode_request(Command.WRITE_MEM, base, payload=new)
    where = rng.randrange(1, len(frame))
    _expect(await board.exchange(frame, bad_stop={where}), Status.CRC_ERROR, Command.WRITE_MEM,
            f"byte {where} with a low stop bit")
    await unchanged("a frame with a bad stop bit")

    size = board.mem_size
    checks = [
        (raw_request(0x7F, base, 4), Status.BAD_COMMAND, "unknown command 0x7f"),
        (raw_request(0x00, base, 4), Status.BAD_COMMAND, "command 0"),
        (raw_request(Command.READ_MEM, base, 0), Status.BAD_LENGTH, "length 0"),
        (raw_request(Command.READ_MEM, base, MAX_BLOCK + 1), Status.BAD_LENGTH,
         f"read of {MAX_BLOCK + 1} bytes"),
        (raw_request(Command.WRITE_MEM, base, MAX_BLOCK + 3, bytes(MAX_BLOCK + 3)),
         Status.BAD_LENGTH, f"write of {MAX_BLOCK + 3} bytes"),
        (raw_request(Command.WRITE_REG, program_addr, 6, bytes(6)), Status.BAD_LENGTH,
         "register write of 6 bytes"),
        (raw_request(Command.WRITE_MEM, size - 3, 4, b"\xff" * 4), Status.BAD_ADDRESS,
         "memory write across the end"),
        (raw_request(Command.READ_MEM, 0xFFFFFFF0, 32), Status.BAD_ADDRESS,
         "memory read wrapping at 2**32"),
        (raw_request(Command.WRITE_REG, program_addr + 2, 4, bytes(4)), Status.BAD_ADDRESS,
         "unaligned register write"),
        (raw_request(Command.READ_REG, 0xFFC, 8), Status.BAD_ADDRESS,
         "register read beyond the window"),
    ]
    for frame, status, what in checks:
        _expect(await board.exchange(frame), status, frame[1], what)
    await unchanged("the invalid requests")

    # An unmapped register answers SLVERR: executed, but BUS_ERROR and no data.
    response = await board.exchange(encode_request(Command.READ_REG, 0xFF0, 8))
    _expect(response, Status.BUS_ERROR, Command.READ_REG, "read of unmapped registers")
    try:
        await board.call("read_words", 0xFF0, 1)
    except RemoteError as error:
        assert error.status == Status.BUS_ERROR, error
    else:
        raise AssertionError("Link.read_words of an unmapped register did not raise")

    # Noise before the sync byte is skipped; the frame after it executes.
    noise = bytes(rng.choice([b for b in range(256) if b != 0xA5]) for _ in range(5))
    response = await board.exchange(noise + encode_request(Command.WRITE_MEM, base, payload=new))
    assert response.status == Status.OK, f"a frame after noise: {response!r}"
    memory = await board.call("read_memory", base, len(new))
    assert memory == new, f"a frame after noise wrote {memory.hex()}, not {new.hex()}"
    ident = (await board.call("read_register", "ID"))["value"]
    assert ident == ID_VALUE, f"ID reads {ident:#x}"


@cocotb.test()
async def truncated_frames(dut):
    board = Board(dut)
    await board.start()
    rng = board.rng
    base = rng.randrange(0, board.mem_size - 64)
    original = bytes(rng.randrange(256) for _ in range(32))
    await board.call("write_memory", base, original)
    new = bytes(rng.randrange(256) for _ in range(len(original)))
    frame = encode_request(Command.WRITE_MEM, base, payload=new)
    cuts = sorted({1, 2, 8, len(frame) - 1, rng.randrange(2, len(frame))})
    for cut in cuts:
        before = len(board.uart.start_times)
        await board.uart.send(frame[:cut])
        sent = get_sim_time("ns")
        response = await board.response()
        _expect(response, Status.TIMEOUT, Command.WRITE_MEM if cut > 1 else 0,
                f"frame cut after {cut} of {len(frame)} bytes")
        # The response starts one timeout after the last byte was taken (its stop bit's
        # middle, half a bit before `sent`), give or take a bit time.
        waited = board.uart.start_times[before] - sent
        timeout_ns = board.timeout_cycles * PERIOD_NS
        assert timeout_ns - board.bit_ns <= waited <= timeout_ns + board.bit_ns, \
            f"TIMEOUT response {waited} ns after the last byte, timeout {timeout_ns} ns"
    memory = await board.call("read_memory", base, len(original))
    assert memory == original, f"a frame cut after one of {cuts} bytes changed the memory"
    # A frame cut short and then continued after a pause shorter than the timeout still works.
    half = len(frame) // 2
    await board.uart.send(frame[:half])
    await Timer(board.timeout_cycles * PERIOD_NS // 2, "ns")
    await board.uart.send(frame[half:])
    response = await board.response()
    assert response.status == Status.OK, f"a frame with a short pause: {response!r}"
    memory = await board.call("read_memory", base, len(new))
    assert memory == new, "the frame after the truncated ones did not write"
