"""Stable buckets: the same lead always gets the same A/B variant and the same holdout
draw."""

from __future__ import annotations

import hashlib

from ..config import Message, Sequence


def stable_fraction(*parts: str) -> float:
    """A number in [0, 1) fixed by its inputs: the same lead always lands in the same bucket."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return int(digest[:15], 16) / float(16**15)


def choose_variant(lead_id: str, sequence_id: str, message: Message) -> str | None:
    if not message.variants:
        return None
    x = stable_fraction("variant", lead_id, sequence_id, message.id)
    total = sum(v.weight for v in message.variants)
    acc = 0.0
    for v in message.variants:
        acc += v.weight / total
        if x < acc:
            return v.id
    return message.variants[-1].id


def in_holdout(lead_id: str, sequence: Sequence) -> bool:
    return (
        sequence.holdout > 0 and stable_fraction("holdout", lead_id, sequence.id) < sequence.holdout
    )
