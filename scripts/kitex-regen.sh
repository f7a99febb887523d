#!/usr/bin/env bash
# Regenerate the Kitex clients' code under tests/kitex/v*/ with each module's
# own Kitex tool (the version its go.mod pins, built from there: tools.go),
# as the seed's kitex-regen.sh did: seed_gen/ from the seed template's IDL
# (tests/fixtures/seed_idl_rpc.thrift), ours_gen/ from idl/idl_rpc.thrift.
# The generated code is committed; tests/test_kitex.py builds and runs it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v go >/dev/null || { log "Go is needed (go.dev/doc/install)"; exit 1; }
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
for module in "$ROOT"/tests/kitex/v*/; do
    module="${module%/}"
    name="$(basename "$module")"
    log "$name: building its kitex tool"
    (cd "$module" && go build -o "$tools/$name/kitex" github.com/cloudwego/kitex/tool/cmd/kitex)
    # Kitex < 0.11 runs thriftgo as a program: the version its go.mod pins.
    if grep -q "github.com/cloudwego/thriftgo" "$module/tools.go"; then
        (cd "$module" && go build -o "$tools/$name/thriftgo" github.com/cloudwego/thriftgo)
    fi
    rm -rf "$module/seed_gen" "$module/ours_gen"
    (cd "$module" &&
        PATH="$tools/$name:$PATH" kitex -module imtest/kitexclient -gen-path seed_gen ../../fixtures/seed_idl_rpc.thrift &&
        PATH="$tools/$name:$PATH" kitex -module imtest/kitexclient -gen-path ours_gen ../../../idl/idl_rpc.thrift)
    log "$name: regenerated seed_gen/ and ours_gen/"
done
