"""Pure parts of the report: the period, the A/B verdict, attribution to the last
follow-up before an outcome."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from followup_cli.errors import ConfigError
from followup_cli.outcomes import ATTRIBUTION, last_before
from followup_cli.report import Period, ab_verdict, period_for


def variant(vid: str, responded: int, sent: int) -> dict[str, Any]:
    return {
        "variant_id": vid,
        "sent": sent,
        "responded": responded,
        "response_rate": responded / sent if sent else None,
    }


def test_period__days_are_local_to_the_operator() -> None:
    late = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)  # already 3 March in Madrid
    p = period_for(late, "Europe/Madrid")
    assert (p.start, p.end, p.days) == (date(2026, 2, 25), date(2026, 3, 3), 7)
    assert period_for(late, "UTC", days=1).end == date(2026, 3, 2)
    one = period_for(late, "Europe/Madrid", on="2026-01-15")
    assert (one.start, one.end) == (date(2026, 1, 15), date(2026, 1, 15))


def test_period__a_dst_day_has_23_hours() -> None:
    start, end = Period(date(2026, 3, 29), date(2026, 3, 29), "Europe/Madrid").bounds()
    assert start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    assert Period(date(2026, 3, 1), date(2026, 3, 3), "UTC").dates()[-1] == date(2026, 3, 3)


@pytest.mark.parametrize(
    ("on", "days", "why"),
    [("2026-03-01", 3, "not both"), (None, 0, "1 to 366"), ("03/01/2026", None, "YYYY-MM-DD")],
)
def test_period__bad_options_are_usage_errors(on: str | None, days: int | None, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        period_for(datetime(2026, 3, 2, tzinfo=UTC), "UTC", on, days)


def test_ab_verdict__names_a_winner_only_when_significant() -> None:
    clear = ab_verdict([variant("a", 30, 50), variant("b", 10, 50)])
    assert clear["winner"] == "a" and clear["comparison"]["significant"] is True
    assert clear["comparison"]["p_value"] < 0.001 and clear["verdict"].startswith(
        "a wins: 60.0% vs 20.0%"
    )
    close = ab_verdict([variant("a", 1, 1), variant("b", 1, 2)])
    assert close["winner"] is None and close["comparison"]["leader"] == "a"
    assert "keep testing" in close["verdict"]


def test_ab_verdict__more_than_two_variants_need_a_stricter_p() -> None:
    # 30% vs 21%: p = 0.039, significant alone (alpha 0.05) but not against two rivals
    # (Bonferroni: 0.05 / 2 = 0.025).
    two = ab_verdict([variant("a", 60, 200), variant("b", 42, 200)])
    assert two["winner"] == "a" and two["comparison"]["p_value"] == pytest.approx(0.0389, abs=1e-3)
    three = ab_verdict([variant("a", 60, 200), variant("b", 42, 200), variant("c", 41, 200)])
    assert three["winner"] is None and three["comparison"]["alpha"] == 0.025
    assert three["comparison"]["runner_up"] == "b"


def test_ab_verdict__too_little_data() -> None:
    assert ab_verdict([variant("a", 5, 10), variant("b", 0, 0)])["comparison"] is None
    flat = ab_verdict([variant("a", 0, 5), variant("b", 0, 5)])
    assert flat["winner"] is None and flat["comparison"]["p_value"] is None
    assert "cannot" in flat["verdict"] or "no difference" in flat["verdict"]


def test_last_before__the_latest_followup_strictly_before_within_the_window() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [
        {"id": 1, "sent_at": t0},
        {"id": 2, "sent_at": t0 + timedelta(hours=5)},
        {"id": 3, "sent_at": t0 + timedelta(hours=9)},
        {"id": 4, "sent_at": None},
    ]
    assert last_before(rows, t0 + timedelta(hours=6))["id"] == 2
    assert last_before(rows, t0 + timedelta(hours=9))["id"] == 2, "strictly before"
    assert last_before(rows, t0) is None
    assert last_before(rows, t0 + timedelta(hours=9) + ATTRIBUTION)["id"] == 3
    assert last_before(rows, t0 + timedelta(hours=10) + ATTRIBUTION) is None
