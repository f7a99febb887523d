"""The shell blocks of the repository's Markdown files, split into the
commands a reader would type, with what the doc says each prints; and a
runner that types them into bash, one block at a time, keeping each
command's output, exit status and HTTP statuses apart.

Used by tests/test_doc_commands.py, which holds the tables (what is run,
what is excepted and why) and the servers."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

SHELL = {"sh", "bash", "shell", "console"}
NOT_SHELL = {"python", "go", "json", "text", "yaml", "toml"}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<lang>[^\s`]*)")
# A port as shell commands write it: host:PORT, -p PORT, --port PORT, --x-port=PORT, X_PORT=PORT.
PORT_CONTEXTS = [
    re.compile(r"(?:localhost|127\.0\.0\.1|[a-z][\w-]*):(\d{2,5})\b"),
    re.compile(r"(?:^|\s)-p\s+(\d{2,5})\b"),
    re.compile(r"--[\w-]*port[=\s]+(\d{2,5})\b"),
    re.compile(r"\b[A-Z_]*PORT=(\d{2,5})\b"),
]


@dataclass(frozen=True)
class Block:
    doc: str  # relative to the repository's root
    line: int  # the opening fence's line
    lang: str
    lines: tuple[str, ...]  # the content, dedented to the fence

    def where(self) -> str:
        return f"{self.doc}:{self.line}"


@dataclass
class Command:
    """One command as a reader types it: one line, or several joined by
    continuations or an unfinished compound command."""

    block: Block
    line: int  # its first line in the doc
    text: str  # as written, trailing comments included
    code: str  # without the trailing comments
    comments: list[str]  # the trailing comments of its lines
    following: list[str] = field(default_factory=list)  # comment lines right after it (no blank line between)

    def where(self) -> str:
        return f"{self.block.doc}:{self.line}"

    def output_lines(self) -> list[str] | None:
        """The output the doc shows on the comment lines under the command:
        an HTTP example's answer (after a curl), or a JSON answer; in a
        console block, the lines under a `$ ` line. Other comment lines there
        are prose about what comes next."""
        if self.block.lang == "console" or (
            self.following and (self.code.startswith("curl") or self.following[0].startswith("{"))
        ):
            return self.following
        return None


def markdown_files(root: Path) -> list[str]:
    """Every .md the repository ships: tracked, or new and not ignored (in
    a copy without git, such as the one the docs' commands run in: every .md
    outside the tools' folders)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z", "--", "*.md"], cwd=root, capture_output=True, text=True
    )
    if listed.returncode != 0:
        skip = {".venv", "node_modules", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache", "var", "tmp"}
        return sorted(str(p.relative_to(root)) for p in root.rglob("*.md") if not skip & set(p.parts))
    return sorted({p for p in listed.stdout.split("\0") if p and (root / p).exists()})


def fenced_blocks(root: Path, doc: str) -> list[Block]:
    blocks: list[Block] = []
    lines = (root / doc).read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = tuple(line[indent:] if line[:indent].isspace() else line.lstrip() for line in lines[i + 1 : j])
        blocks.append(Block(doc, i + 1, opening["lang"].lower(), body))
        i = j + 1
    return blocks


def split_comment(line: str) -> tuple[str, str]:
    """(code, comment): the comment is what follows a `#` that starts a word outside quotes."""
    quote = ""
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"':
                i += 1
        elif c in "'\"":
            quote = c
        elif c == "\\":
            i += 1
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip(), line[i + 1 :].strip()
        i += 1
    return line.rstrip(), ""


@cache
def _complete(code: str) -> bool:
    """Whether bash would run this as it stands (not waiting for more lines)."""
    return subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True).returncode == 0


def commands(block: Block) -> list[Command]:
    """The block's commands; raises ValueError if it ends inside one."""
    found: list[Command] = []
    pending: list[tuple[int, str]] = []
    after_blank = True
    for offset, raw in enumerate(block.lines):
        number = block.line + 1 + offset
        stripped = raw.strip()
        if not pending and not stripped:
            after_blank = True
            continue
        if not pending and stripped.startswith("#"):
            if found and not after_blank:
                found[-1].following.append(stripped[1:].strip())
            continue
        if block.lang == "console" and not pending:
            if not raw.startswith("$ "):  # a console block shows output as it is, after the `$ ` command
                if found:
                    found[-1].following.append(raw)
                continue
            raw = raw[2:]
        pending.append((number, raw))
        code = "\n".join(split_comment(line)[0] for _, line in pending)
        if code.strip() and _complete(code) and not code.rstrip().endswith(("\\", "&&", "||", "|")):
            comments = [c for c in (split_comment(line)[1] for _, line in pending) if c]
            text = "\n".join(line for _, line in pending)
            found.append(Command(block, pending[0][0], text, code.strip(), comments))
            pending, after_blank = [], False
    if pending:
        raise ValueError(f"{block.where()}: the block ends inside an unfinished command: {pending[0][1]!r}")
    return found


def ports_in(code: str) -> set[int]:
    return {int(m.group(1)) for pattern in PORT_CONTEXTS for m in pattern.finditer(code)}


def rewrite_ports(code: str, ports: dict[int, int]) -> str:
    """Every port the docs use, wherever it stands as a word (`-p 6379`,
    `localhost:8080/…`, `fingerprint 6379`), to the test's."""
    for documented, real in ports.items():
        code = re.sub(rf"(?<![\w.]){documented}(?!\w)", str(real), code)
    return code


def documented_json(lines: Iterable[str]) -> Any:
    """A JSON answer as the docs write it, `…` standing for any value."""
    text = " ".join(lines).replace("…", "null")
    return json.loads(text)


def key_differences(documented: Any, real: Any, path: str = "") -> list[str]:
    """Where the keys of `real` differ from the documented answer's (objects
    compared key by key, a list by its first element)."""
    if isinstance(documented, dict):
        if not isinstance(real, dict):
            return [f"{path or 'the answer'}: documented an object, got {json.dumps(real)[:200]}"]
        problems = []
        if sorted(documented) != sorted(real):
            problems.append(f"{path or 'the answer'}: documented keys {sorted(documented)}, got {sorted(real)}")
        for key in set(documented) & set(real):
            problems += key_differences(documented[key], real[key], f"{path}.{key}" if path else key)
        return problems
    if isinstance(documented, list) and documented:
        if not isinstance(real, list) or not real:
            return [f"{path}: documented a non-empty list, got {json.dumps(real)[:200]}"]
        return key_differences(documented[0], real[0], f"{path}[0]")
    return []


def shape(documented: str) -> re.Pattern[str]:
    """A line of documented output as a pattern: any digits where it shows
    digits, anything where it shows `…`, either sign before a time zone."""
    pattern = re.escape(documented)
    pattern = pattern.replace("…", ".+?").replace(r"\+", "[+-]")
    pattern = re.sub(r"\d+", r"\\d+", pattern)
    return re.compile(pattern)


BASH_HELPERS = r"""
__begin() { __CMD=$1; }
# __stream REGEX CMD...: a command that does not end by itself (an event
# stream, imctl tail): run it until a line of its output matches REGEX,
# then stop it; exit 1 if it ends or 120 s pass first.
__stream() {
    local regex=$1 f pid deadline=$((SECONDS + 120))
    shift
    f=$(mktemp "$__OUT/$__CMD.stream.XXXXXX")
    "$@" >"$f" &
    pid=$!
    until grep -qE -- "$regex" "$f"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$f"; echo "the command ended before a line matched /$regex/" >&2; return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            kill "$pid"; cat "$f"; echo "no line matched /$regex/ within 120 s" >&2; return 1
        fi
        sleep 0.05
    done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    cat "$f"
}
# curl keeps each answer's headers for the test (the status); -sS leaves
# out the progress meter only. A stream (-N) is read until its first event.
curl() {
    local headers
    headers=$(mktemp "$__OUT/$__CMD.http.XXXXXX")
    case " $* " in
    *" -N "* | *" --no-buffer "*) __stream '^data: \{.*\}$' command curl -sS -D "$headers" "$@" ;;
    *) command curl -sS -D "$headers" "$@" ;;
    esac
}
"""


@dataclass
class Step:
    """A command as the test runs it."""

    command: Command
    code: str  # rewritten for this machine


@dataclass
class Outcome:
    rc: int | None  # None: it never ran (the block stopped or timed out before it)
    out: str
    err: str
    statuses: list[int | None]  # each curl's final HTTP status (None: no answer)

    def shown(self, limit: int = 1500) -> str:
        def clip(s: str) -> str:
            return s if len(s) <= limit else s[: limit // 2] + "\n[…]\n" + s[-limit // 2 :]

        status = "did not run" if self.rc is None else f"exit {self.rc}"
        http = f", HTTP {self.statuses}" if self.statuses else ""
        return f"{status}{http}\n  stdout: {clip(self.out.strip())!r}\n  stderr: {clip(self.err.strip())!r}"


def script(steps: list[Step], out_dir: Path, activate: Path | None) -> str:
    parts = [f"__OUT={out_dir}", BASH_HELPERS]
    if activate:
        parts.append(f". {activate}")
    for n, step in enumerate(steps):
        out, err, rc = (f"{out_dir}/{n}.{name}" for name in ("out", "err", "rc"))
        parts.append(f"__begin {n}\n{{ {step.code}\n}} >{out} 2>{err}\necho $? >{rc}")
        if step.code.rstrip().endswith("&") and not step.code.rstrip().endswith("&&"):
            parts.append(f"echo $! >>{out_dir}/background.pids")
    return "\n".join(parts) + "\n"


def http_status(headers: str) -> int | None:
    statuses = re.findall(r"^HTTP/[\d.]+ (\d{3})", headers, flags=re.M)
    return int(statuses[-1]) if statuses else None


def outcomes(steps: list[Step], out_dir: Path) -> list[Outcome]:
    found = []
    for n in range(len(steps)):
        rc_file = out_dir / f"{n}.rc"
        rc = int(rc_file.read_text()) if rc_file.exists() and rc_file.read_text().strip() else None

        def read(name: str) -> str:
            path = out_dir / name
            return path.read_text(errors="replace") if path.exists() else ""

        headers = sorted(out_dir.glob(f"{n}.http.*"), key=lambda p: p.stat().st_mtime_ns)
        statuses = [http_status(p.read_text(errors="replace")) for p in headers]
        found.append(Outcome(rc, read(f"{n}.out"), read(f"{n}.err"), statuses))
    return found
