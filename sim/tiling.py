"""Splitting a GEMM into tensor-core tiles and putting the results back together.

The tensor core multiplies one ``rows`` x ``cols`` weight tile by a stream of activation rows of
``rows`` lanes. A GEMM ``a (M x K) @ w (K x N)`` is cut into ``ceil(K/rows) * ceil(N/cols)`` tiles;
tails are zero-padded (a zero weight or a zero activation adds nothing), and the partial products of
the K-tiles of one N-block are summed with the golden model's int32 wrap-around.
"""

from dataclasses import dataclass

import numpy as np

from . import golden

__all__ = ["Tile", "split_gemm", "assemble"]


@dataclass
class Tile:
    """One tensor-core job: ``activations @ weights`` for K-block ``k`` and N-block ``n``."""
    k: int
    n: int
    weights: np.ndarray       # rows x cols int8, zero-padded
    activations: np.ndarray   # M x rows int8, zero-padded


def _check_operand(name, x):
    if not isinstance(x, np.ndarray) or x.dtype != np.int8 or x.ndim != 2:
        raise TypeError(f"{name} must be a 2-D int8 numpy array, not {_describe(x)}")


def _describe(x):
    if isinstance(x, np.ndarray):
        return f"{x.ndim}-D {x.dtype} array"
    return repr(type(x).__name__)


def split_gemm(a, w, rows, cols):
    """Cut ``a @ w`` into tiles for a ``rows`` x ``cols`` array, N-block-major then K-block."""
    _check_operand("a", a)
    _check_operand("w", w)
    if a.shape[1] != w.shape[0]:
        raise ValueError(f"a is {a.shape[0]}x{a.shape[1]} but w is {w.shape[0]}x{w.shape[1]}: "
                         f"inner dimensions differ")
    m, k = a.shape
    n = w.shape[1]
    if m == 0 or k == 0 or n == 0:
        raise ValueError(f"GEMM dimensions must be positive, not M={m}, K={k}, N={n}")
    tiles = []
    for nb in range(-(-n // cols)):
        for kb in range(-(-k // rows)):
            wt = np.zeros((rows, cols), np.int8)
            block = w[kb * rows:(kb + 1) * rows, nb * cols:(nb + 1) * cols]
            wt[:block.shape[0], :block.shape[1]] = block
            at = np.zeros((m, rows), np.int8)
            block = a[:, kb * rows:(kb + 1) * rows]
            at[:, :block.shape[1]] = block
            tiles.append(Tile(kb, nb, wt, at))
    return tiles


def assemble(tiles, results, n):
    """Sum per-tile int32 results (each M x cols) into the M x ``n`` GEMM result, wrapping."""
    m = tiles[0].activations.shape[0]
    cols = tiles[0].weights.shape[1]
    blocks = -(-n // cols)
    acc = np.zeros((m, blocks * cols), np.int64)
    for tile, result in zip(tiles, results, strict=True):
        acc[:, tile.n * cols:(tile.n + 1) * cols] += np.asarray(result, np.int64)
    return golden.wrap_int32(acc[:, :n])
