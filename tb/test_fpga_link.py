"""The serial protocol (fpga/protocol.py), the host link (fpga/link.py) and the driver's board
backend without hardware.

Frames are checked against the protocol's definition (CRC-16/CCITT-FALSE check value, field
layout), the response parser against chunked, noisy and corrupted streams, and :class:`Link`
against :class:`FakeBoard`, a byte-level Python model of the bridge whose programs run on the
instruction-level simulator (so :meth:`Link.execute` can be compared with the golden backend).
The driver's ``"board"`` backend (and ``tessera bench/demo --backend board``) talks to the same
:class:`FakeBoard` served on a local TCP socket, opened by pyserial as ``socket://127.0.0.1:PORT``
(:class:`ServedBoard`): the real pyserial path, the real framing code on both sides.
"""

import dataclasses
import json
import random
import re
import socket
import struct
import sys
import threading

import numpy as np
import pytest

from tessera.fpga.link import (ConfigMismatch, Link, LinkError, LinkTimeout, RemoteError,
                               open_serial)
from tessera.fpga.protocol import (MAX_BLOCK, REGISTER_SPACE, Command, FrameError,
                                   ResponseParser, Status, block_requests, crc16, decode_request,
                                   decode_response, encode_request, encode_response, raw_request)
from tessera.rtl.isa import Opcode, ProgramError, assemble, encode
from tessera.rtl.registers import DEFAULT_CONFIG, ID_VALUE, PERF_COUNTERS, register_map
from tessera.sim import golden
from tessera.sim.cli import main
from tessera.sim.compiler import compile_dense, compile_gemm
from tessera.sim.config import AcceleratorConfig
from tessera.sim.driver import AcceleratorError, BoardBackend, Driver, GoldenBackend
from tessera.sim.layers import Dense
from tessera.tb.program_gen import gemm_image

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
        self.regmap = register_map(**{name: getattr(config, name) for name in DEFAULT_CONFIG})
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
        self.regs[self.regmap["STATUS"].offset] = self.regmap["STATUS"].pack(
            done=1, error=int(result.error != 0))
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
    program, a, b, image = gemm_image(CONFIG, rng, m, k, n)
    link = Link(FakeBoard(CONFIG), config=CONFIG)
    result = link.execute(CONFIG, image, program.program_addr, program.length)
    np.testing.assert_array_equal(program.read_output(result.memory, "c"), golden.gemm(a, b))
    expect = GoldenBackend().execute(CONFIG, bytes(image), program.program_addr, program.length)
    assert result.memory == expect.memory and result.error == expect.error == 0
    assert result.counters == {name: i + 1 for i, name in enumerate(PERF_COUNTERS)}
    with pytest.raises(ValueError, match="config must be the board's"):
        link.execute(AcceleratorConfig(), image, 0, 1)


def test_read_config_and_connect():
    """The configuration registers read back as an AcceleratorConfig; connect() refuses a board
    of another configuration, naming both; a board whose ID is not Tessera's is refused."""
    board = FakeBoard(CONFIG)
    assert Link(board).read_config() == CONFIG           # any map reaches ID .. BUS_WIDTH
    Link(board, config=CONFIG).connect(CONFIG)
    other = dataclasses.replace(CONFIG, rows=6, cols=6)
    with pytest.raises(ConfigMismatch, match=r"board's accelerator is 4x4 .* compiled for 6x6 "
                       r".*rows 4 on the board, 6 expected; cols 4 on the board, 6 expected"):
        Link(board, config=other).connect(other)
    with pytest.raises(ValueError, match="config must be the board's"):
        Link(board, config=CONFIG).connect(other)
    board.regs[0] = 0x12345678
    with pytest.raises(LinkError, match="ID register reads 0x12345678, not Tessera's 0x54535241"):
        Link(board, config=CONFIG).read_config()


def test_execute_refuses_an_image_larger_than_the_board_memory():
    program = compile_gemm(CONFIG, 20, 20, 20)
    link = Link(FakeBoard(CONFIG, mem_size=1024), config=CONFIG)
    assert len(program.image) > 1024
    with pytest.raises(LinkError, match=rf"memory image \({len(program.image)} bytes\) does not "
                       r"fit the board's memory: the board refused a write at 0x400"):
        link.execute(CONFIG, program.image, program.program_addr, program.length)


# --- the driver's board backend, through pyserial -------------------------------------------------

class ServedBoard:
    """A :class:`FakeBoard` behind a TCP socket on 127.0.0.1; ``url`` (``socket://...``) opens
    it through pyserial. One connection at a time; an exception in the server thread is raised
    again by :meth:`close`."""

    def __init__(self, board):
        self.board = board
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.error = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="served-board", daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            while not self.stop.is_set():
                try:
                    conn, _ = self.listener.accept()
                except socket.timeout:
                    continue
                self.connections += 1
                with conn:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conn.settimeout(0.05)
                    while not self.stop.is_set():
                        try:
                            data = conn.recv(4096)
                        except socket.timeout:
                            continue
                        if not data:
                            break
                        self.board.write(data)
                        answer = self.board.read(len(self.board.output))
                        if answer:
                            conn.sendall(answer)
        except BaseException as error:      # noqa: B036 - handed to the test by close()
            self.error = error

    def close(self):
        self.stop.set()
        self.thread.join()
        self.listener.close()
        if self.error is not None:
            raise self.error


@pytest.fixture
def serve():
    """``serve(config, **fake_board_options)``: a :class:`ServedBoard`, closed after the test."""
    served = []

    def start(config=CONFIG, **options):
        served.append(ServedBoard(FakeBoard(config, **options)))
        return served[-1]

    yield start
    for board in served:
        board.close()


def _requant(rng, n):
    multipliers, shifts = golden.quantize_multipliers(rng.uniform(2e-3, 1e-2, size=n))
    zp = int(rng.integers(-10, 10))
    return dict(multiplier=multipliers, shift=shifts, output_zero_point=zp, act_min=zp)


def test_open_serial_opens_pyserial_urls(serve):
    board = serve()
    port = open_serial(board.url, timeout=0.5)
    try:
        assert type(port).__module__.startswith("serial."), type(port)
        assert Link(port, config=CONFIG).read_register("ID") == {"value": ID_VALUE}
    finally:
        port.close()


def test_board_backend_gemm_and_dense_equal_golden(serve, seed):
    """A GEMM and a dense layer through Driver(backend="board", port=...): results equal
    golden.gemm / the layer's reference and the golden backend's; the memory image read back
    from the board equals the golden backend's byte for byte; counters are the board's."""
    rng = np.random.default_rng(seed)
    served = serve()
    driver = Driver(CONFIG, backend="board", port=served.url, timeout=0.5)
    reference = Driver(CONFIG, backend="golden")
    try:
        assert isinstance(driver.backend, BoardBackend)
        assert type(driver.backend.serial).__module__.startswith("serial.")
        m, k, n = (int(x) for x in rng.integers(1, 20, size=3))
        a = rng.integers(-128, 128, (m, k), dtype=np.int8)
        b = rng.integers(-128, 128, (k, n), dtype=np.int8)
        c = driver.gemm(a, b)
        assert c.dtype == np.int32 and np.array_equal(c, golden.gemm(a, b)), (m, k, n)
        assert np.array_equal(c, reference.gemm(a, b))
        assert driver.reports[0].counters == {name: i + 1 for i, name in enumerate(PERF_COUNTERS)}

        program = compile_gemm(CONFIG, m, k, n)
        image = bytearray(program.image)
        program.write_input(image, "a", a)
        program.write_input(image, "b", b)
        got = driver.backend.execute(CONFIG, bytes(image), program.program_addr, program.length)
        expect = GoldenBackend().execute(CONFIG, bytes(image), program.program_addr,
                                         program.length)
        assert got.memory == expect.memory and (got.error, got.error_index) == (0, 0)

        rows, inputs, outputs = (int(x) for x in rng.integers(1, 24, size=3))
        layer = Dense(rng.integers(-128, 128, (inputs, outputs), dtype=np.int8),
                      rng.integers(-500, 500, outputs, dtype=np.int32), **_requant(rng, outputs))
        x = rng.integers(-128, 128, (rows, inputs), dtype=np.int8)
        y = driver.dense(layer, x)
        assert np.array_equal(y, layer.reference(x)) and np.array_equal(y, reference.dense(layer, x))
        program = compile_dense(CONFIG, layer, rows)
        image = bytearray(program.image)
        program.write_input(image, "x", x)
        expect = GoldenBackend().execute(CONFIG, bytes(image), program.program_addr,
                                         program.length)
        assert bytes(served.board.memory[:len(image)]) == expect.memory
        assert served.connections == 1 and driver.backend.link.retried == 0
    finally:
        driver.backend.close()


def test_board_backend_reports_program_errors_like_golden(serve, seed):
    """A program with an out-of-range LOAD at a random index stops with the same ProgramError
    at the same instruction on the board as on the golden backend."""
    rng = random.Random(seed)
    program = compile_gemm(CONFIG, 5, 6, 7)
    index = rng.randrange(program.length - 1)
    bad = encode(Opcode.LOAD, buffer=0, sram_row=CONFIG.scratchpad_depth - 1, rows=2,
                 row_bytes=1, dram_addr=0, dram_stride=0)
    words = list(program.instructions)
    words[index] = bad
    image = bytearray(program.image)
    start = program.program_addr + 16 * index
    image[start:start + 16] = assemble([bad])
    program = dataclasses.replace(program, instructions=words, image=image)
    inputs = {"a": np.ones((5, 6), np.int8), "b": np.ones((6, 7), np.int8)}
    errors = []
    served = serve()
    for backend, options in (("golden", {}), ("board", {"port": served.url})):
        driver = Driver(CONFIG, backend=backend, **options)
        with pytest.raises(AcceleratorError) as info:
            driver.run(program, inputs)
        report = driver.run(program, inputs, check=False)
        errors.append((info.value.code, info.value.index, report.error, report.error_index))
        if backend == "board":
            driver.backend.close()
    assert errors[0] == errors[1], errors
    assert errors[0][0] != ProgramError.NONE, errors


def test_board_backend_refuses_a_board_of_another_configuration(serve):
    """The check happens when the driver is created: a 6x6 board for a 4x4 driver is refused
    with both configurations named, and the port is closed again."""
    served = serve(dataclasses.replace(CONFIG, rows=6, cols=6))
    with pytest.raises(ConfigMismatch, match=r"board's accelerator is 6x6 \(rows=6, cols=6, "
                       r"scratchpad_depth=64.* compiled for 4x4 \(rows=4, cols=4, .*rows 6 on the "
                       r"board, 4 expected"):
        Driver(CONFIG, backend="board", port=served.url)
    with pytest.raises(ConfigMismatch):     # a Link passed as the backend is checked the same way
        Driver(CONFIG, backend=Link(FakeBoard(served.board.config), config=CONFIG))
    backend = BoardBackend(port=served.url)
    assert backend.read_config() == served.board.config
    backend.close()


def test_board_backend_option_errors(monkeypatch):
    with pytest.raises(ValueError, match="a board backend needs port"):
        Driver(CONFIG, backend="board")
    with pytest.raises(TypeError, match="port must be a serial device name"):
        Driver(CONFIG, backend="board", port=0)
    with pytest.raises(ValueError, match="baud must be a positive integer, not 0"):
        Driver(CONFIG, backend="board", port="/dev/ttyUSB0", baud=0)
    with pytest.raises(OSError, match="tessera-no-such-port"):    # pyserial's SerialException
        Driver(CONFIG, backend="board", port="/dev/tessera-no-such-port")
    monkeypatch.setitem(sys.modules, "serial", None)               # pyserial not installed
    with pytest.raises(ImportError, match=r"pip install pyserial"):
        Driver(CONFIG, backend="board", port="/dev/ttyUSB0")


def test_command_line_board_backend(serve, seed, capsys):
    """tessera bench gemm / demo --backend board --port URL: the configuration is the board's,
    results bit-exact; a conflicting --rows, a missing --port and --port without the board
    backend are one-line errors (exit status 2)."""
    served = serve()
    argv = ["bench", "gemm", "--m", "9", "--n", "5", "--k", "11", "--backend", "board",
            "--port", served.url, "--seed", str(seed), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bit_exact"] and (result["rows"], result["cols"], result["bus_width"]) == \
        (4, 4, 32) and result["backend"] == "board"
    assert main(["demo", "--backend", "board", "--port", served.url, "--images", "6",
                 "--batch", "3"]) == 0
    out = capsys.readouterr().out
    assert f"backend: board on {served.url} (115200 baud)" in out and "RESULT: PASS" in out, out
    for args, message in [
        (["--rows", "8", "--port", served.url], "board's accelerator is 4x4 .* compiled for 8x4"),
        ([], "--backend board needs --port"),
    ]:
        assert main(["bench", "gemm", "--m", "2", "--n", "2", "--k", "2", "--backend", "board",
                     *args]) == 2
        err = capsys.readouterr().err
        assert re.search(message, err) and err.count("\n") == 1, err
    assert main(["bench", "gemm", "--m", "2", "--n", "2", "--k", "2", "--backend", "golden",
                 "--port", served.url]) == 2
    assert "--port applies only to --backend board" in capsys.readouterr().err
