#!/usr/bin/env python3
"""Simulated cycles per second of the tensor core on each installed simulator.

Two ways of driving the core are measured:

* ``hdl``    -- stimulus generated in HDL (tb/tensor_core_bench.py): the simulator's own speed;
* ``python`` -- the cocotb stream drivers used by the tests, one Python step per clock edge.

Usage: python scripts/bench_sim.py [--rows 8] [--cols 8] [--cycles 200000] [--json]
Results go to docs/performance.md by hand, with the command line that produced them.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tessera.tb import simulators
from tessera.tb.tensor_core_bench import TensorCoreBench
from tessera.rtl.tensor_core import TensorCore


def measure(sim, mode, rows, cols, cycles):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        env = {"TESSERA_BENCH_OUT": str(out), "TESSERA_BENCH_CYCLES": str(cycles)}
        if mode == "hdl":
            design = simulators.build(sim, "tensor_core_bench", TensorCoreBench,
                                      {"rows": rows, "cols": cols}, quiet=True)
            testcase = "measure"
        else:
            design = simulators.build(sim, "tensor_core", TensorCore,
                                      {"rows": rows, "cols": cols}, quiet=True)
            env["TESSERA_BENCH_ROWS"] = str(max(200, cycles // (4 * 1)))
            testcase = "measure_python_driven"
        simulators.run(design, "tessera.tb.tensor_core_bench", testcase=testcase, seed=1,
                       extra_env=env, quiet=True)
        result = json.loads(out.read_text())
    result.update(sim=sim, mode=mode, rows=rows, cols=cols,
                  cycles_per_second=result["cycles"] / result["seconds"])
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=200_000,
                        help="cycles of the HDL-driven run (Icarus gets 1/50 of it)")
    parser.add_argument("--sim", default="all", help="simulators (default: all installed)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    args = parser.parse_args()
    sims = simulators.available() if args.sim == "all" else args.sim.split(",")
    rows = []
    for sim in sims:
        scale = 1 if sim == "verilator" else 50
        for mode in ("hdl", "python"):
            cycles = args.cycles // scale if mode == "hdl" else args.cycles // (20 * scale)
            rows.append(measure(sim, mode, args.rows, args.cols, cycles))
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"tensor core {args.rows}x{args.cols}: simulated cycles per second")
    print(f"{'simulator':<10} {'stimulus':<8} {'cycles':>9} {'seconds':>8} {'cycles/s':>12}")
    for row in rows:
        print(f"{row['sim']:<10} {row['mode']:<8} {row['cycles']:>9} {row['seconds']:>8.2f} "
              f"{row['cycles_per_second']:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
