#!/bin/sh
# Does compiling the hot core make a worker turn cheaper? Run by hand (a measurement, not a
# test):   sh scripts/compile_trial.sh [mypyc|cython] [full|normal|off]   (default: mypyc off)
#
# It copies the package to a temporary directory, compiles the hot modules there, and runs
# scripts/turn_time.py three times on each, compiled and as it is, alternating.
# - mypyc compiles the modules it accepts as they are (core/reducer.py, core/events.py: the
#   others define msgspec Structs with defaults, or classes the interpreted modules
#   subclass, which mypyc refuses);
# - Cython (installed into .venv if missing) compiles every module of a worker's turn, from
#   the ids and events to the SQL and the worker loop, unchanged: with its annotations
#   ignored, since a str-valued Enum is not the exact str Cython would demand.
set -e
tool=${1:-mypyc}
sync=${2:-off}
repo=$(cd "$(dirname "$0")/.." && pwd)
py="$repo/.venv/bin/python"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$repo/mainspring" "$tmp/"
case "$tool" in
mypyc)
    (cd "$tmp" && "$repo/.venv/bin/mypyc" mainspring/core/reducer.py mainspring/core/events.py \
        >"$tmp/build.log" 2>&1) || { tail -20 "$tmp/build.log"; exit 1; }
    ;;
cython)
    "$py" -c "import Cython" 2>/dev/null || "$py" -m pip install -q cython
    cat >"$tmp/setup.py" <<'EOF'
from Cython.Build import cythonize
from setuptools import setup

HOT = """core/ids core/events core/reducer core/retry core/outcomes core/failures
engine/batch engine/turn engine/transact engine/messages store/rows store/sql store/pg_tx
store/sqlite worker/worker worker/execute worker/slots worker/pool worker/context"""
setup(
    ext_modules=cythonize(
        [f"mainspring/{m}.py" for m in HOT.split()],
        compiler_directives={"language_level": 3, "binding": True, "annotation_typing": False},
        nthreads=2,
        quiet=True,
    )
)
EOF
    (cd "$tmp" && "$py" setup.py build_ext --inplace >"$tmp/build.log" 2>&1) ||
        { tail -20 "$tmp/build.log"; exit 1; }
    ;;
*)
    echo "usage: sh scripts/compile_trial.sh [mypyc|cython] [full|normal|off]" >&2
    exit 2
    ;;
esac
cd "$repo/scripts"
for round in 1 2 3; do
    printf 'compiled:    '; PYTHONPATH="$tmp" "$py" turn_time.py "$sync" | tail -1
    printf 'interpreted: '; PYTHONPATH="$repo" "$py" turn_time.py "$sync" | tail -1
done
