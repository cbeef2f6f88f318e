"""The webhook channel (signed JSON to the host app, over a real loopback socket) and the
privacy promises: bodies encrypted at rest with a key, tokens never in output or the DB."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from followup_cli.crypto import BodyCipher, new_key
from tests.fakes.graph_api import FakeGraphAPI
from tests.helpers import LeadDB, base_config, lead, write_config
from tests.helpers import followup_in_process as followup

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))


class Receiver:
    """A host app's webhook endpoint: records bodies and headers; scripted status codes."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                payload = json.dumps({"message_id": f"hook-{len(receiver.requests)}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/followup"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_webhook__posts_signed_json_once_per_step(
    tmp_path: Path, db: LeadDB, receiver: Receiver
) -> None:
    cfg = base_config(
        channel={
            "type": "webhook",
            "url": receiver.url,
            "secret_env": "HOOK_SECRET",
            "window_hours": 24,
        }
    )
    path = write_config(tmp_path / "sequences.yaml", cfg)
    t = NOW - timedelta(hours=5)
    db.insert(lead("w1", last_inbound_at=t, last_outbound_at=t + timedelta(hours=1)))
    env = {"HOOK_SECRET": "s3cret"}
    for _ in range(2):
        r = followup(
            "run", "--config", str(path), "--db", db.url, "--now", NOW.isoformat(), env=env
        )
        assert r.returncode == 0, r.stderr
    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    body = req["body"]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert req["headers"]["X-Followup-Signature"] == expected
    payload = json.loads(body)
    assert payload["lead_id"] == "w1" and payload["text"] == "Hi Ana, step one"
    assert req["headers"]["Idempotency-Key"] == payload["idempotency_key"]
    rows = db.query("SELECT status, external_id FROM followup_tracking")
    assert rows == [{"status": "sent", "external_id": "hook-1"}]


def test_webhook__permanent_4xx_is_failed_and_exit_3(
    tmp_path: Path, db: LeadDB, receiver: Receiver
) -> None:
    cfg = base_config(channel={"type": "webhook", "url": receiver.url, "window_hours": None})
    path = write_config(tmp_path / "sequences.yaml", cfg)
    t = NOW - timedelta(hours=5)
    db.insert(lead("w2", last_inbound_at=t, last_outbound_at=t + timedelta(hours=1)))
    receiver.statuses = [422]
    r = followup("run", "--config", str(path), "--db", db.url, "--now", NOW.isoformat())
    assert r.returncode == 3
    assert "failed" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert db.query("SELECT status FROM followup_tracking") == [{"status": "failed"}]


def test_bodies_encrypted_at_rest_and_token_never_stored(
    tmp_path: Path, db: LeadDB, graph: FakeGraphAPI
) -> None:
    cfg = base_config(channel={"type": "instagram", "api_base": graph.base_url, "window_hours": 24})
    path = write_config(tmp_path / "sequences.yaml", cfg)
    t = NOW - timedelta(hours=5)
    db.insert(lead("e1", last_inbound_at=t, last_outbound_at=t + timedelta(hours=1)))
    key = new_key()
    env = {"FOLLOWUP_TOKEN_A": "tok-a", "FOLLOWUP_ENCRYPTION_KEY": key}
    r = followup(
        "run", "--config", str(path), "--db", db.url, "--now", NOW.isoformat(), "--json", env=env
    )
    assert r.returncode == 0, r.stderr
    assert "tok-a" not in r.stdout + r.stderr
    row = db.query("SELECT body, body_encrypted FROM followup_tracking")[0]
    assert bool(row["body_encrypted"]) is True
    assert "Hi Ana" not in row["body"]
    assert BodyCipher(key).open(row["body"], True) == "Hi Ana, step one"
    for table in ("followup_tracking", "followup_audit", "followup_runs"):
        dump = json.dumps(db.query(f"SELECT * FROM {table}"), default=str)
        assert "tok-a" not in dump, table
    bad = followup(
        "run", "--config", str(path), "--db", db.url, env={**env, "FOLLOWUP_ENCRYPTION_KEY": "nope"}
    )
    assert bad.returncode == 2 and "FOLLOWUP_ENCRYPTION_KEY" in bad.stderr


def test_erase__scrubs_personal_data_and_the_lead_is_never_messaged_again(
    tmp_path: Path, db: LeadDB
) -> None:
    path = write_config(tmp_path / "sequences.yaml", base_config())
    t = NOW - timedelta(hours=5)
    db.insert(lead("x1", last_inbound_at=t, last_outbound_at=t + timedelta(hours=1)))
    assert (
        followup("run", "--config", str(path), "--db", db.url, "--now", NOW.isoformat()).returncode
        == 0
    )
    refused = followup("erase", "x1", "--config", str(path), "--db", db.url)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    r = followup("erase", "x1", "--yes", "--config", str(path), "--db", db.url)
    assert r.returncode == 0, r.stderr
    row = db.query(
        "SELECT body, recipient_id, conversation_id, external_id, status FROM followup_tracking"
    )[0]
    assert (row["body"], row["recipient_id"], row["conversation_id"]) == (None, None, None)
    assert row["external_id"] is None, "the channel's message id can name the recipient"
    assert row["status"] == "sent"  # the step stays taken
    assert db.query("SELECT source FROM followup_optouts WHERE lead_id = 'x1'") == [
        {"source": "erasure"}
    ]
    later = (NOW + timedelta(days=1)).isoformat()
    again = followup("run", "--config", str(path), "--db", db.url, "--now", later)
    assert again.returncode == 0 and "x1" not in again.stdout
