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

    def g(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=reg)

    g(
        "followup_run_exit_code", "Exit code of the last run (0 ok, 2 config, 3 failures, 75 lock)."
    ).set(exit_code)
    g("followup_run_duration_seconds", "Wall time of the last run.").set(duration_seconds)
    g("followup_run_finished_timestamp_seconds", "When the last run finished (Unix time).").set(
        finished.timestamp()
    )
    g(
        "followup_last_success_timestamp_seconds",
        "When the newest run with exit 0 finished (Unix time; 0 when none has).",
    ).set(last_success.timestamp() if last_success else 0)
    info = g(
        "followup_run_info", "The last run's slot (empty when not run --on-schedule).", ("slot",)
    )
    info.labels(slot=slot or "").set(1)
    if summary is None:
        return reg
    sent = g("followup_sent", "Follow-ups sent by the last run.", ("account",))
    failed = g(
        "followup_failed", "Sends that failed in the last run, by API code.", ("account", "code")
    )
    skipped = g(
        "followup_skipped",
        "Due follow-ups skipped by the last run, by reason.",
        ("account", "reason"),
    )
    unknown = g("followup_unknown", "Sends of the last run whose outcome is unknown.", ("account",))
    deferred = g(
        "followup_deferred",
        "Due follow-ups the last run left for a later run, by reason.",
        ("account", "reason"),
    )
    stopped = g(
        "followup_account_stopped", "1 when the last run stopped the account.", ("account",)
    )
    for acct, a in (summary.get("accounts") or {}).items():
        sent.labels(account=acct).set(a.get("sent", 0))
        unknown.labels(account=acct).set(a.get("unknown", 0))
        stopped.labels(account=acct).set(1 if a.get("stopped") else 0)
        for code, n in (a.get("failed") or {}).items():
            failed.labels(account=acct, code=str(code)).set(n)
        for reason, n in (a.get("skipped") or {}).items():
            skipped.labels(account=acct, reason=reason).set(n)
        for reason, n in (a.get("deferred") or {}).items():
            deferred.labels(account=acct, reason=reason).set(n)
    g("followup_unknown_open", "Follow-ups with an unknown outcome nobody resolved yet.").set(
        summary.get("unknown_open", 0)
    )
    g("followup_bad_lead_rows", "Lead rows the last run skipped as unreadable.").set(
        len(summary.get("bad_leads") or [])
    )
    if backlog:
        due = g(
            "followup_backlog",
            "Follow-ups due but not served when the last run ended.",
            ("account",),
        )
        lost = g(
            "followup_backlog_lost",
            "Of the backlog, follow-ups the rate limit will not let out before their "
            "messaging window closes.",
            ("account",),
        )
        for acct, b in backlog.items():
            due.labels(account=acct).set(b.get("due", 0))
            lost.labels(account=acct).set(b.get("lost", 0))
    return reg


def write(path: str, registry: CollectorRegistry) -> None:
    """Atomically replace ``path`` (temporary file in the same directory, then rename); a
    new file is 0600, an existing one keeps its mode (``files.atomic_write_private``)."""
    from .files import atomic_write_private

    atomic_write_private(path, generate_latest(registry))


__all__ = ["build", "write"]
