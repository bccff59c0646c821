#!/usr/bin/env python3
"""Run ``tessera bench gemm --json`` over a set of shapes and array sizes; print a Markdown table.

Usage: python scripts/bench_table.py [--quick] [--out FILE.jsonl]

Each case is one end-to-end GEMM on the RTL simulation (Verilator), from START to done, read from
the performance counters. ``--quick`` runs only the small cases. Results are appended to ``--out``
(one JSON object per line) as they come, then the table is printed.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

#: (rows, cols, bus_width, m, n, k)
CASES = [
    (8, 8, 64, 256, 256, 256),
    (8, 8, 64, 64, 64, 64),
    (8, 8, 64, 1, 256, 256),
    (8, 8, 64, 256, 256, 8),
    (8, 8, 64, 512, 64, 128),
    (8, 8, 64, 100, 30, 70),
    (4, 4, 32, 128, 128, 128),
    (4, 4, 32, 1, 64, 64),
    (16, 16, 128, 256, 256, 256),
]
QUICK = [case for case in CASES if case[3] * case[4] * case[5] <= 1 << 20]


def run(case):
    rows, cols, bus, m, n, k = case
    cmd = [sys.executable, "-m", "tessera.sim.cli", "bench", "gemm", "--m", str(m), "--n", str(n),
           "--k", str(k), "--rows", str(rows), "--cols", str(cols), "--bus-width", str(bus),
           "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(results):
    lines = ["| array | bus | M x N x K | cycles | MAC utilization | DMA read / written (bytes) "
             "| bit-exact |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['rows']}x{r['cols']} | {r['bus_width']} | {r['m']} x {r['n']} x "
                     f"{r['k']} | {r['cycles']} | {r['utilization']:.3f} | "
                     f"{r['dma_bytes_read']} / {r['dma_bytes_written']} | {r['bit_exact']} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("build/bench_gemm.jsonl"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for case in QUICK if args.quick else CASES:
        result = run(case)
        results.append(result)
        with args.out.open("a") as f:
            f.write(json.dumps(result) + "\n")
        print(f"{case}: {result['cycles']} cycles, utilization {result['utilization']}",
              file=sys.stderr)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
