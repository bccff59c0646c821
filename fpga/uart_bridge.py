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
    command (``WRITE_REG``, ``WRITE_MEM``; they go into the payload buffer, which a payload longer
    than :data:`~tessera.fpga.protocol.MAX_BLOCK` overwrites from its start: such a request is
    rejected anyway), and the 2 CRC bytes, computing the CRC as the bytes arrive and comparing
    each CRC byte with it as it arrives. A gap of more than ``timeout`` cycles between two bytes
    of a frame ends the receive phase with status TIMEOUT.
Check
    Four cycles once the last CRC byte is compared (at most 8 cycles after it arrived): the low
    part of the request's end address, the address check, the status, acting on it (short paths
    for ECP5). The first failing check of CRC (a byte with a bad stop bit also fails it),
    command, length, address gives the status (see :class:`~tessera.fpga.protocol.Status`); only
    a request that passes all of them is executed.
Execute
    ``WRITE_MEM`` writes the buffered bytes one by one (a one-byte write per byte, three
    cycles each); ``READ_MEM`` reads them one by one into the buffer (a read, then the cycles until
    the port's ``rvalid``). ``WRITE_REG`` assembles each 32-bit word (little-endian) from the
    buffer and writes it with one AXI4-Lite write (WSTRB all ones) and waits for its response;
    ``READ_REG`` reads each word with one AXI4-Lite read into the buffer. Register accesses go in
    address order; a response other than OKAY makes the status BUS_ERROR (the remaining accesses
    still happen).
Respond
    The response frame is sent, echoing the request's command byte (0 if the frame ended before
    it), with a payload (the data read) only if the status is OK and the command reads. Then
    the bridge waits for the next sync byte. Bytes arriving while a request is checked,
    executed or answered are ignored: a host sends the next request after it has received the
    response.

The bridge is built small (it is on both boards, and the iCEBreaker's iCE40UP5K is tight); its
paths stay short for ECP5 (registered checks, flip-flop selects into the buffer). The CRC is
computed one bit per cycle (:func:`serial_crc16`): a byte arrives or leaves every ``10 *
divisor`` cycles (at least 40), and each byte's eight steps are done long before the next byte
or the CRC is needed; a request's CRC bytes are compared with it bit by bit the same way, and a
response's CRC bytes are both sent from its low byte. Registers are as narrow as the checked
request allows: the addresses of an accepted request lie below ``max(mem_size,
REGISTER_SPACE)``, so only those address bits are kept (plus "a higher bit is set"), and its
length is at most MAX_BLOCK, so the address check needs no wide sum. The state machine reads
the buffer at ``count`` in every cycle and waits until the byte has come through (no fetch
states).

The memory port is ``mem`` (:class:`~tessera.fpga.axi_ram.MemoryPortSignature`, from the
bridge's side), addressing ``mem_size`` bytes of ``data_width``-bit words; a read's byte is taken
when the port's ``rvalid`` says the word is there, so the bridge works with either
implementation of :class:`~tessera.fpga.axi_ram.AxiRam` (their read latencies differ).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from tessera.rtl.axi import AXI4LiteSignature, Resp
from tessera.rtl.util import NO_RW_CHECK, is_ice40, registered_read

from .axi_ram import MemoryPortSignature
from .protocol import (CRC_INIT, CRC_POLYNOMIAL, MAX_BLOCK, REGISTER_SPACE, SYNC_REQUEST,
                       SYNC_RESPONSE, Command, Status)
from .uart import UartRx, UartTx, check_divisor

__all__ = ["UartBridge", "serial_crc16"]


def serial_crc16(m, *, init, load, byte, compare, name):
    """A CRC-16/CCITT-FALSE register that takes one bit per cycle; returns ``(crc, busy,
    mismatch)``.

    ``init`` sets the register to CRC_INIT. ``load`` starts 8 steps on ``byte``, MSB first
    (``busy`` meanwhile; ``load`` must not come while ``busy``): CRC steps, or with ``compare``
    high at the ``load``, steps that compare ``byte`` with ``crc[:8]`` (``mismatch`` is high in a
    step whose bits differ) and rotate the register left, so that after them ``crc[:8]`` is the
    old ``crc[8:]`` (the CRC's bytes compared, or sent, low byte first, from ``crc[:8]`` alone).
    A few LUTs instead of the ~50 of a byte-wide update, and no byte multiplexer on the CRC."""
    crc = Signal(16, init=CRC_INIT, name=name, reset_less=True)     # (``init`` before use)
    data = Signal(8, name=f"{name}_data", reset_less=True)
    bits = Signal(range(9), name=f"{name}_bits")
    comparing = Signal(name=f"{name}_comparing", reset_less=True)
    busy = Signal(name=f"{name}_busy")
    mismatch = Signal(name=f"{name}_mismatch")
    m.d.comb += [busy.eq(bits != 0), mismatch.eq(busy & comparing & (data[7] ^ crc[7]))]
    with m.If(load):
        m.d.sync += [data.eq(byte), bits.eq(8), comparing.eq(compare)]
    with m.Elif(busy):
        m.d.sync += [data.eq(data << 1), bits.eq(bits - 1)]
        with m.If(comparing):
            m.d.sync += crc.eq(crc.rotate_left(1))
        with m.Else():
            m.d.sync += crc.eq((crc << 1)[:16] ^ Mux(crc[15] ^ data[7], CRC_POLYNOMIAL, 0))
    with m.If(init):
        m.d.sync += crc.eq(CRC_INIT)
    return crc, busy, mismatch


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
    registered : bool or None
        Whether the payload buffer's write and the CRC's inputs are registered (a cycle later;
        for ECP5 at 125 MHz); None (default): unless elaborated for an iCE40 platform.
    """

    def __init__(self, *, divisor, mem_size, data_width, timeout, reg_addr_width=12,
                 registered=None):
        if registered not in (None, False, True):
            raise ValueError(f"registered must be None, False or True, not {registered!r}")
        self.registered = registered
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
        self.reg_addr_width = reg_addr_width
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "csr": Out(AXI4LiteSignature(addr_width=reg_addr_width)),
            "mem": Out(MemoryPortSignature(addr_width=self.index_width, data_width=data_width)),
        })

    def elaborate(self, platform):
        m = Module()
        registered = self.registered
        if registered is None:
            registered = not is_ice40(platform)
        m.submodules.uart_rx = urx = UartRx(divisor=self.divisor)
        m.submodules.uart_tx = utx = UartTx(divisor=self.divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        # The payload buffer: block RAM. Its read port is asynchronous with a register after it
        # (``buf_read_data``), which Yosys merges into the block RAM; ``no_rw_check``: a byte
        # read in the cycle it is written is never used, so no logic emulates old data on iCE40
        # (a synchronous Amaranth read port keeps that emulation).
        m.submodules.buffer = buffer = Memory(shape=8, depth=MAX_BLOCK, init=[],
                                                attrs=NO_RW_CHECK)
        buf_read, buf_read_data = registered_read(m, buffer, "buf_read_data")
        buf_write = buffer.write_port()

        # The receiver's outputs are flip-flops (``valid``, ``frame_error``) and its shift
        # register (``data``, unchanged until the next byte's first data bit, at least 1.5 bit
        # times after ``valid``), used directly. "It is a good SYNC_REQUEST byte" is registered
        # (a cycle later; the next byte comes a byte time later), so the state register's enable
        # in HUNT starts at flip-flops.
        rx_valid = urx.valid
        rx_data = urx.data
        rx_error = urx.frame_error
        rx_sync = Signal()
        m.d.sync += rx_sync.eq(urx.valid & ~urx.frame_error & (urx.data == SYNC_REQUEST))

        # Registers that the state machine sets before it uses them are not reset (a reset and a
        # clear or load of their own would cost a LUT per bit on iCE40).
        #
        # The header's fields, each byte written in place as it arrives. The command byte is
        # cleared at the sync byte, so it is also the echo (0 if the frame ended before it).
        # Only the address bits below 2**address_bits are kept: they hold every address of an
        # accepted request (memory and register window); a set bit above them sets
        # ``address_high``, which fails the address check.
        shift = exact_log2(self.word_bytes)
        address_bits = max(exact_log2(self.mem_size), shift + self.index_width,
                           self.reg_addr_width)
        command = Signal(8, reset_less=True)
        address = Signal(address_bits, reset_less=True)
        address_high = Signal(reset_less=True)
        length = Signal(16, reset_less=True)
        # Byte address of the current memory or register access: loaded with the address in
        # CHECK, then ``address + count`` (it counts with ``count`` while executing).
        pointer = Signal(address_bits, reset_less=True)
        # The command decoded, registered in HEADER_DONE (from then on the command is known).
        write_command = Signal(reset_less=True)     # WRITE_REG, WRITE_MEM
        register_command = Signal(reset_less=True)  # READ_REG, WRITE_REG
        known = (command >= min(Command)) & (command <= max(Command))

        corrupt = Signal(reset_less=True)   # a byte had a bad stop bit, or a CRC byte was wrong
        count = Signal(16, reset_less=True) # bytes of the current field / block done
        idle = Signal(range(self.timeout + 1), reset_less=True)
        status = Signal(range(max(Status) + 1), reset_less=True)
        respond_data = Signal(reset_less=True)  # the response carries ``length`` payload bytes
        bus_error = Signal(reset_less=True)
        word = Signal(32, reset_less=True)  # register word being assembled or taken apart

        # --- timeout between the bytes of a frame -----------------------------------------------
        receiving = Signal()
        with m.If(rx_valid | ~receiving):
            m.d.sync += idle.eq(0)
        with m.Elif(idle != self.timeout):
            m.d.sync += idle.eq(idle + 1)
        timed_out = receiving & (idle == self.timeout)

        # --- counting ----------------------------------------------------------------------------
        # Every change of ``count`` is ``count_step`` or ``count_clear``; ``advance`` steps both
        # ``count`` and ``pointer`` (while executing).
        count_step = Signal()
        count_clear = Signal()
        advance = Signal()
        next_count = Signal(16)
        m.d.comb += next_count.eq(count + 1)
        with m.If(count_clear):
            m.d.sync += count.eq(0)
        with m.Elif(count_step | advance):
            m.d.sync += count.eq(next_count)
        with m.If(advance):
            m.d.sync += pointer.eq(pointer + 1)
        # ``count + 1 == length`` ("count is the block's last byte"), registered: valid from the
        # second cycle with ``count`` unchanged.
        at_last = Signal(reset_less=True)
        m.d.sync += at_last.eq(next_count == length)
        # The buffer is read at ``count`` in every cycle; its byte comes through the read port's
        # register and ``buf_data`` (block RAM output register), so it is byte ``count`` from the
        # third cycle with ``count`` unchanged: ``buf_ready`` (then ``at_last`` is valid too).
        m.d.comb += buf_read.addr.eq(count)
        buf_data = Signal(8, reset_less=True)
        m.d.sync += buf_data.eq(buf_read_data)
        moved = Signal(2)
        m.d.sync += moved.eq(Cat(count_step | count_clear | advance, moved[0]))
        buf_ready = ~moved.any()

        # --- memory word port: one byte at pointer ----------------------------------------------
        lane = pointer[:shift]
        m.d.comb += [
            self.mem.addr.eq(pointer[shift:shift + self.index_width]),
            self.mem.wdata.eq(buf_data.replicate(self.word_bytes)),
        ]
        mem_byte = self.mem.rdata.word_select(lane, 8)

        # --- register port: one word at pointer (its low two bits are the byte in the word) -----
        csr = self.csr
        word_address = Cat(Const(0, 2), pointer[2:self.reg_addr_width])
        m.d.comb += [csr.awaddr.eq(word_address), csr.araddr.eq(word_address),
                     csr.wdata.eq(word), csr.wstrb.eq(0xF), csr.bready.eq(1), csr.rready.eq(1)]
        # ``word`` shifts down a byte per byte gathered (a buffer byte enters at the top) or
        # stored (its low byte goes to the buffer), or takes RDATA (one enable, one 2:1 mux).
        shift_word = Signal()
        load_word = Signal()
        # The buffer is written with a payload byte (write commands), a register byte or a memory
        # byte: chosen by the command alone. The write (byte ``count``, its data, ``buf_write_en``)
        # is registered and reaches the block RAM a cycle later, so its inputs start at
        # flip-flops (routed 12 x 12: ``pointer`` through the memory byte's multiplexer into the
        # block RAM's data input was 11.3 ns). No byte is read back within two cycles of its
        # write (a response's payload follows its header bytes).
        # (On iCE40, whose board runs at 24 MHz, the write and the CRC's inputs below are not
        # registered: the small design fills the device, and every flip-flop counts.)
        buf_write_en = Signal()
        buf_write_data = Mux(write_command, rx_data, Mux(register_command, word[:8], mem_byte))
        if registered:
            write_en = Signal()
            write_addr = Signal.like(buf_write.addr, reset_less=True)
            write_data = Signal(8, reset_less=True)
            m.d.sync += [write_en.eq(buf_write_en), write_addr.eq(count),
                         write_data.eq(buf_write_data)]
            m.d.comb += [buf_write.en.eq(write_en), buf_write.addr.eq(write_addr),
                         buf_write.data.eq(write_data)]
        else:
            m.d.comb += [buf_write.en.eq(buf_write_en), buf_write.addr.eq(count),
                         buf_write.data.eq(buf_write_data)]
        with m.If(shift_word | load_word):
            m.d.sync += word.eq(Mux(load_word, csr.rdata, Cat(word[8:], buf_data)))

        # --- the CRC, one bit per cycle: received bytes as they arrive, sent bytes as they go ---
        tx_byte = Signal(8)
        m.d.comb += utx.data.eq(tx_byte)
        sent = utx.valid & utx.ready
        # A received byte enters the CRC as it arrives (``rx_data`` is a register). A sent byte
        # enters it a cycle after its handshake, from the transmitter's own register
        # (``utx.byte``), and the CRC's ``init`` is registered too: the CRC's inputs start at
        # flip-flops, not at the response's byte multiplexer (routed 12 x 12: the state register
        # through ``tx_byte`` into ``crc_data``, 9.2 ns). ``crc_busy`` covers the cycle of delay;
        # the next byte cannot be sent sooner anyway (a byte takes 10 * divisor cycles).
        crc_init = Signal()
        crc_load = Signal()                 # a received byte (``receive``)
        crc_compare = Signal()
        crc_from_rx = Signal()
        if registered:
            tx_load = Signal()              # the byte sent in this cycle
            tx_compare = Signal()
            init_q = Signal()
            tx_load_q = Signal()
            tx_compare_q = Signal()
            m.d.sync += [init_q.eq(crc_init), tx_load_q.eq(tx_load),
                         tx_compare_q.eq(tx_compare)]
            crc, crc_shifting, crc_mismatch = serial_crc16(
                m, init=init_q, load=crc_load | tx_load_q,
                byte=Mux(tx_load_q, utx.byte, rx_data),
                compare=crc_compare | (tx_load_q & tx_compare_q), name="crc")
            crc_busy = crc_shifting | tx_load_q
        else:
            tx_load, tx_compare = crc_load, crc_compare
            crc, crc_busy, crc_mismatch = serial_crc16(
                m, init=crc_init, load=crc_load, byte=Mux(crc_from_rx, rx_data, tx_byte),
                compare=crc_compare, name="crc")
        # (The rotation while the CRC is sent compares its byte with itself: no mismatch.)
        with m.If(crc_mismatch):
            m.d.sync += corrupt.eq(1)

        def receive(done, next_state, crc_bytes=False):
            """On each byte: count it and take it into the CRC (``crc_bytes``: compare it with
            the CRC); a bad stop bit marks the frame corrupt; at ``done`` go to ``next_state``;
            on a timeout answer TIMEOUT."""
            m.d.comb += [receiving.eq(1), crc_from_rx.eq(1)]
            with m.If(rx_valid):
                with m.If(rx_error):
                    m.d.sync += corrupt.eq(1)
                m.d.comb += [crc_load.eq(1), crc_compare.eq(crc_bytes)]
                with m.If(done):
                    m.d.comb += count_clear.eq(1)
                    m.next = next_state
                with m.Else():
                    m.d.comb += count_step.eq(1)
            with m.If(timed_out):
                m.d.sync += [status.eq(Status.TIMEOUT), respond_data.eq(0)]
                m.next = "RESPOND"

        with m.FSM():
            with m.State("HUNT"):
                with m.If(rx_sync):
                    m.d.comb += [crc_init.eq(1), count_clear.eq(1)]
                    m.d.sync += [corrupt.eq(0), command.eq(0), address_high.eq(0),
                                 bus_error.eq(0)]
                    m.next = "HEADER"

            with m.State("HEADER"):
                with m.If(rx_valid):
                    with m.Switch(count[:3]):
                        with m.Case(0):
                            m.d.sync += command.eq(rx_data)
                        for i in range(4):          # address bytes
                            with m.Case(1 + i):
                                kept = min(8, max(0, address_bits - 8 * i))
                                if kept:
                                    m.d.sync += address[8 * i:8 * i + kept].eq(rx_data[:kept])
                                if kept < 8:
                                    m.d.sync += address_high.eq(address_high |
                                                                rx_data[kept:].any())
                        with m.Case(5):
                            m.d.sync += length[:8].eq(rx_data)
                        with m.Case(6):
                            m.d.sync += length[8:].eq(rx_data)
                receive(count[:3] == 6, "HEADER_DONE")

            with m.State("HEADER_DONE"):
                m.d.comb += receiving.eq(1)
                is_write = (command == Command.WRITE_REG) | (command == Command.WRITE_MEM)
                m.d.sync += [write_command.eq(is_write),
                             register_command.eq((command == Command.READ_REG) |
                                                 (command == Command.WRITE_REG))]
                with m.If(is_write & (length != 0)):
                    m.next = "PAYLOAD"
                with m.Else():
                    m.next = "CRC"

            with m.State("PAYLOAD"):
                # (Beyond MAX_BLOCK bytes the buffer address wraps: the request is rejected.)
                m.d.comb += buf_write_en.eq(rx_valid)
                receive(at_last, "CRC")

            with m.State("CRC"):
                # Each CRC byte (low byte first) is compared with the CRC as it arrives (the last
                # byte before it entered the CRC a byte time earlier).
                receive(count[0], "VERIFY", crc_bytes=True)

            # The frame's checks, once the last CRC byte is compared: the low part of the
            # request's end address (VERIFY), the address check from it (RANGE), the status
            # (CLASSIFY), acted on in CHECK (short paths for ECP5). ``address + length > 2**k``
            # for a length of 1 .. MAX_BLOCK = 2**b needs no wide sum: with S = address[:b] +
            # length (< 2**(b+1)), it holds exactly if an address bit at or above k is set, or
            # address[b:k] are all ones and S > 2**b (for k < b: S > 2**k, or a bit at or above
            # b is set). A longer length fails the length check, which comes first.
            b = ceil_log2(MAX_BLOCK)
            low_end = Signal(b + 1, name="request_low_end", reset_less=True)
            bad_address = Signal(reset_less=True)

            def above(bit):
                """Whether an address bit at or above ``bit`` is set."""
                return address_high | (address[bit:].any() if bit < address_bits else 0)

            def beyond(k):
                """Whether ``address + length > 2**k``."""
                if k < b:
                    return above(b) | (low_end > (1 << k))
                return above(k) | ((address[b:k].all() if k > b else 1) & (low_end > (1 << b)))

            with m.State("VERIFY"):
                m.d.sync += low_end.eq(address[:b] + length[:b + 1])
                with m.If(~crc_busy):
                    m.next = "RANGE"

            with m.State("RANGE"):
                m.d.sync += bad_address.eq(Mux(register_command,
                                               (address[:2] != 0) | beyond(self.reg_addr_width),
                                               beyond(exact_log2(self.mem_size))))
                m.next = "CLASSIFY"

            with m.State("CLASSIFY"):
                bad_length = ((length == 0) | (length > MAX_BLOCK) |
                              (register_command & (length[:2] != 0)))
                m.d.sync += status.eq(Mux(corrupt, Status.CRC_ERROR,
                                          Mux(~known, Status.BAD_COMMAND,
                                              Mux(bad_length, Status.BAD_LENGTH,
                                                  Mux(bad_address, Status.BAD_ADDRESS,
                                                      Status.OK)))))
                m.next = "CHECK"

            with m.State("CHECK"):
                m.d.comb += count_clear.eq(1)
                m.d.sync += [pointer.eq(address), respond_data.eq(0)]
                with m.If(status != Status.OK):
                    m.next = "RESPOND"
                with m.Else():
                    with m.Switch(Cat(write_command, register_command)):
                        with m.Case(0b01):
                            m.next = "MEM_WRITE"
                        with m.Case(0b00):
                            m.next = "MEM_READ_ISSUE"
                        with m.Case(0b11):
                            m.next = "REG_WRITE_GATHER"
                        with m.Default():
                            m.next = "REG_READ_ADDRESS"

            # --- memory: one byte per three cycles (writes) or read latency + 1 (reads) ----------
            with m.State("MEM_WRITE"):              # once byte `count` is in buf_data
                with m.If(buf_ready):
                    m.d.comb += self.mem.write.eq(Const(1, self.word_bytes) << lane)
                    with m.If(at_last):
                        m.next = "RESPOND"
                    with m.Else():
                        m.d.comb += advance.eq(1)

            with m.State("MEM_READ_ISSUE"):
                m.d.comb += self.mem.read.eq(1)
                m.next = "MEM_READ_WAIT"
            with m.State("MEM_READ_WAIT"):         # until rdata holds the word (rvalid)
                with m.If(self.mem.rvalid):
                    m.d.comb += buf_write_en.eq(1)
                    with m.If(at_last):
                        m.d.sync += respond_data.eq(1)
                        m.next = "RESPOND"
                    with m.Else():
                        m.d.comb += advance.eq(1)
                        m.next = "MEM_READ_ISSUE"

            # --- registers: one AXI4-Lite access per word ----------------------------------------
            with m.State("REG_WRITE_GATHER"):       # once byte `count` is in buf_data
                with m.If(buf_ready):
                    m.d.comb += shift_word.eq(1)
                    with m.If(count[:2] == 3):      # (a word's last byte stays counted)
                        m.next = "REG_WRITE_ADDRESS"
                    with m.Else():
                        m.d.comb += advance.eq(1)
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
                    with m.If(at_last):
                        m.next = "RESPOND"
                    with m.Else():
                        m.d.comb += advance.eq(1)
                        m.next = "REG_WRITE_GATHER"

            with m.State("REG_READ_ADDRESS"):
                m.d.comb += csr.arvalid.eq(1)
                with m.If(csr.arready):
                    m.next = "REG_READ_DATA"
            with m.State("REG_READ_DATA"):
                with m.If(csr.rvalid):
                    m.d.comb += load_word.eq(1)
                    with m.If(csr.rresp != Resp.OKAY):
                        m.d.sync += bus_error.eq(1)
                    m.next = "REG_READ_STORE"
            with m.State("REG_READ_STORE"):         # four bytes into the buffer
                m.d.comb += [buf_write_en.eq(1), shift_word.eq(1)]
                with m.If(count[:2] == 3):          # (a word's last byte stays counted)
                    m.next = "REG_READ_NEXT"
                with m.Else():
                    m.d.comb += advance.eq(1)
            with m.State("REG_READ_NEXT"):          # (``at_last`` is valid: count unchanged)
                with m.If(at_last):
                    m.d.sync += respond_data.eq(1)
                    m.next = "RESPOND"
                with m.Else():
                    m.d.comb += advance.eq(1)
                    m.next = "REG_READ_ADDRESS"

            # --- response: header, payload from the buffer, CRC ----------------------------------
            with m.State("RESPOND"):
                # (A register access that answered an error makes the status BUS_ERROR.)
                m.d.comb += [crc_init.eq(1), count_clear.eq(1)]
                with m.If(bus_error):
                    m.d.sync += [status.eq(Status.BUS_ERROR), respond_data.eq(0)]
                m.next = "SEND_HEADER"
            with m.State("SEND_HEADER"):
                header = Cat(Const(SYNC_RESPONSE, 8), status, Const(0, 5), command,
                             Mux(respond_data, length, 0))
                m.d.comb += [tx_byte.eq(header.word_select(count[:3], 8)), utx.valid.eq(1)]
                with m.If(sent):
                    m.d.comb += tx_load.eq(count[:3] != 0)
                    with m.If(count[:3] == 4):
                        m.d.comb += count_clear.eq(1)
                        with m.If(respond_data):
                            m.next = "SEND_PAYLOAD"
                        with m.Else():
                            m.next = "SEND_CRC"
                    with m.Else():
                        m.d.comb += count_step.eq(1)
            with m.State("SEND_PAYLOAD"):           # once byte `count` is in buf_data
                m.d.comb += [tx_byte.eq(buf_data), utx.valid.eq(buf_ready)]
                with m.If(sent):
                    m.d.comb += tx_load.eq(1)
                    with m.If(at_last):
                        m.d.comb += count_clear.eq(1)
                        m.next = "SEND_CRC"
                    with m.Else():
                        m.d.comb += count_step.eq(1)
            with m.State("SEND_CRC"):               # once the last byte is in the CRC
                # The low byte, then (after a rotation by 8, comparing the byte with itself) the
                # high byte, both from crc[:8].
                m.d.comb += [tx_byte.eq(crc[:8]), utx.valid.eq(~crc_busy)]
                with m.If(sent):
                    with m.If(count[0]):
                        m.next = "HUNT"
                    with m.Else():
                        m.d.comb += [tx_load.eq(1), tx_compare.eq(1), count_step.eq(1)]
        return m
