"""UART bridge: the serial protocol of fpga/protocol.py on a UART, executed on an AXI4-Lite
register port and a memory word port.

::

    rx ─► UartRx ─► receive frame ─► check ─► execute ─┬─ csr (AXI4-Lite manager) ─► registers
                    (payload into                       └─ mem (word port) ─► on-chip RAM
                     the buffer)                 respond ─► UartTx ─► tx

One request at a time, in four phases:

Receive
    The bridge waits for the sync byte 0xA5 (other bytes, and bytes with a bad stop bit, are
    ignored). Then it takes the 7 header bytes, ``length`` payload bytes if the command is a write
    command (``WRITE_REG``, ``WRITE_MEM``; the first :data:`~tessera.fpga.protocol.MAX_BLOCK` go
    into the payload buffer, a longer payload is counted but not kept), and the 2 CRC bytes,
    computing the CRC as the bytes arrive. A gap of more than ``timeout`` cycles between two
    bytes of a frame ends the receive phase with status TIMEOUT.
Check
    Two cycles (the checks are registered, then acted on): the first failing check of CRC (a
    byte with a bad stop bit also fails it), command, length, address gives the status (see
    :class:`~tessera.fpga.protocol.Status`); only a request that passes all of them is executed.
Execute
    ``WRITE_MEM`` writes the buffered bytes one by one (a one-byte write per byte, three
    cycles each); ``READ_MEM`` reads them one by one into the buffer. ``WRITE_REG`` assembles
    each 32-bit word (little-endian) from the buffer and writes it with one AXI4-Lite write
    (WSTRB all ones) and waits for its response; ``READ_REG`` reads each word with one
    AXI4-Lite read into the buffer. Register accesses go in address order; a response other than
    OKAY makes the status BUS_ERROR (the remaining accesses still happen).
Respond
    The response frame is sent, echoing the request's command byte (0 if the frame ended before
    it), with a payload (the data read) only if the status is OK and the command reads. Then
    the bridge waits for the next sync byte. Bytes arriving while a request is checked,
    executed or answered are ignored: a host sends the next request after it has received the
    response.

The memory port is ``mem`` (:class:`~tessera.fpga.axi_ram.MemoryPortSignature`, from the
bridge's side), addressing ``mem_size`` bytes of ``data_width``-bit words.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from tessera.rtl.axi import AXI4LiteSignature, Resp

from .axi_ram import DIRECT_READ_LATENCY, MemoryPortSignature
from .protocol import (CRC_INIT, CRC_POLYNOMIAL, MAX_BLOCK, REGISTER_SPACE, SYNC_REQUEST,
                       SYNC_RESPONSE, Command, Status)
from .uart import UartRx, UartTx, check_divisor

__all__ = ["UartBridge", "crc16_step"]


def crc16_step(m, crc, byte, name):
    """A signal (driven in ``m``) holding the CRC-16/CCITT-FALSE register ``crc`` (16 bits)
    after one more ``byte``. Each of the 8 bit steps is its own signal, so the logic stays
    linear in size."""
    value = Signal(16, name=f"{name}_0")
    m.d.comb += value.eq((crc ^ (byte << 8))[:16])
    for i in range(1, 9):
        shifted = (value << 1)[:16]
        step = Signal(16, name=f"{name}_{i}")
        m.d.comb += step.eq(Mux(value[15], shifted ^ CRC_POLYNOMIAL, shifted))
        value = step
    return value


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


class UartBridge(wiring.Component):
    """Serial-protocol bridge (see the module docstring).

    Parameters (keyword-only)
    -------------------------
    divisor : int
        Clock cycles per UART bit, >= 4.
    mem_size : int
        Bytes of the memory behind ``mem`` (a power of two): the limit of memory commands.
    data_width : int
        Width of the memory words: 32, 64 or 128.
    timeout : int
        Most cycles allowed between two bytes of one request frame.
    reg_addr_width : int
        Address width of the AXI4-Lite port (default 12: the 4 KiB register window).
    """

    def __init__(self, *, divisor, mem_size, data_width, timeout, reg_addr_width=12):
        self.divisor = check_divisor(divisor)
        if data_width not in (32, 64, 128):
            raise ValueError(f"data_width must be one of [32, 64, 128], not {data_width!r}")
        word_bytes = data_width // 8
        if (isinstance(mem_size, bool) or not isinstance(mem_size, int)
                or mem_size < word_bytes or mem_size & (mem_size - 1) or mem_size > 1 << 32):
            raise ValueError(f"mem_size must be a power of two from {word_bytes} to 2**32 bytes, "
                             f"not {mem_size!r}")
        if (1 << reg_addr_width) != REGISTER_SPACE:
            raise ValueError(f"reg_addr_width must be {REGISTER_SPACE.bit_length() - 1} (the "
                             f"protocol's register window), not {reg_addr_width!r}")
        self.mem_size = mem_size
        self.data_width = data_width
        self.timeout = _positive("timeout", timeout)
        self.word_bytes = word_bytes
        self.index_width = max(1, ceil_log2(mem_size // word_bytes))
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "csr": Out(AXI4LiteSignature(addr_width=reg_addr_width)),
            "mem": Out(MemoryPortSignature(addr_width=self.index_width, data_width=data_width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = urx = UartRx(divisor=self.divisor)
        m.submodules.uart_tx = utx = UartTx(divisor=self.divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        m.submodules.buffer = buffer = Memory(shape=8, depth=MAX_BLOCK, init=[])
        buf_read = buffer.read_port(transparent_for=())
        buf_write = buffer.write_port()
        # The byte read from the buffer, registered (block RAM output register): byte ``count``
        # is in ``buf_data`` two cycles after a *_FETCH state, so each FETCH waits one cycle.
        buf_data = Signal(8)
        m.d.sync += buf_data.eq(buf_read.data)

        # The receiver's byte is registered before the state machine sees it (a byte takes many
        # cycles, so a cycle of latency costs nothing), with "it is a good SYNC_REQUEST byte"
        # decided there: the state register's enable starts at flip-flops.
        rx_valid = Signal()
        rx_data = Signal(8, reset_less=True)
        rx_error = Signal(reset_less=True)
        rx_sync = Signal()
        m.d.sync += [rx_valid.eq(urx.valid), rx_data.eq(urx.data), rx_error.eq(urx.frame_error),
                     rx_sync.eq(urx.valid & ~urx.frame_error & (urx.data == SYNC_REQUEST))]
        header = Signal(56)                         # command, address, length as received
        echo = Signal(8)                            # the command byte, once it arrived
        command = Signal(8)
        address = Signal(32)
        length = Signal(16)
        m.d.comb += [command.eq(header[:8]), address.eq(header[8:40]), length.eq(header[40:])]
        is_write = (command == Command.WRITE_REG) | (command == Command.WRITE_MEM)
        is_register = (command == Command.READ_REG) | (command == Command.WRITE_REG)
        known = (command >= min(Command)) & (command <= max(Command))

        crc = Signal(16, init=CRC_INIT)
        received_crc = Signal(16)
        corrupt = Signal()                  # a byte of this frame had a bad stop bit
        count = Signal(17)                  # bytes of the current field / block done
        idle = Signal(range(self.timeout + 1))
        status = Signal(8)
        bus_error = Signal()
        pointer = Signal(33)                # byte address of the next memory or register access
        word = Signal(32)                   # register word being assembled or taken apart
        wait = Signal(range(DIRECT_READ_LATENCY))   # cycles left until a memory read's data

        # --- timeout between the bytes of a frame -----------------------------------------------
        receiving = Signal()
        with m.If(rx_valid | ~receiving):
            m.d.sync += idle.eq(0)
        with m.Elif(idle != self.timeout):
            m.d.sync += idle.eq(idle + 1)
        timed_out = receiving & (idle == self.timeout)

        # --- memory word port: one byte at pointer ----------------------------------------------
        shift = exact_log2(self.word_bytes)
        lane = pointer[:shift]
        m.d.comb += [
            self.mem.addr.eq(pointer[shift:shift + self.index_width]),
            self.mem.wdata.eq(buf_data.replicate(self.word_bytes)),
        ]
        mem_byte = self.mem.rdata.word_select(lane, 8)

        # --- response bytes -----------------------------------------------------------------------
        response_length = Signal(16)
        # Index of the last byte of the request's block and of the response's payload, kept in
        # registers (a cycle behind their lengths, which are set well before they are used).
        last = Signal(17)
        response_last = Signal(17)
        m.d.sync += [last.eq(length - 1), response_last.eq(response_length - 1)]
        # The comparisons of ``count`` with them, registered too: every state that uses one has
        # kept ``count`` unchanged for at least a cycle before (the FETCH/WAIT and ISSUE/WAIT
        # states, a UART byte time), except REG_READ_STORE, which counts the four bytes of a
        # word in consecutive cycles and so uses ``at_last_word`` (``count | 3`` stays the same
        # within a word).
        at_last = Signal()
        at_last_word = Signal()
        at_response_last = Signal()
        at_length = Signal()
        m.d.sync += [at_last.eq(count == last), at_last_word.eq((count | 3) == last),
                     at_response_last.eq(count == response_last), at_length.eq(count == length)]
        tx_byte = Signal(8)
        m.d.comb += [utx.data.eq(tx_byte), buf_read.addr.eq(count)]
        sent = utx.valid & utx.ready

        crc_rx = crc16_step(m, crc, rx_data, "crc_rx")
        # A sent byte enters the CRC one cycle later, from registers (SEND_CRC waits for it).
        tx_crc_byte = Signal(8)
        tx_crc_update = Signal()
        crc_tx = crc16_step(m, crc, tx_crc_byte, "crc_tx")
        m.d.sync += [tx_crc_byte.eq(tx_byte), tx_crc_update.eq(0)]
        with m.If(tx_crc_update):
            m.d.sync += crc.eq(crc_tx)

        def receive(next_count, done, next_state, update_crc=True):
            """On each byte: count it and CRC it (a bad stop bit marks the frame corrupt); at
            ``done`` go to ``next_state``; on a timeout answer TIMEOUT."""
            with m.If(rx_valid):
                with m.If(rx_error):
                    m.d.sync += corrupt.eq(1)
                if update_crc:
                    m.d.sync += crc.eq(crc_rx)
                m.d.sync += count.eq(next_count)
                with m.If(done):
                    m.d.sync += count.eq(0)
                    m.next = next_state
            with m.If(timed_out):
                m.d.sync += [status.eq(Status.TIMEOUT), response_length.eq(0)]
                m.next = "RESPOND"

        with m.FSM():
            with m.State("HUNT"):
                with m.If(rx_sync):
                    m.d.sync += [crc.eq(CRC_INIT), corrupt.eq(0), count.eq(0), header.eq(0),
                                 echo.eq(0), bus_error.eq(0)]
                    m.next = "HEADER"

            with m.State("HEADER"):
                m.d.comb += receiving.eq(1)
                with m.If(rx_valid):
                    m.d.sync += header.eq(Cat(header[8:], rx_data))
                    with m.If(count == 0):
                        m.d.sync += echo.eq(rx_data)
                receive(count + 1, count == 6, "HEADER_DONE")

            with m.State("HEADER_DONE"):
                m.d.comb += receiving.eq(1)
                with m.If(is_write & (length != 0)):
                    m.next = "PAYLOAD"
                with m.Else():
                    m.next = "CRC"

            with m.State("PAYLOAD"):
                m.d.comb += [receiving.eq(1),
                             buf_write.addr.eq(count), buf_write.data.eq(rx_data),
                             buf_write.en.eq(rx_valid & (count < MAX_BLOCK))]
                receive(count + 1, at_last, "CRC")

            with m.State("CRC"):
                m.d.comb += receiving.eq(1)
                with m.If(rx_valid):
                    m.d.sync += received_crc.eq(Cat(received_crc[8:], rx_data))
                receive(count + 1, count == 1, "VERIFY", update_crc=False)

            # The frame's checks are registered in VERIFY (the request's end address) and RANGE
            # (the address check, from that end), turned into a status in CLASSIFY and acted on
            # in CHECK (short paths: the 33-bit sum and its comparison in one cycle were 10.5 ns
            # in a routed 12 x 12 board design).
            bad_crc, bad_command, bad_length, bad_address = (
                Signal(name=name) for name in ("bad_crc", "bad_command", "bad_length",
                                               "bad_address"))
            end = Signal(33, name="request_end")     # address + length: 33 bits, no wrap
            with m.State("VERIFY"):
                m.d.sync += [
                    end.eq(address + length),
                    bad_crc.eq(corrupt | (received_crc != crc)),
                    bad_command.eq(~known),
                    bad_length.eq((length == 0) | (length > MAX_BLOCK) |
                                  (is_register & (length[:2] != 0))),
                ]
                m.next = "RANGE"

            with m.State("RANGE"):
                m.d.sync += bad_address.eq(Mux(is_register,
                                               (address[:2] != 0) | (end > REGISTER_SPACE),
                                               end > self.mem_size))
                m.next = "CLASSIFY"

            rejected = Signal()
            verdict = Signal(8)
            with m.State("CLASSIFY"):
                m.d.sync += [
                    rejected.eq(bad_crc | bad_command | bad_length | bad_address),
                    verdict.eq(Mux(bad_crc, Status.CRC_ERROR,
                                   Mux(bad_command, Status.BAD_COMMAND,
                                       Mux(bad_length, Status.BAD_LENGTH,
                                           Mux(bad_address, Status.BAD_ADDRESS, Status.OK))))),
                ]
                m.next = "CHECK"

            with m.State("CHECK"):
                m.d.sync += [pointer.eq(address), count.eq(0), response_length.eq(0),
                             status.eq(verdict)]
                with m.If(rejected):
                    m.next = "RESPOND"
                with m.Else():
                    with m.Switch(command):
                        with m.Case(Command.WRITE_MEM):
                            m.next = "MEM_WRITE_FETCH"
                        with m.Case(Command.READ_MEM):
                            m.next = "MEM_READ_ISSUE"
                        with m.Case(Command.WRITE_REG):
                            m.next = "REG_WRITE_FETCH"
                        with m.Default():
                            m.next = "REG_READ_ADDRESS"

            # --- memory: one byte per three cycles -----------------------------------------------
            with m.State("MEM_WRITE_FETCH"):        # the buffer reads byte `count`
                m.next = "MEM_WRITE_WAIT"
            with m.State("MEM_WRITE_WAIT"):
                m.next = "MEM_WRITE"
            with m.State("MEM_WRITE"):
                m.d.comb += self.mem.write.eq(Const(1, self.word_bytes) << lane)
                m.d.sync += [pointer.eq(pointer + 1), count.eq(count + 1)]
                with m.If(at_last):
                    m.next = "RESPOND"
                with m.Else():
                    m.next = "MEM_WRITE_FETCH"

            with m.State("MEM_READ_ISSUE"):
                m.d.comb += self.mem.read.eq(1)
                m.d.sync += wait.eq(DIRECT_READ_LATENCY - 2)
                m.next = "MEM_READ_WAIT"
            with m.State("MEM_READ_WAIT"):         # rdata DIRECT_READ_LATENCY cycles after ISSUE
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.next = "MEM_READ_TAKE"
            with m.State("MEM_READ_TAKE"):
                m.d.comb += [buf_write.addr.eq(count), buf_write.data.eq(mem_byte),
                             buf_write.en.eq(1)]
                m.d.sync += [pointer.eq(pointer + 1), count.eq(count + 1)]
                with m.If(at_last):
                    m.d.sync += response_length.eq(length)
                    m.next = "RESPOND"
                with m.Else():
                    m.next = "MEM_READ_ISSUE"

            # --- registers: one AXI4-Lite access per word ----------------------------------------
            csr = self.csr
            m.d.comb += [csr.awaddr.eq(pointer), csr.araddr.eq(pointer), csr.wdata.eq(word),
                         csr.wstrb.eq(0xF), csr.bready.eq(1), csr.rready.eq(1)]

            with m.State("REG_WRITE_FETCH"):        # the buffer reads byte `count`
                m.next = "REG_WRITE_WAIT"
            with m.State("REG_WRITE_WAIT"):
                m.next = "REG_WRITE_GATHER"
            with m.State("REG_WRITE_GATHER"):
                m.d.sync += [word.eq(Cat(word[8:], buf_data)), count.eq(count + 1)]
                with m.If(count[:2] == 3):
                    m.next = "REG_WRITE_ADDRESS"
                with m.Else():
                    m.next = "REG_WRITE_FETCH"
            with m.State("REG_WRITE_ADDRESS"):      # AW and W together, each until taken
                aw_done = Signal()
                w_done = Signal()
                m.d.comb += [csr.awvalid.eq(~aw_done), csr.wvalid.eq(~w_done)]
                aw_now = aw_done | csr.awready
                w_now = w_done | csr.wready
                m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
                with m.If(aw_now & w_now):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                    m.next = "REG_WRITE_RESPONSE"
            with m.State("REG_WRITE_RESPONSE"):
                with m.If(csr.bvalid):
                    with m.If(csr.bresp != Resp.OKAY):
                        m.d.sync += bus_error.eq(1)
                    m.d.sync += pointer.eq(pointer + 4)
                    with m.If(at_length):
                        m.next = "EXECUTED"
                    with m.Else():
                        m.next = "REG_WRITE_FETCH"

            with m.State("REG_READ_ADDRESS"):
                m.d.comb += csr.arvalid.eq(1)
                with m.If(csr.arready):
                    m.next = "REG_READ_DATA"
            with m.State("REG_READ_DATA"):
                with m.If(csr.rvalid):
                    m.d.sync += [word.eq(csr.rdata), pointer.eq(pointer + 4)]
                    with m.If(csr.rresp != Resp.OKAY):
                        m.d.sync += bus_error.eq(1)
                    m.next = "REG_READ_STORE"
            with m.State("REG_READ_STORE"):         # four bytes into the buffer
                m.d.comb += [buf_write.addr.eq(count), buf_write.data.eq(word[:8]),
                             buf_write.en.eq(1)]
                m.d.sync += [word.eq(word >> 8), count.eq(count + 1)]
                with m.If(at_last_word & (count[:2] == 3)):
                    m.d.sync += response_length.eq(length)
                    m.next = "EXECUTED"
                with m.Elif(count[:2] == 3):
                    m.next = "REG_READ_ADDRESS"

            with m.State("EXECUTED"):
                with m.If(bus_error):
                    m.d.sync += [status.eq(Status.BUS_ERROR), response_length.eq(0)]
                m.next = "RESPOND"

            # --- response: header, payload from the buffer, CRC ----------------------------------
            with m.State("RESPOND"):
                m.d.sync += [crc.eq(CRC_INIT), count.eq(0)]
                m.next = "SEND_HEADER"
            with m.State("SEND_HEADER"):
                fields = Cat(Const(SYNC_RESPONSE, 8), status, echo, response_length)
                m.d.comb += [tx_byte.eq(fields.word_select(count[:3], 8)), utx.valid.eq(1)]
                with m.If(sent):
                    with m.If(count != 0):
                        m.d.sync += tx_crc_update.eq(1)
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == 4):
                        m.d.sync += count.eq(0)
                        with m.If(response_length != 0):
                            m.next = "SEND_FETCH"
                        with m.Else():
                            m.next = "SEND_CRC"
            with m.State("SEND_FETCH"):             # the buffer reads byte `count`
                m.next = "SEND_WAIT"
            with m.State("SEND_WAIT"):
                m.next = "SEND_PAYLOAD"
            with m.State("SEND_PAYLOAD"):
                m.d.comb += [tx_byte.eq(buf_data), utx.valid.eq(1)]
                with m.If(sent):
                    m.d.sync += [tx_crc_update.eq(1), count.eq(count + 1)]
                    with m.If(at_response_last):
                        m.d.sync += count.eq(0)
                        m.next = "SEND_CRC"
                    with m.Else():
                        m.next = "SEND_FETCH"
            with m.State("SEND_CRC"):                # once the last byte is in the CRC
                m.d.comb += [tx_byte.eq(crc.word_select(count[:1], 8)),
                             utx.valid.eq(~tx_crc_update)]
                with m.If(sent):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == 1):
                        m.next = "HUNT"
        return m
