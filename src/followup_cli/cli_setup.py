"""Setting up: ``sequences check`` and ``show``, ``migrate``, ``keygen``, ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.tree import Tree

from . import errors
from .cli_common import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    UnusedDbOpt,
    _load_optional,
    _one_line,
    _print_json,
    _store,
    app,
    err,
    out,
)
from .config import load_config
from .configcheck import check_config

if TYPE_CHECKING:
    from .config.loading import LoadedConfig, Problem
    from .storecheck import TemplateStats

sequences_app = typer.Typer(help="Validate and show sequences.yaml.", no_args_is_help=True)
app.add_typer(sequences_app, name="sequences")


# ----------------------------------------------------------------- sequences


@sequences_app.command("check")
def sequences_check(
    config: ConfigOpt = "sequences.yaml", db: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Validate everything before deploy: schema, ids, conditions, templates, window fit;
    with --db (or FOLLOWUP_DB) also that the lead store opens and has the lead table."""
    from .crypto import storage_problems
    from .storecheck import check_against_leads
    from .tokens import unset_problems

    loaded = load_config(config)
    # store_problem: about the database, not a line of the file
    store_problem, rows = _sample_leads(loaded, db, config) if db else (None, [])
    # Custom attributes are data: with leads to look at, their figures replace the guesses.
    problems = (
        check_config(loaded, check_attributes=not rows)
        + unset_problems(loaded.config)
        + storage_problems(loaded)
    )
    stats = []
    if rows:
        found, stats = check_against_leads(loaded, rows)
        problems += found
    failed = bool(store_problem) or any(p.level == "error" for p in problems)
    if as_json:
        _print_check_json(loaded, problems, store_problem, len(rows) if db else None, stats)
        raise typer.Exit(2 if failed else 0)
    _print_check(loaded, problems, store_problem, len(rows), stats)
    if failed:
        raise typer.Exit(2)


def _sample_leads(
    loaded: LoadedConfig, db: str, config: str
) -> tuple[str | None, list[dict[str, Any]]]:
    """A problem with the database (None: none), and a sample of its lead rows."""
    from .storecheck import SAMPLE_ROWS

    try:
        store = _store(loaded, db, config, migrate=False, readonly=True)
        try:
            problem = store.quick_check()  # a file corrupted in the middle
            if problem is not None:
                return problem, []
            store.lead_columns()
            return None, store.sample_leads(SAMPLE_ROWS)
        finally:
            store.close()
    except errors.StoreConfigError as exc:
        return str(exc), []


def _print_check_json(
    loaded: LoadedConfig,
    problems: list[Problem],
    store_problem: str | None,
    sampled: int | None,
    stats: list[TemplateStats],
) -> None:
    errors_ = [p for p in problems if p.level == "error"]
    _print_json(
        {
            "ok": not errors_ and not store_problem,
            "store": store_problem,
            "sampled_leads": sampled,
            "templates": [t.as_dict() for t in stats],
            "problems": [
                {
                    "line": p.line,
                    "where": p.where,
                    "what": p.what,
                    "level": p.level,
                    "text": p.format(loaded.path),
                }
                for p in problems
            ],
        }
    )


def _print_check(
    loaded: LoadedConfig,
    problems: list[Problem],
    store_problem: str | None,
    sampled: int,
    stats: list[TemplateStats],
) -> None:
    """The problems (errors first) on stderr, each template's figures, and the verdict."""
    errors_ = [p for p in problems if p.level == "error"]
    warnings = [p for p in problems if p.level == "warning"]
    for p in errors_ + warnings:
        err.print(p.format(loaded.path), markup=False)
    if store_problem:
        err.print(store_problem)
    cfg = loaded.config
    limit = cfg.channel.max_text_bytes
    for t in stats:  # what each template does with the store's leads
        out.print(
            f"{t.name}: {t.eligible} eligible of {sampled} sampled leads; longest "
            f"{t.longest} bytes"
            + (f" (lead {t.longest_lead})" if t.longest_lead else "")
            + (f"; {t.too_long} over {limit}" if limit else "; no channel limit"),
            markup=False,
        )
    if errors_ or store_problem:
        n = len(errors_) + bool(store_problem)
        err.print(f"{loaded.path}: {n} error(s); nothing was changed")
        return
    n_msgs = sum(len(s.messages) for s in cfg.sequences)
    out.print(
        f"{loaded.path}: OK ({len(cfg.sequences)} sequences, {n_msgs} messages, "
        f"{len(cfg.accounts)} accounts, channel {cfg.channel.type}"
        f"{', ' + str(len(warnings)) + ' warning(s)' if warnings else ''})"
    )


@sequences_app.command("show")
def sequences_show(
    config: ConfigOpt = "sequences.yaml", db: UnusedDbOpt = None, as_json: JsonOpt = False
) -> None:
    """Show sequences, triggers and steps as a tree."""
    from .rules import describe_conditions

    loaded = load_config(config)
    cfg = loaded.config
    if as_json:
        _print_json(cfg.model_dump(mode="json"))
        return
    window = cfg.channel.window_hours
    tree = Tree(
        f"[bold]{loaded.path}[/bold] — channel {cfg.channel.type}"
        f"{f', window {window:g}h' if window else ', no window'}, "
        f"{cfg.channel.messages_per_hour}/h"
        f"{f', {cfg.channel.messages_per_day}/day' if cfg.channel.messages_per_day else ''}"
        " per account"
    )
    for seq in cfg.sequences_by_priority():
        state = "" if seq.active else " [red](inactive)[/red]"
        node = tree.add(
            f"[bold]{seq.id}[/bold] {seq.name or ''} — priority {seq.priority}, max {seq.limit}"
            f"{f', holdout {seq.holdout:.0%}' if seq.holdout else ''}{state}"
        )
        trig = node.add("trigger (all of)")
        for line in describe_conditions(seq.trigger) or ["always"]:
            trig.add(line)
        steps = node.add("messages")
        for i, m in enumerate(seq.messages, 1):
            late = (
                " [yellow]⚠ outside window[/yellow]" if window and m.delay_hours >= window else ""
            )
            off = " [red](inactive)[/red]" if not m.active else ""
            step = steps.add(f"{i}. {m.id} — +{m.delay_hours:g}h {m.type}{off}{late}")
            if m.media_url:
                step.add(f"media: {m.media_url}")
            if m.variants:
                total = sum(v.weight for v in m.variants)
                for v in m.variants:
                    step.add(
                        f"variant {v.id} ({v.weight / total:.0%}): "
                        f"{_one_line(v.template or m.template)}"
                    )
            elif m.template:
                step.add(_one_line(m.template))
    out.print(tree)


# ---------------------------------------------------------------- misc


@app.command()
def migrate(
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the pending migrations; change nothing.")
    ] = False,
    check: Annotated[
        bool,
        typer.Option("--check", help="As --dry-run, and exit 3 when some are pending."),
    ] = False,
) -> None:
    """Create or upgrade the tool's own tables, beside the lead table. The one command that
    changes the schema (a run does too, when its role may): run it as the tables' owner,
    a role with CREATE on the schema (SQLite: a user who may write the file)."""
    from .store.access import MIGRATE, READ, access_of

    loaded = _load_optional(config)
    if dry_run or check:
        store = _store(loaded, db, config, need=READ)
        try:
            pending = access_of(store).pending
        finally:
            store.close()
        out.print(f"pending: {', '.join(pending)}" if pending else "up to date")
        raise typer.Exit(errors.EXIT_SEND_FAILURES if check and pending else 0)
    store = _store(loaded, db, config, need=MIGRATE)
    try:  # nothing pending: nothing to create, whatever the role may
        applied = store.migrate() if access_of(store).pending else []
    finally:
        store.close()
    out.print(f"applied: {', '.join(applied)}" if applied else "up to date")


@app.command()
def keygen() -> None:
    """Print a new key for FOLLOWUP_ENCRYPTION_KEY: message texts, recipient and
    conversation ids and error texts are then stored encrypted. Several keys, comma-separated:
    all read, the first writes (`followup keys rotate` moves everything to it)."""
    from .crypto import new_key

    out.print(new_key())


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to put the demo's config and database.")
    ] = Path("followup-demo"),
    leads: Annotated[int, typer.Option("--leads", min=10, max=100_000)] = 200,
    days: Annotated[int, typer.Option("--days", min=1, max=30)] = 3,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print each message.")] = False,
) -> None:
    """Seed a local SQLite store with realistic leads; run a full cycle on the console channel."""
    from .demo import run_demo

    run_demo(directory, n_leads=leads, days=days, out=out, quiet=quiet)


# ------------------------------------------------------------------- handoff
