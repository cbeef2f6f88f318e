"""The gates that choose the sequence and its next step."""

from __future__ import annotations

from ..models import FAILED, PENDING, UNKNOWN, FollowupRecord
from .conditions import trigger_holds
from .decision import Decision
from .gate import Gate, config_sequence, fmt_time, hours_delta, under


def gate_sequence(g: Gate) -> Decision | None:
    """The sequence the lead is in, or enters, and the start of its silence."""
    return _enrolled_sequence(g) if g.enrollment is not None else _new_sequence(g)


def _enrolled_sequence(g: Gate) -> Decision | None:
    lead, d, enrollment = g.lead, g.d, g.enrollment
    seq = config_sequence(g.config, enrollment.sequence_id)
    d.anchor_at = enrollment.anchor_at
    if seq is None:
        g.check("sequence", False, lambda: f"{enrollment.sequence_id} was removed")
        return g.stop(
            "sequence_removed", f"sequence {enrollment.sequence_id} is no longer configured"
        )
    d.sequence = g.seq = seq
    if lead.last_inbound_at is not None and lead.last_inbound_at > enrollment.anchor_at:
        g.check(
            "silence",
            False,
            lambda: f"the lead replied {fmt_time(lead.last_inbound_at)}{under(lead)}",
        )
        return g.stop(
            "replied", f"the lead replied at {fmt_time(lead.last_inbound_at)}{under(lead)}"
        )
    g.check("silence", True, lambda: f"silent since {fmt_time(enrollment.anchor_at)}")
    if not seq.active:
        g.check("sequence", False, lambda: f"{seq.id} is inactive (paused)")
        return g.stop("sequence_inactive", f"sequence {seq.id} is inactive; the lead waits in it")
    if not trigger_holds(seq, lead):
        g.check("trigger", False, lambda: f"{seq.id}'s trigger no longer matches")
        return g.stop("trigger_mismatch", f"sequence {seq.id}'s trigger no longer matches")
    g.check(
        "sequence", True, lambda: f"enrolled in {seq.id} since {fmt_time(enrollment.started_at)}"
    )
    if enrollment.holdout:
        g.check("holdout", False, lambda: f"in {seq.id}'s holdout group: never messaged")
        last = max((m.delay_hours for m in seq.messages), default=0)
        if g.now >= enrollment.anchor_at + hours_delta(last):
            return g.verdict("end", "completed", "holdout period is over")
        return g.stop("holdout", "control group: enrolled but never messaged")
    return None


def _new_sequence(g: Gate) -> Decision | None:
    lead, d, state = g.lead, g.d, g.state
    if lead.last_outbound_at is None:
        g.check("silence", False, "we never wrote to this lead")
        return g.stop("never_contacted", "no outbound message yet: nothing to follow up")
    if lead.last_inbound_at is not None and lead.last_inbound_at > lead.last_outbound_at:
        g.check(
            "silence",
            False,
            lambda: f"the lead wrote last ({fmt_time(lead.last_inbound_at)}){under(lead)}",
        )
        return g.stop(
            "waiting_for_human", f"the lead wrote last{under(lead)} and waits for a human reply"
        )
    d.anchor_at = lead.last_outbound_at
    # A new enrollment needs a new conversation round since the previous one.
    if state.enrollments:
        last_prev = max(state.enrollments, key=lambda e: e.anchor_at)
        if lead.last_inbound_at is None or lead.last_inbound_at <= last_prev.anchor_at:
            g.check(
                "silence",
                False,
                lambda: (
                    f"{last_prev.sequence_id} ended ({last_prev.ended_reason}); "
                    "no new conversation since"
                ),
            )
            return g.stop(
                "sequence_done", f"{last_prev.sequence_id} ended: {last_prev.ended_reason}"
            )
    g.check("silence", True, lambda: f"silent since {fmt_time(d.anchor_at)} (we wrote last)")
    # never the same sequence twice, for the person (under any lead row)
    done = (
        {e.sequence_id for e in state.enrollments}
        | {e.sequence_id for e in state.person_enrollments}
        if state.enrollments or state.person_enrollments
        else ()
    )
    seq = next(
        (
            c
            for c in g.config.sequences_by_priority()
            if c.active and c.id not in done and trigger_holds(c, lead)
        ),
        None,
    )
    if seq is None:
        g.check("sequence", False, "no active sequence's trigger matches")
        return g.stop("no_sequence", "no active sequence's trigger matches this lead")
    d.sequence = g.seq = seq
    d.new_enrollment = True
    g.check("sequence", True, lambda: f"enters {seq.id} (priority {seq.priority})")
    return None


def gate_step(g: Gate) -> Decision | None:
    """The next step of the sequence: none failed, none open, one left."""
    seq = g.seq
    assert seq is not None
    seq_rows = [f for f in g.state.followups if f.sequence_id == seq.id]
    if seq_rows:
        held = _held(g, seq_rows)
        if held is not None:
            return held
    done_ids = {f.message_id for f in seq_rows}
    step = next(
        ((i, m) for i, m in enumerate(seq.messages, start=1) if m.active and m.id not in done_ids),
        None,
    )
    if step is None:
        g.check("step", False, lambda: f"every message of {seq.id} is done")
        return g.stop("completed", f"{seq.id} is complete")
    g.next_step = step
    return None


def _held(g: Gate, seq_rows: list[FollowupRecord]) -> Decision | None:
    """A failed step ends the sequence; an open one holds it."""
    seq = g.seq
    assert seq is not None
    failed = [f for f in seq_rows if f.status == FAILED]
    if failed:
        g.check("step", False, lambda: f"{failed[-1].message_id} failed permanently")
        return g.stop("failed", f"a message of {seq.id} failed permanently")
    # A step nobody knows went out (unknown), or that another run is sending right now
    # (pending), holds the sequence: no later step jumps ahead of it, and once an operator
    # resolves it the sequence goes on in order.
    open_rows = [f for f in seq_rows if f.status in (PENDING, UNKNOWN)]
    if open_rows:
        f = open_rows[-1]
        if f.status == UNKNOWN:
            g.check("step", False, lambda: f"{f.message_id}'s outcome is unknown")
            return g.wait(
                "unknown_outcome",
                f"{f.message_id}'s outcome is unknown: check the conversation, then "
                "`followup unknown resolve ID --sent` or `--release` (`followup unknown list`)",
                None,
            )
        g.check("step", False, lambda: f"{f.message_id} is being sent by a run")
        return g.wait("in_flight", f"{f.message_id} is being sent by a run right now", None)
    return None


def gate_sequence_limit(g: Gate) -> Decision | None:
    seq = g.seq
    assert seq is not None
    sent = len(g.state.counted(seq.id))
    if sent >= seq.limit:
        g.check("sequence limit", False, lambda: f"{sent} of {seq.limit} sent")
        return g.stop("sequence_limit", f"{seq.id}'s limit of {seq.limit} follow-ups is reached")
    g.check("sequence limit", True, lambda: f"{sent} of {seq.limit} sent")
    return None
