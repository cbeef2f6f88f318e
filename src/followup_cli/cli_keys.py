"""``followup keys``: the encryption keys of FOLLOWUP_ENCRYPTION_KEY and the rows they
sealed: ``keys status`` (which key ids are at hand, which wrote rows) and ``keys rotate``
(re-encrypt everything with the first key)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from . import errors
from .cli_common import (
    ConfigOpt,
    DbOpt,
    JsonOpt,
    _load_optional,
    _print_json,
    _store,
    app,
    err,
    out,
)
from .crypto import KEY_ENV
from .store.access import READ, WRITE

if TYPE_CHECKING:
    from .store.sealing import RotateResult

keys_app = typer.Typer(
    help=f"Encryption keys ({KEY_ENV}): status, and rotate to a new key.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


@keys_app.command("status")
def keys_status(
    config: ConfigOpt = "sequences.yaml", db: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """The ids of the keys in FOLLOWUP_ENCRYPTION_KEY (the first one writes) and of the keys
    that wrote rows in the database; exit 2 when a key that wrote rows is not at hand."""
    from .store.sealing import check_keys, recorded_key_ids

    loaded = _load_optional(config)
    store = _store(loaded, db, config, need=READ)
    try:
        held = store.cipher.key_ids
        recorded = recorded_key_ids(store)
        problem = None
        try:
            check_keys(store)
        except errors.ConfigError as exc:
            problem = str(exc)
    finally:
        store.close()
    if as_json:
        _print_json({"keys": list(held), "written_with": recorded, "problem": problem})
    else:
        if not held:
            out.print(f"{KEY_ENV} is not set: message texts are not stored, ids are in clear")
        for i, kid in enumerate(held):
            role = "writes and reads" if i == 0 else "reads"
            out.print(f"key {i + 1}: id {kid} ({role})")
        out.print(
            "rows written with: " + (", ".join(recorded) if recorded else "no key"),
            markup=False,
        )
        if problem:
            err.print(f"followup: {problem}", markup=False)
    if problem:
        raise typer.Exit(errors.EXIT_USAGE)


@keys_app.command("rotate")
def keys_rotate(
    config: ConfigOpt = "sequences.yaml",
    db: DbOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count the rows that would change.")
    ] = False,
    drop_unreadable: Annotated[
        bool,
        typer.Option(
            "--drop-unreadable",
            help="A key is lost for good: remove the values no key opens (texts, ids, error "
            "texts) instead of stopping at them. Opt-outs and caps still hold (keyed hashes).",
        ),
    ] = False,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Rows per transaction.")] = 500,
    as_json: JsonOpt = False,
) -> None:
    """Re-encrypt every encrypted value with the first key of FOLLOWUP_ENCRYPTION_KEY, and
    encrypt what was stored in clear before a key was set. Put the new key first and the
    old ones after it (comma-separated); once this is done, the old keys can go. In
    batches, each its own transaction; safe beside a run; run it again after an
    interruption, it picks up what is left. Audited.

    Example: FOLLOWUP_ENCRYPTION_KEY="$NEW,$OLD" followup keys rotate --dry-run
    """
    from .store.sealing import rotate_keys

    loaded = _load_optional(config)
    store = _store(loaded, db, config, need=READ if dry_run else WRITE)
    try:
        res = rotate_keys(
            store,
            store.cipher,
            datetime.now(UTC),
            dry_run=dry_run,
            drop_unreadable=drop_unreadable,
            batch=batch,
        )
    finally:
        store.close()
    if as_json:
        _print_json(res.as_dict())
    else:
        out.print(_rotation_line(res, dry_run), markup=False)
    if res.unreadable:
        named = ", ".join(f"key id {k}: {n}" for k, n in sorted(res.unreadable.items()))
        err.print(
            f"followup: {sum(res.unreadable.values())} value(s) were written with a key "
            f"{KEY_ENV} does not hold ({named}); add it after the first key and run "
            "`followup keys rotate` again (or, if it is lost, --drop-unreadable)",
            markup=False,
        )
        raise typer.Exit(errors.EXIT_USAGE)


def _rotation_line(res: RotateResult, dry_run: bool) -> str:
    """What ``keys rotate`` did (or would do): rows per table, values re-encrypted."""
    rows = sum(res.rows.values())
    verb = "would change" if dry_run else "changed"
    per_table = ", ".join(f"{t} {n}" for t, n in sorted(res.rows.items()))
    return (
        f"key {res.key_id}: {rows} row(s) {verb}"
        + (f" ({per_table})" if per_table else "")
        + f"; {res.rotated} value(s) re-encrypted, {res.sealed} encrypted that were in clear"
        + (f", {res.dropped} unreadable removed" if res.dropped else "")
    )
