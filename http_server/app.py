"""The Falcon application: `create_app(service)` wires resources to an
injected MessageService; `get_app()` builds one from the environment, for
gunicorn (`http_server.app:get_app()`)."""

from __future__ import annotations

import logging

import falcon

import idl
from http_server import config
from http_server.errors import handle_unexpected, serialize_error
from http_server.resources import MessageService, OpenApiSpec, Ping, Pull, Send
from http_server.rpc_pool import RpcClientPool


def create_app(service: MessageService, max_body_bytes: int) -> falcon.App[falcon.Request, falcon.Response]:
    app = falcon.App()
    app.req_options.default_media_type = falcon.MEDIA_JSON
    app.resp_options.default_media_type = falcon.MEDIA_JSON
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, handle_unexpected)
    app.add_route("/ping", Ping())
    app.add_route("/openapi.json", OpenApiSpec())
    app.add_route("/api/send", Send(service, max_body_bytes))
    app.add_route("/api/pull", Pull(service, max_body_bytes))
    return app


def get_app() -> falcon.App[falcon.Request, falcon.Response]:
    cfg = config.load([])
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rpc = idl.load_rpc()
    host, port = cfg.rpc_host_port
    pool = RpcClientPool(
        rpc.IMService, host, port, cfg.rpc_pool_size, cfg.rpc_connect_timeout_ms / 1000, cfg.rpc_timeout_ms / 1000
    )
    return create_app(MessageService(rpc, pool), cfg.max_body_bytes)
