"""pytest entry of the top-level testbench (tb/top_tb.py) on each selected simulator."""

import pytest

from tessera.rtl.cores import accelerator
from tessera.tb import simulators

CONFIGS = {
    "4x4-bus32": dict(rows=4, cols=4, scratchpad_depth=64, accumulator_depth=32, bus_width=32),
    "8x4-bus64": dict(rows=8, cols=4, scratchpad_depth=64, accumulator_depth=32, bus_width=64),
    "4x4-bus128": dict(rows=4, cols=4, scratchpad_depth=64, accumulator_depth=32, bus_width=128),
    # The small core (rtl/small/top.py): the same registers, hook and bus behaviour.
    "small-4x4": dict(rows=4, cols=4, scratchpad_depth=64, accumulator_depth=32, bus_width=32,
                      core="small"),
}
TESTCASES = ["identification", "dma_round_trips", "errors_and_interrupt",
             "soft_reset_mid_transfer"]
#: Configurations run by default; the others with --run-slow (each is a full build of the
#: accelerator; tb/test_accelerator.py covers programs on two more configurations).
DEFAULT = ("8x4-bus64", "small-4x4")


@pytest.mark.parametrize("config", [
    pytest.param(name, marks=() if name in DEFAULT else pytest.mark.slow) for name in CONFIGS])
@pytest.mark.parametrize("testcase", TESTCASES)
def test_top(sim, config, testcase, seed):
    design = simulators.build(sim, "tessera", accelerator, CONFIGS[config])
    simulators.run(design, "tessera.tb.top_tb", testcase=testcase, seed=seed)
