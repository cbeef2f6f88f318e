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
