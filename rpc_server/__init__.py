"""rpc_server: the IMService Thrift server (gevent), storing messages in Redis.

Layers, each a folder, top to bottom:
    wire/      Thrift bytes <-> calls: framing detection, each call read whole
               and checked before decoding, the connection loop
    service.py the IMService handler (the domain): validation, Thrift Codes;
               it receives its collaborators (storage) from process/
               chat_id, paging, errors: pure domain logic it shares with storage
    storage/   Redis: every key (storage/keys.py), the Lua scripts, the
               store's semantics, pipelining and routing, pub/sub wake-ups
    process/   one server process wired together (worker), a supervisor of
               several, the etcd registration
    tools/     offline operator commands over storage (python -m rpc_server.tools.X)
At the top also: __main__ (start-up), config (settings), observability
(metrics, the per-call log line), call_context (what the wire tells the
service of the call it is answering: when it was read whole, and a Kitex
TTHeader's request id, caller and RPC timeout), deadline (by when each call must be answered), admission (the
process's own concurrency limit, a wrapper of the handler that refuses calls
past it).

Imports go down only: wire imports neither service nor storage; storage
never imports service, wire, process or tools; tools never import wire,
process or service. Nothing here imports http_server (the two servers share
only idl/ and plumbing/). tests/test_layers.py checks.
"""
