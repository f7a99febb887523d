#!/usr/bin/env bash
# Regenerate the Python protobuf module of the HTTP API from idl/idl_http.proto
# (the seed's api-regen.sh, for our stack), with grpcio-tools' bundled protoc:
# no system protoc needed. The module is not used at run time (the HTTP tier
# has its own JSON codec, http_server/codec.py); tests check that codec and
# the OpenAPI spec against it, so the .proto stays the single source.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_venv dev
out="$ROOT/http_server/proto_gen"
mkdir -p "$out"
"$PY" -m grpc_tools.protoc -I "$ROOT/idl" --python_out="$out" --pyi_out="$out" "$ROOT/idl/idl_http.proto"
log "regenerated $out/idl_http_pb2.py from idl/idl_http.proto"
