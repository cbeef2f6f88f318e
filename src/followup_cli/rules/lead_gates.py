"""The gates about the lead itself: may it be messaged at all?"""

from __future__ import annotations

from ..config import Settings
from .decision import Decision
from .gate import Gate, fmt_time
from .keywords import keyword_optout

# Each account's settings' opt-out keywords (a property that builds the tuple), by the
# settings object: built once a run instead of once a lead (settings are frozen).
_KEYWORDS: dict[int, tuple[Settings, tuple[str, ...]]] = {}


def optout_keywords(st: Settings) -> tuple[str, ...]:
    """``st.all_optout_keywords``, the same tuple every time for the same settings."""
    hit = _KEYWORDS.get(id(st))
    if hit is None or hit[0] is not st:
        if len(_KEYWORDS) >= 256:
            _KEYWORDS.clear()
        hit = _KEYWORDS[id(st)] = (st, st.all_optout_keywords)
    return hit[1]


def gate_account(g: Gate) -> Decision | None:
    """The lead's account is configured and enabled."""
    lead = g.lead
    account = g.config.account(lead.account_id)
    if account is None:
        g.check("account", False, lambda: f"account {lead.account_id!r} is not in the config")
        return g.stop("unknown_account", f"account {lead.account_id!r} is not configured")
    if not account.enabled:
        g.check("account", False, lambda: f"account {account.id} is disabled")
        return g.stop("account_disabled", f"account {account.id} is disabled in the config")
    g.check("account", True, lambda: f"{account.id} is enabled")
    g.st = g.config.settings_for(account)
    return None


def gate_optout(g: Gate) -> Decision | None:
    """Opt-out: an erasure, a recorded opt-out (the lead's or the person's), or a keyword."""
    state = g.state
    kw = keyword_optout(g.lead.last_inbound_text, optout_keywords(g.settings))
    if state.suppression == "erasure":
        g.check("opt-out", False, "the person was erased on request")
        return g.stop("opted_out", "the person was erased on request: never messaged again")
    if state.opted_out:
        g.check("opt-out", False, lambda: f"opted out ({state.optout_reason or 'no reason given'})")
        return g.stop("opted_out", "the lead opted out")
    if state.suppression is not None:
        why = state.suppression_reason or "no reason given"
        g.check("opt-out", False, lambda: f"the person opted out ({why}), under another lead row")
        return g.stop("opted_out", "the person behind this lead opted out")
    if kw:
        g.d.keyword_optout = kw
        g.check("opt-out", False, lambda: f"last message contains the opt-out keyword {kw!r}")
        return g.stop("opted_out", f"the lead wrote {kw!r}: opted out")
    g.check("opt-out", True, "not opted out")
    return None


def gate_conversion(g: Gate) -> Decision | None:
    lead = g.lead
    if lead.converted_at is not None or (lead.status or "").lower() == "converted":
        g.check("conversion", False, lambda: f"converted {fmt_time(lead.converted_at)}")
        return g.stop("converted", "the lead converted")
    g.check("conversion", True, "not converted")
    return None


def gate_score(g: Gate) -> Decision | None:
    score, st = g.lead.score, g.settings
    span = f"{st.min_score}-{st.max_score}"
    if score is None or not (st.min_score <= score <= st.max_score):
        g.check("score", False, lambda: f"score {score} is outside {span}")
        return g.stop("score_out_of_range", f"score {score} is outside {span}")
    g.check("score", True, lambda: f"score {score} is within {span}")
    return None


def gate_lead_limit(g: Gate) -> Decision | None:
    used, limit = len(g.counted), g.settings.max_followups_per_lead
    if used >= limit:
        g.check("lead limit", False, lambda: f"{used} of {limit} follow-ups used")
        return g.stop("lead_limit", f"the lead already had {used} follow-ups (the limit)")
    g.check("lead limit", True, lambda: f"{used} of {limit} follow-ups used")
    return None


def gate_one_sequence_per_person(g: Gate) -> Decision | None:
    """One sequence at a time per person, whatever lead row carries it."""
    elsewhere = [e for e in g.state.person_enrollments if e.ended_at is None and not e.gone]
    if g.enrollment is None and elsewhere:
        e = elsewhere[0]
        g.check("sequence", False, lambda: f"the person is in {e.sequence_id} as lead {e.lead_id}")
        return g.stop(
            "person_in_sequence", f"the same person is in {e.sequence_id} as lead {e.lead_id}"
        )
    return None
