"""`python -m rpc_server`: serve IMService over Thrift, storing in Redis.

One process (`--workers 1`), or a supervisor of several sharing the port
(the default: the CPUs available). A start-up failure (plumbing.settings.StartupError)
is one line on stderr and exit status 2."""

from gevent import monkey

monkey.patch_all()  # before redis and socket are imported anywhere

import atexit  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from plumbing.cpus import available_cpus  # noqa: E402
from plumbing.settings import StartupError, fail  # noqa: E402
from rpc_server import config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    try:
        return _start(argv)
    except StartupError as e:
        fail("rpc_server", e)


def _start(argv: list[str] | None) -> int:
    cfg = config.load(argv)
    workers = cfg.workers or available_cpus()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before prometheus_client is first imported: it chooses its storage then.
        # The workers inherit the variable; the folder is removed when this process exits.
        made = tempfile.mkdtemp(prefix="im-rpc-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
        atexit.register(shutil.rmtree, made, True)
    from plumbing.logs import configure_logging
    from rpc_server.observability import call_log

    configure_logging(cfg.log_level, call_log, bool(cfg.log_requests))
    if workers > 1:
        from rpc_server.process.supervisor import supervise

        return supervise(cfg, workers)
    from rpc_server.process.worker import serve

    return serve(cfg)


if __name__ == "__main__":
    sys.exit(main())
