"""The ``tessera`` command line: argument errors, Verilog output, and that Yosys synthesizes it."""

import subprocess
import sys

import pytest

from tessera.fpga.synth import synth_verilog_cells
from tessera.sim.cli import main


@pytest.mark.parametrize("args,message", [
    (["--rows", "0"], "argument --rows: expected a positive integer, not '0'"),
    (["--rows", "-3"], "argument --rows: expected a positive integer, not '-3'"),
    (["--cols", "2.5"], "argument --cols: expected a positive integer, not '2.5'"),
    (["--cols", "x"], "argument --cols: expected a positive integer, not 'x'"),
    (["--rows", "300"], "rows must be an integer in [1, 256], not 300"),
    (["--multiplier", "xilinx"], "argument --multiplier: invalid choice: 'xilinx'"),
    (["--core", "big"], "argument --core: invalid choice: 'big'"),
    (["--core", "small", "--multiplier", "ecp5"], "--multiplier applies only to --core tessera"),
    (["--core", "small", "--bus-width", "64"], "TesseraSmall has a 32-bit bus, not bus_width=64"),
])
def test_verilog_bad_parameters(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        sys.exit(main(["verilog", *args]))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, f"expected one line, got:\n{err}"
    assert "Traceback" not in err


def test_verilog_cli_subprocess_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "tessera.sim.cli", "verilog", "--rows", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("multiplier", ["generic", "ecp5"])
def test_verilog_synthesizes_for_ecp5(tmp_path, multiplier):
    out = tmp_path / "x.v"
    assert main(["verilog", "--top", "core", "--rows", "4", "--cols", "4", "--multiplier",
                 multiplier, "-o", str(out)]) == 0
    text = out.read_text()
    assert "module tessera_tensor_core" in text
    cells = synth_verilog_cells(text, "tessera_tensor_core", "ecp5")
    print(multiplier, cells)
    assert cells.get("MULT18X18D") == 16, cells   # one DSP multiplier per PE


def test_core_synthesizes_for_ice40_with_dsp(tmp_path):
    out = tmp_path / "x.v"
    assert main(["verilog", "--top", "core", "--rows", "2", "--cols", "3", "-o", str(out)]) == 0
    cells = synth_verilog_cells(out.read_text(), "tessera_tensor_core", "ice40")
    print(cells)
    assert cells.get("SB_MAC16") == 6, cells


def test_verilog_top_level(tmp_path):
    out = tmp_path / "tessera.v"
    assert main(["verilog", "--top", "accelerator", "--rows", "4", "--cols", "4",
                 "--bus-width", "32", "-o", str(out)]) == 0
    text = out.read_text()
    assert "module tessera(" in text
    for port in ("s_axil__awaddr", "m_axi__arlen", "m_axi__wstrb", "irq"):
        assert port in text, port


def test_verilog_small_core(tmp_path):
    """``--core small``: the small core's top level, with the same ports, a 32-bit bus by
    default, and one SB_MAC16 per column plus one for the requantizer on iCE40."""
    out = tmp_path / "small.v"
    assert main(["verilog", "--core", "small", "--rows", "3", "--cols", "2", "-o", str(out)]) == 0
    text = out.read_text()
    assert "module tessera_small(" in text
    for port in ("s_axil__awaddr", "m_axi__arlen", "m_axi__wstrb", "irq"):
        assert port in text, port
    assert "[31:0] m_axi__wdata" in text
    cells = synth_verilog_cells(text, "tessera_small", "ice40")
    print(cells)
    assert cells.get("SB_MAC16") == 2 + 1, cells
