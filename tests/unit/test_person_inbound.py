"""person_inbound: a lead row's silence is its person's (pure: rows in, a lead out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from followup_cli.models import Lead
from followup_cli.person_inbound import PersonRows, RowInbound, from_rows, merged

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def a(inbound: datetime | None = T) -> Lead:
    return Lead(id="A", account_id="acct", recipient_id="R", last_inbound_at=inbound)


def test_a_later_message_under_another_row_is_the_rows_and_names_that_row() -> None:
    got = merged(a(), [RowInbound("B", T + timedelta(hours=2)), RowInbound("C", T)])
    assert got.last_inbound_at == T + timedelta(hours=2)
    assert got.inbound_lead_id == "B" and got.other_rows == ("B", "C")
    assert got.last_inbound_text == a().last_inbound_text  # the text stays the row's own


def test_an_earlier_or_no_message_elsewhere_leaves_the_rows_own() -> None:
    for others in ([RowInbound("B", T - timedelta(hours=1))], [RowInbound("B", None)]):
        got = merged(a(), others)
        assert (got.last_inbound_at, got.inbound_lead_id, got.other_rows) == (T, None, ("B",))
    got = merged(a(None), [RowInbound("B", T)])
    assert (got.last_inbound_at, got.inbound_lead_id) == (T, "B")


def test_the_row_itself_among_the_persons_rows_is_not_another_row() -> None:
    assert merged(a(), [RowInbound("A", T + timedelta(hours=5))]) == a()


def test_rows_of_another_recipient_or_account_blank_or_garbage_are_nobodys() -> None:
    later = (T + timedelta(hours=1)).isoformat()
    rows = [
        {"id": "B", "account_id": "acct", "recipient_id": " R ", "last_inbound_at": T.isoformat()},
        {"id": "C", "account_id": "acct", "recipient_id": "R2", "last_inbound_at": later},
        {"id": "D", "account_id": "other", "recipient_id": "R", "last_inbound_at": later},
        {"id": "E", "account_id": "acct", "recipient_id": "R", "last_inbound_at": "garbage"},
        {"id": "F", "account_id": "acct", "recipient_id": "R", "last_inbound_at": "9999-12-31"},
        {"id": None, "account_id": "acct", "recipient_id": "R", "last_inbound_at": later},
    ]
    got = from_rows(a(T - timedelta(hours=1)), rows)
    assert (got.last_inbound_at, got.inbound_lead_id) == (T, "B")
    assert got.other_rows == ("B", "E", "F")
    persons = PersonRows(
        [
            {"id": "X", "recipient_id": "", "last_inbound_at": later},
            {"id": "Y", "recipient_id": "   ", "last_inbound_at": later},
            {"id": "Z", "recipient_id": None, "last_inbound_at": later},
            {"id": "B", "recipient_id": "R", "last_inbound_at": later},
            {"id": "A", "recipient_id": "R", "last_inbound_at": None},
        ]
    )
    assert sorted(persons.by_recipient) == ["R"]
    assert persons.apply(a()).inbound_lead_id == "B"
    assert PersonRows().apply_all([a()]) == [a()]
