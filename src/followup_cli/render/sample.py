"""A realistic sample lead for ``sequences check`` to render every template against."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Config, Sequence


def sample_lead(config: Config, sequence: Sequence | None = None) -> dict[str, Any]:
    """A realistic lead for test-rendering: every column, plus attributes the triggers name."""
    now = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    attrs: dict[str, Any] = {}
    seqs = [sequence] if sequence else list(config.sequences)
    for seq in seqs:
        _attributes_from(seq.trigger, attrs)
    for name in config.attributes:
        attrs.setdefault(name, "sample")
    lead: dict[str, Any] = {
        "id": "lead_sample",
        "account_id": config.accounts[0].id if config.accounts else "acct",
        "user_id": "u_sample",
        "conversation_id": "conv_sample",
        "recipient_id": "1234567890",
        "username": "sample.user",
        "first_name": "Sam",
        "score": 4,
        "status": "qualified",
        "last_inbound_at": now,
        "last_inbound_text": "How much is it?",
        "last_outbound_at": now,
        "converted_at": None,
        "timezone": config.settings.timezone,
        "attributes": attrs,
    }
    if config.sample_lead:
        extra = dict(config.sample_lead)
        if isinstance(extra.get("attributes"), dict):
            attrs.update(extra.pop("attributes"))
        lead.update(extra)
    return lead


def _attributes_from(conditions: Any, attrs: dict[str, Any]) -> None:
    for c in conditions or ():
        if c.any or c.all:
            _attributes_from(c.any or c.all, attrs)
            continue
        if c.field and c.field.startswith("attributes."):
            key = c.field.split(".", 1)[1]
            value = c.value
            if isinstance(value, list | tuple):
                value = value[0] if value else "sample"
            if c.op == "exists" or value is None:
                value = "sample"
            attrs.setdefault(key, value)
