"""Distribution summaries for results.json (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def summary(values: Sequence[float]) -> dict[str, float | int]:
    """``count``, ``mean``, ``p50``, ``p90``, ``p99``, ``max``; only ``count: 0`` when empty.

    Percentiles use linear interpolation between order statistics (numpy's default). Values that
    are not finite are left out.
    """
    vals = [float(v) for v in values if math.isfinite(v)]
    out: dict[str, float | int] = {"count": len(vals)}
    if not vals:
        return out
    arr = np.asarray(vals, dtype=np.float64)
    out["mean"] = round(float(arr.mean()), 4)
    for p in PERCENTILES:
        out[f"p{p}"] = round(float(np.percentile(arr, p)), 4)
    out["max"] = round(float(arr.max()), 4)
    return out
