"""Fixtures. Tests never touch the user's world: every test runs in a temporary directory
with the FOLLOWUP_* environment cleared. ``db`` runs a test on SQLite and on Postgres; with
CI=true a missing Postgres fails the run instead of skipping."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, pg_available


def pytest_configure(config: pytest.Config) -> None:
    """The suite starts the installed command (``python -m followup_cli``) well over a
    thousand times. Where PYTHONDONTWRITEBYTECODE is set (CI's image sets it), each of those
    compiled the package's modules from source again (~60 ms of CPU a start); the commands
    the tests start keep their bytecode in a folder of the temp dir instead (nothing is
    written in the work tree; the code that runs is the same)."""
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        cache = Path(tempfile.gettempdir()) / f"followup-tests-pycache-{os.getuid()}"
        os.environ.setdefault("PYTHONPYCACHEPREFIX", str(cache))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("FOLLOWUP_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LeadDB]:
    if request.param == "postgres":
        why = pg_available()
        if why:
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true and {why}: the Postgres half must run on CI")
            pytest.skip(why)
        store = LeadDB.postgres()
    else:
        store = LeadDB.sqlite(tmp_path)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def graph() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI(tokens={"17841000000000001": "tok-a", "17841000000000002": "tok-b"}) as fake:
        yield fake
