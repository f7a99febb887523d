"""HTTP clients made by others: the Postman collection run by newman, and the
OpenAPI document imported as Postman imports it (openapi-to-postmanv2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.servers import ROOT, Stack

POSTMAN = ROOT / "postman"
COLLECTION = POSTMAN / "im-backend.postman_collection.json"
NEWMAN = POSTMAN / "node_modules" / ".bin" / "newman"


def _newman(collection: Path, base_url: str, report: Path) -> tuple[int, dict[str, Any]]:
    assert NEWMAN.exists(), "newman is missing: scripts/test.sh installs it (npm ci in postman/)"
    argv = [str(NEWMAN), "run", str(collection), "--env-var", f"baseUrl={base_url}"]
    argv += ["--reporters", "cli,json", "--reporter-json-export", str(report), "--color", "off"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    run: dict[str, Any] = json.loads(report.read_text())["run"]
    if result.returncode != 0:
        print(result.stdout[-5000:])
    return result.returncode, run


def test_the_collection_passes_against_the_live_stack(stack: Stack, tmp_path: Path) -> None:
    code, run = _newman(COLLECTION, stack.http.url, tmp_path / "report.json")
    assertions = run["stats"]["assertions"]
    assert code == 0
    assert run["failures"] == []
    assert assertions["failed"] == 0
    assert assertions["total"] >= 60
    assert run["stats"]["requests"]["failed"] == 0


def test_a_failing_assertion_fails_the_run(stack: Stack, tmp_path: Path) -> None:
    """The harness above would notice: a collection expecting the wrong order fails."""
    broken = tmp_path / "broken.json"
    expected = 'to.eql([\\"hello\\", \\"how are you?\\"])'  # as escaped inside the JSON file
    assert expected in COLLECTION.read_text()
    broken.write_text(COLLECTION.read_text().replace(expected, 'to.eql([\\"how are you?\\", \\"hello\\"])'))
    assert broken.read_text() != COLLECTION.read_text()
    code, run = _newman(broken, stack.http.url, tmp_path / "report.json")
    assert code != 0
    assert run["stats"]["assertions"]["failed"] >= 1


def test_the_openapi_document_imports_cleanly_into_postman() -> None:
    result = subprocess.run(
        ["node", str(POSTMAN / "check-openapi-import.js"), str(ROOT / "http_server" / "openapi.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["valid"] is True, report
    assert report["result"] is True, report
    assert report["reason"] is None
    spec = json.loads((ROOT / "http_server" / "openapi.json").read_text())
    assert len(report["requests"]) == sum(len(methods) for methods in spec["paths"].values())
