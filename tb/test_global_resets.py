"""Global resets (fpga/global_resets.py): which reset nets of an ECP5 netlist go onto a global
network through a DCCA, on hand-made netlists: the flip-flops' LSR pins move to the DCCA's
output, every other load stays on the fabric net, and small or already global nets are left."""

import copy
import json

import pytest

from tessera.fpga.global_resets import promote_resets, rewrite

CLK = 2


def _netlist(resets):
    """One driver flip-flop per entry of ``resets`` (``(lsr_loads, lut_loads)``), its Q driving
    the LSR pins of ``lsr_loads`` flip-flops and input A of ``lut_loads`` LUTs."""
    cells, bit = {}, 10
    for r, (lsr_loads, lut_loads) in enumerate(resets):
        reset = bit
        cells[f"reset{r}"] = {"type": "TRELLIS_FF", "parameters": {},
                              "port_directions": {"CLK": "input", "DI": "input", "Q": "output"},
                              "connections": {"CLK": [CLK], "DI": [3], "Q": [reset]}}
        bit += 1
        for i in range(lsr_loads):
            cells[f"ff{r}_{i}"] = {
                "type": "TRELLIS_FF", "parameters": {"LSRMUX": "LSR"},
                "port_directions": {"CLK": "input", "LSR": "input", "DI": "input",
                                    "Q": "output"},
                "connections": {"CLK": [CLK], "LSR": [reset], "DI": [4], "Q": [bit]}}
            bit += 1
        for i in range(lut_loads):
            cells[f"lut{r}_{i}"] = {"type": "LUT4", "parameters": {},
                                    "port_directions": {"A": "input", "Z": "output"},
                                    "connections": {"A": [reset], "Z": [bit]}}
            bit += 1
    netnames = {f"reset{r}": {"hide_name": 0, "bits": [10 + sum(a + b + 1 for a, b in
                                                                 resets[:r])]}
                for r in range(len(resets))}
    return {"modules": {"top": {"attributes": {"top": "00000000000000000000000000000001"},
                                "ports": {}, "cells": cells, "netnames": netnames}}}


def _dccas(netlist):
    cells = netlist["modules"]["top"]["cells"]
    return {name: cell for name, cell in cells.items() if cell["type"] == "DCCA"}


def test_moves_the_reset_pins_onto_a_global_network():
    netlist = _netlist([(8, 3)])
    result = promote_resets(netlist, min_loads=8)
    assert result == {"nets": [{"net": "reset0", "loads": 8}]}
    cells = netlist["modules"]["top"]["cells"]
    (dcca,) = _dccas(netlist).values()
    reset = cells["reset0"]["connections"]["Q"][0]
    glob = dcca["connections"]["CLKO"][0]
    assert dcca["connections"]["CLKI"] == [reset] and dcca["connections"]["CE"] == ["1"]
    assert glob != reset
    # Every LSR pin now hangs on the DCCA; the LUTs still read the fabric net.
    assert all(cells[f"ff0_{i}"]["connections"]["LSR"] == [glob] for i in range(8))
    assert all(cells[f"lut0_{i}"]["connections"]["A"] == [reset] for i in range(3))
    # The new net is new: no other cell uses its bit.
    users = [name for name, cell in cells.items() for bits in cell["connections"].values()
             if glob in bits]
    assert sorted(users) == sorted([*(f"ff0_{i}" for i in range(8)), *_dccas(netlist)])
    assert netlist["modules"]["top"]["netnames"]["reset0$global"]["bits"] == [glob]


def test_leaves_small_resets_and_keeps_the_largest_first():
    netlist = _netlist([(5, 0), (9, 1), (7, 0)])
    before = copy.deepcopy(netlist)
    assert promote_resets(copy.deepcopy(before), min_loads=10) == {"nets": []}
    result = promote_resets(netlist, min_loads=6, max_nets=1)
    assert result == {"nets": [{"net": "reset1", "loads": 9}]}
    assert len(_dccas(netlist)) == 1
    cells = netlist["modules"]["top"]["cells"]
    assert cells["ff0_0"] == before["modules"]["top"]["cells"]["ff0_0"]
    assert cells["ff2_0"] == before["modules"]["top"]["cells"]["ff2_0"]


def test_a_second_run_changes_nothing():
    netlist = _netlist([(8, 2)])
    promote_resets(netlist, min_loads=4)
    after = copy.deepcopy(netlist)
    assert promote_resets(netlist, min_loads=4) == {"nets": []}
    assert netlist == after


def test_rejects_bad_limits():
    with pytest.raises(ValueError, match="min_loads"):
        promote_resets(_netlist([(1, 0)]), min_loads=0)


def test_rewrites_a_file(tmp_path):
    path = tmp_path / "n.json"
    path.write_text(json.dumps(_netlist([(6, 0)])))
    summary = tmp_path / "s.json"
    assert rewrite(path, summary, min_loads=6)["nets"][0]["loads"] == 6
    assert json.loads(summary.read_text()) == {"nets": [{"net": "reset0", "loads": 6}]}
    assert len(_dccas(json.loads(path.read_text()))) == 1
