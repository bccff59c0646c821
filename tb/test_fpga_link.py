"""The serial protocol (fpga/protocol.py) and the host link (fpga/link.py) without hardware.

Frames are checked against the protocol's definition (CRC-16/CCITT-FALSE check value, field
layout), the response parser against chunked, noisy and corrupted streams, and :class:`Link`
against :class:`FakeBoard`, a byte-level Python model of the bridge whose programs run on the
instruction-level simulator (so :meth:`Link.execute` can be compared with the golden backend).
"""

import random
import struct

import numpy as np
import pytest

from tessera.fpga.link import Link, LinkError, LinkTimeout, RemoteError
from tessera.fpga.protocol import (MAX_BLOCK, REGISTER_SPACE, Command, FrameError,
                                   ResponseParser, Status, block_requests, crc16, decode_request,
                                   decode_response, encode_request, encode_response, raw_request)
from tessera.rtl.registers import ID_VALUE, PERF_COUNTERS, register_map
from tessera.sim import golden
from tessera.sim.compiler import compile_gemm
from tessera.sim.config import AcceleratorConfig
from tessera.sim.driver import GoldenBackend

CONFIG = AcceleratorConfig(rows=4, cols=4, scratchpad_depth=64, accumulator_depth=32,
                           bus_width=32)


# --- frames ---------------------------------------------------------------------------------------

def test_crc_check_value():
    """CRC-16/CCITT-FALSE's published check value."""
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_request_layout():
    frame = encode_request(Command.WRITE_MEM, 0x12345678, payload=b"\x01\x02\x03")
    assert frame[:8] == bytes([0xA5, 0x04, 0x78, 0x56, 0x34, 0x12, 0x03, 0x00])
    assert frame[8:11] == b"\x01\x02\x03"
    assert int.from_bytes(frame[11:], "little") == crc16(frame[1:11])
    assert decode_request(frame) == (Command.WRITE_MEM, 0x12345678, 3, b"\x01\x02\x03")


def test_response_round_trip(seed):
    rng = random.Random(seed)
    payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    frame = encode_response(Status.OK, Command.READ_MEM, payload)
    assert frame[0] == 0x5A and struct.unpack_from("<BBH", frame, 1) == (0, 3, len(payload))
    response = decode_response(frame)
    assert (response.status, response.command, response.payload) == \
        (Status.OK, Command.READ_MEM, payload)
    broken = bytearray(frame)
    bit = rng.randrange(8, 8 * len(frame))        # any bit after the sync byte
    broken[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(FrameError):
        decode_response(broken)


@pytest.mark.parametrize("args, match", [
    ((Command.READ_MEM, 0, 0), r"length must be an integer in \[1, 256\], not 0"),
    ((Command.READ_MEM, 0, MAX_BLOCK + 1), r"length must be .*not 257"),
    ((Command.READ_REG, 2, 4), "multiples of 4"),
    ((Command.READ_REG, 0, 6), "multiples of 4"),
    ((Command.READ_REG, REGISTER_SPACE - 4, 8), "register window"),
    ((Command.READ_MEM, -1, 4), r"address must be an integer in \[0, 4294967295\], not -1"),
    ((9, 0, 4), "command must be a Command, not 9"),
])
def test_encode_request_refuses_invalid_requests(args, match):
    with pytest.raises(ValueError, match=match):
        encode_request(*args)


def test_encode_request_payload_rules():
    with pytest.raises(ValueError, match="must have no payload"):
        encode_request(Command.READ_MEM, 0, 4, payload=b"x")
    with pytest.raises(ValueError, match="length of a WRITE_MEM must be the payload's 2 bytes"):
        encode_request(Command.WRITE_MEM, 0, 5, payload=b"xy")
    assert raw_request(0x7F, 1, 0) == b"\xa5\x7f\x01\x00\x00\x00\x00\x00" + \
        crc16(b"\x7f\x01\x00\x00\x00\x00\x00").to_bytes(2, "little")


def test_parser_finds_frames_in_a_noisy_chunked_stream(seed):
    """Responses between noise bytes, fed in random pieces: every good frame is found in order and
    a corrupted last one is reported as a FrameError. (After a corrupted frame the parser
    resynchronizes on the next sync byte, which may lie inside the damaged frame, so frames right
    after it are not guaranteed; the link is request/response and retries instead.)"""
    rng = random.Random(seed)
    frames, expected, noise = [], [], 0
    for i in range(20):
        junk = bytes(rng.choice([b for b in range(256) if b != 0x5A])
                     for _ in range(rng.randrange(3)))
        noise += len(junk)
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(10)))
        frame = bytearray(encode_response(Status(rng.randrange(7)), rng.randrange(1, 5), payload))
        if i == 19:
            frame[-1] ^= 0x10
            expected.append(FrameError)
        else:
            expected.append(decode_response(frame).__dict__)
        frames.append(junk + bytes(frame))
    stream = b"".join(frames)
    parser = ResponseParser()
    got = []
    at = 0
    while at < len(stream):
        step = rng.randrange(1, 12)
        got += parser.feed(stream[at:at + step])
        at += step
    assert [FrameError if isinstance(g, FrameError) else g.__dict__ for g in got] == expected
    # What is left can only be bytes of the damaged last frame, waiting for a frame to complete.
    assert len(parser.buffer) < len(frames[-1]), parser.buffer


def test_block_requests_split_at_max_block(seed):
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(2 * MAX_BLOCK + 17))
    parts = block_requests(Command.WRITE_MEM, 100, data)
    assert [(a, n) for a, n, _ in parts] == [(100, 256), (356, 256), (612, 17)]
    assert b"".join(decode_request(f)[3] for _, _, f in parts) == data
    assert [(a, n) for a, n, _ in block_requests(Command.READ_MEM, 0, 300)] == \
        [(0, 256), (256, 44)]
    assert block_requests(Command.READ_MEM, 0, 0) == []


# --- a Python model of the board ------------------------------------------------------------------

class FakeBoard:
    """Answers request frames like the bridge (byte stream in, byte stream out), with a memory
    and Tessera's registers; CTRL.start runs the program on the instruction-level simulator.
    ``corrupt_next`` corrupts that many incoming frames (one bit each) before it checks them."""

    def __init__(self, config, mem_size=1 << 16):
        self.config = config
        self.memory = bytearray(mem_size)
        self.regmap = register_map(**config.as_dict())
        self.regs = {r.offset: r.reset for r in self.regmap}
        self.pending = bytearray()
        self.output = bytearray()
        self.corrupt_next = 0
        self.frames = 0
        self.silent = False

    def write(self, data):
        self.pending += bytes(data)
        while True:
            start = self.pending.find(0xA5)
            if start < 0 or len(self.pending) - start < 8:
                return len(data)
            del self.pending[:start]
            command, address, length = struct.unpack_from("<BIH", self.pending, 1)
            size = 8 + (length if command in (2, 4) else 0) + 2
            if len(self.pending) < size:
                return len(data)
            frame = bytearray(self.pending[:size])
            del self.pending[:size]
            self.frames += 1
            if self.corrupt_next:
                self.corrupt_next -= 1
                frame[3] ^= 0x01
            if not self.silent:
                self.output += self._answer(bytes(frame))

    def read(self, size):
        data = bytes(self.output[:size])
        del self.output[:size]
        return data

    def _answer(self, frame):
        try:
            command, address, length, payload = decode_request(frame)
        except FrameError:
            return encode_response(Status.CRC_ERROR, frame[1])
        if command not in list(Command):
            return encode_response(Status.BAD_COMMAND, command)
        command = Command(command)
        if not 1 <= length <= MAX_BLOCK or (command.is_register and length % 4):
            return encode_response(Status.BAD_LENGTH, command)
        limit = REGISTER_SPACE if command.is_register else len(self.memory)
        if address + length > limit or (command.is_register and address % 4):
            return encode_response(Status.BAD_ADDRESS, command)
        if command == Command.WRITE_MEM:
            self.memory[address:address + length] = payload
            return encode_response(Status.OK, command)
        if command == Command.READ_MEM:
            return encode_response(Status.OK, command, self.memory[address:address + length])
        words = range(address, address + length, 4)
        if any(w not in self.regs for w in words):
            return encode_response(Status.BUS_ERROR, command)
        if command == Command.READ_REG:
            return encode_response(Status.OK, command,
                                   b"".join(self.regs[w].to_bytes(4, "little") for w in words))
        for i, w in enumerate(words):
            self._write_register(w, int.from_bytes(payload[4 * i:4 * i + 4], "little"))
        return encode_response(Status.OK, command)

    def _write_register(self, offset, value):
        name = self.regmap.at(offset).name
        if name == "STATUS":
            if value & self.regmap["STATUS"].pack(done=1):
                self.regs[offset] &= ~self.regmap["STATUS"].pack(done=1)
        elif name == "CTRL":
            if value & self.regmap["CTRL"].pack(start=1):
                self._run()
        elif name in ("PROGRAM_ADDR", "PROGRAM_LEN"):
            self.regs[offset] = value

    def _run(self):
        def reg(name):
            return self.regs[self.regmap[name].offset]
        result = GoldenBackend().execute(self.config, bytes(self.memory), reg("PROGRAM_ADDR"),
                                         reg("PROGRAM_LEN"))
        self.memory[:] = result.memory
        self.regs[self.regmap["ERROR_CODE"].offset] = result.error
        self.regs[self.regmap["ERROR_INFO"].offset] = result.error_index
        self.regs[self.regmap["STATUS"].offset] = self.regmap["STATUS"].pack(done=1)
        for i, name in enumerate(PERF_COUNTERS):
            self.regs[self.regmap[name].offset] = i + 1


# --- the link -------------------------------------------------------------------------------------

def test_memory_and_registers_through_the_link(seed):
    """Blocks of any size and alignment round-trip; registers are found by name."""
    rng = random.Random(seed)
    board = FakeBoard(CONFIG)
    link = Link(board, config=CONFIG)
    for _ in range(5):
        n = rng.randrange(1, 700)
        address = rng.randrange(0, len(board.memory) - n)
        data = bytes(rng.randrange(256) for _ in range(n))
        link.write_memory(address, data)
        assert bytes(board.memory[address:address + n]) == data
        assert link.read_memory(address, n) == data
    assert link.read_register("ID") == {"value": ID_VALUE}
    link.write_register("PROGRAM_ADDR", addr=0xABC0)
    assert link.read_register("PROGRAM_ADDR") == {"addr": 0xABC0}
    with pytest.raises(ValueError, match="register name must be one of .*not 'NOPE'"):
        link.read_register("NOPE")


def test_link_retries_only_what_was_not_executed():
    """CRC_ERROR answers are retried up to ``retries`` times, then raised; other error statuses
    are raised at once; silence raises LinkTimeout."""
    board = FakeBoard(CONFIG)
    link = Link(board, config=CONFIG, retries=2)
    board.corrupt_next = 2
    link.write_memory(16, b"abcd")
    assert link.retried == 2 and board.memory[16:20] == b"abcd"
    board.corrupt_next = 3
    with pytest.raises(RemoteError, match="CRC_ERROR to WRITE_MEM at 0x10") as info:
        link.write_memory(16, b"wxyz")
    assert info.value.status == Status.CRC_ERROR and board.memory[16:20] == b"abcd"
    with pytest.raises(RemoteError) as info:
        link.read_words(0xFF0, 1)
    assert info.value.status == Status.BUS_ERROR
    board.silent = True
    with pytest.raises(LinkTimeout, match="no response"):
        link.read_memory(0, 4)


def test_link_rejects_a_corrupted_response():
    class Garbling(FakeBoard):
        def read(self, size):
            data = bytearray(super().read(size))
            if len(data) > 5:
                data[5] ^= 0xFF
            return bytes(data)

    link = Link(Garbling(CONFIG), config=CONFIG)
    with pytest.raises(LinkError, match="corrupted response to READ_MEM"):
        link.read_memory(0, 16)


def test_execute_matches_the_golden_backend(seed):
    """Link.execute (write image, START, poll, read back) on the fake board gives the golden
    backend's result: the image, the error and the counters read back."""
    rng = np.random.default_rng(seed)
    m, k, n = (int(x) for x in rng.integers(1, 12, size=3))
    program = compile_gemm(CONFIG, m, k, n)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    image = bytearray(program.image)
    program.write_input(image, "a", a)
    program.write_input(image, "b", b)
    link = Link(FakeBoard(CONFIG), config=CONFIG)
    result = link.execute(CONFIG, image, program.program_addr, program.length)
    np.testing.assert_array_equal(program.read_output(result.memory, "c"), golden.gemm(a, b))
    expect = GoldenBackend().execute(CONFIG, bytes(image), program.program_addr, program.length)
    assert result.memory == expect.memory and result.error == expect.error == 0
    assert result.counters == {name: i + 1 for i, name in enumerate(PERF_COUNTERS)}
    with pytest.raises(ValueError, match="config must be the board's"):
        link.execute(AcceleratorConfig(), image, 0, 1)
