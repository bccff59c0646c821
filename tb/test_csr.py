"""Tests of the register framework (rtl/csr.py), Tessera's register set (rtl/registers.py) and the
generated docs/register-map.md.

* ``test_csr_cocotb``: tb/csr_tb.py on every selected simulator — Tessera's register file behind
  cocotbext-axi's AxiLiteMaster and a cycle-level AXI4-Lite driver.
* ``test_framework_*``: every access type (including W1S, which Tessera does not use yet), field
  packing and gaps, on a small demonstration map in Amaranth's simulator with the same reference
  model (tb/csr_harness.py) and a compact AXI4-Lite driver that randomizes channel order and stalls.
* Description checks (errors say what was wrong), the DMA descriptor view, and that
  docs/register-map.md is what scripts/gen_regmap.py generates.
"""

import random
from pathlib import Path

import pytest
from amaranth.hdl import Fragment, Shape, Value
from amaranth.sim import Simulator

from tessera.rtl.axi import Resp
from tessera.rtl.csr import Access, Field, Register, RegisterFile, RegisterMap, Reserved
from tessera.rtl.dma_descriptor import DmaDescriptor
from tessera.rtl.registers import (DEFAULT_CONFIG, ID_VALUE, PERF_COUNTERS, WATCHDOG_DEFAULT,
                                   dma_descriptor, register_file, register_map,
                                   register_map_markdown)
from tessera.tb import simulators
from tessera.tb.csr_harness import CsrHarness, RegisterModel, pulse_fields

ROOT = Path(__file__).resolve().parent.parent

# --- cocotb: Tessera's register file on each simulator -------------------------------------------

#: A non-default configuration, so that configuration read-back is not checked against defaults.
CONFIG = {"rows": 8, "cols": 6, "scratchpad_depth": 1024, "accumulator_depth": 128,
          "bus_width": 128}
TESTCASES = ["reset_values", "random_traffic", "access_types", "channel_ordering", "byte_strobes",
             "hardware_wins"]


def _harness(**config):
    return CsrHarness(register_map(**config))


@pytest.mark.parametrize("testcase", TESTCASES)
def test_csr_cocotb(sim, testcase, seed):
    design = simulators.build(sim, "csr_harness", _harness, CONFIG)
    simulators.run(design, "tessera.tb.csr_tb", testcase=testcase, seed=seed)


# --- the register map document ------------------------------------------------------------------

def test_register_map_doc_is_current():
    path = ROOT / "docs" / "register-map.md"
    assert path.exists(), "docs/register-map.md is missing: run python scripts/gen_regmap.py"
    assert path.read_text() == register_map_markdown(), \
        "docs/register-map.md is out of date: run python scripts/gen_regmap.py"


def test_register_map_contents():
    regmap = register_map(**CONFIG)
    assert regmap["ID"].reset == ID_VALUE == 0x54535241
    assert ID_VALUE.to_bytes(4, "big") == b"TSRA"
    for name, key in [("ROWS", "rows"), ("COLS", "cols"), ("SCRATCHPAD_DEPTH", "scratchpad_depth"),
                      ("ACCUMULATOR_DEPTH", "accumulator_depth"), ("BUS_WIDTH", "bus_width")]:
        assert regmap[name].reset == CONFIG[key]
    # The DMA hook mirrors the descriptor: same field names and widths.
    layout = DmaDescriptor()
    hook = {f.name: f.width for name in ("DMA_ADDR", "DMA_STRIDE", "DMA_ROWS", "DMA_SRAM")
            for f in regmap[name].fields}
    assert hook == {name: field.width for name, field in layout if name != "reserved"}
    assert regmap["DMA_ROWS"].pack(rows=3, row_bytes=5) == (5 << 16) | 3
    assert regmap["DMA_SRAM"].unpack(1 << 17 | 1 << 16 | 7) == \
        {"sram_row": 7, "buffer": 1, "direction": 1}
    # The performance counters, in order from 0x100, and the program registers.
    assert [regmap[name].offset for name in PERF_COUNTERS] == \
        [0x100 + 4 * i for i in range(len(PERF_COUNTERS))]
    assert regmap["WATCHDOG"].reset == WATCHDOG_DEFAULT
    assert [regmap[name].offset for name in ("PROGRAM_ADDR", "PROGRAM_LEN", "ERROR_CODE",
                                             "ERROR_INFO")] == [0x48, 0x4C, 0x50, 0x54]
    with pytest.raises(ValueError, match=r"bus_width must be one of \[32, 64, 128\], not 48"):
        register_map(bus_width=48)
    with pytest.raises(ValueError, match=r"rows must be an integer in \[1, 256\], not 0"):
        register_map(rows=0)


# --- framework checks of descriptions -------------------------------------------------------------

def test_description_errors():
    rw = Field("x", 1, Access.RW)
    cases = [
        (lambda: Field("X", 1, Access.RW), "field name must be a lower-case identifier, not 'X'"),
        (lambda: Field("x", 33, Access.RW), r"width of field 'x' must be an integer in \[1, 32\]"),
        (lambda: Field("x", 4, Access.RW, reset=16), r"reset of field 'x' must be an integer in "
                                                     r"\[0, 15\], not 16"),
        (lambda: Field("x", 1, Access.RO, reset=1), "field 'x': a RO field has no reset value"),
        (lambda: Register("ctrl", [rw]), "register name must be an upper-case identifier"),
        (lambda: Register("A", []), "register A must have at least one field"),
        (lambda: Register("A", [rw], offset=6), "offset of register A must be a multiple of 4"),
        (lambda: Register("A", [Field("a", 20, Access.RW), Field("b", 20, Access.RW)]),
         r"field 'b' of register A does not fit: bits \[39:20\]"),
        (lambda: Register("A", [Field("a", 8, Access.RW), Field("b", 8, Access.RW, lsb=4)]),
         r"field 'b' of register A overlaps another field at bits \[11:4\]"),
        (lambda: Register("A", [rw, Field("x", 1, Access.RO)]),
         "register A: field name 'x' is used twice"),
        (lambda: Register("A", [Field("x", 1, Access.W1C), Field("x_set", 1, Access.RW)]),
         "register A: port name 'x_set' is used twice"),
        (lambda: RegisterMap([Register("A", [rw]), Register("A", [rw])]),
         "register name A is used twice"),
        (lambda: RegisterMap([Register("A", [rw]), Register("B", [rw], offset=0)]),
         "register B at 0x0 overlaps register A at 0x0"),
        (lambda: RegisterMap([Reserved("r", 0, 16), Register("B", [rw], offset=8)]),
         "register B at 0x8 overlaps reserved window 'r' at 0x0"),
        (lambda: RegisterMap([Register("A", [rw], offset=0x1000)]),
         "register A at 0x1000 is outside the 12-bit address space"),
        (lambda: RegisterMap([Register("S_AXIL", [rw])]), "S_AXIL is reserved"),
    ]
    for make, message in cases:
        with pytest.raises((ValueError, TypeError), match=message):
            make()


# --- framework behaviour in Amaranth's simulator -------------------------------------------------

def demo_map():
    """Every access type, multi-bit fields, gaps between fields and registers, a reserved window."""
    return RegisterMap([
        Register("CONSTS", [Field("a", 4, Access.CONST, reset=0xA),
                            Field("b", 12, Access.CONST, reset=0x123, lsb=8)]),
        Register("RW_MULTI", [Field("lo", 8, Access.RW, reset=0x5A),
                              Field("mid", 12, Access.RW, reset=0xABC),
                              Field("hi", 4, Access.RW, reset=0x3, lsb=28)]),
        Register("FLAGS", [Field("sticky", 4, Access.W1C, reset=0x2),
                           Field("request", 4, Access.W1S, reset=0x1, lsb=8),
                           Field("kick", 3, Access.PULSE, lsb=14),
                           Field("level", 7, Access.RO, lsb=25)]),
        Reserved("hole", 0x10, 0x10),
        Register("WIDE", [Field("value", 32, Access.RW, reset=0xDEADBEEF)]),     # 0x20
        Register("LAST", [Field("value", 1, Access.RO)], offset=0xFC),
    ], addr_width=8)


class AmaranthAxiLite:
    """AXI4-Lite manager for Amaranth testbenches, with the same protocol checks as csr_tb.py."""
    def __init__(self, ctx, bus, rng):
        self.ctx, self.bus, self.rng = ctx, bus, rng
        self.cycles = 0

    async def write(self, addr, data, strb, *, aw_delay=0, w_delay=0, b_delay=0, during=None):
        """``during(cycle)`` runs in every cycle before the clock edge (to drive hardware inputs).
        With no delays, AW and W are accepted at the first edge and the register file performs
        the write in the cycle after it (cycle 1)."""
        ctx, bus = self.ctx, self.bus
        aw_done = w_done = False
        held, waited = None, 0
        for cycle in range(100):
            ctx.set(bus.awvalid, not aw_done and cycle >= aw_delay)
            ctx.set(bus.awaddr, addr)
            ctx.set(bus.wvalid, not w_done and cycle >= w_delay)
            ctx.set(bus.wdata, data)
            ctx.set(bus.wstrb, strb)
            bvalid, bresp = ctx.get(bus.bvalid), ctx.get(bus.bresp)
            if held is not None:
                assert bvalid and bresp == held, "B changed before it was accepted"
            bready = bvalid and waited >= b_delay
            ctx.set(bus.bready, bready)
            aw_done |= bool(ctx.get(bus.awvalid) and ctx.get(bus.awready))
            w_done |= bool(ctx.get(bus.wvalid) and ctx.get(bus.wready))
            if during is not None:
                during(cycle)
            await ctx.tick()
            self.cycles += 1
            if bvalid and bready:
                break
            if bvalid:
                held, waited = bresp, waited + 1
        else:
            raise AssertionError(f"write {addr:#x} did not complete")
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        ctx.set(bus.bready, 0)
        return bresp

    async def read(self, addr, *, r_delay=0):
        ctx, bus = self.ctx, self.bus
        ar_done = False
        held, waited = None, 0
        for cycle in range(100):
            ctx.set(bus.arvalid, not ar_done)
            ctx.set(bus.araddr, addr)
            rvalid, payload = ctx.get(bus.rvalid), (ctx.get(bus.rdata), ctx.get(bus.rresp))
            if held is not None:
                assert rvalid and payload == held, "R changed before it was accepted"
            rready = rvalid and waited >= r_delay
            ctx.set(bus.rready, rready)
            ar_done |= bool(ctx.get(bus.arvalid) and ctx.get(bus.arready))
            await ctx.tick()
            self.cycles += 1
            if rvalid and rready:
                break
            if rvalid:
                held, waited = payload, waited + 1
        else:
            raise AssertionError(f"read {addr:#x} did not complete")
        ctx.set(bus.arvalid, 0)
        ctx.set(bus.rready, 0)
        return payload


def run_harness(regmap, bench):
    dut = CsrHarness(regmap)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def testbench(ctx):
        await bench(ctx, dut)
    sim.add_testbench(testbench)
    sim.run()


async def check_ports(ctx, dut, model, label):
    await ctx.tick().repeat(2)
    for (name, field), expect in model.outputs().items():
        got = ctx.get(getattr(getattr(dut, name.lower()), field))
        assert got == expect, f"{label}: {name}.{field} = {got:#x}, expected {expect:#x}"
    for register, field in pulse_fields(model.map):
        got = ctx.get(getattr(dut.pulse_count, f"{register.port_name}_{field.name}"))
        assert got == model.pulses[(register.name, field.name)], f"{label}: {field.name} pulses"


def test_framework_random(seed):
    """Random traffic on the demonstration map against RegisterModel: all access types."""
    regmap = demo_map()
    rng = random.Random(seed)
    stats = {"ops": 0, "slverr": 0}

    async def bench(ctx, dut):
        model = RegisterModel(regmap)
        bus = AmaranthAxiLite(ctx, dut.s_axil, rng)
        for register in regmap:                             # reset values
            assert await bus.read(register.offset) == (register.reset, Resp.OKAY)
        await check_ports(ctx, dut, model, "reset")
        mapped, unmapped = model.addresses(), model.unmapped()
        for op in range(600):
            kind = rng.random()
            address = rng.choice(unmapped) if rng.random() < 0.15 else rng.choice(mapped)
            address |= rng.randrange(4)                     # addr[1:0] are ignored
            delays = {"aw_delay": rng.choice([0, 0, 1, 3]), "w_delay": rng.choice([0, 0, 1, 3]),
                      "b_delay": rng.choice([0, 0, 2])}
            if kind < 0.45:
                data, strb = rng.getrandbits(32), rng.randrange(16)
                resp = await bus.write(address, data, strb, **delays)
                assert resp == model.write(address, data, strb), f"op {op}: write {address:#x}"
            elif kind < 0.85:
                got = await bus.read(address, r_delay=rng.choice([0, 0, 2]))
                assert got == model.read(address), (f"op {op}: read {address:#x}: {got}, "
                                                    f"expected {model.read(address)}")
            else:                                           # hardware side
                flags = dut.flags
                ctx.set(flags.level, level := rng.getrandbits(7))
                model.inputs[("FLAGS", "level")] = level
                ctx.set(dut.last.value, bit := rng.getrandbits(1))
                model.inputs[("LAST", "value")] = bit
                sticky, request = rng.getrandbits(4), rng.getrandbits(4)
                ctx.set(flags.sticky_set, sticky)
                ctx.set(flags.request_clear, request)
                await ctx.tick()
                ctx.set(flags.sticky_set, 0)
                ctx.set(flags.request_clear, 0)
                model.hw_set("FLAGS", "sticky", sticky)
                model.hw_clear("FLAGS", "request", request)
            stats["ops"] += 1
            stats["slverr"] += model.map.at(address) is None
            if op % 50 == 0:
                await check_ports(ctx, dut, model, f"op {op}")
        await check_ports(ctx, dut, model, "end")
        stats["cycles"] = bus.cycles

    run_harness(regmap, bench)
    assert stats["slverr"] > 30, stats
    print(f"seed={seed} {stats}")


def test_framework_same_cycle_priority():
    """In the cycle the host's write takes effect, a hardware set beats the host's clear (W1C) and
    the host's set beats a hardware clear (W1S); one cycle earlier or later they do not collide."""
    regmap = demo_map()
    flags = regmap["FLAGS"]

    async def bench(ctx, dut):
        bus = AmaranthAxiLite(ctx, dut.s_axil, random.Random(0))
        for hw_cycle, expect_sticky, expect_request in [(1, 0b0101, 0b0110),   # same cycle
                                                         (0, 0b0000, 0b0110),   # before
                                                         (2, 0b0101, 0b0000)]:  # after
            # Start from sticky = 1111, request = 0000.
            ctx.set(dut.flags.sticky_set, 0b1111)
            ctx.set(dut.flags.request_clear, 0b1111)
            await ctx.tick()

            def during(cycle):
                ctx.set(dut.flags.sticky_set, 0b0101 if cycle == hw_cycle else 0)
                ctx.set(dut.flags.request_clear, 0b1111 if cycle == hw_cycle else 0)
            word = flags.pack(sticky=0b1111, request=0b0110)
            assert await bus.write(flags.offset, word, 0xF, during=during) == Resp.OKAY
            ctx.set(dut.flags.sticky_set, 0)
            ctx.set(dut.flags.request_clear, 0)
            data, _ = await bus.read(flags.offset)
            got = flags.unpack(data)
            assert (got["sticky"], got["request"]) == (expect_sticky, expect_request), \
                f"hardware event in cycle {hw_cycle}: {got}"

    run_harness(regmap, bench)


def test_read_timing():
    """AR accepted at the first edge: the addressed register is sampled in cycle 1 (the read
    multiplexer's first stage), RVALID rises in cycle 3 and a new AR is taken only after R."""
    regmap = demo_map()
    flags = regmap["FLAGS"]

    async def bench(ctx, dut):
        bus = dut.s_axil
        ctx.set(bus.araddr, flags.offset)
        rvalid_cycle = None
        for cycle in range(8):
            ctx.set(dut.flags.level, 0x10 + cycle)        # a different value in every cycle
            ctx.set(bus.arvalid, cycle == 0)
            if cycle == 0:
                assert ctx.get(bus.arready), "AR not ready while idle"
            elif rvalid_cycle is None:
                assert not ctx.get(bus.arready), f"AR ready in cycle {cycle} during a read"
            if ctx.get(bus.rvalid) and rvalid_cycle is None:
                rvalid_cycle = cycle
                ctx.set(bus.rready, 1)
                level = flags.unpack(ctx.get(bus.rdata))["level"]
            await ctx.tick()
        assert rvalid_cycle == 3, f"RVALID in cycle {rvalid_cycle}, expected 3"
        assert level == 0x11, f"read level {level:#x}: sampled in the wrong cycle (expected 0x11)"
        assert ctx.get(bus.arready) and not ctx.get(bus.rvalid)

    run_harness(regmap, bench)


def test_dma_descriptor_view():
    """Writing the DMA hook registers yields the same DmaDescriptor as packing it directly."""
    regfile = register_file(**DEFAULT_CONFIG)
    regmap = regfile.register_map
    desc = dma_descriptor(regfile)
    layout = DmaDescriptor()
    values = {"dram_addr": 0x8001_2345, "dram_stride": 0x1234_5678, "rows": 0xBEEF,
              "row_bytes": 0x0102, "sram_row": 0xCAFE, "buffer": 1, "direction": 1}

    async def bench(ctx):
        bus = AmaranthAxiLite(ctx, regfile.s_axil, random.Random(1))
        for name in ("DMA_ADDR", "DMA_STRIDE", "DMA_ROWS", "DMA_SRAM"):
            register = regmap[name]
            word = register.pack(**{f.name: values[f.name] for f in register.fields})
            assert await bus.write(register.offset, word, 0xF) == Resp.OKAY
        expect = sum(values[name] << field.offset for name, field in layout if name in values)
        assert ctx.get(Value.cast(desc)) == expect

    sim = Simulator(regfile)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_ports_and_names():
    """Hardware ports follow the access types; Verilog names are <register>__<field>."""
    regfile = RegisterFile(demo_map())
    members = regfile.signature.members
    assert "consts" not in members                       # CONST only: no port
    flags = members["flags"].signature.members
    assert {name: (m.flow.name, Shape.cast(m.shape).width) for name, m in flags.items()} == {
        "sticky": ("Out", 4), "sticky_set": ("In", 4), "request": ("Out", 4),
        "request_clear": ("In", 4), "kick": ("Out", 3), "level": ("In", 7)}
    assert regfile.s_axil.signature.addr_width == 8
    Fragment.get(regfile, None)                             # elaborates
