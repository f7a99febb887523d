"""Where the CPU goes: a py-spy profile of the Python tiers during a load.

The CPU µs per request of each tier (from /proc) say how much; this says
on what. py-spy samples each process of a tier (every gunicorn worker; the
RPC server) from outside, without changing the code, at a low rate (50 Hz)
and pausing a process for each sample, so that its stacks are whole: the
load runs a little slower meanwhile, which is why no throughput is taken
from this run. Redis is C: its share is in the CPU table only.

The samples of a tier are pooled and summed by function, "self" (the
frame on top: where the time is spent, kernel calls included, since a
socket send shows as the Python function that made it) and "inclusive"
(anywhere on the stack: what a layer costs with everything below it).
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

RATE_HZ = 50
TOP = 12
_LINE_NUMBER = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    found = shutil.which("py-spy") or Path(sys.executable).parent / "py-spy"
    return str(found) if Path(found).exists() else None


def record(tiers: dict[str, list[int]], seconds: float, load: Callable[[], Any]) -> dict[str, Any]:
    """Profile every process of each tier for `seconds` while `load()` runs
    (it must last longer); the top functions of each tier."""
    tool = py_spy()
    if tool is None:
        return {"skipped": "py-spy is not installed (pip install '.[dev]')"}
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as directory:
        outputs: dict[str, list[Path]] = {tier: [] for tier in tiers}
        recorders = []
        for tier, pids in tiers.items():
            for pid in pids:
                out = Path(directory) / f"{tier}-{pid}.txt"
                argv = [tool, "record", "-p", str(pid), "-d", f"{seconds:.0f}", "-r", str(RATE_HZ), "-f", "raw"]
                argv += ["-o", str(out)]
                recorders.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
                outputs[tier].append(out)
        load_result = load()
        errors = [p.communicate()[1].decode(errors="replace").strip() for p in recorders if p.wait() != 0]
        if errors and not any(out.exists() for outs in outputs.values() for out in outs):
            return {"skipped": f"py-spy failed: {errors[0][-300:]}"}
        found: dict[str, Any] = {tier: summarize([o for o in outs if o.exists()]) for tier, outs in outputs.items()}
        found["load"] = load_result
        return found


def summarize(paths: list[Path]) -> dict[str, Any]:
    """Pooled samples of these raw (folded) py-spy outputs: the TOP
    functions by self and by inclusive share."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
            total += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames):
                anywhere[frame] += int(count)
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}
    return {
        "samples": total,
        "self": [[frame, round(100 * n / total, 1)] for frame, n in own.most_common(TOP)],
        "inclusive": [[frame, round(100 * n / total, 1)] for frame, n in anywhere.most_common(TOP)],
    }
