"""cocotb module behind ``tessera demo``: one GEMM through the tensor core, tile by tile.

Reads ``a`` and ``w`` from the .npz file named by ``TESSERA_DEMO_IO`` and writes the per-tile
results back into ``<file>.out.npz`` together with the cycle count; the CLI checks the result
against the golden model.
"""

import os

import cocotb
import numpy as np

from tessera.sim.tiling import assemble, split_gemm
from tessera.tb.tensor_core_tb import TB


@cocotb.test()
async def demo_gemm(dut):
    path = os.environ["TESSERA_DEMO_IO"]
    with np.load(path) as io:
        a, w = io["a"], io["w"]
    tb = TB(dut)
    await tb.reset()
    tiles = split_gemm(a, w, tb.rows, tb.cols)
    results, cycles, _ = await tb.run_tiles(tiles)
    np.savez(path + ".out.npz", c=assemble(tiles, results, w.shape[1]), cycles=cycles,
             tiles=len(tiles))
