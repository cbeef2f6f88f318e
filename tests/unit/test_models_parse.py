"""Lead rows: an attributes column that is not a JSON object is a bad lead, named plainly."""

from __future__ import annotations

from typing import Any

import pytest

from followup_cli.models import BadLead, parse_lead


def row(attributes: Any) -> dict[str, Any]:
    return {"id": "l1", "recipient_id": "ig_l1", "attributes": attributes}


@pytest.mark.parametrize(
    ("attributes", "kind"),
    [
        ('"just a string"', "a string"),  # JSON text in a TEXT column
        ("[1,2]", "an array"),
        ("42", "a number"),
        ("true", "a boolean"),
        ("just a string", "a string"),  # a JSONB string, already decoded by the driver
        ([1, 2], "an array"),  # a JSONB array, already decoded by the driver
        (3.5, "a number"),
        (False, "a boolean"),
    ],
)
def test_attributes_valid_json_but_not_an_object_says_so(attributes: Any, kind: str) -> None:
    with pytest.raises(BadLead) as exc:
        parse_lead(row(attributes))
    assert exc.value.column == "attributes"
    assert exc.value.what == f"must be a JSON object ({{...}}), got {kind}"
    assert "not valid JSON" not in str(exc.value)


def test_attributes_broken_json_is_still_not_valid_json() -> None:
    with pytest.raises(BadLead) as exc:
        parse_lead(row("{not json"))
    assert exc.value.column == "attributes"
    assert exc.value.what.startswith("not valid JSON")


@pytest.mark.parametrize(
    ("attributes", "expect"),
    [
        (None, {}),
        ("", {}),
        ("null", {}),
        ('{"interest": "pricing"}', {"interest": "pricing"}),
        ({"interest": "pricing"}, {"interest": "pricing"}),
    ],
)
def test_attributes_objects_and_empty_values_parse(attributes: Any, expect: dict) -> None:
    assert parse_lead(row(attributes)).attributes == expect


# Rows are isolated: a value the rules cannot compute with is a named bad lead (issue 8).
DUE = {"id": "l1", "recipient_id": "ig_l1", "last_outbound_at": "2026-03-02T06:00:00Z"}


@pytest.mark.parametrize(
    ("column", "value", "what"),
    [
        ("last_outbound_at", "9999-12-31T23:59:59Z", "out of range"),  # + hours overflowed
        ("last_outbound_at", "0001-01-01T00:00:00Z", "out of range"),  # Go's zero time
        ("converted_at", "infinity", "out of range"),  # Postgres, read back as text
        ("last_inbound_at", "20000-01-01 00:00:00+00", "out of range"),
        ("last_inbound_at", "0044-03-15 00:00:00+00 BC", "out of range"),
        ("last_inbound_at", 1772445600, "not an ISO 8601 timestamp"),
        ("score", float("inf"), "not an integer"),
        ("score", float("nan"), "not an integer"),
        ("score", "9" * 5000, "not an integer"),
        ("score", 2**70, "out of range"),
        ("score", True, "not an integer"),
        ("attributes", "[" * 3000 + "]" * 3000, "JSON nested too deeply"),
        ("first_name", "Ana\udcff", "not UTF-8 text"),  # SQLite text with a stray byte
        ("status", b"\xff\xfe", "not UTF-8 text"),
        ("username", "u" * 1001, "too long"),
        ("recipient_id", 1.5, "not text"),
        ("timezone", "../../etc/passwd", "unknown IANA time zone"),
    ],
)
def test_garbage_values_are_named_bad_leads(column: str, value: Any, what: str) -> None:
    with pytest.raises(BadLead) as exc:
        parse_lead({**DUE, column: value})
    assert exc.value.column == column
    assert exc.value.what.startswith(what), exc.value.what


@pytest.mark.parametrize(
    ("raw_id", "what"),
    [("\udcffA", "not UTF-8 text"), (b"blob", "a blob, not text"), ("", "missing lead id")],
)
def test_a_bad_id_is_named_printably(raw_id: Any, what: str) -> None:
    with pytest.raises(BadLead) as exc:
        parse_lead({**DUE, "id": raw_id})
    assert exc.value.what.startswith(what)
    str(exc.value).encode("utf-8")  # printable: no surrogate reaches stderr or the audit log
    exc.value.lead_id.encode("utf-8")


def test_edge_values_that_are_fine_still_parse() -> None:
    lead = parse_lead(
        {**DUE, "score": "4", "last_inbound_at": "1970-01-01T00:00:00Z", "recipient_id": 17841}
    )
    assert (lead.score, lead.recipient_id, lead.last_inbound_at.year) == (4, "17841", 1970)
