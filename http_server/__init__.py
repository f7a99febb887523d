"""http_server: the HTTP API (Falcon under gunicorn), a client of rpc_server.

Layers, top to bottom:
    __main__, gunicorn_conf, config   start-up and settings
    app        create_app(service): routes and error handling
    resources  Ping, Send, Pull: decode, call MessageService, encode
    message_service  the Thrift client: pools, deadlines, Codes to errors
    params     JSON / query / form decoding with strict types
    rpc_pool   pooled, checked Thrift connections with deadlines
It speaks only Thrift: no Redis connection, no storage logic. It may
import idl and plumbing; never rpc_server, nor redis (tests/test_layers.py).
"""
