"""Every setting of both servers is checked at start-up against the range the
README's configuration table documents: a bad value is a StartupError whose
one line names the variable (or the flag), the value and the range. No
server here: the config parsers, in-process (tests/test_startup.py runs the
real processes)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import ModuleType

import pytest

from http_server import config as http_config
from plumbing.settings import OneOf, Range, StartupError
from rpc_server import config as rpc_config

ROOT = Path(__file__).resolve().parent.parent
SERVERS = {"rpc_server": rpc_config, "http_server": http_config}

# One bad value for every checked setting, and the range its error must quote.
BAD = {
    "rpc_server": [
        ("RPC_PORT", "0", "1..65535"),
        ("RPC_WORKERS", "-1", "0..1024"),
        ("REDIS_TIMEOUT_MS", "0", "1..600000"),
        ("REDIS_POOL_SIZE", "0", "1..100000"),
        ("REDIS_POOL_WAIT_MS", "-1", "0..600000"),
        ("REDIS_PIPELINE_LANES", "65", "0..64"),
        ("REDIS_WAIT_REPLICAS", "-1", "0..100"),
        ("REDIS_WAIT_TIMEOUT_MS", "0", "1..600000"),  # WAIT 0 would block for ever
        ("RPC_DEFAULT_TIMEOUT_MS", "0", "1..3600000"),
        ("REDIS_REPLY_RESERVE_MS", "-1", "0..600000"),
        ("MAX_TEXT_CHARS", "0", "1..1000000"),
        ("MAX_PULL_LIMIT", "0", "1..10000"),
        ("PULL_MAX_WAIT_MS", "-1", "0..3600000"),
        ("RPC_MAX_WAITERS", "-1", "0..1000000"),
        ("IDEMPOTENCY_TTL_S", "0", "1..31536000"),  # SET ... EX 0 fails after the message is stored
        ("RETENTION_MAX_AGE_S", "-1", "0..3153600000"),
        ("RETENTION_MAX_MESSAGES", "-1", "0..1000000000"),
        ("RPC_MAX_CONNECTIONS", "0", "1..1000000"),
        ("RPC_IDLE_TIMEOUT_S", "0", "0.1..86400.0"),
        ("RPC_MESSAGE_TIMEOUT_S", "nan", "0.1..3600.0"),
        ("RPC_MAX_MESSAGE_BYTES", "100", "1024..67108864"),
        ("RPC_SHUTDOWN_GRACE_S", "-1", "0.0..3600.0"),
        ("RATE_LIMIT_PER_S", "inf", "0.0..1000000.0"),
        ("RATE_LIMIT_BURST", "0", "1..1000000"),
        ("RPC_METRICS_PORT", "65536", "0..65535"),
        ("ETCD_LEASE_TTL_S", "0", "1..86400"),
        ("LOG_LEVEL", "verbose", "DEBUG, INFO, WARNING, ERROR"),
        ("LOG_REQUESTS", "2", "0..1"),
        ("RPC_MAX_IN_FLIGHT", "0", "1..1000000"),
        ("RPC_ADMISSION_TARGET_MS", "-1", "0..60000"),
    ],
    "http_server": [
        ("HTTP_PORT", "70000", "1..65535"),
        ("HTTP_WORKERS", "0", "1..1024"),
        ("HTTP_WORKER_CONNECTIONS", "0", "1..1000000"),
        ("RPC_REFRESH_S", "0", "0.1..86400.0"),
        ("RPC_EJECT_S", "-1", "0.0..86400.0"),
        ("RPC_TIMEOUT_MS", "0", "1..3600000"),
        ("RPC_CONNECT_TIMEOUT_MS", "0", "1..600000"),
        ("RPC_POOL_SIZE", "0", "1..100000"),
        ("PULL_MAX_WAIT_S", "-1", "0..3600"),
        ("RPC_WAIT_POOL_SIZE", "0", "1..1000000"),
        ("SSE_MAX_STREAMS", "-1", "0..1000000"),
        ("SSE_HEARTBEAT_S", "0", "1..3600"),
        ("MAX_BODY_BYTES", "0", "1..1073741824"),
        ("HTTP_KEEPALIVE_S", "0", "1..3600"),  # 0 would make every socket non-blocking
        ("HTTP_GRACEFUL_TIMEOUT_S", "-1", "0..3600"),
        ("LOG_LEVEL", "loud", "DEBUG, INFO, WARNING, ERROR"),
        ("LOG_REQUESTS", "-1", "0..1"),
        ("AUTH_MODE", "JWT", "none, header, jwt"),
        ("JWT_LEEWAY_S", "-1", "0..86400"),
        ("ADMIN_ERASE_TIMEOUT_S", "0", "1..3600"),
        ("HTTP_HEADER_TIMEOUT_S", "0", "1..3600"),
        ("HTTP_BODY_MIN_RATE", "0", "1..1073741824"),
        ("HTTP_ADMISSION_TARGET_MS", "60001", "0..60000"),
        ("HTTP_ADMISSION_QUEUE_MS", "-1", "0..60000"),
    ],
}


def _cases() -> list[tuple[str, str, str, str]]:
    return [(server, env, value, shown) for server, rows in BAD.items() for env, value, shown in rows]


def _error(module: ModuleType, argv: list[str], environ: dict[str, str]) -> str:
    with pytest.raises(StartupError) as caught:
        module.load(argv, environ)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(("server", "env", "value", "shown"), _cases(), ids=[f"{s}-{e}" for s, e, _, _ in _cases()])
def test_a_bad_value_names_the_variable_the_value_and_the_range(server: str, env: str, value: str, shown: str) -> None:
    module = SERVERS[server]
    message = _error(module, [], {env: value})
    assert env in message and repr(value) in message and shown in message, message
    # The same value given as the flag names the flag.
    flag = next(s.flag for s in module.SETTINGS if s.env == env)
    message = _error(module, [flag, value], {})
    assert message.startswith(flag + " ") and repr(value) in message and shown in message, message


@pytest.mark.parametrize("server", SERVERS)
def test_every_checked_setting_has_a_bad_value_above(server: str) -> None:
    checked = {s.env for s in SERVERS[server].SETTINGS if s.check is not None}
    assert checked == {env for env, _, _ in BAD[server]}


@pytest.mark.parametrize("server", SERVERS)
def test_every_numeric_setting_is_checked_and_its_default_is_in_range(server: str) -> None:
    for s in SERVERS[server].SETTINGS:
        if isinstance(s.default, (int, float)):
            assert isinstance(s.check, Range), f"{s.env} has no range"
            assert type(s.check.low) is type(s.default) and type(s.check.high) is type(s.default), s.env
        if s.check is not None:
            assert s.check.allows(s.default), f"{s.env}'s default {s.default!r} is outside {s.check}"


@pytest.mark.parametrize("server", SERVERS)
def test_each_range_is_inclusive_and_nothing_beyond_it_is_accepted(server: str) -> None:
    module = SERVERS[server]
    defaults = module.load([], {})
    for s in module.SETTINGS:
        if not isinstance(s.check, Range):
            continue
        step = 1 if isinstance(s.default, int) else 0.001
        for inside in (s.check.low, s.check.high):
            assert getattr(module.load([], _consistent(s.env, str(inside))), s.field) == inside, s.env
        for outside in (s.check.low - step, s.check.high + step):
            message = _error(module, [], {s.env: str(outside)})
            assert message.startswith(s.env + " ") and str(s.check) in message, message
        if isinstance(s.default, int):  # an integer setting refuses a fraction, and says so
            assert "an integer" in _error(module, [], {s.env: f"{s.check.low}.5"})
    assert defaults == module.Config()


def _consistent(env: str, value: str) -> dict[str, str]:
    """`env`=`value`, with what another setting must then be (the cross-checks below)."""
    if env == "SSE_MAX_STREAMS":  # the wait pool must hold every stream
        return {env: value, "RPC_WAIT_POOL_SIZE": value if value != "0" else "1"}
    if env == "RPC_WAIT_POOL_SIZE":
        return {env: value, "SSE_MAX_STREAMS": "0"}
    return {env: value}


def test_not_a_number_is_refused_with_the_range() -> None:
    message = _error(rpc_config, [], {"RPC_PORT": "88a8"})
    assert message == "RPC_PORT must be an integer in 1..65535, not '88a8'"
    message = _error(rpc_config, [], {"RPC_IDLE_TIMEOUT_S": ""})
    assert message == "RPC_IDLE_TIMEOUT_S must be a number in 0.1..86400.0, not ''"


def test_log_level_is_case_insensitive() -> None:
    assert rpc_config.load([], {"LOG_LEVEL": "debug"}).log_level == "debug"
    assert http_config.load(["--log-level", "Warning"], {}).log_level == "Warning"


def test_a_flag_wins_over_its_variable_and_both_are_checked() -> None:
    assert rpc_config.load(["--port", "9000"], {"RPC_PORT": "9001"}).port == 9000
    # The variable a flag overrides is not read, so not checked either.
    assert rpc_config.load(["--port", "9000"], {"RPC_PORT": "0"}).port == 9000


def test_unknown_flags_and_missing_values_are_one_line_errors() -> None:
    assert "unrecognized arguments: --reuse-port" in _error(rpc_config, ["--reuse-port", "1"], {})
    assert "--port" in _error(http_config, ["--port"], {})


def test_settings_that_contradict_each_other() -> None:
    message = _error(rpc_config, [], {"RPC_PORT": "9000", "RPC_METRICS_PORT": "9000"})
    assert message == "RPC_METRICS_PORT must differ from RPC_PORT (both 9000): set another port, or 0 for no metrics"
    message = _error(http_config, [], {"SSE_MAX_STREAMS": "2000", "RPC_WAIT_POOL_SIZE": "1500"})
    assert "RPC_WAIT_POOL_SIZE" in message and "SSE_MAX_STREAMS" in message and "1500" in message, message
    assert rpc_config.load([], {"RPC_METRICS_PORT": "0", "RPC_PORT": "1"}).metrics_port == 0


def test_a_malformed_rpc_addr_is_one_line() -> None:
    for value in ("127.0.0.1", "127.0.0.1:x", "h:0", "h:70000", ""):
        message = _error(http_config, [], {"RPC_ADDR": value})
        assert message.startswith("RPC_ADDR ") and "host:port" in message, message


def test_checks() -> None:
    assert str(Range(1, 10)) == "1..10" and str(Range(0.5, 2.0)) == "0.5..2.0"
    assert Range(1, 10).allows(1) and Range(1, 10).allows(10) and not Range(1, 10).allows(11)
    levels = OneOf(("DEBUG", "INFO"), case_sensitive=False)
    assert levels.allows("info") and not levels.allows("trace") and str(levels) == "DEBUG, INFO"
    assert not OneOf(("none", "jwt")).allows("JWT")


# --- The README's configuration table ------------------------------------------------------------


def _readme_table() -> dict[str, list[tuple[str, str, str]]]:
    """{section: [(variable, flag, range)]} from the README's configuration table."""
    text = (ROOT / "README.md").read_text()
    chapter = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    header = "| variable | flag | default | range | meaning |"
    assert chapter.count(header) == 1, f"the chapter has one table headed {header}"
    rows = []
    for line in chapter.split(header, 1)[1].splitlines()[2:]:  # after the header's |---| line
        if not line.startswith("|"):
            break
        rows.append(line)
    sections: dict[str, list[tuple[str, str, str]]] = {}
    section = ""
    for line in rows:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        bold = re.fullmatch(r"\*\*(.+)\*\*", cells[0])
        if bold:
            section = bold.group(1)
            continue
        sections.setdefault(section, []).append((cells[0].strip("`"), cells[1].strip("`"), cells[3].strip("`")))
    return sections


@pytest.mark.parametrize("server", SERVERS)
def test_the_readme_table_and_the_config_agree(server: str) -> None:
    documented = {(env, flag, shown) for env, flag, shown in _readme_table()[server] if flag}
    defined = {(s.env, s.flag, str(s.check) if s.check else "") for s in SERVERS[server].SETTINGS}
    assert documented - defined == set(), "in the README only (or with another flag or range)"
    assert defined - documented == set(), "in the config only (or with another flag or range)"


def test_the_readme_rows_without_a_flag_are_not_settings_of_a_server() -> None:
    env_names = {s.env for module in SERVERS.values() for s in module.SETTINGS}
    for section, rows in _readme_table().items():
        for env, flag, _ in rows:
            if not flag:
                assert env not in env_names, f"{section}: {env} is a setting but has no flag in the README"


def test_the_check_is_a_dataclass_field_of_each_setting() -> None:
    for module in SERVERS.values():
        assert [s.field for s in module.SETTINGS] == [f.name for f in dataclasses.fields(module.Config)]
