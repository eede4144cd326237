#!/usr/bin/env bash
# The prepared GPU run (issue 5): install offline on the GPU machine, run the CUDA tests there (every
# recurrence layout against the CPU kernels, and the conformance suite on small cases, determinism
# included), profile a warm call's host time, then `rnnspec bench --device cuda --variants`:
# correctness against the oracle and the CPU kernels at the 7 sizes, then times against
# torch.nn.RNN (cuDNN) in the same process.
# Writes gpu_run.txt, gpu_bench.json and gpu_clocks.csv into $OUT (or the current folder); copy them
# into benchmarks/. Time: 266 s on the H100 in run 4 (tests 101 s, profile 10 s, bench 143 s with 13
# variants); each step has its own limit (180, 60 and 240 s), so run it with timeout_s=330 (less if
# the session's device budget is short: the JSON report is saved after every size).
set -uo pipefail
out="${OUT:-.}"
export PYTHONUNBUFFERED=1 NUMBA_ENABLE_CUDASIM=0
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$out/install.log" 2>&1 || { cat "$out/install.log"; exit 1; }
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import numpy, numba, numba_cuda, torch; print('numpy', numpy.__version__, 'numba', numba.__version__,
'numba-cuda', numba_cuda.__version__, 'torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
  start=$SECONDS
  # the tests mostly compile kernels, on the CPU: spread them over 8 processes where pytest-xdist is
  parallel=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8")
  # every layout in both dtypes (-m slow too: CI under the simulator runs each layout in one)
  timeout 180 python3 -m pytest -q -p no:cacheprovider -rf --tb=short $parallel -m "slow or not slow" \
    tests/test_cuda.py tests/test_cuda_bench_and_launch.py 2>&1 \
    | grep -v "NumbaPerformanceWarning\|warn(errors" | tail -40 | tee "$out/tests.log"
  echo "tests: $((SECONDS - start)) s"
  # a lean launch (the default) that fails its test may leave the CUDA context unusable: the
  # profile and the bench then launch through numba-cuda alone rather than losing every size
  if ! grep -q " passed" "$out/tests.log" || grep -q "FAILED.*lean_launch" "$out/tests.log"; then
    export RNNSPEC_BENCH_WITHOUT_LEAN_LAUNCH=1
    echo "every launch goes through numba-cuda: the lean launch failed its test"
  fi
  timeout 60 python3 scripts/gpu_profile.py 2>&1 | grep -v "NumbaPerformanceWarning\|warn(errors" | head -110
  start=$SECONDS
  # the SM clock every 0.5 s while the bench runs: an idle GPU's clock is low
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw --format=csv -lms 500 >"$out/gpu_clocks.csv" 2>&1 &
  clocks=$!
  timeout 240 python3 -m rnnspec.spec.cli bench --device cuda --variants \
    --json "$out/gpu_bench.json" 2>&1 | grep -v "NumbaPerformanceWarning\|warn(errors"
  echo "bench: rc ${PIPESTATUS[0]} in $((SECONDS - start)) s"
  kill $clocks
} 2>&1 | tee "$out/gpu_run.txt"
