"""JSON log lines, the same in both servers: one line per request or call
written straight to stderr, and everything else through `logging`,
formatted as JSON too.

The per-request (per-call) line does not go through `logging`: measured in
a server under load, a logging call with a JSON formatter cost ~18 us, a
sixth of a whole /ping; one json.dumps and one write cost a fraction
(stderr is line-buffered, so two processes' lines never interleave).

No metrics here: gunicorn's master needs the formatter before the metrics
directory is set up, and prometheus_client chooses its storage when it is
first imported.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from pythonjsonlogger.json import JsonFormatter


class LineLog:
    """One JSON object per line on stderr, for a hot line such as the
    per-request one; `name` is its logger name, `pid` adds the process id."""

    def __init__(self, name: str, pid: bool = False) -> None:
        self.name = name
        self.pid = pid
        self.enabled = True

    def write(self, **fields: object) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"
        line: dict[str, object] = {"asctime": stamp, "level": "INFO", "name": self.name}
        if self.pid:
            line["pid"] = os.getpid()
        line.update(fields)
        sys.stderr.write(json.dumps(line) + "\n")


def json_formatter() -> JsonFormatter:
    """The formatter of every other log line (gunicorn's own included)."""
    return JsonFormatter("{asctime}{levelname}{name}{message}", style="{", rename_fields={"levelname": "level"})


def configure_logging(level: str, hot_line: LineLog, hot_line_enabled: bool) -> None:
    """JSON lines on stderr at `level`; `hot_line_enabled` False silences the
    per-request (per-call) lines of `hot_line`."""
    # Each LogRecord would look up its thread, process and task names, which
    # we never print; under gevent, current_thread() builds a dummy thread for
    # every greenlet (measured: ~40 us per log line in the servers).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    hot_line.enabled = hot_line_enabled
