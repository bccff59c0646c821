"""Tests of the instruction-level simulator ``tessera.sim.isa_sim``.

Programs are assembled with ``tessera.rtl.isa.encode`` into a memory image built by :class:`Image`
(data at odd addresses, the program after it) and run on a :class:`Machine`. Expected buffers and
memory are computed here independently: byte layouts with Python ints, products with int64 numpy,
and requantization / dense layers with the golden model's public functions. Random data use the
session seed (``seed`` fixture, printed; replay with ``--seed``). Whole file: about two seconds.
"""

import random

import numpy as np
import pytest

from tessera.rtl.isa import QUEUE_DEPTH, TOKEN_LIMIT, Engine, Opcode, ProgramError, assemble
from tessera.rtl.isa import decode, encode, IsaError
from tessera.sim import golden
from tessera.sim.config import AcceleratorConfig
from tessera.sim.isa_sim import Machine, ProgramFault, RequantParams, RunResult
from tessera.sim.isa_sim import decode_instruction, requantize_lanes
from tessera.tb.program_gen import Image

LOAD, EXEC, STORE = Engine.LOAD, Engine.EXEC, Engine.STORE
I32_MIN, I32_MAX = golden.INT32_MIN, golden.INT32_MAX

#: Small configurations: R < C, R > C, 1x1, square.
CONFIGS = [AcceleratorConfig(rows=3, cols=5, scratchpad_depth=256, accumulator_depth=128),
           AcceleratorConfig(rows=5, cols=3, scratchpad_depth=256, accumulator_depth=128),
           AcceleratorConfig(rows=1, cols=1, scratchpad_depth=256, accumulator_depth=128),
           AcceleratorConfig(rows=4, cols=4, scratchpad_depth=256, accumulator_depth=128)]
CONFIG_IDS = [f"{c.rows}x{c.cols}" for c in CONFIGS]


def load(**f):
    return encode(Opcode.LOAD, **f)


def matmul(**f):
    return encode(Opcode.MATMUL, **f)


def store(**f):
    return encode(Opcode.STORE, **f)


def config(**f):
    return encode(Opcode.CONFIG, **f)


def fence(**f):
    return encode(Opcode.FENCE, **f)


def halt(**f):
    return encode(Opcode.HALT, **f)


def lanes_le_i32(values):
    """Little-endian int32 bytes of ``values``, written with Python ints."""
    return b"".join(int(v).to_bytes(4, "little", signed=True) for v in np.ravel(values))


def i32_from_bytes(raw, lanes):
    """``raw`` zero-padded to ``4*lanes`` bytes as ``lanes`` little-endian int32 (Python ints)."""
    raw = bytes(raw) + bytes(4 * lanes - len(raw))
    return [int.from_bytes(raw[4 * i:4 * i + 4], "little", signed=True) for i in range(lanes)]


def wrap(x):
    """Two's-complement wrap of int64 values, written here (not golden's)."""
    return ((np.asarray(x, np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


# --- decoding ------------------------------------------------------------------------------------

def test_decoder_equals_isa_decode(seed):
    """The simulator's decoder gives exactly isa.decode's fields for random words of every opcode,
    and flags illegal opcodes instead of raising."""
    rng = random.Random(seed)
    checked = 0
    for opcode in range(16):
        for _ in range(40):
            word = rng.getrandbits(128) & ~0xF | opcode
            ours = decode_instruction(word)
            try:
                op, fields = decode(word)
            except IsaError:
                assert not ours.legal and ours.opcode == opcode and ours.fields == {}
                continue
            pop, push = fields.pop("pop"), fields.pop("push")
            assert ours.legal and ours.opcode == op
            assert ours.fields == fields
            assert ours.engines("pop") == pop and ours.engines("push") == push
            checked += 1
    assert checked == 6 * 40


def test_decoder_rejects_bad_words():
    with pytest.raises(ValueError, match=r"-1"):
        decode_instruction(-1)
    with pytest.raises(ValueError, match=str(1 << 128)):
        decode_instruction(1 << 128)
    with pytest.raises(TypeError, match="1.5"):
        decode_instruction(1.5)


# --- single instructions -------------------------------------------------------------------------

def test_load_scratchpad_strided_and_zero_filled(seed):
    """LOAD into the scratchpad: strided rows of 3 bytes, the rest of each row zeroed, other rows
    untouched."""
    rng = np.random.default_rng(seed)
    cfg = CONFIGS[0]                                  # lanes 5
    img = Image()
    raw = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    base = img.put(raw)
    m, address = img.machine(cfg, [load(buffer=0, row_bytes=3, sram_row=2, rows=4,
                                        dram_addr=base + 1, dram_stride=7), halt()])
    m.scratchpad[:] = -1
    result = m.run(address, 2).check()
    expected = np.full((cfg.scratchpad_depth, 5), -1, np.int8)
    for r in range(4):
        row = raw[1 + 7 * r:1 + 7 * r + 3]
        expected[2 + r] = [int.from_bytes(row[i:i + 1], "little", signed=True)
                           for i in range(3)] + [0, 0]
    np.testing.assert_array_equal(m.scratchpad, expected)
    assert result.instructions == 2 and result.counts[Opcode.LOAD] == 1 and result.macs == 0


@pytest.mark.parametrize("row_bytes", [20, 6, 1])
def test_load_accumulator_pads_partial_lanes(row_bytes, seed):
    """LOAD into the accumulator: bytes zero-padded to 4*lanes, read as little-endian int32 (a row
    of 6 bytes fills lane 0 and the low half of lane 1)."""
    rng = np.random.default_rng(seed)
    cfg = CONFIGS[0]                                  # lanes 5: 20 bytes a row
    img = Image()
    raw = rng.integers(0, 256, 3 * 21, dtype=np.uint8).tobytes()
    base = img.put(raw)
    m, address = img.machine(cfg, [load(buffer=1, row_bytes=row_bytes, sram_row=5, rows=3,
                                        dram_addr=base, dram_stride=21), halt()])
    m.accumulator[:] = 12345
    m.run(address, 2).check()
    expected = np.full((cfg.accumulator_depth, 5), 12345, np.int64)
    for r in range(3):
        expected[5 + r] = i32_from_bytes(raw[21 * r:21 * r + row_bytes], 5)
    np.testing.assert_array_equal(m.accumulator, expected)


def test_load_stride_zero_and_address_wraparound(seed):
    """dram_stride 0 repeats a row; row addresses are taken mod 2**32 (a stride of 2**32 - 8
    steps backwards)."""
    rng = np.random.default_rng(seed)
    cfg = CONFIGS[3]
    img = Image(pad=0)
    raw = rng.integers(-128, 128, 48, dtype=np.int8)
    img.put(raw.tobytes())
    m, result = img.run(cfg, [load(buffer=0, row_bytes=4, sram_row=0, rows=3, dram_addr=40,
                                   dram_stride=0),
                              load(buffer=0, row_bytes=4, sram_row=3, rows=3, dram_addr=40,
                                   dram_stride=2**32 - 8),
                              halt()])
    result.check()
    np.testing.assert_array_equal(m.scratchpad[0:3], [raw[40:44]] * 3)
    np.testing.assert_array_equal(m.scratchpad[3:6], [raw[40:44], raw[32:36], raw[24:28]])


def matmul_setup(cfg, rng, rows):
    """Memory with full-lane random W (R rows), A (rows rows) and an accumulator image whose
    first lane is near the int32 limits; returns ``(image, words, w, a, init)``."""
    lanes = cfg.lanes
    img = Image()
    w = rng.integers(-128, 128, (cfg.rows, lanes), dtype=np.int8)      # lanes >= C are garbage
    a = rng.integers(-128, 128, (rows, lanes), dtype=np.int8)          # lanes >= R are garbage
    init = rng.integers(I32_MIN, I32_MAX, (rows, lanes), dtype=np.int64, endpoint=True)
    init[:, 0] = [I32_MAX, I32_MIN] * (rows // 2) + [I32_MAX] * (rows % 2)
    w_addr, a_addr, i_addr = img.put(w.tobytes()), img.put(a.tobytes()), img.put(lanes_le_i32(init))
    words = [load(buffer=0, row_bytes=lanes, sram_row=0, rows=cfg.rows, dram_addr=w_addr,
                  dram_stride=lanes),
             load(buffer=0, row_bytes=lanes, sram_row=cfg.rows, rows=rows, dram_addr=a_addr,
                  dram_stride=lanes),
             load(buffer=1, row_bytes=4 * lanes, sram_row=0, rows=rows, dram_addr=i_addr,
                  dram_stride=4 * lanes),
             load(buffer=1, row_bytes=4 * lanes, sram_row=rows, rows=rows, dram_addr=i_addr,
                  dram_stride=4 * lanes, push=[EXEC])]
    return img, words, w, a, init


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_matmul_overwrite_and_accumulate(cfg, seed):
    """MATMUL uses W = spad[wgt:wgt+R, 0:C] and A = spad[act:act+rows, 0:R] only; overwrite sets
    lanes >= C to 0, accumulate wraps in int32 and leaves lanes >= C alone."""
    rng = np.random.default_rng(seed)
    R, C, rows = cfg.rows, cfg.cols, 7
    img, words, w, a, init = matmul_setup(cfg, rng, rows)
    words += [matmul(wgt_row=0, act_row=R, acc_row=0, rows=rows, accumulate=0, pop=[LOAD]),
              matmul(wgt_row=0, act_row=R, acc_row=rows, rows=rows, accumulate=1),
              halt()]
    m, result = img.run(cfg, words)
    result.check()
    product = a[:, :R].astype(np.int64) @ w[:, :C].astype(np.int64)
    np.testing.assert_array_equal(m.accumulator[:rows, :C], product)
    assert not m.accumulator[:rows, C:].any()
    np.testing.assert_array_equal(m.accumulator[rows:2 * rows, :C], wrap(init[:, :C] + product))
    np.testing.assert_array_equal(m.accumulator[rows:2 * rows, C:], init[:, C:])
    assert result.macs == 2 * rows * R * C
    assert result.counts[Opcode.MATMUL] == 2 and result.instructions == 7


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_store_raw_int32_partial_rows(cfg, seed):
    """Raw STORE: the first row_bytes bytes of each row's little-endian int32 lanes go to
    dram_addr + r*dram_stride; bytes between the rows keep their value."""
    rng = np.random.default_rng(seed)
    lanes = cfg.lanes
    acc = rng.integers(I32_MIN, I32_MAX, (4, lanes), dtype=np.int64, endpoint=True)
    img = Image()
    acc_addr = img.put(lanes_le_i32(acc))
    row_bytes, stride = 4 * lanes - 1, 4 * lanes + 3
    out = img.reserve(4 * stride)
    words = [load(buffer=1, row_bytes=4 * lanes, sram_row=10, rows=4, dram_addr=acc_addr,
                  dram_stride=4 * lanes, push=[STORE]),
             store(requant=0, row_bytes=row_bytes, acc_row=11, rows=3, dram_addr=out,
                   dram_stride=stride, pop=[LOAD]),
             halt()]
    m, result = img.run(cfg, words)
    result.check()
    expected = bytearray(b"\xEE" * (4 * stride))
    for r in range(3):
        expected[r * stride:r * stride + row_bytes] = lanes_le_i32(acc[1 + r])[:row_bytes]
    assert m.memory[out:out + 4 * stride] == expected
    assert m.memory[:out] == img.data[:out]


def test_store_overlapping_rows_are_written_in_order(seed):
    """Rows that overlap in memory (stride 2 < row_bytes 8, and stride 0): later rows win."""
    rng = np.random.default_rng(seed)
    cfg = CONFIGS[3]
    acc = rng.integers(I32_MIN, I32_MAX, (3, 4), dtype=np.int64, endpoint=True)
    img = Image()
    acc_addr = img.put(lanes_le_i32(acc))
    out = img.reserve(32)
    words = [load(buffer=1, row_bytes=16, sram_row=0, rows=3, dram_addr=acc_addr,
                  dram_stride=16, push=[STORE]),
             store(row_bytes=8, acc_row=0, rows=3, dram_addr=out, dram_stride=2, pop=[LOAD]),
             store(row_bytes=5, acc_row=0, rows=3, dram_addr=out + 20, dram_stride=0),
             halt()]
    m, result = img.run(cfg, words)
    result.check()
    expected = bytearray(b"\xEE" * 32)
    for r in range(3):
        expected[2 * r:2 * r + 8] = lanes_le_i32(acc[r])[:8]
    expected[20:25] = lanes_le_i32(acc[2])[:5]
    assert m.memory[out:out + 32] == expected


def requant_program(img, cfg, acc, multiplier, shift, zero_point, act_min, act_max):
    """Words that load ``acc`` and per-lane params, CONFIG and STORE requantized; and the output
    address."""
    lanes = cfg.lanes
    rows = len(acc)
    acc_addr = img.put(lanes_le_i32(acc))
    params = img.put(lanes_le_i32(multiplier) + lanes_le_i32(shift))
    out = img.reserve(rows * lanes)
    words = [load(buffer=1, row_bytes=4 * lanes, sram_row=0, rows=rows, dram_addr=acc_addr,
                  dram_stride=4 * lanes),
             load(buffer=1, row_bytes=4 * lanes, sram_row=rows, rows=2, dram_addr=params,
                  dram_stride=4 * lanes, push=[STORE]),
             config(params_row=rows, zero_point=zero_point, act_min=act_min, act_max=act_max,
                    pop=[LOAD]),
             store(requant=1, row_bytes=lanes, acc_row=0, rows=rows, dram_addr=out,
                   dram_stride=lanes),
             halt()]
    return words, out


def test_store_requant_equals_golden_requantize(seed):
    """CONFIG + requantizing STORE equal golden.requantize (per-channel, random zero point and
    clamp) over 30 random cases, with full-range and moderate accumulators."""
    rng = np.random.default_rng(seed)
    cfg = CONFIGS[0]
    lanes = cfg.lanes
    for case in range(30):
        acc = rng.integers(I32_MIN, I32_MAX, (6, lanes), dtype=np.int64, endpoint=True)
        acc[3:] >>= rng.integers(8, 31)
        multiplier = rng.integers(0, I32_MAX, lanes, endpoint=True)
        shift = rng.integers(-31, 30, lanes, endpoint=True)
        zero_point = int(rng.integers(-128, 128))
        act_min, act_max = sorted(int(v) for v in rng.integers(-128, 128, 2))
        img = Image()
        words, out = requant_program(img, cfg, acc, multiplier, shift, zero_point, act_min,
                                     act_max)
        m, result = img.run(cfg, words)
        result.check()
        got = np.frombuffer(m.memory, np.int8, len(acc) * lanes, out).reshape(len(acc), lanes)
        expected = golden.requantize(acc.astype(np.int32), multiplier, shift, zero_point,
                                     act_min, act_max)
        np.testing.assert_array_equal(got, expected, err_msg=f"case {case}")
        # The helper on its own, too.
        params = RequantParams(multiplier.astype(np.int32), shift.astype(np.int32), zero_point,
                               act_min, act_max)
        np.testing.assert_array_equal(requantize_lanes(acc.astype(np.int32), params), expected)


def test_requant_negative_multiplier_and_shift_clamp():
    """Hand-computed lanes: negative multipliers (SRDHM rounds half up), INT32_MIN * INT32_MIN
    saturates, and CONFIG clamps shifts to [-31, 30].

    lane 0: SRDHM(100, -2**30)  = floor(-50 + 1/2)   = -50
    lane 1: SRDHM(101, -2**30)  = floor(-50.5 + 1/2) = -50
    lane 2: SRDHM(-101, -2**30) = floor(50.5 + 1/2)  = 51
    lane 3: SRDHM(-2**31, -2**31) saturates to INT32_MAX -> clamp 127
    lane 4: shift 31 -> 30: SRDHM(1 << 30, 2**30) = 2**29 -> 127 (unclamped, 1 << 31 would wrap
            to -2**31 and give -128)
    row 1, lanes 0/1: shift -1000 -> -31 on INT32_MAX * INT32_MAX: RDBPOT(2**31 - 2, 31) = 1;
            shift 1000 -> 30 on 1, multiplier 2**30: 127
    """
    cfg = CONFIGS[0]                                  # lanes 5
    acc = np.array([[100, 101, -101, I32_MIN, 1], [I32_MAX, 1, 0, 0, 0]], np.int64)
    multiplier = [[-2**30, -2**30, -2**30, I32_MIN, 2**30], [I32_MAX, 2**30, 0, 0, 0]]
    shift = [[0, 0, 0, 0, 31], [-1000, 1000, 0, 0, 0]]
    expected = [[-50, -50, 51, 127, 127], [1, 127, 0, 0, 0]]
    for row in range(2):
        img = Image()
        words, out = requant_program(img, cfg, acc[row:row + 1], multiplier[row], shift[row], 0,
                                     -128, 127)
        m, result = img.run(cfg, words)
        result.check()
        assert list(np.frombuffer(m.memory, np.int8, 5, out)) == expected[row]
    assert list(m.requant.shift) == [-31, 30, 0, 0, 0]


def test_config_latch_defaults_and_persists_between_runs():
    """Before any CONFIG a requantizing STORE gives clamp(0 + 0) = 0; a CONFIG's zero point and
    clamp stay latched for the next run."""
    cfg = CONFIGS[3]
    img = Image()
    acc_addr = img.put(lanes_le_i32([1000, -1000, 7, 0]))
    out = img.reserve(8)
    first = img.put(assemble([load(buffer=1, row_bytes=16, sram_row=0, rows=1, dram_addr=acc_addr,
                                   dram_stride=0, push=[STORE]),
                              store(requant=1, row_bytes=4, acc_row=0, rows=1, dram_addr=out,
                                    dram_stride=0, pop=[LOAD]),
                              config(params_row=2, zero_point=9, act_min=-3, act_max=5),
                              halt()]), 16)
    second = img.put(assemble([store(requant=1, row_bytes=4, acc_row=0, rows=1, dram_addr=out + 4,
                                     dram_stride=0),
                               halt()]), 16)
    m = Machine(cfg, img.data)
    m.run(first, 4).check()
    assert list(m.memory[out:out + 4]) == [0, 0, 0, 0]
    m.run(second, 2).check()           # multiplier 0 from the zero rows 2 and 3: y = 0, 0 + 9 -> 5
    assert list(m.memory[out + 4:out + 8]) == [5, 5, 5, 5]


# --- whole layers --------------------------------------------------------------------------------

def dense_program(cfg, img, x, w, bias, multiplier=None, shift=None, zero_point=0, act_min=-128,
                  act_max=127):
    """A dense layer tiled for ``cfg``: bias into the accumulator (dram_stride 0), K-tiles summed
    with ``accumulate``, then requantized (``multiplier`` given) or raw int32 STOREs.

    Returns ``(words, out_addr, counts, macs)``.
    """
    R, C = cfg.rows, cfg.cols
    M, K = x.shape
    N = w.shape[1]
    KB, NB = -(-K // R), -(-N // C)
    requant = multiplier is not None
    x_addr, w_addr = img.put(x.tobytes()), img.put(w.tobytes())
    bias_addr = img.put(lanes_le_i32(bias), align=4)
    if requant:
        mult_addr, shift_addr = img.put(lanes_le_i32(multiplier)), img.put(lanes_le_i32(shift))
    out_bytes = 1 if requant else 4
    out = img.reserve(M * N * out_bytes)
    params_base, wgt_base = NB * M, KB * M
    assert params_base + 2 * NB <= cfg.accumulator_depth
    assert wgt_base + KB * NB * R <= cfg.scratchpad_depth

    loads, matmuls, stores = [], [], []
    for nb in range(NB):
        c = min(C, N - nb * C)
        loads.append(load(buffer=1, row_bytes=4 * c, sram_row=nb * M, rows=M,
                          dram_addr=bias_addr + 4 * nb * C, dram_stride=0))
        if requant:
            for i, addr in enumerate((mult_addr, shift_addr)):
                loads.append(load(buffer=1, row_bytes=4 * c, sram_row=params_base + 2 * nb + i,
                                  rows=1, dram_addr=addr + 4 * nb * C, dram_stride=0))
    for kb in range(KB):
        k = min(R, K - kb * R)
        loads.append(load(buffer=0, row_bytes=k, sram_row=kb * M, rows=M,
                          dram_addr=x_addr + kb * R, dram_stride=K))
        for nb in range(NB):
            c = min(C, N - nb * C)
            loads.append(load(buffer=0, row_bytes=c, sram_row=wgt_base + (kb * NB + nb) * R,
                              rows=k, dram_addr=w_addr + kb * R * N + nb * C, dram_stride=N))
            matmuls.append(matmul(wgt_row=wgt_base + (kb * NB + nb) * R, act_row=kb * M,
                                  acc_row=nb * M, rows=M, accumulate=1))
    for nb in range(NB):
        c = min(C, N - nb * C)
        if requant:
            stores.append(config(params_row=params_base + 2 * nb, zero_point=zero_point,
                                 act_min=act_min, act_max=act_max))
        stores.append(store(requant=int(requant), row_bytes=c * out_bytes, acc_row=nb * M, rows=M,
                            dram_addr=out + nb * C * out_bytes, dram_stride=N * out_bytes))
    # One token from the last LOAD to the first MATMUL, one from the last MATMUL to the first STORE.
    loads[-1] = loads[-1] | encode(Opcode.LOAD, push=[EXEC])
    matmuls[0] = matmuls[0] | encode(Opcode.MATMUL, pop=[LOAD])
    matmuls[-1] = matmuls[-1] | encode(Opcode.MATMUL, push=[STORE])
    stores[0] = stores[0] | encode(Opcode.CONFIG if requant else Opcode.STORE, pop=[EXEC])
    words = loads + matmuls + stores + [halt()]
    counts = {Opcode.LOAD: len(loads), Opcode.MATMUL: len(matmuls),
              Opcode.CONFIG: NB if requant else 0, Opcode.STORE: NB, Opcode.FENCE: 0,
              Opcode.HALT: 1}
    return words, out, counts, KB * NB * M * R * C


def random_dense(rng, M, K, N):
    x = rng.integers(-128, 128, (M, K), dtype=np.int8)
    w = rng.integers(-128, 128, (K, N), dtype=np.int8)
    bias = rng.integers(-5000, 5000, N, dtype=np.int32)
    return x, w, bias


@pytest.mark.parametrize("cfg", CONFIGS + [AcceleratorConfig()], ids=CONFIG_IDS + ["default"])
def test_dense_requant_relu_equals_golden_dense(cfg, seed):
    """A dense layer with K and N larger than the array (tails included), bias broadcast by a
    stride-0 LOAD, per-channel requantization and ReLU equals golden.dense bit for bit."""
    rng = np.random.default_rng(seed)
    M, K, N = 7, 2 * cfg.rows + 1, 2 * cfg.cols + 3
    # The layer is drawn again until more than a tenth of its outputs are not clamped, so that
    # the check exercises more than saturation whatever the seed (a single draw left 2.9 % for
    # about one seed in 6,700, e.g. 3827 on 1 x 1).
    for _ in range(100):
        x, w, bias = random_dense(rng, M, K, N)
        multiplier, shift = golden.quantize_multipliers(rng.uniform(0.002, 0.02, N) / np.sqrt(K))
        zero_point = int(rng.integers(-20, 20))
        expected = golden.dense(x, w, bias, multiplier, shift, zero_point, zero_point, 127)
        if ((expected > zero_point) & (expected < 127)).mean() > 0.1:
            break
    else:
        pytest.fail("100 random dense layers in a row clamped 90 % or more of their outputs")
    img = Image()
    words, out, counts, macs = dense_program(cfg, img, x, w, bias, multiplier, shift, zero_point,
                                             act_min=zero_point, act_max=127)
    m, result = img.run(cfg, words)
    result.check()
    got = np.frombuffer(m.memory, np.int8, M * N, out).reshape(M, N)
    np.testing.assert_array_equal(got, expected)
    assert result.counts == counts and result.instructions == sum(counts.values())
    assert result.macs == macs


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_dense_raw_int32_equals_golden_gemm(cfg, seed):
    """The same tiling with raw int32 STOREs gives golden.gemm(x, w, bias)."""
    rng = np.random.default_rng(seed)
    M, K, N = 5, 3 * cfg.rows + 2, 2 * cfg.cols + 1
    x, w, bias = random_dense(rng, M, K, N)
    img = Image()
    words, out, counts, macs = dense_program(cfg, img, x, w, bias)
    m, result = img.run(cfg, words)
    result.check()
    got = np.frombuffer(m.memory, "<i4", M * N, out).reshape(M, N)
    np.testing.assert_array_equal(got, golden.gemm(x, w, bias))
    assert result.counts == counts and result.macs == macs


def test_every_schedule_of_a_synchronized_program_gives_the_same_memory(seed):
    """The dense program under 20 random engine interleavings leaves the memory of the default
    (oldest-first) schedule."""
    rng = np.random.default_rng(seed)
    cfg = CONFIGS[0]
    x, w, bias = random_dense(rng, 4, 8, 12)
    multiplier, shift = golden.quantize_multipliers(np.full(12, 0.003))
    img = Image()
    words, _, _, _ = dense_program(cfg, img, x, w, bias, multiplier, shift)
    m, address = img.machine(cfg, words)
    m.run(address, len(words)).check()
    for trial in range(20):
        other = Machine(cfg, img.data)
        other.run(address, len(words), rng=random.Random(seed + trial)).check()
        assert other.memory == m.memory, f"schedule {seed + trial}"


# --- tokens, fences, queues ----------------------------------------------------------------------

def reuse_program(cfg, rng, sync):
    """Two MATMULs reading the same scratchpad rows, reloaded in between. With ``sync`` the
    second LOAD waits for a token from the first MATMUL (write-after-read); with ``sync ==
    "fence"`` FENCEs order everything instead of tokens."""
    R, C, lanes, M = cfg.rows, cfg.cols, cfg.lanes, 3
    img = Image()
    w = rng.integers(-128, 128, (R, lanes), dtype=np.int8)
    a1, a2 = (rng.integers(-128, 128, (M, lanes), dtype=np.int8) for _ in range(2))
    w_addr, a1_addr, a2_addr = (img.put(v.tobytes()) for v in (w, a1, a2))
    out = img.reserve(2 * M * 4 * lanes)
    tokens = sync is True

    def tok(engines):
        return engines if tokens else []

    def maybe_fence():
        return [fence()] if sync == "fence" else []

    words = [load(buffer=0, row_bytes=lanes, sram_row=0, rows=R, dram_addr=w_addr,
                  dram_stride=lanes),
             load(buffer=0, row_bytes=lanes, sram_row=R, rows=M, dram_addr=a1_addr,
                  dram_stride=lanes, push=tok([EXEC])),
             *maybe_fence(),
             matmul(wgt_row=0, act_row=R, acc_row=0, rows=M, pop=tok([LOAD]),
                    push=tok([LOAD, STORE])),
             *maybe_fence(),
             load(buffer=0, row_bytes=lanes, sram_row=R, rows=M, dram_addr=a2_addr,
                  dram_stride=lanes, pop=tok([EXEC]), push=tok([EXEC])),
             *maybe_fence(),
             matmul(wgt_row=0, act_row=R, acc_row=M, rows=M, pop=tok([LOAD]), push=tok([STORE])),
             *maybe_fence(),
             store(row_bytes=4 * lanes, acc_row=0, rows=M, dram_addr=out,
                   dram_stride=4 * lanes, pop=tok([EXEC])),
             store(row_bytes=4 * lanes, acc_row=M, rows=M, dram_addr=out + 4 * M * lanes,
                   dram_stride=4 * lanes, pop=tok([EXEC])),
             halt()]
    m, address = img.machine(cfg, words)
    product = [a[:, :R].astype(np.int64) @ w[:, :C].astype(np.int64) for a in (a1, a2)]
    expected = np.zeros((2 * M, lanes), np.int64)
    expected[:M, :C], expected[M:, :C] = product
    return img, address, len(words), out, expected


def reuse_outputs(cfg, img, address, length, out, rows, rng):
    m = Machine(cfg, img.data)
    result = m.run(address, length, rng=rng)
    result.check()
    return np.frombuffer(m.memory, "<i4", rows * cfg.lanes, out).reshape(rows, cfg.lanes), result


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[1]], ids=CONFIG_IDS[:2])
def test_tokens_order_buffer_reuse(cfg, seed):
    """With tokens every random schedule computes A1 @ W then A2 @ W; without the tokens some
    schedule lets the second LOAD overwrite A1 (or the STOREs run early), so the tokens matter."""
    data_rng = np.random.default_rng(seed)
    img, address, length, out, expected = reuse_program(cfg, data_rng, sync=True)
    for trial in range(30):
        got, _ = reuse_outputs(cfg, img, address, length, out, 6, random.Random(seed + trial))
        np.testing.assert_array_equal(got, expected, err_msg=f"schedule {seed + trial}")
    img, address, length, out, expected = reuse_program(cfg, np.random.default_rng(seed),
                                                        sync=False)
    wrong = sum(not np.array_equal(reuse_outputs(cfg, img, address, length, out, 6,
                                                 random.Random(seed + trial))[0], expected)
                for trial in range(30))
    assert wrong > 0


def test_fences_order_an_unsynchronized_program(seed):
    """FENCEs instead of tokens: every random schedule gives the expected products; each FENCE
    is counted."""
    cfg = CONFIGS[0]
    img, address, length, out, expected = reuse_program(cfg, np.random.default_rng(seed),
                                                        sync="fence")
    for trial in range(15):
        got, result = reuse_outputs(cfg, img, address, length, out, 6,
                                    random.Random(seed + trial))
        np.testing.assert_array_equal(got, expected, err_msg=f"schedule {seed + trial}")
    assert result.counts[Opcode.FENCE] == 4 and result.instructions == length


SMALL = AcceleratorConfig(rows=3, cols=5, scratchpad_depth=16, accumulator_depth=8)   # lanes 5


def run_words(words, cfg=SMALL, memory_size=64):
    """Run ``words`` placed at address 64 after ``memory_size`` data bytes 0, 1, 2, ..."""
    img = Image(pad=0)
    img.put(bytes(i & 0xFF for i in range(memory_size)))
    return img.run(cfg, words)


def test_fence_waits_for_the_queues():
    """A MATMUL waiting for a LOAD token behind a FENCE can never get it: DEADLOCK at the MATMUL;
    without the FENCE the LOAD is dispatched and the program ends."""
    head = matmul(rows=1, pop=[LOAD])
    tail = [load(row_bytes=1, rows=1, push=[EXEC]), halt()]
    _, result = run_words([head, fence()] + tail)
    assert (result.error, result.error_index) == (ProgramError.DEADLOCK, 0)
    _, result = run_words([head] + tail)
    assert result.ok and result.counts[Opcode.MATMUL] == 1


@pytest.mark.parametrize("depth", [QUEUE_DEPTH, QUEUE_DEPTH + 1])
def test_queue_depth_blocks_dispatch(depth):
    """``depth`` STORE-engine instructions wait for a token from the MATMUL after them. With
    QUEUE_DEPTH of them the MATMUL is dispatched and the program ends; one more fills the queue,
    the MATMUL is never dispatched: DEADLOCK at the queue head (unbounded queues would finish)."""
    words = ([config(params_row=0, pop=[EXEC])] + [config(params_row=0)] * (depth - 1)
             + [matmul(rows=1, push=[STORE]), halt()])
    _, result = run_words(words)
    if depth <= QUEUE_DEPTH:
        assert result.ok and result.counts[Opcode.CONFIG] == depth
    else:
        assert (result.error, result.error_index) == (ProgramError.DEADLOCK, 0)
        assert result.instructions == 0


def test_deadlock_reports_the_oldest_blocked_head():
    """A pop that is never pushed (MATMUL 1 waits for STORE, STORE 2 waits for EXEC): DEADLOCK
    with the smallest blocked index; the LOAD before them executed."""
    words = [load(row_bytes=2, rows=1, sram_row=4), matmul(rows=1, pop=[STORE]),
             store(row_bytes=1, rows=1, pop=[EXEC]), halt()]
    m, result = run_words(words)
    assert (result.error, result.error_index) == (ProgramError.DEADLOCK, 1)
    assert result.counts[Opcode.LOAD] == 1 and list(m.scratchpad[4]) == [0, 1, 0, 0, 0]


def test_token_counters_reset_each_run():
    """Tokens left over by one program are gone in the next: a pop matching them deadlocks."""
    img = Image(pad=0)
    img.put(bytes(16))
    first = img.put(assemble([load(row_bytes=1, rows=1, push=[EXEC]), halt()]), 16)
    second = img.put(assemble([matmul(rows=1, pop=[LOAD]), halt()]), 16)
    m = Machine(SMALL, img.data)
    assert m.run(first, 2).ok
    result = m.run(second, 2)
    assert (result.error, result.error_index) == (ProgramError.DEADLOCK, 0)


def test_buffers_and_memory_persist_between_runs(seed):
    """One run loads W and A, the next multiplies and stores them."""
    rng = np.random.default_rng(seed)
    cfg = CONFIGS[3]
    img = Image()
    w = rng.integers(-128, 128, (4, 4), dtype=np.int8)
    a = rng.integers(-128, 128, (2, 4), dtype=np.int8)
    w_addr, a_addr = img.put(w.tobytes()), img.put(a.tobytes())
    out = img.reserve(32)
    first = img.put(assemble([load(row_bytes=4, rows=4, dram_addr=w_addr, dram_stride=4),
                              load(row_bytes=4, rows=2, sram_row=4, dram_addr=a_addr,
                                   dram_stride=4),
                              halt()]), 16)
    second = img.put(assemble([matmul(wgt_row=0, act_row=4, rows=2, push=[STORE]),
                               store(row_bytes=16, rows=2, dram_addr=out, dram_stride=16,
                                     pop=[EXEC]),
                               halt()]), 16)
    m = Machine(cfg, img.data)
    m.run(first, 3).check()
    m.run(second, 3).check()
    got = np.frombuffer(m.memory, "<i4", 8, out).reshape(2, 4)
    np.testing.assert_array_equal(got, a.astype(np.int64) @ w.astype(np.int64))


# --- errors --------------------------------------------------------------------------------------

#: (name, words, error, error_index): one case per static error and per check order.
FIRST = load(row_bytes=1, rows=1)          # a legal instruction before the faulty one
STATIC_CASES = [
    ("opcode-0", [FIRST, 0, halt()], ProgramError.ILLEGAL_OPCODE, 1),
    *[(f"opcode-{op}", [FIRST, FIRST, op | 0x3F0, halt()], ProgramError.ILLEGAL_OPCODE, 2)
      for op in range(7, 16)],
    ("load-pops-load", [FIRST, load(row_bytes=1, rows=1, pop=[LOAD])],
     ProgramError.ILLEGAL_TOKEN, 1),
    ("load-pushes-load", [load(row_bytes=1, rows=1, push=[LOAD])], ProgramError.ILLEGAL_TOKEN, 0),
    ("matmul-pops-exec", [FIRST, matmul(rows=1, pop=[EXEC])], ProgramError.ILLEGAL_TOKEN, 1),
    ("store-pushes-store", [FIRST, store(row_bytes=1, rows=1, push=[STORE])],
     ProgramError.ILLEGAL_TOKEN, 1),
    ("config-pops-store", [FIRST, config(pop=[STORE])], ProgramError.ILLEGAL_TOKEN, 1),
    ("fence-pops", [FIRST, fence(pop=[LOAD])], ProgramError.ILLEGAL_TOKEN, 1),
    ("halt-pushes", [FIRST, halt(push=[EXEC])], ProgramError.ILLEGAL_TOKEN, 1),
    ("load-zero-rows", [FIRST, load(row_bytes=1, rows=0)], ProgramError.ZERO_LENGTH, 1),
    ("load-zero-bytes", [FIRST, load(row_bytes=0, rows=1)], ProgramError.ZERO_LENGTH, 1),
    ("store-zero-rows", [FIRST, store(row_bytes=1, rows=0)], ProgramError.ZERO_LENGTH, 1),
    ("store-zero-bytes", [FIRST, store(row_bytes=0, rows=1)], ProgramError.ZERO_LENGTH, 1),
    ("matmul-zero-rows", [FIRST, matmul(rows=0)], ProgramError.ZERO_LENGTH, 1),
    ("load-spad-row-too-long", [FIRST, load(buffer=0, row_bytes=6, rows=1)],
     ProgramError.ROW_TOO_LONG, 1),
    ("load-acc-row-too-long", [FIRST, load(buffer=1, row_bytes=21, rows=1)],
     ProgramError.ROW_TOO_LONG, 1),
    ("store-requant-row-too-long", [FIRST, store(requant=1, row_bytes=6, rows=1)],
     ProgramError.ROW_TOO_LONG, 1),
    ("store-raw-row-too-long", [FIRST, store(requant=0, row_bytes=21, rows=1)],
     ProgramError.ROW_TOO_LONG, 1),
    ("load-spad-range", [FIRST, load(buffer=0, row_bytes=1, sram_row=15, rows=2)],
     ProgramError.SPAD_RANGE, 1),
    ("matmul-wgt-range", [FIRST, matmul(wgt_row=14, rows=1)], ProgramError.SPAD_RANGE, 1),
    ("matmul-act-range", [FIRST, matmul(act_row=15, rows=2)], ProgramError.SPAD_RANGE, 1),
    ("load-acc-range", [FIRST, load(buffer=1, row_bytes=1, sram_row=7, rows=2)],
     ProgramError.ACC_RANGE, 1),
    ("matmul-acc-range", [FIRST, matmul(acc_row=7, rows=2)], ProgramError.ACC_RANGE, 1),
    ("store-acc-range", [FIRST, store(row_bytes=1, acc_row=6, rows=3)],
     ProgramError.ACC_RANGE, 1),
    ("config-acc-range", [FIRST, config(params_row=7)], ProgramError.ACC_RANGE, 1),
    ("bad-clamp", [FIRST, config(act_min=1, act_max=0)], ProgramError.BAD_CLAMP, 1),
    # Several faults in one instruction: the first check in the documented order wins.
    ("token-before-zero", [load(row_bytes=1, rows=0, pop=[LOAD])], ProgramError.ILLEGAL_TOKEN, 0),
    ("zero-before-long", [load(row_bytes=99, rows=0)], ProgramError.ZERO_LENGTH, 0),
    ("long-before-range", [load(row_bytes=99, sram_row=16, rows=1)],
     ProgramError.ROW_TOO_LONG, 0),
    ("spad-before-acc", [matmul(act_row=16, acc_row=8, rows=1)], ProgramError.SPAD_RANGE, 0),
    ("range-before-clamp", [config(params_row=7, act_min=1, act_max=0)],
     ProgramError.ACC_RANGE, 0),
]


@pytest.mark.parametrize("words,error,index", [c[1:] for c in STATIC_CASES],
                         ids=[c[0] for c in STATIC_CASES])
def test_static_errors(words, error, index):
    """Each static check gives its error code and the faulty instruction's index."""
    _, result = run_words(words)
    assert (result.error, result.error_index) == (error, index)
    with pytest.raises(ProgramFault, match=error.name) as caught:
        result.check()
    assert (caught.value.error, caught.value.index) == (error, index)


def test_limits_themselves_are_legal():
    """Every length and range exactly at its limit passes the static checks."""
    words = [load(buffer=0, row_bytes=5, sram_row=14, rows=2),
             load(buffer=1, row_bytes=20, sram_row=6, rows=2, push=[EXEC]),
             matmul(wgt_row=13, act_row=15, acc_row=7, rows=1, pop=[LOAD], push=[STORE]),
             config(params_row=6, act_min=3, act_max=3, pop=[EXEC]),
             store(requant=1, row_bytes=5, acc_row=7, rows=1),
             store(requant=0, row_bytes=20, acc_row=6, rows=2),
             halt()]
    _, result = run_words(words)
    assert result.ok and result.instructions == 7


def test_reserved_bits_are_ignored():
    """Setting every reserved bit changes nothing."""
    words = [load(row_bytes=3, rows=1, sram_row=2), halt()]
    reserved = [(1 << 128) - (1 << 119), (1 << 128) - (1 << 10)]
    m0, r0 = run_words(words)
    m1, r1 = run_words([w | r for w, r in zip(words, reserved)])
    assert r0.ok and r1.ok
    np.testing.assert_array_equal(m0.scratchpad, m1.scratchpad)
    assert list(m1.scratchpad[2]) == [0, 1, 2, 0, 0]


def test_executed_work_stays_done_after_an_error():
    """A LOAD before a FENCE has executed when the illegal instruction after it is reached."""
    m, result = run_words([load(row_bytes=2, rows=1, sram_row=3, dram_addr=10), fence(), 0,
                           halt()])
    assert (result.error, result.error_index) == (ProgramError.ILLEGAL_OPCODE, 2)
    assert list(m.scratchpad[3]) == [10, 11, 0, 0, 0]
    assert result.counts[Opcode.LOAD] == 1 and result.counts[Opcode.FENCE] == 1


@pytest.mark.parametrize("extra", [0, 1])
def test_token_overflow(extra):
    """TOKEN_LIMIT pending tokens are fine; one more is TOKEN_OVERFLOW at the pushing LOAD."""
    count = TOKEN_LIMIT + extra
    _, result = run_words([load(row_bytes=1, rows=1, push=[EXEC])] * count + [halt()])
    if extra:
        assert (result.error, result.error_index) == (ProgramError.TOKEN_OVERFLOW, TOKEN_LIMIT)
    else:
        assert result.ok and result.counts[Opcode.LOAD] == TOKEN_LIMIT


def test_bus_error_fetching_past_the_image():
    """A program running off the end of memory: BUS_ERROR at the first instruction outside, also
    when only its last byte is outside; none at all when a HALT comes first."""
    img = Image(pad=0)
    address = img.put(assemble([FIRST, FIRST]), 16)
    m = Machine(SMALL, img.data)
    result = m.run(address, 3)
    assert (result.error, result.error_index) == (ProgramError.BUS_ERROR, 2)
    m = Machine(SMALL, img.data + assemble([halt()])[:-1])
    result = m.run(address, 3)
    assert (result.error, result.error_index) == (ProgramError.BUS_ERROR, 2)
    m = Machine(SMALL, img.data + assemble([halt()]))
    assert m.run(address, 10).ok            # nothing after the HALT is read
    result = m.run(2**32 - 16, 1)           # program address wraps past 2**32: still outside
    assert (result.error, result.error_index) == (ProgramError.BUS_ERROR, 0)


@pytest.mark.parametrize("bad", [
    load(row_bytes=5, rows=2, dram_addr=55, dram_stride=5),            # row 1 ends at 65 > 64
    load(row_bytes=1, rows=2, dram_addr=0, dram_stride=2**32 - 1),     # row 1 wraps to 2**32 - 1
    store(row_bytes=4, rows=1, dram_addr=2**32 - 2),
    store(row_bytes=1, rows=3, dram_addr=50, dram_stride=7),           # row 2 at 64
], ids=["load-end", "load-wrap", "store-high", "store-row-2"])
def test_bus_error_on_data(bad):
    """A LOAD or STORE touching a byte outside the 64-byte image: BUS_ERROR at that
    instruction."""
    m = Machine(SMALL, assemble([FIRST, bad, halt()]) + bytes(16))
    result = m.run(0, 3)
    assert (result.error, result.error_index) == (ProgramError.BUS_ERROR, 1)


def test_no_halt():
    """Reaching the program length without HALT: NO_HALT with index = length (0 for length 0)."""
    _, result = run_words([FIRST, FIRST, FIRST])
    assert (result.error, result.error_index) == (ProgramError.NO_HALT, 3)
    result = Machine(SMALL, bytes(64)).run(0, 0)
    assert (result.error, result.error_index) == (ProgramError.NO_HALT, 0)


def test_every_error_code_is_tested():
    """Every ProgramError except NONE, WATCHDOG (a cycle-count timeout, which an
    instruction-level simulator has no notion of) and ABORTED (a host's soft reset; both are
    tested on the RTL in tb/test_accelerator.py) appears in a test above."""
    dynamic = {ProgramError.DEADLOCK, ProgramError.TOKEN_OVERFLOW, ProgramError.BUS_ERROR,
               ProgramError.NO_HALT}
    covered = {case[2] for case in STATIC_CASES} | dynamic
    assert covered == set(ProgramError) - {ProgramError.NONE, ProgramError.WATCHDOG,
                                           ProgramError.ABORTED}


# --- API -----------------------------------------------------------------------------------------

def test_machine_copies_memory_and_starts_zeroed():
    data = bytearray(b"\x01" * 32)
    m = Machine(SMALL, data)
    data[0] = 9
    assert m.memory[0] == 1 and isinstance(m.memory, bytearray)
    assert m.scratchpad.shape == (16, 5) and m.scratchpad.dtype == np.int8
    assert m.accumulator.shape == (8, 5) and m.accumulator.dtype == np.int32
    assert not m.scratchpad.any() and not m.accumulator.any()
    assert RunResult().ok and RunResult().check().error_index == 0


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="'8x8'"):
        Machine("8x8", b"")
    with pytest.raises(TypeError, match="list"):
        Machine(SMALL, [1, 2])
    m = Machine(SMALL, bytes(64))
    with pytest.raises(ValueError, match="program_addr .* not -1"):
        m.run(-1, 1)
    with pytest.raises(ValueError, match=f"length .* not {2**32}"):
        m.run(0, 2**32)
    with pytest.raises(TypeError, match="length .* not 1.0"):
        m.run(0, 1.0)
    with pytest.raises(TypeError, match="rng"):
        m.run(0, 1, rng=np.random.default_rng(0))
