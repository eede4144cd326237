"""A step's product by register-blocked tiles over packed panels of the weights: the step products OpenBLAS
runs at a third to a half of a core's FMA rate.

    out[r, n] = sum_k a[r, k] B[k, n]     (a: h_{t-1} or a step's deltas; B: W^T or W)

B is packed once a call into panels of NR columns, (P, K, NR) with P = ceil(N / NR), each panel's rows
contiguous (:func:`pack_into`; the last panel zero past N). A tile of MR rows by one panel keeps its MR x NR
sums in vector registers while it runs over DEPTH values of k, loading NR / L vectors of the panel and
broadcasting MR values of a per k: MR NR / L fused multiply-adds per (MR + NR / L) loads.

Fusing the input projection into the step (B = [U^T; W^T], a = [x_t h_{t-1}]) was tried and dropped: the LSTM's
G3 forward took 46-48 ms against 32-37 with x U^T left to one large GEMM before the recurrence (that GEMM runs at
about 140 GFLOP/s a core, the fused product's share at about 105), and G2 gained nothing (4.57 against 4.59 ms).

Each element of out sums over k in order, one FMA each, whatever the tile it falls in, so a row's values do not
depend on the other rows or on how the rows split into tiles or threads. A sum may start at zero, at out's value, or
at a bias row: the input projection x U^T + b runs by these tiles too where the step's products do and I is small
(:func:`projection_wanted`), b + sum_k x_k U^T_k in that order.

Measured on the 2-core AVX-512 machine, one thread each (benchmarks/cpu_issue37/panel_products.md), GFLOP/s of
panels against one OpenBLAS call: float32 16 x 128 by 128 x 512 163 against 71, 32 x 256 by 256 x 1024 171
against 80, 64 x 1024 by 1024 x 4096 138 against 99; float64 79 against 42, 76 against 57, 70 against 68. Where
OpenBLAS stays on its small-matrix kernels they tie (16 x 128 by 128 x 384: 165 and 164), and a large product on
two OpenBLAS threads (G4's whole batch) outruns one thread of panels, so the panels run where a step's product
has one thread to itself (:func:`wanted`).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from rnnspec.kernels.cpu import tuning
from rnnspec.kernels.cpu.scratch import aligned_empty
from rnnspec.kernels.cpu.simd import AVX512, VECTOR_BYTES, address, spread, vector_codegen

#: rows per tile and vectors (of VECTOR_BYTES) per panel: 6 x 4 = 24 of AVX-512's 32 registers hold sums, 4 the
#: panel's loads, 1 the broadcast value; on AVX2 a 64-byte vector is two of its 16 registers, so 6 x 1 (12 sums,
#: 2 loads, 1 broadcast: the classic Haswell tile; 3 x 2 would need 17)
ROWS, VECTORS = (6, 4) if AVX512 else (6, 1)

_I64 = ir.IntType(64)


def columns(dtype: np.dtype) -> int:
    """NR: the columns of a panel in ``dtype``."""
    return VECTORS * VECTOR_BYTES // np.dtype(dtype).itemsize


#: how a tile's sums start (a compile-time constant of :func:`_tile`): at zero, at out's values, or at a row of
#: ``start`` (the bias of a projection, the same for every row)
ZERO, OUT, START = 0, 1, 2


@intrinsic(prefer_literal=True)
def _tile(typingctx, a, panel, out, start, row0, col0, rows, mode):
    """out[row0:row0 + rows, col0:col0 + NR] = (its sums' start, by ``mode``: ZERO, OUT or START) + a[row0:row0 +
    rows] @ panel; ``rows`` and ``mode`` compile-time constants; panel (K, NR) and out with unit column stride;
    start (NR,) contiguous, read where ``mode`` is START."""
    if not (isinstance(rows, types.IntegerLiteral) and isinstance(mode, types.IntegerLiteral)
            and isinstance(panel, types.Array) and a.dtype == panel.dtype == out.dtype == start.dtype
            and panel.dtype in (types.float32, types.float64)):
        return None
    count, dtype, begin = rows.literal_value, panel.dtype, mode.literal_value

    def codegen(context, builder, signature, args):
        (a_array, panel_array, out_array), size, scalar, vector, fma = vector_codegen(context, builder, signature,
                                                                                      args, dtype)
        row0, col0 = args[4], args[5]
        out_row_stride, out_col_stride = cgutils.unpack_tuple(builder, out_array.strides, 2)
        first_column = builder.mul(col0, out_col_stride)
        out_lines = [builder.add(builder.mul(builder.add(row0, ir.Constant(_I64, i)), out_row_stride), first_column)
                     for i in range(count)]

        def out_at(i, v):
            at = builder.add(out_lines[i], ir.Constant(_I64, v * VECTOR_BYTES))
            return address(builder, out_array.data, at, vector)

        if begin == START:
            start_data = context.make_array(signature.args[3])(context, builder, args[3]).data
            starts = [builder.load(address(builder, start_data, ir.Constant(_I64, v * VECTOR_BYTES), vector),
                                   align=size) for v in range(VECTORS)]

        def initial(i, v):
            if begin == ZERO:
                return ir.Constant(vector, None)
            return builder.load(out_at(i, v), align=size) if begin == OUT else starts[v]

        sums = [[cgutils.alloca_once_value(builder, initial(i, v)) for v in range(VECTORS)] for i in range(count)]
        panel_row = cgutils.unpack_tuple(builder, panel_array.strides, 2)[0]
        row_stride, col_stride = cgutils.unpack_tuple(builder, a_array.strides, 2)
        inner = cgutils.unpack_tuple(builder, a_array.shape, 2)[1]
        starts_a = [builder.mul(builder.add(row0, ir.Constant(_I64, i)), row_stride) for i in range(count)]
        with cgutils.for_range(builder, inner) as loop:
            k = loop.index
            line = builder.mul(k, panel_row)
            loaded = [builder.load(address(builder, panel_array.data,
                                       builder.add(line, ir.Constant(_I64, v * VECTOR_BYTES)), vector), align=size)
                      for v in range(VECTORS)]
            step = builder.mul(k, col_stride)
            for i in range(count):  # sums[i] += a[row0 + i, k] panel[k]
                value = builder.load(address(builder, a_array.data, builder.add(starts_a[i], step), scalar))
                lanes = spread(builder, value, vector)
                for v in range(VECTORS):
                    builder.store(builder.call(fma, [lanes, loaded[v], builder.load(sums[i][v])]), sums[i][v])
        for i in range(count):
            for v in range(VECTORS):
                builder.store(builder.load(sums[i][v]), out_at(i, v), align=size)
        return context.get_dummy_value()

    return types.void(a, panel, out, start, row0, col0, rows, mode), codegen


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _rows(a, panel, out, start, row0, col0, rows, mode):
    """One tile of ``rows`` rows (1..ROWS; each count its own compiled tile)."""
    if rows == ROWS:
        _tile(a, panel, out, start, row0, col0, ROWS, mode)
    elif rows == 5:
        _tile(a, panel, out, start, row0, col0, 5, mode)
    elif rows == 4:
        _tile(a, panel, out, start, row0, col0, 4, mode)
    elif rows == 3:
        _tile(a, panel, out, start, row0, col0, 3, mode)
    elif rows == 2:
        _tile(a, panel, out, start, row0, col0, 2, mode)
    else:
        _tile(a, panel, out, start, row0, col0, 1, mode)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _tiles(a, panel, out, start, row0, col0, rows, mode):
    """One tile, its sums started as ``mode`` says (ZERO, OUT or START)."""
    if mode == ZERO:
        _rows(a, panel, out, start, row0, col0, rows, ZERO)
    elif mode == OUT:
        _rows(a, panel, out, start, row0, col0, rows, OUT)
    else:
        _rows(a, panel, out, start, row0, col0, rows, START)


#: rows of a panel read in one pass over the tiles: 128 x NR (32 KiB) stays in a 48 KiB L1 while every tile
#: of rows reads it (32 x 256 by 256 x 1024 in float32: 177 GFLOP/s in passes of 128 rows, 141 in one pass)
DEPTH = 128


@njit(cache=True, nogil=True, error_model="numpy")
def product(a, panels, out, onto=False, bias=None):
    """out (R, N) = a @ B, out += a @ B where ``onto``, or out = b + a @ B for a bias row ``bias`` (N,) where one is
    given, with a (R, K) and B packed in ``panels`` (:func:`pack_into`), out's rows C-contiguous. Each sum starts at
    zero, out's value or b_n, then adds a[r, k] B[k, n] in order of k. In passes of DEPTH rows of B (the first
    starts the sums, the others add to them), panel by panel, every tile of rows in turn; the last, partial panel's
    tiles go through a scratch and only its N mod NR columns reach out."""
    R, N = out.shape
    K = a.shape[1]
    width = panels.shape[2]
    whole = -(-N // width)
    left = N - (whole - 1) * width
    partial = left < width
    scratch = np.empty((R if partial else 0, width), out.dtype)
    if partial and onto:
        for r in range(R):
            scratch[r, :left] = out[r, (whole - 1) * width:]
    begin = ZERO
    start = np.zeros(0, out.dtype)
    if onto:
        begin = OUT
    if bias is not None:  # the row b, zero past N (the partial panel's tiles read NR columns of it)
        begin = START
        start = np.zeros(whole * width, out.dtype)
        start[:N] = bias
    for k0 in range(0, max(K, 1), DEPTH):
        part = a[:, k0:k0 + DEPTH]
        mode = begin if k0 == 0 else OUT
        for p in range(whole):
            panel = panels[p, k0:k0 + DEPTH]
            target, col = (scratch, 0) if partial and p == whole - 1 else (out, p * width)
            first = start[p * width:(p + 1) * width] if mode == START else start
            for r0 in range(0, R, ROWS):
                _tiles(part, panel, target, first, r0, col, min(ROWS, R - r0), mode)
    if partial:
        for r in range(R):
            out[r, (whole - 1) * width:] = scratch[r, :left]


@njit(cache=True, nogil=True, error_model="numpy")
def pack_into(source, panels, k0):
    """panels[p, k0 + k, j] = source[k, p NR + j] for source (K, N), zero past N: source's rows become rows
    k0..k0 + K - 1 of every panel."""
    width = panels.shape[2]
    K, N = source.shape
    for p in range(panels.shape[0]):
        c0 = p * width
        n = min(width, N - c0)
        for k in range(K):
            line, row = panels[p, k0 + k], source[k]
            for j in range(n):
                line[j] = row[c0 + j]
            for j in range(n, width):
                line[j] = 0


def packed_shape(K: int, N: int, dtype: np.dtype) -> tuple[int, int, int]:
    """The panels of a (K, N) matrix: (P, K, NR), P = ceil(N / NR)."""
    width = columns(dtype)
    return -(-N // width), K, width


def pack(b: np.ndarray) -> np.ndarray:
    """b (K, N), C-contiguous, packed in panels for :func:`product`."""
    panels = aligned_empty(packed_shape(*b.shape, b.dtype), b.dtype)
    pack_into(b, panels, 0)
    return panels


def unused(dtype: np.dtype) -> np.ndarray:
    """The panels argument of a loop that runs its products another way: empty, of the loops' type."""
    return np.empty((0, 0, columns(dtype)), dtype)


#: the environment variable that forces the choice: "always" (every product of a cell that takes panels, of any
#: size, on any thread) or "never"
FORCE = "RNNSPEC_CPU_PANELS"


def wanted(blas_rows: int, one_thread: bool, rows: int | None = None) -> bool:
    """Whether a step's products run by panels: products large enough for BLAS calls (``blas_rows`` > 0; the
    smaller ones run simd.row_times) and ``panels.enabled`` (:mod:`tuning`); on one thread (a half of rows.py, or
    OpenBLAS held to one), or, given the products' ``rows``, where OpenBLAS's two threads would share them but
    there are between ``panels.min_threaded_rows`` and ``panels.max_threaded_rows`` of them: there the panels run on
    the calling thread alone and still win (at 4 rows OpenBLAS's threads took 68 us a step for the LSTM's 4 x 256 by
    256 x 1024 float32 product). The gated cells give ``rows``; Elman's one-gate products (256 x 256 at H = 256)
    lost there (training at B = 4: 1.65 against 1.30 ms) and run by panels on one thread only. Or as FORCE says."""
    force = tuning.forced(FORCE)
    if force is not None:
        return force
    value = tuning.value
    beside_threads = rows is not None and value("panels.min_threaded_rows") <= rows <= value("panels.max_threaded_rows")
    return blas_rows > 0 and value("panels.enabled") >= 1 and (one_thread or beside_threads)


def projection_wanted(by_panels: bool, one_thread: bool, inner: int) -> bool:
    """Whether a run's input projection x U^T (``inner`` = I columns of x) runs by panels too: where its steps'
    products do (``by_panels``) on one thread (``one_thread``: where OpenBLAS has two, its T B rows are theirs; or
    as FORCE says) and I <= DEPTH, so that every tile's sums finish in one pass over k.
    There OpenBLAS on one thread ran the G2 projection (1600 x 64 by 64 x 512) at 125 GFLOP/s float32 and 60
    float64, the panels at 185 and 86; at I = 256 (G3's 3200 x 256 by 256 x 1024) OpenBLAS was ahead, 190 against
    153 and 88 against 68 (benchmarks/cpu_issue37/README.md, "Projections by panels")."""
    return by_panels and (one_thread or tuning.forced(FORCE) is True) and inner <= DEPTH
