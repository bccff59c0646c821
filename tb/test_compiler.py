"""Tests of the layers (``tessera.sim.layers``) and the compiler (``tessera.sim.compiler``).

Every compiled program is

* checked by :func:`check_synchronization`, an independent replay of the program that proves no
  hazard can occur under any interleaving of the engines the tokens allow, and
* run on the instruction-level simulator (oldest-first and a random seeded interleaving), its
  output compared bit for bit with the golden model.

Random data and shapes use the session seed (``seed`` fixture, printed; replay with ``--seed``).
The layers have no test file of their own (the task owns only this file and test_driver.py), so
their tests are in the first section here. Whole file: about 20 seconds.
"""

import random

import numpy as np
import pytest

from tessera.rtl.isa import ENGINE_OF, INSTRUCTION_BYTES, Engine, Opcode, ProgramError, encode
from tessera.sim import golden
from tessera.sim.compiler import (ALIGN, CompileError, Program, compile_conv2d, compile_dense,
                                  compile_gemm, compile_network, plan_gemm)
from tessera.sim.config import AcceleratorConfig
from tessera.sim.isa_sim import Machine, decode_instruction
from tessera.sim.layers import Conv2d, Dense, Network, Requant

# --- configurations ---------------------------------------------------------------------------

CONFIGS = {
    "8x8": AcceleratorConfig(8, 8, 4096, 512, 64),
    "4x4": AcceleratorConfig(4, 4, 256, 64, 32),
    "3x5": AcceleratorConfig(3, 5, 128, 32, 128),
    "5x3": AcceleratorConfig(5, 3, 128, 32, 64),
    "1x1": AcceleratorConfig(1, 1, 64, 16, 32),
    # Small buffers: panels rarely fit (k-chunked fallback), the accumulator holds tiny tiles.
    "4x4-small": AcceleratorConfig(4, 4, 24, 8, 32),
    "3x5-small": AcceleratorConfig(3, 5, 10, 6, 64),
    "1x1-tiny": AcceleratorConfig(1, 1, 2, 6, 32),
}


def random_int8(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def random_requant(rng, n, relu=False):
    multipliers, shifts = golden.quantize_multipliers(rng.uniform(1e-4, 2e-2, size=n))
    zp = int(rng.integers(-20, 20))
    return Requant(n, multipliers, shifts, zp, zp if relu else -128, 127)


# --- the synchronization checker --------------------------------------------------------------

def _join(a, b):
    return tuple(max(x, y) for x, y in zip(a, b))


class Hazard(AssertionError):
    pass


def check_synchronization(config, program):
    """Prove that ``program`` behaves as if run one instruction at a time in program order,
    under every interleaving of the three engines the tokens and FENCEs allow.

    1. Tokens: pushes from engine S to engine D pair with pops of D from S in order (FIFO
       counts); every push must come before its pop in program order (so in-order dispatch with
       bounded queues cannot deadlock) and none may be left over.
    2. Happens-before: program order within an engine, push -> pop of each token pair, and
       everything before a FENCE -> everything after it; kept as vector clocks.
    3. Accesses, replayed in program order: scratchpad and accumulator rows and memory bytes
       read and written by each instruction (a MATMUL reads its R weight rows and activation rows,
       and its accumulator rows when accumulating; CONFIG reads its two parameter rows and a
       requantizing STORE reads them too; LOAD reads memory, STORE writes it; the program's own
       bytes are read by fetch and may not be stored to). Each access must happen after the last
       write of what it touches, and each write after every read since that write.

    Raises :class:`Hazard` naming the two instructions and the resource.
    """
    ins = [decode_instruction(w) for w in program.instructions]
    engine = [ENGINE_OF.get(x.opcode) for x in ins]
    pushes = {(s, d): [] for s in Engine for d in Engine if s != d}
    pops = {(s, d): [] for s in Engine for d in Engine if s != d}
    for i, x in enumerate(ins):
        for d in x.engines("push"):
            pushes[(engine[i], d)].append(i)
        for s in x.engines("pop"):
            pops[(s, engine[i])].append(i)
    partners = {}
    for key in pushes:
        if len(pushes[key]) != len(pops[key]):
            raise Hazard(f"{len(pushes[key])} pushes but {len(pops[key])} pops from "
                         f"{key[0].name} to {key[1].name}")
        for p, q in zip(pushes[key], pops[key]):
            if p >= q:
                raise Hazard(f"instruction {q} pops the token of instruction {p}, which comes "
                             f"later in program order")
            partners.setdefault(q, []).append(p)

    clock, position = {}, {}
    count = {e: 0 for e in Engine}
    last = {e: None for e in Engine}
    barrier = running = (-1, -1, -1)
    for i, x in enumerate(ins):
        if x.opcode == Opcode.FENCE:
            barrier = running
            continue
        if engine[i] is None:
            continue
        e = engine[i]
        c = barrier
        if last[e] is not None:
            c = _join(c, clock[last[e]])
        for p in partners.get(i, ()):
            c = _join(c, clock[p])
        c = tuple(count[e] if f == e else v for f, v in enumerate(c))
        clock[i], position[i] = c, count[e]
        running = _join(running, c)
        last[e] = i
        count[e] += 1

    def ordered(i, j):
        return clock[j][engine[i]] >= position[i]

    size = len(program.image)
    resources = {"spad": config.scratchpad_depth, "acc": config.accumulator_depth, "mem": size}
    writer = {r: np.full(n, -1, np.int64) for r, n in resources.items()}
    readers = {r: np.full((3, n), -1, np.int64) for r, n in resources.items()}
    code = slice(program.program_addr, program.program_addr + INSTRUCTION_BYTES * len(ins))
    params = None

    def rows(first, count):
        return slice(first, first + count)

    def memory(f):
        r = np.arange(f["rows"], dtype=np.int64)[:, None] * f["dram_stride"]
        index = (f["dram_addr"] + r + np.arange(f["row_bytes"])).ravel()
        assert index.max() < size, "memory access outside the image"
        return index

    for j, x in enumerate(ins):
        if engine[j] is None:
            continue
        f = x.fields
        reads, writes = [], []
        if x.opcode == Opcode.LOAD:
            reads.append(("mem", memory(f)))
            writes.append(("acc" if f["buffer"] else "spad", rows(f["sram_row"], f["rows"])))
        elif x.opcode == Opcode.MATMUL:
            reads += [("spad", rows(f["wgt_row"], config.rows)),
                      ("spad", rows(f["act_row"], f["rows"]))]
            if f["accumulate"]:
                reads.append(("acc", rows(f["acc_row"], f["rows"])))
            writes.append(("acc", rows(f["acc_row"], f["rows"])))
        elif x.opcode == Opcode.CONFIG:
            params = rows(f["params_row"], 2)
            reads.append(("acc", params))
        else:
            reads.append(("acc", rows(f["acc_row"], f["rows"])))
            if f["requant"] and params is not None:
                reads.append(("acc", params))
            index = memory(f)
            if np.any((index >= code.start) & (index < code.stop)):
                raise Hazard(f"STORE {j} writes into the program")
            writes.append(("mem", index))
        for resource, index in reads:
            for w in np.unique(writer[resource][index]):
                if w >= 0 and not ordered(int(w), j):
                    raise Hazard(f"instruction {j} ({x.opcode.name}) reads {resource} written by "
                                 f"instruction {int(w)} ({ins[int(w)].opcode.name}) with nothing "
                                 f"ordering them")
        for resource, index in writes:
            earlier = [int(w) for w in np.unique(writer[resource][index]) if w >= 0]
            earlier += [int(r) for r in readers[resource][:, index].max(axis=1) if r >= 0]
            for i in earlier:
                if not ordered(i, j):
                    raise Hazard(f"instruction {j} ({x.opcode.name}) overwrites {resource} that "
                                 f"instruction {i} ({ins[i].opcode.name}) uses, with nothing "
                                 f"ordering them")
        for resource, index in reads:
            readers[resource][engine[j], index] = j
        for resource, index in writes:
            readers[resource][:, index] = -1
            writer[resource][index] = j


def run_program(config, program, inputs, seed=None):
    """Check ``program``'s synchronization, run it on the instruction-level simulator (random
    interleaving when ``seed`` is given) and return (result, machine)."""
    check_synchronization(config, program)
    image = bytearray(program.image)
    for name, value in inputs.items():
        program.write_input(image, name, value)
    machine = Machine(config, image)
    rng = None if seed is None else random.Random(seed)
    result = machine.run(program.program_addr, program.length, rng=rng)
    assert result.error == ProgramError.NONE, result.detail
    return result, machine


def gemm_case(config, m, k, n, rng, seed, requant=False, bias=False):
    """Compile, check and run one GEMM; compare with golden (oldest-first and one random
    interleaving). Returns the program."""
    a, b = random_int8(rng, (m, k)), random_int8(rng, (k, n))
    rq = random_requant(rng, n) if requant else None
    bs = rng.integers(-5000, 5000, size=n, dtype=np.int32) if bias else None
    program = compile_gemm(config, m, k, n, bias=bs, requant=rq)
    expected = golden.gemm(a, b, bs)
    if rq is not None:
        expected = rq.apply(expected)
    for order in (None, seed):
        _, machine = run_program(config, program, {"a": a, "b": b}, order)
        got = program.read_output(machine.memory, "c")
        assert got.dtype == expected.dtype
        assert np.array_equal(got, expected), f"{m}x{k}x{n} on {config}: {program.plans[0]}"
    return program


# --- layers -----------------------------------------------------------------------------------

def direct_conv(x, w, stride, pad, zx):
    """Convolution by the definition, with the zero point subtracted (padding adds nothing)."""
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, oh, ow, cout), np.int64)
    for b in range(n):
        for y in range(oh):
            for xx in range(ow):
                for ky in range(kh):
                    for kx in range(kw):
                        iy, ix = y * stride + ky - pad, xx * stride + kx - pad
                        if 0 <= iy < h and 0 <= ix < wd:
                            out[b, y, xx] += (x[b, iy, ix].astype(np.int64) - zx) @ w[ky, kx]
    return out


@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 1), (1, 2), (3, 1)])
def test_im2col_matches_a_direct_convolution(stride, pad, seed):
    rng = np.random.default_rng(seed)
    x = random_int8(rng, (2, 7, 6, 3))
    w = random_int8(rng, (3, 2, 3, 4))
    zx = int(rng.integers(-128, 128))
    layer = Conv2d(w, None, 1 << 30, 0, stride=stride, padding=pad, input_zero_point=zx)
    cols = layer.im2col(x)
    n, oh, ow, cout = layer.output_shape(x.shape)
    assert cols.shape == (n * oh * ow, 3 * 2 * 3)
    # The GEMM of im2col with the folded bias is the convolution of (x - zx) with w.
    acc = golden.gemm(cols, layer.matrix(), layer.gemm_bias()).reshape(n, oh, ow, cout)
    assert np.array_equal(acc, direct_conv(x, w, stride, pad, zx))
    # Padding positions hold the zero point: the top-left patch of a padded conv.
    if pad:
        assert np.all(cols[0, :3] == zx)


def test_conv2d_reference_is_requantized_direct_convolution(seed):
    rng = np.random.default_rng(seed)
    x = random_int8(rng, (1, 5, 5, 2))
    w = random_int8(rng, (3, 3, 2, 6))
    bias = rng.integers(-1000, 1000, size=6, dtype=np.int32)
    rq = random_requant(rng, 6, relu=True)
    layer = Conv2d(w, bias, rq.multiplier, rq.shift, stride=2, padding=1, input_zero_point=-7,
                   output_zero_point=rq.output_zero_point, act_min=rq.act_min)
    acc = direct_conv(x, w, 2, 1, -7) + bias
    expected = rq.apply(golden.wrap_int32(acc))
    assert layer.reference(x).shape == (1, 3, 3, 6)
    assert np.array_equal(layer.reference(x), expected)


def test_network_reference_chains_and_flattens(seed):
    rng = np.random.default_rng(seed)
    conv = Conv2d(random_int8(rng, (2, 2, 1, 3)), None, 1 << 29, -3, stride=2)
    dense = Dense(random_int8(rng, (2 * 2 * 3, 5)), None, 1 << 30, -4)
    net = Network([conv, dense])
    x = random_int8(rng, (3, 4, 4, 1))
    expected = dense.reference(conv.reference(x).reshape(3, -1))
    assert np.array_equal(net.reference(x), expected)
    assert net.shapes(x.shape) == [(3, 4, 4, 1), (3, 12), (3, 5)]


@pytest.mark.parametrize("make,message", [
    (lambda: Dense(np.zeros((3, 2), np.int16), None, 1, 0), "Dense.weights must be a 2-D int8"),
    (lambda: Dense(np.zeros((3, 2), np.int8), np.zeros(3, np.int32), 1, 0),
     "Dense.bias must be None or an int32 numpy array of shape (2,)"),
    (lambda: Dense(np.zeros((3, 2), np.int8), None, -1, 0), "Dense.multiplier must be in"),
    (lambda: Dense(np.zeros((3, 2), np.int8), None, 1, 31), "Dense.shift must be in [-31, 30], not 31"),
    (lambda: Dense(np.zeros((3, 2), np.int8), None, np.array([1, 2, 3]), 0),
     "Dense.multiplier must have 2 per-channel values"),
    (lambda: Dense(np.zeros((3, 2), np.int8), None, 1, 0, act_min=5, act_max=4),
     "Dense.act_min must be <= act_max (4), not 5"),
    (lambda: Dense(np.zeros((3, 2), np.int8), None, 1, 0, output_zero_point=200),
     "Dense.output_zero_point must be in [-128, 127], not 200"),
    (lambda: Conv2d(np.zeros((3, 3, 2), np.int8), None, 1, 0), "Conv2d.weights must be a 4-D int8"),
    (lambda: Conv2d(np.zeros((3, 3, 2, 2), np.int8), None, 1, 0, stride=0),
     "Conv2d.stride must be in"),
    (lambda: Conv2d(np.zeros((3, 3, 2, 2), np.int8), None, 1, 0, input_zero_point=128),
     "Conv2d.input_zero_point must be in [-128, 127], not 128"),
    (lambda: Network([]), "Network.layers must be a non-empty list"),
    (lambda: Network([Dense(np.zeros((3, 2), np.int8), None, 1, 0),
                      Dense(np.zeros((3, 2), np.int8), None, 1, 0)]),
     "Network.layers[1] takes 3 features but layers[0] gives 2"),
    (lambda: Network([Dense(np.zeros((3, 2), np.int8), None, 1, 0),
                      Conv2d(np.zeros((1, 1, 2, 2), np.int8), None, 1, 0)]),
     "Network.layers[1] is a Conv2d after a Dense"),
])
def test_layer_validation_names_field_and_value(make, message):
    with pytest.raises((TypeError, ValueError)) as info:
        make()
    assert message in str(info.value)


def test_layer_inputs_are_checked():
    dense = Dense(np.zeros((3, 2), np.int8), None, 1, 0)
    with pytest.raises(TypeError, match="x must be a 2-D int8"):
        dense.reference(np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match=r"x must have shape \(M >= 1, 3\), not \(2, 4\)"):
        dense.reference(np.zeros((2, 4), np.int8))
    conv = Conv2d(np.zeros((3, 3, 2, 2), np.int8), None, 1, 0)
    with pytest.raises(ValueError, match=r"smaller than the 3x3 kernel"):
        conv.im2col(np.zeros((1, 2, 5, 2), np.int8))
    with pytest.raises(ValueError, match=r"\(N >= 1, H, W, 2\)"):
        conv.im2col(np.zeros((1, 5, 5, 3), np.int8))


# --- the checker itself -----------------------------------------------------------------------

def _without_token(program, push_index, pop_index, src, dst):
    words = list(program.instructions)
    for index, field, engine in ((push_index, "push", dst), (pop_index, "pop", src)):
        x = decode_instruction(words[index])
        tokens = x.engines(field) - {engine}
        other = x.engines("pop" if field == "push" else "push")
        kw = {"pop": tokens, "push": other} if field == "pop" else {"pop": other, "push": tokens}
        words[index] = encode(x.opcode, **kw, **x.fields)
    return Program(program.config, words, program.image, program.program_addr, program.tensors,
                   program.inputs, program.outputs, program.plans)


def test_checker_catches_every_missing_token(seed):
    """Removing any one token pair of a compiled program leaves a hazard the checker reports (the
    compiler places no redundant tokens), and a random schedule can then go wrong."""
    config = CONFIGS["4x4"]
    rng = np.random.default_rng(seed)
    program = compile_gemm(config, 9, 10, 9, bias=rng.integers(-9, 9, 9, dtype=np.int32),
                           requant=random_requant(rng, 9))
    check_synchronization(config, program)
    ins = [decode_instruction(w) for w in program.instructions]
    pairs = []
    for src in Engine:
        for dst in Engine:
            if src != dst:
                push = [i for i, x in enumerate(ins) if dst in x.engines("push")
                        and ENGINE_OF.get(x.opcode) == src]
                pop = [i for i, x in enumerate(ins) if src in x.engines("pop")
                       and ENGINE_OF.get(x.opcode) == dst]
                pairs += [(p, q, src, dst) for p, q in zip(push, pop)]
    assert len(pairs) >= 10
    for p, q, src, dst in pairs:
        with pytest.raises(Hazard):
            check_synchronization(config, _without_token(program, p, q, src, dst))


def test_checker_catches_unpaired_and_backward_tokens():
    config = CONFIGS["4x4"]
    program = compile_gemm(config, 4, 4, 4)
    words = list(program.instructions)
    x = decode_instruction(words[0])
    words[0] = encode(x.opcode, push={Engine.STORE}, **x.fields)   # a push nobody pops
    broken = Program(config, words, program.image, 0, program.tensors, program.inputs,
                     program.outputs)
    with pytest.raises(Hazard, match="pushes but"):
        check_synchronization(config, broken)


# --- GEMM -------------------------------------------------------------------------------------

EDGE_SHAPES = [(1, 1, 1), (1, 9, 1), (1, 1, 7), (6, 1, 1), (2, 3, 17), (13, 17, 5)]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gemm_random_shapes_bit_exact(name, seed):
    """Edge shapes (M, K or N = 1, tails in K and N) and random ones; raw int32 and
    requantized outputs, with and without bias."""
    config = CONFIGS[name]
    rng = np.random.default_rng(seed)
    shapes = list(EDGE_SHAPES)
    # A 1x1 array needs M*K*N MATMULs: keep its shapes small.
    top = 40 if config.rows * config.cols > 1 else 10
    shapes += [tuple(int(v) for v in rng.integers(1, top, size=3)) for _ in range(3)]
    for i, (m, k, n) in enumerate(shapes):
        gemm_case(config, m, k, n, rng, seed + i, requant=i % 2 == 1, bias=i % 3 == 1)


def test_k_much_larger_than_rows(seed):
    rng = np.random.default_rng(seed)
    for name, m, k, n in (("4x4", 5, 700, 6), ("3x5", 5, 301, 6), ("1x1-tiny", 2, 60, 2)):
        program = gemm_case(CONFIGS[name], m, k, n, rng, seed, requant=True, bias=True)
        assert program.plans[0].k == k


@pytest.mark.parametrize("name,shape,expected", [
    ("8x8", (300, 64, 24), dict(strategy="panel", weights_resident=True, panel_buffers=2)),
    ("8x8", (5, 20, 12), dict(strategy="panel", weights_resident=True, panel_buffers=1)),
    (AcceleratorConfig(4, 4, 64, 64, 32), (24, 16, 40),
     dict(strategy="panel", weights_resident=False)),
    (AcceleratorConfig(4, 4, 48, 64, 32), (40, 16, 8), dict(strategy="panel", panel_buffers=1,
                                                            mt=4)),
    ("4x4-small", (9, 40, 9), dict(strategy="k-chunked", chunk_buffers=2)),
    ("1x1-tiny", (3, 5, 2), dict(strategy="k-chunked", chunk_buffers=1, k_chunk=1, mt=1)),
])
def test_every_tiling_path_is_taken_and_correct(name, shape, expected, seed):
    config = CONFIGS[name] if isinstance(name, str) else name
    plan = plan_gemm(config, *shape, bias=True, requant=True)
    for key, value in expected.items():
        assert getattr(plan, key) == value, plan
    program = gemm_case(config, *shape, np.random.default_rng(seed), seed, requant=True,
                        bias=True)
    assert program.plans[0] == plan


def test_large_gemm_no_deadlock_and_high_estimated_utilization(seed):
    """More k-blocks per tile than the queue depth, many tiles: no deadlock, no token overflow."""
    config = CONFIGS["8x8"]
    rng = np.random.default_rng(seed)
    program = gemm_case(config, 256, 256, 64, rng, seed, requant=True, bias=True)
    plan = program.plans[0]
    assert plan.mt >= config.rows
    assert plan.utilization >= 0.9, plan


def test_plans_fit_the_buffers(seed):
    rng = np.random.default_rng(seed)
    for config in CONFIGS.values():
        for _ in range(20):
            m, k, n = (int(v) for v in rng.integers(1, 300, size=3))
            plan = plan_gemm(config, m, k, n)
            R, C = config.rows, config.cols
            kb, nb = -(-k // R), -(-n // C)
            assert 1 <= plan.mt <= m
            assert 2 * plan.mt + 4 <= config.accumulator_depth
            if plan.strategy == "panel":
                weights = (nb if plan.weights_resident else 2) * kb * R
                assert weights + plan.panel_buffers * plan.mt * kb <= config.scratchpad_depth
            else:
                assert plan.chunk_buffers * (plan.k_chunk * (R + plan.mt)) \
                    <= config.scratchpad_depth


def test_larger_tiles_when_the_array_would_starve():
    """With M >> R the tile has at least R rows (MATMULs of fewer rows leave the array idle)."""
    plan = plan_gemm(CONFIGS["8x8"], 1000, 256, 64)
    assert plan.mt >= 8 and plan.strategy == "panel"
    assert plan.utilization > 0.9


@pytest.mark.parametrize("config,message", [
    (AcceleratorConfig(4, 4, 64, 5, 32), "accumulator_depth must be >= 6"),
    (AcceleratorConfig(4, 4, 4, 64, 32), "scratchpad_depth must be >= 5 rows"),
])
def test_configurations_too_small_are_refused(config, message):
    with pytest.raises(CompileError, match=message):
        compile_gemm(config, 4, 4, 4, requant=Requant(4, 1, 0))


def test_raw_gemm_needs_no_parameter_rows(seed):
    config = AcceleratorConfig(2, 2, 16, 2, 32)
    program = gemm_case(config, 3, 5, 3, np.random.default_rng(seed), seed)
    assert program.plans[0].mt == 1


@pytest.mark.parametrize("args,message", [
    ((0, 4, 4), "m must be a positive integer, not 0"),
    ((4, -1, 4), "k must be a positive integer, not -1"),
    ((4, 4, 2.0), "n must be a positive integer, not 2.0"),
])
def test_gemm_dimensions_are_checked(args, message):
    with pytest.raises(CompileError, match=message):
        compile_gemm(CONFIGS["8x8"], *args)


def test_compile_gemm_checks_requant_and_bias():
    with pytest.raises(CompileError, match="requant must be None or a Requant for 4 channels"):
        compile_gemm(CONFIGS["8x8"], 2, 2, 4, requant=Requant(3, 1, 0))
    with pytest.raises(CompileError, match=r"bias must be None or an int32 array of shape \(4,\)"):
        compile_gemm(CONFIGS["8x8"], 2, 2, 4, bias=np.zeros(4, np.int64))


# --- program format and memory layout ---------------------------------------------------------

def test_instructions_equal_isa_encode(seed):
    """The compiler's fast encoder gives exactly rtl/isa.py's encode for every instruction."""
    rng = np.random.default_rng(seed)
    program = compile_gemm(CONFIGS["3x5"], 7, 11, 12, bias=np.arange(12, dtype=np.int32),
                           requant=random_requant(rng, 12))
    opcodes = set()
    for word in program.instructions:
        x = decode_instruction(word)
        opcodes.add(x.opcode)
        assert encode(x.opcode, pop=x.engines("pop"), push=x.engines("push"), **x.fields) == word
    assert opcodes == {Opcode.LOAD, Opcode.MATMUL, Opcode.CONFIG, Opcode.STORE, Opcode.HALT}


def test_memory_image_layout(seed):
    config = CONFIGS["3x5"]
    rng = np.random.default_rng(seed)
    w = random_int8(rng, (7, 11))
    bias = rng.integers(-99, 99, 11, dtype=np.int32)
    rq = random_requant(rng, 11)
    layer = Dense(w, bias, rq.multiplier, rq.shift, rq.output_zero_point)
    program = compile_dense(config, layer, 4)
    assert program.program_addr == 0
    assert program.program_bytes() == bytes(program.image[:16 * program.length])
    placed = sorted(program.tensors.values(), key=lambda t: t.address)
    assert placed[0].address >= 16 * program.length
    for a, b in zip(placed, placed[1:]):
        assert a.address % ALIGN == 0 and a.end <= b.address
    assert placed[-1].end <= len(program.image)
    # Weights as [ceil(N/C)][K_pad][C]: strip s, row k, lane c holds w[k, s*C + c].
    t = program.tensors["weights"]
    strips = np.frombuffer(program.image, np.int8, t.nbytes, t.address).reshape(3, 9, 5)
    for s in range(3):
        block = np.zeros((9, 5), np.int8)
        part = w[:, 5 * s:5 * s + 5]
        block[:7, :part.shape[1]] = part
        assert np.array_equal(strips[s], block)
    t = program.tensors["bias"]
    assert np.array_equal(np.frombuffer(program.image, "<i4", 15, t.address)[:11], bias)
    assert not np.frombuffer(program.image, "<i4", 15, t.address)[11:].any()
    t = program.tensors["params"]
    params = np.frombuffer(program.image, "<i4", 30, t.address).reshape(3, 2, 5)
    assert np.array_equal(params[:, 0].ravel()[:11], layer.requant.multipliers())
    assert np.array_equal(params[:, 1].ravel()[:11], layer.requant.shifts())
    assert np.array_equal(program.read_output(program.image, "weights"), w)
    assert np.array_equal(program.read_output(program.image, "bias"), bias)


def test_write_input_checks_name_dtype_and_shape():
    program = compile_gemm(CONFIGS["4x4"], 3, 4, 5)
    image = bytearray(program.image)
    with pytest.raises(ValueError, match=r"input name must be one of \['a', 'b'\], not 'c'"):
        program.write_input(image, "c", np.zeros((3, 5), np.int32))
    with pytest.raises(TypeError, match="input 'a' must have dtype int8, not int16"):
        program.write_input(image, "a", np.zeros((3, 4), np.int16))
    with pytest.raises(ValueError, match=r"input 'b' must have shape \(4, 5\), not \(5, 4\)"):
        program.write_input(image, "b", np.zeros((5, 4), np.int8))


def test_listing_disassembles_the_program():
    program = compile_gemm(CONFIGS["4x4"], 4, 6, 3)
    lines = program.listing().splitlines()
    assert len(lines) == program.length
    assert lines[-1].split() == ["%d" % (program.length - 1), "HALT"]
    text = program.listing()
    assert "LOAD    spad[" in text and "<- a (" in text and "MATMUL  acc[0:4] = spad[" in text
    assert "STORE   c <- acc[0:4] (4 x 12 B, stride 12, int32)" in text


# --- layers through the compiler --------------------------------------------------------------

@pytest.mark.parametrize("activation", ["none", "relu", "relu6"])
def test_dense_per_channel_requant_and_activations(activation, seed):
    config = CONFIGS["4x4"]
    rng = np.random.default_rng(seed)
    k, n, batch = 37, 11, 9
    multipliers, shifts = golden.quantize_multipliers(rng.uniform(1e-3, 4e-3, size=n))
    zp = -10
    bounds = {"none": (-128, 127), "relu": (zp, 127),
              "relu6": (zp, min(127, zp + round(6 / 0.05)))}[activation]
    layer = Dense(random_int8(rng, (k, n)), rng.integers(-3000, 3000, n, dtype=np.int32),
                  multipliers, shifts, zp, *bounds)
    x = random_int8(rng, (batch, k))
    program = compile_dense(config, layer, batch)
    _, machine = run_program(config, program, {"x": x}, seed)
    y = program.read_output(machine.memory, "y")
    expected = layer.reference(x)
    assert np.array_equal(y, expected)
    assert y.min() >= bounds[0] and y.max() <= bounds[1]
    if activation != "none":
        assert (expected == bounds[0]).any()       # the clamp did something


def test_conv2d_stride2_padding1(seed):
    config = CONFIGS["5x3"]
    rng = np.random.default_rng(seed)
    rq = random_requant(rng, 7, relu=True)
    layer = Conv2d(random_int8(rng, (3, 3, 4, 7)), rng.integers(-900, 900, 7, dtype=np.int32),
                   rq.multiplier, rq.shift, stride=2, padding=1, input_zero_point=3,
                   output_zero_point=rq.output_zero_point, act_min=rq.act_min)
    x = random_int8(rng, (2, 9, 8, 4))
    program = compile_conv2d(config, layer, x.shape)
    assert program.tensors["x"].shape == (2 * 5 * 4, 36)
    _, machine = run_program(config, program, {"x": layer.im2col(x)}, seed)
    y = program.read_output(machine.memory, "y")
    assert y.shape == (2, 5, 4, 7)
    assert np.array_equal(y, layer.reference(x))


def three_layer_network(rng, second_kernel):
    def rq(n, relu=True):
        return random_requant(rng, n, relu)
    r1, r2, r3 = rq(6), rq(5), rq(10, relu=False)
    return Network([
        Conv2d(random_int8(rng, (3, 3, 2, 6)), rng.integers(-500, 500, 6, dtype=np.int32),
               r1.multiplier, r1.shift, stride=2, padding=1, input_zero_point=-4,
               output_zero_point=r1.output_zero_point, act_min=r1.act_min),
        Conv2d(random_int8(rng, (second_kernel, second_kernel, 6, 5)), None,
               r2.multiplier, r2.shift, padding=second_kernel // 2,
               input_zero_point=r1.output_zero_point, output_zero_point=r2.output_zero_point,
               act_min=r2.act_min),
        Dense(random_int8(rng, (4 * 4 * 5, 10)), rng.integers(-500, 500, 10, dtype=np.int32),
              r3.multiplier, r3.shift, r3.output_zero_point),
    ])


@pytest.mark.parametrize("second_kernel,stages", [(1, 1), (3, 2)])
def test_three_layer_network(second_kernel, stages, seed):
    """conv 3x3/2 -> conv (1x1: same program; 3x3: a second program after a host im2col) ->
    dense, each program checked and run; the output equals Network.reference."""
    config = CONFIGS["8x8"]
    rng = np.random.default_rng(seed)
    net = three_layer_network(rng, second_kernel)
    x = random_int8(rng, (2, 8, 8, 2))
    compiled = compile_network(config, net, x.shape)
    assert len(compiled.stages) == stages
    assert compiled.output_shape == (2, 10)
    value = x
    for stage in compiled.stages:
        value = value.reshape(stage.input_shape)
        if stage.host_im2col is not None:
            value = stage.host_im2col.im2col(value)
        program = stage.program
        fences = sum(decode_instruction(w).opcode == Opcode.FENCE for w in program.instructions)
        assert fences == len(program.plans) - 1
        _, machine = run_program(config, program, {"x": value}, seed)
        value = program.read_output(machine.memory, "y")
    assert np.array_equal(value, net.reference(x))


def test_dense_network_in_one_program(seed):
    config = CONFIGS["3x5"]
    rng = np.random.default_rng(seed)
    sizes = [20, 13, 9, 4]
    layers = []
    for k, n in zip(sizes, sizes[1:]):
        r = random_requant(rng, n, relu=True)
        layers.append(Dense(random_int8(rng, (k, n)), None, r.multiplier, r.shift,
                            r.output_zero_point, r.act_min))
    net = Network(layers)
    compiled = compile_network(config, net, 6)
    assert len(compiled.stages) == 1 and compiled.input_shape == (6, 20)
    x = random_int8(rng, (6, 20))
    program = compiled.stages[0].program
    _, machine = run_program(config, program, {"x": x}, seed)
    assert np.array_equal(program.read_output(machine.memory, "y"), net.reference(x))
    with pytest.raises(CompileError, match="full NHWC input shape"):
        compile_network(config, three_layer_network(rng, 1), 2)
