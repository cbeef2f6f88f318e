"""The store's named queries: every block of store/queries.sql loads by name for both
dialects, ships in the wheel, and takes only SQL the tool wrote into its text."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from followup_cli.store import queries
from followup_cli.store.queries import DIALECTS, Sql, ident, q

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_queries__every_named_query_loads_for_both_dialects(dialect):
    assert queries.names(dialect)
    for name in queries.names(dialect):
        fill = {p: ident("x") for p in queries.parts(name, dialect)}
        sql = q(name, dialect, **fill)
        assert isinstance(sql, Sql) and sql.strip()
        assert "{" not in sql.replace("{x}", "")  # every part filled


def test_queries__a_dialect_block_overrides_the_plain_one():
    blocks = queries.parse("-- name: a\nSELECT 1\n-- name: a@postgres\nSELECT 2;\n")
    assert blocks == {"a": "SELECT 1", "a@postgres": "SELECT 2"}


def test_queries__a_name_defined_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        queries.parse("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")


def test_queries__only_sql_the_tool_wrote_goes_into_a_query():
    name = next(n for n in queries.names("sqlite") if queries.parts(n, "sqlite"))
    fill = {p: "x'; DROP TABLE leads; --" for p in queries.parts(name, "sqlite")}
    with pytest.raises(TypeError, match="bind values"):
        q(name, "sqlite", **fill)  # a plain str: refused
    with pytest.raises(KeyError):
        q(name, "sqlite")  # a part left unfilled


@pytest.mark.parametrize(
    "name, quoted",
    [("leads", '"leads"'), ("crm.leads", '"crm"."leads"'), ("l.id", '"l"."id"')],
)
def test_queries__identifiers_are_quoted_part_by_part(name, quoted):
    assert ident(name) == quoted


@pytest.mark.parametrize("bad", ['le"ads', "leads; DROP", "", "a..b", "1x"])
def test_queries__a_name_that_is_not_a_plain_identifier_is_refused(bad):
    with pytest.raises(ValueError):
        ident(bad)


def test_queries__the_sql_file_is_package_data():
    """``pip install .`` (not editable) ships store/queries.sql with the package."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["followup_cli"]
    assert any(fnmatch("store/queries.sql", g) for g in globs)
    assert (ROOT / "src" / "followup_cli" / "store" / "queries.sql").is_file()


@pytest.mark.parametrize("name", ["window_count", "window_count_capped", "window_oldest"])
def test_queries__the_rate_window_counts_the_statuses_that_count(name):
    """The window's status list is written out in queries.sql: it is models.COUNTED."""
    import re

    from followup_cli.models import COUNTED

    (listed,) = re.findall(r"status IN \(([^)]*)\)", queries.text(name))
    assert [s.strip().strip("'") for s in listed.split(",")] == list(COUNTED)
