"""cocotb testbench of the AXI4-Lite register file (rtl/csr.py) with Tessera's registers
(rtl/registers.py), in tb/csr_harness.py's ``CsrHarness``.

Run from pytest by tb/test_csr.py. Expected values come from the register definition through
``RegisterModel`` (tb/csr_harness.py), never from constants written here; the tests iterate over the
map's registers and fields by access type, so they cover whatever the map contains.

Two bus drivers:

* cocotbext-axi's ``AxiLiteMaster`` for data traffic, each test once without and once or twice with
  random pauses on all five channels (AW, W, B, AR, R);
* :class:`AxiLiteDriver`, a cycle-level driver for what the master model cannot produce: AW
  before W, W before AW, both in the same cycle, any WSTRB pattern, long BREADY/RREADY stalls
  (checking that BVALID/RVALID and their payloads hold), and hardware inputs that change during a
  write.

Every wait is bounded (``TIMEOUT`` cycles): a hang fails the test. Randomness comes from cocotb's
seed (printed; replay with ``TESSERA_SEED=<seed>``).
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from tessera.rtl.axi import Resp
from tessera.rtl.csr import Access
from tessera.rtl.registers import register_map
from tessera.tb.csr_harness import RegisterModel, pulse_fields

PERIOD_NS = 10
#: Cycles any single handshake may take before the test declares a hang.
TIMEOUT = 200
#: Time an AxiLiteMaster transaction may take, queueing behind others under random pauses.
MASTER_TIMEOUT_NS = 2000 * PERIOD_NS
#: Pause probabilities of the AXI channels: none, then random pauses.
PAUSES = [0.0, 0.5]


def pause_generator(rng, probability):
    while True:
        yield rng.random() < probability


class AxiLiteDriver:
    """Cycle-level AXI4-Lite manager on the ``s_axil__*`` ports, with protocol checks.

    Signals are set right after a rising edge and sampled at the next one (the value present at the
    edge), like the stream drivers in tb/streams.py.
    """
    def __init__(self, dut):
        self.dut = dut
        self.clk = dut.clk
        for name in ("awvalid", "wvalid", "bready", "arvalid", "rready", "awprot", "arprot"):
            getattr(dut, f"s_axil__{name}").value = 0

    def _sig(self, name):
        return getattr(self.dut, f"s_axil__{name}")

    async def write(self, addr, data, strb=0xF, *, aw_delay=0, w_delay=0, b_delay=0,
                    early_bready=False, during=None):
        """One write; AW appears ``aw_delay`` and W ``w_delay`` cycles after the call; BREADY
        stays low for ``b_delay`` cycles of BVALID (or is high throughout with ``early_bready``).
        ``during(cycle)`` is called every cycle before the edge (to drive hardware inputs).
        Returns BRESP."""
        s = self._sig
        aw_done = w_done = False
        b_seen = None                           # (bresp) once BVALID has been seen
        b_wait = 0
        for cycle in range(TIMEOUT):
            s("awvalid").value = int(not aw_done and cycle >= aw_delay)
            s("awaddr").value = addr
            s("wvalid").value = int(not w_done and cycle >= w_delay)
            s("wdata").value = data
            s("wstrb").value = strb
            s("bready").value = int(early_bready or (b_seen is not None and b_wait >= b_delay))
            if during is not None:
                during(cycle)
            await RisingEdge(self.clk)
            if s("awvalid").value and s("awready").value:
                aw_done = True
            if s("wvalid").value and s("wready").value:
                w_done = True
            bvalid = int(s("bvalid").value)
            if b_seen is not None:
                assert bvalid, "BVALID dropped before BREADY"
                assert int(s("bresp").value) == b_seen, "BRESP changed while BVALID was held"
            if bvalid:
                assert aw_done and w_done, "BVALID before both AW and W were accepted"
                if s("bready").value:
                    break
                b_seen = int(s("bresp").value)
                b_wait += 1
        else:
            raise AssertionError(f"write {addr:#x}: no response within {TIMEOUT} cycles "
                                 f"(aw_done={aw_done}, w_done={w_done})")
        resp = int(s("bresp").value)
        for name in ("awvalid", "wvalid", "bready"):
            s(name).value = 0
        return resp

    async def read(self, addr, *, r_delay=0, early_rready=False):
        """One read; RREADY stays low for ``r_delay`` cycles of RVALID. Returns (data, resp)."""
        s = self._sig
        ar_done = False
        r_seen = None
        r_wait = 0
        for cycle in range(TIMEOUT):
            s("arvalid").value = int(not ar_done)
            s("araddr").value = addr
            s("rready").value = int(early_rready or (r_seen is not None and r_wait >= r_delay))
            await RisingEdge(self.clk)
            if s("arvalid").value and s("arready").value:
                ar_done = True
            rvalid = int(s("rvalid").value)
            if r_seen is not None:
                assert rvalid, "RVALID dropped before RREADY"
                assert (int(s("rdata").value), int(s("rresp").value)) == r_seen, \
                    "RDATA/RRESP changed while RVALID was held"
            if rvalid:
                if s("rready").value:
                    break
                r_seen = (int(s("rdata").value), int(s("rresp").value))
                r_wait += 1
        else:
            raise AssertionError(f"read {addr:#x}: no response within {TIMEOUT} cycles")
        result = (int(s("rdata").value), int(s("rresp").value))
        s("arvalid").value = 0
        s("rready").value = 0
        return result


class TB:
    """Clock, reset, the register model and one of the two bus drivers."""
    def __init__(self, dut, *, master=True):
        self.dut = dut
        params = json.loads(os.environ["TESSERA_PARAMS"])
        self.map = register_map(**params)
        assert len(dut.s_axil__awaddr) == self.map.addr_width, "address width differs from map"
        assert len(dut.s_axil__wdata) == 32
        self.seed = cocotb.RANDOM_SEED
        self.rng = random.Random(self.seed)
        dut._log.info("test seed %d (derived from COCOTB_RANDOM_SEED=%s and the test name), "
                      "params %s", self.seed, os.environ.get("COCOTB_RANDOM_SEED"), params)
        self.model = RegisterModel(self.map)
        for port in self._hardware_inputs():
            port.value = 0
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
        if master:
            self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
            self.driver = None
        else:
            self.axil = None
            self.driver = AxiLiteDriver(dut)

    # --- ports ---------------------------------------------------------------------------------
    def port(self, register, field, suffix=""):
        return getattr(self.dut, f"{register.port_name}__{field}{suffix}")

    def fields(self, *accesses):
        return [(r, f) for r in self.map for f in r.fields if f.access in accesses]

    def _hardware_inputs(self):
        ports = []
        for register, field in self.fields(Access.RO, Access.W1C, Access.W1S):
            suffix = {Access.RO: "", Access.W1C: "_set", Access.W1S: "_clear"}[field.access]
            ports.append(self.port(register, field.name, suffix))
        return ports

    def pulse_count(self, register, field):
        return int(getattr(self.dut, f"pulse_count__{register.port_name}_{field.name}").value)

    # --- control -------------------------------------------------------------------------------
    async def reset(self):
        """Reset the DUT and start over with a fresh model (RO inputs back to 0)."""
        for port in self._hardware_inputs():
            port.value = 0
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        self.model = RegisterModel(self.map)
        self.counts_at_reset = {(r.name, f.name): self.pulse_count(r, f)
                                for r, f in pulse_fields(self.map)}

    def set_pauses(self, probability):
        channels = [self.axil.write_if.aw_channel, self.axil.write_if.w_channel,
                    self.axil.write_if.b_channel, self.axil.read_if.ar_channel,
                    self.axil.read_if.r_channel]
        for channel in channels:
            if probability:
                channel.set_pause_generator(pause_generator(self.rng, probability))
            else:
                channel.clear_pause_generator()

    async def drive_input(self, register, field, value):
        """Drive RO input ``field`` and record it in the model."""
        self.port(register, field.name).value = value
        self.model.inputs[(register.name, field.name)] = value
        await RisingEdge(self.dut.clk)

    async def pulse_input(self, register, field, bits):
        """Hold W1C ``_set`` or W1S ``_clear`` high for one cycle."""
        suffix = "_set" if field.access is Access.W1C else "_clear"
        port = self.port(register, field.name, suffix)
        port.value = bits
        await RisingEdge(self.dut.clk)
        port.value = 0
        if field.access is Access.W1C:
            self.model.hw_set(register.name, field.name, bits)
        else:
            self.model.hw_clear(register.name, field.name, bits)
        await RisingEdge(self.dut.clk)

    # --- transactions through the AxiLiteMaster --------------------------------------------------
    async def read(self, address, label=""):
        """Read a word (or part of one) with the master and compare with the model."""
        resp = await with_timeout(self.axil.read(address, 4), MASTER_TIMEOUT_NS, "ns")
        got = int.from_bytes(resp.data, "little")
        expect, expect_resp = self.model.read(address)
        assert int(resp.resp) == expect_resp, (f"{label} read {address:#x}: resp {resp.resp}, "
                                               f"expected {expect_resp!r} (seed {self.seed})")
        assert got == expect, (f"{label} read {address:#x}: {got:#010x}, expected "
                               f"{expect:#010x} (seed {self.seed})")
        return got

    async def write(self, address, value, byte_offset=0, length=4, label=""):
        """Write ``length`` bytes of ``value``'s word from ``byte_offset`` on (WSTRB follows)."""
        data = value.to_bytes(4, "little")[byte_offset:byte_offset + length]
        resp = await with_timeout(self.axil.write(address + byte_offset, data), MASTER_TIMEOUT_NS,
                                  "ns")
        strb = ((1 << length) - 1) << byte_offset
        expect = self.model.write(address, value, strb)
        assert int(resp.resp) == expect, (f"{label} write {address:#x}: resp {resp.resp}, "
                                          f"expected {expect!r} (seed {self.seed})")

    async def check_outputs(self, label=""):
        """Compare every stored field's output port and every pulse count with the model."""
        await ClockCycles(self.dut.clk, 2)      # let pulses reach their counters
        for (name, field), expect in self.model.outputs().items():
            got = int(self.port(self.map[name], field).value)
            assert got == expect, (f"{label}: port {name}.{field} = {got:#x}, expected "
                                   f"{expect:#x} (seed {self.seed})")
        for register, field in pulse_fields(self.map):
            key = (register.name, field.name)
            got = (self.pulse_count(register, field) - self.counts_at_reset[key]) % (1 << 16)
            assert got == self.model.pulses[key], (f"{label}: {register.name}.{field.name} pulsed "
                                                   f"{got} times, expected "
                                                   f"{self.model.pulses[key]} (seed {self.seed})")


# --- tests with the AxiLiteMaster --------------------------------------------------------------

@cocotb.test()
async def reset_values(dut):
    """Every register reads its defined reset value; outputs start at their reset values."""
    tb = TB(dut)
    for pause in PAUSES:
        tb.set_pauses(pause)
        await tb.reset()
        await tb.check_outputs(f"after reset, pause {pause}")
        for register in tb.map:
            got = await tb.read(register.offset, f"reset pause {pause}")
            assert got == register.reset, f"{register.name}: {got:#x} != {register.reset:#x}"
        for address in tb.model.unmapped():
            await tb.read(address, f"unmapped pause {pause}")
    dut._log.info("reset_values: %d registers, %d unmapped offsets", len(tb.map),
                  len(tb.model.unmapped()))


@cocotb.test()
async def random_traffic(dut):
    """Random reads and writes (any register, unmapped offsets, partial words), batches of
    concurrent transactions, RO inputs and hardware set/clear events, against the model."""
    tb = TB(dut)
    rng = tb.rng
    mapped = tb.model.addresses()
    unmapped = tb.model.unmapped()
    ro = tb.fields(Access.RO)
    events = tb.fields(Access.W1C, Access.W1S)
    ops = 0
    for pause in [0.0, 0.3, 0.7]:
        tb.set_pauses(pause)
        await tb.reset()
        for batch in range(25):
            # Hardware side first (bus idle, so the order of effects is known).
            for register, field in rng.sample(ro, k=min(2, len(ro))):
                await tb.drive_input(register, field, rng.getrandbits(field.width))
            if events and rng.random() < 0.5:
                register, field = rng.choice(events)
                await tb.pulse_input(register, field, rng.getrandbits(field.width))
            # A batch of writes in flight together (the master pipelines them), then reads.
            writes = []
            for _ in range(rng.randint(1, 4)):
                address = rng.choice(unmapped) if rng.random() < 0.15 else rng.choice(mapped)
                offset = rng.randrange(4)
                length = rng.randint(1, 4 - offset)
                writes.append((address, rng.getrandbits(32), offset, length))
            tasks = [cocotb.start_soon(tb.write(a, v, o, n, label=f"batch {batch}"))
                     for a, v, o, n in writes]
            for task in tasks:
                await task
            reads = [rng.choice(mapped) for _ in range(rng.randint(1, 4))] + \
                    [a for a, _, _, _ in writes]
            tasks = [cocotb.start_soon(tb.read(a, f"batch {batch}")) for a in reads]
            for task in tasks:
                await task
            ops += len(writes) + len(reads)
            await tb.check_outputs(f"batch {batch} pause {pause}")
    dut._log.info("random_traffic: %d transactions checked", ops)


@cocotb.test()
async def access_types(dut):
    """RW/CONST/RO/W1C/PULSE behaviour of every such field, and SLVERR writes changing nothing."""
    tb = TB(dut)
    rng = tb.rng
    for pause in PAUSES:
        tb.set_pauses(pause)
        await tb.reset()
        label = f"pause {pause}"
        # RO: hardware inputs are reflected; writes do not change them.
        for register, field in tb.fields(Access.RO):
            for value in ((1 << field.width) - 1, 0, rng.getrandbits(field.width)):
                await tb.drive_input(register, field, value)
                await tb.read(register.offset, label)
            await tb.write(register.offset, 0xFFFFFFFF, label=label)
            await tb.read(register.offset, label)
        # CONST: writes ignored.
        for register in tb.map:
            if all(f.access is Access.CONST for f in register.fields):
                await tb.write(register.offset, ~register.reset & 0xFFFFFFFF, label=label)
                got = await tb.read(register.offset, label)
                assert got == register.reset, f"{register.name} changed to {got:#x}"
        # RW: all ones, all zeros, random; read back and outputs.
        for register in tb.map:
            if any(f.access is Access.RW for f in register.fields):
                for value in (0xFFFFFFFF, 0, rng.getrandbits(32)):
                    await tb.write(register.offset, value, label=label)
                    await tb.read(register.offset, label)
        await tb.check_outputs(f"RW {label}")
        # W1C: set by hardware, writing 0 keeps it, writing 1 clears it.
        for register, field in tb.fields(Access.W1C):
            ones = (1 << field.width) - 1
            await tb.pulse_input(register, field, ones)
            assert (await tb.read(register.offset, label)) >> field.lsb & ones == ones
            await tb.write(register.offset, 0, label=label)
            assert (await tb.read(register.offset, label)) >> field.lsb & ones == ones
            await tb.write(register.offset, ones << field.lsb, label=label)
            assert (await tb.read(register.offset, label)) >> field.lsb & ones == 0
        # PULSE: one pulse per write of 1; none for 0 or for a write that strobes other bytes.
        for register, field in pulse_fields(tb.map):
            word = 1 << field.lsb
            await tb.write(register.offset, word, label=label)
            await tb.write(register.offset, word, label=label)
            await tb.write(register.offset, 0, label=label)
            other = (field.lsb // 8 + 1) % 4
            await tb.write(register.offset, 0xFFFFFFFF, byte_offset=other, length=1, label=label)
            assert (await tb.read(register.offset, label)) >> field.lsb & 1 == 0
        await tb.check_outputs(f"pulses {label}")
        # Unmapped: SLVERR, and nothing changed anywhere.
        for address in tb.model.unmapped():
            await tb.write(address, rng.getrandbits(32), label=label)
        for register in tb.map:
            await tb.read(register.offset, f"after unmapped writes, {label}")
        await tb.check_outputs(f"unmapped {label}")


# --- tests with the cycle-level driver ----------------------------------------------------------

@cocotb.test()
async def channel_ordering(dut):
    """AW before W, W before AW, both together, with BREADY/RREADY stalls of up to 40 cycles."""
    tb = TB(dut, master=False)
    await tb.reset()
    drv = tb.driver
    rng = tb.rng
    rw = [r for r in tb.map if any(f.access is Access.RW for f in r.fields)]
    unmapped = tb.model.unmapped()
    cases = 0
    for aw_delay, w_delay in [(0, 0), (0, 1), (1, 0), (0, 5), (5, 0), (3, 3), (0, 12), (12, 0)]:
        for b_delay, early in [(0, False), (0, True), (1, False), (40, False)]:
            register = rng.choice(rw)
            value = rng.getrandbits(32)
            resp = await drv.write(register.offset, value, 0xF, aw_delay=aw_delay,
                                   w_delay=w_delay, b_delay=b_delay, early_bready=early)
            assert resp == tb.model.write(register.offset, value)
            data, resp = await drv.read(register.offset, r_delay=rng.choice([0, 1, 40]),
                                        early_rready=rng.random() < 0.5)
            assert (data, resp) == tb.model.read(register.offset), \
                f"{register.name} after write with delays {aw_delay}/{w_delay}/{b_delay}"
            address = rng.choice(unmapped)
            resp = await drv.write(address, value, aw_delay=w_delay, w_delay=aw_delay,
                                   b_delay=b_delay)
            assert resp == Resp.SLVERR, f"write {address:#x}: resp {resp}"
            assert await drv.read(address, r_delay=b_delay) == (0, Resp.SLVERR)
            cases += 1
    # Back-to-back writes and reads, no idle cycles between transactions.
    for register in rw:
        value = rng.getrandbits(32)
        assert await drv.write(register.offset, value, early_bready=True) == Resp.OKAY
        tb.model.write(register.offset, value)
    for register in tb.map:
        assert await drv.read(register.offset, early_rready=True) == \
            tb.model.read(register.offset)
    await tb.check_outputs("channel ordering")
    dut._log.info("channel_ordering: %d delay combinations", cases)


@cocotb.test()
async def byte_strobes(dut):
    """Every WSTRB pattern (including 0 and non-contiguous ones) on every writable register."""
    tb = TB(dut, master=False)
    await tb.reset()
    drv = tb.driver
    rng = tb.rng
    writable = [r for r in tb.map
                if any(f.access in (Access.RW, Access.W1C, Access.W1S, Access.PULSE)
                       for f in r.fields)]
    for register in writable:
        for strb in range(16):
            # Give W1C fields something to clear.
            for field in register.fields:
                if field.access is Access.W1C:
                    await tb.pulse_input(register, field, (1 << field.width) - 1)
            value = rng.getrandbits(32)
            resp = await drv.write(register.offset, value, strb,
                                   aw_delay=rng.randint(0, 2), w_delay=rng.randint(0, 2))
            assert resp == tb.model.write(register.offset, value, strb)
            data, resp = await drv.read(register.offset)
            expect = tb.model.read(register.offset)
            assert (data, resp) == expect, (f"{register.name} strb {strb:#06b}: read {data:#010x}"
                                            f", expected {expect[0]:#010x} (seed {tb.seed})")
        await tb.check_outputs(f"strobes {register.name}")


@cocotb.test()
async def hardware_wins(dut):
    """A W1C bit that hardware sets in the very cycle the host's clear takes effect stays set; RO
    inputs are sampled when AR is accepted, however long R then waits."""
    tb = TB(dut, master=False)
    await tb.reset()
    drv = tb.driver
    for register, field in tb.fields(Access.W1C):
        ones = (1 << field.width) - 1
        set_port = tb.port(register, field.name, "_set")
        await tb.pulse_input(register, field, ones)
        # With no delays, AW and W are accepted at the first edge and the write takes effect in
        # the next cycle (rtl/csr.py): raise `_set` in exactly that cycle.
        def same_cycle(cycle, port=set_port, ones=ones):
            port.value = ones if cycle == 1 else 0
        tb.model.write(register.offset, ones << field.lsb)
        assert await drv.write(register.offset, ones << field.lsb, during=same_cycle) == Resp.OKAY
        set_port.value = 0
        tb.model.hw_set(register.name, field.name, ones)
        data, _ = await drv.read(register.offset)
        assert data >> field.lsb & ones == ones, f"{register.name}.{field.name} lost a set"
        # Without a collision the clear works.
        tb.model.write(register.offset, ones << field.lsb)
        await drv.write(register.offset, ones << field.lsb)
        assert await drv.read(register.offset) == tb.model.read(register.offset)
    for register, field in tb.fields(Access.RO):
        value = tb.rng.getrandbits(field.width)
        await tb.drive_input(register, field, value)
        expect = tb.model.read(register.offset)
        task = cocotb.start_soon(drv.read(register.offset, r_delay=10))
        await ClockCycles(dut.clk, 3)               # AR accepted; R waits for RREADY
        tb.port(register, field.name).value = value ^ ((1 << field.width) - 1)
        assert await task == expect, f"{register.name}: R changed with the input"
        await tb.drive_input(register, field, value)
    await tb.check_outputs("hardware wins")
