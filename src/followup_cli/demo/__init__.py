"""``followup demo``: seed a local SQLite lead store with realistic leads and replay a few
days of cron runs (9:00, 14:00, 18:00 Madrid) on the console channel, with leads replying
and converting between runs the way a host app would record it."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ..channels.console import ConsoleChannel
from ..clock import Clock
from ..config import load_config
from ..engine import Engine, RunOptions
from ..files import create_private
from ..leadcolumns import COLUMN_NAMES
from ..leadstore import lead_table_ddl
from ..outcomes import reconcile
from ..report import build_report
from ..store import open_store
from ..store.queries import columns, ident, placeholders, q

START = datetime(2026, 3, 2, tzinfo=ZoneInfo("Europe/Madrid"))  # a Monday
FIRST = ["Ana", "Luis", "Marta", "Jorge", "Lucia", "Pablo", "Sara", "Diego", "Elena", "Hugo", None]
INTERESTS = ["pricing", "demo", "catalog", "shipping", None]


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if dt else None


def seed_leads(
    db_path: Path,
    n: int,
    rng: random.Random,
    morning: datetime | None = None,
    first_id: int = 1,
    broken: bool = True,
) -> None:
    """Write ``n`` realistic leads (plus two broken rows) into the ``leads`` table, each
    with a conversation that went quiet before ``morning``'s first run: in the day before
    it for the first batch, overnight (after the last run) for the batches that follow."""
    conn = sqlite3.connect(db_path)
    for statement in lead_table_ddl("sqlite"):  # the lead-store columns, defined once
        conn.execute(statement)
    t0 = (morning or START.replace(hour=9)).astimezone(UTC)
    span = 22 * 60 if first_id == 1 else 14 * 60
    rows = [_random_lead(i, rng, t0, span) for i in range(first_id, first_id + n)]
    if broken:
        rows += _broken_leads(t0)
    _insert(conn, rows)


def _random_lead(i: int, rng: random.Random, t0: datetime, span: int) -> tuple[Any, ...]:
    """Lead ``i``'s row (``COLUMN_NAMES``' order): its last outbound message 1 h to
    ``span`` minutes before ``t0``; mostly a lead that wrote first and went quiet, some
    that answered, a few that never wrote."""
    account = rng.choices(["acct_shop", "acct_studio", "acct_paused"], [6, 3, 1])[0]
    first = rng.choice(FIRST)
    username = f"{(first or 'user').lower()}.{i:03d}"
    score = rng.choices([1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 3, 3, 2, 1])[0]
    status = rng.choices(["new", "qualified", "lost", "converted"], [4, 5, 1, 1])[0]
    outbound = t0 - timedelta(minutes=rng.randint(60, span))
    kind = rng.random()
    if kind < 0.08:
        inbound, text = None, None  # we wrote first; they never answered: no window
    elif kind < 0.22:
        inbound, text = outbound + timedelta(minutes=rng.randint(5, 90)), "ok let me think"
    else:
        inbound = outbound - timedelta(minutes=rng.randint(2, 180))
        text = rng.choice(
            ["How much is it?", "Do you ship to Valencia?", "Nice!", "Please STOP"] + [""] * 2
        )
    converted = outbound + timedelta(hours=1) if status == "converted" else None
    attrs = {"interest": rng.choice(INTERESTS), "source": rng.choice(["ad", "story", "bio"])}
    return (
        f"lead_{i:03d}",
        account,
        "u_1",
        f"conv_{i:03d}",
        f"17{i:013d}",
        username,
        first,
        score,
        status,
        _iso(inbound),
        text,
        _iso(outbound),
        _iso(converted),
        rng.choice(["Europe/Madrid", "Europe/Madrid", "America/Mexico_City", None]),
        json.dumps({k: v for k, v in attrs.items() if v}),
    )


def _broken_leads(t0: datetime) -> list[tuple[Any, ...]]:
    """Two rows a run must skip and name: a time that does not parse, and no recipient."""
    quiet = _iso(t0 - timedelta(hours=5))
    bad_time = ("lead_bad_time", "acct_shop", None, None, "1799", "broken", None, 4, "new")
    no_recipient = ("lead_no_recipient", "acct_shop", None, None, None, "ghost", None, 4, "new")
    return [
        (*bad_time, "yesterday-ish", None, quiet, None, None, None),
        (*no_recipient, None, None, quiet, None, None, None),
    ]


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    sql = q(
        "leads_insert",
        "sqlite",
        leads=ident("leads"),
        columns=columns(COLUMN_NAMES),
        values=placeholders(COLUMN_NAMES),
    )
    conn.executemany(sql, [dict(zip(COLUMN_NAMES, row, strict=True)) for row in rows])
    conn.commit()
    conn.close()


def simulate_host_app(
    db_path: Path, messaged: list[str], at: datetime, rng: random.Random
) -> Counter:
    """Leads answer some follow-ups; a human answers them; some convert. As a host app would."""
    events: Counter = Counter()
    conn = sqlite3.connect(db_path)
    for lead_id in messaged:
        roll = rng.random()
        if roll < 0.18:
            reply = at + timedelta(minutes=rng.randint(10, 120))
            conn.execute(
                "UPDATE leads SET last_inbound_at = ?, last_inbound_text = ?, last_outbound_at = ? "
                "WHERE id = ?",
                (_iso(reply), "Yes! How do I order?", _iso(reply + timedelta(minutes=20)), lead_id),
            )
            events["replied"] += 1
            if rng.random() < 0.45:
                conn.execute(
                    "UPDATE leads SET converted_at = ?, status = 'converted' WHERE id = ?",
                    (_iso(reply + timedelta(hours=1)), lead_id),
                )
                events["converted"] += 1
        elif roll < 0.21:
            conn.execute(
                "UPDATE leads SET last_inbound_at = ?, last_inbound_text = ? WHERE id = ?",
                (_iso(at + timedelta(minutes=30)), "stop please", lead_id),
            )
            events["wrote stop"] += 1
    conn.commit()
    conn.close()
    return events


def run_demo(
    directory: Path, n_leads: int = 200, days: int = 3, out: Any = None, quiet: bool = False
) -> dict[str, Any]:
    """Seed, replay ``days`` of cron runs, print a summary; returns the totals."""
    printer = out.print if out is not None else print
    config_path, db_path = _fresh_demo_dir(directory)
    rng = random.Random(42)
    # A third of the leads (or so) is there at the start; the host app records the others
    # overnight, a batch before each morning's first run, the last one after the demo's end.
    per_day = n_leads // (days + 1)
    first_batch = n_leads - per_day * days
    create_private(db_path)  # 0600, and so its -wal and -shm: the demo's leads are people
    seed_leads(db_path, first_batch, rng)
    loaded = load_config(config_path)
    store = open_store(str(db_path), "leads")
    stream = None if not quiet else open("/dev/null", "w")  # noqa: SIM115
    engine = Engine(loaded, store, ConsoleChannel(stream=stream))
    printer(
        f"Seeded {n_leads} leads (+2 broken rows) in {db_path}; config {config_path}: "
        f"{first_batch} at the start, {per_day} more arriving overnight before each morning"
    )
    totals: Counter = Counter()
    host_events: Counter = Counter()
    tz = ZoneInfo(loaded.config.settings.timezone)
    next_id = first_batch + 1
    for day in range(days):
        for hour in (9, 14, 18):
            at = (START + timedelta(days=day)).replace(hour=hour, tzinfo=tz).astimezone(UTC)
            sent = _run_slot(engine, at, tz, totals, printer)
            host_events.update(simulate_host_app(db_path, sent, at, rng))
        morning = (START + timedelta(days=day + 1)).replace(hour=9, tzinfo=tz)
        seed_leads(db_path, per_day, rng, morning, first_id=next_id, broken=False)
        next_id += per_day
    _print_by_step(store, printer)
    # The report's numbers for the demo's days, counted the way `followup report` counts
    # them (the same call): what the summary below says must agree with it.
    report_now = (START + timedelta(days=days - 1)).replace(hour=23, tzinfo=tz)
    reconcile(store, loaded.config, report_now.astimezone(UTC))
    report = build_report(store, loaded.config, report_now.astimezone(UTC), days=days)
    _print_totals(report, totals, host_events, printer)
    _print_next_steps(directory, config_path, report_now, days, printer)
    store.close()
    if stream is not None:
        stream.close()
    return {
        "sent": totals["sent"],
        **host_events,
        "report_responded": report["summary"]["followups_responded"],
        "report_converted": report["summary"]["followups_converted"],
    }


def _fresh_demo_dir(directory: Path) -> tuple[Path, Path]:
    """The demo's config copied into ``directory`` and its database removed (with its
    -wal, -shm and lock files): (config path, database path)."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "sequences.yaml"
    with resources.as_file(resources.files("followup_cli.demo") / "sequences.yaml") as src:
        shutil.copyfile(src, config_path)
    db_path = directory / "followup.db"
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    return config_path, db_path


def _run_slot(
    engine: Engine, at: datetime, tz: ZoneInfo, totals: Counter, printer: Callable[[str], Any]
) -> list[str]:
    """One cron run at ``at``: counted into ``totals`` and told in a line; returns the ids
    of the leads it sent to."""
    engine.clock = Clock(fixed=at)
    summary = engine.run(RunOptions(now=at))
    data = summary.as_dict()
    totals["sent"] += data["sent"]
    for k, v in data["skipped"].items():
        totals[f"skipped: {k}"] += v
    for k, v in data["ended"].items():
        totals[f"ended: {k}"] += v
    totals["opt-outs"] += data["optouts"]
    printer(
        f"-- run {at.astimezone(tz):%a %d %b %H:%M} Madrid: sent {data['sent']}"
        + "".join(f", skipped {k} {v}" for k, v in data["skipped"].items())
        + "".join(f", ended {k} {v}" for k, v in data["ended"].items())
        + (f", {len(data['bad_leads'])} bad rows skipped" if data["bad_leads"] else "")
    )
    return [p.lead_id for p in summary.planned if p.outcome == "sent"]


def _print_by_step(store: Any, printer: Callable[[str], Any]) -> None:
    """Every follow-up of the demo counted by sequence, message, variant and status."""
    rows = store.followups(limit=100_000)
    by_step = Counter(
        (r["sequence_id"], r["message_id"], r["variant_id"] or "-", r["status"]) for r in rows
    )
    printer("\nWhat happened, by step (sequence / message / variant: status count):")
    for (seq, msg, var, status), n in sorted(by_step.items()):
        printer(f"  {seq} / {msg} / {var}: {status} {n}")


def _print_totals(
    report: dict[str, Any],
    totals: Counter,
    host_events: Counter,
    printer: Callable[[str], Any],
) -> None:
    """What was sent and answered, and whether the report counts the same."""
    s = report["summary"]
    answered = host_events["replied"] + host_events["wrote stop"]
    printer(
        f"\nTotals: {totals['sent']} follow-ups sent to {s['leads_messaged']} leads. The host "
        f"app recorded {answered} answers to them ({host_events['replied']} asking how to "
        f"order, {host_events['wrote stop']} saying 'stop') and {host_events['converted']} "
        f"conversions; opt-outs recorded: {totals['opt-outs']} (also from leads whose last "
        "message already said stop)."
    )
    agree = (s["followups_responded"], s["followups_converted"]) == (
        answered,
        host_events["converted"],
    )
    printer(
        f"The report for these days counts {s['followups_responded']} follow-ups responded "
        f"({s['leads_responded']} leads: any message after a follow-up is a response, 'stop' "
        f"too) and {s['followups_converted']} converted"
        + (
            ": the same."
            if agree
            else "; it credits each answer to the last follow-up sent before it within "
            f"{report['attribution_days']} days, which is why it differs."
        )
    )
    skipped = {k: v for k, v in totals.items() if k.startswith("skipped")}
    if skipped:
        printer(
            "Why some were not sent: "
            + ", ".join(f"{k.split(': ')[1]} {v}" for k, v in skipped.items())
        )


def _print_next_steps(
    directory: Path,
    config_path: Path,
    report_now: datetime,
    days: int,
    printer: Callable[[str], Any],
) -> None:
    """The commands to look at the demo's store next (its days are in the past: --now)."""
    cfg = f"--config {config_path}"
    morning = (START + timedelta(days=days)).replace(hour=9)
    printer(
        "\nNext, on the demo's store (the demo's days are in March 2026: keep --now):"
        f"\n  followup report {cfg} --now {report_now.isoformat()} --days {days}"
        f"\n  followup report {cfg} --now {report_now.isoformat()} --days {days} "
        f"--format html -o {directory / 'report.html'}"
        f"\n  followup explain lead_004 {cfg} --now {START.replace(hour=14).isoformat()}"
        f"\n  followup run --dry-run {cfg} --now {morning.isoformat()}"
        f"\n  followup plan {cfg} --now {morning.replace(hour=8).isoformat()} --days 2"
        f"\n  followup leads {cfg} --now {morning.isoformat()}"
    )
