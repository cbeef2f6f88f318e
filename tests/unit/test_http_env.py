"""The HTTP sender reads the environment once per origin (channels/transport.py ``EnvSession``),
and what it resolves is what ``requests`` resolves on every request: the proxies
(HTTP_PROXY, HTTPS_PROXY, NO_PROXY), the CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)
and ~/.netrc credentials. Checked against a plain ``requests.Session`` and through a real
loopback proxy."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from followup_cli.channels.http import EnvSession, HttpSender

ENV = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
    "all_proxy", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC",
)  # fmt: skip
URLS = (
    "https://graph.facebook.com/v21.0/1/messages",
    "https://hooks.example.com:8443/in",
    "http://127.0.0.1:9/x",
    "http://internal.corp/x",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc of the machine's


@contextmanager
def server(seen: list[tuple[str, dict[str, str]]]) -> Iterator[str]:
    """A loopback server answering every POST with a Graph-like 200, recording the request
    line's target and headers (a proxy sees the absolute URL there)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.path, dict(self.headers)))
            body = json.dumps({"message_id": "m"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

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


CASES = [
    {},
    {"HTTPS_PROXY": "http://proxy.local:3128"},
    {"HTTPS_PROXY": "http://proxy.local:3128", "NO_PROXY": "graph.facebook.com"},
    {"https_proxy": "http://p:1", "HTTP_PROXY": "http://q:2", "no_proxy": ".corp,127.0.0.1"},
    {"ALL_PROXY": "socks5://s:1080", "NO_PROXY": "example.com:8443"},
    {"REQUESTS_CA_BUNDLE": "/etc/ssl/bundle.pem"},
    {"CURL_CA_BUNDLE": "/etc/ssl/curl.pem"},
    {"REQUESTS_CA_BUNDLE": "/a.pem", "CURL_CA_BUNDLE": "/b.pem"},
]


@pytest.mark.parametrize("env", CASES)
def test_resolved_settings_are_what_requests_resolves(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    plain, once = requests.Session(), EnvSession()
    for url in URLS * 2:  # the second pass comes from the cache
        want = plain.merge_environment_settings(url, {}, None, None, None)
        assert once.merge_environment_settings(url, {}, None, None, None) == want


def test_netrc_credentials_as_requests_applies_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rc = tmp_path / "netrc"
    rc.write_text("machine hooks.example.com login ann password s3cret\n")
    monkeypatch.setenv("NETRC", str(rc))
    plain, once = requests.Session(), EnvSession()
    for url in (*URLS, *URLS):
        for auth in (None, ("bob", "pw")):
            a = requests.Request("POST", url, json={}, headers={"X": "1"}, auth=auth)
            b = requests.Request("POST", url, json={}, headers={"X": "1"}, auth=auth)
            assert once.prepare_request(a).headers == plain.prepare_request(b).headers
    assert once.trust_env


def test_the_environment_is_read_once_per_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    once = EnvSession()
    url = "https://graph.facebook.com/v21.0/1/messages"
    first = once.merge_environment_settings(url, {}, None, None, None)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    assert once.merge_environment_settings(url, {}, None, None, None) == first
    other = once.merge_environment_settings("https://b.example/x", {}, None, None, None)
    assert other["proxies"] == {"https": "http://proxy.local:3128"}
    # what a caller passes still wins, as in requests
    given = once.merge_environment_settings(url, {"https": "http://x:1"}, None, False, None)
    assert (given["proxies"]["https"], given["verify"]) == ("http://x:1", False)


def test_a_real_proxy_carries_the_post_and_no_proxy_bypasses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    via_proxy: list[tuple[str, dict[str, str]]] = []
    direct: list[tuple[str, dict[str, str]]] = []
    with server(via_proxy) as proxy, server(direct) as target:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        sender = HttpSender(2, 2, max_retries=0, max_retry_wait=1)
        for _ in range(2):
            attempt, _n = sender.post(f"{target}/v21.0/1/messages", {"A": "b"}, {"x": 1})
            assert attempt.kind == "ok"
        assert [p for p, _h in via_proxy] == [f"{target}/v21.0/1/messages"] * 2
        assert direct == []
        sender.close()

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        sender = HttpSender(2, 2, max_retries=0, max_retry_wait=1)
        attempt, _n = sender.post(f"{target}/v21.0/1/messages", {"A": "b"}, {"x": 1})
        assert attempt.kind == "ok"
        assert [p for p, _h in direct] == ["/v21.0/1/messages"]
        assert direct[0][1]["A"] == "b"
        assert len(via_proxy) == 2
        sender.close()
