# Shared by run.sh and test.sh: install what is missing, quickly and
# idempotently. Source it; it defines ROOT, VENV, PY and the ensure_* steps.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# Run a command as root: directly, or through sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    log "installing $* (apt-get)"
    if [ -z "${_APT_UPDATED:-}" ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ensure_tool COMMAND APT_PACKAGE BREW_FORMULA: install COMMAND if missing.
ensure_tool() {
    command -v "$1" >/dev/null && return
    if command -v apt-get >/dev/null; then
        apt_install "$2"
    elif command -v brew >/dev/null; then
        log "installing $3 (brew)"
        brew install "$3"
    else
        log "please install $1 ($2) and re-run"
        exit 1
    fi
}

# redis-server and redis-cli (Redis 7 or newer).
ensure_redis() {
    ensure_tool redis-server redis-server redis
    ensure_tool redis-cli redis-tools redis
}

# The Apache Thrift compiler, for the interop test's generated stubs.
ensure_thrift_compiler() { ensure_tool thrift thrift-compiler thrift; }

# etcd, for the service-registration tests.
ensure_etcd() { ensure_tool etcd etcd-server etcd; }

# The Go modules of the Kitex clients (tests/kitex/v*/), from the Go module
# proxy, when Go is there; without it tests/test_kitex.py skips, saying so
# (a failure in CI, where .ci/run sets KITEX_TESTS_REQUIRED=1).
ensure_go_modules() {
    if ! command -v go >/dev/null; then
        log "Go not found: the Kitex client tests (tests/test_kitex.py) will be skipped"
        return
    fi
    local module
    for module in "$ROOT"/tests/kitex/v*/; do
        (cd "$module" && go mod download) || { log "go mod download failed in $module"; exit 1; }
    done
}

# valkey-server, a Redis 7.2-compatible server (the images' redis:7.2 behaves
# as it does for WAIT), for the write-path tests. Debian 12 has it only in
# bookworm-backports: that suite is added (from the same mirror as the
# system's sources) when apt cannot find the package otherwise.
ensure_valkey() {
    command -v valkey-server >/dev/null && return
    if ! command -v apt-get >/dev/null; then
        command -v brew >/dev/null && { log "installing valkey (brew)"; brew install valkey; return; }
        log "please install valkey-server (Valkey 7.2 or newer) and re-run"
        exit 1
    fi
    local codename mirror
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    if [ "$codename" = bookworm ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        mirror="$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
            sed -nE 's#^(URIs:|deb)[[:space:]]+(https?://[^[:space:]]+/debian)/?([[:space:]].*)?$#\2#p' | head -1 || true)"
        log "adding bookworm-backports (${mirror:-http://deb.debian.org/debian}) for valkey-server"
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "${mirror:-http://deb.debian.org/debian}" | as_root tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
        _APT_UPDATED=
    fi
    apt_install valkey-server
}

# Chromium, the browser Playwright drives in the EventSource test (the
# system's: Playwright downloads none).
ensure_chromium() { ensure_tool chromium chromium chromium; }

# Node and npm, then the npm packages of postman/ (newman, openapi-to-postmanv2)
# with `npm ci` from the committed package-lock.json, when it changed.
ensure_node_packages() {
    if ! command -v npm >/dev/null; then
        if command -v apt-get >/dev/null; then
            apt_install nodejs npm
        elif command -v brew >/dev/null; then
            brew install node
        else
            log "please install Node.js with npm and re-run"
            exit 1
        fi
    fi
    local dir="$ROOT/postman" stamp="$ROOT/postman/node_modules/.installed"
    local want
    want="$(cksum < "$dir/package-lock.json")"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        log "installing npm packages into postman/node_modules (npm ci)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
        echo "$want" > "$stamp"
    fi
}

# The venv with the locked Python packages; reinstalled only when
# pyproject.toml or requirements.lock change. $1: "" or "dev".
ensure_venv() {
    local extra="${1:-}"
    if [ ! -x "$PY" ]; then
        if ! python3 -m venv "$VENV" 2>/dev/null; then
            command -v apt-get >/dev/null && apt_install python3-venv
            rm -rf "$VENV"
            python3 -m venv "$VENV"
        fi
    fi
    local stamp="$VENV/.installed-$extra"
    local want
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements.lock" | cksum)"
    # A current dev install also holds everything the plain one needs.
    if [ -z "$extra" ] && [ "$(cat "$VENV/.installed-dev" 2>/dev/null)" = "$want" ]; then
        return
    fi
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        log "installing Python packages into $VENV"
        "$PY" -m pip install -q --disable-pip-version-check --upgrade pip
        "$PY" -m pip install -q --disable-pip-version-check -c "$ROOT/requirements.lock" \
            -e "$ROOT${extra:+[$extra]}"
        echo "$want" > "$stamp"
    fi
}

# The Go toolchain (Debian's golang-go, or Homebrew's go), and with it
# bench/loadgen, the compiled open-loop generator of the overload benchmark
# (standard library only: nothing is downloaded), built into the venv when
# missing or older than its source.
ensure_loadgen() {
    ensure_tool go golang-go go
    local src="$ROOT/bench/loadgen" bin="$VENV/bin/im-loadgen"
    if [ ! -x "$bin" ] || [ -n "$(find "$src" -newer "$bin" -name '*.go' -o -newer "$bin" -name go.mod)" ]; then
        log "building bench/loadgen into $bin (go build)"
        (cd "$src" && go build -o "$bin" .)
    fi
}

# Wait until `redis-cli -p PORT ping` answers, or fail after ~10 s.
wait_for_redis() {
    local port="$1"
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return
        sleep 0.1
    done
    log "redis-server on port $port did not start"
    return 1
}
