#!/usr/bin/env bash
# Install what is missing, check the code (ruff, mypy), run the whole test
# suite. Extra arguments go to pytest, e.g. scripts/test.sh -k pull -x
# The tests start their own redis-server, RPC server and gunicorn on free ports.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_venv dev
ensure_redis

log "ruff check / ruff format --check / mypy"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"

log "pytest"
exec "$PY" -m pytest "$@"
