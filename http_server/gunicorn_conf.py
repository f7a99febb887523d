"""gunicorn settings for the HTTP server, derived from http_server.config."""

from http_server.config import load as _load_config

_cfg = _load_config([])

bind = f"{_cfg.host}:{_cfg.port}"
workers = _cfg.workers
worker_class = "gevent"  # many concurrent clients, each waiting on an RPC
worker_connections = _cfg.worker_connections
keepalive = 75  # keep client connections (wrk, proxies) open between requests
graceful_timeout = 10
control_socket_disable = True  # gunicorn 27 would share one in ~/.gunicorn
accesslog = None
errorlog = "-"
loglevel = _cfg.log_level.lower()
