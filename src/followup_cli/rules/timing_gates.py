"""The gates about now: the step is due and may go out at this moment; the holdout draw last."""

from __future__ import annotations

from .clock import local_day, next_local_midnight, next_run_slot, quiet_until
from .decision import Decision
from .gate import Gate, fmt_time, hours_delta, under
from .variants import choose_variant, in_holdout


def gate_due(g: Gate) -> Decision | None:
    """The step is due, or pulled forward because the messaging window closes first."""
    d, now, st = g.d, g.now, g.settings
    assert g.seq is not None and g.next_step is not None and d.anchor_at is not None
    d.step, d.message = g.next_step
    d.variant_id = choose_variant(g.lead.id, g.seq.id, d.message)
    d.due_at = d.anchor_at + hours_delta(d.message.delay_hours)
    window = g.config.channel.window_hours
    if window is not None and g.lead.last_inbound_at:
        d.window_closes_at = g.lead.last_inbound_at + hours_delta(window)
    if now >= d.due_at:
        g.check("due", True, lambda: f"step {d.step} ({d.message.id}) was due {fmt_time(d.due_at)}")
        return None
    if (
        st.pull_forward
        and d.window_closes_at is not None
        and now < d.window_closes_at
        and d.due_at - now <= hours_delta(st.pull_forward_hours)
        and next_run_slot(now, st) >= d.window_closes_at
    ):
        g.pulled = True
        g.check(
            "due",
            True,
            lambda: f"due {fmt_time(d.due_at)}, pulled forward: the window closes first",
        )
        return None
    g.check("due", False, lambda: f"step {d.step} ({d.message.id}) is due {fmt_time(d.due_at)}")
    note = ""
    if d.window_closes_at is not None and d.window_closes_at <= d.due_at:
        note = f"; the messaging window closes earlier ({fmt_time(d.window_closes_at)})"
    return g.wait("not_due", f"{d.message.id} is due {fmt_time(d.due_at)}{note}", d.due_at)


def gate_no_response(g: Gate) -> Decision | None:
    inbound, hours = g.lead.last_inbound_at, g.settings.no_response_hours
    if inbound is not None:
        quiet_ok = inbound + hours_delta(hours)
        if g.now < quiet_ok:
            g.check(
                "no response",
                False,
                lambda: (
                    f"the lead wrote {fmt_time(inbound)}{under(g.lead)}; "
                    f"silent {hours:g}h at {fmt_time(quiet_ok)}"
                ),
            )
            return g.wait(
                "not_silent_long_enough", f"silent for {hours:g}h at {fmt_time(quiet_ok)}", quiet_ok
            )
    g.check("no response", True, lambda: f"no inbound for {hours:g}h or more")
    return None


def gate_window(g: Gate) -> Decision | None:
    """The channel's messaging window (Instagram: 24 h after the lead's last message)."""
    window, closes = g.config.channel.window_hours, g.d.window_closes_at
    if window is None:
        g.check("window", True, "the channel has no messaging window")
        return None
    if closes is None or g.now >= closes:
        why = "the lead never wrote to us" if closes is None else f"it closed {fmt_time(closes)}"
        g.check("window", False, lambda: f"outside the {window:g}h messaging window: {why}")
        return g.verdict(
            "skip",
            "outside_window",
            f"outside the {window:g}h messaging window ({why}); hand off to a human",
        )
    g.check("window", True, lambda: f"inside the messaging window until {fmt_time(closes)}")
    return None


def gate_interval(g: Gate) -> Decision | None:
    last, hours = g.d.last_followup_at, g.settings.min_interval_hours
    if last is not None:
        ok_at = last + hours_delta(hours)
        if g.now < ok_at:
            g.check(
                "interval",
                False,
                lambda: f"last follow-up {fmt_time(last)}; next allowed {fmt_time(ok_at)}",
            )
            return g.wait(
                "min_interval", f"min interval: next follow-up allowed {fmt_time(ok_at)}", ok_at
            )
    g.check("interval", True, lambda: f"at least {hours:g}h since the last follow-up")
    return None


def gate_daily_cap(g: Gate) -> Decision | None:
    st, now = g.settings, g.now
    today = local_day(now, st.timezone)
    today_count = sum(1 for f in g.counted if local_day(f.at, st.timezone) == today)
    if today_count >= st.max_per_lead_per_day:
        until = next_local_midnight(now, st.timezone)
        g.check("daily cap", False, lambda: f"{today_count} of {st.max_per_lead_per_day} today")
        return g.wait("daily_cap", f"daily cap reached; next day starts {fmt_time(until)}", until)
    g.check("daily cap", True, lambda: f"{today_count} of {st.max_per_lead_per_day} today")
    return None


def gate_quiet_hours(g: Gate) -> Decision | None:
    st, tz = g.settings, g.lead.timezone
    quiet_end = quiet_until(g.now, st, tz)
    if quiet_end is not None:
        g.check(
            "quiet hours",
            False,
            lambda: f"quiet hours in {tz or st.timezone} until {fmt_time(quiet_end)}",
        )
        return g.wait("quiet_hours", f"quiet hours until {fmt_time(quiet_end)}", quiet_end)
    g.check("quiet hours", True, "outside quiet hours")
    return None


def gate_holdout(g: Gate) -> Decision | None:
    # Decided only now, when step 1 would really go out, so the control group is
    # comparable with the messaged group (same silence, same timing rules).
    seq = g.seq
    assert seq is not None
    if g.d.new_enrollment and in_holdout(g.lead.id, seq):
        g.check("holdout", False, lambda: f"in {seq.id}'s holdout group: never messaged")
        return g.verdict(
            "holdout",
            "holdout",
            f"enters {seq.id} as a control (holdout {seq.holdout:.0%}): never messaged",
        )
    return None
