"""The HTTP sender prepares a request once per URL, headers and kind of body, then copies it
and sets only the body (channels/transport.py ``EnvSession.post_quick``). What reaches the
server must be what ``requests.Session.post`` sends, byte for byte: the request line, every
header in its order, the body; cookies a server sets, redirects and ~/.netrc credentials
included. Checked through a real loopback socket."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from followup_cli.channels.http import HttpSender

Seen = list[tuple[str, list[tuple[str, str]], bytes]]
ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in (*ENV, "all_proxy", "no_proxy", "NETRC"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc of the machine's


@contextmanager
def server(seen: Seen) -> Iterator[str]:
    """Records each request (line, headers in order, body). ``/cookie`` answers with a
    Set-Cookie; ``/moved`` answers 307 to ``/v1/messages``; anything else a Graph-like 200."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.requestline, list(self.headers.items()), body))
            if self.path == "/moved":
                self.send_response(307)
                self.send_header("Location", "/v1/messages")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            out = json.dumps({"message_id": f"m{len(seen)}"}).encode()
            self.send_response(200)
            if self.path == "/cookie":
                self.send_header("Set-Cookie", "sid=abc; Path=/")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


Call = tuple[str, dict[str, str], Any, bytes | None]


def calls(base: str) -> list[Call]:
    """(url, headers, json payload, data): JSON and signed-bytes posts, repeated (the
    repeats come from the prepared request), to several URLs and header sets."""
    graph = f"{base}/v1/17841/messages"
    hook = f"{base}/hook"
    bearer = {"Authorization": "Bearer tok-1"}
    signed = {"Content-Type": "application/json", "Idempotency-Key": "fu-1"}
    return [
        (graph, bearer, {"recipient": {"id": "1"}, "message": {"text": "hi"}}, None),
        (graph, bearer, {"recipient": {"id": "2"}, "message": {"text": "¿qué tal? 😊"}}, None),
        (graph, {"Authorization": "Bearer tok-2"}, {"recipient": {"id": "3"}}, None),
        (hook, signed, None, b'{"a":1}'),
        (hook, {**signed, "X-Followup-Signature": "sha256=ab"}, None, b'{"b":"longer body"}'),
        (hook, signed, None, b'{"c":3}'),
        (graph, bearer, {"recipient": {"id": "4"}, "message": {"text": "x" * 900}}, None),
        (f"{base}/moved", bearer, {"recipient": {"id": "5"}}, None),
        (f"{base}/moved", bearer, {"recipient": {"id": "6"}}, None),
    ]


def through_requests(extra: list[Call]) -> Seen:
    seen: Seen = []
    with server(seen) as url, requests.Session() as s:
        for u, h, payload, data in [*calls(url), *extra_calls(url, extra)]:
            if data is not None:
                s.post(u, data=data, headers=h, timeout=(2, 2))
            else:
                s.post(u, json=payload, headers=h, timeout=(2, 2))
    return seen


def through_sender(extra: list[Call]) -> Seen:
    seen: Seen = []
    with server(seen) as url:
        sender = HttpSender(2, 2, max_retries=0, max_retry_wait=1)
        for u, h, payload, data in [*calls(url), *extra_calls(url, extra)]:
            attempt, _n = sender.post(u, h, payload, data=data)
            assert attempt.kind == "ok", attempt
        sender.close()
    return seen


def extra_calls(url: str, extra: list[Call]) -> list[Call]:
    return [(u.replace("BASE", url), h, p, d) for u, h, p, d in extra]


def port_free(seen: Seen) -> Seen:
    """The two servers listen on different ports: the Host header's port is left out."""
    return [
        (line, [(k, v.split(":")[0] if k == "Host" else v) for k, v in hdrs], body)
        for line, hdrs, body in seen
    ]


def same_wire(extra: list[Call] | None = None) -> None:
    want = port_free(through_requests(extra or []))
    got = port_free(through_sender(extra or []))
    assert len(got) == len(want) >= 11
    for g, w in zip(got, want, strict=True):
        assert g == w


def test_what_reaches_the_server_is_what_requests_sends() -> None:
    same_wire()


def test_a_cookie_the_server_sets_goes_back_as_requests_sends_it() -> None:
    cookie = [
        ("BASE/cookie", {"Authorization": "Bearer t"}, {"n": 1}, None),
        ("BASE/v1/1/messages", {"Authorization": "Bearer t"}, {"n": 2}, None),
        ("BASE/hook", {"Content-Type": "application/json"}, None, b"{}"),
    ]
    same_wire(cookie)
    seen: Seen = []
    with server(seen) as url:
        sender = HttpSender(2, 2, max_retries=0, max_retry_wait=1)
        for u, h, p, d in extra_calls(url, cookie):
            sender.post(u, h, p, data=d)
        sender.close()
    assert [dict(h).get("Cookie") for _l, h, _b in seen] == [None, "sid=abc", "sid=abc"]


def test_netrc_credentials_reach_the_server_as_requests_sends_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rc = tmp_path / "netrc"
    rc.write_text("machine 127.0.0.1 login ann password s3cret\n")
    monkeypatch.setenv("NETRC", str(rc))
    hook = [("BASE/hook", {"Content-Type": "application/json"}, None, b"{}")] * 2
    same_wire(hook)
    seen: Seen = []
    with server(seen) as url:
        sender = HttpSender(2, 2, max_retries=0, max_retry_wait=1)
        for u, h, p, d in extra_calls(url, hook):
            sender.post(u, h, p, data=d)
        sender.close()
    assert all(dict(h)["Authorization"].startswith("Basic ") for _l, h, _b in seen)
