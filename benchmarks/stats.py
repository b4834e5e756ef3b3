"""Small, dependency-free statistics for the benchmark tables."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation; None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "median": _round(median(values)),
        "p25": _round(quantile(values, 0.25)),
        "p75": _round(quantile(values, 0.75)),
        "min": _round(min(values)) if values else None,
        "max": _round(max(values)) if values else None,
        "n": len(values),
    }


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return round(value / base, 3)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
