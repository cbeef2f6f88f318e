"""``followup db``: the database around the tool. ``db grants`` prints the SQL that gives a
runner role and a read-only reader role what they need (``grants.py``)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .cli_common import ConfigOpt, DbOpt, _load_optional, _store, app, err, out
from .errors import ConfigError
from .store.access import READ, access_of

db_app = typer.Typer(
    help="The database around the tool: the grants of least-privilege roles.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")


@db_app.command("grants")
def db_grants(
    runner: Annotated[
        str | None,
        typer.Option("--runner", help="Role of the cron job: reads and writes rows, no CREATE."),
    ] = None,
    reader: Annotated[
        str | None,
        typer.Option("--reader", help="Role of dashboards and reports: SELECT only."),
    ] = None,
    schema: Annotated[
        str | None,
        typer.Option("--schema", help="Schema of the tool's tables (default: the URL's first)."),
    ] = None,
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
) -> None:
    """Print the GRANT statements for a runner and a read-only reader role (Postgres), for
    the schema and lead table configured; pipe them to psql as the tables' owner after
    `followup migrate`. On SQLite: what file modes stand for them.

    Example: followup db grants --runner fu_cron --reader fu_dash | psql "$OWNER_URL"
    """
    from .grants import grants_sql, sqlite_line

    if not runner and not reader:
        raise ConfigError("name a role: --runner ROLE and/or --reader ROLE")
    loaded = _load_optional(config)
    store = _store(loaded, db, config, need=READ)
    try:
        if store.dialect != "postgres":
            out.print(sqlite_line(store.url), markup=False)
            return
        acc = access_of(store)
        target = schema or acc.schema
        if not target:
            raise ConfigError(f"{store.describe()}: no schema in the search_path; give --schema")
        text = grants_sql(store.conn, target, store.lead_table, runner, reader)  # type: ignore[attr-defined]
        if acc.pending:
            err.print(
                f"followup: warning: {len(acc.pending)} migration(s) pending; run `followup "
                "migrate` first, or some GRANTs name tables that do not exist yet",
                markup=False,
            )
    finally:
        store.close()
    sys.stdout.write(text)
