"""The store's SQL, by name: ``queries.sql`` holds every query of the store's modules in
``-- name: <query>`` blocks (procrastinate's ``sql/queries.sql``), read once and looked up
by name (``q``).

A block named ``<query>@sqlite`` or ``<query>@postgres`` is that dialect's version of
``<query>``; ``q(name, dialect)`` takes it when there is one, else the plain block.

Values are always bound parameters (``:name``). The only text put into a query is SQL the
tool itself wrote, marked by the type ``Sql``: a quoted identifier (``ident``: the lead
table's name, a column the tool chose), another named block, or a fragment the dialect
seam builds from those (``SqlStore._in_list``). A ``{part}`` in a block is filled with
such text; anything else is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

QUERIES_FILE = "queries.sql"
DIALECTS = ("sqlite", "postgres")

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)(?:@(sqlite|postgres))?\s*$")
_PART = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Sql(str):
    """SQL text the tool wrote (a named query, a quoted identifier, a fragment of those):
    the only text ``q`` puts into a query. Never built from a value."""


EMPTY = Sql("")
NULL = Sql("NULL")
ALWAYS = Sql("1 = 1")


@lru_cache(maxsize=1024)
def ident(name: str) -> Sql:
    """An identifier (``table``, ``schema.table``, ``l.column``), each part double-quoted.

    For names the tool controls or the configured lead table (``settings.lead_table``,
    validated as letters, digits and ``_``); a part that is not such a name is refused
    rather than quoted."""
    parts = str(name).split(".")
    if not all(_IDENT.match(p) for p in parts):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return Sql(".".join('"' + p + '"' for p in parts))


def join(parts: list[Sql] | tuple[Sql, ...], sep: str = ", ") -> Sql:
    """SQL fragments joined (``sep`` is the tool's own text: ``", "``, ``" AND "``)."""
    for p in parts:
        _check(p)
    return Sql(sep.join(parts))


def equals(columns: list[str] | tuple[str, ...], prefix: str = "", sep: str = ", ") -> Sql:
    """``"column" = :<prefix>column`` for each of the tool's ``columns``, joined by ``sep``
    (a SET list, or a row's values matched with ``" AND "``)."""
    return Sql(sep.join(f"{ident(c)} = :{prefix}{c}" for c in columns))


_OPS = ("=", "<>", "<", "<=", ">", ">=")


def compare(column: str, op: str, param: str) -> Sql:
    """``"column" <op> :param``: one condition on one of the tool's columns."""
    if op not in _OPS or not _IDENT.match(param):
        raise ValueError(f"not a comparison: {column} {op} :{param}")
    return Sql(f"{ident(column)} {op} :{param}")


def all_of(conditions: list[Sql] | tuple[Sql, ...]) -> Sql:
    """The conditions joined by AND (``1 = 1`` when there are none): a ``{where}`` part."""
    return join(list(conditions), " AND ") if conditions else ALWAYS


def value_rows(count: int, numbered: tuple[str, ...], shared: tuple[str, ...] = ()) -> Sql:
    """``(:a0, :b0, :s), (:a1, :b1, :s), ...``: the placeholders of a multi-row VALUES list
    (``numbered`` parameters per row, then the ``shared`` ones)."""
    names = [*numbered, *shared]
    if not all(_IDENT.match(n) for n in names):
        raise ValueError(f"not parameter names: {names}")
    return Sql(
        ", ".join(
            "(" + ", ".join([*(f":{n}{i}" for n in numbered), *(f":{n}" for n in shared)]) + ")"
            for i in range(count)
        )
    )


def in_list(column: str, values: Sequence[Any], param: str) -> tuple[Sql, dict[str, Any]]:
    """``"column" IN (:<param>0, :<param>1, ...)`` and its parameters."""
    if not _IDENT.match(param):
        raise ValueError(f"not a parameter name: {param!r}")
    names = {f"{param}{i}": v for i, v in enumerate(values)}
    return Sql(f"{ident(column)} IN ({', '.join(':' + k for k in names)})"), names


def placeholders(params: dict[str, object] | list[str]) -> Sql:
    """``:a, :b, ...``: the placeholders of these parameter names (an IN list's)."""
    names = list(params)
    if not all(_IDENT.match(n) for n in names):
        raise ValueError(f"not parameter names: {names}")
    return Sql(", ".join(":" + n for n in names))


def columns(names: list[str] | tuple[str, ...]) -> Sql:
    """A column list of the tool's own column names, quoted."""
    return Sql(", ".join(ident(c) for c in names))


_TYPE = re.compile(r"^[A-Z]+( [A-Z]+)*$")


def definitions(pairs: Sequence[tuple[str, str]]) -> Sql:
    """``name TYPE,\n  name TYPE ...``: a CREATE TABLE's column definitions, from the
    tool's own column names and SQL types (``leadcolumns.COLUMNS``); anything else is
    refused."""
    for name, kind in pairs:
        if not _IDENT.match(name) or not _TYPE.match(kind):
            raise ValueError(f"not a column definition: {name!r} {kind!r}")
    return Sql(",\n  ".join(f"{name} {kind}" for name, kind in pairs))


@lru_cache(maxsize=1)
def load() -> dict[str, str]:
    """Every block of ``queries.sql`` by name (``name`` or ``name@dialect``); parsed once."""
    text = resources.files(__package__).joinpath(QUERIES_FILE).read_text(encoding="utf-8")
    return parse(text)


def parse(text: str) -> dict[str, str]:
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        m = _NAME.match(line)
        if m:
            key = m[1] + (f"@{m[2]}" if m[2] else "")
            if key in blocks:
                raise ValueError(f"{QUERIES_FILE}: query {key!r} defined twice")
            current = blocks[key] = []
        elif current is not None and not line.lstrip().startswith("--"):
            current.append(line)
    out = {k: "\n".join(v).strip().rstrip(";").strip() for k, v in blocks.items()}
    empty = [k for k, v in out.items() if not v]
    if empty:
        raise ValueError(f"{QUERIES_FILE}: empty query {empty[0]!r}")
    return out


def names(dialect: str = "") -> list[str]:
    """The queries' names (without their dialect): every one, or those ``dialect`` has."""
    return sorted(
        {k.split("@")[0] for k in load() if not dialect or k.partition("@")[2] in ("", dialect)}
    )


def has_query(name: str, dialect: str = "") -> bool:
    """Whether ``queries.sql`` has ``name`` for ``dialect`` (its own block or the plain one)."""
    blocks = load()
    return name in blocks or f"{name}@{dialect}" in blocks


def text(name: str, dialect: str = "") -> str:
    """The raw block (``{part}`` unfilled): the dialect's own, else the plain one."""
    blocks = load()
    found = blocks.get(f"{name}@{dialect}") if dialect else None
    if found is None:
        found = blocks.get(name)
    if found is None:
        raise KeyError(
            f"no query {name!r} in {QUERIES_FILE}" + (f" for {dialect}" if dialect else "")
        )
    return found


def parts(name: str, dialect: str = "") -> list[str]:
    """The ``{part}`` names a block takes."""
    return sorted(set(_PART.findall(text(name, dialect))))


def q(name: str, dialect: str = "", **fill: Sql) -> Sql:
    """The named query for ``dialect``, its ``{part}``s filled with ``fill`` (``Sql`` only:
    identifiers from ``ident``, other blocks from ``q``, the seam's fragments)."""
    pieces, wanted = _template(name, dialect)
    if wanted != fill.keys():
        missing, extra = sorted(wanted - fill.keys()), sorted(fill.keys() - wanted)
        raise KeyError(f"query {name!r}: parts missing {missing}, unexpected {extra}")
    if not fill:
        return pieces[0]
    for v in fill.values():
        _check(v)
    # pieces alternate: text, part name, text, ..., text
    return Sql("".join(fill[p] if i % 2 else p for i, p in enumerate(pieces)))


@lru_cache(maxsize=1024)
def _template(name: str, dialect: str) -> tuple[tuple[Sql, ...], frozenset[str]]:
    """A block split at its parts (parsed once): text, part, text, ..., text."""
    pieces = tuple(Sql(p) for p in _PART.split(text(name, dialect)))
    return pieces, frozenset(pieces[1::2])


def _check(value: object) -> None:
    if not isinstance(value, Sql):
        raise TypeError(
            f"only SQL the tool wrote goes into a query's text (ident(), q()), not {value!r}; "
            "bind values as :parameters"
        )
