"""Small, exact statistics for the report: no numpy, no scipy.

* ``wilson(x, n)``: the Wilson score interval for a proportion (good at small n and at 0 or
  1, unlike the Wald interval).
* ``two_proportion_z(x1, n1, x2, n2)``: the pooled two-proportion z-test, two-sided.
* ``newcombe_diff(x1, n1, x2, n2)``: Newcombe's hybrid score interval (his method 10) for
  the difference of two proportions, built from the two Wilson intervals.
* ``median`` / ``percentile``: linear interpolation between closest ranks (the same as
  numpy's default and ``statistics.quantiles(method="inclusive")``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def rate(x: int, n: int) -> float | None:
    """x / n, or None when n is 0 (a rate of nothing is not 0%)."""
    return x / n if n else None


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for x successes in n trials; None when n is 0."""
    if n <= 0:
        return None
    if not 0 <= x <= n:
        raise ValueError(f"successes {x} outside 0..{n}")
    p = x / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    # Exact bounds where the formula only rounds to them.
    if x == 0:
        low = 0.0
    if x == n:
        high = 1.0
    return low, high


@dataclass(frozen=True)
class ZTest:
    z: float
    p_value: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> ZTest | None:
    """Pooled two-proportion z-test of p1 = p2 (two-sided).

    None when it is undefined: an empty group, or a pooled rate of exactly 0 or 1 (no
    variance: the groups cannot be told apart).
    """
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if var <= 0:
        return None
    z = (x1 / n1 - x2 / n2) / math.sqrt(var)
    return ZTest(z=z, p_value=math.erfc(abs(z) / math.sqrt(2)))


def newcombe_diff(
    x1: int, n1: int, x2: int, n2: int, z: float = Z95
) -> tuple[float, float, float] | None:
    """(p1 - p2, low, high): Newcombe's hybrid score interval; None when a group is empty."""
    w1, w2 = wilson(x1, n1, z), wilson(x2, n2, z)
    if w1 is None or w2 is None:
        return None
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = w1, w2
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, max(-1.0, low), min(1.0, high)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th quantile (0 <= q <= 1) by linear interpolation; None for no values."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} outside 0..1")
    xs = sorted(values)
    if not xs:
        return None
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 0.5)
