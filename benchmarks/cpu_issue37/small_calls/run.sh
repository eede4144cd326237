#!/usr/bin/env bash
# Issue 37's latency rows: the thresholds measured first, the A/B of the kernels at BASE against the working tree
# (ab.py; skipped where BASE is empty), then three bench runs of each cell at the latency sizes (G1 and G5; Elman's S1
# and S5), PyTorch in the same runs, into OUT (this folder by default).
#   bash benchmarks/cpu_issue37/small_calls/run.sh BASE [OUT]     (about 15-20 minutes on the 2-core machine; nothing
#   else running). small_calls/: BASE 9ebd4d2. one_call/: BASE "" and OUT benchmarks/cpu_issue37/one_call (its A/B
#   ran apart, before).
set -euo pipefail
base=$1
cd "$(git rev-parse --show-toplevel)"
out=${2:-benchmarks/cpu_issue37/small_calls}
rnnspec tune > "$out/tune.txt" 2>&1
rnnspec tune --show > "$out/tune_show.txt" 2>&1
if [ -n "$base" ]; then python benchmarks/cpu_issue37/small_calls/ab.py "$base" > "$out/ab.txt" 2>&1; fi
for run in 1 2 3; do
  for cell in elman lstm gru-reset-after lstm-proj; do
    if [ "$cell" = elman ]; then sizes=S1,S5; else sizes=G1,G5; fi
    rnnspec bench --cell "$cell" --sizes "$sizes" --impls rnnspec-cpu,torch --repeats 5 \
      --json "$out/${cell}_run$run.json" > "$out/${cell}_run$run.txt" 2>&1
  done
done
