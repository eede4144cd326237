#!/usr/bin/env bash
# Throughput of work units (docs/runs.md): one check and a matrix at 1 and 2 local workers, and the Ray engine's
# overhead per unit against the local one. Run from the repository root with the venv active; output: units.log.
set -u
cd /tmp
t() {  # label, command...: wall and CPU seconds of the whole process tree (Ray's daemons are not children: see log)
  echo "## $1"; echo "\$ ${*:2}"; echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "%e s wall %U+%S s cpu (exit %x)" "${@:2}" > /tmp/units_bench.out 2> /tmp/units_bench.err
  grep -E "s wall" /tmp/units_bench.err; grep -E "^units:" /tmp/units_bench.err | tail -1
  grep -E "^(CONFORMANT|NOT|INCONCLUSIVE)" /tmp/units_bench.out; echo
}
echo "# rnnspec work units: throughput ($(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, rnnspec $(git -C "$OLDPWD" rev-parse --short HEAD))"
echo
t "check oracle, elman, 200 cases (8 units of 25), 1 worker" rnnspec check oracle --examples 200
t "check oracle, elman, 200 cases (8 units of 25), 2 workers" rnnspec check oracle --examples 200 --workers 2
t "check torch, lstm, 100 cases (4 units of 25), 1 worker" rnnspec check torch --cell lstm --examples 100
t "check torch, lstm, 100 cases (4 units of 25), 2 workers" rnnspec check torch --cell lstm --examples 100 --workers 2
t "matrix torch, 10 cases per cell and dtype (1 unit each), 1 worker" rnnspec matrix --targets torch --examples 10 --out /tmp/m1.md
t "matrix torch, 10 cases per cell and dtype (1 unit each), 2 workers" rnnspec matrix --targets torch --examples 10 --workers 2 --out /tmp/m2.md
cmp -s <(grep '^|' /tmp/m1.md | sed 's/| [0-9.e-]* | [0-9]* |$//') <(grep '^|' /tmp/m2.md | sed 's/| [0-9.e-]* | [0-9]* |$//') && echo "(the two matrices' rows agree)"; echo
t "Ray alone: ray.init() and ray.shutdown() of a local 2-CPU Ray" python -c "import ray; ray.init(num_cpus=2, include_dashboard=False); ray.shutdown()"
t "check oracle, 60 cases as 60 units of 1, 2 local workers" rnnspec check oracle --examples 60 --unit-cases 1 --workers 2
t "check oracle, 60 cases as 60 units of 1, Ray (local, 2 CPUs)" rnnspec check oracle --examples 60 --unit-cases 1 --engine ray
