"""Tests of the fake Graph API itself, through real ``requests`` calls over loopback."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fakes.graph_api import Call, FakeGraphAPI

ACCOUNT = "17841400000000001"
TOKEN = "tok-shop"
OTHER_ACCOUNT = "17841400000000002"
OTHER_TOKEN = "tok-other"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI(tokens={ACCOUNT: TOKEN, OTHER_ACCOUNT: OTHER_TOKEN}) as server:
        yield server


def send(
    fake: FakeGraphAPI,
    recipient: str = "IGSID-1",
    text: str | None = "hi there",
    *,
    account: str = ACCOUNT,
    token: str | None = TOKEN,
    body: Any = None,
    timeout: tuple[float, float] = (1.0, 2.0),
) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if body is None:
        body = {"recipient": {"id": recipient}, "message": {"text": text}}
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, (str, bytes)) else {"json": body}
    return requests.post(
        f"{fake.base_url}/v21.0/{account}/messages", headers=headers, timeout=timeout, **kwargs
    )


def test_success_round_trip(fake: FakeGraphAPI) -> None:
    resp = send(fake, "IGSID-1", "hello")

    assert resp.status_code == 200
    data = resp.json()
    assert data["recipient_id"] == "IGSID-1"
    assert data["message_id"].startswith("aWdf")
    (call,) = fake.calls
    assert call.outcome == "ok" and call.status == 200 and call.delivered
    assert (call.method, call.ig_user_id, call.api_version) == ("POST", ACCOUNT, "v21.0")
    assert (call.recipient_id, call.text, call.attachment) == ("IGSID-1", "hello", None)
    assert call.header("authorization") == f"Bearer {TOKEN}"
    assert call.message_id == data["message_id"]
    assert fake.deliveries == [call] and fake.deliveries_to("IGSID-1") == [call]
    assert send(fake).json()["message_id"] != data["message_id"]


def test_me_path_and_attachment(fake: FakeGraphAPI) -> None:
    body = {
        "recipient": {"id": "IGSID-9"},
        "message": {"attachment": {"type": "image", "payload": {"url": "https://x.test/a.png"}}},
    }
    resp = requests.post(
        f"{fake.base_url}/v22.0/me/messages",
        json=body,
        headers={"Authorization": f"Bearer {OTHER_TOKEN}"},
        timeout=2,
    )

    assert resp.status_code == 200
    (call,) = fake.deliveries
    assert call.ig_user_id == OTHER_ACCOUNT
    assert call.attachment == body["message"]["attachment"]


@pytest.mark.parametrize("token", [None, "", "wrong", OTHER_TOKEN])
def test_invalid_token_is_190_or_100(fake: FakeGraphAPI, token: str | None) -> None:
    resp = send(fake, token=token)

    assert resp.status_code == 400
    error = resp.json()["error"]
    if token == OTHER_TOKEN:  # valid token, but for another account
        assert error["code"] == 100
    else:
        assert error["code"] == 190
        assert error["type"] == "OAuthException"
        assert error["message"] == "Invalid OAuth access token - Cannot parse access token"
    assert error["fbtrace_id"]
    assert fake.deliveries == [] and fake.calls[0].outcome == "error"


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        {"message": {"text": "hi"}},
        {"recipient": {}, "message": {"text": "hi"}},
        {"recipient": {"id": "IGSID-1"}, "message": {}},
        {"recipient": {"id": "IGSID-1"}, "message": {"text": "x" * 1001}},
        {"recipient": {"id": "IGSID-1"}, "message": {"attachment": {"type": "image"}}},
        {
            "recipient": {"id": "IGSID-1"},
            "message": {"attachment": {"type": "image", "payload": {}}},
        },
    ],
)
def test_bad_body_is_100(fake: FakeGraphAPI, body: Any) -> None:
    resp = send(fake, body=body)

    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == 100 and error["type"] == "OAuthException"
    assert error["message"].startswith("(#100) ")
    assert fake.deliveries == []


def test_text_of_exactly_1000_chars_is_accepted(fake: FakeGraphAPI) -> None:
    assert send(fake, text="é" * 1000).status_code == 200


def test_unknown_path_is_404(fake: FakeGraphAPI) -> None:
    resp = requests.post(f"{fake.base_url}/v21.0/{ACCOUNT}/media", json={}, timeout=2)

    assert resp.status_code == 404
    assert "error" in resp.json()
    assert fake.calls[0].status == 404


def test_scripted_fail_with_subcode(fake: FakeGraphAPI) -> None:
    fake.fail(10, subcode=2534022)

    resp = send(fake)

    assert resp.status_code == 400
    error = resp.json()["error"]
    assert (error["code"], error["error_subcode"]) == (10, 2534022)
    assert error["message"] == "(#10) This message is sent outside of allowed window."
    assert "is_transient" not in error
    assert fake.calls[0].error_code == 10 and fake.calls[0].error_subcode == 2534022
    assert fake.deliveries == []
    assert send(fake).status_code == 200  # consumed


def test_fail_defaults_and_transient_flag(fake: FakeGraphAPI) -> None:
    fake.fail(551)
    fake.fail(2, http_status=503, is_transient=True, message="custom")

    first, second = send(fake).json()["error"], send(fake)

    assert first["message"] == "(#551) This person isn't available right now."
    assert "error_subcode" not in first
    assert second.status_code == 503
    assert second.json()["error"] | {"fbtrace_id": "-"} == {
        "message": "custom",
        "type": "OAuthException",
        "code": 2,
        "is_transient": True,
        "fbtrace_id": "-",
    }


def test_throttle_with_retry_after(fake: FakeGraphAPI) -> None:
    fake.throttle(retry_after=7)
    fake.throttle(code=4)

    first, second = send(fake), send(fake)

    assert first.status_code == 429
    assert first.headers["Retry-After"] == "7"
    assert first.json()["error"]["code"] == 613
    assert second.status_code == 429 and "Retry-After" not in second.headers
    assert second.json()["error"]["code"] == 4
    assert [c.outcome for c in fake.calls] == ["throttled", "throttled"]
    assert fake.deliveries == []


def test_server_error_json_and_html(fake: FakeGraphAPI) -> None:
    fake.server_error()
    fake.server_error(status=502, html=True)

    first, second = send(fake), send(fake)

    assert first.status_code == 500
    assert first.json()["error"]["code"] == 2 and first.json()["error"]["is_transient"] is True
    assert second.status_code == 502 and second.headers["Content-Type"].startswith("text/html")
    assert fake.deliveries == []


def test_delay_past_read_timeout_is_still_delivered(fake: FakeGraphAPI) -> None:
    fake.delay(10)  # cut short when the fixture stops the fake

    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        send(fake, "IGSID-7", timeout=(1.0, 0.1))

    assert time.monotonic() - started < 2.0
    (call,) = fake.calls
    assert call.outcome == "ok" and call.delivered
    assert fake.deliveries_to("IGSID-7") == [call]


def test_delay_within_timeout_answers_late(fake: FakeGraphAPI) -> None:
    fake.delay(0.1)
    started = time.monotonic()

    assert send(fake).status_code == 200
    assert time.monotonic() - started >= 0.1


def test_stop_cuts_a_pending_delay_short() -> None:
    fake = FakeGraphAPI().start()
    fake.delay(30)
    errors: list[BaseException] = []

    def client() -> None:
        try:
            send(fake, token="any", timeout=(1.0, 0.05))
        except requests.RequestException as exc:
            errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    thread.join()
    started = time.monotonic()
    fake.stop()

    assert time.monotonic() - started < 2.0
    assert isinstance(errors[0], requests.ReadTimeout)
    assert fake.deliveries  # the delayed send counted as delivered
    fake.stop()  # idempotent


def test_drop_causes_connection_error_and_counts_as_delivered(fake: FakeGraphAPI) -> None:
    fake.drop()

    with pytest.raises(requests.ConnectionError):
        send(fake, "IGSID-3")

    (call,) = fake.calls
    assert call.outcome == "dropped" and call.status is None
    assert fake.deliveries_to("IGSID-3") == [call]
    assert send(fake).status_code == 200  # the fake keeps serving


def test_drop_not_delivered_and_before_read(fake: FakeGraphAPI) -> None:
    fake.drop(delivered=False)
    fake.drop(after_read=False)

    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            send(fake)

    assert [c.outcome for c in fake.calls] == ["dropped", "dropped"]
    assert fake.calls[1].json is None
    assert fake.deliveries == []
    with pytest.raises(ValueError):
        fake.drop(recipient_id="IGSID-1", after_read=False)


def test_scoping_by_recipient_and_account(fake: FakeGraphAPI) -> None:
    fake.fail(551, recipient_id="IGSID-2")
    fake.fail(190, ig_user_id=OTHER_ACCOUNT)

    assert send(fake, "IGSID-1").status_code == 200
    assert send(fake, "IGSID-1", account=OTHER_ACCOUNT, token=OTHER_TOKEN).status_code == 400
    assert send(fake, "IGSID-2").json()["error"]["code"] == 551
    assert send(fake, "IGSID-2").status_code == 200

    assert [c.recipient_id for c in fake.deliveries] == ["IGSID-1", "IGSID-2"]
    assert fake.pending_scripts == []


def test_times_n_and_forever_consumed_in_fifo_order(fake: FakeGraphAPI) -> None:
    script = fake.fail(1, times=2)
    fake.fail(4)

    codes = [send(fake).json().get("error", {}).get("code") for _ in range(4)]

    assert codes == [1, 1, 4, None]
    assert script.remaining == 0 and script.used == 2

    forever = fake.fail(200, recipient_id="IGSID-5", times=None)
    assert all(send(fake, "IGSID-5").status_code == 400 for _ in range(3))
    assert forever.remaining is None and forever.used == 3
    assert fake.pending_scripts == [forever]
    with pytest.raises(ValueError):
        fake.fail(1, times=0)


def test_human_agent_tag_is_recorded_and_accepted(fake: FakeGraphAPI) -> None:
    body = {"recipient": {"id": "IGSID-1"}, "message": {"text": "hi"}, "tag": "HUMAN_AGENT"}

    assert send(fake, body=body).status_code == 200
    assert send(fake).status_code == 200

    assert [c.tag for c in fake.calls] == ["HUMAN_AGENT", None]
    assert fake.human_agent_calls == [fake.calls[0]]


def test_on_request_hook_can_act_mid_request(fake: FakeGraphAPI) -> None:
    seen: list[tuple[str | None, str]] = []

    @fake.on_request
    def opt_out(call: Call) -> None:
        seen.append((call.recipient_id, call.outcome))
        if call.recipient_id == "IGSID-2":
            fake.fail(551, recipient_id="IGSID-2")

    assert send(fake, "IGSID-1").status_code == 200
    assert send(fake, "IGSID-2").json()["error"]["code"] == 551
    assert seen == [("IGSID-1", "pending"), ("IGSID-2", "pending")]


def test_raising_hook_answers_500_and_is_reported(fake: FakeGraphAPI) -> None:
    def boom(call: Call) -> None:
        raise RuntimeError("boom")

    fake.on_request(boom)

    assert send(fake).status_code == 500
    assert isinstance(fake.hook_errors[0], RuntimeError)
    assert fake.deliveries == []


def test_reset_and_tokens_none_accepts_any_token() -> None:
    with FakeGraphAPI() as fake:
        fake.fail(1, times=None)
        assert send(fake, token="whatever").status_code == 400
        fake.reset()
        assert fake.calls == [] and fake.pending_scripts == []
        assert send(fake, account="123", token="whatever").status_code == 200
        assert send(fake, token=None).json()["error"]["code"] == 190


def test_keep_alive_session_and_clean_stop() -> None:
    fake = FakeGraphAPI(tokens={ACCOUNT: TOKEN}).start()
    with requests.Session() as session:
        for i in range(3):
            resp = session.post(
                f"{fake.base_url}/v21.0/{ACCOUNT}/messages",
                json={"recipient": {"id": f"IGSID-{i}"}, "message": {"text": "hi"}},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=2,
            )
            assert resp.status_code == 200
        started = time.monotonic()
        fake.stop()  # an idle keep-alive connection is still open here
        assert time.monotonic() - started < 1.0
    assert not [t for t in threading.enumerate() if t.name.startswith("FakeGraphAPI")]


def test_standalone_mode_logs_calls() -> None:
    with FakeGraphAPI() as probe:  # grab a free port, then release it
        port = probe.port
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.graph_api", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        resp = requests.post(
            f"http://127.0.0.1:{port}/v21.0/me/messages",
            json={"recipient": {"id": "IGSID-1"}, "message": {"text": "demo"}},
            headers={"Authorization": "Bearer t"},
            timeout=2,
        )
        assert resp.status_code == 200
        line = proc.stdout.readline()
        assert "200 ok" in line and "IGSID-1" in line and "demo" in line
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
