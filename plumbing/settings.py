"""Settings of both servers: environment variables, each with a matching
flag, checked at start-up; and start-up failures, reported as one line on
stderr with exit status 2.

A setting that cannot work (`IDEMPOTENCY_TTL_S=0`: every keyed send would
store its message, then fail) must stop the server before it serves, with a
line that names the variable (or the flag it was given as), the value and
the range, rather than fail later on a request. Each server's config module
describes its settings here: the dataclass field, the variable, a help text
and a check (a Range, or OneOf for a word); the README's configuration table
lists the same names and ranges (tests/test_settings.py holds them equal).
Both servers use this package; neither imports the other.
"""

from __future__ import annotations

import argparse
import errno
import math
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

EXIT_STARTUP_FAILED = 2  # as argparse exits on a bad flag; supervisors treat it as final

T = TypeVar("T")


class StartupError(Exception):
    """A start-up failure: its message is one line naming what to change."""


def fail(component: str, error: BaseException) -> NoReturn:
    """Report `error` as one line on stderr and exit with status 2."""
    line = " ".join(str(error).split())  # one line, whatever the message held
    print(f"{component}: {line}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_STARTUP_FAILED)


@dataclass(frozen=True)
class Range:
    """Inclusive bounds of a number; float bounds for a setting that takes decimals."""

    low: int | float
    high: int | float

    def allows(self, value: object) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.low}..{self.high}"


@dataclass(frozen=True)
class OneOf:
    """A word among a few."""

    choices: tuple[str, ...]
    case_sensitive: bool = True

    def allows(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        if self.case_sensitive:
            return value in self.choices
        return value.upper() in (choice.upper() for choice in self.choices)

    def __str__(self) -> str:
        return ", ".join(self.choices)


Check = Range | OneOf


@dataclass(frozen=True)
class Setting:
    field: str  # of the config dataclass
    env: str
    flag: str
    help: str
    default: Any
    check: Check | None


def describe(config: type[Any], sources: Mapping[str, tuple[str, str]], checks: Mapping[str, Check]) -> list[Setting]:
    """The settings of the dataclass `config`: `sources` gives each field's
    variable and help text, `checks` the check of those that have one."""
    table = []
    for f in fields(config):
        env, help_text = sources[f.name]
        table.append(Setting(f.name, env, "--" + f.name.replace("_", "-"), help_text, f.default, checks.get(f.name)))
    return table


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A bad flag: one line, like every other start-up failure (not the usage text)."""
        raise StartupError(f"{message} (see --help)")


def parse(
    config: type[T],
    table: Sequence[Setting],
    prog: str,
    description: str,
    argv: Sequence[str] | None,
    environ: Mapping[str, str],
    shown: Collection[str] | None = None,
    epilog: str | None = None,
) -> T:
    """An instance of `config`: each field from its flag, else its variable,
    else its default; StartupError for a value its check refuses. With
    `shown` (a tool that reads a server's settings), --help lists only those
    fields; every other flag is still accepted."""
    parser = _Parser(prog=prog, description=description, epilog=epilog)
    for s in table:
        check = f"; {s.check}" if s.check is not None else ""
        help_text = f"{s.help} (${s.env}, default {s.default}{check})"  # the defaults, never the environment's values
        if shown is not None and s.field not in shown:
            help_text = argparse.SUPPRESS
        parser.add_argument(s.flag, default=None, metavar=s.field.upper(), help=help_text)  # None: no flag given
    flags = vars(parser.parse_args(argv))
    values = {}
    for s in table:
        if flags[s.field] is not None:
            values[s.field] = _value(s, s.flag, flags[s.field])
        elif s.env in environ:
            values[s.field] = _value(s, s.env, environ[s.env])
        else:
            values[s.field] = s.default
    return config(**values)


def _value(s: Setting, name: str, raw: str) -> Any:
    """`raw` as the type of the setting's default, checked; `name` is what the error calls it."""
    kind = type(s.default)
    value: Any = raw
    try:
        if kind is int:
            value = int(raw)
        elif kind is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
    except ValueError:
        value = None
    if value is not None and (s.check is None or s.check.allows(value)):
        return value
    if isinstance(s.check, OneOf):
        wanted = f"one of {s.check}"
    else:
        wanted = ("an integer" if kind is int else "a number") + (f" in {s.check}" if s.check else "")
    # Only checked settings reach here with a value: none of them is a secret, so the value is shown.
    raise StartupError(f"{name} must be {wanted}, not {raw!r}")


def check_host_port(setting: str, address: str, form: str = "host:port") -> tuple[str, int]:
    """(host, port) of `address`; an empty host is 127.0.0.1. StartupError naming `setting` if it is not `form`."""
    host, colon, port = address.strip().rpartition(":")
    if not (colon and port.isdigit() and 1 <= int(port) <= 65535):
        raise StartupError(f"{setting} must be {form} with a port in 1..65535, not {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def check_url(setting: str, endpoints: str) -> None:
    """StartupError naming `setting` unless its first endpoint is [http[s]://]host[:port]."""
    first = endpoints.split(",")[0].strip()
    try:
        url = urlsplit(first if "://" in first else f"http://{first}")
        valid = bool(url.hostname) and url.scheme in ("http", "https") and url.port != 0  # .port may raise
    except ValueError:
        valid = False
    if not valid:
        raise StartupError(f"{setting} must be http://host:port[,...], not {first!r}")


def cannot_listen(host_setting: str, port_setting: str, host: str, port: int, error: OSError) -> str:
    """The one line for a port that cannot be listened on, naming the setting to change."""
    if error.errno == errno.EADDRINUSE:
        return f"{port_setting} {port} is in use on {host}: stop what listens there, or set {port_setting}"
    if error.errno == errno.EACCES:
        return f"{port_setting} {port}: permission denied on {host}: choose a port above 1023"
    why = error.strerror or str(error)
    return f"{host_setting} {host!r}: cannot listen there ({why}): set {host_setting} to an address of this machine"
