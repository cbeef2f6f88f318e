"""The report's statistics against published values (Newcombe 1998, two papers) and
against the standard library where it has the same thing."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from followup_cli.stats import (
    median,
    newcombe_diff,
    percentile,
    rate,
    two_proportion_z,
    wilson,
)


@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I.
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # Boundaries are exact, not rounded.
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson__matches_published_intervals(x: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson(x, n)  # type: ignore[misc]
    assert lo == pytest.approx(low, abs=5e-5)
    assert hi == pytest.approx(high, abs=5e-5)


def test_wilson__no_trials_has_no_interval_and_bad_counts_are_refused() -> None:
    assert wilson(0, 0) is None
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_wilson__always_contains_the_observed_rate() -> None:
    for n in range(1, 40):
        for x in range(n + 1):
            lo, hi = wilson(x, n)  # type: ignore[misc]
            assert 0 <= lo <= x / n <= hi <= 1


def test_two_proportion_z__textbook_example() -> None:
    # 40/100 vs 25/100: pooled p = 0.325, se = sqrt(0.325 * 0.675 * 0.02) = 0.066238.
    t = two_proportion_z(40, 100, 25, 100)
    assert t is not None
    assert t.z == pytest.approx(0.15 / math.sqrt(0.325 * 0.675 * 0.02))
    assert t.z == pytest.approx(2.26455, abs=1e-5)
    assert t.p_value == pytest.approx(0.023540, abs=1e-6)
    assert t.significant()
    back = two_proportion_z(25, 100, 40, 100)
    assert back is not None and back.z == pytest.approx(-t.z) and back.p_value == t.p_value


def test_two_proportion_z__equal_rates_are_not_significant() -> None:
    t = two_proportion_z(10, 50, 20, 100)
    assert t is not None and t.z == pytest.approx(0) and t.p_value == pytest.approx(1)
    assert not t.significant()


def test_two_proportion_z__undefined_without_variance_or_data() -> None:
    assert two_proportion_z(0, 10, 0, 10) is None
    assert two_proportion_z(10, 10, 5, 5) is None
    assert two_proportion_z(1, 0, 1, 10) is None


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "low", "high"),
    [
        # Newcombe (1998), "Interval estimation for the difference between independent
        # proportions", Table II, method 10.
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0),
        (10, 10, 0, 10, 0.6075, 1.0),
    ],
)
def test_newcombe_diff__matches_published_intervals(
    x1: int, n1: int, x2: int, n2: int, low: float, high: float
) -> None:
    d, lo, hi = newcombe_diff(x1, n1, x2, n2)  # type: ignore[misc]
    assert d == pytest.approx(x1 / n1 - x2 / n2)
    assert lo == pytest.approx(low, abs=5e-5)
    assert hi == pytest.approx(high, abs=5e-5)


def test_newcombe_diff__empty_group() -> None:
    assert newcombe_diff(1, 2, 0, 0) is None


def test_percentile__linear_interpolation() -> None:
    assert median([1, 2, 3, 4]) == 2.5
    assert percentile([1, 2, 3, 4], 0.9) == pytest.approx(3.7)
    assert percentile([2, 12, 24], 0.9) == pytest.approx(21.6)
    assert percentile([5], 0.9) == 5
    assert percentile([3, 1, 2], 0) == 1 and percentile([3, 1, 2], 1) == 3
    assert median([]) is None
    with pytest.raises(ValueError):
        percentile([1], 1.5)


def test_percentile__agrees_with_statistics_inclusive_quantiles() -> None:
    rng = random.Random(7)
    for size in (2, 3, 10, 31):
        xs = [rng.uniform(0, 100) for _ in range(size)]
        deciles = statistics.quantiles(xs, n=10, method="inclusive")
        assert percentile(xs, 0.9) == pytest.approx(deciles[8])
        assert median(xs) == pytest.approx(statistics.median(xs))


def test_rate__of_nothing_is_none() -> None:
    assert rate(0, 0) is None
    assert rate(1, 4) == 0.25
