#!/usr/bin/env bash
# What splitting a check into units costs: the same check at the base commit (one worker process for the run), and
# now as 1 unit and as 4 units (a worker process, so a load of the target, per unit). Output appended to units.log.
set -u
cd /tmp
t() { echo "## $1"; echo "\$ ${*:2}"; echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "%e s wall %U+%S s cpu (exit %x)" "${@:2}" > /dev/null 2> /tmp/units_split.err; grep "s wall" /tmp/units_split.err; echo; }
t "base c1b4d2e (no units): torch lstm 100 cases" /tmp/basevenv/bin/rnnspec check torch --cell lstm --examples 100 --quiet
t "units: torch lstm 100 cases as 1 unit" rnnspec check torch --cell lstm --examples 100 --unit-cases 100 --quiet
t "units: torch lstm 100 cases as 4 units (default size 25)" rnnspec check torch --cell lstm --examples 100 --quiet
t "base c1b4d2e (no units): oracle elman 200 cases" /tmp/basevenv/bin/rnnspec check oracle --examples 200 --quiet
t "units: oracle elman 200 cases as 8 units" rnnspec check oracle --examples 200 --quiet
