"""Tokens, against the loopback fake Graph API in its real wire format: `tokens check` says
per account whether the variable is set, whether the API accepts it (for which account)
and when it expires; `tokens refresh` prints the new token and writes it nowhere else;
`sequences check` warns about unset token variables of enabled accounts."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import requests

from tests.helpers import base_config as _base
from tests.helpers import followup_in_process as followup
from tests.helpers import graph_config, write_config

IG_A, IG_B = "17841000000000001", "17841000000000002"
ACCT_OFF = {
    "id": "acct_off",
    "enabled": False,
    "ig_user_id": "1",
    "token_env": "FOLLOWUP_TOKEN_OFF",
}


def two_accounts(tmp_path: Path, base_url: str) -> Path:
    path = graph_config(tmp_path / "sequences.yaml", base_url)
    import yaml

    cfg = yaml.safe_load(path.read_text())
    cfg["accounts"].append(
        {"id": "acct_b", "user_id": "u_2", "ig_user_id": IG_B, "token_env": "FOLLOWUP_TOKEN_B"}
    )
    cfg["accounts"].append(dict(ACCT_OFF))
    return write_config(path, cfg)


def tokens(cfg: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``followup tokens ARGS --config CFG`` with these environment variables."""
    return followup("tokens", *args, "--config", str(cfg), env=env)


def test_fake__token_endpoints_speak_the_documented_wire_format(graph):
    me = requests.get(
        f"{graph.base_url}/v21.0/me",
        params={"fields": "user_id,username"},
        headers={"Authorization": "Bearer tok-a"},
        timeout=5,
    ).json()
    assert me["user_id"] == IG_A and me["id"] == IG_A and "username" in me
    debug = requests.get(
        f"{graph.base_url}/v21.0/debug_token",
        params={"input_token": "tok-b", "access_token": "tok-a"},
        timeout=5,
    ).json()["data"]
    assert debug["is_valid"] is True and debug["user_id"] == IG_B
    assert debug["expires_at"] > time.time() + 59 * 86_400
    r = requests.get(
        f"{graph.base_url}/refresh_access_token",
        params={"grant_type": "ig_refresh_token", "access_token": "tok-a"},
        timeout=5,
    )
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 5_183_944
    bad = requests.get(
        f"{graph.base_url}/v21.0/me", headers={"Authorization": "Bearer nope"}, timeout=5
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 190


def test_tokens_check__set_accepted_expiry_and_unset(tmp_path, graph):
    cfg = two_accounts(tmp_path, graph.base_url)
    r = tokens(cfg, "check", "--json", FOLLOWUP_TOKEN_A="tok-a")
    assert r.returncode == 2
    data = {a["account_id"]: a for a in json.loads(r.stdout)["accounts"]}
    a, b, off = data["acct_a"], data["acct_b"], data["acct_off"]
    assert (a["is_set"], a["accepted"], a["user_id"], a["problem"]) == (True, True, IG_A, None)
    assert 59 < a["days_left"] <= 60
    assert (b["is_set"], b["accepted"]) == (False, None)
    assert "FOLLOWUP_TOKEN_B is not set" in b["problem"]
    assert off["enabled"] is False  # a disabled account does not fail the check
    assert "tok-a" not in r.stdout + r.stderr
    ok = tokens(cfg, "check", "--account", "acct_a", FOLLOWUP_TOKEN_A="tok-a")
    assert ok.returncode == 0, ok.stderr
    assert "acct_a" in ok.stdout and "tok-a" not in ok.stdout


def test_tokens_check__refused_wrong_account_and_expiring_soon(tmp_path, graph):
    cfg = two_accounts(tmp_path, graph.base_url)
    graph.expires_at["tok-a"] = int(time.time()) + 3 * 86_400
    env = {"FOLLOWUP_TOKEN_A": "tok-a", "FOLLOWUP_TOKEN_B": "tok-a"}  # B holds A's token
    r = tokens(cfg, "check", "--json", **env)
    assert r.returncode == 2
    data = {a["account_id"]: a for a in json.loads(r.stdout)["accounts"]}
    assert (
        "expires in 3.0 days" in data["acct_a"]["problem"]
        or "expires in 2.9" in data["acct_a"]["problem"]
    )
    assert f"belongs to Instagram account {IG_A}" in data["acct_b"]["problem"]
    relaxed = tokens(cfg, "check", "--account", "acct_a", "--warn-days", "1", **env)
    assert relaxed.returncode == 0, relaxed.stdout
    refused = tokens(cfg, "check", "--account", "acct_a", "--json", FOLLOWUP_TOKEN_A="revoked")
    assert refused.returncode == 2
    state = json.loads(refused.stdout)["accounts"][0]
    assert state["accepted"] is False and "code 190" in state["problem"]
    assert "revoked" not in refused.stdout


def test_tokens_refresh__prints_the_new_token_and_writes_nothing(tmp_path, graph):
    cfg = two_accounts(tmp_path, graph.base_url)
    before = sorted(p.name for p in tmp_path.iterdir())
    r = tokens(cfg, "refresh", "acct_a", FOLLOWUP_TOKEN_A="tok-a")
    assert r.returncode == 0, r.stderr
    new = r.stdout.strip()
    assert graph.refreshes == [new] and r.stdout == new + "\n"
    assert new not in r.stderr and "tok-a" not in r.stderr
    assert "FOLLOWUP_TOKEN_A" in r.stderr and "nothing was written" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # The new token works; the fake retired the old one.
    check = tokens(cfg, "check", "--account", "acct_a", FOLLOWUP_TOKEN_A=new)
    assert check.returncode == 0, check.stdout
    old = tokens(cfg, "check", "--account", "acct_a", FOLLOWUP_TOKEN_A="tok-a")
    assert old.returncode == 2


def test_tokens_refresh__refused_is_one_line_exit_2_without_the_token(tmp_path, graph):
    cfg = two_accounts(tmp_path, graph.base_url)
    r = tokens(cfg, "refresh", "acct_a", FOLLOWUP_TOKEN_A="expired-x")
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "code 190" in r.stderr
    assert "expired-x" not in r.stderr
    unset = tokens(cfg, "refresh", "acct_a")
    assert unset.returncode == 2 and "FOLLOWUP_TOKEN_A is not set" in unset.stderr


def test_sequences_check__warns_about_unset_token_variables_of_enabled_accounts(tmp_path):
    cfg = _base(channel={"type": "instagram", "window_hours": 24})
    cfg["accounts"].append(dict(ACCT_OFF))
    path = write_config(tmp_path / "sequences.yaml", cfg)
    r = followup("sequences", "check", "--config", str(path))
    assert r.returncode == 0, r.stderr
    assert "warning: accounts: acct_a: environment variable FOLLOWUP_TOKEN_A is not set" in r.stderr
    assert "FOLLOWUP_TOKEN_OFF" not in r.stderr
    quiet = followup("sequences", "check", "--config", str(path), env={"FOLLOWUP_TOKEN_A": "x"})
    assert "FOLLOWUP_TOKEN_A" not in quiet.stderr


def test_dry_run__warns_about_an_unset_token_variable(tmp_path, graph):
    cfg = two_accounts(tmp_path, graph.base_url)
    from tests.helpers import LeadDB

    db = LeadDB.sqlite(tmp_path)
    r = followup(
        "run", "--dry-run", "--config", str(cfg), "--db", db.url, env={"FOLLOWUP_TOKEN_A": "tok-a"}
    )
    assert r.returncode == 0, r.stderr
    assert "acct_b: environment variable FOLLOWUP_TOKEN_B is not set" in r.stderr
    assert "FOLLOWUP_TOKEN_A" not in r.stderr and "FOLLOWUP_TOKEN_OFF" not in r.stderr
