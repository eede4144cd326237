#!/usr/bin/env bash
# The prepared GPU run for "CUDA kernels for LSTM and both GRUs": install offline on the GPU machine,
# run the gated cells' CUDA tests there (every layout against the oracle and the CPU kernels, bit
# reproducibility, the target on small cases), `rnnspec check rnnspec-cuda --cell X` for each cell,
# then `rnnspec bench --device cuda --cell lstm,gru-reset-after,gru-reset-before --variants`:
# correctness against the oracle and the CPU kernels and times against cuDNN at the goals' sizes, in one
# process. Writes gpu_gated_run.txt, gpu_gated_bench.json and gpu_gated_clocks.csv into $OUT (or the
# current folder); copy them into benchmarks/. Each step has its own limit (tests 120 s, checks 3 x 60 s,
# bench 280 s: under 10 minutes): run it with timeout_s=600, and the bench's JSON report is saved after
# every row, so a run cut short keeps what it measured. Not yet run on a GPU.
set -uo pipefail
out="${OUT:-.}"
export PYTHONUNBUFFERED=1 NUMBA_ENABLE_CUDASIM=0
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$out/install.log" 2>&1 || { cat "$out/install.log"; exit 1; }
quiet() { grep -v "NumbaPerformanceWarning\|warn(errors"; }
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import numpy, numba, numba_cuda, torch; print('numpy', numpy.__version__, 'numba', numba.__version__,
'numba-cuda', numba_cuda.__version__, 'torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
  start=$SECONDS
  parallel=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8")
  timeout 120 python3 -m pytest -q -p no:cacheprovider -rf --tb=short $parallel -m "slow or not slow" -k "not hypothesis" \
    tests/test_cuda_gated.py 2>&1 \
    | quiet | tail -40 | tee "$out/gated_tests.log"
  echo "tests: $((SECONDS - start)) s"
  for cell in lstm gru-reset-after gru-reset-before; do
    start=$SECONDS
    # 12 cases per dtype: each new H compiles both kernels again (seconds each on the host)
    timeout 60 python3 -m rnnspec.spec.cli check rnnspec-cuda --cell "$cell" --examples 12 2>&1 | quiet | tail -8
    echo "check $cell: rc ${PIPESTATUS[0]} in $((SECONDS - start)) s"
  done
  start=$SECONDS
  # the SM clock every 0.5 s while the bench runs: an idle GPU's clock is low
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw --format=csv -lms 500 >"$out/gpu_gated_clocks.csv" 2>&1 &
  clocks=$!
  timeout 280 python3 -m rnnspec.spec.cli bench --device cuda --cell lstm,gru-reset-after,gru-reset-before \
    --variants --json "$out/gpu_gated_bench.json" 2>&1 | quiet
  echo "bench: rc ${PIPESTATUS[0]} in $((SECONDS - start)) s"
  kill $clocks
} 2>&1 | tee "$out/gpu_gated_run.txt"
