#!/usr/bin/env bash
# Start the whole system on this machine, in the foreground:
#   Redis (unless REDIS_URL points elsewhere; data in var/redis),
#   the RPC server (:8888) and the HTTP server (:8080).
# Installs what is missing first. Ctrl-C stops everything.
# Configuration: the environment variables in the README's table.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_venv
# Each server in its own process group: Ctrl-C reaches only this script,
# which then stops each server exactly once (SIGTERM, a graceful stop).
set -m
pids=()
stop_all() {
    trap - INT TERM EXIT
    [ "${#pids[@]}" -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

if [ -z "${REDIS_URL:-}" ]; then
    ensure_redis
    REDIS_PORT="${REDIS_PORT:-6379}"
    mkdir -p var/redis
    redis-server deploy/redis.conf --port "$REDIS_PORT" --dir "$ROOT/var/redis" &
    pids+=($!)
    wait_for_redis "$REDIS_PORT"
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
fi

# All tiers share this machine's CPUs, and the HTTP workers already use them
# all: one RPC process (measured on 2 cores, a second one cut sends from 5.6k
# to 5.1k/s). On a host or pod of its own, rpc_server defaults to one per CPU.
# The Thrift port is an internal interface (no authentication of its own):
# on loopback unless RPC_HOST says otherwise.
RPC_HOST="${RPC_HOST:-127.0.0.1}" RPC_WORKERS="${RPC_WORKERS:-1}" "$PY" -m rpc_server &
pids+=($!)
: "${RPC_ADDR:=127.0.0.1:${RPC_PORT:-8888}}"
export RPC_ADDR
"$PY" -m http_server &
pids+=($!)

log "HTTP API on http://localhost:${HTTP_PORT:-8080} (Ctrl-C stops everything)"
# Stop everything as soon as any one part exits.
while kill -0 "${pids[@]}" 2>/dev/null; do sleep 1; done
log "a server exited; stopping the others"
