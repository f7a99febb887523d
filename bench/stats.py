"""Percentiles for the load generators (a module of its own: they
monkey-patch at import, and this must be importable without that)."""

from __future__ import annotations

import math


def percentile(sorted_values: list[float], p: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]
