"""A command run as on an AVX2-only CPU, on a CPU with AVX-512: every library held to the code an AVX2 machine runs.

    python -m rnnspec.kernels.cpu.emulate avx2 rnnspec bench --cell lstm --impls rnnspec-cpu,torch

Each library reads its own setting when it loads, so the command starts with them in its environment:

- Numba compiles the kernels for Haswell's features (``NUMBA_CPU_NAME``, ``NUMBA_CPU_FEATURES``): 256-bit vectors,
  16 registers, and simd.py's block widths and panels.py's tiles for them;
- OpenBLAS (NumPy's and SciPy's) runs its Haswell kernels (``OPENBLAS_CORETYPE``);
- PyTorch's own kernels run their AVX2 build (``ATEN_CPU_CAPABILITY``), oneDNN's RNNs and matmuls stop at AVX2
  (``ONEDNN_MAX_CPU_ISA``), and MKL's GEMMs too (``MKL_ENABLE_INSTRUCTIONS``).

What this measures is the code paths an AVX2 machine takes, on this machine's cores, caches and clocks: not an AVX2
machine's speed. A ratio of two implementations held to the same instructions says which code is better there;
an absolute rate says little of any real AVX2 CPU. Imports nothing beyond the standard library: the settings must
be in place before NumPy, Numba or PyTorch load.
"""

from __future__ import annotations

import os
import shutil
import sys

#: Haswell's features as Numba's NUMBA_CPU_FEATURES names them: an AVX2-only CPU's code, built on any x86 CPU
AVX2_FEATURES = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fxsr,+lzcnt,+mmx,+movbe,+popcnt,+sse,+sse2,"
                 "+sse3,+sse4.1,+sse4.2,+ssse3,+xsave")

#: the environment of each emulated instruction set: every library's own switch
ENVIRONMENTS = {
    "avx2": {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": AVX2_FEATURES, "OPENBLAS_CORETYPE": "Haswell",
             "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}

#: the environment variables a report records: the ones above, and the threads' settings
RECORDED_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "NUMBA_CPU_", "ATEN_", "ONEDNN_", "DNNL_")


def environment(isa: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (os.environ by default) with the settings that hold every library to ``isa``."""
    if isa not in ENVIRONMENTS:
        raise ValueError(f"isa: expected one of {', '.join(ENVIRONMENTS)}, got {isa!r}")
    return {**(os.environ if base is None else base), **ENVIRONMENTS[isa]}


def main(argv: list[str] | None = None) -> None:
    """``emulate ISA COMMAND [ARGS...]``: replaces this process with COMMAND in :func:`environment` (ISA)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        raise SystemExit(f"usage: python -m rnnspec.kernels.cpu.emulate {{{','.join(ENVIRONMENTS)}}} COMMAND [ARGS...]")
    isa, command = argv[0], argv[1:]
    try:
        env = environment(isa)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if shutil.which(command[0], path=env.get("PATH")) is None:
        raise SystemExit(f"command: {command[0]!r} not found on PATH")
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
