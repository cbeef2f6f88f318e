"""The idempotency key a receiver can use to drop a duplicate delivery."""

from __future__ import annotations

from followup_cli.channels.base import idempotency_key


def test_one_key_per_step_the_same_wherever_it_is_computed() -> None:
    key = idempotency_key("acct_a", "l1", "s1", "m1")
    assert key == idempotency_key("acct_a", "l1", "s1", "m1")
    assert key.startswith("fu-") and len(key) == 35
    others = {
        idempotency_key("acct_b", "l1", "s1", "m1"),
        idempotency_key("acct_a", "l2", "s1", "m1"),
        idempotency_key("acct_a", "l1", "s2", "m1"),
        idempotency_key("acct_a", "l1", "s1", "m2"),
        idempotency_key("acct_a", "l1s", "1", "m1"),  # no ambiguity from joining
    }
    assert key not in others and len(others) == 5
