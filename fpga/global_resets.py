"""Put the synchronous resets with thousands of loads on ECP5 global networks (DCCA), in a Yosys
JSON netlist, between synthesis and place and route.

nextpnr-ecp5 promotes only clock nets to the global networks. A synchronous reset that reaches
thousands of flip-flops (the board's ``sync`` reset, the ``engines`` domain's reset in the Tessera
top) is then routed through the general fabric from one flip-flop to every corner of the die: in
a routed 12 x 12 build the engines' reset was a critical path of 14.4 ns, 13.2 ns of it routing,
and its delay changed with the placement seed. A primary clock network reaches every slice's
``LSR`` pin with the same, short delay. This pass inserts a ``DCCA`` (the ECP5's global buffer,
always enabled) after such a reset and moves the reset pins onto its output::

    TRELLIS_FF ── Q ──► LSR of N flip-flops       becomes     TRELLIS_FF ── Q ──► DCCA ──► LSR ...
                   └──► other loads (LUTs)                                  └──► other loads (LUTs)

A net is promoted when it drives the ``LSR`` pins of at least ``min_loads`` TRELLIS_FFs and is
not the output of a DCCA already; its other loads (logic that reads the reset) stay on the
fabric net. At most ``max_nets`` nets are promoted, those with the most reset pins first (the
device has 8 global networks that may reach the fabric; the clock takes one). The netlist's
behaviour is unchanged: a DCCA with its clock enable tied high passes its input through.

Used by ``tessera build`` on ECP5 (``python -m tessera.fpga.global_resets NETLIST.json`` in the
build script, after Yosys), and from Python as :func:`promote_resets` (a loaded netlist) or
:func:`rewrite` (a file).
"""

import argparse
import sys
from collections import defaultdict

from .synth import netlist_top, rewrite_netlist

__all__ = ["MIN_LOADS", "MAX_NETS", "promote_resets", "rewrite", "main"]

#: Reset pins from which a net is put on a global network.
MIN_LOADS = 500

#: Global networks given to resets at most.
MAX_NETS = 4


_MAPPED = ("_TRELLIS_", "_LUT4_", "_PFUMX_", "_L6MUX21_", "_CCU2C_")


def _net_name(module, bit):
    """The net's most telling name: a name from the design (not Yosys' ``$`` names or names it
    derived from mapped cells) if it has one, else the shortest."""
    names = [name for name, net in module.get("netnames", {}).items() if bit in net["bits"]]
    return min(names, key=lambda name: (name.startswith("$"), any(m in name for m in _MAPPED),
                                        len(name), name)) if names else str(bit)


def promote_resets(netlist, *, min_loads=MIN_LOADS, max_nets=MAX_NETS):
    """Insert a DCCA after each reset net with at least ``min_loads`` flip-flop ``LSR`` pins (at
    most ``max_nets`` nets, the largest first), in place. Returns ``{"nets": [{"net": name,
    "loads": n}, ...]}``, the promoted nets."""
    if min_loads < 1 or max_nets < 0:
        raise ValueError(f"min_loads must be >= 1 and max_nets >= 0, not {min_loads!r} and "
                         f"{max_nets!r}")
    _, module = netlist_top(netlist)
    cells = module["cells"]
    resets = defaultdict(list)          # net bit -> flip-flops whose LSR it drives
    from_global = set()                 # net bits driven by a DCCA
    used = set()
    for name, cell in cells.items():
        for pin, bits in cell["connections"].items():
            used.update(bit for bit in bits if isinstance(bit, int))
        if cell["type"] == "TRELLIS_FF":
            bit = cell["connections"].get("LSR", ["0"])[0]
            if isinstance(bit, int):
                resets[bit].append(name)
        elif cell["type"] == "DCCA":
            from_global.update(cell["connections"].get("CLKO", []))
    for net in [*module.get("netnames", {}).values(), *module.get("ports", {}).values()]:
        used.update(bit for bit in net["bits"] if isinstance(bit, int))
    candidates = sorted(((len(ffs), bit) for bit, ffs in resets.items()
                         if len(ffs) >= min_loads and bit not in from_global),
                        key=lambda item: (-item[0], item[1]))[:max_nets]
    next_bit = max(used, default=1) + 1
    promoted = []
    for loads, bit in candidates:
        name = _net_name(module, bit)
        global_bit, next_bit = next_bit, next_bit + 1
        for ff in resets[bit]:
            cells[ff]["connections"]["LSR"] = [global_bit]
        cells[f"$global_reset${name}"] = {
            "hide_name": 0, "type": "DCCA", "parameters": {}, "attributes": {},
            "port_directions": {"CLKI": "input", "CE": "input", "CLKO": "output"},
            "connections": {"CLKI": [bit], "CE": ["1"], "CLKO": [global_bit]},
        }
        module.setdefault("netnames", {})[f"{name}$global"] = {
            "hide_name": 0, "bits": [global_bit], "attributes": {}}
        promoted.append({"net": name, "loads": loads})
    return {"nets": promoted}


def rewrite(netlist_path, summary_path=None, **options):
    """Apply :func:`promote_resets` (with ``options``) to the JSON netlist file ``netlist_path``
    (rewritten in place); write the result as JSON to ``summary_path`` if given, and return
    it."""
    return rewrite_netlist(netlist_path, lambda netlist: promote_resets(netlist, **options),
                           summary_path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("netlist", help="Yosys JSON netlist (synth_ecp5), rewritten in place")
    parser.add_argument("--summary", help="also write the promoted nets as JSON to this file")
    parser.add_argument("--min-loads", type=int, default=MIN_LOADS,
                        help=f"reset pins from which a net is promoted (default {MIN_LOADS})")
    parser.add_argument("--max-nets", type=int, default=MAX_NETS,
                        help=f"nets promoted at most (default {MAX_NETS})")
    args = parser.parse_args(argv)
    result = rewrite(args.netlist, args.summary, min_loads=args.min_loads,
                     max_nets=args.max_nets)
    nets = ", ".join(f"{net['net']} ({net['loads']})" for net in result["nets"]) or "none"
    print(f"global resets: {nets}", file=sys.stderr)


if __name__ == "__main__":
    main()
