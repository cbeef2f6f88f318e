"""``followup audit``: the audit log (``audit [LEAD]``, the same as ``audit show [LEAD]``)
and ``audit verify``, which proves the log was not changed (``auditchain``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from . import errors
from .auditverify import verify
from .cli_common import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    _fmt,
    _load_optional,
    _print_json,
    _store,
    app,
    out,
)
from .store.access import READ, reading

if TYPE_CHECKING:
    import click  # Typer carries its own copy; this one only names the type

SHOWN = 50  # problems printed as text; --json has them all


class _ShowByDefault(TyperGroup):
    """``followup audit [LEAD] [options]`` keeps working: anything that is not a
    subcommand (or --help) goes to ``show``. A lead named like a subcommand: ``audit show
    verify``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["show", *args]
        return super().parse_args(ctx, args)


audit_app = typer.Typer(
    cls=_ShowByDefault,
    help="The audit log, and proof that it was not changed. `followup audit [LEAD]` is "
    "`followup audit show [LEAD]`.",
)
app.add_typer(audit_app, name="audit")


@audit_app.command("show")
def audit_show(
    lead: Annotated[str | None, typer.Argument(help="Only this lead.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N entries.")] = 50,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log: every send, skip, opt-out, erasure and config change, with who.

    Who is the OS account of the process's real uid (under sudo, the caller sudo names,
    marked unverified); on Postgres each row also records the database role (--json)."""
    loaded = _load_optional(config)
    store = _store(loaded, db, config, need=READ)
    try:
        with reading(store):
            rows = store.audit_log(lead, limit)
    finally:
        store.close()
    if as_json:
        _print_json([_jsonable(r) for r in rows])
        return
    if not rows:
        out.print("no audit entries")
    for r in reversed(rows):
        step = (
            f"{r['sequence_id']}/{r['message_id']}"
            if r.get("message_id")
            else (r.get("sequence_id") or "")
        )
        out.print(
            f"{_fmt(r['at'])}  {r['action']:<16} {r['actor'] or '-':<10} "
            f"{r.get('lead_id') or '-':<12} "
            f"{step:<20} {r.get('detail') or ''}",
            markup=False,
        )


@audit_app.command("verify")
def audit_verify(
    head: Annotated[
        list[str] | None,
        typer.Option(
            "--head",
            help="A head hash noted earlier: it must still be in a chain (repeat it for the "
            "heads of several chains).",
        ),
    ] = None,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Prove the audit log was not changed: exit 0 when intact, 3 when not.

    Walks the hash chains (the main one, and one per account the runs write to) and names
    the rows changed, deleted (in the middle or at the end) or added by hand; details
    removed by an erasure are counted, not reported. Keep the heads it prints somewhere
    else and pass them back with --head later."""
    loaded = _load_optional(config)
    store = _store(loaded, db, config, need=READ)
    try:
        with reading(store):
            report = verify(store, head)
    finally:
        store.close()
    code = 0 if report.intact else errors.EXIT_SEND_FAILURES
    if as_json:
        _print_json(report.as_dict())
        raise typer.Exit(code)
    erased = f", {report.scrubbed} with details removed by erasure" if report.scrubbed else ""
    if report.intact:
        out.print(f"audit log intact: {report.rows} row(s){erased}", markup=False)
    else:
        out.print(
            f"audit log BROKEN: {len(report.problems) or 1} problem(s) in {report.rows} row(s)",
            markup=False,
        )
        for p in report.problems[:SHOWN]:
            out.print(f"  {p.kind}: {p.message}", markup=False)
        if len(report.problems) > SHOWN:
            out.print(f"  ... {len(report.problems) - SHOWN} more (--json lists all)", markup=False)
    for anchor, was_found in report.anchors.items():
        found = "found" if was_found else "NOT found: the rows up to it were rewritten"
        out.print(f"--head {anchor}: {found}", markup=False)
    out.print(f"head: {report.head_seq} {report.head_hash}", markup=False)
    for chain, (_, seq, row_hash) in report.chains.items():
        out.print(f"head of {chain}: {seq} {row_hash}", markup=False)
    raise typer.Exit(code)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
