"""kernels/cpu/emulate.py: a command run with every library held to AVX2's code, and the reports that name it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rnnspec.kernels.cpu import bench, blas, emulate

#: run under the emulation: what the kernels compile for, what the thresholds' cache and a report say
_PROBE = r"""
import json, os
from rnnspec.kernels.cpu import bench, simd, tuning
print(json.dumps({"avx512": simd.AVX512, "widest": simd.WIDEST, "machine": tuning.machine(),
                  "env": bench.machine()["env"], "openblas": os.environ.get("OPENBLAS_CORETYPE")}))
"""


def test_the_environment_holds_every_library_to_avx2_and_keeps_the_rest():
    env = emulate.environment("avx2", {"PATH": "/bin", "NUMBA_CPU_NAME": "skylake-avx512"})
    assert env["PATH"] == "/bin"
    assert env["NUMBA_CPU_NAME"] == "haswell", "the emulation's setting wins over the caller's"
    assert "+avx2" in env["NUMBA_CPU_FEATURES"].split(",") and "avx512" not in env["NUMBA_CPU_FEATURES"]
    assert (env["OPENBLAS_CORETYPE"], env["ATEN_CPU_CAPABILITY"], env["ONEDNN_MAX_CPU_ISA"],
            env["MKL_ENABLE_INSTRUCTIONS"]) == ("Haswell", "avx2", "AVX2", "AVX2")
    # every setting is one a report records
    assert all(key.startswith(emulate.RECORDED_PREFIXES) for key in emulate.ENVIRONMENTS["avx2"])


def test_an_unknown_instruction_set_or_a_missing_command_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="isa: expected one of avx2, got 'avx10'"):
        emulate.environment("avx10")
    with pytest.raises(SystemExit, match="usage"):
        emulate.main(["avx2"])
    with pytest.raises(SystemExit, match="isa: expected one of avx2, got 'sse'"):
        emulate.main(["sse", "true"])
    with pytest.raises(SystemExit, match="command: 'no-such-command-here' not found on PATH"):
        emulate.main(["avx2", "no-such-command-here"])


def test_under_the_emulation_the_kernels_compile_for_avx2_and_the_report_says_so(tmp_path):
    """The command's kernels compile for AVX2 (16 registers, 4-vector blocks), the thresholds' cache describes that
    code (a key of its own: thresholds measured on AVX2's code are not this CPU's), and a report's CPU line says
    the instruction set was emulated on this CPU where the CPU has a wider one."""
    env = {**emulate.environment("avx2"), "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "rnnspec.kernels.cpu.emulate", "avx2", sys.executable, "-c", _PROBE],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert (seen["avx512"], seen["widest"], seen["openblas"]) == (False, 4, "Haswell"), seen
    described = seen["machine"]
    assert described["isa"] == "avx2"
    for key, value in emulate.ENVIRONMENTS["avx2"].items():
        assert seen["env"][key] == value, key
    cpu_has_avx512 = all(flag in blas.cpu_flags() for flag in blas.AVX512_NEEDED)
    if cpu_has_avx512:
        assert described["cpu_isa"] == "avx512", described
        line = next(x for x in bench.table({"cell": "lstm", "compile_s": {}, "skipped": [], "results": [],
                                            "machine": {"cpus": 2, "cpu": described}}).splitlines()
                    if x.startswith("CPU:"))
        assert "avx2 emulated on an avx512 CPU" in line, line
    else:  # an AVX2 CPU runs its own code: nothing is emulated
        assert "cpu_isa" not in described, described
