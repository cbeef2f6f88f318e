"""Docs generated from the code stay true: the configuration reference matches the schema,
every schema key is described with an example, every command's --help shows an example,
and the troubleshooting page quotes messages the code really prints."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from followup_cli import docsgen
from followup_cli.cli import app
from followup_cli.cli_plan import package_version
from followup_cli.config import OPERATORS

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_current() -> None:
    current = (ROOT / docsgen.DOC_PATH).read_text(encoding="utf-8")
    assert current == docsgen.configuration_markdown(), (
        "docs/configuration.md is stale: run `python -m followup_cli.docsgen`"
    )


def test_every_schema_key_has_a_description_and_an_example() -> None:
    assert docsgen.undocumented() == []
    assert set(docsgen.OPERATOR_DOCS) == set(OPERATORS)


def test_docsgen_check_flags_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text("old\n")
    assert docsgen.main(["--check", "--out", str(stale)]) == 1
    assert docsgen.main(["--out", str(stale)]) == 0
    assert docsgen.main(["--check", "--out", str(stale)]) == 0


def _paths(cmd: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    commands = getattr(cmd, "commands", None)  # a group (Typer's own click or click)
    if isinstance(commands, dict):
        for name, sub in commands.items():
            out += _paths(sub, (*path, name))
    return out


def test_every_command_help_shows_an_example() -> None:
    runner = CliRunner()
    paths = _paths(typer.main.get_command(app))
    assert ("leads", "import") in paths and ("plan",) in paths and len(paths) > 20
    missing = []
    for path in paths:
        r = runner.invoke(app, [*path, "--help"], prog_name="followup")
        assert r.exit_code == 0, (path, r.output)
        if "Example" not in r.output:
            missing.append(" ".join(path) or "followup")
    assert missing == [], f"commands without an example in --help: {missing}"


def test_version_and_shell_completion() -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["--version"], prog_name="followup")
    assert r.exit_code == 0 and r.output.strip() == f"followup {package_version()}"
    assert re.match(r"^\d+\.\d+", package_version())
    help_text = runner.invoke(app, ["--help"], prog_name="followup").output
    assert "--install-completion" in help_text and "--show-completion" in help_text


def test_troubleshooting_quotes_messages_the_code_prints() -> None:
    page = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    for code in ("0", "2", "3", "75", "1"):
        assert re.search(rf"^### Exit {code}\b", page, re.M), f"exit {code} not covered"
    quoted = re.findall(r"^#### `(.+?)`", page, re.M)
    assert len(quoted) >= 8
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "followup_cli").rglob("*.py"))
    flat = re.sub(r'"\s*\n\s*f?"', "", source)  # implicit string concatenation joined
    for message in quoted:
        fixed = [part for part in re.split(r"\.\.\.|…", message) if part.strip()]
        for part in fixed:
            assert part in flat, f"troubleshooting quotes {part!r}, which the code no longer prints"
