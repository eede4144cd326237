"""A row times a matrix with its sums held in vector registers: the step products too small for BLAS.

    out[n] = sum_k a[k] b[k, n],   by fused multiply-adds.

The plain loop (add four rows of b into out per pass) loaded and stored its row of out at every pass,
which bounded it at about half the FMA rate: 1 x 32 by 32 x 128 took 0.21-0.23 us a step. Here columns
go in blocks of up to WIDEST vectors of VECTOR_BYTES, each kept in a register for the whole sum over k,
so only b is loaded: 0.10-0.15 us. LLVM has no way to see that out and b do not overlap, hence the
intrinsic, which states the registers outright. A column's sum order depends on the width of the block
it falls in (a narrow block splits it into interleaved chains, :func:`_block`), so it is fixed by N,
the same for every row and every call; columns past the last whole vector sum in order of k.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from rnnspec.kernels.cpu.blas import cpu_flags

#: one vector register: 64 bytes (AVX-512); LLVM splits it in two where the CPU has 32-byte registers
VECTOR_BYTES = 64


def _compiles_avx512() -> bool:
    """Whether the code Numba compiles may use AVX-512: the features NUMBA_CPU_FEATURES names (a build for another
    CPU, or an AVX2-only machine emulated on this one: :func:`compiled_isa`), else the CPU's flags."""
    built = compiled_isa()
    return built == "avx512" if built is not None else "avx512f" in cpu_flags()


def compiled_isa() -> str | None:
    """The widest vector instructions of the code Numba compiles where NUMBA_CPU_FEATURES names them ("avx512",
    "avx2" or "other"; kernels/cpu/emulate.py sets them), None where Numba compiles for this CPU."""
    from numba.core import config

    if not config.CPU_FEATURES:
        return None
    features = config.CPU_FEATURES.split(",")
    return "avx512" if "+avx512f" in features else "avx2" if "+avx2" in features else "other"


AVX512 = _compiles_avx512()
#: the vector registers LLVM allocates: 32 of 64 bytes (AVX-512), else 16 of 32 (AVX2)
REGISTERS, REGISTER_BYTES = (32, 64) if AVX512 else (16, 32)
#: vectors summed at once: 8 of 32 registers (AVX-512), else 4 (2 x 4 of AVX2's 16), leaving room for b's loads
WIDEST = 8 if AVX512 else 4

_I64 = ir.IntType(64)


def fma_function(builder, ty):
    """LLVM's fused multiply-add for ``ty``, a float or double or a vector of them (llvm.fma.v16f32, ...)."""
    vector = isinstance(ty, ir.VectorType)
    element = ty.element if vector else ty
    name = f"llvm.fma.{f'v{ty.count}' if vector else ''}f{32 if isinstance(element, ir.FloatType) else 64}"
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty] * 3), name)


def address(builder, base, offset_bytes, ty):
    """A pointer of type ``ty*`` at ``base`` + ``offset_bytes``."""
    raw = builder.gep(builder.bitcast(base, ir.IntType(8).as_pointer()), [offset_bytes])
    return builder.bitcast(raw, ty.as_pointer())


def vector_codegen(context, builder, signature, args, dtype):
    """What an intrinsic over arrays of ``dtype`` starts from: the array structs of its first three arguments, the
    dtype's size in bytes and LLVM type, the vector of VECTOR_BYTES of it, and that vector's fused multiply-add."""
    arrays = [context.make_array(t)(context, builder, v) for t, v in zip(signature.args[:3], args[:3])]
    size = dtype.bitwidth // 8
    scalar = context.get_data_type(dtype)
    vector = ir.VectorType(scalar, VECTOR_BYTES // size)
    return arrays, size, scalar, vector, fma_function(builder, vector)


def spread(builder, value, vector):
    """``value`` in every lane of ``vector``."""
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), vector.count), None))


@intrinsic(prefer_literal=True)
def _block(typingctx, a, b, out, col, vectors):
    """out[col:col + vectors L] = a @ b[:, col:col + vectors L], L = VECTOR_BYTES / itemsize, ``vectors``
    a compile-time constant; b and out C-contiguous, a any 1D array of the same dtype.

    A block narrower than WIDEST sums in ``chains`` = WIDEST // vectors interleaved partial sums (k mod
    chains; the k past the last whole round go to the first), added in order at the end: one chain of
    dependent FMAs per register would wait on the FMA's latency (1 x 128 by 128 x 32: 0.18 us a step)."""
    if not (isinstance(vectors, types.IntegerLiteral) and isinstance(b, types.Array) and b.layout == "C"
            and isinstance(out, types.Array) and out.layout == "C" and a.dtype == b.dtype == out.dtype
            and b.dtype in (types.float32, types.float64)):
        return None
    count, dtype = vectors.literal_value, b.dtype
    chains = max(1, WIDEST // count)

    def codegen(context, builder, signature, args):
        (a_array, b_array, out_array), size, scalar, vector, fma = vector_codegen(context, builder, signature, args,
                                                                                  dtype)
        column_bytes = builder.mul(args[3], ir.Constant(_I64, size))
        a_stride = cgutils.unpack_tuple(builder, a_array.strides, 1)[0]
        b_stride = cgutils.unpack_tuple(builder, b_array.strides, 2)[0]
        inner = cgutils.unpack_tuple(builder, a_array.shape, 1)[0]
        sums = [[cgutils.alloca_once_value(builder, ir.Constant(vector, None)) for _ in range(count)]
                for _ in range(chains)]

        def add_row(k, chain):
            """sums[chain][i] += a[k] b[k, block i]"""
            value = builder.load(address(builder, a_array.data, builder.mul(k, a_stride), scalar))
            every_lane = spread(builder, value, vector)
            row = builder.add(builder.mul(k, b_stride), column_bytes)
            for i, total in enumerate(sums[chain]):
                at = builder.add(row, ir.Constant(_I64, i * VECTOR_BYTES))
                loaded = builder.load(address(builder, b_array.data, at, vector), align=size)
                builder.store(builder.call(fma, [every_lane, loaded, builder.load(total)]), total)

        rounds = builder.udiv(inner, ir.Constant(_I64, chains))
        with cgutils.for_range(builder, rounds) as loop:
            first = builder.mul(loop.index, ir.Constant(_I64, chains))
            for chain in range(chains):
                add_row(builder.add(first, ir.Constant(_I64, chain)), chain)
        done = builder.mul(rounds, ir.Constant(_I64, chains))
        with cgutils.for_range(builder, builder.sub(inner, done)) as loop:
            add_row(builder.add(done, loop.index), 0)
        for i in range(count):
            total = builder.load(sums[0][i])
            for chain in range(1, chains):
                total = builder.fadd(total, builder.load(sums[chain][i]))
            at = builder.add(column_bytes, ir.Constant(_I64, i * VECTOR_BYTES))
            builder.store(total, address(builder, out_array.data, at, vector), align=size)
        return context.get_dummy_value()

    return types.void(a, b, out, col, vectors), codegen


@intrinsic
def fma(typingctx, x, y, z):
    """x y + z rounded once: the scalar columns' step, the same operation as the vector blocks'."""
    if not (x == y == z and x in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        return builder.call(fma_function(builder, context.get_data_type(x)), list(args))

    return x(x, y, z), codegen


@njit(cache=True, nogil=True, error_model="numpy")
def row_times(a, b, out):
    """out = a @ b for a (K,), b (K, N) and out (N,), b and out C-contiguous: whole vectors WIDEST at a
    time, the remaining whole vectors (fewer than WIDEST) in blocks of 4, 2 and 1 as they fit, then the
    columns left over by scalar FMAs."""
    lanes = VECTOR_BYTES // b.itemsize
    cols = b.shape[1]
    col = 0
    while col + WIDEST * lanes <= cols:
        _block(a, b, out, col, WIDEST)
        col += WIDEST * lanes
    if col + 4 * lanes <= cols:
        _block(a, b, out, col, 4)
        col += 4 * lanes
    if col + 2 * lanes <= cols:
        _block(a, b, out, col, 2)
        col += 2 * lanes
    if col + lanes <= cols:
        _block(a, b, out, col, 1)
        col += lanes
    for n in range(col, cols):
        out[n] = 0
    for k in range(a.shape[0]):  # k outermost: the columns' sums are independent chains
        value, row = a[k], b[k]
        for n in range(col, cols):
            out[n] = fma(value, row[n], out[n])
