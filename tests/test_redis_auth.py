"""Redis credentials and TLS: REDIS_URL and REDIS_CLUSTER_NODES with a user
and password, `rediss://` with REDIS_TLS_CA_FILE, against real redis-server
and rpc_server processes; and no credentials in any log line or error.

The servers require a password for the default user (the tests' own admin
client) and have an ACL user of their own with another password, so that a
URL naming that user works only if the user name is sent too. The password
holds `@`, `:`, `/` and `%`, percent-encoded in the URLs."""

from __future__ import annotations

import functools
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from redis.exceptions import RedisClusterException
from thriftpy2.rpc import make_client

from plumbing.settings import StartupError
from rpc_server import config
from rpc_server.chat_id import parse_chat
from rpc_server.errors import StorageUnavailable
from rpc_server.storage.redis_client import ClusterNodes, connect_redis, parse_cluster_nodes, redacted
from rpc_server.storage.store import MessageStore
from tests.servers import Process, RedisCluster, RedisServer, RpcServer, free_port

USER = "im-app"
USER_PASSWORD = f"p@ss:w/rd%{uuid.uuid4().hex[:12]}"
ADMIN_PASSWORD = f"admin-{uuid.uuid4().hex[:12]}"
CREDENTIALS = f"{quote(USER, safe='')}:{quote(USER_PASSWORD, safe='')}"
SECRETS = (USER_PASSWORD, quote(USER_PASSWORD, safe=""), ADMIN_PASSWORD, "wrong-" + USER_PASSWORD[-12:])


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert USER_PASSWORD[-12:] not in text  # nor its random part, however quoted


# --- Parsing and redaction (no server) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("127.0.0.1:7000, 127.0.0.1:7001", ClusterNodes((("127.0.0.1", 7000), ("127.0.0.1", 7001)))),
        ("redis://h1:7000,h2:7001/0", ClusterNodes((("h1", 7000), ("h2", 7001)))),
        (
            "redis://alice:s3cret@h1:7000,h2:7001",
            ClusterNodes((("h1", 7000), ("h2", 7001)), "redis", "alice", "s3cret"),
        ),
        ("rediss://alice:p%40s%3As%2F@h1:7000/", ClusterNodes((("h1", 7000),), "rediss", "alice", "p@s:s/")),
        ("rediss://:only-a-password@h1:7000", ClusterNodes((("h1", 7000),), "rediss", None, "only-a-password")),
        ("redis://a-user@h1:7000", ClusterNodes((("h1", 7000),), "redis", "a-user", None)),
        ("redis://u:p@s/s#?@h1:7000", ClusterNodes((("h1", 7000),), "redis", "u", "p@s/s#?")),  # the last @ ends them
        ("rediss://[::1]:7000,[::1]:7001", ClusterNodes((("::1", 7000), ("::1", 7001)), "rediss")),
    ],
)
def test_cluster_nodes_forms(spec: str, parsed: ClusterNodes) -> None:
    assert parse_cluster_nodes(spec) == parsed
    assert "s3cret" not in repr(parsed)  # the dataclass leaves credentials out of its repr


@pytest.mark.parametrize(
    "spec",
    [
        "user:SECRET@h1:7000",  # credentials without a scheme
        "http://user:SECRET@h1:7000",
        "redis://user:SECRET@h1",  # no port
        "redis://user:SECRET@h1:7000,h2",
        "redis://user:SECRET@",
        "redis://user:SECRET@h1:99999",
        "redis://user:SECRET@h1:7000/3",  # a cluster has only db 0
        "redis://user:SEC@RET",  # with an unencoded @, the host would be a part of the password
    ],
)
def test_malformed_cluster_nodes_are_refused_without_quoting_credentials(spec: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_cluster_nodes(spec)
    with pytest.raises(ValueError) as refused_again:
        connect_redis("", 1.0, 1, 0.5, spec)
    for message in (str(refused.value), str(refused_again.value)):
        assert message.startswith("REDIS_CLUSTER_NODES")
        assert "SECRET" not in message and "SEC" not in message and "RET" not in message


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:SE/CRET@127.0.0.1:6379/0",  # Python would read "SE" as the port
        "redis://user:SE#CRET@127.0.0.1:6379/0",
        "redis://user:1234?CRET@127.0.0.1:6379/0",  # ... or "1234", a valid one
        "redis://user:SE@1234/CRET@127.0.0.1:6379/0",  # ... or "1234" as the host
        "redis://user:SECRET@127.0.0.1:port/0",
        "http://user:SECRET@127.0.0.1:6379/0",
    ],
)
def test_malformed_urls_are_refused_without_quoting_credentials(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        connect_redis(url, 1.0, 1, 0.5)
    message = str(refused.value)
    assert message.startswith("REDIS_URL")
    assert "SE" not in message.replace("REDIS_URL", "") and "CRET" not in message and "1234" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://:pw@redis.example:6380/2", "rediss://redis.example:6380/2"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://u:p@ss@h:1/0", "redis://h:1/0"),
        ("redis://h:1/0?password=pw&db=1", "redis://h:1/0?…"),  # redis-py takes options, a password too
        ("unix://u:pw@/run/redis.sock?db=0", "unix:///run/redis.sock?…"),
        ("rediss://alice:pw@h1:7000,h2:7001,h3:7002", "rediss://h1:7000,h2:7001,h3:7002"),
        ("redis://:pw@h1:7000,h2:7001/0", "redis://h1:7000,h2:7001/0"),
        ("h1:7000,h2:7001", "h1:7000,h2:7001"),
        ("user:pw@h1:7000", "h1:7000"),  # malformed, still redacted
    ],
)
def test_redacted(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_ca_file_is_only_for_tls_and_checked_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="REDIS_TLS_CA_FILE is set but REDIS_URL is not rediss://"):
        connect_redis("redis://u:pw@127.0.0.1:6379/0", 1.0, 1, 0.5, tls_ca_file=__file__)
    with pytest.raises(ValueError, match="REDIS_CLUSTER_NODES is not rediss://"):
        connect_redis("", 1.0, 1, 0.5, "redis://u:pw@127.0.0.1:7000", tls_ca_file=__file__)
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match=re.escape(f"REDIS_TLS_CA_FILE {missing}")):
        connect_redis("rediss://u:pw@127.0.0.1:6379/0", 1.0, 1, 0.5, tls_ca_file=str(missing))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=re.escape(f"REDIS_TLS_CA_FILE {not_pem}")):
        connect_redis("rediss://u:pw@127.0.0.1:6379/0", 1.0, 1, 0.5, tls_ca_file=str(not_pem))


def test_help_shows_defaults_not_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    environ = {
        "REDIS_URL": f"redis://{CREDENTIALS}@10.0.0.1:6379/0",
        "REDIS_CLUSTER_NODES": f"redis://{CREDENTIALS}@h:1",
    }
    with pytest.raises(SystemExit):
        config.load(["--help"], environ)
    help_text = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert "--redis-url" in help_text and "default redis://127.0.0.1:6379/0" in help_text
    _assert_no_secret(help_text)
    with pytest.raises(StartupError) as wrong:  # a wrong flag: one line, naming it, no other values
        config.load(["--port", "x"], environ)
    assert str(wrong.value) == "--port must be an integer in 1..65535, not 'x'"


# --- Real servers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA that signed the server's certificate
    server_cert: Path  # for 127.0.0.1 and localhost
    server_key: Path
    other_ca: Path  # a CA that signed nothing of ours


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, cwd=cwd, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throwaway CA and a server certificate it signed, made with the openssl CLI."""
    d = tmp_path_factory.mktemp("certs")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for name in ("ca", "other-ca"):
        subject = ("-subj", f"/CN=throwaway {name}")
        _openssl("req", "-x509", *ec, *subject, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", cwd=d)
    _openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "server.ext").write_text(
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth, clientAuth\n"  # clientAuth: the cluster bus, node to node
        "authorityKeyIdentifier = keyid\n"
    )
    signed_by_ca = ("-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2")
    _openssl("x509", "-req", "-in", "server.csr", *signed_by_ca, "-extfile", "server.ext", "-out", "server.pem", cwd=d)
    return Certs(d / "ca.pem", d / "server.pem", d / "server.key", d / "other-ca.pem")


class SecureRedis(RedisServer):
    """A redis-server that wants a password (ADMIN_PASSWORD for the default
    user, which client() gives) and has the ACL user USER; with `certs`,
    a TLS port too (`tls_port`) beside the plaintext one."""

    def __init__(self, directory: Path, extra: list[str] | None = None, certs: Certs | None = None) -> None:
        self.tls_port = free_port()
        settings = ["--user", USER, "on", f">{USER_PASSWORD}", "~*", "&*", "+@all"]
        if certs:
            settings += ["--tls-port", str(self.tls_port), "--tls-auth-clients", "no"]
            settings += ["--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.server_key)]
            settings += ["--tls-ca-cert-file", str(certs.ca)]
            if extra and "--cluster-enabled" in extra:
                # The cluster bus over TLS, and CLUSTER SLOTS gives TLS clients the TLS ports.
                settings += ["--tls-cluster", "yes"]
        super().__init__(directory, extra=[*settings, *(extra or [])], password=ADMIN_PASSWORD)


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[SecureRedis]:
    server = SecureRedis(tmp_path_factory.mktemp("secure-redis"), certs=certs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _chat() -> str:
    tag = uuid.uuid4().hex[:8]
    return f"a-{tag}:b-{tag}"


def _roundtrip(store: MessageStore) -> None:
    chat = parse_chat(_chat())
    t = store.append(chat, chat.first, "hello")
    assert [(m.send_time, m.text) for m in store.read(chat, 0, 10, reverse=False).items] == [(t, "hello")]


def test_store_with_an_acl_user_and_password(secure_redis: SecureRedis) -> None:
    client = connect_redis(f"redis://{CREDENTIALS}@127.0.0.1:{secure_redis.port}/0", 1.0, 4, 0.5)
    _roundtrip(MessageStore(client, idempotency_ttl_s=60))
    assert client.acl_whoami() == USER


def test_store_with_the_default_users_password(secure_redis: SecureRedis) -> None:
    client = connect_redis(f"redis://:{ADMIN_PASSWORD}@127.0.0.1:{secure_redis.port}/0", 1.0, 4, 0.5)
    _roundtrip(MessageStore(client, idempotency_ttl_s=60))
    assert client.acl_whoami() == "default"


@pytest.mark.parametrize(
    "credentials",
    [
        "",  # none: NOAUTH
        f"{USER}:wrong-{USER_PASSWORD[-12:]}",
        f":{quote(USER_PASSWORD, safe='')}",  # the user's password for the default user
    ],
    ids=["none", "wrong password", "another user's password"],
)
def test_wrong_credentials_are_storage_unavailable(secure_redis: SecureRedis, credentials: str) -> None:
    at = "@" if credentials else ""
    client = connect_redis(f"redis://{credentials}{at}127.0.0.1:{secure_redis.port}/0", 1.0, 4, 0.5)
    store = MessageStore(client, idempotency_ttl_s=60)
    chat = parse_chat(_chat())
    with pytest.raises(StorageUnavailable) as failed:
        store.append(chat, chat.first, "x")
    _assert_no_secret(f"{failed.value!r} {failed.value.__cause__!r}")
    with pytest.raises(StorageUnavailable):
        store.read(chat, 0, 10, reverse=False)


def test_store_over_tls_with_the_ca_file(secure_redis: SecureRedis, certs: Certs) -> None:
    url = f"rediss://{CREDENTIALS}@127.0.0.1:{secure_redis.tls_port}/0"
    client = connect_redis(url, 1.0, 4, 0.5, tls_ca_file=str(certs.ca))
    _roundtrip(MessageStore(client, idempotency_ttl_s=60))
    assert client.acl_whoami() == USER
    # The plaintext client on the TLS port, and TLS without our CA, both fail.
    for refused in (
        connect_redis(url.replace("rediss://", "redis://"), 1.0, 1, 0.5),
        connect_redis(url, 1.0, 1, 0.5),  # the system's CAs do not know ours
        connect_redis(url, 1.0, 1, 0.5, tls_ca_file=str(certs.other_ca)),
    ):
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)) as failed:
            refused.ping()
        _assert_no_secret(str(failed.value))


def _send(rpc: Any, chat: str, text: str) -> Any:
    return rpc.SendRequest(message=rpc.Message(Chat=chat, Text=text, Sender=chat.split(":")[0]))


def _send_and_pull(rpc: Any, port: int) -> tuple[Any, Any]:
    client = make_client(rpc.IMService, "127.0.0.1", port, timeout=5000)
    try:
        chat = _chat()
        sent = client.Send(_send(rpc, chat, "hello"))
        return sent, client.Pull(rpc.PullRequest(Chat=chat, Cursor=0, Limit=10))
    finally:
        client.close()


def _rpc_server(directory: Path, redis_url: str, **env: str) -> RpcServer:
    server = RpcServer(directory, redis_url, LOG_LEVEL="DEBUG", **env)
    server.start()
    return server


@pytest.mark.parametrize("tls", [False, True], ids=["redis", "rediss"])
def test_rpc_server_with_credentials_serves_and_never_logs_them(
    secure_redis: SecureRedis, certs: Certs, rpc: Any, tmp_path: Path, tls: bool
) -> None:
    if tls:
        url, env = f"rediss://{CREDENTIALS}@127.0.0.1:{secure_redis.tls_port}/0", {"REDIS_TLS_CA_FILE": str(certs.ca)}
    else:
        url, env = f"redis://{CREDENTIALS}@127.0.0.1:{secure_redis.port}/0", {}
    server = _rpc_server(tmp_path, url, **env)
    try:
        sent, pulled = _send_and_pull(rpc, server.port)
        assert (sent.Code, pulled.Code) == (0, 0), (sent, pulled)
        assert [m.SendTime for m in pulled.Messages] == [sent.SendTime]
    finally:
        server.stop()
    log = server.log()
    assert f"127.0.0.1:{secure_redis.tls_port if tls else secure_redis.port}/0" in log  # the startup line
    _assert_no_secret(log)


@pytest.mark.parametrize("trouble", ["wrong password", "Redis down", "no TLS CA"])
def test_rpc_server_answers_503_and_never_logs_credentials(
    secure_redis: SecureRedis, certs: Certs, rpc: Any, tmp_path: Path, trouble: str
) -> None:
    port, scheme, credentials = secure_redis.port, "redis", CREDENTIALS
    if trouble == "wrong password":
        credentials = f"{USER}:wrong-{USER_PASSWORD[-12:]}"
    elif trouble == "Redis down":
        port = free_port()
    else:
        port, scheme = secure_redis.tls_port, "rediss"  # and no REDIS_TLS_CA_FILE: the certificate is refused
    server = _rpc_server(tmp_path, f"{scheme}://{credentials}@127.0.0.1:{port}/0")
    try:
        sent, pulled = _send_and_pull(rpc, server.port)
        assert (sent.Code, pulled.Code) == (503, 503), (sent, pulled)
        _assert_no_secret(f"{sent.Msg} {pulled.Msg}")
    finally:
        server.stop()
    log = server.log()
    assert "answering 503" in log  # the failures were logged, with their causes
    _assert_no_secret(log)


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        # The password unencoded: its `/` would end the host part early.
        (
            "REDIS_URL",
            f"redis://{USER}:{USER_PASSWORD}@127.0.0.1:1/0",
            "REDIS_URL redis://127.0.0.1:1/0: percent-encode",
        ),
        (
            "REDIS_CLUSTER_NODES",
            f"redis://{CREDENTIALS}@127.0.0.1",
            "REDIS_CLUSTER_NODES: node 1 of 1 is not host:port",
        ),
    ],
    ids=["REDIS_URL", "REDIS_CLUSTER_NODES"],
)
def test_rpc_server_refuses_a_malformed_setting_without_logging_credentials(
    tmp_path: Path, setting: str, value: str, error: str
) -> None:
    env = {setting: value} if setting != "REDIS_URL" else {}
    server = RpcServer(tmp_path, value if setting == "REDIS_URL" else "redis://unused:1/0", LOG_LEVEL="DEBUG", **env)
    Process.start(server)  # not RpcServer.start, which waits for the port
    assert server.popen is not None
    assert server.popen.wait(timeout=30) == 2
    log = server.log()
    lines = log.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rpc_server: ") and error in lines[0], log  # one line
    _assert_no_secret(log)


# --- A cluster with credentials and TLS -----------------------------------------------------------


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("secure-cluster"), node=functools.partial(SecureRedis, certs=certs))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def _tls_nodes(cluster: RedisCluster) -> list[SecureRedis]:
    nodes = [node for node in cluster.nodes if isinstance(node, SecureRedis)]
    assert len(nodes) == len(cluster.nodes)
    return nodes


@pytest.mark.parametrize("tls", [False, True], ids=["redis", "rediss"])
def test_store_on_a_cluster_with_credentials(secure_cluster: RedisCluster, certs: Certs, tls: bool) -> None:
    """Two of the three nodes given: the third, found through CLUSTER SLOTS,
    gets the same credentials and TLS, and the same bounded pool."""
    nodes = _tls_nodes(secure_cluster)
    scheme, ca = ("rediss", str(certs.ca)) if tls else ("redis", "")
    given = ",".join(f"127.0.0.1:{n.tls_port if tls else n.port}" for n in nodes[:2])
    client = connect_redis("", 1.0, 4, 0.5, f"{scheme}://{CREDENTIALS}@{given}", tls_ca_file=ca)
    store = MessageStore(client, idempotency_ttl_s=60)
    before = [node.client().dbsize() for node in nodes]
    for _ in range(30):
        _roundtrip(store)
    after = [node.client().dbsize() for node in nodes]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)  # every shard was written to
    cluster_nodes = client.get_nodes()  # type: ignore[attr-defined]
    assert {n.port for n in cluster_nodes} == {n.tls_port if tls else n.port for n in nodes}
    for node in cluster_nodes:
        pool = node.redis_connection.connection_pool
        assert isinstance(pool, redis.BlockingConnectionPool)
        assert (pool.max_connections, pool.timeout) == (4, 0.5)
        assert pool.connection_kwargs["username"] == USER
        assert pool.connection_kwargs.get("ssl_ca_certs") == (ca or None)
        assert issubclass(pool.connection_class, redis.SSLConnection) == tls


def test_cluster_refuses_wrong_credentials(secure_cluster: RedisCluster) -> None:
    given = ",".join(f"127.0.0.1:{n.port}" for n in secure_cluster.nodes)
    with pytest.raises((redis.RedisError, RedisClusterException)) as refused:  # redis-py reads the topology at once
        connect_redis("", 1.0, 4, 0.5, f"redis://{USER}:wrong-{USER_PASSWORD[-12:]}@{given}")
    _assert_no_secret(str(refused.value))


@pytest.fixture(scope="module")
def cluster_rpc_server(
    secure_cluster: RedisCluster, certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RpcServer]:
    nodes = _tls_nodes(secure_cluster)
    spec = f"rediss://{CREDENTIALS}@" + ",".join(f"127.0.0.1:{n.tls_port}" for n in nodes)
    server = _rpc_server(
        tmp_path_factory.mktemp("cluster-rpc"),
        "redis://unused:1/0",
        REDIS_CLUSTER_NODES=spec,
        REDIS_TLS_CA_FILE=str(certs.ca),
    )
    try:
        yield server
    finally:
        server.stop()


def test_rpc_server_on_a_cluster_with_credentials_and_tls(cluster_rpc_server: RpcServer, rpc: Any) -> None:
    for _ in range(5):
        sent, pulled = _send_and_pull(rpc, cluster_rpc_server.port)
        assert (sent.Code, pulled.Code) == (0, 0), (sent, pulled)
        assert [m.SendTime for m in pulled.Messages] == [sent.SendTime]


def test_rpc_server_on_a_cluster_never_logs_credentials(cluster_rpc_server: RpcServer, rpc: Any) -> None:
    sent, _ = _send_and_pull(rpc, cluster_rpc_server.port)
    assert sent.Code == 0
    _assert_no_secret(cluster_rpc_server.log())
