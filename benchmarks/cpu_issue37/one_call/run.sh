#!/usr/bin/env bash
# Issue 37's latency rows after the small forwards ran in one compiled call and the bench warmed each timed call for
# WARM_S: the thresholds measured first, then three bench runs of each cell at the latency sizes (G1 and G5; Elman's
# S1 and S5), PyTorch in the same runs. The A/B against the session's base is ab.txt and ab_T1000.txt (ab.py of
# ../small_calls/).
#   bash benchmarks/cpu_issue37/one_call/run.sh     (about 15 minutes on the 2-core machine; nothing else running)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
out=benchmarks/cpu_issue37/one_call
rnnspec tune > "$out/tune.txt" 2>&1
rnnspec tune --show > "$out/tune_show.txt" 2>&1
for run in 1 2 3; do
  for cell in elman lstm gru-reset-after lstm-proj; do
    if [ "$cell" = elman ]; then sizes=S1,S5; else sizes=G1,G5; fi
    rnnspec bench --cell "$cell" --sizes "$sizes" --impls rnnspec-cpu,torch --repeats 5 \
      --json "$out/${cell}_run$run.json" > "$out/${cell}_run$run.txt" 2>&1
  done
done
