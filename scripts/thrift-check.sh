#!/usr/bin/env bash
# Check that idl/idl_rpc.thrift loads with thriftpy2 and stays wire-compatible
# with the seed template's IDL (tests/fixtures/seed_idl_rpc.thrift): field
# ids, types and requiredness of every original field; new fields optional.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_venv
exec "$PY" "$ROOT/scripts/thrift_check.py" "$@"
