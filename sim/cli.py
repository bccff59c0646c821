"""The ``tessera`` command line: the daily jobs of the project in one tool.

Subcommands::

    tessera verilog [--top accelerator|core] [--rows R] [--cols C] [--multiplier generic|ecp5|lut]
                    [--bus-width 32|64|128] [--core tessera|small] [-o FILE]
                                                        Verilog of the accelerator or tensor core
    tessera demo [--images N] [--batch B] [--backend rtl|golden|board] [--sim SIM]
                 [--port PORT] [--baud BAUD] [--rows R --cols C] [--core tessera|small]
                                                        the digits MLP on the accelerator
    tessera bench gemm --m M --n N --k K [--rows R --cols C] [--bus-width W] [--core C] [--json]
                                                        one GEMM: cycles, utilization, DMA bytes
    tessera build ulx3s|icebreaker [--rows R --cols C] [--multiplier M] [--freq MHZ]
                                   [--allow-timing-failure]
                                                        a bitstream and its JSON report (FPGA)

Bad arguments give one line on stderr and exit status 2.
"""

import argparse
import os
import sys
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


def _add_core_option(parser):
    parser.add_argument("--core", choices=["tessera", "small"], default="tessera",
                        help="accelerator implementation: tessera (default) or small "
                             "(rtl/small/top.py: one instruction at a time, 32-bit bus; "
                             "same programs and results)")


def _add_run_options(parser):
    parser.add_argument("--bus-width", type=int, choices=[32, 64, 128], default=None,
                        help="AXI4 data width (default 64)")
    parser.add_argument("--backend", choices=["rtl", "golden", "board"], default="rtl",
                        help="RTL simulation (default), the instruction-level simulator, or a "
                             "board over its serial port (--port; the accelerator configuration "
                             "is read from the board, and --rows/--cols/--bus-width, if given, "
                             "must match it)")
    parser.add_argument("--sim", choices=["verilator", "icarus"],
                        help="simulator of the rtl backend (default: Verilator)")
    parser.add_argument("--port",
                        help="serial port of the board backend: a device (/dev/ttyUSB0, COM3) or "
                             "a pyserial URL (socket://host:port)")
    parser.add_argument("--baud", type=_positive_int, default=None,
                        help="baud rate of the board backend (default 115200, as the board tops)")
    parser.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    _add_core_option(parser)
    # None = not given: the rtl and golden backends use the defaults (8, 8, 64 bits), the board
    # backend the board's configuration.
    parser.set_defaults(rows=None, cols=None)


def _cmd_verilog(args):
    from amaranth.back import verilog

    from tessera.rtl.tensor_core import TensorCore
    from tessera.rtl.util import check_dimension

    check_dimension("rows", args.rows)   # before constructing: no half-built design on error
    check_dimension("cols", args.cols)
    if args.bus_width is None:
        args.bus_width = 32 if args.core == "small" else 64
    if args.top == "core":
        name = "tessera_tensor_core"
        design = TensorCore(rows=args.rows, cols=args.cols, multiplier=args.multiplier)
    elif args.core == "small":
        from tessera.rtl.small.top import TesseraSmall
        name = "tessera_small"
        if args.multiplier != "generic":
            raise ValueError("--multiplier applies only to --core tessera")
        design = TesseraSmall(rows=args.rows, cols=args.cols, bus_width=args.bus_width)
    else:
        from tessera.rtl.top import Tessera
        name = "tessera"
        design = Tessera(rows=args.rows, cols=args.cols, bus_width=args.bus_width,
                         multiplier=args.multiplier)
    text = verilog.convert(design, name=name)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: {name}, {args.rows}x{args.cols} PEs", file=sys.stderr)
    return 0


def _progress(done, total, width=30, stream=None):
    """A one-line text progress bar, redrawn in place."""
    stream = stream or sys.stderr
    filled = width * done // max(total, 1)
    stream.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} images")
    if done == total:
        stream.write("\n")
    stream.flush()


def _given(value, default):
    return default if value is None else value


def _config(args):
    from tessera.sim.config import AcceleratorConfig
    if args.backend == "board":
        return _board_config(args)
    for option in ("port", "baud"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option} applies only to --backend board")
    return AcceleratorConfig(rows=_given(args.rows, DEFAULT_ROWS),
                             cols=_given(args.cols, DEFAULT_COLS),
                             bus_width=_given(args.bus_width, 32 if args.core == "small" else 64),
                             core=args.core)


def _board_config(args):
    """The board's configuration (read from its registers; an option given must agree). The
    board backend is kept in ``args.board_backend`` for :func:`_driver`."""
    import dataclasses

    from tessera.fpga.link import ConfigMismatch
    from tessera.sim.driver import BoardBackend
    if args.port is None:
        raise ValueError("--backend board needs --port: the board's serial port "
                         "(e.g. /dev/ttyUSB0)")
    backend = BoardBackend(port=args.port, baud=args.baud)
    board = backend.read_config()
    given = {key: getattr(args, key) for key in ("rows", "cols", "bus_width")
             if getattr(args, key) is not None}
    expected = dataclasses.replace(board, **given)
    if expected != board:
        backend.close()
        raise ConfigMismatch(board, expected)
    args.board_backend = backend
    return board


def _driver(args, config):
    from tessera.sim.driver import Driver
    if args.backend == "rtl":
        return Driver(config, backend="rtl", sim=args.sim, seed=args.seed)
    if args.backend == "board":
        return Driver(config, backend=args.board_backend)
    return Driver(config, backend="golden")


def _backend_name(args):
    if args.backend == "rtl":
        return f"RTL simulation ({args.sim or 'default simulator'})"
    if args.backend == "board":
        from tessera.fpga.link import DEFAULT_BAUD
        return f"board on {args.port} ({_given(args.baud, DEFAULT_BAUD)} baud)"
    return "golden instruction-level simulator"


def _hardware_summary(config, counters, useful_macs):
    """Cycles and utilization from the performance counters (None without cycle counters)."""
    cycles = counters.get("CYCLES")
    if not cycles:
        return None
    return {
        "cycles": cycles,
        "utilization": useful_macs / (config.rows * config.cols * cycles),
        "mac_active": counters["MAC_ACTIVE"] / cycles,
    }


def _cmd_demo(args):
    import numpy as np

    from tessera.sim.digits import load_model
    from tessera.sim.layers import Network

    config = _config(args)
    model = load_model()
    total = len(model.test_images)
    count = total if args.images is None else args.images
    if count > total:
        raise ValueError(f"--images must be at most {total} (the held-out test set), not {count}")
    images, labels = model.test_images[:count], model.test_labels[:count]
    net = Network(model.layers)
    dims = [model.layers[0].weights.shape[0]] + [layer.weights.shape[1] for layer in model.layers]
    print(f"tessera demo: handwritten digits, int8 MLP {' -> '.join(map(str, dims))}, "
          f"{count} held-out images")
    print(f"  accelerator {config.rows}x{config.cols} PEs, {config.bus_width}-bit bus, "
          f"backend: {_backend_name(args)}")
    driver = _driver(args, config)
    if args.backend == "rtl":
        print("  the first run compiles the simulation (minutes; reused from build/sim later)")
    t0 = time.monotonic()
    logits = []
    counters = {}
    _progress(0, count)
    for start in range(0, count, args.batch):
        batch = images[start:start + args.batch]
        logits.append(driver.network(net, batch))
        for report in driver.reports:
            for name, value in report.counters.items():
                counters[name] = counters.get(name, 0) + value
        _progress(min(start + args.batch, count), count)
    elapsed = time.monotonic() - t0
    logits = np.concatenate(logits)
    expect = model.reference_logits(images)
    exact = bool(np.array_equal(logits, expect))
    predictions = model.predict(logits)
    accuracy = float(np.mean(predictions == labels))
    useful = count * sum(layer.weights.shape[0] * layer.weights.shape[1]
                         for layer in model.layers)
    print(f"  accuracy: {accuracy:.2%} ({int(np.sum(predictions == labels))}/{count}); "
          f"int8 model, measured by the training script: {model.int8_accuracy:.2%}")
    print(f"  bit-exact with the golden model: {'yes' if exact else 'NO'} "
          f"({logits.size} int8 logits compared)")
    hw = _hardware_summary(config, counters, useful)
    if hw:
        print(f"  total cycles: {hw['cycles']}, cycles per image: {hw['cycles'] / count:.1f}")
        print(f"  MAC utilization (useful MACs / (R*C*cycles)): {hw['utilization']:.1%}; "
              f"array busy (MAC_ACTIVE/CYCLES): {hw['mac_active']:.1%}")
        print(f"  DMA: {counters['DMA_BYTES_READ']} bytes read, "
              f"{counters['DMA_BYTES_WRITTEN']} bytes written")
    else:
        print("  cycles: not counted by the golden backend (use --backend rtl)")
    print(f"  wall time {elapsed:.1f} s")
    if exact:
        print(f"RESULT: PASS - accuracy {accuracy:.2%}, all outputs bit-exact with the golden model")
        return 0
    bad = int(np.count_nonzero(logits != expect))
    print(f"RESULT: FAIL - {bad} of {logits.size} logits differ from the golden model")
    return 1


def _cmd_bench(args):
    import json

    import numpy as np

    from tessera.sim import golden

    config = _config(args)
    rng = np.random.default_rng(args.seed)
    a = rng.integers(-128, 128, size=(args.m, args.k), dtype=np.int8)
    b = rng.integers(-128, 128, size=(args.k, args.n), dtype=np.int8)
    driver = _driver(args, config)
    if not args.json:
        print(f"tessera bench gemm: {args.m}x{args.k} @ {args.k}x{args.n} (int8 -> int32), "
              f"{config.rows}x{config.cols} PEs, {config.bus_width}-bit bus, backend "
              f"{args.backend}, seed {args.seed}", file=sys.stderr)
    t0 = time.monotonic()
    c = driver.gemm(a, b)
    elapsed = time.monotonic() - t0
    report = driver.reports[-1]
    macs = args.m * args.n * args.k
    exact = bool(np.array_equal(c, golden.gemm(a, b)))
    result = {
        "m": args.m, "n": args.n, "k": args.k, "rows": config.rows, "cols": config.cols,
        "bus_width": config.bus_width, "backend": args.backend, "seed": args.seed,
        "macs": macs, "bit_exact": exact, "instructions": report.instructions,
        "cycles": None, "utilization": None,
        "counters": report.counters, "wall_seconds": round(elapsed, 2),
    }
    hw = _hardware_summary(config, report.counters, macs)
    if hw:
        result.update(cycles=hw["cycles"], utilization=round(hw["utilization"], 4),
                      dma_bytes_read=report.counters["DMA_BYTES_READ"],
                      dma_bytes_written=report.counters["DMA_BYTES_WRITTEN"])
    if args.json:
        print(json.dumps(result))
    else:
        if hw:
            print(f"  cycles {hw['cycles']}, MAC utilization {hw['utilization']:.1%} "
                  f"({macs} useful MACs on {config.rows * config.cols} PEs)")
            print(f"  DMA {result['dma_bytes_read']} bytes read, "
                  f"{result['dma_bytes_written']} bytes written")
        else:
            print("  cycles: not counted by the golden backend (use --backend rtl)")
        print(f"  bit-exact with golden.gemm: {'yes' if exact else 'NO'}; wall time "
              f"{elapsed:.1f} s")
    return 0 if exact else 1


def build_parser():
    parser = _Parser(prog="tessera", description="Tessera int8 tensor accelerator tools")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("verilog", help="write synthesizable Verilog of the tensor core or top level")
    p.add_argument("--top", choices=["accelerator", "core"], default="accelerator",
                   help="the whole accelerator (default) or the tensor core alone")
    _add_array_options(p)
    p.add_argument("--bus-width", type=int, choices=[32, 64, 128], default=None,
                   help="AXI4 data width of the top level (default 64; 32 with --core small)")
    _add_core_option(p)
    p.add_argument("--multiplier", choices=["generic", "ecp5", "lut"], default="generic",
                   help="PE multipliers: behavioural (default), ECP5 MULT18X18D primitives, or "
                        "logic only (latency 3)")
    p.add_argument("-o", "--output", help="output file (default: standard output)")
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("demo", help="run the digits MLP on the accelerator and check it")
    _add_array_options(p)
    _add_run_options(p)
    p.add_argument("--images", type=_positive_int,
                   help="number of held-out test images (default: all)")
    p.add_argument("--batch", type=_positive_int, default=60,
                   help="images per program run (default 60)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("bench", help="benchmarks on the accelerator")
    bench = p.add_subparsers(dest="benchmark", required=True, parser_class=_Parser)
    g = bench.add_parser("gemm", help="one int8 GEMM: cycles, MAC utilization, DMA bytes")
    g.add_argument("--m", type=_positive_int, required=True, help="rows of A")
    g.add_argument("--n", type=_positive_int, required=True, help="columns of B")
    g.add_argument("--k", type=_positive_int, required=True, help="inner dimension")
    _add_array_options(g)
    _add_run_options(g)
    g.add_argument("--json", action="store_true", help="print one JSON object")
    g.set_defaults(func=_cmd_bench)

    from tessera.fpga.build import add_build_parser
    add_build_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    errors = (ValueError, TypeError)
    if getattr(args, "backend", None) == "board":
        # The board backend's own failures (no pyserial, no such port, no or bad answers) are
        # reported in one line too.
        from tessera.fpga.link import LinkError
        errors += (ImportError, OSError, LinkError)
    try:
        return args.func(args)
    except errors as exc:
        # Parameter errors raised by the gateware's constructors: one line, no traceback.
        if os.environ.get("TESSERA_DEBUG") == "1":
            raise
        print(f"tessera {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
