"""The HTTP sender goes through urllib3 itself (channels/transport.py ``EnvSession.post_quick``);
a failure must still raise what ``requests`` raises for it, so that the error table tells a
request that never left (``unreachable``: retried) from one that may have gone through
(``ambiguous``: ``unknown``, never resent). Each case is a real loopback socket misbehaving
in one way, sent once through a plain ``requests.Session`` and once through the sender."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from followup_cli.channels.http import EnvSession, HttpSender

TIMEOUT = (0.5, 0.5)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)


def answer(raw: bytes) -> Callable[[socket.socket], None]:
    def handle(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(raw)
        conn.close()

    return handle


def no_answer(conn: socket.socket) -> None:
    read_request(conn)
    time.sleep(TIMEOUT[1] * 3)
    conn.close()


def closed_after_request(conn: socket.socket) -> None:
    read_request(conn)
    conn.close()


def reset_after_request(conn: socket.socket) -> None:
    read_request(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@contextmanager
def server(handle: Callable[[socket.socket], None] | None) -> Iterator[str]:
    """A loopback port: closed (``handle`` None: refused), or listening and handing each
    connection to ``handle``; ``"full"`` listens and never accepts, its backlog filled,
    so a connection never opens (a connect timeout)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{srv.getsockname()[1]}/v21.0/1/messages"
    held: list[socket.socket] = []
    if handle is None:
        srv.close()
        yield url
        return
    srv.listen(0)
    if handle is full:
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(srv.getsockname())
            except BlockingIOError:
                pass
            held.append(c)
        time.sleep(0.1)
    else:

        def serve() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
    try:
        yield url
    finally:
        srv.close()
        for c in held:
            c.close()


def full(conn: socket.socket) -> None:  # a marker: the server never accepts
    raise AssertionError


CASES = {
    "refused": (None, "unreachable"),
    "connect timeout": (full, "unreachable"),
    "read timeout": (no_answer, "ambiguous"),
    "closed after the request": (closed_after_request, "ambiguous"),
    "reset after the request": (reset_after_request, "ambiguous"),
    "body cut short": (
        answer(b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"message_id"'),
        "ambiguous",
    ),
    "body not the gzip it says": (
        answer(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope"),
        "ambiguous",
    ),
}


def raised(post: Callable[[], object]) -> type[BaseException] | None:
    try:
        post()
    except Exception as exc:  # noqa: BLE001
        return type(exc)
    return None


@pytest.mark.parametrize("case", list(CASES))
def test_a_failure_raises_what_requests_raises_and_keeps_its_class(case: str) -> None:
    handle, kind = CASES[case]
    with server(handle) as url:
        with requests.Session() as plain:
            want = raised(
                lambda: plain.post(url, json={"n": 1}, headers={"A": "b"}, timeout=TIMEOUT)
            )
        quick = EnvSession()
        for _ in range(2):  # the second time from the prepared request
            got = raised(lambda: quick.post_quick(url, {"A": "b"}, TIMEOUT, json={"n": 1}))
            assert got is want is not None, case
        quick.close()
        sender = HttpSender(*TIMEOUT, max_retries=0, max_retry_wait=1)
        attempt = sender.post_once(url, {"A": "b"}, {"n": 1})
        sender.close()
    assert attempt.kind == kind, attempt


def test_a_closed_session_sends_again_on_new_connections() -> None:
    body = b'{"message_id":"m1"}'
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with server(answer(ok)) as url:
        sender = HttpSender(*TIMEOUT, max_retries=0, max_retry_wait=1)
        for _ in range(3):  # each answer closes its connection; then the session closes
            assert sender.post_once(url, {}, {"n": 1}).kind == "ok"
            sender.close()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (cert, key)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_verifies_against_the_ca_bundle_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """HTTPS through urllib3 as requests sets it up: the server's certificate is checked,
    against REQUESTS_CA_BUNDLE when it is set."""
    import ssl

    cert, key = self_signed(tmp_path)
    body = b'{"message_id":"m1"}'
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def tls_answer(conn: socket.socket) -> None:
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                answer(ok)(tls)
        except (ssl.SSLError, OSError):
            pass  # the client refused the certificate

    for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(k, raising=False)
    with server(tls_answer) as url:
        url = url.replace("http://", "https://")
        with requests.Session() as plain:
            want = raised(lambda: plain.post(url, json={}, timeout=TIMEOUT))
        got = raised(lambda: EnvSession().post_quick(url, {}, TIMEOUT, json={}))
        assert got is want is requests.exceptions.SSLError
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        sender = HttpSender(*TIMEOUT, max_retries=0, max_retry_wait=1)
        for _ in range(2):
            assert sender.post_once(url, {}, {"n": 1}).kind == "ok"
        sender.close()


def test_an_untrusted_certificate_is_unreachable_not_unknown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A certificate the client refuses fails the TLS handshake, before a byte of the
    request is written: nothing was sent, so the lead stays due (unreachable), not
    ``unknown`` for an operator to settle one by one."""
    import ssl

    cert, key = self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def tls_answer(conn: socket.socket) -> None:
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)
        except (ssl.SSLError, OSError):
            pass

    for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(k, raising=False)
    with server(tls_answer) as url:
        sender = HttpSender(*TIMEOUT, max_retries=0, max_retry_wait=1)
        got = sender.post_once(url.replace("http://", "https://"), {}, {"n": 1})
        sender.close()
    assert got.kind == "unreachable", got
    assert "certificate" in (got.message or "") and "did not leave" in (got.message or "")
