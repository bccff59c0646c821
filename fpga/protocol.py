"""The serial link protocol between a host and the UART bridge on a board (docs/fpga.md).

This module is the one definition of the protocol: constants, the CRC and the frame layouts.
The gateware (fpga/uart_bridge.py) takes its constants from here; the host (fpga/link.py) and
the testbenches build and parse frames with the functions here. It is pure Python (no Amaranth,
no serial port), so frames can travel over any byte stream.

Request (host -> board), all integers little-endian::

    0xA5 | command | address (4) | length (2) | payload (length bytes, writes only) | crc (2)

Response (board -> host)::

    0x5A | status | command (echo) | length (2) | payload (length bytes) | crc (2)

``crc`` is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final
XOR; "123456789" gives 0x29B1) over every byte after the sync byte up to the end of the payload.

Commands (``address`` and ``length`` in bytes, ``1 <= length <=`` :data:`MAX_BLOCK`):

* ``READ_REG`` / ``WRITE_REG``: ``length / 4`` consecutive 32-bit registers from byte offset
  ``address`` of the register port (``address`` and ``length`` multiples of 4, inside the
  :data:`REGISTER_SPACE` bytes of the register window), one AXI4-Lite access each, in address
  order.
* ``READ_MEM`` / ``WRITE_MEM``: ``length`` bytes of the on-chip memory from byte ``address``
  (any alignment; ``address + length <=`` the memory size).

The board checks a request completely before it acts on it (a write's payload is buffered until
its CRC has been checked): a request that is corrupted, truncated (a gap of more than the
bridge's timeout between two of its bytes) or invalid is answered with an error :class:`Status`
and has no effect. A successful read answers with the data as payload; every other response has
no payload. A complete frame is checked for CRC_ERROR, BAD_COMMAND, BAD_LENGTH, BAD_ADDRESS in
this order and answered with the first that applies; a frame that stops arriving gets TIMEOUT.
"""

import enum
import struct

__all__ = ["SYNC_REQUEST", "SYNC_RESPONSE", "MAX_BLOCK", "REGISTER_SPACE", "REQUEST_HEADER",
           "RESPONSE_HEADER", "CRC_BYTES", "CRC_POLYNOMIAL", "CRC_INIT", "Command", "Status",
           "FrameError", "Response",
           "crc16", "crc16_update", "raw_request", "encode_request", "encode_response",
           "decode_request", "decode_response", "ResponseParser", "block_requests"]

#: First byte of every request frame.
SYNC_REQUEST = 0xA5
#: First byte of every response frame.
SYNC_RESPONSE = 0x5A
#: Largest ``length`` of one request: the bridge's payload buffer, in bytes.
MAX_BLOCK = 256
#: Bytes of the register window reachable with register commands (the 12-bit AXI4-Lite port).
REGISTER_SPACE = 1 << 12
#: Bytes of a request before its payload: sync, command, address (4), length (2).
REQUEST_HEADER = 8
#: Bytes of a response before its payload: sync, status, command, length (2).
RESPONSE_HEADER = 5
#: Bytes of the CRC at the end of every frame.
CRC_BYTES = 2

#: CRC-16/CCITT-FALSE generator polynomial and initial register value.
CRC_POLYNOMIAL = 0x1021
CRC_INIT = 0xFFFF


class Command(enum.IntEnum):
    """Request commands."""
    READ_REG = 0x01     # read length/4 registers from address
    WRITE_REG = 0x02    # write length/4 registers (payload: 32-bit words) from address
    READ_MEM = 0x03     # read length bytes of memory from address
    WRITE_MEM = 0x04    # write the payload to memory at address

    @property
    def is_write(self):
        return self in (Command.WRITE_REG, Command.WRITE_MEM)

    @property
    def is_register(self):
        return self in (Command.READ_REG, Command.WRITE_REG)


class Status(enum.IntEnum):
    """Response status (the checks of a complete frame are made in this order)."""
    OK = 0              # executed; a read carries its data
    CRC_ERROR = 1       # CRC mismatch, or a byte of the request had a bad stop bit; not executed
    TIMEOUT = 2         # the request stopped arriving before its end (truncated); not executed
    BAD_COMMAND = 3     # unknown command byte; not executed
    BAD_LENGTH = 4      # length 0, above MAX_BLOCK, or not a multiple of 4 (registers)
    BAD_ADDRESS = 5     # block outside the memory or the register window, or unaligned register
    BUS_ERROR = 6       # executed, but a register access answered SLVERR/DECERR


class FrameError(ValueError):
    """A byte sequence is not a well-formed frame (wrong sync byte, length or CRC)."""


def crc16_update(crc, byte):
    """CRC-16/CCITT-FALSE register ``crc`` after one more ``byte`` (MSB first)."""
    crc ^= byte << 8
    for _ in range(8):
        crc = ((crc << 1) ^ CRC_POLYNOMIAL if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def crc16(data, crc=CRC_INIT):
    """CRC-16/CCITT-FALSE of ``data`` (bytes)."""
    for byte in bytes(data):
        crc = crc16_update(crc, byte)
    return crc


def _with_crc(sync, body):
    return bytes([sync]) + body + crc16(body).to_bytes(CRC_BYTES, "little")


def _check_field(name, value, bits):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise ValueError(f"{name} must be an integer in [0, {(1 << bits) - 1}], not {value!r}")
    return value


def raw_request(command, address, length, payload=b""):
    """A request frame with any field values (for tests of the board's checks): ``command``
    (0..255), ``address`` (u32), ``length`` (u16) and ``payload`` are sent as given."""
    _check_field("command", int(command), 8)
    _check_field("address", address, 32)
    _check_field("length", length, 16)
    return _with_crc(SYNC_REQUEST, struct.pack("<BIH", int(command), address, length)
                     + bytes(payload))


def encode_request(command, address, length=None, payload=b""):
    """A valid request frame.

    Read commands take ``length`` and no payload; write commands take ``payload`` (its length is
    the frame's ``length``). Raises ValueError for a request the board would refuse for its
    command, length or register alignment (the memory size is the board's to check).
    """
    try:
        command = Command(command)
    except ValueError:
        raise ValueError(f"command must be a Command, not {command!r}") from None
    payload = bytes(payload)
    if command.is_write:
        if length is not None and length != len(payload):
            raise ValueError(f"length of a {command.name} must be the payload's {len(payload)} "
                             f"bytes, not {length!r}")
        length = len(payload)
    elif payload:
        raise ValueError(f"a {command.name} request must have no payload, not {len(payload)} "
                         f"bytes")
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_BLOCK:
        raise ValueError(f"length must be an integer in [1, {MAX_BLOCK}], not {length!r}")
    _check_field("address", address, 32)
    if command.is_register:
        if length % 4 or address % 4:
            raise ValueError(f"register address and length must be multiples of 4, not "
                             f"address {address:#x} and length {length}")
        if address + length > REGISTER_SPACE:
            raise ValueError(f"registers {address:#x} .. {address + length - 1:#x} must lie in "
                             f"the {REGISTER_SPACE}-byte register window")
    return raw_request(command, address, length, payload)


def decode_request(frame):
    """``(command, address, length, payload)`` of a complete request frame (for board models
    and tests). Raises :class:`FrameError` if the sync byte, the size or the CRC is wrong."""
    frame = bytes(frame)
    if len(frame) < REQUEST_HEADER + CRC_BYTES or frame[0] != SYNC_REQUEST:
        raise FrameError(f"a request must start with {SYNC_REQUEST:#04x} and have at least "
                         f"{REQUEST_HEADER + CRC_BYTES} bytes, not {frame[:REQUEST_HEADER]!r}")
    command, address, length = struct.unpack_from("<BIH", frame, 1)
    payload = frame[REQUEST_HEADER:-CRC_BYTES]
    _check_crc(frame)
    return command, address, length, payload


def encode_response(status, command, payload=b""):
    """A response frame (as the board sends it)."""
    payload = bytes(payload)
    _check_field("status", int(status), 8)
    _check_field("command", int(command), 8)
    _check_field("payload length", len(payload), 16)
    return _with_crc(SYNC_RESPONSE, struct.pack("<BBH", int(status), int(command), len(payload))
                     + payload)


def _check_crc(frame):
    body, got = frame[1:-CRC_BYTES], int.from_bytes(frame[-CRC_BYTES:], "little")
    if crc16(body) != got:
        raise FrameError(f"CRC mismatch: frame says {got:#06x}, contents give {crc16(body):#06x}")


class Response:
    """A decoded response: ``status`` (a :class:`Status`, or the int if unknown), ``command``
    (the echoed command byte) and ``payload`` (bytes)."""

    def __init__(self, status, command, payload):
        try:
            self.status = Status(status)
        except ValueError:
            self.status = status
        self.command = command
        self.payload = bytes(payload)

    def __repr__(self):
        name = getattr(self.status, "name", self.status)
        return f"Response(status={name}, command={self.command:#04x}, payload={self.payload!r})"


def decode_response(frame):
    """The :class:`Response` in one complete response ``frame``. Raises :class:`FrameError` if the
    sync byte, the length field or the CRC is wrong."""
    frame = bytes(frame)
    if len(frame) < RESPONSE_HEADER + CRC_BYTES or frame[0] != SYNC_RESPONSE:
        raise FrameError(f"a response must start with {SYNC_RESPONSE:#04x} and have at least "
                         f"{RESPONSE_HEADER + CRC_BYTES} bytes, not {frame[:RESPONSE_HEADER]!r}")
    status, command, length = struct.unpack_from("<BBH", frame, 1)
    if len(frame) != RESPONSE_HEADER + length + CRC_BYTES:
        raise FrameError(f"a response with length {length} must have "
                         f"{RESPONSE_HEADER + length + CRC_BYTES} bytes, not {len(frame)}")
    _check_crc(frame)
    return Response(status, command, frame[RESPONSE_HEADER:-CRC_BYTES])


class ResponseParser:
    """Finds response frames in a byte stream fed piece by piece.

    :meth:`feed` takes any bytes and returns, in stream order, a :class:`Response` for each frame
    completed by them and a :class:`FrameError` (returned, not raised) for each frame whose CRC
    is wrong; after a bad frame the search for the next sync byte starts after its sync byte.
    Bytes before a sync byte are skipped (counted in ``skipped``).
    """

    def __init__(self):
        self.buffer = bytearray()
        self.skipped = 0

    def needed(self):
        """Bytes still needed to complete the frame in progress (at least 1)."""
        if not self.buffer:
            return RESPONSE_HEADER + CRC_BYTES
        if len(self.buffer) < RESPONSE_HEADER:
            return RESPONSE_HEADER + CRC_BYTES - len(self.buffer)
        length = int.from_bytes(self.buffer[3:5], "little")
        return max(1, RESPONSE_HEADER + length + CRC_BYTES - len(self.buffer))

    def feed(self, data):
        self.buffer += bytes(data)
        done = []
        while True:
            start = self.buffer.find(SYNC_RESPONSE)
            if start < 0:
                self.skipped += len(self.buffer)
                self.buffer.clear()
                return done
            self.skipped += start
            del self.buffer[:start]
            if len(self.buffer) < RESPONSE_HEADER:
                return done
            total = RESPONSE_HEADER + int.from_bytes(self.buffer[3:5], "little") + CRC_BYTES
            if len(self.buffer) < total:
                return done
            frame = bytes(self.buffer[:total])
            try:
                done.append(decode_response(frame))
            except FrameError as error:
                done.append(error)
                del self.buffer[:1]
                continue
            del self.buffer[:total]


def block_requests(command, address, data_or_length):
    """Requests covering a block of any size with frames of at most :data:`MAX_BLOCK` bytes.

    ``command`` is a :class:`Command`; for a write ``data_or_length`` is the data (bytes), for a
    read the number of bytes. Returns ``[(address, length, frame), ...]`` in address order.
    """
    command = Command(command)
    if command.is_write:
        data = bytes(data_or_length)
        total = len(data)
    else:
        total = data_or_length
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"length must be a non-negative integer, not {total!r}")
    step = MAX_BLOCK
    requests = []
    for offset in range(0, total, step):
        n = min(step, total - offset)
        if command.is_write:
            frame = encode_request(command, address + offset, payload=data[offset:offset + n])
        else:
            frame = encode_request(command, address + offset, n)
        requests.append((address + offset, n, frame))
    return requests
