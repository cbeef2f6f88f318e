"""What became of the follow-ups: ``unknown`` (outcomes nobody knows: list, resolve),
``handoff`` (windows closed with a step still due: for humans) and ``events ingest``
(what leads did, from the host app or Instagram webhooks)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from . import errors
from .cli_common import (
    AccountOpt,
    ConfigOpt,
    DbOpt,
    JsonOpt,
    NowOpt,
    _check_account,
    _fmt,
    _load,
    _load_optional,
    _opened,
    _pending_migrations,
    _plain,
    _print_json,
    _when,
    app,
    err,
    out,
)
from .errors import ConfigError
from .store.access import READ, WRITE, reading

unknown_app = typer.Typer(
    help="Follow-ups whose outcome nobody knows: list and resolve.", no_args_is_help=True
)
app.add_typer(unknown_app, name="unknown")
events_app = typer.Typer(
    help="Outcome events from the host app or Instagram webhooks.", no_args_is_help=True
)
app.add_typer(events_app, name="events")


# ------------------------------------------------------------------- unknown


@unknown_app.command("list")
def unknown_list(
    config: ConfigOpt = "sequences.yaml", db: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Follow-ups whose outcome is unknown (and claims still pending)."""
    loaded = _load_optional(config)
    with _opened(loaded, db, config, READ) as store, reading(store):
        rows = store.followups(status="unknown") + store.followups(status="pending")
    from .crypto import show_body

    if as_json:
        hidden = ("body", "body_encrypted", "person_key", "external_key")
        _print_json(
            [
                # the text: what to look for in the conversation
                {**_plain(r, drop=hidden), "text": show_body(r.get("body"))}
                for r in rows
            ]
        )
        return
    if not rows:
        out.print("no follow-ups with an unknown outcome")
    for r in rows:
        variant = f"/{r['variant_id']}" if r.get("variant_id") else ""
        text = " ".join(show_body(r.get("body")).split())
        out.print(
            f"{r['id']}\t{r['status']}\t{r['lead_id']}\t{r['sequence_id']}/{r['message_id']}"
            f"{variant}\t{_fmt(r['claimed_at'])}\t{r.get('reason') or r.get('error_message') or ''}"
            f"\t{text[:60] + '…' if len(text) > 60 else text}",
            markup=False,
        )
    if rows:
        out.print(
            "Check the conversation in Instagram, then "
            "`followup unknown resolve ID --sent` or `--release`."
        )


@unknown_app.command("resolve")
def unknown_resolve(
    followup_id: Annotated[
        int, typer.Argument(help="Tracking row id (from `followup unknown list`).")
    ],
    sent: Annotated[bool, typer.Option("--sent", help="It did go out: mark it sent.")] = False,
    release: Annotated[
        bool, typer.Option("--release", help="It did not go out: free the step for a later run.")
    ] = False,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
) -> None:
    """Resolve an unknown follow-up: mark it sent, or release it for a retry."""
    from .store.base import actor

    if sent == release:
        raise ConfigError("choose one: --sent (it went out) or --release (it did not)")
    loaded = _load_optional(config)
    with _opened(loaded, db, config, WRITE) as store:
        row = store.resolve_unknown(followup_id, sent, actor(), datetime.now(UTC))
    if row is None:
        raise ConfigError(
            f"tracking row {followup_id} is not an unknown follow-up (see `followup unknown list`)"
        )
    out.print(
        f"{followup_id}: {'marked sent' if sent else 'released: a later run may send this step'}"
    )


@app.command()
def handoff(
    account: AccountOpt = None,
    since: Annotated[
        float | None,
        typer.Option("--since", min=0, help="Only leads skipped in the last HOURS (default: all)."),
    ] = None,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Leads whose messaging window closed with a step still due: for human agents."""
    from .engine import handoff as handoff_leads

    loaded = _load(config, strict=False)
    _check_account(loaded, account)
    when = _when(now)
    with _opened(loaded, db, config, READ) as store:
        rows = []
        if not _pending_migrations(store):
            rows = handoff_leads(loaded.config, store, when, since, account)
    if as_json:
        _print_json([_plain(r) for r in rows])
        return
    _print_handoffs(rows)


def _print_handoffs(rows: list[dict[str, Any]]) -> None:
    if not rows:
        out.print("no hand-offs: no lead's messaging window closed with a step still due")
        return
    table = Table(title=f"{len(rows)} lead(s) to hand to a human agent (the window closed)")
    cols = ("account", "lead", "user", "step", "due", "window closed", "human until", "message")
    for col in cols:
        table.add_column(col, overflow="fold")
    for r in rows:
        text = (r["text"] or "") + (f" [{r['media_url']}]" if r["media_url"] else "")
        table.add_row(
            *(
                Text(x)
                for x in (
                    r["account_id"] or "-",
                    r["lead_id"],
                    r["username"] or r["recipient_id"] or "-",
                    f"{r['sequence_id']}/{r['message_id']}",
                    _fmt(r["due_at"]),
                    _fmt(r["window_closed_at"]),
                    _fmt(r["human_reply_until"]),
                    text,
                )
            )
        )
    out.print(table)
    out.print(
        "Automation never messages outside the window. A human agent may still reply until "
        "'human until' (Meta's HUMAN_AGENT tag: 7 days after the lead's last message); times UTC."
    )


@events_app.command("ingest")
def events_ingest(
    source: Annotated[str, typer.Argument(help="JSON lines or webhook payloads; - for stdin.")],
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record delivered, read, replied, converted and opted_out events (idempotent)."""
    from .events import ingest
    from .store.base import actor

    loaded = _load(config, strict=False)
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read ({exc})") from None
    when = _when(now)
    name = "<stdin>" if source == "-" else source
    # A replay (--now) sees nothing after its instant; real time allows clock skew.
    skew = timedelta(0) if now else timedelta(minutes=5)
    with _opened(loaded, db, config, WRITE) as store:
        result = ingest(store, loaded.config, text, name, when, actor(), skew)
    data = result.as_dict()
    if as_json:
        _print_json(data)
    else:
        applied = ", ".join(f"{k} {v}" for k, v in data["applied"].items()) or "nothing new"
        out.print(
            f"{data['new']} new event(s), {data['duplicates']} already ingested; applied: {applied}"
            + (f"; {data['unmatched']} matched no lead" if data["unmatched"] else "")
            + (f"; {data['optouts']} opt-out(s)" if data["optouts"] else "")
        )
    if data["after_now"]:
        err.print(
            f"followup: warning: {data['after_now']} event(s) dated after {when.isoformat()} "
            "were not recorded; ingest them again once their time has come"
        )
    if data["events"] == 0 and data["ignored"] and not data["problems"]:
        kinds = ", ".join(f"{k} {v}" for k, v in data["ignored"].items())
        err.print(f"followup: warning: no outcome event in {name} (ignored: {kinds})")
    for problem in data["problems"][:20]:
        err.print(f"followup: {problem}", markup=False)
    if data["problems"]:
        n = len(data["problems"])
        err.print(f"followup: {n} document(s) rejected; the others were ingested")
        raise typer.Exit(errors.EXIT_USAGE)
