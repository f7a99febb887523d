#!/usr/bin/env bash
# Run the benchmark (bench/): start a stack on free ports with the shipped
# settings, measure every scenario in one run, print a table with ratios and
# write results.{md,json,png} (default: bench/results/). Installs what is
# missing first (the venv, redis-server, wrk, Go and the open-loop generator
# bench/loadgen). Takes about 9 minutes (the overload part: about 3).
# Extra arguments go to `python -m bench` (--help lists them).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_venv dev
ensure_redis
ensure_tool wrk wrk wrk
ensure_loadgen
exec "$PY" -m bench "$@"
