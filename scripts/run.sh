#!/usr/bin/env bash
# Start the whole system on this machine, in the foreground:
#   Redis on REDIS_PORT (6379), data in REDIS_DIR (var/redis), unless
#     REDIS_URL or REDIS_CLUSTER_NODES name one to use instead;
#   the RPC server on RPC_PORT (8888), its /metrics on RPC_METRICS_PORT (8889);
#   the HTTP server on HTTP_PORT (8080).
# Installs what is missing first, then checks that every port is free
# before it starts anything. "HTTP API on ..." once /ping and /healthz answer.
# Ctrl-C, SIGTERM or SIGHUP stops everything (exit 0; a second one kills at once).
# If any part exits, run.sh stops the others and exits non-zero: 2 at
# start-up, with one line saying what to change; 1 later.
# On every way out it removes what it made: processes, temp folder, pid file.
# Configuration: the environment variables in the README's table.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
called_from="$PWD"
cd "$ROOT"

ensure_venv

HTTP_PORT="${HTTP_PORT:-8080}"
RPC_PORT="${RPC_PORT:-8888}"
RPC_METRICS_PORT="${RPC_METRICS_PORT:-8889}"
REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_DIR="${REDIS_DIR:-var/redis}"
[[ "$REDIS_DIR" = /* ]] || REDIS_DIR="$called_from/$REDIS_DIR"
READY_TIMEOUT_S="${RUN_READY_TIMEOUT_S:-60}"
# The Thrift port is an internal interface (no authentication of its own):
# on loopback unless RPC_HOST says otherwise.
RPC_HOST="${RPC_HOST:-127.0.0.1}"
# All tiers share this machine's CPUs, and the HTTP workers already use them
# all: one RPC process (measured on 2 cores, a second one cut sends from 5.6k
# to 5.1k/s). On a host or pod of its own, rpc_server defaults to one per CPU.
RPC_WORKERS="${RPC_WORKERS:-1}"
export HTTP_PORT RPC_PORT RPC_METRICS_PORT RPC_HOST RPC_WORKERS

# Where to reach, from this machine, a server listening on host $1.
reach() {
    case "$1" in
        "" | 0.0.0.0) echo 127.0.0.1 ;;
        :: | "[::]") echo "[::1]" ;;
        \[*) echo "$1" ;;
        *:*) echo "[$1]" ;;
        *) echo "$1" ;;
    esac
}
redact() { sed -E 's#//[^@/]*@#//***@#g' <<< "$1"; }

# --- What run.sh makes, and how it takes it all down again --------------------
names=() pids=() tees=() outputs=() graces=() exited=()
ready="" force="" lock="" run_tmp="" made_metrics_dir="" final="" napping=""

# Sleep $1 seconds in a way a signal cuts short: its trap runs at once. (A
# foreground command that ends normally just as Ctrl-C arrives makes bash take
# the SIGINT as handled by that command, and the INT trap never runs.)
nap() {
    sleep "$1" &
    napping=$!
    wait "$napping" || true
}

# Wait until process $1 (or process group -N) is gone, at most $2 seconds.
wait_gone() {
    local tenths=$(($2 * 10))
    while kill -0 -- "$1" 2>/dev/null; do
        [ -z "$force" ] && ((tenths-- > 0)) || return 1
        nap 0.1
    done
}

# Stop part $1: SIGTERM (a graceful stop), then whatever of its process group
# is left (a killed gunicorn's workers), then SIGKILL; then the copy of its
# output, which ends with the output.
stop_part() {
    local pid="${pids[$1]}"
    if [ -z "${exited[$1]}" ]; then
        kill -TERM "$pid" 2>/dev/null
        wait_gone "$pid" "${graces[$1]}" || kill -KILL -- "-$pid" 2>/dev/null
    fi
    if ! wait_gone "-$pid" 5; then
        kill -KILL -- "-$pid" 2>/dev/null
        wait_gone "-$pid" 5
    fi
    wait "$pid" 2>/dev/null
    wait_gone "${tees[$1]}" 5 || kill -KILL "${tees[$1]}" 2>/dev/null
    wait "${tees[$1]}" 2>/dev/null
}

# On every way out: stop the parts, remove what run.sh made, then say why
# it stopped (last, after the parts' own farewells).
cleanup() {
    local status=$? i
    set +e
    trap 'force=1' INT TERM HUP QUIT
    [ -z "$napping" ] || kill "$napping" 2>/dev/null
    # The HTTP server first, Redis last: each stops while what it calls still answers.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_part "$i"; done
    [ -z "$lock" ] || rm -f "$lock"
    [ -z "$made_metrics_dir" ] || rm -rf "$made_metrics_dir"
    [ -z "$run_tmp" ] || rm -rf "$run_tmp"
    [ -z "$final" ] || log "$final"
    exit "$status"
}
trap cleanup EXIT
trap 'final="stopped"; exit 0' INT TERM HUP QUIT

# Stop with this one line, exit 2: a start-up failure.
fail() {
    final="$*"
    exit 2
}

# --- Before anything starts: what to use, and are its ports free? -------------
own_redis=""
if [ -n "${REDIS_CLUSTER_NODES:-}" ]; then
    log "using the Redis Cluster at $(redact "$REDIS_CLUSTER_NODES") (REDIS_CLUSTER_NODES; run.sh starts no Redis)"
elif [ -n "${REDIS_URL:-}" ]; then
    log "using the Redis at $(redact "$REDIS_URL") (REDIS_URL; run.sh starts no Redis)"
else
    own_redis=1
    ensure_redis
fi
ports=(HTTP_PORT "${HTTP_HOST:-0.0.0.0}" "$HTTP_PORT" RPC_PORT "$RPC_HOST" "$RPC_PORT")
ports+=(RPC_METRICS_PORT "$RPC_HOST" "$RPC_METRICS_PORT")
[ -z "$own_redis" ] || ports+=(REDIS_PORT 127.0.0.1 "$REDIS_PORT")
if ! problem="$("$PY" scripts/run_checks.py ports "${ports[@]}")"; then
    fail "$problem"
fi

# --- Starting and watching the parts -------------------------------------------
# Start a part in its own process group (a terminal's Ctrl-C reaches only
# this script, which stops each part once), its output copied through a FIFO
# by a tee that is run.sh's child (reaped here, deaf to the signals that stop
# run.sh: it ends with the output) to the terminal and to a file, for the line that
# says why the part stopped. $1 name, $2 stop grace (s), $3...: command.
start_part() {
    local name="$1" grace="$2" n="${#pids[@]}"
    local output="$run_tmp/part$n.out" fifo="$run_tmp/part$n.fifo"
    shift 2
    mkfifo "$fifo"
    (trap '' INT TERM HUP QUIT && exec tee -a "$output" < "$fifo" >&2) &
    tees+=($!)
    set -m
    "$@" > "$fifo" 2>&1 &
    pids+=($!)
    set +m
    names+=("$name") outputs+=("$output") graces+=("$grace") exited+=("")
}

# Fail if any part has exited: at start-up, with its last line, exit 2.
check_parts() {
    local i status why line
    for i in "${!pids[@]}"; do
        kill -0 "${pids[$i]}" 2>/dev/null && continue
        status=0
        wait "${pids[$i]}" 2>/dev/null || status=$?
        exited[i]=1
        why="status $status"
        ((status <= 128)) || why="killed by SIG$(kill -l $((status - 128)))"
        if [ -z "$ready" ]; then
            line="$("$PY" scripts/run_checks.py last-line "${outputs[$i]}")"
            fail "${names[$i]} exited at start-up ($why)${line:+: $line}"
        fi
        final="${names[$i]} (pid ${pids[$i]}) exited ($why); stopped the others"
        exit 1
    done
}

# A part's output file is kept for its last line only: empty it past 1 MiB.
# In the background, waited for as nap does: the loop below runs no foreground
# command that a Ctrl-C could find just ending (bash would then drop the SIGINT).
trim_outputs() {
    (
        for f in "${outputs[@]}"; do
            [ -z "$(find "$f" -size +1024k 2>/dev/null)" ] || : > "$f"
        done
    ) &
    napping=$!
    wait "$napping" || true
}

run_tmp="$(mktemp -d "${TMPDIR:-/tmp}/im-run.XXXXXX")"

# --- Redis --------------------------------------------------------------------
if [ -n "$own_redis" ]; then
    # One run.sh per Redis folder: two Redis servers would corrupt one AOF.
    mkdir -p "$REDIS_DIR"
    for _ in 1 2; do
        if (set -o noclobber && echo "$$" > "$REDIS_DIR/run.sh.pid") 2>/dev/null; then
            lock="$REDIS_DIR/run.sh.pid"
            break
        fi
        other="$(cat "$REDIS_DIR/run.sh.pid" 2>/dev/null || true)"
        if [ -n "$other" ] && kill -0 "$other" 2>/dev/null \
            && { ! command -v ps > /dev/null || ps -p "$other" -o command= | grep -q run.sh; }; then
            fail "REDIS_DIR $REDIS_DIR is in use by another run.sh (pid $other): set REDIS_DIR to another folder"
        fi
        rm -f "$REDIS_DIR/run.sh.pid" # left by a run.sh that was killed
    done
    [ -n "$lock" ] || fail "cannot write $REDIS_DIR/run.sh.pid: set REDIS_DIR to a folder of yours"

    start_part Redis 30 redis-server deploy/redis.conf --port "$REDIS_PORT" --dir "$REDIS_DIR"
    # Ours, not whatever else may answer on that port: the same process id.
    deadline=$((SECONDS + READY_TIMEOUT_S))
    until [[ "$(redis-cli -p "$REDIS_PORT" info server 2>/dev/null || true)" == *"process_id:${pids[0]}"[[:space:]]* ]]; do
        check_parts
        ((SECONDS < deadline)) \
            || fail "Redis on port $REDIS_PORT did not answer within ${READY_TIMEOUT_S}s: raise RUN_READY_TIMEOUT_S"
        nap 0.1
    done
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
fi

# --- The servers --------------------------------------------------------------
# Never the HTTP server's metrics folder (gunicorn empties it at start): with
# several workers, the RPC server makes its own, in its temp directory, which
# is run.sh's (removed at exit), as is the HTTP server's.
rpc_grace="${RPC_SHUTDOWN_GRACE_S:-10}"
start_part "the RPC server" $((${rpc_grace%.*} + 15)) \
    env -u PROMETHEUS_MULTIPROC_DIR "TMPDIR=$run_tmp" "$PY" -m rpc_server

if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    [ -e "$PROMETHEUS_MULTIPROC_DIR" ] || made_metrics_dir="$PROMETHEUS_MULTIPROC_DIR"
else
    export PROMETHEUS_MULTIPROC_DIR="$run_tmp/http-metrics"
fi
: "${RPC_ADDR:=$(reach "$RPC_HOST"):$RPC_PORT}"
export RPC_ADDR
http_grace="${HTTP_GRACEFUL_TIMEOUT_S:-10}"
start_part "the HTTP server" $((${http_grace%.*} + 15)) env "TMPDIR=$run_tmp" "$PY" -m http_server

# --- Ready, then watch --------------------------------------------------------
url="http://$(reach "${HTTP_HOST:-}"):$HTTP_PORT"
deadline=$((SECONDS + READY_TIMEOUT_S))
until why="$("$PY" scripts/run_checks.py ready "$url")"; do
    check_parts
    ((SECONDS < deadline)) || fail "not ready within ${READY_TIMEOUT_S}s (raise RUN_READY_TIMEOUT_S): $why"
    nap 0.5
done
check_parts
ready=1
case "${HTTP_HOST:-0.0.0.0}" in 0.0.0.0 | :: | "[::]") shown=localhost ;; *) shown="$(reach "$HTTP_HOST")" ;; esac
log "HTTP API on http://$shown:$HTTP_PORT (Ctrl-C stops everything)"

# Stop everything as soon as any one part exits.
while :; do
    for ((n = 0; n < 20; n++)); do
        check_parts
        nap 0.5
    done
    trim_outputs
done
