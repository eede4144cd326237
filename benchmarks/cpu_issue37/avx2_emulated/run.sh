#!/usr/bin/env bash
# Issue 37's runs as on an AVX2-only CPU, emulated on this AVX-512 one (kernels/cpu/emulate.py: Numba built for
# Haswell, OpenBLAS on its Haswell kernels, PyTorch's ATen, oneDNN and MKL held to AVX2): the thresholds measured
# for that code first, then three runs of each cell, then one run of each variant the issue names.
#   bash benchmarks/cpu_issue37/avx2_emulated/run.sh     (about an hour on the 2-core machine; nothing else running)
set -euo pipefail
cd "$(dirname "$0")"
as_avx2=(python -m rnnspec.kernels.cpu.emulate avx2)
"${as_avx2[@]}" rnnspec tune > tune.txt 2>&1
"${as_avx2[@]}" rnnspec tune --show > tune_show.txt 2>&1
for run in 1 2 3; do
  for cell in elman lstm gru-reset-after lstm-proj; do
    "${as_avx2[@]}" rnnspec bench --cell "$cell" --impls rnnspec-cpu,torch --repeats 5 --json "${cell}_run$run.json" \
      > "${cell}_run$run.txt" 2>&1
  done
done
mkdir -p variants
for cell in lstm gru-reset-after; do
  "${as_avx2[@]}" rnnspec bench --cell "$cell" --variant layers=2,bidirectional,lengths=zero --sizes G2,G3,G4 \
    --impls rnnspec-cpu,torch --repeats 5 --json "variants/${cell}_run1.json" > "variants/${cell}_run1.txt" 2>&1
done
