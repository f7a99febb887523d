#!/usr/bin/env bash
# Regenerate requirements.lock: resolve pyproject.toml's pins (with .[dev])
# in a throw-away venv and freeze the result.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "$ROOT[dev]"
{
    echo "# Every package the project installs, pinned (pip freeze of a fresh venv with .[dev])."
    echo "# Used as pip constraints by scripts/lib.sh; regenerate with scripts/lock.sh."
    "$tmp/venv/bin/pip" freeze --disable-pip-version-check | grep -v '^im-backend'
} > "$ROOT/requirements.lock"
