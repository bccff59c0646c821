"""pytest entry of the tensor-core testbench (tb/tensor_core_tb.py) on each selected simulator."""

from pathlib import Path

import pytest

from tessera.rtl.tensor_core import TensorCore
from tessera.tb import simulators

SHAPES = [(1, 1), (2, 3), (3, 2), (4, 4), (8, 8)]
TESTCASES = ["random_shapes", "extreme_values", "back_to_back_tiles", "reset_mid_stream"]


def core_build(sim, rows, cols):
    return simulators.build(sim, "tensor_core", TensorCore, {"rows": rows, "cols": cols})


@pytest.mark.parametrize("rows,cols", SHAPES, ids=[f"{r}x{c}" for r, c in SHAPES])
@pytest.mark.parametrize("testcase", TESTCASES)
def test_tensor_core(sim, rows, cols, testcase, seed):
    design = core_build(sim, rows, cols)
    simulators.run(design, "tessera.tb.tensor_core_tb", testcase=testcase, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("rows,cols", [(8, 8)], ids=["8x8"])
def test_tensor_core_largest_k(sim, rows, cols, seed):
    """Extreme values at K = 131071, the largest K whose all -128 dot product fits in int32."""
    design = core_build(sim, rows, cols)
    simulators.run(design, "tessera.tb.tensor_core_tb", testcase="extreme_values", seed=seed,
                   extra_env={"TESSERA_EXTREME_K": "131071"})


MULT18X18D_MODEL = Path(__file__).resolve().parent / "models" / "MULT18X18D.v"


@pytest.mark.parametrize("testcase", ["random_shapes", "back_to_back_tiles"])
def test_tensor_core_ecp5_dsp(sim, testcase, seed):
    """The ECP5 variant (MULT18X18D primitives with internal registers) behaves identically."""
    design = simulators.build(sim, "tensor_core", TensorCore,
                              {"rows": 4, "cols": 3, "multiplier": "ecp5"},
                              extra_sources=[MULT18X18D_MODEL])
    simulators.run(design, "tessera.tb.tensor_core_tb", testcase=testcase, seed=seed)


@pytest.mark.parametrize("testcase", ["random_shapes", "back_to_back_tiles"])
def test_tensor_core_lut_multipliers(sim, testcase, seed):
    """The logic-only multipliers (``"lut"``, latency 3: one more cycle through the array)
    give the same results."""
    design = simulators.build(sim, "tensor_core", TensorCore,
                              {"rows": 3, "cols": 4, "multiplier": "lut"})
    simulators.run(design, "tessera.tb.tensor_core_tb", testcase=testcase, seed=seed)
