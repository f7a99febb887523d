"""JSON log lines, the same in both servers: one line per request or call
written straight to stderr, and everything else through `logging`,
formatted as JSON too.

The per-request (per-call) line does not go through `logging`: measured in
a server under load, a logging call with a JSON formatter cost ~18 us, a
sixth of a whole /ping; LineLog costs a fraction (see its docstring).

No metrics here: gunicorn's master needs the formatter before the metrics
directory is set up, and prometheus_client chooses its storage when it is
first imported.
"""

from __future__ import annotations

import logging
import os
import time

import orjson
from pythonjsonlogger.json import JsonFormatter


class LineLog:
    """One JSON object per line on stderr, for a hot line such as the
    per-request one; `name` is its logger name, `pid` adds the process id.

    Measured in the servers under load (wrk -c64, 2 cores, bench.hotpath),
    this line was the largest single cost of an RPC echo: 84 against 56 us
    of CPU with LOG_REQUESTS=0. So the line is encoded by orjson (echo 101
    -> 84 us, a send's RPC share 213 -> 195, against json.dumps), its time
    stamp's text is made once a second (plus the milliseconds), and it is
    written with one os.write of bytes, not through sys.stderr's text and
    buffer layers (which hold nothing back between lines: stderr is
    line-buffered and `logging` flushes after each record, so the two kinds
    of line stay in order). (Collecting the lines of a loop iteration into
    one write was measured too: no gain.) orjson writes no spaces after ':' and ',':
    match fields by parsing the line, not by its text. A line is one write,
    so lines of processes sharing the stream never interleave (up to
    PIPE_BUF, 4,096 bytes, on a pipe; the fields are capped well below)."""

    def __init__(self, name: str, pid: bool = False) -> None:
        self.name = name
        self.pid = pid
        self.enabled = True
        self._second = -1
        self._stamp = ""

    def write(self, **fields: object) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        line: dict[str, object] = {
            "asctime": f"{self._stamp},{int((now - second) * 1000):03d}",
            "level": "INFO",
            "name": self.name,
        }
        if self.pid:
            line["pid"] = os.getpid()
        line.update(fields)
        data = orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        while data:
            data = data[os.write(2, data) :]


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
