"""A live run's --json summary writes its messages one at a time (``_print_json_listing``):
the same bytes as the whole structure dumped at once."""

from __future__ import annotations

import pytest

from followup_cli import redact
from followup_cli.cli_common import _print_json, _print_json_listing

MESSAGES = [
    {"lead_id": "l1", "text": 'Hola\nqué tal, "amigo" \u2603', "step": 1, "error": None},
    {"lead_id": "l2", "text": None, "nested": {"a": [1, {"b": "tok_secret_value"}]}, "n": []},
    {"lead_id": "l3", "due_at": "2026-03-02T10:00:00+00:00", "empty": {}},
]


@pytest.mark.parametrize("messages", [MESSAGES, MESSAGES[:1], []])
def test_json_listing__the_same_bytes_as_one_dump(
    messages: list, capsys: pytest.CaptureFixture[str]
) -> None:
    redact.register("tok_secret_value")
    try:
        data = {"run_id": "r1", "sent": len(messages), "accounts": {"a": {"sent": 1}}}
        _print_json({**data, "messages": messages})
        whole = capsys.readouterr().out
        _print_json_listing({**data, "messages": []}, "messages", iter(messages))
        streamed = capsys.readouterr().out
    finally:
        redact.clear()
    assert streamed == whole
    assert "tok_secret_value" not in streamed


def test_json_listing__the_key_must_come_last() -> None:
    with pytest.raises(ValueError):
        _print_json_listing({"messages": [], "sent": 1}, "messages", iter(()))
