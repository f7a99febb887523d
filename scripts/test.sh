#!/usr/bin/env bash
# Install what is missing, check the code (ruff, mypy), run the whole test
# suite. Extra arguments go to pytest, e.g. scripts/test.sh -k pull -x;
# --fast (first) leaves out the tests marked slow, for local iteration only.
# The tests start their own redis-server, RPC server and gunicorn on free
# ports, so test files run in parallel: TEST_WORKERS pytest-xdist workers
# (default 4: on 2 cores most of a test's time is waiting on servers).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_venv dev
ensure_redis
ensure_thrift_compiler
ensure_etcd
ensure_go_modules
ensure_valkey
ensure_chromium
ensure_node_packages

log "generated code is up to date (scripts/api-regen.sh, scripts/thrift-check.sh)"
bash scripts/api-regen.sh
bash scripts/thrift-check.sh
if [ -n "${CI:-}" ] && ! git diff --exit-code -- http_server/proto_gen; then
    log "http_server/proto_gen is stale: run scripts/api-regen.sh and commit the result"
    exit 1
fi

log "ruff check / ruff format --check / mypy"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"

log "pytest"
# --dist loadfile: a file's tests share their module's servers on one worker;
# files in the suite's order, the heaviest first (tests/conftest.py).
parallel=(-n "${TEST_WORKERS:-4}" --dist loadfile --no-loadscope-reorder)
if [ "${1:-}" = "--fast" ]; then
    shift
    exec "$PY" -m pytest "${parallel[@]}" --fast "$@"
fi
exec "$PY" -m pytest "${parallel[@]}" "$@"
