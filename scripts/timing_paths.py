#!/usr/bin/env python3
"""Estimate register-to-register path delays in a synthesized ECP5 netlist, for every endpoint.

nextpnr reports one critical path per clock, and a place-and-route run of the board design takes
many minutes. This script reads the netlist Yosys wrote for nextpnr (``tessera_ulx3s.json`` in a
``tessera build`` directory; ``tessera build ulx3s --synth-only`` stops after Yosys) and
estimates, in a second, the arrival time at every flip-flop, block RAM and DSP input from a
simple delay model (ECP5 -6, a typical routing delay per net), so it ranks *all* the deep paths
at once and names the signals along each one. The model is rough (placement decides routing):
use it to find and compare paths; the numbers that count come from nextpnr. Calibrated on the
2 x 2 board design: nextpnr's critical path was about 1 ns longer than the estimate's worst::

    tessera build ulx3s --rows 2 --cols 2 --freq 125 --synth-only
    python scripts/timing_paths.py build/fpga/ulx3s/tessera_ulx3s.json --period 8 --top 30

prints, for each group of endpoints (the flip-flops of one signal), the worst estimated arrival
and its path: start point, the named nets it passes, end point.

After place and route, ``--routed REPORT`` ranks the endpoints by nextpnr's own arrival times
instead of the model's: run nextpnr on the build's netlist with ``--report routed.json
--detailed-timing-report`` (its ``detailed_net_timings`` give the routed arrival at every
register input; nextpnr's log shows only the one critical path). The paths printed are still
the model's (the routed report has no per-path detail), traced from the same endpoints.

``--match REGEX`` keeps only the endpoint groups whose name matches (e.g. the groups of one
block, with their paths).

``--fanout N`` lists the N nets with the most loads instead (the model has no fan-out term; on
a 12 x 12 netlist the resets and the lane-wide enables reach hundreds to thousands of inputs).
"""

import argparse
import json
import re
from collections import defaultdict

from tessera.fpga.synth import netlist_top

# Delays in ns: cell delay (input to output) and a typical routing delay per net.
ROUTE = 1.1
CLK_TO_Q = 0.52
SETUP = 0.15
LUT = 0.24
MUX = 0.20              # PFUMX / L6MUX21 (inside the slice: no routing before them)
CARRY_IN = 0.45         # CCU2C A/B/C/D -> S or COUT
CARRY_CHAIN = 0.07      # CCU2C CIN -> COUT (per cell = 2 bits)
CARRY_OUT = 0.40        # CCU2C CIN -> S
BRAM_CLK_TO_Q = 4.3     # DP16KD without output register
BRAM_OUTREG = 1.0
DSP_COMB = 4.0          # MULT18X18D input to output, unregistered
DSP_REG = 0.8
DPRAM_READ = 0.9        # TRELLIS_DPR16X4 RAD -> DO


def _top_module(netlist):
    try:
        return netlist_top(netlist)
    except ValueError as error:
        raise SystemExit(str(error)) from None


def analyse(path):
    _, top = _top_module(json.load(open(path)))
    names = {}
    for name, net in top["netnames"].items():
        for bit in net["bits"]:
            if isinstance(bit, int) and (bit not in names or net.get("hide_name", 0) == 0
                                         and names[bit][1]):
                names[bit] = (name, net.get("hide_name", 0))
    driver = {}          # bit -> (cell name, port)
    sinks = defaultdict(list)
    cells = top["cells"]
    for cname, cell in cells.items():
        for port, bits in cell["connections"].items():
            direction = cell["port_directions"].get(port, "input")
            for bit in bits:
                if not isinstance(bit, int):
                    continue
                if direction == "output":
                    driver[bit] = (cname, port)
                else:
                    sinks[bit].append((cname, port))

    def param(cell, key, default="NONE"):
        value = cell["parameters"].get(key, default)
        return value if isinstance(value, str) else str(value)

    # Output pin delay of each cell kind, per (input port -> output port) class, or a start time.
    def start_time(cname, port):
        """Arrival time at an output that starts a path, or None if the output is combinational."""
        cell = cells[cname]
        kind = cell["type"]
        if kind == "TRELLIS_FF":
            return CLK_TO_Q
        if kind == "DP16KD":
            side = port[2] if port.startswith("DO") else "A"       # DOA* / DOB*
            outreg = param(cell, f"REGMODE_{side}", "NOREG").strip() == "OUTREG"
            return BRAM_OUTREG if outreg else BRAM_CLK_TO_Q
        if kind == "MULT18X18D":
            return DSP_REG if param(cell, "REG_OUTPUT_CLK") != "NONE" else None
        if kind in ("TRELLIS_DPR16X4",):
            return None
        if kind in ("LUT4", "PFUMX", "L6MUX21", "CCU2C"):
            return None
        return 0.0              # IO buffers, PLL, anything else: a start point

    def is_endpoint(cname, port):
        cell = cells[cname]
        kind = cell["type"]
        if kind in ("TRELLIS_FF", "DP16KD"):
            return True
        if kind == "MULT18X18D":
            return param(cell, "REG_INPUTA_CLK") != "NONE" or port.startswith("C")
        if kind == "TRELLIS_DPR16X4":
            return not port.startswith("RAD")
        return kind not in ("LUT4", "PFUMX", "L6MUX21", "CCU2C")

    arrival = {}         # bit -> (time, previous bit or None, start description)
    visiting = set()

    def arrive(bit):
        if bit in arrival:
            return arrival[bit]
        if bit not in driver:
            arrival[bit] = (0.0, None, "const/input")
            return arrival[bit]
        cname, port = driver[bit]
        start = start_time(cname, port)
        if start is not None:
            arrival[bit] = (start, None, cname)
            return arrival[bit]
        if bit in visiting:                 # combinational loop: cut it
            return (0.0, None, "loop")
        visiting.add(bit)
        cell = cells[cname]
        kind = cell["type"]
        best = (0.0, None, cname)
        for in_port, bits in cell["connections"].items():
            if cell["port_directions"].get(in_port) != "input":
                continue
            if kind == "TRELLIS_DPR16X4" and not in_port.startswith("RAD"):
                continue                    # written contents are state, not a path
            for ibit in bits:
                if not isinstance(ibit, int):
                    continue
                t, _, _ = arrive(ibit)
                if kind == "LUT4":
                    d = ROUTE + LUT
                elif kind in ("PFUMX", "L6MUX21"):
                    d = MUX if in_port in ("ALUT", "BLUT", "D0", "D1") else ROUTE + MUX
                elif kind == "CCU2C":
                    if in_port == "CIN":
                        d = CARRY_CHAIN if port == "COUT" else CARRY_OUT
                    else:
                        d = ROUTE + CARRY_IN
                elif kind == "MULT18X18D":
                    d = ROUTE + DSP_COMB
                elif kind == "TRELLIS_DPR16X4":
                    d = ROUTE + DPRAM_READ
                else:
                    d = ROUTE
                if t + d > best[0]:
                    best = (t + d, ibit, cname)
        visiting.discard(bit)
        arrival[bit] = best
        return best

    endpoints = []
    for cname, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) != "input" or not is_endpoint(cname, port):
                continue
            if cell["type"] == "TRELLIS_FF" and port == "CLK":
                continue
            for bit in bits:
                if isinstance(bit, int):
                    t, _, _ = arrive(bit)
                    endpoints.append((t + ROUTE + SETUP, cname, port, bit))

    def trace(bit):
        steps = []
        while bit is not None:
            t, prev, cname = arrival[bit]
            steps.append((t, names.get(bit, (f"${bit}", 1))[0], cname))
            bit = prev
        return steps[::-1]

    return endpoints, trace


def group_of(cell_name):
    """``core.tessera.dma.desc_TRELLIS_FF_Q_81`` -> ``core.tessera.dma.desc`` (and nextpnr's
    packed ``...$DPRAM_COMB3`` cells -> their RAM's name)."""
    return re.sub(r"(_TRELLIS_FF|_DP16KD|_MULT18X18D|_TRELLIS_DPR16X4|\$).*$", "", cell_name)


def fanout(path, top):
    """``[(loads, net name, {cell type.port: loads})]`` of the ``top`` nets of the netlist with
    the most loads (cell inputs), most first: the clock, the resets, and the enables and selects
    that fan out across a wide datapath."""
    _, module = _top_module(json.load(open(path)))
    names = {}
    for name, net in module["netnames"].items():
        for bit in net["bits"]:
            if isinstance(bit, int) and (bit not in names or len(name) < len(names[bit])):
                names[bit] = name
    loads = defaultdict(lambda: defaultdict(int))
    for cell in module["cells"].values():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port, "input") == "output":
                continue
            kind = f"{cell['type']}.{port.rstrip('0123456789')}"
            for bit in bits:
                if isinstance(bit, int):
                    loads[bit][kind] += 1
    ranked = sorted(loads.items(), key=lambda kv: -sum(kv[1].values()))[:top]
    return [(sum(kinds.values()), names.get(bit, str(bit)), dict(kinds)) for bit, kinds in ranked]


def routed_arrivals(report_path):
    """``[(arrival ns, cell, port)]``: the routed arrival time (latest) at every register and
    RAM input, from a nextpnr JSON report written with ``--report FILE
    --detailed-timing-report``."""
    report = json.load(open(report_path))
    nets = report.get("detailed_net_timings")
    if not nets:
        raise SystemExit(f"{report_path} has no detailed_net_timings: run nextpnr with "
                         "--detailed-timing-report")
    arrivals = []
    for net in nets:
        for sink in net["endpoints"]:
            delay = sink["delay"]
            arrivals.append((max(delay) if isinstance(delay, list) else delay,
                             sink["cell"], sink["port"]))
    return arrivals


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("netlist", help="Yosys JSON netlist (synth_ecp5 output)")
    parser.add_argument("--period", type=float, default=8.0,
                        help="clock period in ns (8 = 125 MHz)")
    parser.add_argument("--top", type=int, default=25, help="endpoint groups to show")
    parser.add_argument("--paths", type=int, default=8, help="groups whose path is printed")
    parser.add_argument("--routed", metavar="REPORT",
                        help="rank by the routed arrival times of this nextpnr JSON report "
                             "(--detailed-timing-report) of the same netlist")
    parser.add_argument("--match", metavar="REGEX",
                        help="only the endpoint groups whose name matches (re.search)")
    parser.add_argument("--fanout", type=int, metavar="N",
                        help="instead: list the N nets with the most loads, and their kinds")
    args = parser.parse_args()
    if args.fanout:
        for count, name, kinds in fanout(args.netlist, args.fanout):
            detail = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
            print(f"{count:7d}  {name[:90]}  ({detail})")
        return
    endpoints, trace = analyse(args.netlist)
    if args.routed:
        # The routed arrival (setup not included) replaces the estimate; the bit to trace is
        # the netlist's, where the endpoint's name is found.
        bits = {(cname, port): bit for _, cname, port, bit in endpoints}
        endpoints = [(t + SETUP, cname, port, bits.get((cname, port)))
                     for t, cname, port in routed_arrivals(args.routed)]
    worst = {}
    failing = defaultdict(int)
    for t, cname, port, bit in endpoints:
        g = group_of(cname)
        if t > args.period:
            failing[g] += 1
        if g not in worst or t > worst[g][0]:
            worst[g] = (t, cname, port, bit)
    total = sum(failing.values())
    what = "routed" if args.routed else "estimated"
    print(f"{len(endpoints)} endpoints, {total} {what} above {args.period} ns "
          f"in {len(failing)} groups")
    ranked = sorted(worst.items(), key=lambda kv: -kv[1][0])
    if args.match:
        ranked = [item for item in ranked if re.search(args.match, item[0])]
    for i, (g, (t, cname, port, bit)) in enumerate(ranked[:args.top]):
        print(f"{t:6.2f} ns  {failing[g]:5d} over  {g} ({port})")
    for g, (t, cname, port, bit) in ranked[:args.paths]:
        print(f"\n== {g}: {t:.2f} ns" + (" (model path)" if args.routed else ""))
        if bit is None:
            print("   (not in the netlist under this name)")
            continue
        seen = None
        for at, net, cell in trace(bit):
            label = net if not net.startswith("$") else cell
            if label != seen:
                print(f"   {at:6.2f}  {label[:110]}")
            seen = label


if __name__ == "__main__":
    main()
