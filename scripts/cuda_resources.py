"""Compile the CUDA recurrence kernels for sm_90 without a GPU and print ptxas's resource report.

Needs a CUDA toolkit (NVVM, NVRTC and ptxas; CUDA_HOME pointing at it), no GPU. Answers, before any
device time is spent, whether the weights that a layout keeps in registers stay there (0 bytes of
stack frame, no spills, no ld.local in the PTX) and how many registers and how much shared memory a
block of the layout needs for each size of the GPU benchmark:

    NUMBA_ENABLE_CUDASIM=0 CUDA_HOME=/usr/local/cuda python scripts/cuda_resources.py [--gated]

``--gated``: the gated cells' kernels alone (rnnspec.kernels.cuda.gated_recurrence and their host
side's helpers), at the sizes of their GPU benchmark.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from types import SimpleNamespace

from rnnspec import catalogue

H100_MULTIPROCESSORS = 132


def signature(dtype: str):
    from numba import types

    scalar = types.float32 if dtype == "float32" else types.float64
    a3, a2 = (types.Array(scalar, n, "C") for n in (3, 2))
    return (a3, a3, a2, a2, types.boolean, a3, a2)


def report(ptx: str, ptxas: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as fh:
            fh.write(ptx)
        # relocatable where the kernel calls into cudadevrt (the grid sync), linked at load time
        relocatable = ["-c"] if ".extern .func" in ptx else []
        done = subprocess.run([ptxas, "-arch=sm_90", "-v", *relocatable, path, "-o", os.path.join(tmp, "k.cubin")],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"ptxas failed: {done.stderr}")
        text = done.stderr
    # a relocatable compile does not count module-level shared arrays against the kernel: read the PTX
    declared_shared = sum(int(n) for n in re.findall(r"\.shared \.align \d+ \.b8 \w+\[(\d+)\]", ptx))
    numbers = lambda pattern: int(re.search(pattern, text).group(1)) if re.search(pattern, text) else 0
    return {"registers": numbers(r"Used (\d+) registers"), "stack": numbers(r"(\d+) bytes stack frame"),
            "spills": numbers(r"(\d+) bytes spill stores"), "smem": numbers(r"(\d+) bytes smem") or declared_shared,
            "ld_local": ptx.count("ld.local"), "ld_shared_v": len(re.findall(r"ld\.shared\.v\d", ptx))}


def gated(cuda, ptxas: str) -> None:
    """The gated cells' recurrences at their benchmark's sizes, in the layout gated_plan chooses, and the
    kernels of their host side (including the GEMMs on column slices of the deltas)."""
    from numba import types

    from rnnspec.kernels.cuda import gated as gated_host
    from rnnspec.kernels.cuda.bench_gated import GATED_GPU_SIZES
    from rnnspec.kernels.cuda.gated_recurrence import CELLS as RECURRENCE_CELLS
    from rnnspec.kernels.cuda.gated_recurrence import backward_recurrence, forward_recurrence, gated_plan
    from rnnspec.kernels.cuda.gemm import gemm

    print("gated cells (units owned by groups of threads; cooperative: one grid sync per product):")
    for cell in RECURRENCE_CELLS:
        for T, B, I, H in GATED_GPU_SIZES:
            for dtype in catalogue.DTYPES:
                scalar = types.float32 if dtype == "float32" else types.float64
                a1, a2, a3 = (types.Array(scalar, n, "C") for n in (1, 2, 3))
                try:
                    layout = gated_plan(cell, H, B, dtype, H100_MULTIPROCESSORS)
                except ValueError as exc:
                    print(f"{cell:17s} {str((T, B, I, H)):22s} {dtype:8s} no layout: {exc}")
                    continue
                signatures = {"forward": (forward_recurrence, (a3, a2, a3, a3, a3, a3, a1)),
                              "backward": (backward_recurrence, (a3, a3, types.boolean, a2, a3, a3, a3, a3, a3, a3,
                                                                 a2, a2, a2))}
                for direction, (build, sig) in signatures.items():
                    kernel = build(cell, H, layout, dtype)
                    r = report(cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))[0], ptxas)
                    fits = r["registers"] * layout.threads <= 65536
                    print(f"{cell:17s} {str((T, B, I, H)):22s} {dtype:8s} {direction:9s} "
                          f"{'cooperative' if layout.cooperative else 'streamed'} units={layout.units} "
                          f"rows={layout.rows} groups={layout.groups} slices={layout.slices} "
                          f"{'resident' if layout.resident else 'streamed W'} -> {r['registers']} regs"
                          f"{'' if fits else ' (TOO MANY for the block)'}, {r['stack']} B stack, "
                          f"{r['spills']} B spills, {r['smem']} B smem, {r['ld_local']} ld.local")
    for dtype in catalogue.DTYPES:
        scalar = types.float32 if dtype == "float32" else types.float64
        a1, a2 = (types.Array(scalar, n, "C") for n in (1, 2))
        sliced = types.Array(scalar, 2, "A")  # a column slice of the deltas
        for name, kernel, sig in (("add_row", gated_host._add_row, (a2, a1)), ("ones", gated_host._ones, (a1,)),
                                  ("gemm^T on a column slice", gemm(True, False, dtype), (sliced, a2, a2)),
                                  ("gemm by a column slice", gemm(False, False, dtype), (a2, sliced, a2))):
            r = report(cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))[0], ptxas)
            print(f"{dtype:8s} {name:26s} -> {r['registers']} regs, {r['stack']} B stack, {r['spills']} B spills")


def main() -> int:
    # the real compiler, not the simulator: set before numba is first imported, hence imports here
    os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
    from numba import types

    from rnnspec.kernels.cuda import arrays as cuda_arrays
    from rnnspec.kernels.cuda import elman as cuda_kernels
    from rnnspec.kernels.cuda.bench import GPU_SIZES
    from rnnspec.kernels.cuda.cooperative import cooperative_plan, cooperative_recurrence
    from rnnspec.kernels.cuda.elman import plan, recurrence
    from rnnspec.kernels.cuda.gemm import deltas_products, gemm, sum_part_pairs, sum_parts
    from rnnspec.kernels.numpy_compat import cuda_module

    cuda = cuda_module()
    # numba-cuda compiles a device function called from a kernel (the grid sync's) for the current
    # device's compute capability; there is no device here, so name the H100's
    from numba.cuda import dispatcher

    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=(9, 0))
    ptxas = shutil.which("ptxas") or os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "ptxas")
    if "--gated" in sys.argv[1:]:
        gated(cuda, ptxas)
        return 0
    print(f"{'(T, B, I, H)':22s} {'dtype':8s} {'direction':9s} layout -> registers/thread, stack, spills, smem, "
          "ld.local, vector shared loads")
    for T, B, I, H in GPU_SIZES:
        for dtype in catalogue.DTYPES:
            layout = plan(H, B, dtype, H100_MULTIPROCESSORS)
            for direction in ("forward", "backward"):
                kernel = recurrence(direction, H, layout, 0, dtype)
                ptx, _ = cuda.compile_ptx(kernel.py_func, signature(dtype), cc=(9, 0),
                                          launch_bounds=kernel.targetoptions.get("launch_bounds"))
                r = report(ptx, ptxas)
                fits = r["registers"] * layout.threads <= 65536
                print(f"{str((T, B, I, H)):22s} {dtype:8s} {direction:9s} split={layout.split} "
                      f"held={layout.held}/{layout.chunk} rows={layout.rows} threads={layout.threads} -> "
                      f"{r['registers']} regs{'' if fits else ' (TOO MANY for the block)'}, {r['stack']} B stack, "
                      f"{r['spills']} B spills, {r['smem']} B smem, {r['ld_local']} ld.local, "
                      f"{r['ld_shared_v']} ld.shared.v")
    print("cooperative grid (W spread over the blocks, one grid sync per step; float32 from H = 256):")
    for T, B, I, H in GPU_SIZES:
        if H < 256:
            continue
        layout = cooperative_plan(H, "float32", H100_MULTIPROCESSORS, batch=B)
        for direction in ("forward", "backward"):
            kernel = cooperative_recurrence(direction, H, layout, 0, "float32")
            r = report(cuda.compile_ptx(kernel.py_func, signature("float32"), cc=(9, 0))[0], ptxas)
            print(f"{str((T, B, I, H)):22s} float32  {direction:9s} rows={layout.rows} blocks={layout.blocks} "
                  f"threads={layout.threads} tile={layout.tile} slices={layout.slices} -> {r['registers']} regs, "
                  f"{r['stack']} B stack, {r['spills']} B spills, {r['smem']} B smem, {r['ld_local']} ld.local")
    print("the other kernels (every one must compile for the GPU; the simulator does not compile):")
    for dtype in catalogue.DTYPES:
        scalar = types.float32 if dtype == "float32" else types.float64
        a1, a2, a3 = (types.Array(scalar, n, "C") for n in (1, 2, 3))
        others = [(f"gemm{(ta, tb)}{' split' if split else ''}", gemm(ta, tb, dtype, split),
                   (a2, a2, a3 if split else a2))
                  for ta in (False, True) for tb in (False, True) for split in (False, True)]
        others += [(f"gemm pair{' split' if split else ''}", gemm(True, False, dtype, split, pair=True),
                    (a2, a2, a3 if split else a2, a2, a3 if split else a2)) for split in (False, True)]
        others += [("deltas_products", deltas_products(dtype), (a2, a2, a2, a2, a2, a2, a2)),
                   ("sum_parts", sum_parts, (a3, a2)), ("sum_part_pairs", sum_part_pairs, (a3, a2, a3, a2)),
                   ("transpose", cuda_kernels.transpose, (a2, a2)),
                   ("column_sums", cuda_kernels.column_sums, (a2, a1)),
                   ("softmax_cross_entropy", cuda_kernels.softmax_cross_entropy,
                    (a2, a1, types.Array(types.int64, 1, "C"), a1))]
        others += [(f"strided_copy{n}", cuda_arrays._strided_copy(n),  # from a slice or a transposed view
                    (types.Array(scalar, n, "A"), types.Array(scalar, n, "C"))) for n in (1, 2, 3)]
        for name, kernel, sig in others:
            r = report(cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))[0], ptxas)
            print(f"{dtype:8s} {name:22s} -> {r['registers']} regs, {r['stack']} B stack, {r['spills']} B spills, "
                  f"{r['smem']} B smem")
    return 0


if __name__ == "__main__":
    sys.exit(main())
