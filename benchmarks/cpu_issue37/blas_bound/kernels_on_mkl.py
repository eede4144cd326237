"""Experiment, not a path of the kernels: `rnnspec bench` with the kernels' GEMMs on MKL instead of OpenBLAS.

Numba's np.dot finds the BLAS it calls in scipy.linalg.cython_blas.__pyx_capi__ when it first needs it; this script
puts MKL's sgemm_/dgemm_ (same Fortran interface) in that table first, then runs the command line. Nothing else of
the kernels changes, so the rows measure what PyTorch's GEMM library would give the kernels.

    pip download --no-deps mkl && python -m zipfile -e mkl-*.whl /tmp/mklx
    MKL_LIB=/tmp/mklx/mkl-2026.2.1.data/data/lib python kernels_on_mkl.py bench --cell gru-reset-after --sizes G4 \
        --phases forward --impls rnnspec-cpu,torch

MKL runs on GNU OpenMP here (MKL_THREADING_LAYER=GNU), two threads; the halves of rows.py do not hold MKL to one
thread as they hold OpenBLAS (blas.one_thread), so only rows that run the whole batch (G4) are meaningful.
"""
import ctypes
import os
import sys

import scipy.linalg.cython_blas as cython_blas

#: the BLAS functions Numba's np.dot and np.linalg look up in cython_blas's table (same Fortran interface in MKL)
FUNCTIONS = ("sgemm", "dgemm", "sgemv", "dgemv", "sdot", "ddot")


def point_numba_at_mkl(library_folder: str) -> None:
    """MKL's functions in cython_blas's table, before Numba's first np.dot reads it (MKL on GNU OpenMP, 2 threads)."""
    os.environ.setdefault("MKL_THREADING_LAYER", "GNU")  # read when libmkl_rt loads
    mkl = ctypes.CDLL(os.path.join(library_folder, "libmkl_rt.so.3"), mode=ctypes.RTLD_GLOBAL)
    capsule = ctypes.pythonapi.PyCapsule_New
    capsule.restype = ctypes.py_object
    capsule.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)
    for name in FUNCTIONS:
        address = ctypes.cast(getattr(mkl, name + "_"), ctypes.c_void_p).value
        cython_blas.__pyx_capi__[name] = capsule(address, b"mkl", None)
    mkl.MKL_Set_Num_Threads(2)


def main() -> int:
    point_numba_at_mkl(os.environ["MKL_LIB"])
    from rnnspec.spec.cli import main as cli  # after the table is set: nothing of the kernels has run yet

    sys.argv = ["rnnspec"] + sys.argv[1:]
    return cli()


if __name__ == "__main__":
    sys.exit(main())
