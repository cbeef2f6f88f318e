"""The schedule in one place: slots of settings.run_times in settings.timezone, by the wall
clock of the zone, across the Europe/Madrid DST changes (last Sunday of March and of
October). Pure functions: no database, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from followup_cli.config import Settings
from followup_cli.schedule import latest_slot, next_slot, on_calendar, slot_at, slots_between

MADRID = Settings(timezone="Europe/Madrid", run_times=("09:00", "14:00", "18:00"))


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "expected_utc_hours"),
    [
        ("2026-03-28", (8, 13, 17)),  # Saturday before: CET, UTC+1
        ("2026-03-29", (7, 12, 16)),  # the spring change (02:00 -> 03:00): CEST, UTC+2
        ("2026-10-24", (7, 12, 16)),  # Saturday before the autumn change: CEST
        ("2026-10-25", (8, 13, 17)),  # the autumn change (03:00 -> 02:00): CET again
    ],
)
def test_slots__follow_the_wall_clock_of_the_zone_across_dst(day, expected_utc_hours):
    start = datetime.fromisoformat(day).replace(tzinfo=UTC) - timedelta(hours=3)
    found = slots_between(start, start + timedelta(hours=24), MADRID)
    found = [s for s in found if s.day.isoformat() == day]
    assert [s.at.hour for s in found] == list(expected_utc_hours)
    assert [s.local.strftime("%H:%M") for s in found] == ["09:00", "14:00", "18:00"]


def test_slot_in_the_spring_gap__is_due_an_hour_later_by_the_wall_clock():
    s = slot_at(datetime(2026, 3, 29).date(), "02:30", "Europe/Madrid")
    assert s.at == utc(2026, 3, 29, 1, 30)  # 03:30 CEST, 30 minutes after the jump
    assert s.local.strftime("%H:%M%z") == "03:30+0200"


def test_slot_in_the_autumn_repeat__is_due_at_its_first_occurrence_only():
    settings = Settings(timezone="Europe/Madrid", run_times=("02:30",))
    s = slot_at(datetime(2026, 10, 25).date(), "02:30", "Europe/Madrid")
    assert s.at == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, the first of the two
    day = slots_between(utc(2026, 10, 24, 12), utc(2026, 10, 25, 12), settings)
    assert [x.key for x in day] == ["2026-10-25 02:30 Europe/Madrid"]


def test_latest_slot__is_the_last_one_at_or_before_now():
    assert latest_slot(utc(2026, 3, 2, 7, 59), MADRID).key == "2026-03-01 18:00 Europe/Madrid"
    assert latest_slot(utc(2026, 3, 2, 8, 0), MADRID).key == "2026-03-02 09:00 Europe/Madrid"
    assert latest_slot(utc(2026, 3, 2, 16, 59), MADRID).key == "2026-03-02 14:00 Europe/Madrid"
    assert next_slot(utc(2026, 3, 2, 8, 0), MADRID).key == "2026-03-02 14:00 Europe/Madrid"


def test_no_run_times__no_slot():
    empty = Settings(timezone="Europe/Madrid", run_times=())
    assert latest_slot(utc(2026, 3, 2, 8), empty) is None
    assert next_slot(utc(2026, 3, 2, 8), empty) is None


def test_on_calendar__names_the_zone_and_every_run_time():
    assert on_calendar(MADRID) == "OnCalendar=*-*-* 09,14,18:00:00 Europe/Madrid"
    mixed = Settings(timezone="Europe/Madrid", run_times=("09:00", "13:30"))
    assert on_calendar(mixed).splitlines() == [
        "OnCalendar=*-*-* 09:00:00 Europe/Madrid",
        "OnCalendar=*-*-* 13:30:00 Europe/Madrid",
    ]
