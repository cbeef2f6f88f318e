"""The install files work as shipped: crontab.example runs under Debian's /bin/sh with a bare
cron environment and its tokens from an env file; the systemd units pass `systemd-analyze
verify` and name the zone of sequences.yaml's schedule."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import LeadDB, base_config, write_config

ROOT = Path(__file__).resolve().parents[2]
CRONTAB = ROOT / "crontab.example"
SERVICE = ROOT / "contrib" / "followup.service"
TIMER = ROOT / "contrib" / "followup.timer"
ENV_EXAMPLE = ROOT / "contrib" / "followup.env.example"


def crontab_parts() -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    jobs: list[str] = []
    for line in CRONTAB.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", line)
        if m:
            env[m[1]] = m[2]
        else:
            jobs.append(line)
    return env, jobs


def test_crontab__no_cron_tz_no_tokens_one_frequent_tick_on_schedule():
    env, jobs = crontab_parts()
    assert "CRON_TZ" not in env and "TZ" not in env  # Debian's cron ignores CRON_TZ
    assert not any("TOKEN" in k for k in env)
    assert "TOKEN" not in "\n".join(jobs)
    assert len(jobs) == 1
    fields = jobs[0].split(None, 5)
    assert fields[:5] == ["*/5", "*", "*", "*", "*"]
    assert "--on-schedule" in fields[5]
    assert "%" not in fields[5]  # cron turns % into a newline


def test_crontab__the_job_line_runs_under_dash_with_a_bare_cron_environment(tmp_path):
    """Run the job's command exactly as cron would (``/bin/sh -c``, only the crontab's
    variables), with the env file and log paths pointed at the test's directory."""
    sh = Path("/bin/sh")
    if not sh.exists():
        pytest.skip("no /bin/sh")
    env, jobs = crontab_parts()
    db = LeadDB.sqlite(tmp_path)
    cfg = write_config(tmp_path / "sequences.yaml", base_config())
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "followup"  # the venv's console script, as /opt/followup/.venv/bin has it
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m followup_cli "$@"\n')
    shim.chmod(0o755)
    envfile = tmp_path / "followup.env"
    envfile.write_text(
        ENV_EXAMPLE.read_text()
        .replace("/opt/followup/sequences.yaml", str(cfg))
        .replace("/opt/followup/followup.db", db.url)
    )
    command = (
        jobs[0]
        .split(None, 5)[5]
        .replace("/etc/followup/followup.env", str(envfile))
        .replace("/var/log/followup/run.log", str(tmp_path / "run.log"))
        .replace("/var/lib/prometheus/node-exporter/followup.prom", str(tmp_path / "f.prom"))
    )
    cron_env = {
        "SHELL": env["SHELL"],
        "PATH": f"{bindir}:{env['PATH']}",
        "HOME": str(tmp_path),
        "LOGNAME": "followup",
    }
    first = subprocess.run(
        [env["SHELL"], "-c", command], env=cron_env, capture_output=True, text=True, timeout=120
    )
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    assert (tmp_path / "f.prom").exists() and "run=" in (tmp_path / "run.log").read_text()
    conn = sqlite3.connect(db.url)
    rows = conn.execute("SELECT exit_code, slot FROM followup_runs").fetchall()
    conn.close()
    assert len(rows) == 1 and rows[0][0] == 0 and rows[0][1].endswith("Europe/Madrid")
    # The next tick finds the slot taken: nothing more.
    second = subprocess.run(
        [env["SHELL"], "-c", command], env=cron_env, capture_output=True, text=True, timeout=120
    )
    assert (second.returncode, second.stdout, second.stderr) == (0, "", "")
    conn = sqlite3.connect(db.url)
    assert conn.execute("SELECT COUNT(*) FROM followup_runs").fetchone()[0] == 1
    conn.close()


def test_systemd_units__verify_clean(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here (install systemd to run this check)")
    for unit in (SERVICE, TIMER):
        text = unit.read_text()
        if unit is SERVICE:  # verify checks that ExecStart's program exists and is executable
            exe = Path(sys.executable).parent / "followup"
            if not exe.exists():
                pytest.skip(f"{exe} is not installed (pip install -e .)")
            text = text.replace("/opt/followup/.venv/bin/followup", str(exe))
        (tmp_path / unit.name).write_text(text)
    r = subprocess.run(
        [tool, "verify", str(tmp_path / "followup.timer"), str(tmp_path / "followup.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [x for x in (r.stdout + r.stderr).splitlines() if "followup." in x]
    assert r.returncode == 0 and ours == [], r.stdout + r.stderr


def test_systemd_timer__persistent_and_in_step_with_the_schedule_of_sequences_yaml():
    from followup_cli.config import Settings
    from followup_cli.schedule import on_calendar

    timer = TIMER.read_text()
    service = SERVICE.read_text()
    settings = yaml.safe_load((ROOT / "sequences.yaml").read_text())["settings"]
    expected = on_calendar(
        Settings(timezone=settings["timezone"], run_times=tuple(settings["run_times"]))
    )
    assert [x for x in timer.splitlines() if x.startswith("OnCalendar=")] == expected.splitlines()
    assert "Persistent=true" in timer
    assert "EnvironmentFile=/etc/followup/followup.env" in service
    assert "--on-schedule" in service
    for option in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
    ):
        assert option in service
    assert "TOKEN" not in service
    tool = shutil.which("systemd-analyze")
    if tool:
        for line in expected.splitlines():
            spec = line.split("=", 1)[1]
            r = subprocess.run([tool, "calendar", spec], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
