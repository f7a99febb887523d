"""The wheel (what the container images install) holds every module and
every Lua script of the source tree, and the Dockerfiles copy every
package folder into the build: a module added in a new folder, or a script
left out of the package data, fails here rather than in production.

The wheel is built by pip from a copy of the files git knows (tracked or
not ignored), so the working tree gets no build/ folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.servers import ROOT

PACKAGES = ("idl", "plumbing", "rpc_server", "http_server", "imctl")
DATA = ("*.lua", "*.thrift", "*.proto", "openapi.json")


def _source_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [name for name in listed if (ROOT / name).is_file()]


def _expected(files: list[str]) -> set[str]:
    wanted = set()
    for name in files:
        path = Path(name)
        if path.parts[0] in PACKAGES and (path.suffix == ".py" or any(path.match(p) for p in DATA)):
            wanted.add(name)
    return wanted


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    copy = tmp_path_factory.mktemp("source")
    for name in _source_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", str(out), "."],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [path] = out.glob("im_backend-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_every_module_and_script(wheel: zipfile.ZipFile) -> None:
    expected = _expected(_source_files())
    assert any(name.endswith(".lua") for name in expected) and "rpc_server/storage/keys.py" in expected
    missing = sorted(expected - set(wheel.namelist()))
    assert missing == [], f"not in the wheel: {missing}"


def test_the_wheel_holds_no_tests(wheel: zipfile.ZipFile) -> None:
    stray = [name for name in wheel.namelist() if name.startswith(("tests/", "bench/"))]
    assert stray == []


@pytest.mark.parametrize("dockerfile", sorted((ROOT / "deploy" / "docker").glob("*.Dockerfile")), ids=lambda p: p.name)
def test_the_images_copy_every_package(dockerfile: Path) -> None:
    """The image installs the package from a build stage that copied these
    folders: each one the wheel needs must be copied."""
    text = dockerfile.read_text()
    missing = [package for package in PACKAGES if f"COPY {package} ./{package}" not in text]
    assert missing == [], f"{dockerfile.name} does not copy {missing}"
