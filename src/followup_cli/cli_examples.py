"""An example in every command's ``--help``: commands whose docstring has none get one
here, as the help's closing line. A test walks the whole command tree and fails when a
command (a new one included) shows no example."""

from __future__ import annotations

import typer

EXAMPLES: dict[str, str] = {
    "": "followup demo, then: followup plan --config followup-demo/sequences.yaml --days 2",
    "run": "followup run --dry-run --now 2026-03-02T14:00:00+01:00",
    "explain": "followup explain lead_004 --now 2026-03-02T14:00:00+01:00",
    "optout": "followup optout lead_004 --reason 'asked by phone'   (or: followup optout --list)",
    "sequences": "followup sequences check --db followup.db",
    "sequences check": "followup sequences check --config sequences.yaml --db followup.db",
    "sequences show": "followup sequences show --config sequences.yaml",
    "unknown": "followup unknown list",
    "unknown list": "followup unknown list --json",
    "unknown resolve": "followup unknown resolve 42 --sent",
    "erase": "followup erase lead_004 --yes",
    "audit": "followup audit lead_004 --limit 20   (or: followup audit verify)",
    "audit show": "followup audit show lead_004 --limit 20 --json",
    "audit verify": "followup audit verify --json",
    "migrate": "followup migrate --db postgresql://admin@db.internal/crm   (or: --check)",
    "db": "followup db grants --runner followup_cron --reader followup_dash",
    "db grants": 'followup db grants --runner fu_cron --reader fu_dash | psql "$OWNER_URL"',
    "keygen": "export FOLLOWUP_ENCRYPTION_KEY=$(followup keygen)",
    "keys": 'FOLLOWUP_ENCRYPTION_KEY="$NEW,$OLD" followup keys rotate',
    "keys status": "followup keys status --db followup.db",
    "keys rotate": 'FOLLOWUP_ENCRYPTION_KEY="$NEW,$OLD" followup keys rotate --dry-run',
    "demo": "followup demo --dir followup-demo --leads 200 --days 3",
    "handoff": "followup handoff --account acct_shop --since 24",
    "leads": "followup leads --sequence warm   (set up a store: followup leads init --help)",
    "schedule": "followup schedule --now 2026-03-02T08:00:00+01:00",
    "status": "followup status --json",
    "tokens": "followup tokens check",
    "tokens check": "followup tokens check --warn-days 14",
    "tokens refresh": "followup tokens refresh acct_shop",
    "events": "followup events ingest webhook-payloads.jsonl",
    "events ingest": "followup events ingest - < events.jsonl",
    "report": (
        "followup report --days 7 --format html -o report.html   "
        "(or: --format csv --section per_day)"
    ),
}


def add_examples(app: typer.Typer, prefix: str = "") -> None:
    """Give every command of ``app`` (and its groups) without an example the one above."""
    if not prefix:
        _apply(app.info, "")
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__ if info.callback else "")
        _apply(info, f"{prefix}{name}")
    for group in app.registered_groups:
        name = group.name or ""
        sub = group.typer_instance
        if sub is None:
            continue
        _apply(sub.info, f"{prefix}{name}")
        add_examples(sub, f"{prefix}{name} ")


def _apply(info: typer.models.CommandInfo | typer.models.TyperInfo, path: str) -> None:
    doc = (getattr(info, "callback", None) and info.callback.__doc__) or ""
    help_text = info.help if isinstance(info.help, str) else ""
    if "Example" in help_text or (not help_text and "Example" in doc):
        return
    example = EXAMPLES.get(path)
    if example and not isinstance(info.epilog, str):
        info.epilog = f"Example: {example}"
