"""Every shell command that README.md, docs/ and the repository's other .md
files show is run as shown, so that a doc that drifts fails CI.

Each fenced sh/bash/console block is split into the commands a reader would
type; each command is either run, in document order, or listed in EXCEPTED
with the reason. A block or command that appears unknown is run; an
exception, adjustment or placeholder that matches no command fails.

They run in bash in a copy of the working tree, against a real Redis, RPC
server and gunicorn on free ports (Redis's files in the copy's var/redis,
as run.sh keeps them). The documented ports (6379 Redis, 8080 HTTP, 8888
RPC, 8889 RPC metrics, and any other a command uses) become the test's,
`.venv/bin/` the venv in use, `/tmp/` a folder of the copy, and a
`redis-cli` without `-p` gets the test's Redis; the variables that tools
read instead of a flag point there too (REDIS_URL, RPC_ADDR, IMCTL_URL).

Where a doc shows what a command prints, the output is compared: JSON by
its keys, a quoted string as a substring, lines by their shape, and the
explicit checks in HOW (the prose comments that describe output). Every
curl must get a 2xx."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import redis

from tests.conftest import Api
from tests.doc_blocks import (
    NOT_SHELL,
    SHELL,
    Block,
    Command,
    Outcome,
    Step,
    commands,
    documented_json,
    fenced_blocks,
    key_differences,
    markdown_files,
    outcomes,
    ports_in,
    rewrite_ports,
    script,
    shape,
)
from tests.servers import ADMIN_TOKEN, ROOT, HttpServer, RedisServer, RpcServer, free_port, wait_until

VENV = Path(sys.prefix)


@dataclass(frozen=True)
class Except:
    doc: str
    match: str  # the commands (comments aside) this is, or else the one command containing it
    reason: str


EXCEPTED = [
    Except("README.md", "scripts/run.sh", "run.sh binds the documented ports: tests/test_run_sh.py drives it"),
    Except("README.md", "scripts/test.sh", "the test suite: this test is part of it"),
    Except("README.md", "HTTP_PORT=8081 scripts/run.sh", "run.sh on other ports: tests/test_run_sh.py drives run.sh"),
    Except(
        "README.md",
        "npm ci && npx newman run",
        "npm ci installs from the network; the same newman run is tests/test_postman.py",
    ),
    Except(
        "README.md",
        "IMCTL_TOKEN=… imctl chats",
        "a jwt-mode token for a jwt-mode server: the Access control block runs `imctl chats` so, with a real token",
    ),
    Except("README.md", "scripts/bench.sh", "the full benchmark (~9 minutes, rewrites bench/results/)"),
    Except(
        "README.md",
        "scripts/bench.sh --quick",
        "the benchmark, even --quick, takes ~4 minutes; its logic is tests/test_bench_logic.py",
    ),
    Except("README.md", "scripts/test.sh --fast -x -k nothing_matches_this", "the test suite: this test is part of it"),
    Except("docs/operations.md", "docker compose exec -T redis", "needs Docker (no engine here)"),
    Except("docs/operations.md", "kubectl exec redis-0", "needs a Kubernetes cluster"),
    Except(
        "docs/operations.md",
        "scripts/run.sh",
        "run.sh is driven by tests/test_run_sh.py; after each restore the test starts its own Redis on the "
        "restored files instead (the comment's alternative) and checks that the chats are back",
    ),
    Except("docs/operations.md", "redis-cli -h <any node> CLUSTER NODES", "a Redis Cluster's `<any node>`"),
    Except("docs/operations.md", "redis-cli -h <master>", "a Redis Cluster's `<master>`"),
    Except("docs/operations.md", "backups/shard-<master ID>.tar.gz", "runs on a cluster node (`/data`, `<master ID>`)"),
    Except("docs/operations.md", "redis-cli --cluster call <any node>", "a Redis Cluster's `<any node>`"),
    Except("docs/operations.md", "redis-cli --cluster add-node", "a Redis Cluster's `<new node>`, `<any node>`"),
    Except("docs/operations.md", "redis-cli --cluster rebalance", "a Redis Cluster's `<any node>`"),
    Except("docs/operations.md", "redis-cli --cluster check <any node>:6379", "a Redis Cluster's `<any node>`"),
    Except("deploy/k8s/README.md", "kubectl apply", "needs a Kubernetes cluster"),
]

# Words the docs use for "yours": what the test puts in their place, and why.
PLACEHOLDERS = {
    "ADMIN_TOKEN=…": (f"ADMIN_TOKEN={ADMIN_TOKEN}", "`…` is the RPC servers' admin token"),
    "redis://old-host:": ("redis://127.0.0.1:", "the seed's Redis on another host: here the test's, holding seed keys"),
}

# Docs whose blocks assume the venv is activated (bare `imctl`): they run after `. .venv/bin/activate`.
ACTIVATED = {"README.md": "its paragraph 'The venv': activate it first (`. .venv/bin/activate`)"}


@dataclass
class World:
    """The servers the docs' commands talk to, and the copy they run in."""

    copy: Path
    out: Path
    redis: RedisServer
    rpc: RpcServer
    http: HttpServer
    api: Api
    ports: dict[int, int]  # documented port -> the test's
    git_status: str

    def redis_client(self) -> redis.Redis:
        return self.redis.client()


Check = Callable[[World, Outcome], list[str]]
Hook = Callable[[World], list[str]]


@dataclass(frozen=True)
class How:
    """How one command is run or checked, beyond the defaults."""

    doc: str
    match: str
    why: str
    check: Check | None = None
    before: Hook | None = None  # runs before the command's block
    after: Hook | None = None  # runs after the command's block
    replace: Callable[[str], str] | None = None
    stream: str | None = None  # a command that does not end: read until a line matches this, then stop it
    comment_is_output: bool = False  # the trailing comment shows a line of output (digits any, `…` anything)
    answer_as: str | None = None  # stdout is JSON with the keys of the answer the doc shows under this command
    ports: dict[int, str] = field(default_factory=dict)  # in this command's block: documented port -> role


MESSAGE_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d{4}  [\w.-]+: .*"


def contains(*texts: str) -> Check:
    def check(world: World, got: Outcome) -> list[str]:
        both = got.out + got.err
        return [f"expected the output to contain {t!r}" for t in texts if t not in both]

    return check


def lines(pattern: str, including: str | None = None, extra: str = r"-- more: --cursor \d+") -> Check:
    """Every line of stdout fullmatches `pattern` (or `extra`); at least one
    line; one of them contains `including`."""

    def check(world: World, got: Outcome) -> list[str]:
        shown = [line for line in got.out.splitlines() if line.strip()]
        bad = [line for line in shown if not re.fullmatch(pattern, line) and not re.fullmatch(extra, line)]
        problems = [f"expected lines like /{pattern}/, got {line!r}" for line in bad[:3]]
        if not shown:
            problems.append(f"expected at least one line like /{pattern}/, got none")
        elif including and not any(including in line for line in shown):
            problems.append(f"expected a line containing {including!r}")
        return problems

    return check


def compare_json(documented: object, out: str) -> list[str]:
    try:
        real = json.loads(out)
    except ValueError:
        return [f"expected JSON like {json.dumps(documented)[:300]}, got output that is not JSON"]
    return key_differences(documented, real)


# --- hooks: what a reader does between blocks, in prose -------------------------------------------


def seed_chats(world: World) -> list[str]:
    """docs/operations.md starts from a service holding chats: a:b (two messages) and x:y."""
    for chat, text, sender in [("a:b", "backed up 1", "a"), ("a:b", "backed up 2", "b"), ("x:y", "kept", "x")]:
        r = world.api.send(chat, text, sender)
        if r.status_code != 200:
            return [f"seeding {chat}: HTTP {r.status_code} {r.text}"]
    return []


def newest(world: World, pattern: str, placeholder: str) -> list[str]:
    """The doc names a backup by a made-up date: put the newest real one there."""
    backups = [p for p in (world.copy / "backups").glob(pattern) if p.name != Path(placeholder).name]
    if not backups:
        return [f"no backup {pattern} to restore: the backup block above made none"]
    shutil.copy2(max(backups, key=lambda p: p.stat().st_mtime_ns), world.copy / placeholder)
    return []


def stop_redis(world: World) -> list[str]:
    """The prose before the restore blocks: stop Redis (`redis-cli -p 6379 SHUTDOWN`)."""
    subprocess.run(["redis-cli", "-p", str(world.redis.port), "SHUTDOWN"], capture_output=True, timeout=60)
    assert world.redis.popen is not None
    try:
        world.redis.popen.wait(60)
    except subprocess.TimeoutExpired:
        return ["redis-server did not stop on `redis-cli SHUTDOWN` within 60 s"]
    return []


def before_aof_restore(world: World) -> list[str]:
    return stop_redis(world) or newest(world, "im-aof-*.tar.gz", "backups/im-aof-20261127-031000.tar.gz")


def before_rdb_restore(world: World) -> list[str]:
    return stop_redis(world) or newest(world, "im-*.rdb", "backups/im-20261127-031000.rdb")


def restart_redis_and_find_the_chats(world: World) -> list[str]:
    """In place of run.sh: Redis again on the restored files; the chats backed up are there."""
    world.redis.start()
    found: list[str] = []

    def backed_up() -> bool:
        page = world.api.pull("a:b", limit=100)
        found[:] = [f"HTTP {page.status_code} {page.text[:300]}"]
        return page.status_code == 200 and {"backed up 1", "backed up 2"} <= {
            m["text"] for m in page.json()["messages"]
        }

    try:
        wait_until(backed_up, 120, "a:b's backed-up messages")
    except TimeoutError:
        return [f"after the restore, a:b lacks its backed-up messages: {found}"]
    return []


def seed_the_seeds_data(world: World) -> list[str]:
    """The migration block expects the seed's keys: a sorted set `jack:tom` as the Go reference wrote it."""
    member = json.dumps({"sender": "jack", "message": "hello!", "timestamp": 1684758444}, separators=(",", ":"))
    world.redis_client().zadd("jack:tom", {member: 1684758444})
    return venv_is_current(world)


def venv_is_current(world: World) -> list[str]:
    """scripts/* install into $VENV when its stamp is stale: refuse to run them then."""
    want = subprocess.run(
        "cat pyproject.toml requirements.lock | cksum", shell=True, cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    stamps = [(VENV / f".installed-{extra}") for extra in ("dev", "")]
    if any(s.exists() and s.read_text().strip() == want for s in stamps):
        return []
    return [f"{VENV} has no current scripts/lib.sh stamp: scripts/* would reinstall into it (run scripts/test.sh)"]


def seed_keys_deleted(world: World) -> list[str]:
    return ["jack:tom is still there after the UNLINK"] if world.redis_client().exists("jack:tom") else []


HOW = [
    # README.md
    How(
        "README.md",
        "curl 'localhost:8080/api/pull?chat=a1:a2&cursor=0&limit=2&reverse=true'",
        "`# same, as a query`: the answer of the JSON-body pull above",
        answer_as="curl -X GET 'localhost:8080/api/pull'",
    ),
    How(
        "README.md",
        "imctl send --chat a:b --sender a --text hi",
        "the comment is the output",
        comment_is_output=True,
    ),
    How("README.md", "imctl pull --chat a:b --reverse", "one line a message", check=lines(MESSAGE_LINE, "a: hi")),
    How(
        "README.md",
        "imctl tail --chat a:b",
        "does not end: read until the first message, then stopped",
        stream=r"^[0-9]{4}-",
        check=lines(MESSAGE_LINE, "a: hi"),
    ),
    How(
        "README.md",
        "imctl --json pull --chat a:b",
        "the API's raw JSON",
        answer_as="curl -X GET 'localhost:8080/api/pull'",
    ),
    How("README.md", "imctl --rpc pull --chat a:b", "message lines", check=lines(MESSAGE_LINE, "a: hi")),
    How(
        "README.md",
        "imctl --rpc 127.0.0.1:8898 pull",
        "an RPC server at another address: the test's",
        check=lines(MESSAGE_LINE, "a: hi"),
        ports={8898: "rpc"},
    ),
    How("README.md", "imctl health", "exit 0 when ready", check=contains("ready")),
    How("README.md", "imctl chats --user a", "a's chats", check=lines(r"[\w.-]+:[\w.-]+  .*", "a:b")),
    How("README.md", "imctl --as a pull --chat a:b", "message lines", check=lines(MESSAGE_LINE, "a: hi")),
    How("README.md", "ADMIN_TOKEN=… imctl delete-chat", "deletes a:b", check=contains("deleted 1 chat(s)")),
    How(
        "README.md",
        "AUTH_MODE=jwt scripts/run.sh &",
        "run.sh is driven by tests/test_run_sh.py: here its HTTP server alone, in jwt mode, on a port of its "
        "own, in front of the test's RPC server",
        replace=lambda code: code.replace(
            "scripts/run.sh", ".venv/bin/python -m http_server --host 127.0.0.1 --port 8080 --workers 1"
        ),
        ports={8080: "fresh"},
    ),
    *[
        How(
            "README.md",
            pytest_command,
            "the tests themselves are the suite: collected only, which checks that the path, the test and "
            "the selection exist (pytest exits 4 or 5 otherwise)",
            replace=lambda code: code + " --collect-only",
        )
        for pytest_command in ["pytest tests/test_cli.py -q", "test_cli.py::test_health_is_a_probe", "pytest -k tail"]
    ],
    # docs/operations.md
    How("docs/operations.md", "mkdir -p backups", "the service holds chats", before=seed_chats),
    How("docs/operations.md", "CONFIG GET auto-aof-rewrite-percentage", "# note it: 100", check=contains("100")),
    How(
        "docs/operations.md",
        "grep '^aof_last_bgrewrite_status'",
        "# ok",
        check=contains("aof_last_bgrewrite_status:ok"),
    ),
    How(
        "docs/operations.md",
        "tar -C var/redis -xzf backups/im-aof-20261127-031000.tar.gz",
        "the prose: stop Redis first; the backup's made-up name is the newest backup; then, in place of "
        "run.sh, Redis on the restored files",
        before=before_aof_restore,
        after=restart_redis_and_find_the_chats,
    ),
    How(
        "docs/operations.md",
        "cp backups/im-20261127-031000.rdb var/redis/dump.rdb",
        "the prose: stop Redis first; the snapshot's made-up name is the newest snapshot; then, in place of "
        "run.sh, Redis on the restored files",
        before=before_rdb_restore,
        after=restart_redis_and_find_the_chats,
    ),
    How(
        "docs/operations.md", "redis-cli -p 6379 DBSIZE # the snapshot", "the snapshot's keys", check=lines(r"[1-9]\d*")
    ),
    How(
        "docs/operations.md",
        "grep -E '^aof_(enabled|last_bgrewrite_status)'",
        "# 1, ok",
        check=contains("aof_enabled:1", "aof_last_bgrewrite_status:ok"),
    ),
    How("docs/operations.md", "diff before.txt restored.txt", "the drill's verdict", check=contains("identical")),
    How(
        "docs/operations.md",
        ".venv/bin/imctl --rpc 127.0.0.1:8898 pull",
        "the chat's newest messages",
        check=lines(MESSAGE_LINE, "b: backed up 2"),
    ),
    How(
        "docs/operations.md",
        "MEMORY USAGE",
        "# bytes, messages, key",
        check=lines(r"\d+ \d+ im:v1:\{[\w.-]+:[\w.-]+\}:m"),
    ),
    How(
        "docs/operations.md",
        "scripts/migrate-seed-data --dry-run",
        "the seed's data is there",
        before=seed_the_seeds_data,
        check=contains("nothing written"),
    ),
    How(
        "docs/operations.md",
        "less seed-keys.txt",
        "only the seed's chats; a pager, on a pipe as cat (which it is run as: not every machine has less)",
        replace=lambda code: code.replace("less", "cat", 1),
        check=lines(r"jack:tom"),
    ),
    How("docs/operations.md", "xargs -n 100 redis-cli UNLINK", "the keys are gone", after=seed_keys_deleted),
]


# --- the docs, parsed ---------------------------------------------------------------------------


@cache
def shell_blocks(doc: str) -> list[Block]:
    return [b for b in fenced_blocks(ROOT, doc) if b.lang in SHELL]


@cache
def block_commands(block: Block) -> list[Command]:
    """The block's commands (none if it does not parse: test_tables_match_the_docs says why)."""
    try:
        return commands(block)
    except ValueError:
        return []


def all_commands(doc: str) -> list[Command]:
    return [c for b in shell_blocks(doc) for c in block_commands(b)]


def loose(text: str) -> str:
    return " ".join(text.split())


def the_commands(doc: str, match: str) -> list[Command]:
    """The commands of `doc` that are `match` (comments aside), or else that
    contain it; white space compared loosely, so that re-aligned comments
    still match."""
    found = all_commands(doc)
    return [c for c in found if loose(c.code) == loose(match)] or [c for c in found if loose(match) in loose(c.text)]


def the_command(doc: str, match: str) -> Command:
    found = the_commands(doc, match)
    if len(found) != 1:
        where = ", ".join(c.where() for c in found)
        raise LookupError(f"{doc}: {match!r} matches {len(found)} commands{' (' + where + ')' if where else ''}")
    return found[0]


def matches(entry: Except | How, command: Command) -> bool:
    """Whether a table's entry is about this command. An exception may cover
    several commands; an adjustment is about exactly one (or else none:
    test_tables_match_the_docs says so)."""
    if entry.doc != command.block.doc:
        return False
    found = the_commands(entry.doc, entry.match)
    return command in found if isinstance(entry, Except) else found == [command]


def excepted(command: Command) -> Except | None:
    return next((e for e in EXCEPTED if matches(e, command)), None)


def hows(command: Command) -> list[How]:
    return [h for h in HOW if matches(h, command)]


DOCS = markdown_files(ROOT)
RUN_DOCS = [d for d in DOCS if any(not excepted(c) for c in all_commands(d))]


def test_tables_match_the_docs() -> None:
    """Every fenced block names its language; every shell command is run or
    excepted; every exception, adjustment and placeholder matches a command,
    so none of the tables can rot."""
    problems = []
    for doc in DOCS:
        for block in fenced_blocks(ROOT, doc):
            if block.lang not in SHELL | NOT_SHELL:
                problems.append(
                    f"{block.where()}: a fenced block of language {block.lang or '(none)'!r}: "
                    f"name it (sh for commands, text for a diagram)"
                )
            if block.lang in SHELL:
                try:
                    commands(block)
                except ValueError as e:
                    problems.append(str(e))
    for exception in EXCEPTED:
        if not the_commands(exception.doc, exception.match):
            problems.append(f"EXCEPTED: {exception.match!r} matches no command of {exception.doc}")
    for how in HOW:
        try:
            command = the_command(how.doc, how.match)
        except LookupError as e:
            problems.append(f"HOW: {e}")
            continue
        if excepted(command) and (how.check or how.replace or how.stream or how.comment_is_output or how.answer_as):
            problems.append(f"{command.where()}: excepted, yet checked or rewritten in HOW")
        if how.answer_as:
            try:
                if not documented_answer(the_command(how.doc, how.answer_as))[1]:
                    problems.append(f"HOW: {how.answer_as!r} shows no answer to compare {command.where()} with")
            except LookupError as e:
                problems.append(f"HOW: answer_as: {e}")
    run = [c.text for d in DOCS for c in all_commands(d) if not excepted(c)]
    for placeholder in PLACEHOLDERS:
        if not any(placeholder in text for text in run):
            problems.append(f"placeholder {placeholder!r} appears in no command that is run")
    for doc in ACTIVATED:
        if doc not in DOCS:
            problems.append(f"ACTIVATED names {doc}, which is not in the repository")
    assert not problems, "\n".join(problems)


SHELL_WORDS = (
    r"(kubectl|docker|curl|redis-cli|redis-server|scripts/|\.venv/|imctl|python|pip|npm|npx|go|git|export|cd)\b"
)


@pytest.mark.parametrize("doc", DOCS)
def test_shell_commands_are_in_fenced_blocks(doc: str) -> None:
    """An indented code block is invisible to this test: commands go in ```sh blocks."""
    text = (ROOT / doc).read_text()
    outside = re.sub(r"^ *(```|~~~).*?^ *\1", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M | re.S)
    lines_ = outside.splitlines()
    found = [
        f"{doc}:{n}: {line.strip()}"
        for n, line in enumerate(lines_, 1)
        if (n == 1 or not lines_[n - 2].strip()) and re.match(r"( {4,}|\t)" + SHELL_WORDS, line)
    ]
    assert not found, "commands in indented code blocks, not fenced ```sh:\n" + "\n".join(found)


# --- running them --------------------------------------------------------------------------------

CONFIG_PREFIXES = (
    "REDIS_", "RPC_", "HTTP_", "IMCTL_", "AUTH_", "JWT_", "ADMIN_", "RETENTION_", "SSE_", "ETCD_",
    "PROMETHEUS_", "LOG_", "MAX_", "PULL_", "IDEMPOTENCY_", "RATE_LIMIT_", "IDL_DIR", "VENV", "VIRTUAL_ENV",
)  # fmt: skip


def copy_working_tree(to: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("doc-commands")
    copy = base / "repo"
    copy_working_tree(copy)
    (copy / "tmp").mkdir()
    status = git_status()
    redis_server = RedisServer(copy / "var" / "redis")
    rpc = RpcServer(base, redis_server.url, ADMIN_TOKEN=ADMIN_TOKEN, RPC_WORKERS="1")
    http = HttpServer(base, rpc.port)
    ports = {6379: redis_server.port, 8080: http.port, 8888: rpc.port, 8889: rpc.metrics_port}
    for doc in DOCS:
        for command in all_commands(doc):
            if not excepted(command):
                ports.update({p: free_port() for p in ports_in(command.code) if p not in ports})
    servers = [redis_server, rpc, http]
    try:
        for server in servers:
            server.start()
        yield World(copy, base / "out", redis_server, rpc, http, Api(http.url), ports, status)
    finally:
        for server in reversed(servers):
            server.stop()


def block_ports(world: World, block: Block) -> dict[int, int]:
    roles = {"redis": world.redis.port, "http": world.http.port, "rpc": world.rpc.port}
    ports = dict(world.ports)
    for command in block_commands(block):
        for how in hows(command):
            for documented, role in how.ports.items():
                ports[documented] = roles[role] if role in roles else free_port()
    return ports


def rewrite(world: World, code: str, ports: dict[int, int]) -> str:
    # The doc's own /tmp/ first, alone: the paths put in below may lie under /tmp themselves (a clone in /tmp/ci).
    code = re.sub(r"(?<![\w./-])/tmp/", f"{world.copy}/tmp/", code)
    for placeholder, (value, _) in PLACEHOLDERS.items():
        code = code.replace(placeholder, value)
    code = code.replace(".venv/bin/", f"{VENV}/bin/")
    code = re.sub(r"\bredis-cli\b(?!\s+-[ph]\b)", "redis-cli -p 6379", code)
    return rewrite_ports(code, ports)


def environment(world: World, ports: dict[int, int]) -> dict[str, str]:
    """The reader's shell: none of our settings from the test's own
    environment, the venv not on PATH (unless the doc says to activate it),
    and the defaults that point at 6379/8080/8888 pointed at the test's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != VENV / "bin")
    env.update(
        VENV=str(VENV),
        REDIS_URL=f"redis://127.0.0.1:{ports[6379]}/0",
        RPC_ADDR=f"127.0.0.1:{ports[8888]}",
        IMCTL_URL=f"http://localhost:{ports[8080]}",
        ADMIN_TOKEN=ADMIN_TOKEN,
        TMPDIR=str(world.copy / "tmp"),  # what a stopped block's servers leave stays in the copy
    )
    return env


STATUS = re.compile(r"(?:HTTP(?:/[\d.]+)? )?([1-5]\d\d)(?: +|$)(?=\{|$)")


def documented_answer(command: Command) -> tuple[int | None, list[str]]:
    """(status, the rest) of what the doc shows a command answers: the lines
    under it, or else a JSON trailing comment; `400 {…}` or `HTTP 400 {…}`
    gives the status, and so does a JSON error body's `code`."""
    shown = command.output_lines() or [c for c in command.comments if STATUS.match(c) or c.startswith("{")][:1]
    if not shown:
        return None, []
    status = STATUS.match(shown[0])
    if status:
        shown = [shown[0][status.end() :], *shown[1:]]
    if not status and shown[0].startswith("{"):
        try:
            body = documented_json(shown)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("code"), int) and "msg" in body and body["code"] >= 400:
            return body["code"], shown
    return (int(status.group(1)) if status else None), [line for line in shown if line or len(shown) > 1]


def problems_of(world: World, command: Command, code: str, got: Outcome) -> list[str]:
    if got.rc is None:
        return ["it did not run: the block stopped or timed out before it"]
    problems = [] if got.rc == 0 else [f"expected exit 0, got {got.rc}"]
    status, shown = documented_answer(command)
    for real in got.statuses:
        if status and real != status:
            problems.append(f"expected HTTP {status} (as the doc shows), got {real or 'no answer'}")
        elif not status and (not real or real // 100 != 2):
            problems.append(f"expected an HTTP 2xx, got {real or 'no answer'}")
    if shown:
        problems += output_differences(shown, got.out)
    for comment in command.comments:
        if comment.startswith("{") or STATUS.match(comment):
            continue  # an answer, compared above
        problems += [f"expected {s!r} (the doc's comment)" for s in re.findall(r'"([^"]+)"', comment)
                     if s not in got.out + got.err]  # fmt: skip
    for how in hows(command):
        if how.check:
            problems += how.check(world, got)
        if how.answer_as:
            try:
                answer = documented_answer(the_command(how.doc, how.answer_as))[1]
                problems += compare_json(documented_json(answer), got.out)
            except (LookupError, ValueError) as e:
                problems.append(f"HOW answer_as: {e}")
        if how.comment_is_output:
            problems += [f"expected a line shaped like {c!r} (the doc's comment)" for c in command.comments
                         if not any(shape(c).fullmatch(line) for line in got.out.splitlines())]  # fmt: skip
    return problems


def output_differences(shown: list[str], out: str) -> list[str]:
    """The doc's output under a command: a JSON answer (by keys), or lines
    (each by its shape; a `data: {…}` line by its JSON keys)."""
    try:
        return output_differences_of(shown, out)
    except ValueError as e:  # the doc's JSON itself
        return [f"the doc's JSON answer {' '.join(shown)[:200]!r} is not JSON (… for any value): {e}"]


def output_differences_of(shown: list[str], out: str) -> list[str]:
    if shown[0].startswith("{"):
        return compare_json(documented_json(shown), out)
    real = out.splitlines()
    problems = []
    for line in filter(None, shown):
        field_json = re.fullmatch(r"(\w+): (\{.*\})", line)
        if field_json:
            name, documented = field_json.groups()
            values = [r[len(name) + 2 :] for r in real if r.startswith(name + ": {")]
            if not values:
                problems.append(f"expected a line {name}: {{…}}, got none")
            else:
                problems += compare_json(documented_json([documented]), values[0])
        elif not any(shape(line).fullmatch(r) for r in real):
            problems.append(f"expected a line shaped like {line!r}")
    return problems


def stop_background(pids: list[tuple[int, int]]) -> None:
    """The servers a block left running, by PID, if still ours (same session as the block's bash)."""
    for pid, session in pids:
        try:
            if os.getsid(pid) == session:
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 60
    for pid, session in pids:
        while time.monotonic() < deadline:
            try:
                if os.getsid(pid) != session:
                    break
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            try:
                if os.getsid(pid) == session:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


BLOCK_TIMEOUT_S = 300  # a whole block, generous: the machine may be busy


def run_block(world: World, block: Block, background: list[tuple[int, int]]) -> list[str]:
    """Runs the block's commands that are not excepted, in one bash; the problems found."""
    ports = block_ports(world, block)
    steps: list[Step] = []
    for command in block_commands(block):
        if excepted(command):
            continue
        code = command.code
        for how in hows(command):
            if how.replace:
                code = how.replace(code)
            if how.stream:
                code = f"__stream '{how.stream}' {code}"
        code = rewrite(world, code, ports)
        steps.append(Step(command, code))
    out_dir = world.out / f"{block.doc.replace('/', '_')}-{block.line}"
    out_dir.mkdir(parents=True)
    activate = VENV / "bin" / "activate" if block.doc in ACTIVATED else None
    (out_dir / "script.sh").write_text(script(steps, out_dir, activate))
    with open(out_dir / "bash.log", "wb") as log:
        bash = subprocess.Popen(
            ["bash", "--noprofile", "--norc", str(out_dir / "script.sh")],
            cwd=world.copy,
            env=environment(world, ports),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            bash.wait(BLOCK_TIMEOUT_S)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_session(bash.pid)  # its process group, and the groups it made (run.sh's parts)
            bash.wait()
            timed_out = True
    pids = (out_dir / "background.pids").read_text().split() if (out_dir / "background.pids").exists() else []
    background += [(int(pid), bash.pid) for pid in pids]
    problems = []
    results = outcomes(steps, out_dir)
    for step, got in zip(steps, results, strict=True):
        if timed_out and got is next((r for r in results if r.rc is None), None):
            found = [f"still running {BLOCK_TIMEOUT_S} s after its block started: stopped (and what follows with it)"]
        else:
            found = problems_of(world, step.command, step.code, got)
        if found:
            problems.append(
                f"{step.command.where()} (block at line {block.line}): {step.command.text.strip()}\n"
                f"  ran as: {step.code}\n  " + "\n  ".join(found) + f"\n  got: {got.shown()}"
            )
    return problems


def _kill_session(session: int) -> None:
    """SIGKILL every process of the session `session` (started with start_new_session)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()  # after the command name, which may hold spaces
            if int(fields[3]) == session:  # state, ppid, pgrp, session
                os.kill(int(stat.parent.name), signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("doc", RUN_DOCS)
def test_the_docs_commands_run_as_shown(world: World, doc: str) -> None:
    problems: list[str] = []
    background: list[tuple[int, int]] = []
    try:
        for block in shell_blocks(doc):
            adjusted = [(c, h) for c in block_commands(block) for h in hows(c)]
            stopped = False
            for command, how in adjusted:
                if how.before:
                    found = how.before(world)
                    problems += [f"{command.where()} (before its block: {how.why}): {p}" for p in found]
                    stopped = stopped or bool(found)
            if stopped:
                break  # the block's preconditions failed: what follows would only repeat it
            problems += run_block(world, block, background)
            for command, how in adjusted:
                if how.after:
                    problems += [f"{command.where()} (after its block: {how.why}): {p}" for p in how.after(world)]
    finally:
        stop_background(background)
    assert git_status() == world.git_status, "running the docs' commands changed the repository's working tree"
    assert not problems, f"{len(problems)} documented command(s) failed in {doc}:\n\n" + "\n\n".join(problems)
