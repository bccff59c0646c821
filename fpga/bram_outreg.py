"""Move the register after an ECP5 block RAM's read port into the block RAM (DP16KD output
register), in a Yosys JSON netlist, between synthesis and place and route.

A DP16KD read without its output register (``REGMODE_x = "NOREG"``, all Yosys infers) has a slow
clock-to-output: the data leaves the block RAM late in the cycle, and whatever register takes it
must sit right beside it. With ``REGMODE_x = "OUTREG"`` the data comes out of a register inside
the block RAM one cycle later, early in the cycle. Yosys 0.70 does not infer that register, so the
gateware writes it as an ordinary register right after the read port (the scratchpad's OUT, the
accumulator's read data, the board RAM's bank registers), and this pass moves such registers
into their block RAMs, where the netlist allows it exactly::

    DP16KD (NOREG) ── DO ──► TRELLIS_FF ── Q ──► loads     becomes     DP16KD (OUTREG) ── DO ──► loads

A port's registers are moved when every used data output of the port drives exactly one load, the
data input of a TRELLIS_FF, and every one of those flip-flops

* is clocked by the port's clock, on the same edge;
* is always enabled (no clock enable) and never reset (no LSR, no GSR);
* starts at 0 (``REGSET = "RESET"``), as the block RAM's output register does;

and the port's own output enable and reset are constant (enabled, not reset). Otherwise the port
is left as it is.

A 36-bit read (``DATA_WIDTH_B = 36``: Yosys' pseudo-dual-port mapping, ``PDPW16KD``) is one port
whose data leaves on both ``DOA0..17`` and ``DOB0..17``, under port B's clock, enable and reset.
It is moved as a whole or not at all, and both halves get their output register (``REGMODE_A``
and ``REGMODE_B`` = ``OUTREG``, ``OCEA`` and ``OCEB`` = 1), as Lattice's own PDPW16KD mapping
does; that also requires port A's clock to be the same net and its reset constant 0. (Until the
sixteenth session the pass treated DOA and DOB as two ports: it moved the DOB half alone into
``REGMODE_B`` and left the DOA half's registers in the fabric behind an unregistered output --
routed 12 x 12, 8.9 ns of routing to them.)

The result keeps the cycle behaviour of the netlist: the output register loads the read data in
every cycle, like the flip-flop it replaces.

Used by ``tessera build`` on ECP5 (``python -m tessera.fpga.bram_outreg NETLIST.json`` in the
build script, after Yosys), and from Python as :func:`absorb_output_registers` (a loaded
netlist) or :func:`rewrite` (a file).
"""

import argparse
import re
import sys
from collections import defaultdict

from .synth import netlist_top, rewrite_netlist

__all__ = ["absorb_output_registers", "rewrite", "main"]

_DATA_OUT = re.compile(r"DO([AB])(\d+)$")


def _param(cell, name, default=None):
    value = cell["parameters"].get(name, default)
    return value.strip() if isinstance(value, str) else value


def _width(cell, side):
    """``DATA_WIDTH_{side}`` of a DP16KD as an integer (Yosys writes parameters as bit strings)."""
    value = _param(cell, f"DATA_WIDTH_{side}", "18")
    if isinstance(value, str) and set(value) <= {"0", "1"} and len(value) > 8:
        return int(value, 2)
    return int(value)


def _is_const(bits, value):
    return len(bits) == 1 and bits[0] == value


def _ff_is_plain(ff, clock):
    """Whether TRELLIS_FF ``ff`` is a plain register on ``clock`` (a net bit): rising edge, no
    enable, no reset, initial value 0."""
    conn = ff["connections"]
    if conn.get("CLK") != [clock] or _param(ff, "CLKMUX", "CLK") != "CLK":
        return False
    cemux = _param(ff, "CEMUX", "CE")
    if cemux != "1" and not (cemux == "CE" and _is_const(conn.get("CE", ["1"]), "1")):
        return False
    lsrmux = _param(ff, "LSRMUX", "LSR")
    if lsrmux != "LSR" or not _is_const(conn.get("LSR", ["0"]), "0"):
        return False
    return _param(ff, "GSR", "DISABLED") == "DISABLED" and _param(ff, "REGSET", "RESET") == "RESET"


def absorb_output_registers(netlist):
    """Move the registers after DP16KD read ports into the block RAMs (see the module doc), in
    place. Returns ``{"ports": n, "registers": m}``: block RAM ports changed, flip-flops
    removed."""
    _, module = netlist_top(netlist)
    cells = module["cells"]
    loads = defaultdict(list)
    for name, cell in cells.items():
        for pin, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(pin) == "input":
                for bit in bits:
                    loads[bit].append((name, pin))
    for port in module.get("ports", {}).values():
        if port["direction"] in ("output", "inout"):
            for bit in port["bits"]:
                loads[bit].append((None, None))

    ports = registers = 0
    for name, cell in list(cells.items()):
        if cell["type"] != "DP16KD":
            continue
        conn = cell["connections"]
        wide = _width(cell, "B") == 36
        # (read side, the sides whose outputs and output registers it uses)
        reads = [("B", "AB")] if wide else [("A", "A"), ("B", "B")]
        for side, halves in reads:
            if any(_param(cell, f"REGMODE_{half}", "NOREG") != "NOREG" for half in halves):
                continue
            if not (_is_const(conn.get(f"OCE{side}", ["1"]), "1") and
                    _is_const(conn.get(f"RST{side}", ["0"]), "0")):
                continue
            if _param(cell, f"CLK{side}MUX", f"CLK{side}") != f"CLK{side}":
                continue
            clock = conn.get(f"CLK{side}", [None])[0]
            if wide and not (conn.get("CLKA", [None])[0] == clock and
                             _param(cell, "CLKAMUX", "CLKA") == "CLKA" and
                             _is_const(conn.get("RSTA", ["0"]), "0")):
                continue
            outputs = {pin: bits[0] for pin, bits in conn.items()
                       if (match := _DATA_OUT.match(pin)) and match[1] in halves
                       and not isinstance(bits[0], str) and loads[bits[0]]}
            if not outputs:
                continue
            moves = {}
            for pin, bit in outputs.items():
                (load, load_pin), *others = loads[bit]
                ff = cells.get(load) if load is not None else None
                if (others or ff is None or ff["type"] != "TRELLIS_FF" or load_pin != "DI" or
                        not _ff_is_plain(ff, clock)):
                    break
                moves[pin] = load
            else:
                for pin, ff_name in moves.items():
                    conn[pin] = list(cells[ff_name]["connections"]["Q"])
                    del cells[ff_name]
                for half in halves:
                    cell["parameters"][f"REGMODE_{half}"] = "OUTREG"
                    conn[f"OCE{half}"] = ["1"]
                ports += 1
                registers += len(moves)
    return {"ports": ports, "registers": registers}


def rewrite(netlist_path, summary_path=None):
    """Apply :func:`absorb_output_registers` to the JSON netlist file ``netlist_path`` (rewritten
    in place); write the counts as JSON to ``summary_path`` if given, and return them."""
    return rewrite_netlist(netlist_path, absorb_output_registers, summary_path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("netlist", help="Yosys JSON netlist (synth_ecp5), rewritten in place")
    parser.add_argument("--summary", help="also write the counts as JSON to this file")
    args = parser.parse_args(argv)
    counts = rewrite(args.netlist, args.summary)
    print(f"block RAM output registers: {counts['registers']} flip-flops moved into "
          f"{counts['ports']} DP16KD ports", file=sys.stderr)


if __name__ == "__main__":
    main()
