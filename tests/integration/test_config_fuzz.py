"""Property: whatever one edit does to the repository's sequences.yaml, `sequences check`
either passes and a run (dry) then works on a small real store, or exits 2 naming the
file and line. Never exit 1, never a traceback, never a run that dies at 9:00."""

from __future__ import annotations

import contextlib
import copy
import io
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followup_cli.cli import main
from tests.helpers import LeadDB, lead

ROOT = Path(__file__).resolve().parents[2]
REPO = yaml.safe_load((ROOT / "sequences.yaml").read_text())
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))


def _paths(node: Any, loc: tuple = ()) -> list[tuple]:
    out = [loc] if loc else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, loc + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, loc + (i,))
    return out


PATHS = _paths(REPO)
SPECIAL = [
    "graph.instagram.com",
    "ftp://graph.instagram.com",
    "http://graph.instagram.com",
    "https://",
    "   ",
    "{{ lead.frist_name }}",
    "{{ lead.attributes.product }}",
    "{{ lead.attributes.product | default('our product') }}",
    "{{",
    "{{ 'a' * 10**9 }}",
    "{{ lead.first_name * 100000000 }}",
    "{{ lead }}",
    "{{ '%s'|format(lead) }}",
    "{% for i in range(10**9) %}x{% endfor %}",
    "{{ 'x' * 999 }}{{ lead.first_name }}",
    "six",
    "Mars/Base",
    "25:00",
    "v21",
    "between",
    "attributes.",
    "\x00",
    "é" * 600,
]
HOSTILE = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.sampled_from(SPECIAL),
    st.lists(st.one_of(st.integers(-10, 10), st.text(max_size=3)), max_size=3),
    st.just({}),
)


EXTREME_NUMBERS = st.one_of(
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 0, -1, 10**8, 10**20, 1e-9, 8761]),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _leaf(value: Any) -> bool:
    return not isinstance(value, dict | list)


@st.composite
def one_edit(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    data = copy.deepcopy(REPO)
    path = draw(st.sampled_from(PATHS))
    parent: Any = data
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    old = parent[key]
    kind = draw(st.sampled_from(["like", "like", "like", "any", "delete", "rename"]))
    if kind == "delete":
        del parent[key]
    elif kind == "rename" and isinstance(parent, dict):
        parent[f"{key}x"] = parent.pop(key)
    elif (
        kind == "like" and _leaf(old) and isinstance(old, int | float) and not isinstance(old, bool)
    ):
        parent[key] = draw(EXTREME_NUMBERS)  # a number where a number was: its range
    elif kind == "like" and isinstance(old, list) and old and not isinstance(old[0], dict):
        parent[key] = draw(
            st.lists(st.one_of(EXTREME_NUMBERS, st.sampled_from(SPECIAL)), max_size=3)
        )
    else:
        parent[key] = draw(HOSTILE)
    return f"{kind} {path}", data


def cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
    return code, out.getvalue() + err.getvalue()


@pytest.fixture
def store(db: LeadDB) -> LeadDB:
    t = NOW - timedelta(hours=6)
    for acct in ("acct_shop", "acct_studio"):
        db.insert(
            lead(
                f"{acct}_1",
                account_id=acct,
                last_inbound_at=t,
                last_outbound_at=t + timedelta(hours=1),
            ),
            lead(
                f"{acct}_2",
                account_id=acct,
                score=2,
                first_name=None,
                attributes={"interest": "demo", "product": "the studio plan"},
                last_inbound_at=t - timedelta(hours=2),  # nudge-1 is due 6 h into the silence
                last_outbound_at=t - timedelta(hours=1),
            ),
        )
    return db


def test_the_repository_file_checks_and_runs(store: LeadDB, tmp_path: Path) -> None:
    path = tmp_path / "sequences.yaml"
    path.write_text((ROOT / "sequences.yaml").read_text())
    assert cli("sequences", "check", "--config", str(path)) == (
        0,
        cli("sequences", "check", "--config", str(path))[1],
    )
    code, output = cli(
        "run", "--dry-run", "--config", str(path), "--db", store.url, "--now", NOW.isoformat()
    )
    assert code == 0, output
    assert "acct_shop_1" in output and "acct_studio_2" in output, output


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edit=one_edit())
def test_one_edit__check_passes_and_run_works_or_exit_2_names_the_line(
    store: LeadDB, tmp_path: Path, edit: tuple[str, dict[str, Any]]
) -> None:
    what, data = edit
    path = tmp_path / "sequences.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    code, output = cli("sequences", "check", "--config", str(path))
    assert code in (0, 2), f"{what}: exit {code}: {output}"
    assert "Traceback" not in output and "unexpected error" not in output, output
    if code == 2:
        assert re.search(rf"{re.escape(str(path))}:\d+: ", output), (
            f"{what}: no file:line in {output}"
        )
        return
    code, output = cli(
        "run", "--dry-run", "--config", str(path), "--db", store.url, "--now", NOW.isoformat()
    )
    assert code == 0, f"{what}: check passed, then the dry run exited {code}: {output}"
    assert "Traceback" not in output and "unexpected error" not in output, output
