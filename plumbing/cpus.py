"""How many CPUs this process may really use: the cgroup CPU quota (v2
`cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), and the
affinity mask, whichever is smaller; not `os.cpu_count()`, which counts the
machine's CPUs even inside a container limited to one."""

from __future__ import annotations

import math
import os
from pathlib import Path


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        count = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    return max(1, min(count, math.ceil(quota))) if quota else count


def _cgroup_quota(root: Path) -> float | None:
    """CPUs allowed by the cgroup quota, or None if unlimited or unknown."""
    try:
        quota, _, period = (root / "cpu.max").read_text().strip().partition(" ")
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None
