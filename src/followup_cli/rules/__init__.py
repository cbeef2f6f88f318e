"""Pure decisions: who is due, with which message, and why not.

``decide(lead, state, config, now)`` is a pure function of a lead row, the tool's own
tracking state for that lead, the config and the time. ``run`` calls it to choose, calls
it again inside the claim transaction with fresh rows ("at the moment of sending"), and
``explain`` prints its checks. No database, no network, no clock of its own.

Actions:
    send     a step is due and every rule holds
    wait     a step exists but is not due yet or a temporary rule blocks it (next_at says when)
    skip     a due step can never be sent (outside the messaging window): recorded, enrollment ends
    end      the lead's enrollment ends (reply, conversion, opt-out, trigger, limits, completed)
    holdout  the lead enters a sequence as a control: enrolled, never messaged
    none     nothing to do and nothing to record

The package: ``decide`` and ``GATES`` (here), each gate in ``lead_gates``, ``sequence_gates``
and ``timing_gates`` over ``gate.Gate`` (what they share), the result in ``decision``;
``keywords`` (opt-out keyword folding and matching), ``conditions`` (triggers), ``variants``
(stable A/B and holdout buckets), ``clock`` (quiet hours, local days, cron slots).
"""

from __future__ import annotations

from datetime import datetime

from ..config import Config
from ..models import Lead, LeadState
from .clock import local_day, local_midnight, next_local_midnight, next_run_slot, quiet_until
from .conditions import condition_holds, describe_conditions, trigger_holds
from .decision import TERMINAL, Action, Check, Decision
from .gate import Gate, config_sequence
from .keywords import (
    APOSTROPHES,
    KEYWORD_SEPARATOR,
    any_keyword,
    combining_marks,
    fold_text,
    has_optout_keyword,
    keyword_like_pattern,
    keyword_like_patterns,
    keyword_optout,
    normalize_text,
)
from .lead_gates import (
    gate_account,
    gate_conversion,
    gate_lead_limit,
    gate_one_sequence_per_person,
    gate_optout,
    gate_score,
)
from .sequence_gates import gate_sequence, gate_sequence_limit, gate_step
from .timing_gates import (
    gate_daily_cap,
    gate_due,
    gate_holdout,
    gate_interval,
    gate_no_response,
    gate_quiet_hours,
    gate_window,
)
from .variants import choose_variant, in_holdout, stable_fraction

__all__ = [
    "APOSTROPHES",
    "GATES",
    "KEYWORD_SEPARATOR",
    "TERMINAL",
    "Action",
    "Check",
    "Decision",
    "any_keyword",
    "choose_variant",
    "combining_marks",
    "condition_holds",
    "config_sequence",
    "decide",
    "describe_conditions",
    "fold_text",
    "has_optout_keyword",
    "in_holdout",
    "keyword_like_pattern",
    "keyword_like_patterns",
    "keyword_optout",
    "local_day",
    "local_midnight",
    "next_local_midnight",
    "next_run_slot",
    "normalize_text",
    "quiet_until",
    "stable_fraction",
    "trigger_holds",
]

# The rules of PRODUCT.md, in order. Each gate either lets the lead through (None, after
# recording a passed check) or returns the decision; the first that decides wins.
GATES = (
    gate_account,
    gate_optout,
    gate_conversion,
    gate_score,
    gate_lead_limit,
    gate_one_sequence_per_person,
    gate_sequence,
    gate_step,
    gate_sequence_limit,
    gate_due,
    gate_no_response,
    gate_window,
    gate_interval,
    gate_daily_cap,
    gate_quiet_hours,
    gate_holdout,
)


def decide(
    lead: Lead, state: LeadState, config: Config, now: datetime, *, explain: bool = True
) -> Decision:
    """The verdict for one lead at ``now``: the gates of PRODUCT.md, in order, with reasons.
    ``explain=False`` leaves ``checks`` empty and decides the same (what a run uses)."""
    counted = state.counted()
    d = Decision(
        lead_id=lead.id,
        account_id=lead.account_id,
        followup_number=len(counted) + 1,
        last_followup_at=max((f.at for f in counted), default=None) if counted else None,
    )
    g = Gate(lead, state, config, now, d, state.active_enrollment(), counted, explain=explain)
    for gate in GATES:
        verdict = gate(g)
        if verdict is not None:
            return verdict
    assert g.seq is not None and d.message is not None
    d.action = "send"
    d.reason = "pulled_forward" if g.pulled else "due"
    variant = f"/{d.variant_id}" if d.variant_id else ""
    d.detail = f"send {g.seq.id} step {d.step} ({d.message.id}{variant})"
    return d
