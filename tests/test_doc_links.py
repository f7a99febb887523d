"""The docs hold together: every relative link of README.md and docs/*.md
reaches a file, and its #anchor a heading there; each heading is there once;
no doc points at a tracker's issue; what the documented steps write in the
working tree is ignored by git; the README's pull example has a real page's
keys."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import Api
from tests.servers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """The file without its fenced code blocks (a `# comment` there is no heading)."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)


def headings(path: Path) -> list[str]:
    return [m.group(2) for m in re.finditer(r"^(#{1,6}) (.+)$", prose(path), flags=re.M)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in LINK.findall(prose(doc)):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists() or ROOT not in file.parents:
            broken.append(f"{target}: no file {file} in the repository")
        elif anchor and anchor not in [slug(h) for h in headings(file)]:
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_heading_once_and_no_issue_references(doc: Path) -> None:
    # the same words under two different parents (### Retention) are fine; a top-level section twice is not
    sections = re.findall(r"^## (.+)$", prose(doc), flags=re.M)
    assert len(sections) == len(set(sections)), f"a section twice: {sorted(sections)}"
    assert not re.search(r"\bissue #?\d+", doc.read_text(), flags=re.I), "a doc refers to a tracker's issue"


def test_what_the_documented_steps_write_is_ignored() -> None:
    """docs/operations.md's backup, drill and seed-key steps write these in the repository's root."""
    written = ["backups/im-20261127-031000.rdb", "before.txt", "restored.txt", "seed-keys.txt", "var/redis/x"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *written], cwd=ROOT, capture_output=True, text=True)
    assert sorted(done.stdout.split()) == sorted(written), f"not ignored: {set(written) - set(done.stdout.split())}"


def test_the_readme_pull_example_has_every_key(api: Api) -> None:
    """The first pull example's answer (the `# {...}` comment lines after it) has the keys a real page has."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index("curl -X GET 'localhost:8080/api/pull'") :]
    comment = re.search(r"^# (\{.*?\})\n(?!#)", after, flags=re.M | re.S)
    assert comment, "no `# {...}` answer after the README's pull example"
    shown = json.loads(re.sub(r"\n#\s*", " ", comment.group(1)))
    chat = f"a1-{uuid.uuid4().hex[:8]}:a2-{uuid.uuid4().hex[:8]}"
    api.send_ok(chat, "hello", chat.split(":")[1])
    real = api.pull_ok(chat, cursor=0, limit=2, reverse=True)
    assert sorted(shown) == sorted(real), f"README shows {sorted(shown)}, the API answers {sorted(real)}"
    assert sorted(shown["messages"][0]) == sorted(real["messages"][0])
