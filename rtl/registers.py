"""Tessera's control and status registers: the one definition of the register map.

Everything else derives from :func:`register_map`: the AXI4-Lite register file
(:func:`register_file`), docs/register-map.md (:func:`register_map_markdown`, written by
scripts/gen_regmap.py and checked by tb/test_csr.py), and host software (which looks registers up
by name and encodes them with ``Register.pack``/``unpack``).

Layout (byte offsets; later issues fill the reserved windows)::

    0x000  identification     ID, VERSION
    0x010  configuration      ROWS, COLS, SCRATCHPAD_DEPTH, ACCUMULATOR_DEPTH, BUS_WIDTH
    0x040  control            CTRL, STATUS
    0x048  program            PROGRAM_ADDR, PROGRAM_LEN, ERROR_CODE, ERROR_INFO, WATCHDOG
    0x080  DMA                DMA_ERROR, DMA_ERROR_ADDR
    0x090  DMA test hook      DMA_ADDR, DMA_STRIDE, DMA_ROWS, DMA_SRAM, DMA_START
    0x100  performance        CYCLES .. DMA_BYTES_WRITTEN (PERF_COUNTERS)

The DMA test hook registers mirror :class:`~tessera.rtl.dma_descriptor.DmaDescriptor` field for
field (same names, same widths); :func:`dma_descriptor` assembles their outputs into one descriptor
value for the DMA, and writing 1 to ``DMA_START.start`` launches it.
"""

import inspect
import re

from amaranth.hdl import C, Cat, Shape
from amaranth.lib import data

from .csr import Access, Field, Register, RegisterFile, RegisterMap
from .dma_descriptor import Buffer, Direction, DmaDescriptor, DmaError
from .isa import ProgramError
from .util import check_dimension

__all__ = ["ID_VALUE", "VERSION", "ADDR_WIDTH", "DEFAULT_CONFIG", "PERF_COUNTERS", "WATCHDOG_DEFAULT", "DMA_DESCRIPTOR_REGISTERS",
           "register_map", "register_file", "dma_descriptor", "register_map_markdown"]

#: ``ID`` reads 0x54535241: the ASCII characters "TSRA" from the most significant byte down.
ID_VALUE = int.from_bytes(b"TSRA", "big")

#: Hardware version (major, minor, patch) in ``VERSION``.
VERSION = (0, 1, 0)

#: Byte address width of the register file's AXI4-Lite port (a 4 KiB window).
ADDR_WIDTH = 12

#: Configuration documented in docs/register-map.md and used when none is given: the default build
#: (8x8, as ``tessera verilog``/``demo``), the buffers' and the AXI4 signature's default sizes. The
#: top level passes its own values.
DEFAULT_CONFIG = {"rows": 8, "cols": 8, "scratchpad_depth": 4096, "accumulator_depth": 512,
                  "bus_width": 64}

#: Registers whose fields are the DmaDescriptor fields, in address order.
DMA_DESCRIPTOR_REGISTERS = ("DMA_ADDR", "DMA_STRIDE", "DMA_ROWS", "DMA_SRAM")

_DESCRIPTOR = DmaDescriptor()

#: Reset value of WATCHDOG: cycles without progress before a program is stopped.
WATCHDOG_DEFAULT = 1 << 20

#: Performance counters from 0x100 on, in address order: register name -> what it counts.
PERF_COUNTERS = {
    "CYCLES":          "Cycles from START to the end of the program.",
    "LOAD_BUSY":       "Cycles the LOAD engine executes an instruction.",
    "LOAD_STALL":      "Cycles the LOAD engine has an instruction waiting for a token or the DMA.",
    "EXEC_BUSY":       "Cycles the EXEC engine executes an instruction.",
    "EXEC_STALL":      "Cycles the EXEC engine has an instruction waiting for a token.",
    "STORE_BUSY":      "Cycles the STORE engine executes an instruction.",
    "STORE_STALL":     "Cycles the STORE engine has an instruction waiting for a token or the "
                       "DMA.",
    "MAC_ACTIVE":      "Cycles an activation row enters the PE array (R x C MACs each).",
    "DMA_BYTES_READ":  "Bytes the DMA read from memory (instructions included).",
    "DMA_BYTES_WRITTEN": "Bytes the DMA wrote to memory.",
}


def _descriptor_field(name, description):
    """An RW field named and sized like DmaDescriptor member ``name``."""
    return Field(name, Shape.cast(_DESCRIPTOR.members[name]).width, Access.RW,
                 description=description)


def _enum_values(enum):
    return ", ".join(f"{member.value} = {member.name}" for member in enum)


def _check_config(rows, cols, scratchpad_depth, accumulator_depth, bus_width):
    check_dimension("rows", rows)
    check_dimension("cols", cols)
    check_dimension("scratchpad_depth", scratchpad_depth, maximum=1 << 16)
    check_dimension("accumulator_depth", accumulator_depth, maximum=1 << 16)
    if bus_width not in (32, 64, 128):
        raise ValueError(f"bus_width must be one of [32, 64, 128], not {bus_width!r}")


def register_map(*, rows=DEFAULT_CONFIG["rows"], cols=DEFAULT_CONFIG["cols"],
                 scratchpad_depth=DEFAULT_CONFIG["scratchpad_depth"],
                 accumulator_depth=DEFAULT_CONFIG["accumulator_depth"],
                 bus_width=DEFAULT_CONFIG["bus_width"]):
    """Tessera's :class:`RegisterMap` for one configuration (the values ROWS .. BUS_WIDTH read)."""
    _check_config(rows, cols, scratchpad_depth, accumulator_depth, bus_width)

    def constant(name, value, description, offset=None):
        return Register(name, [Field("value", 32, Access.CONST, reset=value)], offset=offset,
                        description=description)

    major, minor, patch = VERSION
    return RegisterMap([
        # --- identification ---------------------------------------------------------------------
        Register("ID", [Field("value", 32, Access.CONST, reset=ID_VALUE,
                              description='ASCII "TSRA", most significant byte first')],
                 offset=0x000, description="Identifies a Tessera accelerator."),
        Register("VERSION", [
            Field("patch", 8, Access.CONST, reset=patch),
            Field("minor", 8, Access.CONST, reset=minor),
            Field("major", 8, Access.CONST, reset=major),
        ], description="Hardware version."),
        # --- configuration read-back ------------------------------------------------------------
        constant("ROWS", rows, "Rows R of the PE array (reduction length per tile).",
                 offset=0x010),
        constant("COLS", cols, "Columns C of the PE array (output channels per tile). Buffer "
                 "rows have max(ROWS, COLS) lanes."),
        constant("SCRATCHPAD_DEPTH", scratchpad_depth, "Rows of the scratchpad."),
        constant("ACCUMULATOR_DEPTH", accumulator_depth, "Rows of the accumulator."),
        constant("BUS_WIDTH", bus_width, "Data width of the AXI4 memory port, in bits."),
        # --- control ----------------------------------------------------------------------------
        Register("CTRL", [
            Field("start", 1, Access.PULSE, description="Start the program."),
            Field("soft_reset", 1, Access.PULSE,
                  description="Stop a running program (ERROR_CODE ABORTED) and reset the "
                              "engines once the DMA is idle; registers and buffers keep their "
                              "values."),
            Field("irq_enable", 1, Access.RW,
                  description="Raise the interrupt while STATUS.done or STATUS.error is set."),
        ], offset=0x040, description="Control."),
        Register("STATUS", [
            Field("busy", 1, Access.RO,
                  description="A program or a DMA test-hook transfer is running."),
            Field("done", 1, Access.W1C,
                  description="A program or DMA transfer completed."),
            Field("error", 1, Access.RO,
                  description="The last program stopped with an error (ERROR_CODE), or the last "
                              "DMA test-hook transfer failed (DMA_ERROR)."),
        ], description="Status."),
        Register("PROGRAM_ADDR", [
            Field("addr", 32, Access.RW,
                  description="Byte address of the program's first instruction in memory."),
        ], offset=0x048, description="Program address (16-byte instructions, see docs/isa.md)."),
        Register("PROGRAM_LEN", [
            Field("length", 32, Access.RW,
                  description="Instructions in the program; the last one executed must be HALT."),
        ], description="Program length."),
        Register("ERROR_CODE", [
            Field("code", 8, Access.RO,
                  description="ProgramError of the last program (table below); 0 = none."),
        ], description="Why the last program stopped early."),
        Register("ERROR_INFO", [
            Field("index", 32, Access.RO,
                  description="Index of the instruction that caused ERROR_CODE."),
        ], description="Where the last program stopped early."),
        Register("WATCHDOG", [
            Field("cycles", 32, Access.RW, reset=WATCHDOG_DEFAULT,
                  description="Cycles without progress after which a running program stops "
                              "with WATCHDOG; 0 disables the watchdog."),
        ], description="Watchdog limit."),
        # --- DMA --------------------------------------------------------------------------------
        Register("DMA_ERROR", [
            Field("code", 8, Access.RO, description="DmaError code of the error (table below); "
                                                     "0 = none."),
        ], offset=0x080, description="Error latched by the DMA."),
        Register("DMA_ERROR_ADDR", [
            Field("addr", 32, Access.RO,
                  description="Memory address of the failing access (response errors)."),
        ], description="Address of the DMA error."),
        # --- DMA test hook: a descriptor, field for field ---------------------------------------
        Register("DMA_ADDR", [
            _descriptor_field("dram_addr", "Byte address of the first row in memory."),
        ], offset=0x090, description="Descriptor: memory address."),
        Register("DMA_STRIDE", [
            _descriptor_field("dram_stride", "Bytes from one row's start to the next in memory."),
        ], description="Descriptor: memory stride."),
        Register("DMA_ROWS", [
            _descriptor_field("rows", "Number of rows (>= 1)."),
            _descriptor_field("row_bytes", "Bytes per row (>= 1, <= bytes of a buffer row)."),
        ], description="Descriptor: shape."),
        Register("DMA_SRAM", [
            _descriptor_field("sram_row", "First row of the on-chip buffer."),
            _descriptor_field("buffer", f"Buffer: {_enum_values(Buffer)}."),
            _descriptor_field("direction", f"Direction: {_enum_values(Direction)}."),
        ], description="Descriptor: on-chip side."),
        Register("DMA_START", [
            Field("start", 1, Access.PULSE,
                  description="Launch the descriptor held in DMA_ADDR .. DMA_SRAM."),
        ], description="DMA test hook: start one descriptor."),
        # --- performance counters ---------------------------------------------------------------
        *[Register(name, [Field("count", 32, Access.RO, description=text)],
                   offset=0x100 if i == 0 else None,
                   description="Performance counter (cleared by START, wraps at 2**32).")
          for i, (name, text) in enumerate(PERF_COUNTERS.items())],
    ], addr_width=ADDR_WIDTH)


def register_file(**config):
    """The :class:`RegisterFile` of :func:`register_map` for ``config`` (keyword arguments)."""
    return RegisterFile(register_map(**config))


def dma_descriptor(regfile):
    """The DMA test-hook registers of ``regfile`` as one ``DmaDescriptor`` value (read-only view).

    Fields come from the ports of the same name; ``reserved`` bits are 0.
    """
    ports = {}
    for name in DMA_DESCRIPTOR_REGISTERS:
        port = getattr(regfile, name.lower())
        for field in regfile.register_map[name].fields:
            ports[field.name] = getattr(port, field.name)
    parts = []
    for name, field in sorted(_DESCRIPTOR, key=lambda item: item[1].offset):
        width = Shape.cast(field.shape).width
        parts.append(ports[name] if name in ports else C(0, width))
    return data.View(_DESCRIPTOR, Cat(*parts))


def _enum_meanings(enum):
    """``{member: comment}`` from the comments next to an enum's members (one source)."""
    meanings = {}
    for line in inspect.getsource(enum).splitlines():
        match = re.match(r"\s*([A-Z_][A-Z0-9_]*)\s*=\s*\d+\s*(?:#\s*(.*))?$", line)
        if match:
            meanings[enum[match.group(1)]] = (match.group(2) or "").strip()
    return meanings


def register_map_markdown(**config):
    """docs/register-map.md for ``config`` (default: :data:`DEFAULT_CONFIG`)."""
    values = {**DEFAULT_CONFIG, **config}
    regmap = register_map(**values)
    notes = {
        "ROWS": "rows", "COLS": "cols", "SCRATCHPAD_DEPTH": "scratchpad_depth",
        "ACCUMULATOR_DEPTH": "accumulator_depth", "BUS_WIDTH": "bus_width",
    }
    settings = ", ".join(f"`{key}={value}`" for key, value in values.items())
    lines = [
        "<!-- Generated from rtl/registers.py by scripts/gen_regmap.py; do not edit by hand. -->",
        "",
        "# Register map",
        "",
        "Tessera's control and status registers, on an AXI4-Lite subordinate port "
        f"(`s_axil`, {regmap.addr_width}-bit byte addresses, 32-bit data). The definition is "
        "`rtl/registers.py`; the register file (`rtl/csr.py`), this page and host software all "
        "derive from it.",
        "",
        f"Reset values of the configuration registers are those of the configuration {settings}, "
        "with the parameter each comes from; other configurations read their own values. RO "
        "fields read the hardware's current value and are shown as 0.",
        "",
        regmap.markdown(reset_notes={name: f"= `{param}`" for name, param in notes.items()}),
        "## Bus behaviour",
        "",
        "- Registers are 32 bits at 4-byte aligned offsets; `addr[1:0]` and `AxPROT` are "
        "ignored.",
        "- `WSTRB` is honoured per byte: a field bit changes only if the strobe of its byte is "
        "set.",
        "- Unmapped offsets (gaps and reserved windows) answer `SLVERR`; such a write changes "
        "nothing and such a read returns 0. Writes to CONST and RO bits are ignored with "
        "`OKAY`.",
        "- AW and W are accepted in either order or together; BVALID/RVALID hold until accepted.",
        "",
        "## DMA error codes (`DMA_ERROR.code`)",
        "",
        "From `DmaError` in `rtl/dma_descriptor.py`.",
        "",
        "| Code | Name | Meaning |",
        "|---|---|---|",
    ]
    for enum in (DmaError, ProgramError):
        if enum is ProgramError:
            lines += ["", "## Program error codes (`ERROR_CODE.code`)", "",
                      "From `ProgramError` in `rtl/isa.py`; `ERROR_INFO.index` is the index of "
                      "the instruction concerned (see docs/isa.md).", "",
                      "| Code | Name | Meaning |", "|---|---|---|"]
        meanings = _enum_meanings(enum)
        for error in enum:
            meaning = meanings.get(error) or ("no error" if error.value == 0 else "")
            lines.append(f"| {error.value} | `{error.name}` | {meaning} |")
    return "\n".join(lines) + "\n"
