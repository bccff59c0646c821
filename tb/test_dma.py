"""pytest entry of the DMA testbench (tb/dma_tb.py) on each selected simulator.

Each configuration runs all cocotb tests in one simulator process (start-up costs a few seconds
per process); every cocotb test is still reported as its own pytest test.

Default run: three configurations that together cover the three bus widths, short and long
buffer rows, bursts cut by ``max_burst`` (4 beats) and by 4 KiB boundaries, each with every
cocotb test. ``--run-slow`` adds the full sweeps and more random transfers on those, and three
corner configurations (rows narrower than the bus, one outstanding read, single-beat bursts,
long rows of 64 beats, eight outstanding reads).
"""

import functools
import gc
import re
import warnings
from xml.etree import ElementTree

import pytest
from amaranth.back import verilog
from amaranth.hdl import UnusedElaboratable

from tessera.rtl.dma import Dma
from tessera.tb import simulators
from tessera.tb.dma_harness import DmaHarness

TESTBENCH = "tessera.tb.dma_tb"
TESTCASES = ["random_transfers", "boundary_sweep", "throughput", "rejections", "read_errors",
             "write_errors", "reset_mid_transfer"]


def config(data_width, lanes, *, max_burst=256, outstanding=4, scratchpad_depth=64,
           accumulator_depth=256):
    return dict(data_width=data_width, id_width=4, lanes=lanes,
                scratchpad_depth=scratchpad_depth, accumulator_depth=accumulator_depth,
                max_burst=max_burst, max_outstanding_reads=outstanding)


CONFIGS = {
    "w32_l16": config(32, 16),                              # 64 B rows = 16 words
    "w64_l16_b4": config(64, 16, max_burst=4),              # rows of 2-3 bursts
    "w128_l64": config(128, 64),                            # 256 B rows, 4 KiB splits
}
SLOW_CONFIGS = {
    "w128_l1_b1_o1": config(128, 1, max_burst=1, outstanding=1, scratchpad_depth=16,
                            accumulator_depth=16),         # 1 B and 4 B rows on a 16 B bus
    "w32_l64_b16_o2": config(32, 64, max_burst=16, outstanding=2, accumulator_depth=64),
    "w64_l8_b2_o8": config(64, 8, max_burst=2, outstanding=8),
}


def dma_build(sim, params):
    return simulators.build(sim, "dma_harness", DmaHarness, params)


@functools.cache
def run_all(sim, name, seed, full=False):
    """Run every cocotb test of the testbench in one simulator process (one start-up instead of
    seven) and return ({test: failure text or None}, overall failure or None)."""
    params = {**CONFIGS, **SLOW_CONFIGS}[name]
    design = dma_build(sim, params)
    results_xml = simulators.run_directory(design) / "results.xml"
    results_xml.unlink(missing_ok=True)
    overall = None
    try:
        simulators.run(design, TESTBENCH, seed=seed,
                       extra_env={"TESSERA_DMA_FULL": "1"} if full else None)
    except AssertionError as exc:
        overall = str(exc)
    outcome = {}
    if results_xml.exists():
        for case in ElementTree.parse(results_xml).iter("testcase"):
            failure = case.find("failure")
            if failure is None:
                failure = case.find("error")
            outcome[case.get("name")] = (None if failure is None else
                                         failure.get("message") or failure.text or "failed")
    return outcome, overall


def check(sim, name, testcase, seed, full=False):
    outcome, overall = run_all(sim, name, seed, full)
    if testcase not in outcome:
        pytest.fail(f"{testcase} did not run on {sim} ({overall or 'no result'})")
    if outcome[testcase] is not None:
        pytest.fail(f"{testcase} failed on {sim} with {name}: {outcome[testcase]}; "
                    f"replay with TESSERA_SEED={seed}")


#: Configurations whose default run takes over a minute on Icarus (Verilator runs them always).
ICARUS_SLOW = {"w128_l64"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow_on_icarus)
                                  if n in ICARUS_SLOW else n for n in CONFIGS])
@pytest.mark.parametrize("testcase", TESTCASES)
def test_dma(sim, name, testcase, seed):
    check(sim, name, testcase, seed)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS) + list(SLOW_CONFIGS))
@pytest.mark.parametrize("testcase", TESTCASES)
def test_dma_full(sim, name, testcase, seed):
    """Full sweeps and long random regressions (TESSERA_DMA_FULL=1)."""
    check(sim, name, testcase, seed, full=True)


@pytest.mark.parametrize("data_width", [32, 64, 128])
def test_dma_verilog(data_width):
    """The DMA converts to Verilog for every bus width, with the documented AXI port names."""
    text = verilog.convert(Dma(data_width=data_width, lanes=16), name="tessera_dma")
    for port in ("m_axi__awaddr", "m_axi__wstrb", "m_axi__rdata", "descriptor__payload",
                 "row_write__payload", "row_read_req__valid", "row_read_data__ready",
                 "bytes_written", "error_addr"):
        assert port in text
    assert f"[{data_width - 1}:0] m_axi__wdata" in text


def rejects(error, message, **kwargs):
    """``Dma(**kwargs)`` raises ``error`` matching ``message``. The half-built component is
    collected here, with its "created but never used" warning silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(error, match=re.escape(message)) as info:
            Dma(**kwargs)
        del info
        gc.collect()


@pytest.mark.parametrize("kwargs,message", [
    (dict(data_width=48), "data_width must be one of [32, 64, 128], not 48"),
    (dict(lanes=0), "lanes must be an integer in [1, 4096], not 0"),
    (dict(max_burst=257), "max_burst must be an integer in [1, 256], not 257"),
    (dict(max_outstanding_reads=0), "max_outstanding_reads must be an integer in [1, 64], not 0"),
    (dict(scratchpad_depth=65537), "scratchpad_depth must be an integer in [1, 65536], not 65537"),
    (dict(id_width=17), "id_width must be an integer in [1, 16], not 17"),
])
def test_dma_parameters(kwargs, message):
    rejects(ValueError, message, **kwargs)


def test_dma_parameter_types():
    rejects(TypeError, "lanes must be a positive integer, not 2.5", lanes=2.5)
