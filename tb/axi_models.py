"""AXI4 memory model for DMA testbenches: cocotbext-axi's ``AxiRam`` plus error injection and
protocol checks.

``CheckedAxiRam`` is an ``AxiRam`` (same channel drivers, pause generators, reset handling and
``read``/``write`` methods) whose burst processes also:

* answer SLVERR or DECERR for beats that touch a chosen address range (``inject``): a read beat
  gets the response and garbage data, a write burst with any such beat gets it as BRESP and the
  beats in the range are not written. Stock ``AxiRam`` cannot do this: it takes every address
  modulo its size, so it never answers SLVERR for addresses beyond it;
* check every burst: INCR, AxSIZE = bus width, aligned address, AxLEN < ``max_burst``, no 4 KiB
  crossing, WLAST exactly on the last beat, and every byte enabled by WSTRB inside
  ``writable`` (a numpy bool array over the memory, set by the test; ``None`` disables the check);
* record every beat's word address (``read_beats``, ``write_beats``) and every burst
  (``read_bursts``, ``write_bursts``) so the test can compare the traffic with its expectation.

Violations are collected in ``violations`` (strings) rather than raised inside the model's
coroutines; the testbench asserts the list is empty after each transfer.

Reset: pass the DUT's reset. While it is asserted the model drops every transaction it holds
(cocotbext-axi kills the burst processes and clears the channel queues), like a memory reset with
the DMA. Memory contents are kept.
"""

from cocotbext.axi import AxiRam
from cocotbext.axi.axi_ram import AxiRamRead, AxiRamWrite
from cocotbext.axi.constants import AxiBurstType, AxiResp

__all__ = ["CheckedAxiRam"]


class _Checks:
    """Burst checks shared by the read and write sides."""
    def _check_burst(self, kind, addr, length, size, burst):
        ram = self.ram
        beats = length + 1
        if burst != AxiBurstType.INCR:
            ram.violations.append(f"{kind} burst at {addr:#x}: burst type {burst!r}, not INCR")
        if 1 << size != self.byte_lanes:
            ram.violations.append(f"{kind} burst at {addr:#x}: size {1 << size} bytes, not the "
                                  f"bus width {self.byte_lanes}")
        if addr % self.byte_lanes:
            ram.violations.append(f"{kind} burst at {addr:#x}: address not word-aligned")
        if beats > ram.max_burst:
            ram.violations.append(f"{kind} burst at {addr:#x}: {beats} beats > max_burst "
                                  f"{ram.max_burst}")
        if (addr & 0xfff) + beats * self.byte_lanes > 0x1000:
            ram.violations.append(f"{kind} burst at {addr:#x}: {beats} beats cross 4 KiB")

    def _fault(self, addr, nbytes, kind):
        """The error response for ``nbytes`` bytes at ``addr`` (OKAY if none)."""
        for lo, hi, resp, kinds in self.ram.faults:
            if kind in kinds and addr < hi and lo < addr + nbytes:
                return resp
        return AxiResp.OKAY


class _Read(_Checks, AxiRamRead):
    async def _process_read(self):
        ram = self.ram
        while True:
            ar = await self.ar_channel.recv()
            arid = int(ar.arid)
            addr = int(ar.araddr)
            length = int(ar.arlen)
            size = int(ar.arsize)
            burst = AxiBurstType(int(ar.arburst))
            self._check_burst("read", addr, length, size, burst)
            ram.read_bursts.append((addr, length + 1))
            word = addr - addr % self.byte_lanes
            for n in range(length + 1):
                r = self.r_channel._transaction_obj()
                r.rid = arid
                r.rlast = n == length
                resp = self._fault(word % self.size, self.byte_lanes, "r")
                r.rresp = resp
                if resp == AxiResp.OKAY:
                    data = self.read(word % self.size, self.byte_lanes)
                else:
                    data = bytes([0xE5]) * self.byte_lanes
                r.rdata = int.from_bytes(data, "little")
                ram.read_beats.append(word)
                await self.r_channel.send(r)
                word += self.byte_lanes


class _Write(_Checks, AxiRamWrite):
    async def _process_write(self):
        ram = self.ram
        while True:
            aw = await self.aw_channel.recv()
            awid = int(aw.awid)
            addr = int(aw.awaddr)
            length = int(aw.awlen)
            size = int(aw.awsize)
            burst = AxiBurstType(int(aw.awburst))
            self._check_burst("write", addr, length, size, burst)
            ram.write_bursts.append((addr, length + 1))
            word = addr - addr % self.byte_lanes
            bresp = AxiResp.OKAY
            for n in range(length + 1):
                w = await self.w_channel.recv()
                data = int(w.wdata).to_bytes(self.byte_lanes, "little")
                strb = int(w.wstrb)
                if int(w.wlast) != (n == length):
                    ram.violations.append(f"write burst at {addr:#x}: wlast={int(w.wlast)} on "
                                          f"beat {n} of {length + 1}")
                ram.write_beats.append((word, strb))
                resp = self._fault(word % self.size, self.byte_lanes, "w")
                if resp != AxiResp.OKAY:
                    bresp = max(bresp, resp)
                for lane in range(self.byte_lanes):
                    if not strb >> lane & 1:
                        continue
                    byte_addr = (word + lane) % self.size
                    if ram.writable is not None and not ram.writable[byte_addr]:
                        ram.violations.append(f"write burst at {addr:#x}: WSTRB enables byte "
                                              f"{word + lane:#x} outside the destination")
                    if resp == AxiResp.OKAY:
                        self.mem[byte_addr] = data[lane]
                word += self.byte_lanes
            b = self.b_channel._transaction_obj()
            b.bid = awid
            b.bresp = bresp
            await self.b_channel.send(b)


class CheckedAxiRam(AxiRam):
    """``AxiRam`` of ``size`` bytes (a plain ``bytearray``) with error injection and checks.

    Queue limits: the model accepts up to ``queue`` read bursts and ``queue`` write bursts ahead
    of the ones it is answering (cocotbext-axi's default is 2), so that a DMA's concurrency shows;
    the R, W and B queues keep the defaults (the model answers one beat per cycle when not paused).
    """
    def __init__(self, bus, clock, reset=None, *, size, max_burst=256, queue=8):
        # AxiRam.__init__ builds its own read/write interfaces; build ours instead.
        self.write_if = None
        self.read_if = None
        super(AxiRam, self).__init__(size, bytearray(size))
        self.write_if = _Write(bus.write, clock, reset, True, mem=self.mem)
        self.read_if = _Read(bus.read, clock, reset, True, mem=self.mem)
        self.write_if.ram = self.read_if.ram = self
        self.read_if.ar_channel.queue_occupancy_limit = queue
        self.write_if.aw_channel.queue_occupancy_limit = queue
        self.max_burst = max_burst
        self.faults = []            # (lo, hi, resp, "r"/"w"/"rw")
        self.writable = None
        self.violations = []
        self.clear_log()

    def inject(self, lo, hi, resp, kinds="rw"):
        """Answer ``resp`` for beats touching bytes [lo, hi) (reads and/or writes)."""
        self.faults.append((lo, hi, AxiResp(resp), kinds))

    def clear_faults(self):
        self.faults = []

    def clear_log(self):
        self.read_bursts = []
        self.write_bursts = []
        self.read_beats = []
        self.write_beats = []

    def channels(self):
        """The five channel models, for pause generators: AW, W, B, AR, R."""
        return (self.write_if.aw_channel, self.write_if.w_channel, self.write_if.b_channel,
                self.read_if.ar_channel, self.read_if.r_channel)

    def set_pause_generators(self, make):
        """``make()`` returns a fresh generator for each channel; ``None`` removes the pauses."""
        for channel in self.channels():
            if make is None:
                channel.clear_pause_generator()
                channel.pause = False
            else:
                channel.set_pause_generator(make())
