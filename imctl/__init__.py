"""imctl: a command-line client of the IM backend.

    imctl send --chat a:b --sender a --text hi
    imctl pull --chat a:b --reverse --limit 20
    imctl tail --chat a:b

It talks HTTP (`--url`, default http://localhost:8080) or, with `--rpc`,
Thrift straight to the RPC server. `--as USER` names the caller (the
gateway's header for AUTH_MODE=header; Thrift's Caller), `--token` a JWT.
Modules: `clients` (one interface, two transports), `__main__` (arguments
and output).
"""
