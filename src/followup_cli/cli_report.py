"""The numbers: ``report``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .cli_common import (
    AccountOpt,
    ConfigOpt,
    DbOpt,
    NowOpt,
    _load,
    _print_json,
    _store,
    _when,
    app,
    err,
    out,
)
from .redact import redact_obj

# ------------------------------------------------------- report, events, leads (outcomes)


@app.command("report")
def report_command(
    date_: Annotated[
        str | None, typer.Option("--date", help="One day, YYYY-MM-DD (settings.timezone).")
    ] = None,
    days: Annotated[
        int | None, typer.Option("--days", min=1, help="The N days ending today (default 7).")
    ] = None,
    account: AccountOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json, csv or html.")] = "table",
    now: NowOpt = None,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (html: required).")
    ] = None,
    section: Annotated[
        str | None,
        typer.Option("--section", help="csv: one tidy table (summary, per_day, ab_tests, ...)."),
    ] = None,
) -> None:
    """KPIs: sent, response and conversion rates, messages, progression, hours, A/B, lift."""
    from .outcomes import reconcile
    from .report import build_report, tables, to_csv
    from .report_formats import check_format_options, write_output
    from .store.access import REPORT, access_of, reading

    check_format_options(fmt, output, section)
    loaded = _load(config, strict=False)
    when = _when(now)
    store = _store(loaded, db, config, need=REPORT)
    try:
        with reading(store):
            if access_of(store).may_write:  # a read-only role sees them as of the last run
                reconcile(store, loaded.config, when)
            # every format prints from this: texts stored before redaction existed stay hidden
            data = redact_obj(
                build_report(store, loaded.config, when, on=date_, days=days, account=account)
            )
    finally:
        store.close()
    if fmt in ("html", "csv") and (output or section):
        write_output(data, fmt, output, section, sys.stdout, err)
    elif fmt == "json":
        _print_json(data)
    elif fmt == "csv":
        sys.stdout.write(to_csv(data))
    else:
        for part in tables(data):
            out.print(part)
