"""Secrets stay secret: the one redaction step every outside text passes (``redact.py``),
the channel result it guards, the log filter, and the 0600 file helpers."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followup_cli import files, logsetup, redact
from followup_cli.channels.base import SendResult
from followup_cli.redact import MASK

TOKEN = "EAAGm0PX4ZCpsBAKZAoZD5s3cr3tT0k3n"


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    redact.clear()
    yield
    redact.clear()


# ------------------------------------------------------------------ the patterns

CASES = [
    # (text, the secret that must go, a part that must stay)
    ("postgresql://u:s3cret@127.0.0.1:1/x", "s3cret", "postgresql://u:***@127.0.0.1:1/x"),
    ("postgres://app:s3cret@db.example/leads", "s3cret", "postgres://app:***@db.example/leads"),
    ("postgresql://u@h/x?password=s3cret&sslmode=require", "s3cret", "sslmode=require"),
    ("postgresql://u@h/x?password=s3cret: cannot connect", "s3cret", "password=***: cannot"),
    ("host=127.0.0.1 password=s3cret dbname=x", "s3cret", "host=127.0.0.1 password=*** dbname=x"),
    ("host=h password='s 3\\'cret' dbname=x", "3\\'cret", "password='***' dbname=x"),
    ("host=h password = s3cret", "s3cret", "host=h"),
    ("GET /v21.0/me?access_token=EAAB9xyz&fields=id", "EAAB9xyz", "access_token=***&fields=id"),
    ("debug_token?input_token=EAAB9xyz", "EAAB9xyz", "input_token=***"),
    ("client_secret=abc123&x=1", "abc123", "client_secret=***&x=1"),
    ("appsecret_proof=deadbeef01", "deadbeef01", "appsecret_proof=***"),
    ("next=https%3A%2F%2Fx%3Faccess_token%3DEAAB9xyz", "EAAB9xyz", "access_token%3D***"),
    ('{"access_token": "EAAB9xyz", "code": 190}', "EAAB9xyz", '"code": 190'),
    ("{'password': 'hunter22'}", "hunter22", "{'password': '***'}"),
    ("Authorization: Bearer tok-abc", "tok-abc", "Authorization: Bearer ***"),
    ("{'Authorization': 'Bearer tok-abc'}", "tok-abc", "Authorization"),
    ("header was Bearer EAAB9xyzEAAB9xyz", "EAAB9xyzEAAB9xyz", "header was Bearer ***"),
    ("OAuth EAAB9xyz12345abcd rejected", "EAAB9xyz12345abcd", "OAuth *** rejected"),
    ("Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", "Basic ***"),
]


@pytest.mark.parametrize(("text", "secret", "kept"), CASES)
def test_redact__removes_credentials_and_keeps_the_rest(text, secret, kept):
    out = redact.redact(text)
    assert secret not in out
    assert kept in out
    assert MASK in out


@pytest.mark.parametrize(
    "text",
    [
        "Invalid OAuth access token - Cannot parse access token",
        "(#10) This message is sent outside of allowed window.",
        "connection refused by http://127.0.0.1:8080 (the request did not leave)",
        "https://graph.instagram.com:443/v21.0/17841400000000001/messages",
        "Bearer token missing; OAuth 2.0 flow",
        "OAuth graph.instagram.com. Bearer 127.0.0.1",
        "read timeout: the request left, no answer came",
        "lead lead_004: last_inbound_at 'yesterday' is not a time",
        "postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dt_1",
    ],
)
def test_redact__texts_without_secrets_are_unchanged(text):
    assert redact.redact(text) == text


def test_redact__registered_tokens_go_in_every_encoding():
    token = "EAAB/x+y=z|9Q"
    redact.register(token)
    for form in (token, quote(token, safe=""), json.dumps(token)[1:-1]):
        assert token not in redact.redact(f"he said {form}!")
        assert redact.redact(f"he said {form}!") == f"he said {MASK}!"


def test_redact__extra_secrets_for_one_call_and_none_and_short_values():
    assert redact.redact("my tok-abcdef here", secrets=["tok-abcdef"]) == f"my {MASK} here"
    assert redact.redact("my tok-abcdef here") == "my tok-abcdef here"  # not registered
    assert redact.redact(None) is None
    # too short to be told from ordinary words ("is shorter than" must stay readable)
    redact.register("short", "", None)
    assert redact.registered() == 0
    assert redact.redact("it is shorter than 16", secrets=["short"]) == "it is shorter than 16"


def test_redact__obj_redacts_every_string_and_keeps_the_shape():
    redact.register(TOKEN)
    data = {"a": [TOKEN, 1, None, {"b": f"x{TOKEN}"}], "n": 2.5, TOKEN: (TOKEN,)}
    out = redact.redact_obj(data)
    assert TOKEN not in json.dumps(out)
    assert out["n"] == 2.5 and out["a"][1] == 1 and out["a"][2] is None
    assert out[MASK] == (MASK,)


def test_register_config__reads_token_and_secret_variables():
    class A:
        token_env = "MY_TOKEN"

    class Ch:
        secret_env = "MY_SIGNING"

    class Cfg:
        accounts = [A()]
        channel = Ch()

    env = {"MY_TOKEN": TOKEN, "MY_SIGNING": "sign-secret-1", "FOLLOWUP_BODY_KEY": "k3y-k3y-k3y"}
    redact.register_config(Cfg(), env)
    text = f"{TOKEN} sign-secret-1 k3y-k3y-k3y"
    assert redact.redact(text) == f"{MASK} {MASK} {MASK}"


# ------------------------------------------------------------------ properties

TOKEN_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.|")
tokens = st.text(TOKEN_CHARS, min_size=redact.MIN_SECRET, max_size=60).filter(
    lambda t: any(c.isalnum() for c in t)
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=tokens, before=st.text(max_size=80), after=st.text(max_size=80))
def test_property__an_embedded_token_never_survives(token, before, after):
    text = before + token + after
    assert token not in redact.redact(text, secrets=[token])
    encoded = before + quote(token, safe="") + after
    assert quote(token, safe="") not in redact.redact(encoded, secrets=[token])


WORDS = st.sampled_from(
    [
        "the", "lead", "token", "access", "password", "secret", "OAuth", "Bearer", "Basic",
        "error", "code", "190", "(#100)", "Invalid", "parameter", "window", "https", "v21.0",
        "graph.instagram.com", "127.0.0.1", "stopped", "account", "acct_shop", "Ana", "ñandú",
    ]
)  # fmt: skip
SEPARATORS = st.sampled_from([" ", ", ", ". ", " - ", "\n", "/", "(", ")", "; "])
plain_texts = st.lists(st.tuples(WORDS, SEPARATORS), max_size=30).map(
    lambda parts: "".join(w + s for w, s in parts)
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=plain_texts, token=tokens)
def test_property__text_without_secrets_is_unchanged(text, token):
    if token in text:
        return
    assert redact.redact(text, secrets=[token]) == text


# ------------------------------------------------------------------ the choke points


def test_send_result__an_api_error_quoting_the_token_is_redacted():
    redact.register(TOKEN)
    r = SendResult(
        "failed",
        error_message=f"(#100) bad token {TOKEN} at https://g/x?access_token={TOKEN}",
    )
    assert TOKEN not in r.error_message
    assert r.error_message.startswith("(#100) bad token ***")


def test_log_filter__message_args_extra_and_traceback_are_redacted(tmp_path):
    redact.register(TOKEN)
    log_file = tmp_path / "f.log"
    json_file = tmp_path / "j.log"
    try:
        for path, fmt in ((log_file, "text"), (json_file, "json")):
            logsetup.configure(fmt=fmt, log_file=str(path))
            log = logsetup.get("t")
            log.error("answer %s", f"token {TOKEN}", extra={"account": TOKEN, "url": TOKEN})
            log.warning({"event": "x", "detail": [f"Bearer {TOKEN}"]})
            try:
                raise RuntimeError(f"boom access_token={TOKEN}")
            except RuntimeError:
                log.exception("failed")
        logsetup.reset()
        text = log_file.read_text() + json_file.read_text()
        assert TOKEN not in text
        assert "token ***" in text and "RuntimeError: boom access_token=***" in text
        for line in json_file.read_text().splitlines():
            json.loads(line)
    finally:
        logsetup.reset()


# ------------------------------------------------------------------ private files


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files__created_files_are_0600_and_existing_ones_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        files.write_private(tmp_path / "r.html", "x")
        assert _mode(tmp_path / "r.html") == 0o600
        files.atomic_write_private(tmp_path / "m.prom", b"a 1\n")
        assert _mode(tmp_path / "m.prom") == 0o600
        os.chmod(tmp_path / "m.prom", 0o644)  # the admin let node_exporter read it
        files.atomic_write_private(tmp_path / "m.prom", b"a 2\n")
        assert _mode(tmp_path / "m.prom") == 0o644
        assert (tmp_path / "m.prom").read_bytes() == b"a 2\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.prom", "r.html"]
        mine = tmp_path / "mine.db"
        mine.write_text("")
        os.chmod(mine, 0o640)
        assert files.create_private(mine) is False and _mode(mine) == 0o640
        assert files.create_private(tmp_path / "new.db") is True
        assert _mode(tmp_path / "new.db") == 0o600
        with files.open_private(tmp_path / "a.log", "a") as fh:
            fh.write("line\n")
        assert _mode(tmp_path / "a.log") == 0o600
    finally:
        os.umask(old)
