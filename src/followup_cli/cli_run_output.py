"""What ``followup run`` prints: the summary on a terminal, the dry run's table and its
streamed JSON (``_PlanSink``), the closing lines for cron (bad rows, the failure line)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import errors
from .cli_common import _fmt, err, out

if TYPE_CHECKING:
    from .engine import RunSummary
    from .operate import RunOps


def _print_closing(summary: RunSummary, data: dict[str, Any], bad: list[str], ops: RunOps) -> None:
    """A run's last lines, after the JSON, the table or the summary: the ``bad`` lead rows
    and the failure line for cron."""
    for line in bad[:20]:
        ops.say(logging.WARNING, f"warning: skipped {line}")
    if len(bad) > 20:
        ops.say(logging.WARNING, f"warning: … and {len(bad) - 20} more bad lead rows")
    if summary.exit_code == errors.EXIT_SEND_FAILURES:
        ops.say(logging.ERROR, _failure_line(data))


def _progress() -> tuple[Any, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    p = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    )
    tasks: dict[str, Any] = {}
    p.start()

    def update(account_id: str, done: int, total: int) -> None:
        if account_id not in tasks:
            tasks[account_id] = p.add_task(account_id, total=total)
        p.update(tasks[account_id], completed=done)

    return p, update


def _failure_line(data: dict[str, Any]) -> str:
    parts = []
    if data["failed"]:
        n = sum(data["failed"].values())
        codes = ", ".join(f"code {k}: {v}" for k, v in data["failed"].items())
        parts.append(f"{n} send(s) failed ({codes})")
    if data["unknown"]:
        parts.append(
            f"{data['unknown']} send(s) with unknown outcome (see `followup unknown list`)"
        )
    if data["stale_claims_marked_unknown"]:
        parts.append(
            f"{data['stale_claims_marked_unknown']} send(s) of a run that died mid-call marked "
            "unknown (check them: `followup unknown list`)"
        )
    for acct, why in data["stopped_accounts"].items():
        parts.append(why if acct in why else f"{acct}: {why}")
    parts.append(f"{data['sent']} sent")
    return "; ".join(parts)


def _print_summary(data: dict[str, Any]) -> None:
    """The closing summary on a terminal: sent; skipped by reason; failed by code; unknown;
    deferred by reason (rate_limit, throttled, time_budget, ...); ended; waiting; time."""
    elapsed = data["elapsed_seconds"]
    head = f"[bold]followup run[/bold] {data['now']}: [green]{data['sent']} sent[/green]"
    out.print(f"{head} in {elapsed:.1f}s" if elapsed >= 1 else f"{head} in {elapsed:.2f}s")
    lines = (
        ("skipped", "skipped", "{k} {v}"),
        ("failed", "failed", "{v} with code {k}"),
        ("deferred", "deferred", "{k} {v}"),
        ("ended", "ended", "{k} {v}"),
        ("waiting", "waiting", "{k} {v}"),
    )
    for label, key, fmt in lines:
        if data[key]:
            items = ", ".join(fmt.format(k=k, v=v) for k, v in data[key].items())
            out.print(f"  {label}: {escape(items)}")
    if data["unknown"]:
        out.print(
            f"  [yellow]unknown: {data['unknown']}[/yellow] (never resent; `followup unknown list`)"
        )
    if data["stale_claims_marked_unknown"]:
        out.print(f"  claims of dead runs marked unknown: {data['stale_claims_marked_unknown']}")
    accounts = data.get("accounts") or {}
    if len(accounts) > 1:
        for acct, a in accounts.items():
            failed = sum(a["failed"].values())
            deferred = sum(a["deferred"].values())
            out.print(
                f"  {escape(acct)}: {a['sent']} sent, {failed} failed, {a['unknown']} unknown, "
                f"{deferred} deferred"
            )
    for acct, why in data["stopped_accounts"].items():
        out.print(f"  [red]stopped {escape(acct)}[/red]: {escape(why)}")
    left = data.get("left_to_other_runs") or []
    if left:
        names = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        out.print(f"  served by another run (it holds their lease): {escape(names)}")
    busy = ("sent", "failed", "unknown", "skipped", "deferred")
    if not any(data[k] for k in busy) and not data.get("left_to_other_runs"):
        out.print("  nothing was due; `followup explain LEAD` shows why a lead waits")


DRY_RUN_ROWS = 50  # rows of the dry-run table; --json lists every planned message


# json.dumps(x, default=str), without building an encoder for every planned message
_LINE = json.JSONEncoder(default=str)


def _line_encoder() -> Callable[[Any], str]:
    """``_LINE.encode`` for a planned message's dict. ``JSONEncoder.encode`` builds a new C
    encoder at every call (a third of its time for one message); this one is built once,
    without the circular-reference check (a planned message is a flat dict). Where the C
    encoder is missing, or does not encode a sample as ``_LINE`` does, ``_LINE.encode``."""
    from json.encoder import c_make_encoder, encode_basestring_ascii

    sample = {"a": 'é\u2028"', "n": None, "i": -3, "f": 1.5, "t": True, "o": datetime(2026, 1, 1)}
    try:
        c = c_make_encoder(  # the arguments JSONEncoder.iterencode passes it
            None,
            _LINE.default,
            encode_basestring_ascii,
            _LINE.indent,
            _LINE.key_separator,
            _LINE.item_separator,
            _LINE.sort_keys,
            _LINE.skipkeys,
            _LINE.allow_nan,
        )

        def encode(o: Any) -> str:
            return "".join(c(o, 0))

        if encode(sample) == _LINE.encode(sample):
            return encode
    except Exception:  # noqa: BLE001, S110 - no C encoder, or another signature: the slow path
        pass
    return _LINE.encode


_encode_line = _line_encoder()


class _PlanSink:
    """A dry run's planned messages, streamed: the first rows for the table and, for
    --json, every one spooled to a temporary file (memory stays flat at any size)."""

    def __init__(self, spool: bool) -> None:
        import tempfile

        self.first: list[Any] = []
        self.count = 0
        self.spool = tempfile.TemporaryFile("w+", encoding="utf-8") if spool else None

    def add(self, planned: Any) -> None:
        self.count += 1
        if len(self.first) < DRY_RUN_ROWS:
            self.first.append(planned)
        if self.spool is not None:
            self.spool.write(_encode_line(planned.as_dict()) + "\n")

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()

    def print_json(self, data: dict[str, Any]) -> None:
        """``data`` as _print_json prints it, its "messages" read back from the spool."""
        head = json.dumps({k: v for k, v in data.items() if k != "messages"}, indent=2, default=str)
        w = sys.stdout.write
        w(head[: head.rindex("}")].rstrip() + ',\n  "messages": [')
        assert self.spool is not None
        self.spool.seek(0)
        for i, line in enumerate(self.spool):
            w(("," if i else "") + "\n    " + line.rstrip("\n"))
        w("\n  ]\n}\n" if self.count else "]\n}\n")
        self.spool.close()


def _print_dry_run(summary: Any, plan: _PlanSink) -> None:
    planned = plan.first
    table = Table(
        title=f"Dry run at {summary.now.isoformat()}: {plan.count} message(s) would be sent",
        show_lines=False,
    )
    for col in ("account", "lead", "sequence", "step", "variant", "due", "message"):
        table.add_column(col, overflow="fold")
    for p in planned:
        text = (p.text or "") + (f" [{p.media_url}]" if p.media_url else "")
        table.add_row(
            *(
                Text(x)
                for x in (
                    p.account_id,
                    p.lead_id,
                    p.sequence_id,
                    f"{p.step} {p.message_id}",
                    p.variant_id or "-",
                    _fmt(p.due_at),
                    text,
                )
            )
        )
    out.print(table)
    if plan.count > len(planned):
        out.print(
            f"… and {plan.count - len(planned)} more (the first {len(planned)} are shown; "
            "--json lists every one)"
        )
    data = summary.as_dict()
    for label, key in (
        ("skipped", "skipped"),
        ("deferred", "deferred"),
        ("would end", "ended"),
        ("waiting", "waiting"),
    ):
        if data[key]:
            out.print(f"{label}: " + ", ".join(f"{k} {v}" for k, v in data[key].items()))
    out.print("Nothing was sent or written. Run without --dry-run to send.")
