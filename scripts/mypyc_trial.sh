#!/bin/sh
# Does compiling the hot core with mypyc make a worker turn cheaper? Run by hand (a
# measurement, not a test):   sh scripts/mypyc_trial.sh [full|normal|off]   (default: off)
#
# It copies the package to a temporary directory, compiles there the modules mypyc accepts
# as they are (core/reducer.py, core/events.py: the others define msgspec Structs with
# defaults, or classes the interpreted modules subclass, which mypyc refuses), and runs
# scripts/turn_time.py twice on each, compiled and as it is, alternating.
set -e
sync=${1:-off}
repo=$(cd "$(dirname "$0")/.." && pwd)
py="$repo/.venv/bin/python"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$repo/mainspring" "$tmp/"
(cd "$tmp" && "$repo/.venv/bin/mypyc" mainspring/core/reducer.py mainspring/core/events.py >"$tmp/build.log" 2>&1) ||
    { tail -20 "$tmp/build.log"; exit 1; }
cd "$repo/scripts"
for round in 1 2; do
    printf 'compiled:    '; PYTHONPATH="$tmp" "$py" turn_time.py "$sync" | tail -1
    printf 'interpreted: '; PYTHONPATH="$repo" "$py" turn_time.py "$sync" | tail -1
done
