"""Prometheus metrics of the last run, for node_exporter's textfile collector.

``followup run --metrics-file /var/lib/prometheus/node-exporter/followup.prom`` writes the
file atomically (prometheus-client writes a temporary file and renames it), so the
collector never reads half a file. Every value is about the run that wrote the file, per
account where it has one; ``followup_last_success_timestamp_seconds`` is what a dead-man
alert watches, e.g. ``time() - followup_last_success_timestamp_seconds > 26 * 3600``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest


def build(
    *,
    exit_code: int,
    duration_seconds: float,
    finished: datetime,
    last_success: datetime | None,
    summary: dict[str, Any] | None,
    backlog: dict[str, dict[str, int]] | None = None,
    slot: str | None = None,
) -> CollectorRegistry:
    """The registry for one run (``summary`` is ``RunSummary.as_dict()``; None when the run
    stopped before the engine: exit 2, 75 or 1)."""
    reg = CollectorRegistry()
    _run_gauges(reg, exit_code, duration_seconds, finished, last_success, slot)
    if summary is None:
        return reg
    _account_gauges(reg, summary.get("accounts") or {})
    _gauge(
        reg, "followup_unknown_open", "Follow-ups with an unknown outcome nobody resolved yet."
    ).set(summary.get("unknown_open", 0))
    _gauge(reg, "followup_bad_lead_rows", "Lead rows the last run skipped as unreadable.").set(
        len(summary.get("bad_leads") or [])
    )
    if backlog:
        _backlog_gauges(reg, backlog)
    return reg


def _gauge(reg: CollectorRegistry, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(name, doc, labels, registry=reg)


def _run_gauges(
    reg: CollectorRegistry,
    exit_code: int,
    duration_seconds: float,
    finished: datetime,
    last_success: datetime | None,
    slot: str | None,
) -> None:
    """The run itself: exit code, duration, when it finished, the last success, its slot."""
    _gauge(
        reg,
        "followup_run_exit_code",
        "Exit code of the last run (0 ok, 2 config, 3 failures, 75 lock).",
    ).set(exit_code)
    _gauge(reg, "followup_run_duration_seconds", "Wall time of the last run.").set(duration_seconds)
    _gauge(
        reg, "followup_run_finished_timestamp_seconds", "When the last run finished (Unix time)."
    ).set(finished.timestamp())
    _gauge(
        reg,
        "followup_last_success_timestamp_seconds",
        "When the newest run with exit 0 finished (Unix time; 0 when none has).",
    ).set(last_success.timestamp() if last_success else 0)
    info = _gauge(
        reg,
        "followup_run_info",
        "The last run's slot (empty when not run --on-schedule).",
        ("slot",),
    )
    info.labels(slot=slot or "").set(1)


def _account_gauges(reg: CollectorRegistry, accounts: dict[str, Any]) -> None:
    """Per account: sent, failed by API code, skipped and deferred by reason, unknown,
    stopped."""
    sent = _gauge(reg, "followup_sent", "Follow-ups sent by the last run.", ("account",))
    failed = _gauge(
        reg,
        "followup_failed",
        "Sends that failed in the last run, by API code.",
        ("account", "code"),
    )
    skipped = _gauge(
        reg,
        "followup_skipped",
        "Due follow-ups skipped by the last run, by reason.",
        ("account", "reason"),
    )
    unknown = _gauge(
        reg, "followup_unknown", "Sends of the last run whose outcome is unknown.", ("account",)
    )
    deferred = _gauge(
        reg,
        "followup_deferred",
        "Due follow-ups the last run left for a later run, by reason.",
        ("account", "reason"),
    )
    stopped = _gauge(
        reg, "followup_account_stopped", "1 when the last run stopped the account.", ("account",)
    )
    for acct, a in accounts.items():
        sent.labels(account=acct).set(a.get("sent", 0))
        unknown.labels(account=acct).set(a.get("unknown", 0))
        stopped.labels(account=acct).set(1 if a.get("stopped") else 0)
        for code, n in (a.get("failed") or {}).items():
            failed.labels(account=acct, code=str(code)).set(n)
        for reason, n in (a.get("skipped") or {}).items():
            skipped.labels(account=acct, reason=reason).set(n)
        for reason, n in (a.get("deferred") or {}).items():
            deferred.labels(account=acct, reason=reason).set(n)


def _backlog_gauges(reg: CollectorRegistry, backlog: dict[str, dict[str, int]]) -> None:
    """Per account: the backlog left when the run ended, and what of it will be lost."""
    due = _gauge(
        reg,
        "followup_backlog",
        "Follow-ups due but not served when the last run ended.",
        ("account",),
    )
    lost = _gauge(
        reg,
        "followup_backlog_lost",
        "Of the backlog, follow-ups the rate limit will not let out before their "
        "messaging window closes.",
        ("account",),
    )
    for acct, b in backlog.items():
        due.labels(account=acct).set(b.get("due", 0))
        lost.labels(account=acct).set(b.get("lost", 0))


def write(path: str, registry: CollectorRegistry) -> None:
    """Atomically replace ``path`` (temporary file in the same directory, then rename); a
    new file is 0600, an existing one keeps its mode (``files.atomic_write_private``)."""
    from .files import atomic_write_private

    atomic_write_private(path, generate_latest(registry))


__all__ = ["build", "write"]
