"""The matrix products of the CUDA kernels (all the work that is parallel over time), numba-cuda.

C = op(A) @ op(B) with op(X) = X or X^T: each block computes a (TILE * PER) x (TILE * PER) tile of C
with TILE x TILE threads, PER x PER outputs per thread held in registers, operands staged through
shared memory BK terms at a time and loaded so that consecutive threads read consecutive addresses
whichever operand is transposed. A product with few output tiles and a long inner dimension (dW
and dU: H x H from T*B terms) splits the inner dimension over ``splits`` blocks that write partial
products, summed by a second kernel in a fixed order: no atomics, so results are bit-reproducible.
Two products with the same left operand (dU = deltas^T X and dW = deltas^T H) run as one launch, a
pair, and with dx = deltas U as a third when none is split: each launch costs host time
(benchmarks/gpu_run_3.txt), and the products' blocks then share the GPU rather than running one
after the other.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from rnnspec.kernels.cuda.launches import launch
from rnnspec.kernels.numpy_compat import SIMULATED, cuda_module

cuda = cuda_module()

TILE = 2 if SIMULATED else 16  # threads per block side (the simulator runs each thread as a Python thread)
PER = 4 if SIMULATED else 4  # outputs per thread side
BK = TILE  # inner terms per shared-memory stage
SPLIT_TERMS = 8 * BK  # inner terms per block, at least, when the inner dimension is split


@cache
def _tile_product(trans_a: bool, trans_b: bool, dtype: str, split: bool):
    """device function product_tile(A, B, out, z, splits): this block's tile of op(A) @ op(B) over
    the z-th of ``splits`` ranges of the inner dimension, into out (M, N), or out[z] of (splits, M, N)
    with ``split``; a block past out's tiles does nothing."""
    numpy_dtype = np.dtype(dtype)
    zero = numpy_dtype.type(0)
    side = TILE * PER
    threads = TILE * TILE
    # shapes must be constants for numba-cuda: computed here, not in the kernel (the simulator accepts either)
    a_shape, b_shape = (side, BK + 1), (BK, side + 1)  # +1: no bank conflicts on the stores
    outputs = PER * PER
    row_axis = 1 if split else 0

    if split:
        @cuda.jit(device=True, inline=True)
        def store(out, z, r, c, value):
            out[z, r, c] = value
    else:
        @cuda.jit(device=True, inline=True)
        def store(out, z, r, c, value):
            out[r, c] = value

    @cuda.jit(device=True, inline=True)
    def product_tile(A, B, out, z, splits):
        """This block's tile of out (of out[z] when split) over the z-th of ``splits`` inner ranges."""
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TILE + tx
        top, left = cuda.blockIdx.y * side, cuda.blockIdx.x * side
        rows, cols = out.shape[row_axis], out.shape[row_axis + 1]
        if top >= rows or left >= cols:  # past the smaller product of a pair: the whole block leaves
            return
        inner = A.shape[0] if trans_a else A.shape[1]
        per_split = BK * ((inner + splits * BK - 1) // (splits * BK))
        begin = z * per_split
        end = min(inner, begin + per_split)
        a_tile = cuda.shared.array(a_shape, numpy_dtype)
        b_tile = cuda.shared.array(b_shape, numpy_dtype)
        acc = cuda.local.array(outputs, numpy_dtype)
        a_frag = cuda.local.array(PER, numpy_dtype)
        b_frag = cuda.local.array(PER, numpy_dtype)
        for e in range(PER * PER):
            acc[e] = 0
        for start in range(begin, end, BK):
            for e in range(tid, side * BK, threads):
                if trans_a:  # A[k, row]: consecutive threads, consecutive rows
                    r, kk = e % side, e // side
                    ok = top + r < rows and start + kk < end
                    a_tile[r, kk] = A[start + kk, top + r] if ok else zero
                else:  # A[row, k]: consecutive threads, consecutive k
                    r, kk = e // BK, e % BK
                    ok = top + r < rows and start + kk < end
                    a_tile[r, kk] = A[top + r, start + kk] if ok else zero
                if trans_b:  # B[col, k]
                    c, kk = e // BK, e % BK
                    ok = left + c < cols and start + kk < end
                    b_tile[kk, c] = B[left + c, start + kk] if ok else zero
                else:  # B[k, col]
                    c, kk = e % side, e // side
                    ok = left + c < cols and start + kk < end
                    b_tile[kk, c] = B[start + kk, left + c] if ok else zero
            cuda.syncthreads()
            for kk in range(BK):
                for p in range(PER):
                    a_frag[p] = a_tile[ty + p * TILE, kk]
                    b_frag[p] = b_tile[kk, tx + p * TILE]
                for p in range(PER):
                    for q in range(PER):
                        acc[p * PER + q] += a_frag[p] * b_frag[q]
            cuda.syncthreads()
        for p in range(PER):
            for q in range(PER):
                r, c = top + ty + p * TILE, left + tx + q * TILE
                if r < rows and c < cols:
                    store(out, z, r, c, acc[p * PER + q])

    return product_tile


@cache
def gemm(trans_a: bool, trans_b: bool, dtype: str, split: bool = False, pair: bool = False):
    """kernel(A, B, out), or with ``pair`` kernel(A, B, out, B2, out2): out = op(A) @ op(B) (and
    out2 = op(A) @ op(B2)); out is (M, N), or with ``split`` (splits, M, N) and out[z] = the product
    over the z-th range of the inner dimension. Grid (ceil(N / (TILE*PER)), ceil(M / (TILE*PER)),
    splits), splits doubled for a pair (the first half for out, the second for out2; N and M the
    larger of the two products'), block (TILE, TILE)."""
    product_tile = _tile_product(trans_a, trans_b, dtype, split)
    if pair:
        @cuda.jit
        def pair_kernel(A, B, out, B2, out2):
            splits = cuda.gridDim.z // 2
            second = cuda.blockIdx.z >= splits
            z = cuda.blockIdx.z - splits if second else cuda.blockIdx.z
            product_tile(A, B2 if second else B, out2 if second else out, z, splits)
        return pair_kernel

    @cuda.jit
    def kernel(A, B, out):
        product_tile(A, B, out, cuda.blockIdx.z, cuda.gridDim.z)
    return kernel


@cache
def deltas_products(dtype: str):
    """kernel(A, B, out, B2, out2, B3, out3): out = A @ B, out2 = A^T @ B2 and out3 = A^T @ B3, none
    split: the backward pass's three products of the deltas (dx, dU, dW) in one launch. Grid
    (ceil(N / (TILE*PER)), ceil(M / (TILE*PER)), 3), N and M the largest of the three products'."""
    plain, transposed = (_tile_product(trans_a, False, dtype, False) for trans_a in (False, True))

    @cuda.jit
    def kernel(A, B, out, B2, out2, B3, out3):
        which = cuda.blockIdx.z
        if which == 0:
            plain(A, B, out, 0, 1)
        else:
            transposed(A, B2 if which == 1 else B3, out2 if which == 1 else out3, 0, 1)
    return kernel


def clear_compiled() -> None:
    """Drop the kernels built so far (their closures hold TILE, PER and BK: tests change them)."""
    for builder in (_tile_product, gemm, deltas_products):
        builder.cache_clear()


@cuda.jit(device=True, inline=True)
def _sum_entry(parts, out, i, j):
    if i < out.shape[0] and j < out.shape[1]:
        acc = parts[0, i, j]
        for z in range(1, parts.shape[0]):
            acc += parts[z, i, j]
        out[i, j] = acc


@cuda.jit
def sum_parts(parts, out):
    """out = sum_z parts[z], in order of z; one thread per entry."""
    i, j = cuda.grid(2)
    _sum_entry(parts, out, i, j)


@cuda.jit
def sum_part_pairs(parts, out, parts2, out2):
    """sum_parts for the two products of a pair: grid z 0 sums parts into out, 1 parts2 into out2."""
    i, j = cuda.grid(2)
    if cuda.blockIdx.z == 0:
        _sum_entry(parts, out, i, j)
    else:
        _sum_entry(parts2, out2, i, j)


#: inner terms that one block sums in about the time that a split's second launch (the sum) costs.
#: Through numba-cuda's launch that was 36 us or more, and 1024 kept B = 1, T = 1000 unsplit; through
#: the lean launch (cuda_launch) splitting those 1000 terms made a forward+backward call at
#: (1000, 1, 64, 64) 1.08 ms against 1.24 ms unsplit, and 1.07 ms against 1.18 ms at
#: (1000, 1, 128, 128) (H100, benchmarks/gpu_run_4.txt)
UNSPLIT_TERMS = 256


def splits_for(outputs, inner: int, multiprocessors: int) -> int:
    """Blocks over the inner dimension for products of these (rows, cols) ``outputs`` launched
    together: enough to fill the GPU when they have few tiles and the inner dimension is long
    enough to be worth the second launch that sums the parts."""
    if inner <= UNSPLIT_TERMS:
        return 1
    side = TILE * PER
    tiles = sum(math.ceil(rows / side) * math.ceil(cols / side) for rows, cols in outputs)
    return max(1, min(math.ceil(inner / SPLIT_TERMS), multiprocessors // tiles))


def matmul_into(A, B, C, trans_a: bool, trans_b: bool, splits: int, parts=None) -> None:
    """C = op(A) @ op(B) on the device, the inner dimension split over ``splits`` blocks; C contiguous
    (M, N); ``parts`` (splits, M, N) holds the partial products when splits > 1 (allocated if None)."""
    _products(A, ((B, C, parts),), trans_a, trans_b, splits)


def deltas_products_into(A, dx: tuple, dU: tuple, dW: tuple) -> None:
    """dx = A @ B, dU = A^T @ B2 and dW = A^T @ B3 in one launch, for dx = (B, C) and likewise, all
    unsplit (see ``deltas_products``)."""
    products = (dx, dU, dW)
    grid = _grid(*_largest([C.shape for _, C in products]), 3)
    launch(deltas_products(str(A.dtype)), grid, (TILE, TILE), A, *(v for product in products for v in product))


def _largest(shapes) -> tuple[int, int]:
    """The most rows and the most columns of these (rows, cols) outputs of one launch."""
    return max(shape[0] for shape in shapes), max(shape[1] for shape in shapes)


def _grid(rows: int, cols: int, depth: int) -> tuple[int, int, int]:
    """The product kernels' grid: one block per output tile, ``depth`` deep."""
    side = TILE * PER
    return math.ceil(cols / side), math.ceil(rows / side), depth


def matmul_pair_into(A, first: tuple, second: tuple, trans_a: bool, trans_b: bool, splits: int) -> None:
    """matmul_into for two products with the same left operand, first = (B, C, parts) and second
    likewise, in one launch (two when split)."""
    _products(A, (first, second), trans_a, trans_b, splits)


def _products(A, products, trans_a: bool, trans_b: bool, splits: int) -> None:
    outs = []
    for B, C, parts in products:
        if splits == 1:
            outs += (B, C)
            continue
        if parts is None:
            parts = cuda.device_array((splits, *C.shape), C.dtype)
        outs += (B, parts)
    rows, cols = _largest([C.shape for _, C, _ in products])
    grid = _grid(rows, cols, splits * len(products))
    launch(gemm(trans_a, trans_b, str(A.dtype), splits > 1, len(products) == 2), grid, (TILE, TILE), A, *outs)
    if splits > 1:
        sums = [v for (_, C, _), parts in zip(products, outs[1::2]) for v in (parts, C)]
        launch(sum_parts if len(products) == 1 else sum_part_pairs,
               (math.ceil(rows / TILE), math.ceil(cols / TILE), len(products)), (TILE, TILE), *sums)
