"""The Tessera compiler: quantized layers -> one program and its memory image.

A :class:`Program` is a list of instruction words (each exactly what :func:`tessera.rtl.isa.encode`
gives for its fields), a memory image holding the program at ``program_addr`` = 0 followed by every
tensor (each aligned to :data:`ALIGN` bytes), and the placement of each named tensor
(:class:`Tensor`). The driver copies the image, writes the inputs with :meth:`Program.write_input`,
runs it and reads the outputs with :meth:`Program.read_output`. docs/compiler.md is the long
description; in short:

Memory layouts (C = cols, R = rows of the array, NB = ceil(N/C), K_pad = ceil(K/R)*R)

* activations, inputs, outputs: row-major ``(M, K)`` int8 (int32 little-endian for a raw GEMM
  output), so a layer's output region is the next layer's input region, unchanged;
* weights: ``[NB][K_pad][C]`` int8, zero padded: one n-strip is one LOAD;
* bias: ``[NB][C]`` int32; requantization parameters ``[NB][2][C]`` int32 (multipliers, shifts).

Tiling of one GEMM (``A (M, K) @ W (K, N)``) into output tiles of ``Mt`` rows x ``C`` columns:

* ``"panel"``: the A panel of an m-block (``ceil(K/R)`` LOADs of ``Mt`` rows) stays in the
  scratchpad while every weight strip streams past it (double-buffered strips, or all strips
  resident when they fit); the panel itself is double-buffered when the scratchpad has room.
* ``"k-chunked"`` (fallback for a K too large for a panel): each output tile is accumulated over
  chunks of ``kc`` k-blocks, each chunk one LOAD of weights plus ``kc`` LOADs of A.

Per tile: params LOAD, bias LOAD (stride 0 repeats the bias row over the tile's accumulator rows),
MATMULs into one of two accumulator halves, then CONFIG + requantizing STORE (or a raw STORE).

Ordering: each layer is first written as a sequential program. The compiler records which
scratchpad/accumulator rows each instruction reads and writes, finds every cross-engine hazard of
that sequential order (read-after-write, write-after-read, write-after-write) and turns each one
not already implied by the others into a dependency token: the earlier instruction pushes, the
later one pops. Tokens between two engines are FIFO counts (the k-th pop pairs with the k-th push),
and the pairs placed this way are in the same order on both sides, so every pop pairs with exactly
the push intended. Finally the three engines' streams (each keeping its own order) are merged by
estimated start time, which puts every push before its pop and keeps each queue fed under in-order
dispatch. Layers of one program are separated by FENCE.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np
from tessera.rtl.isa import INSTRUCTION_BYTES, Engine, IsaError, Opcode, assemble, decode, encode

from .config import AcceleratorConfig
from .layers import Conv2d, Dense, Network, Requant

__all__ = ["ALIGN", "CompileError", "Tensor", "GemmPlan", "Program", "Stage", "CompiledNetwork",
           "plan_gemm", "compile_gemm", "compile_dense", "compile_conv2d", "compile_network",
           "format_instruction", "pack_weights", "pack_bias", "pack_params"]

#: Alignment (bytes) of every tensor in the memory image.
ALIGN = 64

_SPAD, _ACC = 0, 1          # buffer numbers of LOAD (dma_descriptor.Buffer)
# Timing estimates (cycles), measured on the RTL: see _Costs.
_DMA_SETUP = 10             # per DMA descriptor (LOAD, STORE, fetch chunk), besides its beats
_FETCH_CHUNK = 8            # instructions per fetch descriptor (rtl/fetch.py CHUNK)
_MATMUL_GAP = 2             # between back-to-back MATMULs
_MATMUL_DRAIN = 12          # from a MATMUL's last row to its tokens, besides R + C
_ADDRESS_LIMIT = 1 << 32


class CompileError(ValueError):
    """A layer or GEMM that cannot be compiled for the configuration (the message says why)."""


def _ceil(a, b):
    return -(-a // b)


def _align(x):
    return _ceil(x, ALIGN) * ALIGN


def _check_dim(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise CompileError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def _check_config(config):
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    return config


# --- tensors and their layouts ----------------------------------------------------------------

def pack_weights(config, w):
    """Weights ``(K, N)`` int8 as ``[ceil(N/C)][K_pad][C]`` int8 bytes (zero padded)."""
    k, n = w.shape
    kpad, cols = _ceil(k, config.rows) * config.rows, config.cols
    nb = _ceil(n, cols)
    padded = np.zeros((kpad, nb * cols), np.int8)
    padded[:k, :n] = w
    return padded.reshape(kpad, nb, cols).transpose(1, 0, 2).tobytes()


def _unpack_weights(config, data, k, n):
    kpad, cols = _ceil(k, config.rows) * config.rows, config.cols
    nb = _ceil(n, cols)
    strips = np.frombuffer(data, np.int8).reshape(nb, kpad, cols)
    return strips.transpose(1, 0, 2).reshape(kpad, nb * cols)[:k, :n].copy()


def pack_bias(config, bias):
    """Bias ``(N,)`` int32 as ``[ceil(N/C)][C]`` little-endian int32 bytes (zero padded)."""
    n = bias.shape[0]
    padded = np.zeros(_ceil(n, config.cols) * config.cols, "<i4")
    padded[:n] = bias
    return padded.tobytes()


def pack_params(config, multipliers, shifts):
    """Per-channel multipliers and shifts ``(N,)`` as ``[ceil(N/C)][2][C]`` little-endian int32
    bytes: row 0 of each strip the multipliers, row 1 the shifts (zero padded)."""
    n, cols = multipliers.shape[0], config.cols
    nb = _ceil(n, cols)
    padded = np.zeros((2, nb * cols), "<i4")
    padded[0, :n] = multipliers
    padded[1, :n] = shifts
    return padded.reshape(2, nb, cols).transpose(1, 0, 2).tobytes()


@dataclass(frozen=True)
class Tensor:
    """Where a named tensor lives in the memory image and how its bytes are laid out.

    ``layout`` is ``"row-major"`` (C order of ``shape``), ``"weight-strips"`` (``shape`` = (K, N)
    stored by :func:`pack_weights`), ``"bias-strips"`` (:func:`pack_bias`) or ``"param-strips"``
    (:func:`pack_params`, ``shape`` = (2, N)).
    """
    name: str
    address: int
    shape: tuple
    dtype: str
    layout: str
    nbytes: int

    @property
    def end(self):
        return self.address + self.nbytes


def _nbytes(config, shape, dtype, layout):
    if layout == "row-major":
        return math.prod(shape) * np.dtype(dtype).itemsize
    if layout == "weight-strips":
        k, n = shape
        return _ceil(n, config.cols) * _ceil(k, config.rows) * config.rows * config.cols
    if layout == "bias-strips":
        return _ceil(shape[0], config.cols) * config.cols * 4
    if layout == "param-strips":
        return _ceil(shape[1], config.cols) * config.cols * 8
    raise ValueError(f"layout must be a known layout, not {layout!r}")


# --- the program ------------------------------------------------------------------------------

@dataclass(frozen=True)
class GemmPlan:
    """How one GEMM layer is tiled (chosen by :func:`plan_gemm`).

    ``strategy`` is ``"panel"`` or ``"k-chunked"``; ``mt`` the rows of an output tile;
    ``panel_buffers`` 1 or 2 A-panel slots (panel strategy); ``weights_resident`` every weight strip
    has its own scratchpad slot and is loaded once; ``k_chunk`` k-blocks per chunk and
    ``chunk_buffers`` chunk slots (k-chunked strategy). ``estimated_cycles`` is the analytic
    estimate the choice minimised; ``utilization`` = M*K*N / (R*C*estimated_cycles).
    """
    m: int
    k: int
    n: int
    strategy: str
    mt: int
    panel_buffers: int = 0
    weights_resident: bool = False
    k_chunk: int = 0
    chunk_buffers: int = 0
    estimated_cycles: int = 0
    utilization: float = 0.0


@dataclass
class Program:
    """A compiled program: ``instructions`` (ints), the memory ``image`` with the program at
    ``program_addr`` and every tensor placed, ``tensors`` by name, the names of ``inputs`` and
    ``outputs``, and the :class:`GemmPlan` of each layer in ``plans``."""
    config: AcceleratorConfig
    instructions: list
    image: bytearray
    program_addr: int
    tensors: dict
    inputs: tuple
    outputs: tuple
    plans: tuple = ()

    @property
    def length(self):
        """Instructions in the program (the LENGTH register value)."""
        return len(self.instructions)

    def _tensor(self, name, kind):
        if name not in self.tensors:
            raise ValueError(f"{kind} must name a tensor of this program {sorted(self.tensors)}, "
                           f"not {name!r}")
        return self.tensors[name]

    def write_input(self, image, name, array):
        """Write ``array`` (exactly the dtype and shape of input ``name``) into ``image`` in the
        input's layout. Raises naming the input for a wrong name, dtype or shape."""
        if name not in self.inputs:
            raise ValueError(f"input name must be one of {list(self.inputs)}, not {name!r}")
        t = self.tensors[name]
        if not isinstance(array, np.ndarray):
            raise TypeError(f"input {name!r} must be a numpy array of dtype {t.dtype} and shape "
                            f"{t.shape}, not {type(array).__name__}")
        if array.dtype != np.dtype(t.dtype):
            raise TypeError(f"input {name!r} must have dtype {t.dtype}, not {array.dtype}")
        if tuple(array.shape) != tuple(t.shape):
            raise ValueError(f"input {name!r} must have shape {t.shape}, not {array.shape}")
        if not isinstance(image, bytearray) or len(image) < t.end:
            raise ValueError(f"image must be a bytearray of at least {t.end} bytes")
        if t.layout == "row-major":
            data = np.ascontiguousarray(array, dtype=np.dtype(t.dtype).newbyteorder("<"))
            data = data.tobytes()
        elif t.layout == "weight-strips":
            data = pack_weights(self.config, array)
        else:
            raise ValueError(f"input {name!r} has layout {t.layout!r}, which is not writable")
        image[t.address:t.address + len(data)] = data

    def read_output(self, image, name):
        """Tensor ``name`` (normally an output) read from ``image`` as an array of its shape."""
        t = self._tensor(name, "name")
        data = bytes(image[t.address:t.end])
        if len(data) != t.nbytes:
            raise ValueError(f"image is too short to hold {name!r} ({t.end} bytes needed)")
        if t.layout == "row-major":
            return np.frombuffer(data, np.dtype(t.dtype).newbyteorder("<")) \
                .astype(t.dtype).reshape(t.shape)
        if t.layout == "weight-strips":
            return _unpack_weights(self.config, data, *t.shape)
        values = np.frombuffer(data, "<i4").astype(np.int32)
        if t.layout == "bias-strips":
            return values[:t.shape[0]].copy()
        cols = self.config.cols
        params = values.reshape(-1, 2, cols).transpose(1, 0, 2).reshape(2, -1)
        return params[:, :t.shape[1]].copy()

    def program_bytes(self):
        return assemble(self.instructions)

    def listing(self):
        """The program disassembled, one instruction per line (:func:`format_instruction`)."""
        names = sorted(self.tensors.values(), key=lambda t: t.address)
        return "\n".join(f"{i:4d}  {format_instruction(w, names, self.config.rows)}"
                         for i, w in enumerate(self.instructions))


@dataclass(frozen=True)
class Stage:
    """One program of a compiled network. The driver gives it input ``"x"``: the previous
    stage's output (or the network input) of shape ``input_shape``, im2col'd by the host with
    ``host_im2col`` when that is a :class:`Conv2d`; its output ``"y"`` has ``output_shape``."""
    program: Program
    input_shape: tuple
    output_shape: tuple
    host_im2col: Conv2d | None = None


@dataclass(frozen=True)
class CompiledNetwork:
    """The programs of a network, run one after another (see :func:`compile_network`)."""
    stages: tuple
    input_shape: tuple
    output_shape: tuple


# --- instruction listing ----------------------------------------------------------------------

def _engines(mask):
    return ",".join(e.name for e in sorted(mask)) or "-"


def format_instruction(word, tensors=(), rows=None):
    """One instruction as text: its effect, then ``pop``/``push`` tokens. Memory addresses are
    shown relative to the tensor they fall in when ``tensors`` (:class:`Tensor` s) are given;
    ``rows`` (R of the array) shows the full weight-row range of a MATMUL."""
    op, f = decode(word)
    rows_r = rows

    def where(address):
        for t in tensors:
            if t.address <= address < t.end:
                return f"{t.name}+{address - t.address}" if address > t.address else t.name
        return f"{address:#x}"

    def rows(buf, first, count):
        return f"{'spad' if buf == _SPAD else 'acc'}[{first}:{first + count}]"

    if op == Opcode.LOAD:
        text = (f"LOAD    {rows(f['buffer'], f['sram_row'], f['rows'])} <- {where(f['dram_addr'])}"
                f" ({f['rows']} x {f['row_bytes']} B, stride {f['dram_stride']})")
    elif op == Opcode.MATMUL:
        text = (f"MATMUL  {rows(_ACC, f['acc_row'], f['rows'])} {'+=' if f['accumulate'] else '='}"
                f" {rows(_SPAD, f['act_row'], f['rows'])} @ "
                + (rows(_SPAD, f['wgt_row'], rows_r) if rows_r else f"spad[{f['wgt_row']}:]"))
    elif op == Opcode.STORE:
        kind = "int8 requantized" if f["requant"] else "int32"
        text = (f"STORE   {where(f['dram_addr'])} <- {rows(_ACC, f['acc_row'], f['rows'])}"
                f" ({f['rows']} x {f['row_bytes']} B, stride {f['dram_stride']}, {kind})")
    elif op == Opcode.CONFIG:
        text = (f"CONFIG  params {rows(_ACC, f['params_row'], 2)}, zero point {f['zero_point']},"
                f" clamp [{f['act_min']}, {f['act_max']}]")
    else:
        text = op.name
    if f["pop"] or f["push"]:
        text = f"{text:<72} pop {_engines(f['pop'])} push {_engines(f['push'])}"
    return text.rstrip()


# --- planning ---------------------------------------------------------------------------------

class _Costs:
    """The timing model shared by the tiling choice and the instruction ordering (estimates).

    Calibrated on the RTL (4x4 array, 64-bit bus, memory answering at once): one DMA serves the
    LOAD engine, the STORE engine and the instruction fetch, one descriptor at a time; a
    descriptor costs about :data:`_DMA_SETUP` cycles plus one cycle per bus beat, at least one
    per row (one burst per row); the fetch reads 8 instructions per descriptor. Back-to-back
    MATMULs take ``max(rows, R)`` plus :data:`_MATMUL_GAP` cycles each, and a MATMUL's result is
    in the accumulator (its tokens pushed) about ``R + C`` + :data:`_MATMUL_DRAIN` cycles after
    its last row entered the array.
    """

    def __init__(self, config):
        self.config = config
        self.bus = config.bus_width // 8

    def row(self, nbytes, aligned=True):
        """Bus beats of one row; an unaligned row may cross one more bus word."""
        return _ceil(nbytes, self.bus) + (0 if aligned or nbytes == 1 else 1)

    def transfer(self, rows, nbytes, aligned=True):
        """DMA cycles of one LOAD or STORE."""
        return _DMA_SETUP + rows * self.row(nbytes, aligned)

    def fetch(self, instructions):
        """DMA cycles to fetch ``instructions`` instructions."""
        return instructions * (_DMA_SETUP / _FETCH_CHUNK + _ceil(INSTRUCTION_BYTES, self.bus))

    def matmul(self, rows):
        return max(rows, self.config.rows) + _MATMUL_GAP

    @property
    def latency(self):
        return self.config.rows + self.config.cols + _MATMUL_DRAIN


def _blocks(total, size):
    """``[(block size, count)]`` of ``total`` cut into blocks of ``size`` (a shorter last one)."""
    return [(size, total // size)] + ([(total % size, 1)] if total % size else [])


def _estimate_panel(costs, cfg, m, k, n, mt, pbuf, resident, bias, requant):
    """Estimated cycles of the panel strategy (see :func:`plan_gemm`)."""
    R, C = cfg.rows, cfg.cols
    kb, nb = _ceil(k, R), _ceil(n, C)
    kpad = kb * R
    cn = min(C, n)
    size = 1 if requant else 4
    out_aligned = size * n % costs.bus == 0 and size * C % costs.bus == 0
    a_aligned = k % costs.bus == 0
    weights = costs.transfer(kpad, C)
    total = 0
    first = True
    for rows, count in _blocks(m, mt):
        exec_t = kb * costs.matmul(rows)
        store = costs.transfer(rows, size * cn, out_aligned)
        panel = kb * costs.transfer(rows, min(R, k), a_aligned)
        dma = ((costs.transfer(rows, 4 * cn) if bias else 0)
               + (costs.transfer(2, 4 * cn) if requant else 0)
               + store + costs.fetch(kb + 5 + kb / nb))
        # Two accumulator halves: tile t+2 starts after tile t's results are stored.
        ring = (exec_t + costs.latency + store) / 2
        for mb in range(min(count, 2)):
            reps = 1 if mb == 0 else count - 1
            reload = not resident or (first and mb == 0)
            w = weights if reload else 0
            share = panel / nb if pbuf == 2 else 0
            tile = max(exec_t, dma + w + share, ring,
                       (exec_t + costs.latency + w) / 2 if reload else 0)
            stall = costs.latency + panel if pbuf == 1 and not (first and mb == 0) else 0
            total += reps * (nb * tile + stall)
        first = False
    first_rows = min(mt, m)
    prologue = kb * costs.transfer(first_rows, min(R, k), a_aligned) + weights
    epilogue = costs.latency + costs.transfer(first_rows, size * cn)
    return int(total + prologue + epilogue)


def _estimate_chunked(costs, cfg, m, k, n, mt, kc, cbuf, bias, requant):
    """Estimated cycles of the k-chunked strategy (see :func:`plan_gemm`)."""
    R, C = cfg.rows, cfg.cols
    kb, nb = _ceil(k, R), _ceil(n, C)
    cn = min(C, n)
    size = 1 if requant else 4
    out_aligned = size * n % costs.bus == 0 and size * C % costs.bus == 0
    a_aligned = k % costs.bus == 0
    total = 0
    for rows, count in _blocks(m, mt):
        exec_t = dma = ring = 0
        for kcu, reps in _blocks(kb, kc):
            exec_u = kcu * costs.matmul(rows)
            load_u = (costs.transfer(kcu * R, C) + kcu * costs.transfer(rows, min(R, k), a_aligned)
                      + costs.fetch(2 * kcu))
            exec_t += reps * exec_u
            dma += reps * load_u
            # A chunk slot is reloaded once the MATMULs of the chunk before last are done.
            ring += reps * (exec_u + costs.latency + load_u) / cbuf
        store = costs.transfer(rows, size * cn, out_aligned)
        dma += ((costs.transfer(rows, 4 * cn) if bias else 0)
                + (costs.transfer(2, 4 * cn) if requant else 0) + store + costs.fetch(3))
        total += count * nb * max(exec_t, dma, ring)
    return int(total + costs.latency + costs.transfer(min(mt, m), size * cn))


def _candidates(limit):
    """Candidate values in [1, limit]: every value up to 64, then powers of two and the limit."""
    values = set(range(1, min(limit, 64) + 1))
    p = 64
    while p <= limit:
        values.add(p)
        p *= 2
    values.add(limit)
    return sorted(values)


def plan_gemm(config, m, k, n, *, bias=False, requant=True):
    """Choose the tiling of an ``(m, k) @ (k, n)`` GEMM: a :class:`GemmPlan`.

    Every feasible choice is estimated with a simple pipeline model (per output tile the slowest of
    the array's MATMUL time ``ceil(K/R) * max(Mt, R)``, the LOAD traffic and the STORE traffic at
    ``bus_width/8`` bytes per cycle with one burst per row, plus the panel load stall when the panel
    is single-buffered) and the fastest is kept; ties go to the larger tile. The panel strategy is
    used whenever a panel of one row fits; otherwise the k-chunked one. Raises
    :class:`CompileError` when even that cannot fit the buffers.
    """
    cfg = _check_config(config)
    m, k, n = _check_dim("M", m), _check_dim("K", k), _check_dim("N", n)
    R, C = cfg.rows, cfg.cols
    S, A = cfg.scratchpad_depth, cfg.accumulator_depth
    kb, nb = _ceil(k, R), _ceil(n, C)
    kpad = kb * R
    param_rows = 4 if requant else 0
    mt_acc = (A - param_rows) // 2
    if mt_acc < 1:
        raise CompileError(f"accumulator_depth must be >= {2 + param_rows} (two tile halves"
                           f"{' and two requantization parameter slots' if requant else ''}), "
                           f"not {A}")
    costs = _Costs(cfg)
    best = None

    def consider(est, plan_args):
        nonlocal best
        key = (est, -plan_args["mt"])
        if best is None or key < best[0]:
            best = (key, plan_args)

    options = [(True, nb * kpad)] + ([(False, 2 * kpad)] if nb > 2 else [])
    for resident, wrows in options:
        for pbuf in (1, 2):
            if S - wrows < pbuf * kb:
                continue
            mt_max = min(mt_acc, (S - wrows) // (pbuf * kb), m)
            for mt in _candidates(mt_max):
                if pbuf == 2 and mt >= m:
                    continue
                est = _estimate_panel(costs, cfg, m, k, n, mt, pbuf, resident, bias, requant)
                consider(est, dict(strategy="panel", mt=mt, panel_buffers=pbuf,
                                   weights_resident=resident))
    if best is None:
        for cbuf in (1, 2):
            for kc in _candidates(kb):
                room = S // cbuf - kc * R
                if room < kc:
                    continue
                mt_max = min(mt_acc, room // kc, m)
                for mt in _candidates(mt_max):
                    est = _estimate_chunked(costs, cfg, m, k, n, mt, kc, cbuf, bias, requant)
                    consider(est, dict(strategy="k-chunked", mt=mt, k_chunk=kc,
                                       chunk_buffers=cbuf))
    if best is None:
        raise CompileError(f"a GEMM with K={k} cannot fit: scratchpad_depth must be >= {R + 1} "
                           f"rows (one {R}-row weight block and one activation row), not {S}")
    (est, _), args = best
    return GemmPlan(m, k, n, estimated_cycles=est, utilization=m * k * n / (R * C * est), **args)


# --- instruction generation -------------------------------------------------------------------

@dataclass
class _Op:
    """One instruction before ordering: fields (``dram`` = (tensor, offset) is resolved to
    ``dram_addr`` at the end), the buffer rows it reads and writes (``(buffer, first, stop)``),
    its estimated busy cycles and the extra cycles until its effect is visible."""
    opcode: Opcode
    fields: dict
    reads: list
    writes: list
    cost: int
    latency: int = 0
    dram: tuple | None = None
    pop: set = field(default_factory=set)
    push: set = field(default_factory=set)

    @property
    def engine(self):
        return {Opcode.LOAD: Engine.LOAD, Opcode.MATMUL: Engine.EXEC}.get(self.opcode,
                                                                          Engine.STORE)


class _GemmEmitter:
    """The instructions of one GEMM layer, in program (semantic) order, for a :class:`GemmPlan`."""

    def __init__(self, config, plan, names, bias, requant):
        self.cfg, self.plan, self.names = config, plan, names
        self.bias, self.requant = bias, requant
        self.costs = _Costs(config)
        self.ops = []
        R = config.rows
        self.kb, self.nb = _ceil(plan.k, R), _ceil(plan.n, config.cols)
        self.kpad = self.kb * R

    # -- single instructions --
    def load(self, buffer, sram_row, rows, row_bytes, tensor, offset, stride):
        aligned = stride % self.costs.bus == 0
        self.ops.append(_Op(Opcode.LOAD, dict(buffer=buffer, sram_row=sram_row, rows=rows,
                                              row_bytes=row_bytes, dram_stride=stride),
                            reads=[], writes=[(buffer, sram_row, sram_row + rows)],
                            cost=self.costs.transfer(rows, row_bytes, aligned),
                            dram=(tensor, offset)))

    def matmul(self, wgt_row, act_row, acc_row, rows, accumulate):
        R = self.cfg.rows
        reads = [(_SPAD, wgt_row, wgt_row + R), (_SPAD, act_row, act_row + rows)]
        if accumulate:
            reads.append((_ACC, acc_row, acc_row + rows))
        self.ops.append(_Op(Opcode.MATMUL, dict(wgt_row=wgt_row, act_row=act_row, acc_row=acc_row,
                                                rows=rows, accumulate=int(accumulate)),
                            reads=reads, writes=[(_ACC, acc_row, acc_row + rows)],
                            cost=self.costs.matmul(rows), latency=self.costs.latency))

    def config_op(self, params_row):
        rq = self.requant
        self.ops.append(_Op(Opcode.CONFIG, dict(params_row=params_row,
                                                zero_point=rq.output_zero_point,
                                                act_min=rq.act_min, act_max=rq.act_max),
                            reads=[(_ACC, params_row, params_row + 2)], writes=[], cost=1))

    def store(self, acc_row, rows, n0, cn, m0, params_row):
        n = self.plan.n
        size = 1 if self.requant else 4
        reads = [(_ACC, acc_row, acc_row + rows)]
        if self.requant:
            reads.append((_ACC, params_row, params_row + 2))
        self.ops.append(_Op(Opcode.STORE, dict(requant=int(bool(self.requant)),
                                               row_bytes=size * cn, acc_row=acc_row, rows=rows,
                                               dram_stride=size * n),
                            reads=reads, writes=[],
                            cost=self.costs.transfer(rows, size * cn, (size * n) % self.costs.bus == 0),
                            dram=(self.names["out"], size * (m0 * n + n0))))

    # -- groups --
    def a_block(self, sram_row, m0, rows, kb):
        k, R = self.plan.k, self.cfg.rows
        self.load(_SPAD, sram_row, rows, min(R, k - kb * R), self.names["a"], m0 * k + kb * R, k)

    def tile_prologue(self, s, half, rows, qslot):
        """Params and bias LOADs of the tile of n-strip ``s``."""
        C = self.cfg.cols
        cn = min(C, self.plan.n - s * C)
        if self.requant:
            self.load(_ACC, qslot, 2, 4 * cn, self.names["params"], s * 8 * C, 4 * C)
        if self.bias is not None:
            self.load(_ACC, half, rows, 4 * cn, self.names["bias"], s * 4 * C, 0)

    def tile_epilogue(self, s, half, rows, m0, qslot):
        C = self.cfg.cols
        cn = min(C, self.plan.n - s * C)
        if self.requant:
            self.config_op(qslot)
        self.store(half, rows, s * C, cn, m0, qslot)

    def emit(self):
        if self.plan.strategy == "panel":
            self._panel()
        else:
            self._chunked()
        return self.ops

    def _panel(self):
        p, R, C = self.plan, self.cfg.rows, self.cfg.cols
        kb, nb, kpad, mt = self.kb, self.nb, self.kpad, p.mt
        mb_count = _ceil(p.m, mt)
        wrows = nb * kpad if p.weights_resident else 2 * kpad
        qbase = 2 * mt

        def panel_slot(mb):
            return wrows + (mb % p.panel_buffers) * mt * kb

        def block_rows(mb):
            return min(mt, p.m - mb * mt)

        t = 0
        for mb in range(mb_count):
            m0, rows = mb * mt, block_rows(mb)
            for s in range(nb):
                half, qslot = (t % 2) * mt, qbase + (t % 2) * 2
                wslot = s * kpad if p.weights_resident else (t % 2) * kpad
                if s == 0 and (mb == 0 or p.panel_buffers == 1):
                    for b in range(kb):
                        self.a_block(panel_slot(mb) + mt * b, m0, rows, b)
                if not p.weights_resident or mb == 0:
                    self.load(_SPAD, wslot, kpad, C, self.names["w"], s * kpad * C, C)
                self.tile_prologue(s, half, rows, qslot)
                if p.panel_buffers == 2 and mb + 1 < mb_count:
                    # Spread the next m-block's panel over this m-block's tiles.
                    for b in range(s * kb // nb, (s + 1) * kb // nb):
                        self.a_block(panel_slot(mb + 1) + mt * b, m0 + mt, block_rows(mb + 1), b)
                for b in range(kb):
                    self.matmul(wslot + R * b, panel_slot(mb) + mt * b, half, rows,
                                b > 0 or self.bias is not None)
                self.tile_epilogue(s, half, rows, m0, qslot)
                t += 1

    def _chunked(self):
        p, R, C = self.plan, self.cfg.rows, self.cfg.cols
        kb, nb, kpad, mt, kc = self.kb, self.nb, self.kpad, p.mt, p.k_chunk
        slot_rows = kc * R + mt * kc
        qbase = 2 * mt
        t = u = 0
        for mb in range(_ceil(p.m, mt)):
            m0, rows = mb * mt, min(mt, p.m - mb * mt)
            for s in range(nb):
                half, qslot = (t % 2) * mt, qbase + (t % 2) * 2
                self.tile_prologue(s, half, rows, qslot)
                for kb0 in range(0, kb, kc):
                    kcu = min(kc, kb - kb0)
                    base = (u % p.chunk_buffers) * slot_rows
                    self.load(_SPAD, base, kcu * R, C, self.names["w"],
                              s * kpad * C + kb0 * R * C, C)
                    for i in range(kcu):
                        self.a_block(base + kc * R + mt * i, m0, rows, kb0 + i)
                    for i in range(kcu):
                        self.matmul(base + R * i, base + kc * R + mt * i, half, rows,
                                    kb0 + i > 0 or self.bias is not None)
                    u += 1
                self.tile_epilogue(s, half, rows, m0, qslot)
                t += 1


# --- dependency tokens and instruction order --------------------------------------------------

class _Timeline:
    """Busy intervals of one shared resource; :meth:`reserve` takes the earliest free gap."""

    def __init__(self):
        self.starts, self.ends = [], []

    def reserve(self, ready, length):
        """Start of the earliest interval of ``length`` cycles at or after ``ready`` that
        overlaps no reserved one; reserves it."""
        i = bisect.bisect_right(self.ends, ready)
        t = ready
        while i < len(self.starts) and self.starts[i] < t + length:
            t = max(t, self.ends[i])
            i += 1
        self.starts.insert(i, t)
        self.ends.insert(i, t + length)
        return t


def _synchronize(config, ops):
    """Add the dependency tokens of ``ops`` (in program order) and return them reordered by
    estimated start time.

    1. Hazards: for each instruction and each other engine, the latest earlier instruction of that
       engine whose buffer rows conflict (it wrote rows this one reads or writes, or read rows
       this one writes).
    2. Tokens: a hazard already implied by program order per engine plus the tokens placed so far
       (vector clocks) needs none; otherwise the earlier instruction pushes and this one pops.
       Pops of one engine from another then pair with pushes in the same order (FIFO counts).
    3. Order: each instruction's estimated start (its engine and, for LOAD/STORE, the DMA free,
       every popped token's producer done, with the :class:`_Costs` model); sorting by it keeps each token's push before its pop
       and each engine's own order, so any program order built this way cannot deadlock.
    """
    depth = {_SPAD: config.scratchpad_depth, _ACC: config.accumulator_depth}
    last_write = {b: np.full((3, d), -1, np.int64) for b, d in depth.items()}
    last_read = {b: np.full((3, d), -1, np.int64) for b, d in depth.items()}
    engine_last = [-1, -1, -1]
    clocks = []           # clocks[j][e]: latest op of engine e known to happen before/at j
    sources = []          # sources[j]: ops whose tokens j pops
    for j, op in enumerate(ops):
        e = op.engine
        need = np.full(3, -1, np.int64)
        for b, lo, hi in op.reads:
            need = np.maximum(need, last_write[b][:, lo:hi].max(axis=1))
        for b, lo, hi in op.writes:
            need = np.maximum(need, last_write[b][:, lo:hi].max(axis=1))
            need = np.maximum(need, last_read[b][:, lo:hi].max(axis=1))
        need = [int(v) for v in need]
        need[e] = -1
        clock = list(clocks[engine_last[e]]) if engine_last[e] >= 0 else [-1, -1, -1]
        popped = []
        for f in sorted(Engine, key=lambda f: -need[f]):
            i = need[f]
            if i > clock[f]:
                ops[i].push.add(e)
                op.pop.add(f)
                popped.append(i)
                clock = [max(a, b) for a, b in zip(clock, clocks[i])]
        clock[e] = j
        clocks.append(clock)
        sources.append(popped)
        engine_last[e] = j
        for b, lo, hi in op.reads:
            last_read[b][e, lo:hi] = j
        for b, lo, hi in op.writes:
            last_read[b][:, lo:hi] = -1
            last_write[b][:, lo:hi] = -1
            last_write[b][e, lo:hi] = j
    free = [0, 0, 0]
    dma = _Timeline()       # LOADs and STOREs share one DMA
    start, done = [], []
    for j, op in enumerate(ops):
        t = max([free[op.engine]] + [done[i] for i in sources[j]])
        if op.opcode in (Opcode.LOAD, Opcode.STORE):
            t = dma.reserve(t, op.cost)
        start.append(t)
        done.append(t + op.cost + op.latency)
        free[op.engine] = t + op.cost
    order = sorted(range(len(ops)), key=lambda j: (start[j], j))
    return [ops[j] for j in order], max(done, default=0)


# --- encoding -------------------------------------------------------------------------------------

def _encode(opcode, pop, push, fields):
    """``isa.encode``, with its error as a :class:`CompileError`."""
    try:
        return encode(opcode, pop=pop, push=push, **fields)
    except IsaError as exc:
        raise CompileError(str(exc)) from None


# --- building programs ------------------------------------------------------------------------

class _Builder:
    """Collects layers (each a list of synchronized ops), tensors and constants; :meth:`build`
    places everything and encodes the instructions."""

    def __init__(self, config):
        self.cfg = _check_config(config)
        self.layers = []
        self.plans = []
        self.tensors = {}          # name -> (shape, dtype, layout)
        self.constants = {}        # name -> bytes
        self.inputs, self.outputs = [], []

    def tensor(self, name, shape, dtype, layout="row-major", data=None):
        self.tensors[name] = (tuple(int(s) for s in shape), dtype, layout)
        if data is not None:
            self.constants[name] = data

    def gemm(self, m, k, n, names, bias=None, requant=None):
        """Add one GEMM layer reading tensor ``names['a']`` and weights ``names['w']``
        (already declared), writing ``names['out']``; bias/params tensors are created here."""
        cfg = self.cfg
        plan = plan_gemm(cfg, m, k, n, bias=bias is not None, requant=requant is not None)
        prefix = names["prefix"]
        names = dict(names)
        if bias is not None:
            names["bias"] = f"{prefix}bias"
            self.tensor(names["bias"], (n,), "int32", "bias-strips", pack_bias(cfg, bias))
        if requant is not None:
            names["params"] = f"{prefix}params"
            self.tensor(names["params"], (2, n), "int32", "param-strips",
                        pack_params(cfg, requant.multipliers(), requant.shifts()))
        ops = _GemmEmitter(cfg, plan, names, bias, requant).emit()
        ordered, _ = _synchronize(cfg, ops)
        self.layers.append(ordered)
        self.plans.append(plan)

    def build(self):
        words = sum(len(ops) for ops in self.layers) + len(self.layers)   # FENCEs and the HALT
        address = _align(words * INSTRUCTION_BYTES)
        placed = {}
        for name, (shape, dtype, layout) in self.tensors.items():
            nbytes = _nbytes(self.cfg, shape, dtype, layout)
            placed[name] = Tensor(name, address, shape, dtype, layout, nbytes)
            address = _align(address + nbytes)
        if address > _ADDRESS_LIMIT:
            raise CompileError(f"the memory image must fit in 2**32 bytes, not {address}")
        instructions = []
        for i, ops in enumerate(self.layers):
            if i:
                instructions.append(encode(Opcode.FENCE))
            for op in ops:
                fields = dict(op.fields)
                if op.dram is not None:
                    fields["dram_addr"] = placed[op.dram[0]].address + op.dram[1]
                instructions.append(_encode(op.opcode, op.pop, op.push, fields))
        instructions.append(encode(Opcode.HALT))
        assert len(instructions) == words
        image = bytearray(address)
        image[0:words * INSTRUCTION_BYTES] = assemble(instructions)
        for name, data in self.constants.items():
            t = placed[name]
            image[t.address:t.address + len(data)] = data
        return Program(self.cfg, instructions, image, 0, placed, tuple(self.inputs),
                       tuple(self.outputs), tuple(self.plans))


def compile_gemm(config, m, k, n, *, bias=None, requant=None):
    """A program computing ``c = a @ b`` for inputs ``"a"`` (m, k) int8 (row-major) and ``"b"``
    (k, n) int8 (stored as weight strips by :meth:`Program.write_input`).

    Output ``"c"`` (m, n) is raw int32 (``requant`` None) or int8 requantized with ``requant``
    (a :class:`~tessera.sim.layers.Requant` for n channels). ``bias`` (int32 (n,) or None) is a
    constant added in the accumulator.
    """
    b = _Builder(config)
    m, k, n = _check_dim("m", m), _check_dim("k", k), _check_dim("n", n)
    if requant is not None and (not isinstance(requant, Requant) or requant.channels != n):
        raise CompileError(f"requant must be None or a Requant for {n} channels, not {requant!r}")
    if bias is not None and (not isinstance(bias, np.ndarray) or bias.dtype != np.int32
                             or bias.shape != (n,)):
        raise CompileError(f"bias must be None or an int32 array of shape ({n},), not {bias!r}")
    b.tensor("a", (m, k), "int8")
    b.tensor("b", (k, n), "int8", "weight-strips")
    b.tensor("c", (m, n), "int8" if requant is not None else "int32")
    b.inputs, b.outputs = ["a", "b"], ["c"]
    b.gemm(m, k, n, dict(a="a", w="b", out="c", prefix=""), bias, requant)
    return b.build()


def _layer_gemm(builder, layer, m, a, out, prefix, out_shape):
    w = layer.matrix()
    k, n = w.shape
    builder.tensor(f"{prefix}weights", (k, n), "int8", "weight-strips",
                   pack_weights(builder.cfg, w))
    builder.tensor(out, out_shape, "int8")
    builder.gemm(m, k, n, dict(a=a, w=f"{prefix}weights", out=out, prefix=prefix),
                 layer.gemm_bias(), layer.requant)


def compile_dense(config, layer, batch):
    """A program for a :class:`Dense` layer: input ``"x"`` (batch, K) int8, output ``"y"``
    (batch, N) int8."""
    if not isinstance(layer, Dense):
        raise TypeError(f"layer must be a Dense, not {type(layer).__name__}")
    batch = _check_dim("batch", batch)
    b = _Builder(config)
    b.tensor("x", (batch, layer.in_features), "int8")
    b.inputs, b.outputs = ["x"], ["y"]
    _layer_gemm(b, layer, batch, "x", "y", "", (batch, layer.out_features))
    return b.build()


def compile_conv2d(config, layer, input_shape):
    """A program for a :class:`Conv2d` on an NHWC input of ``input_shape``.

    The host does the im2col: input ``"x"`` is ``layer.im2col(x)``, (N*OH*OW, KH*KW*Cin) int8
    row-major; output ``"y"`` is (N, OH, OW, Cout) int8 (NHWC).
    """
    if not isinstance(layer, Conv2d):
        raise TypeError(f"layer must be a Conv2d, not {type(layer).__name__}")
    out_shape = layer.output_shape(tuple(input_shape), "input_shape")
    n, oh, ow, _ = out_shape
    b = _Builder(config)
    b.tensor("x", (n * oh * ow, layer.matrix().shape[0]), "int8")
    b.inputs, b.outputs = ["x"], ["y"]
    _layer_gemm(b, layer, n * oh * ow, "x", "y", "", out_shape)
    return b.build()


def compile_network(config, network, batch):
    """Compile a :class:`Network` into as few programs as possible (a :class:`CompiledNetwork`).

    ``batch`` is the network's input shape, or just the batch size when the first layer is a
    Dense. Layers run on the accelerator back to back in one program (a FENCE between layers,
    each layer's output region being the next one's input) except where a Conv2d needs an im2col
    of the previous layer's output: a non-pointwise Conv2d after another layer starts a new
    program (stage), and the driver does the im2col on the host between the two. A pointwise
    Conv2d (1x1, stride 1, no padding) needs no im2col and stays in the same program.
    """
    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, not {type(network).__name__}")
    if isinstance(batch, (int, np.integer)) and not isinstance(batch, bool):
        first = network.layers[0]
        if not isinstance(first, Dense):
            raise CompileError("batch must be the full NHWC input shape when the first layer "
                               f"is a Conv2d, not {batch!r}")
        batch = (_check_dim("batch", batch), first.in_features)
    shapes = network.shapes(tuple(batch))
    groups = []
    for i, layer in enumerate(network.layers):
        if i == 0 or (isinstance(layer, Conv2d) and not layer.is_pointwise):
            groups.append([])
        groups[-1].append(i)
    stages = []
    for group in groups:
        b = _Builder(config)
        first = network.layers[group[0]]
        host = first if isinstance(first, Conv2d) else None
        for pos, i in enumerate(group):
            layer, in_shape = network.layers[i], shapes[i]
            out_shape = layer.output_shape(in_shape)       # NHWC for a Conv2d (not flattened)
            m = math.prod(out_shape[:-1])
            a = "x" if pos == 0 else f"act{i}"
            if pos == 0:
                x_shape = (m, layer.matrix().shape[0]) if host is not None else in_shape
                b.tensor("x", x_shape, "int8")
            out = "y" if pos == len(group) - 1 else f"act{i + 1}"
            _layer_gemm(b, layer, m, a, out, f"layer{i}.", out_shape)
        b.inputs, b.outputs = ["x"], ["y"]
        last = network.layers[group[-1]]
        stages.append(Stage(b.build(), shapes[group[0]], last.output_shape(shapes[group[-1]]),
                            host))
    return CompiledNetwork(tuple(stages), shapes[0], shapes[-1])
