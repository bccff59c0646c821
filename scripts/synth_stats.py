#!/usr/bin/env python3
"""Synthesize an Amaranth design with Yosys (YoWASP) and report its cell counts as JSON.

Used to check that a block maps onto the intended FPGA primitives — block RAM for the buffers,
DSP multipliers for the PEs — without running place and route::

    python scripts/synth_stats.py scratchpad --lanes 8 --depth 512
    python scripts/synth_stats.py accumulator --lanes 8 --depth 256 --family ice40

From Python (e.g. a test), with ``tessera.fpga.synth``::

    stats = synth_stats(Scratchpad(lanes=8, depth=512), name="scratchpad")
    stats["bram"], stats["ff"], stats["lut"], stats["cells"]["DP16KD"]

``synth_stats`` returns ``{"family", "top", "cells": {type: count}, "bram", "ff", "lut",
"widemux", "carry", "dsp"}`` where the summary keys add up the family's primitives of each kind
(ECP5: DP16KD, TRELLIS_FF, LUT4, PFUMX + L6MUX21, CCU2C, MULT18X18D; iCE40: SB_RAM40_4K and
SB_SPRAM256KA, SB_DFF*, SB_LUT4, -, SB_CARRY, SB_MAC16). ABC maps wide multiplexers into LUT4 or
PFUMX/L6MUX21 differently from run to run of parameters, so compare ``lut + widemux``.
"""

import argparse
import json

from tessera.fpga.synth import FAMILIES, synth_stats

def _make(block, lanes, depth):
    if block == "scratchpad":
        from tessera.rtl.scratchpad import Scratchpad
        return Scratchpad(lanes=lanes, depth=depth)
    if block == "accumulator":
        from tessera.rtl.accumulator import Accumulator
        return Accumulator(lanes=lanes, depth=depth)
    raise ValueError(block)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("block", choices=["scratchpad", "accumulator"])
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--depth", type=int, default=None,
                        help="rows (default 512 for the scratchpad, 256 for the accumulator)")
    parser.add_argument("--family", choices=sorted(FAMILIES), default="ecp5")
    parser.add_argument("--workdir", help="keep RTLIL, log and statistics here")
    args = parser.parse_args()
    depth = args.depth or (512 if args.block == "scratchpad" else 256)
    stats = synth_stats(_make(args.block, args.lanes, depth), name=args.block,
                        family=args.family, workdir=args.workdir)
    stats.update(lanes=args.lanes, depth=depth)
    print(json.dumps(stats, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
