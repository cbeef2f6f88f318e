"""What every command family shares: the Typer app, the common options, the two
consoles, and one way to load a config and open a store."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from .config import LoadedConfig, load_config
from .configcheck import check_config
from .errors import ConfigError
from .models import parse_time
from .redact import redact, redact_obj
from .store import open_store, resolve_db
from .store.base import SqlStore

app = typer.Typer(
    name="followup",
    help="Automated follow-up DMs to sales leads who went silent.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[
    str,
    typer.Option("--config", envvar="FOLLOWUP_CONFIG", help="sequences.yaml to use."),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="FOLLOWUP_DB",
        help="Database: a file path, sqlite:///file.db or postgresql://… "
        "(default: followup.db beside the config).",
    ),
]
UnusedDbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="FOLLOWUP_DB",
        help="Accepted as by every command (a common option); this one reads no database.",
    ),
]
NowOpt = Annotated[
    str | None,
    typer.Option("--now", help="Pretend it is this time (ISO 8601; UTC when no offset)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
AccountOpt = Annotated[str | None, typer.Option("--account", help="Only this account id.")]
VerboseOpt = Annotated[
    int,
    typer.Option("--verbose", "-v", count=True, help="Log to stderr too (-v info, -vv debug)."),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Only errors on stderr (no warnings).")
]
LogFormatOpt = Annotated[
    str,
    typer.Option(
        "--log-format", envvar="FOLLOWUP_LOG_FORMAT", help="text, or json (one object a line)."
    ),
]
LogFileOpt = Annotated[
    str | None,
    typer.Option(
        "--log-file",
        envvar="FOLLOWUP_LOG_FILE",
        help="Append the full log here (time, level, run id, account on every line).",
    ),
]


class _Console(Console):
    """A Rich console whose every line passes the redaction step (``redact.py``) on its way
    out: whatever a command prints, a token or password it quotes is not."""

    def _render_buffer(self, buffer: Any) -> str:
        return redact(super()._render_buffer(buffer)) or ""


out = _Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = _Console(stderr=True, highlight=False, soft_wrap=True)


# ------------------------------------------------------------------- helpers


def _now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = parse_time(value)
    except ValueError:
        raise ConfigError(
            f"--now {value!r}: not an ISO 8601 time, e.g. 2026-11-28T09:00:00+01:00"
        ) from None
    if not 1900 <= when.year <= 2999:  # as a lead row's times: days around it must exist
        raise ConfigError(f"--now {value!r}: a time between the years 1900 and 2999, please")
    return when


def _when(value: str | None) -> datetime:
    """--now, else the current time."""
    return _now(value) or datetime.now(UTC)


def _load(config: str, strict: bool = True) -> LoadedConfig:
    loaded = load_config(config)
    if strict:
        problems = [p for p in check_config(loaded) if p.level == "error"]
        if len(problems) == 1:  # one line, as cron mails it
            raise ConfigError(problems[0].format(loaded.path))
        if problems:
            raise ConfigError(
                "\n".join(p.format(loaded.path) for p in problems)
                + f"\n{loaded.path}: {len(problems)} problem(s); "
                "fix them (`followup sequences check`)"
            )
    return loaded


def _store(
    loaded: LoadedConfig | None,
    db: str | None,
    config_path: str,
    migrate: bool = True,
    readonly: bool = False,
    need: str | None = None,
) -> SqlStore:
    """The store; ``need`` (READ, REPORT, WRITE, MIGRATE of ``store.access``) opens it for
    what the command needs, the role's privileges checked up front (exit 2 naming them)."""
    table = loaded.config.settings.lead_table if loaded else "leads"
    if need is not None:
        from .store.access import open_for

        return open_for(resolve_db(db, config_path), table, need)
    return open_store(resolve_db(db, config_path), table, migrate=migrate, readonly=readonly)


@contextmanager
def _opened(
    loaded: LoadedConfig | None, db: str | None, config_path: str, need: str
) -> Iterator[SqlStore]:
    """``_store(..., need=need)`` for the body of a ``with``, closed at its end."""
    store = _store(loaded, db, config_path, need=need)
    try:
        yield store
    finally:
        store.close()


def _check_account(loaded: LoadedConfig, account: str | None) -> None:
    """--account names an account of the config (exit 2 otherwise)."""
    if account is not None and loaded.config.account(account) is None:
        raise ConfigError(f"--account {account}: no such account in {loaded.path}")


def _plain(row: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A row for JSON: times as ISO 8601, without the ``drop`` columns."""
    return {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in row.items()
        if k not in drop
    }


def _fmt(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if dt else "-"


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(redact_obj(data), indent=2, default=str, sort_keys=False) + "\n")


def _print_json_listing(data: dict[str, Any], key: str, items: Iterable[Any]) -> None:
    """``_print_json(data | {key: list(items)})``, byte for byte, with ``key`` last in
    ``data`` (its value an empty list there): the items written one at a time, so that a
    run's thousands of messages are never all copied (redacted, encoded) at once."""
    head = json.dumps(redact_obj(data), indent=2, default=str, sort_keys=False)
    tail = f"{json.dumps(key)}: []\n}}"
    if not head.endswith(tail):
        raise ValueError(f"{key!r} is not the last key of the data, with an empty list")
    w = sys.stdout.write
    w(head[: -len("]\n}")])
    n = 0
    for item in items:
        text = json.dumps(redact_obj(item), indent=2, default=str, sort_keys=False)
        w(("," if n else "") + "\n    " + text.replace("\n", "\n    "))
        n += 1
    w("\n  ]\n}\n" if n else "]\n}\n")


def _has_lead_table(store: SqlStore) -> bool:
    try:
        store.lead_columns()
        return True
    except ConfigError:
        return False


def _load_optional(config: str) -> LoadedConfig | None:
    """The config when it exists (for lead_table); commands that need none still work."""
    if Path(config).exists():
        return load_config(config)
    return None


def _one_line(text: str | None, width: int = 80) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= width else t[: width - 1] + "…"


def _pending_migrations(store: SqlStore) -> bool:
    return bool(store.pending_migrations())
