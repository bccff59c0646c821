"""Tests of the driver (``tessera.sim.driver``) through the golden backend.

Every result is compared bit for bit with the golden model (``golden.gemm`` or the layers'
``reference``); inputs of the wrong kind are refused with errors naming the input; backend errors
become :class:`AcceleratorError`; backends are chosen by name or passed as objects. The RTL backend
is exercised only through a stand-in for ``tessera.tb.rtl_backend.execute`` (the RTL itself is
tested in tb/test_rtl_backend.py). Random data use the session seed (``seed`` fixture, printed).
Whole file: a few seconds.
"""

import numpy as np
import pytest

from tessera.rtl.isa import Opcode, ProgramError, assemble, encode
from tessera.sim import golden
from tessera.sim.compiler import Program, compile_dense, compile_gemm
from tessera.sim.config import AcceleratorConfig
from tessera.sim.digits import load_model
from tessera.sim.driver import (AcceleratorError, Driver, ExecResult, GoldenBackend,
                                RtlBackend)
from tessera.sim.isa_sim import decode_instruction
from tessera.sim.layers import Conv2d, Dense, Network

CONFIG = AcceleratorConfig(4, 4, 256, 64, 32)


def int8(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def requant_args(rng, n, relu=True):
    multipliers, shifts = golden.quantize_multipliers(rng.uniform(2e-3, 1e-2, size=n))
    zp = int(rng.integers(-10, 10))
    return dict(multiplier=multipliers, shift=shifts, output_zero_point=zp,
                act_min=zp if relu else -128)


# --- results ----------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [CONFIG, AcceleratorConfig(3, 5, 64, 16, 64)],
                         ids=["4x4", "3x5-small"])
def test_gemm_equals_golden(config, seed):
    rng = np.random.default_rng(seed)
    driver = Driver(config)
    for m, k, n in [(1, 1, 1), (7, 30, 9), tuple(int(v) for v in rng.integers(1, 50, 3))]:
        a, b = int8(rng, (m, k)), int8(rng, (k, n))
        c = driver.gemm(a, b)
        assert c.dtype == np.int32 and c.shape == (m, n)
        assert np.array_equal(c, golden.gemm(a, b))


def test_dense_conv2d_and_network_equal_reference(seed):
    rng = np.random.default_rng(seed)
    driver = Driver(CONFIG)
    dense = Dense(int8(rng, (21, 6)), rng.integers(-500, 500, 6, dtype=np.int32),
                  **requant_args(rng, 6))
    x = int8(rng, (5, 21))
    assert np.array_equal(driver.dense(dense, x), dense.reference(x))

    conv = Conv2d(int8(rng, (3, 3, 3, 5)), rng.integers(-500, 500, 5, dtype=np.int32),
                  stride=2, padding=1, input_zero_point=-3, **requant_args(rng, 5))
    img = int8(rng, (2, 7, 6, 3))
    y = driver.conv2d(conv, img)
    assert y.shape == (2, 4, 3, 5)
    assert np.array_equal(y, conv.reference(img))

    conv2 = Conv2d(int8(rng, (3, 3, 5, 4)), None, padding=1, **requant_args(rng, 4))
    head = Dense(int8(rng, (4 * 3 * 4, 3)), None, **requant_args(rng, 3, relu=False))
    net = Network([conv, conv2, head])
    out = driver.network(net, img)
    assert len(driver.reports) == 2            # the second conv needs a host im2col
    assert np.array_equal(out, net.reference(img))


def test_digits_model_runs_bit_exact(seed):
    """The committed digits MLP (three dense layers in one program) on the held-out images."""
    model = load_model()
    images = model.test_images[:64]
    driver = Driver(AcceleratorConfig(8, 8, 4096, 512, 64))
    logits = driver.network(Network(model.layers), images)
    assert len(driver.reports) == 1
    assert np.array_equal(logits, model.reference_logits(images))


def test_random_engine_interleaving_gives_the_same_result(seed):
    rng = np.random.default_rng(seed)
    a, b = int8(rng, (13, 19)), int8(rng, (19, 11))
    for s in (seed, seed + 1):
        assert np.array_equal(Driver(CONFIG, seed=s).gemm(a, b), golden.gemm(a, b))


def test_report_counts_instructions_and_macs(seed):
    rng = np.random.default_rng(seed)
    driver = Driver(CONFIG)
    program = compile_gemm(CONFIG, 9, 10, 6)
    report = driver.run(program, {"a": int8(rng, (9, 10)), "b": int8(rng, (10, 6))})
    assert report.error == ProgramError.NONE and report.error_index == 0
    assert report.instructions == program.length
    rows = [decode_instruction(w).fields["rows"] for w in program.instructions
            if decode_instruction(w).opcode == Opcode.MATMUL]
    assert report.counters["MACS"] == sum(rows) * CONFIG.rows * CONFIG.cols
    assert driver.reports == [report]


# --- refusing bad input -----------------------------------------------------------------------

@pytest.fixture
def gemm_program():
    return compile_gemm(CONFIG, 3, 4, 5)


@pytest.mark.parametrize("inputs,error,message", [
    ({"a": np.zeros((3, 4), np.int8)}, ValueError, "input 'b' is missing"),
    ({"a": np.zeros((3, 4), np.int8), "b": np.zeros((4, 5), np.int8),
      "x": np.zeros(1, np.int8)}, ValueError, "input 'x' is not an input of the program"),
    ({"a": np.zeros((3, 4), np.float32), "b": np.zeros((4, 5), np.int8)}, TypeError,
     "input 'a' must have dtype int8, not float32"),
    ({"a": np.zeros((3, 4), np.int8), "b": np.zeros((4, 6), np.int8)}, ValueError,
     r"input 'b' must have shape \(4, 5\), not \(4, 6\)"),
    ({"a": [[0] * 4] * 3, "b": np.zeros((4, 5), np.int8)}, TypeError,
     "input 'a' must be a numpy array"),
    ([np.zeros((3, 4), np.int8)], TypeError, "inputs must be a dict"),
])
def test_run_refuses_bad_inputs(gemm_program, inputs, error, message):
    with pytest.raises(error, match=message):
        Driver(CONFIG).run(gemm_program, inputs)


def test_convenience_calls_refuse_bad_inputs():
    driver = Driver(CONFIG)
    dense = Dense(np.zeros((4, 2), np.int8), None, 1, 0)
    conv = Conv2d(np.zeros((3, 3, 2, 2), np.int8), None, 1, 0)
    cases = [
        (lambda: driver.gemm(np.zeros((2, 3), np.int16), np.zeros((3, 2), np.int8)), TypeError,
         "a must be an int8 numpy array, not an array of dtype int16"),
        (lambda: driver.gemm(np.zeros((2, 3), np.int8), np.zeros(3, np.int8)), ValueError,
         r"b must be 2-D, not shape \(3,\)"),
        (lambda: driver.gemm(np.zeros((2, 3), np.int8), np.zeros((4, 2), np.int8)), ValueError,
         "inner dimensions differ"),
        (lambda: driver.gemm(np.zeros((0, 3), np.int8), np.zeros((3, 2), np.int8)), ValueError,
         "a must not be empty"),
        (lambda: driver.dense(dense, np.zeros((2, 5), np.int8)), ValueError,
         r"x must have shape \(M >= 1, 4\), not \(2, 5\)"),
        (lambda: driver.dense(conv, np.zeros((2, 4), np.int8)), TypeError,
         "layer must be a Dense, not Conv2d"),
        (lambda: driver.conv2d(conv, np.zeros((1, 5, 5, 3), np.int8)), ValueError,
         r"x must have shape \(N >= 1, H, W, 2\)"),
        (lambda: driver.conv2d(conv, np.zeros((1, 5, 5, 2), np.uint8)), TypeError,
         "x must be a 4-D int8 numpy array"),
        (lambda: driver.network(Network([dense]), np.zeros((2, 4), np.float64)), TypeError,
         "x must be an int8 numpy array"),
        (lambda: driver.network(Network([dense]), np.zeros((2, 3), np.int8)), ValueError,
         r"layers\[0\] \(Dense\) needs \(M >= 1, 4\) inputs, not shape \(2, 3\)"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


def test_program_of_another_configuration_is_refused(gemm_program):
    with pytest.raises(ValueError, match="program was compiled for"):
        Driver(AcceleratorConfig(8, 8, 256, 64, 32)).run(gemm_program, {})


# --- errors from the accelerator --------------------------------------------------------------

def _with_first_instruction(program, word):
    words = [word] + list(program.instructions[1:])
    image = bytearray(program.image)
    image[0:16] = assemble([word])
    return Program(program.config, words, image, program.program_addr, program.tensors,
                   program.inputs, program.outputs, program.plans)


def test_backend_error_raises_accelerator_error(gemm_program):
    bad = encode(Opcode.LOAD, buffer=0, sram_row=CONFIG.scratchpad_depth - 1, rows=2,
                 row_bytes=1, dram_addr=0, dram_stride=0)
    program = _with_first_instruction(gemm_program, bad)
    inputs = {"a": np.zeros((3, 4), np.int8), "b": np.zeros((4, 5), np.int8)}
    driver = Driver(CONFIG)
    with pytest.raises(AcceleratorError, match="SPAD_RANGE .* at instruction 0") as info:
        driver.run(program, inputs)
    assert info.value.code == ProgramError.SPAD_RANGE and info.value.index == 0
    report = driver.run(program, inputs, check=False)
    assert report.error == ProgramError.SPAD_RANGE and report.error_index == 0
    assert report.outputs == {}


# --- backends ---------------------------------------------------------------------------------

class CountingBackend:
    """A backend object (not a name): runs the golden backend and counts its calls."""

    def __init__(self):
        self.calls = []
        self.inner = GoldenBackend()

    def execute(self, config, memory, program_addr, length):
        self.calls.append((config, len(memory), program_addr, length))
        return self.inner.execute(config, memory, program_addr, length)


def test_backend_objects_and_names(seed):
    rng = np.random.default_rng(seed)
    backend = CountingBackend()
    driver = Driver(CONFIG, backend=backend)
    layer = Dense(int8(rng, (6, 4)), None, **requant_args(rng, 4))
    x = int8(rng, (3, 6))
    assert np.array_equal(driver.dense(layer, x), layer.reference(x))
    program = compile_dense(CONFIG, layer, 3)
    assert backend.calls == [(CONFIG, len(program.image), 0, program.length)]
    assert isinstance(Driver(CONFIG).backend, GoldenBackend)
    assert isinstance(Driver(CONFIG, backend="rtl", sim="icarus").backend, RtlBackend)
    with pytest.raises(ValueError, match=r"backend must be one of \['board', 'golden', 'rtl'\]"):
        Driver(CONFIG, backend="nope")
    with pytest.raises(TypeError, match="or an object with an execute method"):
        Driver(CONFIG, backend=42)
    with pytest.raises(TypeError, match="apply only to a backend given by name"):
        Driver(CONFIG, backend=backend, seed=1)
    with pytest.raises(TypeError, match="seed must be an int or None"):
        Driver(CONFIG, seed="1")
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig"):
        Driver((4, 4))


def test_rtl_backend_calls_rtl_backend_execute(monkeypatch, seed):
    """The rtl backend hands the image, address, length and its options to
    tessera.tb.rtl_backend.execute and reads that function's ExecResult (a stand-in here)."""
    import tessera.tb.rtl_backend as rtl_backend
    seen = {}

    def fake_execute(config, memory, program_addr, length, *, sim=None, seed=None):
        seen.update(sim=sim, seed=seed, length=length)
        result = GoldenBackend().execute(config, memory, program_addr, length)
        return ExecResult(result.memory, result.error, result.error_index,
                          {"CYCLES": 123, "MAC_ACTIVE": 45})

    monkeypatch.setattr(rtl_backend, "execute", fake_execute)
    rng = np.random.default_rng(seed)
    a, b = int8(rng, (5, 7)), int8(rng, (7, 3))
    driver = Driver(CONFIG, backend="rtl", sim="verilator", seed=seed)
    assert np.array_equal(driver.gemm(a, b), golden.gemm(a, b))
    assert seen == dict(sim="verilator", seed=seed, length=compile_gemm(CONFIG, 5, 7, 3).length)
    assert driver.reports[0].counters == {"CYCLES": 123, "MAC_ACTIVE": 45}
    assert driver.reports[0].instructions is None
