"""The Falcon application: `create_app(service)` wires resources to an
injected MessageService; `get_app()` builds one from the environment, for
gunicorn (`http_server.app:get_app()`), behind admission control
(http_server.admission)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
import orjson

import idl
from http_server import config, endpoints
from http_server.admission import Admission, Overloaded, WaitingRoom, WsgiApp, count_refused
from http_server.auth import Authentication
from http_server.errors import ApiError, handle_unexpected, serialize_error
from http_server.message_service import MessageService
from http_server.resources import AdminChat, AdminUser, Chats, Health, OpenApiSpec, Ping, Pull, Send
from http_server.rpc_pool import RpcClientPool
from http_server.slow_clients import BodyTimeout
from http_server.streaming import Subscribe
from http_server.telemetry import Metrics, RequestTelemetry, access_log
from plumbing.admission import AdaptiveLimit
from plumbing.logs import configure_logging


def create_app(
    service: MessageService,
    max_body_bytes: int,
    auth: Authentication | None = None,
    max_wait_s: int = 30,
    streams: Subscribe | None = None,
    allowed_origins: str = "",
) -> falcon.App[falcon.Request, falcon.Response]:
    # auth None: AUTH_MODE none (every caller None). (The annotation lets mypy type the mixed list.)
    middleware: list[Any] = [RequestTelemetry(), auth or Authentication()]
    if allowed_origins:  # for browsers' EventSource (and fetch) from other origins
        origins = [o.strip() for o in allowed_origins.split(",")]
        middleware.append(falcon.CORSMiddleware(allow_origins="*" if "*" in origins else origins))
    app: falcon.App[falcon.Request, falcon.Response] = falcon.App(middleware=middleware)
    app.req_options.default_media_type = falcon.MEDIA_JSON
    app.resp_options.default_media_type = falcon.MEDIA_JSON
    # Responses encoded by orjson (bench.hotpath, 4 rounds: an HTTP pull's worker CPU 287 -> 255 us,
    # a send's 271 -> 262); like Hertz's, its JSON has no spaces. Request bodies stay with json.loads,
    # which takes any integer, so that an out-of-range one gets the API's own 400.
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(dumps=orjson.dumps)
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(BodyTimeout, _body_timeout)
    app.add_error_handler(Overloaded, _overloaded)
    app.add_route("/ping", Ping())
    app.add_route("/healthz", Health(service))
    app.add_route("/metrics", Metrics())
    app.add_route("/openapi.json", OpenApiSpec())
    app.add_route("/api/send", Send(service, max_body_bytes))
    app.add_route("/api/pull", Pull(service, max_body_bytes, max_wait_s))
    app.add_route("/api/chats", Chats(service, max_body_bytes))
    app.add_route("/api/subscribe", streams or Subscribe(service, max_streams=1000, heartbeat_s=15))
    app.add_route("/api/admin/chats/{chat}", AdminChat(service))
    app.add_route("/api/admin/users/{user}", AdminUser(service))
    return app


def _body_timeout(req: falcon.Request, resp: falcon.Response, ex: BodyTimeout, params: Any) -> None:
    """A body too slow to arrive (http_server.slow_clients): 408, and the
    worker closes the connection after it."""
    raise ApiError(408, str(ex))


def _overloaded(req: falcon.Request, resp: falcon.Response, ex: Overloaded, params: Any) -> None:
    """A call refused by admission control after its request was admitted:
    counted with the refusals at the gate, answered as any 503."""
    count_refused(req.path)
    raise ex


def get_app() -> WsgiApp:
    loaded = config.for_process()  # this worker's settings, parsed (and the JWT key read) once
    cfg = loaded.config
    configure_logging(cfg.log_level, access_log, bool(cfg.log_requests))
    rpc = idl.load_rpc()
    source: Callable[[], list[endpoints.Endpoint]]
    if cfg.rpc_etcd:
        source, refresh = endpoints.EtcdSource(cfg.rpc_etcd, cfg.rpc_service_name), cfg.rpc_refresh_s
    elif cfg.rpc_dns:
        source, refresh = endpoints.dns(cfg.rpc_dns), cfg.rpc_refresh_s
    else:
        source, refresh = endpoints.static(cfg.rpc_addr), float("inf")
    rpc_servers = endpoints.Endpoints(source, refresh, cfg.rpc_eject_s)
    connect_s, call_s = cfg.rpc_connect_timeout_ms / 1000, cfg.rpc_timeout_ms / 1000
    pool = RpcClientPool(rpc.IMService, rpc_servers, cfg.rpc_pool_size, connect_s, call_s)
    # Waiting pulls: their own connections, whose reads may take the longest wait.
    waits = RpcClientPool(rpc.IMService, rpc_servers, cfg.rpc_wait_pool_size, connect_s, cfg.pull_max_wait_s + call_s)
    # Admission control: at most a call per pooled RPC connection (one more would only wait for a connection).
    limit = AdaptiveLimit(cfg.rpc_pool_size, cfg.admission_target_ms / 1000) if cfg.admission_target_ms else None
    room = None if limit is None else WaitingRoom(limit, cfg.admission_queue_ms / 1000)
    service = MessageService(rpc, pool, waits, call_s, erase_timeout_s=cfg.admin_erase_timeout_s, room=room)
    app = create_app(
        service,
        cfg.max_body_bytes,
        auth=Authentication(cfg, loaded.jwt_key),
        max_wait_s=cfg.pull_max_wait_s,
        streams=Subscribe(service, cfg.sse_max_streams, cfg.sse_heartbeat_s),
        allowed_origins=cfg.sse_allowed_origins,
    )
    return app if room is None else Admission(app, room)
