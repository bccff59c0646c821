"""End-to-end tests of the whole accelerator: programs through the register interface and the
AXI4 memory, on the RTL, checked against the instruction-level simulator and the golden model.

Every test runs a *sequence* of programs in one simulation (tb/accelerator_sequence_tb.py), with
no reset between them, so each sequence also checks that a program runs normally after the one
before it, whatever that one did (errors included). Memory images after each program are compared
byte for byte with the instruction-level simulator's (whole image, not just the outputs); outputs
of compiled layers are also compared with the golden model.
"""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tessera.rtl.isa import Opcode, ProgramError, assemble, encode
from tessera.rtl.registers import PERF_COUNTERS
from tessera.sim import golden
from tessera.sim.compiler import compile_conv2d, compile_dense, compile_gemm, compile_network
from tessera.sim.config import AcceleratorConfig
from tessera.sim.digits import load_model
from tessera.sim.isa_sim import Machine
from tessera.sim.layers import Conv2d, Dense, Network
from tessera.tb import simulators
from tessera.tb.accelerator_harness import ID_WIDTH, AcceleratorHarness
from tessera.tb.program_gen import FAULTS, Image, faulty_program, random_program
from tessera.tb.rtl_backend import DESIGN_NAME, memory_size

CONFIGS = {
    "8x8": AcceleratorConfig(),
    "3x5-bus32": AcceleratorConfig(rows=3, cols=5, scratchpad_depth=256, accumulator_depth=64,
                                   bus_width=32),
    # The small core (rtl/small/top.py): R > C, so lanes C..R-1 of the accumulator are exercised.
    "small-5x3": AcceleratorConfig(rows=5, cols=3, scratchpad_depth=256, accumulator_depth=64,
                                   bus_width=32, core="small"),
}


@dataclass
class Job:
    """One program of a sequence and what to check after it."""
    image: bytes
    length: int
    program_addr: int = 0
    stall: int = 0
    watchdog: int = -1
    hang_after: int = -1
    soft_reset_after: int = -1
    expected_error: ProgramError = ProgramError.NONE
    expected_index: int = 0
    compare_image: bool = True       # with the instruction-level simulator
    check: object = None              # callable(final image bytes) -> None
    label: str = ""
    result: dict = field(default_factory=dict)


def run_sequence(sim, config, jobs, seed, timeout=2_000_000):
    """Run ``jobs`` one after another on one simulated accelerator; fill each job's ``result``."""
    size = memory_size(max(len(job.image) for job in jobs))
    params = dict(config.as_dict(), id_width=ID_WIDTH, mem_size=size)
    design = simulators.build(sim, DESIGN_NAME, AcceleratorHarness, params, quiet=True)
    with tempfile.TemporaryDirectory(prefix="tessera-seq-") as tmp:
        request, response = Path(tmp) / "request.npz", Path(tmp) / "response.npz"
        np.savez(request,
                 images=np.frombuffer(b"".join(job.image for job in jobs), np.uint8),
                 sizes=[len(job.image) for job in jobs],
                 program_addrs=[job.program_addr for job in jobs],
                 lengths=[job.length for job in jobs],
                 stall_thresholds=[job.stall for job in jobs],
                 watchdogs=[job.watchdog for job in jobs],
                 hang_afters=[job.hang_after for job in jobs],
                 soft_reset_afters=[job.soft_reset_after for job in jobs], timeout=timeout)
        simulators.run(design, "tessera.tb.accelerator_sequence_tb", testcase="sequence",
                       seed=seed, extra_env={"TESSERA_REQUEST": str(request),
                                             "TESSERA_RESPONSE": str(response)}, quiet=True)
        with np.load(response) as answer:
            blob = answer["images"].tobytes()
            offset = 0
            for i, job in enumerate(jobs):
                if i >= len(answer["errors"]):
                    raise AssertionError(f"program {i} ({job.label}) never ran")
                image = blob[offset:offset + len(job.image)]
                offset += len(job.image)
                assert not answer["timed_out"][i], f"program {i} ({job.label}) timed out"
                job.result = {
                    "image": image, "error": int(answer["errors"][i]),
                    "error_index": int(answer["error_indices"][i]),
                    "counters": dict(zip(PERF_COUNTERS, map(int, answer["counters"][i]))),
                }


def check_jobs(config, jobs):
    """Compare each job's RTL result with the instruction-level simulator (and its own check)."""
    for i, job in enumerate(jobs):
        got = job.result
        where = f"program {i} ({job.label})"
        machine = Machine(config, job.image)
        expect = machine.run(job.program_addr, job.length)
        assert (got["error"], got["error_index"]) == (int(expect.error), expect.error_index), \
            (f"{where}: RTL stopped with {ProgramError(got['error']).name} at "
             f"{got['error_index']}, the ISA simulator with {expect.error.name} at "
             f"{expect.error_index} ({expect.detail})")
        assert (expect.error, expect.error_index) == (job.expected_error, job.expected_index), \
            f"{where}: the ISA simulator gave {expect.error.name} at {expect.error_index}"
        if job.compare_image and expect.error == ProgramError.NONE:
            rtl = np.frombuffer(got["image"], np.uint8)
            ref = np.frombuffer(bytes(machine.memory), np.uint8)
            bad = np.flatnonzero(rtl != ref)
            assert bad.size == 0, (f"{where}: {bad.size} bytes differ from the ISA simulator, "
                                   f"first at {bad[0]:#x}: RTL {rtl[bad[0]]}, ISA {ref[bad[0]]}")
        if job.check is not None and expect.error == ProgramError.NONE:
            job.check(got["image"])


# --- random and faulty programs ---------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS)
def test_differential_random_and_faulty_programs(config, seed):
    """Random programs (random fields, random memory stalls) and every kind of bad program,
    interleaved in one run: the RTL and the ISA simulator agree on every byte of memory and on
    every error code and index, and a program after an error runs normally."""
    cfg = CONFIGS[config]
    rng = np.random.default_rng(seed)
    jobs = []
    faults = list(FAULTS)
    rng.shuffle(faults)
    for i, fault in enumerate(faults):
        p = faulty_program(cfg, rng, fault)
        jobs.append(Job(p.image, p.length, p.program_addr, stall=int(rng.choice([0, 64])),
                        expected_error=p.expected_error, expected_index=p.expected_index,
                        label=fault))
        if i % 2 == 0:
            p = random_program(cfg, rng, instructions=int(rng.integers(10, 40)))
            jobs.append(Job(p.image, p.length, stall=int(rng.choice([0, 0, 100])),
                            label=f"random {i}"))
    sim = simulators.selected()[0]
    run_sequence(sim, cfg, jobs, seed)
    check_jobs(cfg, jobs)


# --- compiled layers ------------------------------------------------------------------------------

def _requant_params(rng, n):
    multiplier = rng.integers(1 << 30, (1 << 31) - 1, size=n, dtype=np.int64).astype(np.int32)
    shift = rng.integers(-12, -4, size=n).astype(np.int32)
    return multiplier, shift


def _dense(rng, k, n, act=None):
    multiplier, shift = _requant_params(rng, n)
    zp = int(rng.integers(-20, 20))
    lo, hi = -128, 127
    if act == "relu":
        lo = zp
    elif act == "relu6":
        lo, hi = zp, min(127, zp + 50)
    return Dense(weights=rng.integers(-128, 128, (k, n), dtype=np.int8),
                 bias=rng.integers(-5000, 5000, n, dtype=np.int32),
                 multiplier=multiplier, shift=shift, output_zero_point=zp, act_min=lo, act_max=hi)


def _job(program, inputs, expected, label, stall=0):
    image = bytearray(program.image)
    for name, array in inputs.items():
        program.write_input(image, name, array)
    (out_name,) = program.outputs

    def check(final):
        got = program.read_output(final, out_name)
        np.testing.assert_array_equal(got, expected.reshape(got.shape),
                                      err_msg=f"{label}: output differs from the golden model")
    return Job(bytes(image), program.length, program.program_addr, stall=stall, check=check,
               label=label)


@pytest.mark.parametrize("config", CONFIGS)
def test_compiled_layers(config, seed):
    """GEMMs of random shapes (tails, K > R, M = 1), dense layers with per-channel
    requantization, bias, ReLU and ReLU6, a strided padded convolution and a three-layer network,
    compiled and run on the RTL, some with memory stalls: bit-exact with the golden model."""
    cfg = CONFIGS[config]
    rng = np.random.default_rng(seed)
    jobs = []
    for m, k, n in [(1, 8, 8), (int(rng.integers(2, 40)), int(rng.integers(1, 50)),
                                int(rng.integers(1, 30))), (33, 70, 17)]:
        a = rng.integers(-128, 128, (m, k), dtype=np.int8)
        b = rng.integers(-128, 128, (k, n), dtype=np.int8)
        jobs.append(_job(compile_gemm(cfg, m, k, n), {"a": a, "b": b}, golden.gemm(a, b),
                         f"gemm {m}x{k}x{n}", stall=int(rng.choice([0, 80]))))
    for act in ("relu", "relu6"):
        layer = _dense(rng, int(rng.integers(5, 40)), int(rng.integers(3, 20)), act)
        x = rng.integers(-128, 128, (int(rng.integers(1, 30)), layer.weights.shape[0]),
                         dtype=np.int8)
        jobs.append(_job(compile_dense(cfg, layer, x.shape[0]), {"x": x}, layer.reference(x),
                         f"dense {act}"))
    conv = Conv2d(weights=rng.integers(-128, 128, (3, 3, 3, 6), dtype=np.int8),
                  bias=rng.integers(-3000, 3000, 6, dtype=np.int32),
                  multiplier=_requant_params(rng, 6)[0], shift=_requant_params(rng, 6)[1],
                  stride=2, padding=1, input_zero_point=-3, output_zero_point=2, act_min=2)
    x = rng.integers(-128, 128, (2, 7, 6, 3), dtype=np.int8)
    jobs.append(_job(compile_conv2d(cfg, conv, x.shape), {"x": conv.im2col(x)}, conv.reference(x),
                     "conv2d 3x3 stride 2 padding 1", stall=40))
    net = Network((_dense(rng, 20, 16, "relu"), _dense(rng, 16, 12, "relu"), _dense(rng, 12, 5)))
    x = rng.integers(-128, 128, (9, 20), dtype=np.int8)
    compiled = compile_network(cfg, net, x.shape[0])
    assert len(compiled.stages) == 1, "a dense chain is one program"
    jobs.append(_job(compiled.stages[0].program, {"x": x}, net.reference(x), "3-layer network"))
    sim = simulators.selected()[0]
    run_sequence(sim, cfg, jobs, seed)
    check_jobs(cfg, jobs)
    gemm = jobs[2].result["counters"]
    # 33 activation rows per (K, N) tile; int32 results of 33 x 17; every engine's cycles within
    # the program's; the instructions, A and B read at least once.
    assert gemm["MAC_ACTIVE"] == 33 * -(-70 // cfg.rows) * -(-17 // cfg.cols), gemm
    assert gemm["CYCLES"] > gemm["MAC_ACTIVE"], gemm
    for engine in ("LOAD", "EXEC", "STORE"):
        assert 0 < gemm[f"{engine}_BUSY"] + gemm[f"{engine}_STALL"] <= gemm["CYCLES"], gemm
    assert gemm["DMA_BYTES_WRITTEN"] == 33 * 17 * 4, gemm
    assert gemm["DMA_BYTES_READ"] >= 16 * jobs[2].length + 33 * 70 + 70 * 17, gemm


def test_time_shared_requantizer(seed):
    """8x8 with ``requant_units=3`` (8 lanes on 3 time-shared multiplier pipelines: a row in 3
    cycles, the last slice partial): dense layers with per-channel requantization and ReLU /
    ReLU6 (one with memory stalls), a raw int32 GEMM after them and a three-layer network,
    bit-exact with the golden model and byte for byte with the ISA simulator."""
    cfg = AcceleratorConfig(requant_units=3)
    rng = np.random.default_rng(seed)
    jobs = []
    for act, stall in (("relu", 0), ("relu6", 60)):
        layer = _dense(rng, int(rng.integers(9, 40)), int(rng.integers(9, 24)), act)
        x = rng.integers(-128, 128, (int(rng.integers(8, 30)), layer.weights.shape[0]),
                         dtype=np.int8)
        jobs.append(_job(compile_dense(cfg, layer, x.shape[0]), {"x": x}, layer.reference(x),
                         f"dense {act}", stall=stall))
    a = rng.integers(-128, 128, (13, 10), dtype=np.int8)
    b = rng.integers(-128, 128, (10, 9), dtype=np.int8)
    jobs.append(_job(compile_gemm(cfg, 13, 10, 9), {"a": a, "b": b}, golden.gemm(a, b),
                     "gemm 13x10x9 (int32)"))
    net = Network((_dense(rng, 20, 16, "relu"), _dense(rng, 16, 12, "relu"), _dense(rng, 12, 5)))
    x = rng.integers(-128, 128, (9, 20), dtype=np.int8)
    jobs.append(_job(compile_network(cfg, net, x.shape[0]).stages[0].program, {"x": x},
                     net.reference(x), "3-layer network"))
    run_sequence(simulators.selected()[0], cfg, jobs, seed)
    check_jobs(cfg, jobs)

def test_digits_network_counters(seed):
    """The demo's network on 24 images: bit-exact, and the counters are consistent (every cycle
    counted once per engine state, MAC-active cycles = activation rows streamed)."""
    cfg = CONFIGS["8x8"]
    model = load_model()
    x = model.test_images[:24]
    net = Network(tuple(model.layers))
    program = compile_network(cfg, net, x.shape[0]).stages[0].program
    job = _job(program, {"x": x}, model.reference_logits(x), "digits")
    run_sequence(simulators.selected()[0], cfg, [job], seed)
    check_jobs(cfg, [job])
    c = job.result["counters"]
    for engine in ("LOAD", "EXEC", "STORE"):
        assert c[f"{engine}_BUSY"] + c[f"{engine}_STALL"] <= c["CYCLES"], c
    rows = sum(-(-layer.weights.shape[0] // cfg.rows) * -(-layer.weights.shape[1] // cfg.cols)
               for layer in model.layers) * len(x)
    assert c["MAC_ACTIVE"] == rows, (c, rows)
    assert c["DMA_BYTES_WRITTEN"] >= x.shape[0] * 10


# --- FENCE --------------------------------------------------------------------------------------

def test_fence_orders_engines_without_tokens(seed):
    """FENCE is the only ordering between a long MATMUL and a LOAD that overwrites the last
    activation rows it reads (no tokens): the MATMUL must see the old rows. A FENCE that passes
    while the MATMUL is still on its way into the EXEC queue lets the LOAD overtake it."""
    cfg = CONFIGS["8x8"]
    rng = np.random.default_rng(seed)
    rows, lanes = 64, cfg.lanes
    w = rng.integers(-128, 128, (cfg.rows, cfg.cols), dtype=np.int8)
    a1 = rng.integers(-128, 128, (rows, cfg.rows), dtype=np.int8)
    a2 = rng.integers(-128, 128, (rows // 2, cfg.rows), dtype=np.int8)
    image = Image()
    w_addr, a1_addr, a2_addr = (image.put(x.tobytes()) for x in (w, a1, a2))
    out = image.reserve(rows * 4 * lanes)
    act = cfg.rows                                   # activation rows follow the weights
    words = [
        encode(Opcode.LOAD, buffer=0, row_bytes=cfg.cols, sram_row=0, rows=cfg.rows,
               dram_addr=w_addr, dram_stride=cfg.cols),
        encode(Opcode.LOAD, buffer=0, row_bytes=cfg.rows, sram_row=act, rows=rows,
               dram_addr=a1_addr, dram_stride=cfg.rows),
        encode(Opcode.FENCE),
        encode(Opcode.MATMUL, accumulate=0, wgt_row=0, act_row=act, acc_row=0, rows=rows),
        encode(Opcode.FENCE),
        encode(Opcode.LOAD, buffer=0, row_bytes=cfg.rows, sram_row=act + rows // 2,
               rows=rows // 2, dram_addr=a2_addr, dram_stride=cfg.rows),
        encode(Opcode.FENCE),
        encode(Opcode.STORE, requant=0, row_bytes=4 * lanes, acc_row=0, rows=rows,
               dram_addr=out, dram_stride=4 * lanes),
        encode(Opcode.HALT),
    ]
    program_addr = image.put(assemble(words), align=16)
    expected = golden.gemm(a1, w)

    def check(final):
        got = np.frombuffer(final[out:out + rows * 4 * lanes], "<i4").reshape(rows, lanes)
        np.testing.assert_array_equal(got[:, :cfg.cols], expected,
                                      err_msg="the MATMUL saw rows loaded after the FENCE")
    job = Job(bytes(image.data), len(words), program_addr, check=check, label="fence hazard")
    run_sequence(simulators.selected()[0], cfg, [job], seed)
    check_jobs(cfg, [job])


# --- watchdog ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", ["3x5-bus32", "small-5x3"])
def test_watchdog_stops_a_hung_memory(config, seed):
    """The memory stops answering in the middle of a GEMM: WATCHDOG instead of a hang; the
    next program (memory answering again) runs normally."""
    cfg = CONFIGS[config]
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (40, 30), dtype=np.int8)
    b = rng.integers(-128, 128, (30, 20), dtype=np.int8)
    hung = _job(compile_gemm(cfg, 40, 30, 20), {"a": a, "b": b}, golden.gemm(a, b), "hung")
    hung.hang_after, hung.watchdog = 300, 2000
    ok = _job(compile_gemm(cfg, 40, 30, 20), {"a": a, "b": b}, golden.gemm(a, b), "after")
    run_sequence(simulators.selected()[0], cfg, [hung, ok], seed)
    assert hung.result["error"] == ProgramError.WATCHDOG, hung.result
    assert ok.result["error"] == ProgramError.NONE, ok.result
    ok.check(ok.result["image"])


@pytest.mark.parametrize("config", ["3x5-bus32", "small-5x3"])
def test_soft_reset_stops_a_program(config, seed):
    """CTRL.soft_reset in the middle of a GEMM: the program ends with ABORTED (done and error
    set), the bus stays legal, and the next program runs normally."""
    cfg = CONFIGS[config]
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (60, 40), dtype=np.int8)
    b = rng.integers(-128, 128, (40, 25), dtype=np.int8)
    stopped = _job(compile_gemm(cfg, 60, 40, 25), {"a": a, "b": b}, golden.gemm(a, b), "reset")
    stopped.soft_reset_after = 400
    ok = _job(compile_gemm(cfg, 60, 40, 25), {"a": a, "b": b}, golden.gemm(a, b), "after")
    run_sequence(simulators.selected()[0], cfg, [stopped, ok], seed)
    assert stopped.result["error"] == ProgramError.ABORTED, stopped.result
    assert 0 < stopped.result["error_index"] < stopped.length, stopped.result
    assert ok.result["error"] == ProgramError.NONE, ok.result
    ok.check(ok.result["image"])


# --- the other simulator ----------------------------------------------------------------------------

def test_icarus_smoke(seed):
    """A small GEMM and a bad program on Icarus (slow, so small): same results as Verilator's."""
    if "icarus" not in simulators.available():
        pytest.skip("Icarus Verilog is not installed")
    cfg = CONFIGS["3x5-bus32"]
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (7, 6), dtype=np.int8)
    b = rng.integers(-128, 128, (6, 7), dtype=np.int8)
    p = faulty_program(cfg, rng, "deadlock")
    jobs = [_job(compile_gemm(cfg, 7, 6, 7), {"a": a, "b": b}, golden.gemm(a, b), "gemm"),
            Job(p.image, p.length, expected_error=p.expected_error,
                expected_index=p.expected_index, label="deadlock")]
    run_sequence("icarus", cfg, jobs, seed)
    check_jobs(cfg, jobs)
