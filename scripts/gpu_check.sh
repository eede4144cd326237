#!/usr/bin/env bash
# The prepared GPU run (issue 5): install offline on the GPU machine, check the CUDA kernels against
# the oracle and the CPU kernels, then time them against torch.nn.RNN (cuDNN) in the same process.
# Writes gpu_run.txt and gpu_bench.json into $OUT (or the current folder). Copy them into benchmarks/.
set -uo pipefail
out="${OUT:-.}"
export PYTHONUNBUFFERED=1 NUMBA_ENABLE_CUDASIM=0
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$out/install.log" 2>&1 || { cat "$out/install.log"; exit 1; }
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import numpy, numba, torch; print('numpy', numpy.__version__, 'numba', numba.__version__, 'torch', torch.__version__)"
  python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -3
  python3 -m rnnspec.spec.cli bench --device cuda --json "$out/gpu_bench.json"
} 2>&1 | tee "$out/gpu_run.txt"
