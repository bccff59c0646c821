"""The ``tessera`` command line: the daily jobs of the project in one tool.

Subcommands::

    tessera verilog [--top core|accelerator] [--rows R] [--cols C] [--multiplier generic|ecp5]
                    [--bus-width 32|64|128] [-o FILE]    Verilog of the tensor core or top level
    tessera demo [--rows R] [--cols C] [--m M --k K --n N] [--sim SIM] [--seed S]
                                                        a GEMM on the RTL, checked against golden

Bad arguments give one line on stderr and exit status 2.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text):
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


DEFAULT_ROWS = DEFAULT_COLS = 8   # the default configuration of Verilog output and the demo


def _add_array_options(parser, rows=DEFAULT_ROWS, cols=DEFAULT_COLS):
    parser.add_argument("--rows", type=_positive_int, default=rows,
                        help=f"PE rows = K per tile (default {rows})")
    parser.add_argument("--cols", type=_positive_int, default=cols,
                        help=f"PE columns = N per tile (default {cols})")


def _cmd_verilog(args):
    from amaranth.back import verilog

    from tessera.rtl.tensor_core import TensorCore
    from tessera.rtl.util import check_dimension

    check_dimension("rows", args.rows)   # before constructing: no half-built design on error
    check_dimension("cols", args.cols)
    if args.top == "core":
        name = "tessera_tensor_core"
        design = TensorCore(rows=args.rows, cols=args.cols, multiplier=args.multiplier)
    else:
        from tessera.rtl.top import Tessera
        name = "tessera"
        design = Tessera(rows=args.rows, cols=args.cols, bus_width=args.bus_width)
    text = verilog.convert(design, name=name)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: {name}, {args.rows}x{args.cols} PEs", file=sys.stderr)
    return 0


def _cmd_demo(args):
    import numpy as np

    from tessera.rtl.tensor_core import TensorCore
    from tessera.sim import golden
    from tessera.tb import simulators

    sim = args.sim or simulators.available()[0]
    rng = np.random.default_rng(args.seed)
    a = rng.integers(-128, 128, size=(args.m, args.k), dtype=np.int8)
    w = rng.integers(-128, 128, size=(args.k, args.n), dtype=np.int8)
    print(f"tessera demo: GEMM {args.m}x{args.k} @ {args.k}x{args.n} (int8 -> int32) on a "
          f"{args.rows}x{args.cols} tensor core, {sim} simulation, seed {args.seed}")
    params = {"rows": args.rows, "cols": args.cols}
    t0 = time.monotonic()
    design = simulators.build(sim, "tensor_core", TensorCore, params, quiet=True)
    t1 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tessera-demo-") as tmp:
        io = Path(tmp) / "gemm.npz"
        np.savez(io, a=a, w=w)
        simulators.run(design, "tessera.tb.tensor_core_demo", seed=args.seed,
                       extra_env={"TESSERA_DEMO_IO": str(io)}, quiet=True)
        with np.load(str(io) + ".out.npz") as out:
            c, cycles, tiles = out["c"], int(out["cycles"]), int(out["tiles"])
    t2 = time.monotonic()
    expect = golden.gemm(a, w)
    exact = bool(np.array_equal(c, expect))
    macs = args.m * args.k * args.n
    util = macs / (args.rows * args.cols * cycles)
    print(f"  build {t1 - t0:.1f} s, simulation {t2 - t1:.1f} s")
    print(f"  {tiles} weight tiles, {cycles} cycles, {macs} useful MACs, "
          f"array utilization {util:.1%}")
    print(f"  C[0, :8] = {c[0, :8].tolist()}")
    if exact:
        print(f"RESULT: PASS - all {c.size} outputs match the golden model bit-exactly")
        return 0
    bad = int(np.count_nonzero(c != expect))
    print(f"RESULT: FAIL - {bad} of {c.size} outputs differ from the golden model")
    return 1


def build_parser():
    parser = _Parser(prog="tessera", description="Tessera int8 tensor accelerator tools")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("verilog", help="write synthesizable Verilog of the tensor core or top level")
    p.add_argument("--top", choices=["core", "accelerator"], default="core",
                   help="tensor core alone (default) or the top level with registers, DMA and "
                        "buffers")
    _add_array_options(p)
    p.add_argument("--bus-width", type=int, choices=[32, 64, 128], default=64,
                   help="AXI4 data width of the top level (default 64)")
    p.add_argument("--multiplier", choices=["generic", "ecp5"], default="generic",
                   help="PE multipliers: behavioural (default) or ECP5 MULT18X18D primitives")
    p.add_argument("-o", "--output", help="output file (default: standard output)")
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("demo", help="run a GEMM on the RTL simulation and check it")
    _add_array_options(p)
    p.add_argument("--m", type=_positive_int, default=64, help="rows of A (default 64)")
    p.add_argument("--k", type=_positive_int, default=64, help="inner dimension (default 64)")
    p.add_argument("--n", type=_positive_int, default=32, help="columns of B (default 32)")
    p.add_argument("--sim", choices=["verilator", "icarus"], help="simulator (default: Verilator)")
    p.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        # Parameter errors raised by the gateware's constructors: one line, no traceback.
        if os.environ.get("TESSERA_DEBUG") == "1":
            raise
        print(f"tessera {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
