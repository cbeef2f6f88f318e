"""A fake Instagram Graph API "send message" endpoint for the test suite.

The fake is a real HTTP/1.1 server on a loopback socket (``127.0.0.1``, ephemeral port), so the
client under test goes through ``requests``, urllib3, real sockets, real timeouts and real
connection resets -- nothing is monkeypatched.

What it covers
--------------
* ``POST /{api_version}/{ig_user_id}/messages`` and ``POST /{api_version}/me/messages``
  (``api_version`` is any ``v<major>.<minor>``). Anything else answers 404 with a Graph-style
  error object.
* Auth with ``Authorization: Bearer <token>`` (an ``access_token`` query parameter is accepted
  too, as the real API does; tests can assert on ``Call.path`` that it was not used). A bad or
  missing token answers HTTP 400, ``OAuthException`` code 190.
* Body validation of the Send API JSON: ``recipient.id`` and exactly one of ``message.text``
  (at most 1000 characters) or ``message.attachment`` (``image``/``video``/``audio``/``file``
  with ``payload.url``). Violations answer HTTP 400, code 100, ``"(#100) ..."``.
* Success answers ``{"recipient_id": ..., "message_id": ...}`` with a unique message id.
* Every request is recorded as a :class:`Call`. ``tag`` (e.g. ``HUMAN_AGENT``) is recorded.
* Scripted misbehaviour, matched in FIFO order and optionally scoped by recipient and/or
  account: Graph errors (:meth:`FakeGraphAPI.fail`), HTTP 429 with ``Retry-After``
  (:meth:`FakeGraphAPI.throttle`), 5xx (:meth:`FakeGraphAPI.server_error`), slow answers that
  still deliver (:meth:`FakeGraphAPI.delay`) and connections closed without an answer
  (:meth:`FakeGraphAPI.drop`). A hook (:meth:`FakeGraphAPI.on_request`) runs mid-request.

* Token endpoints (Instagram API with Instagram Login), in the documented wire format:

  - ``GET /{api_version}/me?fields=user_id,username`` (Bearer or ``access_token``) answers
    the requested fields of the token's account plus ``id``;
  - ``GET /{api_version}/debug_token?input_token=T`` answers ``{"data": {"is_valid",
    "expires_at", "issued_at", "scopes", "user_id", "type", "application"}}``
    (``is_valid: false`` with an ``error`` object for a token it does not know);
  - ``GET /refresh_access_token?grant_type=ig_refresh_token&access_token=T`` (unversioned)
    answers ``{"access_token", "token_type": "bearer", "expires_in"}`` with a new token
    valid 60 days. The fake retires the old token at once (stricter than Meta, which lets
    it run to its expiry), so a test sees which one the tool uses.

  Expiry times per token: :attr:`FakeGraphAPI.expires_at` (Unix time; 60 days from start by
  default; ``0`` = never). An expired token answers code 190 like a bad one.

What it does not cover
----------------------
* Real messaging semantics: the 24-hour window, opt-outs, blocked users, per-account rate
  limits and so on are NOT simulated; script them with ``fail``/``throttle``.
* Other Graph endpoints (conversations, attachment upload, webhooks, token debugging), form
  encoded bodies, ``recipient.comment_id`` private replies, reactions, stickers,
  ``attachment_id`` payloads, usage headers (``X-App-Usage`` ...), TLS.
* Exact Meta wording of validation messages; codes and types match, prose is approximate.

Standalone use for manual demos: ``python -m tests.fakes.graph_api --port 8765``.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import re
import secrets
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

__all__ = ["Call", "FakeGraphAPI", "Script", "DEFAULT_MESSAGES", "MAX_TEXT_CHARS"]

MAX_TEXT_CHARS = 1000
LONG_LIVED_SECONDS = 5_183_944  # what Meta answers as expires_in for a 60-day token
ATTACHMENT_TYPES = frozenset({"image", "video", "audio", "file"})
HUMAN_AGENT = "HUMAN_AGENT"

#: Default ``error.message`` per Graph error code; ``(code, subcode)`` keys win over ``code``.
DEFAULT_MESSAGES: dict[int | tuple[int, int], str] = {
    1: "An unknown error occurred",
    2: "Service temporarily unavailable",
    4: "(#4) Application request limit reached",
    10: "(#10) Application does not have permission for this action",
    (10, 2534022): "(#10) This message is sent outside of allowed window.",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    100: "(#100) Invalid parameter",
    190: "Invalid OAuth access token - Cannot parse access token",
    200: "(#200) Permissions error",
    551: "(#551) This person isn't available right now.",
    613: "(#613) Calls to this api have exceeded the rate limit.",
}

_PATH_RE = re.compile(r"^/(?P<version>v\d+\.\d+)/(?P<owner>\d+|me)/messages/?$")

Outcome = Literal["pending", "ok", "error", "dropped", "throttled"]
_CLIENT_GONE_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


def default_message(code: int, subcode: int | None = None) -> str:
    """Return the fake's default ``error.message`` for a Graph error code (and subcode)."""
    if subcode is not None and (code, subcode) in DEFAULT_MESSAGES:
        return DEFAULT_MESSAGES[(code, subcode)]
    return DEFAULT_MESSAGES.get(code, f"(#{code}) Scripted error")


def _fbtrace_id() -> str:
    return "A" + secrets.token_urlsafe(16)[:22]


def graph_error(
    code: int,
    message: str | None = None,
    *,
    type: str = "OAuthException",
    subcode: int | None = None,
    is_transient: bool | None = None,
) -> dict[str, Any]:
    """Build a Graph API error object: ``{"error": {"message", "type", "code", ...}}``."""
    err: dict[str, Any] = {
        "message": message if message is not None else default_message(code, subcode),
        "type": type,
        "code": code,
    }
    if subcode is not None:
        err["error_subcode"] = subcode
    if is_transient is not None:
        err["is_transient"] = is_transient
    err["fbtrace_id"] = _fbtrace_id()
    return {"error": err}


@dataclass
class Call:
    """One request that reached the fake, with what the fake did about it.

    The record is complete (``outcome``, ``status``, ``delivered``) before the first byte of
    the answer is written, so a test may inspect it as soon as its client call returns or
    fails -- including after a client read timeout or a dropped connection.
    """

    method: str
    path: str
    ig_user_id: str | None
    headers: dict[str, str]
    json: Any | None
    recipient_id: str | None
    text: str | None
    attachment: dict[str, Any] | None
    outcome: Outcome = "pending"
    status: int | None = None
    at: float = field(default_factory=time.time)
    api_version: str | None = None
    tag: str | None = None
    message_id: str | None = None
    delivered: bool = False
    error: dict[str, Any] | None = None
    body: bytes = b""

    @property
    def error_code(self) -> int | None:
        """The Graph ``error.code`` answered, if any."""
        return None if self.error is None else self.error.get("code")

    @property
    def error_subcode(self) -> int | None:
        """The Graph ``error.error_subcode`` answered, if any."""
        return None if self.error is None else self.error.get("error_subcode")

    def header(self, name: str, default: str | None = None) -> str | None:
        """Case-insensitive header lookup."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default


@dataclass
class Script:
    """A scripted behaviour queued on the fake; returned by ``fail``/``throttle``/... .

    ``remaining`` is how many more requests it will affect (``None`` = forever).
    """

    kind: Literal["fail", "throttle", "server_error", "delay", "drop"]
    params: dict[str, Any]
    recipient_id: str | None = None
    ig_user_id: str | None = None
    remaining: int | None = 1
    used: int = 0

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def matches(self, ig_user_id: str | None, recipient_id: str | None) -> bool:
        if self.ig_user_id is not None and self.ig_user_id != ig_user_id:
            return False
        return self.recipient_id is None or self.recipient_id == recipient_id


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = True  # server_close() joins handler threads; stop() wakes them first

    def __init__(self, fake: FakeGraphAPI, address: tuple[str, int]) -> None:
        self.fake = fake
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (*_CLIENT_GONE_ERRORS, TimeoutError)):
            return  # the client went away: expected with timeouts and drops
        if isinstance(exc, OSError) and self.fake.stopping:
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGraphAPI/1.0"
    sys_version = ""
    timeout = 30  # abandoned keep-alive connections do not pin a thread forever
    # Headers and body go out as separate writes: without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK add ~40 ms to every answer.
    disable_nagle_algorithm = True
    server: _Server

    # -- plumbing -----------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.server.connections_lock:
                self.server.open_connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request logging to stderr."""

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            self.server.fake._handle(self)
        except _CLIENT_GONE_ERRORS:
            self.close_connection = True

    # -- used by FakeGraphAPI._handle ---------------------------------------------------------

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def respond(
        self,
        status: int,
        payload: Any,
        *,
        extra_headers: Mapping[str, str] | None = None,
        content_type: str = "application/json; charset=UTF-8",
    ) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def abort(self) -> None:
        """Close the connection without answering, with an RST (``SO_LINGER`` 0)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class FakeGraphAPI:
    """In-process fake of the Instagram Graph API send endpoint on ``127.0.0.1:<port>``.

    ``tokens`` maps an Instagram account id (``ig_user_id``) to its one valid access token;
    ``None`` accepts any non-empty token for any account.

    Use as a context manager or call :meth:`start` / :meth:`stop`::

        with FakeGraphAPI(tokens={"17841400000000001": "tok-shop"}) as fake:
            fake.fail(551, recipient_id="IGSID-2")
            ...  # point the client at fake.base_url
            assert [c.recipient_id for c in fake.deliveries] == ["IGSID-1"]
    """

    def __init__(
        self,
        tokens: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.tokens: dict[str, str] | None = dict(tokens) if tokens is not None else None
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._scripts: list[Script] = []
        self._request_hooks: list[Callable[[Call], None]] = []
        self._response_hooks: list[Callable[[Call], None]] = []
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: Exceptions raised by ``on_request``/``on_response`` hooks (answered as HTTP 500).
        self.hook_errors: list[BaseException] = []
        #: Token -> Unix time it expires (0 = never); unknown tokens get 60 days from now.
        self.expires_at: dict[str, int] = {}
        self.issued_at: dict[str, int] = {}
        self.refreshes: list[str] = []  # new tokens handed out by /refresh_access_token
        #: When True, every error answer quotes the caller's access token back (in
        #: ``message``, in ``error_user_msg`` and in a URL with ``access_token=``), as a
        #: careless proxy or API might: for tests that the client never repeats it.
        self.quote_token = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeGraphAPI:
        """Bind and serve in a daemon thread. Returns ``self``."""
        if self._server is not None:
            raise RuntimeError("FakeGraphAPI already started")
        self._stopping.clear()
        self._server = _Server(self, (self.host, self.port))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"FakeGraphAPI:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed handlers, close sockets and join all threads."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # delayed handlers stop sleeping
        server.shutdown()
        with server.connections_lock:
            open_connections = list(server.open_connections)
        for conn in open_connections:  # unblock handlers waiting on idle keep-alive sockets
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()  # joins handler threads (block_on_close)
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeGraphAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``; the API version goes in the path."""
        if self._server is None:
            raise RuntimeError("FakeGraphAPI not started")
        return f"http://{self.host}:{self.port}"

    def url(self, ig_user_id: str = "me", api_version: str = "v21.0") -> str:
        """Full send URL, e.g. ``http://127.0.0.1:5555/v21.0/1784.../messages``."""
        return f"{self.base_url}/{api_version}/{ig_user_id}/messages"

    # -- inspection ---------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every request that reached the handler, in arrival order (a copy)."""
        with self._lock:
            return list(self._calls)

    @property
    def deliveries(self) -> list[Call]:
        """Calls whose message went through: ``ok`` ones and drops with ``delivered=True``."""
        return [c for c in self.calls if c.delivered]

    def deliveries_to(self, recipient_id: str) -> list[Call]:
        """Deliveries to one recipient (IGSID)."""
        return [c for c in self.deliveries if c.recipient_id == recipient_id]

    @property
    def human_agent_calls(self) -> list[Call]:
        """Calls that carried ``"tag": "HUMAN_AGENT"`` (automation must never set it)."""
        return [c for c in self.calls if c.tag == HUMAN_AGENT]

    @property
    def pending_scripts(self) -> list[Script]:
        """Scripted behaviours not yet used up, in FIFO order."""
        with self._lock:
            return list(self._scripts)

    def reset(self) -> None:
        """Forget calls, pending scripts, hooks and hook errors. The server keeps running."""
        with self._lock:
            self._calls.clear()
            self._scripts.clear()
            self._request_hooks.clear()
            self._response_hooks.clear()
            self.hook_errors.clear()

    # -- scripting ----------------------------------------------------------------------------

    def fail(
        self,
        code: int,
        subcode: int | None = None,
        http_status: int = 400,
        message: str | None = None,
        type: str = "OAuthException",
        recipient_id: str | None = None,
        ig_user_id: str | None = None,
        times: int | None = 1,
        is_transient: bool | None = None,
    ) -> Script:
        """Answer the next matching request(s) with a Graph error object; nothing is delivered.

        E.g. ``fail(10, 2534022)`` (outside the messaging window), ``fail(551)`` (recipient
        unavailable), ``fail(190, ig_user_id=...)`` (token revoked), ``fail(2,
        is_transient=True)``.
        """
        return self._add(
            "fail",
            recipient_id,
            ig_user_id,
            times,
            code=code,
            subcode=subcode,
            http_status=http_status,
            message=message,
            type=type,
            is_transient=is_transient,
        )

    def throttle(
        self,
        retry_after: float | int | str | None = None,
        recipient_id: str | None = None,
        ig_user_id: str | None = None,
        times: int | None = 1,
        code: int = 613,
        http_status: int = 429,
    ) -> Script:
        """Answer HTTP 429 with a rate-limit Graph error (code 613, or e.g. 4/17/32).

        ``retry_after`` becomes the ``Retry-After`` header verbatim (seconds; a fractional
        value such as ``0.05`` keeps tests fast; a string such as an HTTP-date is sent as is).
        """
        return self._add(
            "throttle",
            recipient_id,
            ig_user_id,
            times,
            retry_after=retry_after,
            code=code,
            http_status=http_status,
        )

    def server_error(
        self,
        status: int = 500,
        recipient_id: str | None = None,
        ig_user_id: str | None = None,
        times: int | None = 1,
        html: bool = False,
    ) -> Script:
        """Answer a 5xx: Graph code 2 with ``is_transient: true``, or an HTML page."""
        if not 500 <= status <= 599:
            raise ValueError(f"server_error status must be 5xx, got {status}")
        return self._add("server_error", recipient_id, ig_user_id, times, status=status, html=html)

    def delay(
        self,
        seconds: float,
        recipient_id: str | None = None,
        ig_user_id: str | None = None,
        times: int | None = 1,
        then: Literal["ok", "server_error"] = "ok",
    ) -> Script:
        """Sleep ``seconds`` before answering.

        ``then="ok"``: the message IS delivered (recorded ``ok`` before the sleep) and the
        success answer comes late -- models a send that went through while the client timed
        out. ``then="server_error"``: a late 500, nothing delivered. :meth:`stop` cuts the
        sleep short.
        """
        if then not in ("ok", "server_error"):
            raise ValueError(f"then must be 'ok' or 'server_error', got {then!r}")
        return self._add("delay", recipient_id, ig_user_id, times, seconds=seconds, then=then)

    def drop(
        self,
        recipient_id: str | None = None,
        ig_user_id: str | None = None,
        times: int | None = 1,
        after_read: bool = True,
        delivered: bool | None = None,
    ) -> Script:
        """Close the connection (RST) without answering; the client sees a connection error.

        ``after_read=True`` reads the whole request first; ``delivered`` (default ``True``)
        says whether the message went through, i.e. the answer was lost. ``after_read=False``
        closes right after the request headers, before the body is read: it cannot be scoped
        by recipient and ``delivered`` defaults to ``False``. Recorded with outcome
        ``dropped``.
        """
        if not after_read and recipient_id is not None:
            raise ValueError("drop(after_read=False) cannot be scoped by recipient_id")
        if delivered is None:
            delivered = after_read
        return self._add(
            "drop", recipient_id, ig_user_id, times, after_read=after_read, delivered=delivered
        )

    def on_request(self, callback: Callable[[Call], None]) -> Callable[[Call], None]:
        """Run ``callback(call)`` in the server thread for every request, before answering.

        The call is parsed but undecided (``outcome == "pending"``); the callback may still
        script the answer for this very request (e.g. ``fake.fail(551, ...)``). Usable as a
        decorator. A raising callback makes the fake answer 500 and lands in ``hook_errors``.
        """
        with self._lock:
            self._request_hooks.append(callback)
        return callback

    def on_response(self, callback: Callable[[Call], None]) -> Callable[[Call], None]:
        """Run ``callback(call)`` once the call's outcome is decided (just before answering)."""
        with self._lock:
            self._response_hooks.append(callback)
        return callback

    def _add(
        self,
        kind: Literal["fail", "throttle", "server_error", "delay", "drop"],
        recipient_id: str | None,
        ig_user_id: str | None,
        times: int | None,
        **params: Any,
    ) -> Script:
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times}")
        script = Script(kind, params, recipient_id, ig_user_id, times)
        with self._lock:
            self._scripts.append(script)
        return script

    def _take_script(
        self, ig_user_id: str | None, recipient_id: str | None, *, before_body: bool = False
    ) -> Script | None:
        """Consume one use of the first matching script (FIFO).

        Before the body is read only recipient-agnostic scripts can be judged; the first such
        match is taken only if it is a ``drop(after_read=False)``.
        """
        with self._lock:
            for script in self._scripts:
                if before_body:
                    if script.recipient_id is not None or not script.matches(ig_user_id, None):
                        continue
                    if script.kind != "drop" or script.params["after_read"]:
                        return None
                elif not script.matches(ig_user_id, recipient_id):
                    continue
                elif script.kind == "drop" and not script.params["after_read"]:
                    continue  # only meaningful before the body is read
                script.used += 1
                if script.remaining is not None:
                    script.remaining -= 1
                    if script.remaining <= 0:
                        self._scripts.remove(script)
                return script
        return None

    # -- request handling (server threads) ----------------------------------------------------

    def _next_message_id(self, ig_user_id: str | None, recipient_id: str) -> str:
        raw = f"ig_message_item:1:IGMessageThread:{ig_user_id}:{recipient_id}:{next(self._ids)}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _finish(self, handler: _Handler, call: Call, status: int, payload: Any, **kw: Any) -> None:
        """Settle the record, run response hooks, then answer."""
        call.status = status
        if call.outcome == "pending":
            call.outcome = "ok" if status == 200 else "error"
        if status != 200 and isinstance(payload, dict) and "error" in payload:
            if self.quote_token and isinstance(payload["error"], dict):
                _quote_token(payload["error"], call)
            call.error = payload["error"]
        self._run_hooks(self._response_hooks, call)
        handler.respond(status, payload, **kw)

    def _run_hooks(self, hooks: list[Callable[[Call], None]], call: Call) -> bool:
        with self._lock:
            hooks = list(hooks)
        ok = True
        for hook in hooks:
            try:
                hook(call)
            except Exception as exc:
                with self._lock:
                    self.hook_errors.append(exc)
                ok = False
        return ok

    # -- token endpoints ------------------------------------------------------------------

    def _expiry(self, token: str) -> int:
        return self.expires_at.setdefault(token, int(time.time()) + LONG_LIVED_SECONDS)

    def _token_owner(self, token: str | None) -> str | None:
        """The ig_user_id a valid, unexpired token belongs to (any id when tokens is None)."""
        if not token:
            return None
        exp = self._expiry(token)
        if exp and exp <= time.time():
            return None
        if self.tokens is None:
            return "17841400000000000"
        for ig_user_id, valid in self.tokens.items():
            if valid == token:
                return ig_user_id
        return None

    def _handle_token_endpoint(self, handler: _Handler, call: Call, path: str, query: dict) -> bool:
        """``/me``, ``/debug_token``, ``/refresh_access_token`` (GET); False for other paths."""
        me = re.match(r"^/(v\d+\.\d+)/me/?$", path)
        debug = re.match(r"^/(v\d+\.\d+)/debug_token/?$", path)
        refresh = path.rstrip("/") == "/refresh_access_token"
        if handler.command != "GET" or not (me or debug or refresh):
            return False
        call.body = handler.read_body()
        token = _bearer_token(call.headers) or _first(query.get("access_token"))
        self._record(call)
        owner = self._token_owner(token)
        if owner is None:
            self._finish(handler, call, 400, graph_error(190))
            return True
        call.ig_user_id = owner
        if me:
            fields = (_first(query.get("fields")) or "id").split(",")
            known = {"id": owner, "user_id": owner, "username": f"user_{owner[-4:]}"}
            body = {f: known[f] for f in fields if f in known}
            body["id"] = owner
            self._finish(handler, call, 200, body)
        elif debug:
            inspected = _first(query.get("input_token")) or ""
            who = self._token_owner(inspected)
            if who is None:
                data: dict[str, Any] = {
                    "is_valid": False,
                    "error": {"code": 190, "message": "Invalid OAuth access token"},
                    "scopes": [],
                }
            else:
                data = {
                    "type": "USER",
                    "application": "followup-fake",
                    "is_valid": True,
                    "issued_at": self.issued_at.get(inspected, int(time.time()) - 86_400 * 2),
                    "expires_at": self._expiry(inspected),
                    "scopes": ["instagram_business_basic", "instagram_business_manage_messages"],
                    "user_id": who,
                }
            self._finish(handler, call, 200, {"data": data})
        else:
            if _first(query.get("grant_type")) != "ig_refresh_token":
                self._finish(
                    handler,
                    call,
                    400,
                    graph_error(100, "(#100) grant_type must be ig_refresh_token"),
                )
                return True
            new = "tok-" + secrets.token_urlsafe(12)
            assert token is not None
            if self.tokens is not None:
                self.tokens[owner] = new
            self.expires_at[new] = int(time.time()) + LONG_LIVED_SECONDS
            self.issued_at[new] = int(time.time())
            self.refreshes.append(new)
            self._finish(
                handler,
                call,
                200,
                {"access_token": new, "token_type": "bearer", "expires_in": LONG_LIVED_SECONDS},
            )
        return True

    def _handle(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        headers = dict(handler.headers.items())
        match = _PATH_RE.match(split.path)
        if match is None:
            token_call = Call(
                method=handler.command,
                path=handler.path,
                ig_user_id=None,
                headers=headers,
                json=None,
                recipient_id=None,
                text=None,
                attachment=None,
            )
            if self._handle_token_endpoint(handler, token_call, split.path, parse_qs(split.query)):
                return
        call = Call(
            method=handler.command,
            path=handler.path,
            ig_user_id=None,
            headers=headers,
            json=None,
            recipient_id=None,
            text=None,
            attachment=None,
            api_version=match["version"] if match else None,
        )

        if match is None or handler.command != "POST":
            call.body = handler.read_body()
            self._record(call)
            if not self._run_hooks(self._request_hooks, call):
                self._finish(handler, call, 500, graph_error(1, "on_request hook raised"))
                return
            what = f"{handler.command.lower()} request" if match else "path"
            message = (
                f"Unsupported {what}: {split.path}"
                if match
                else f"Unknown path components: {split.path}"
            )
            self._finish(handler, call, 404, graph_error(2500 if not match else 100, message))
            return

        # Auth: resolve who is calling before reading the body (for after_read=False drops).
        token = _bearer_token(headers) or _first(parse_qs(split.query).get("access_token"))
        owner = match["owner"]
        auth_error = self._check_token(owner, token)
        call.ig_user_id = self._resolve_owner(owner, token)

        if auth_error is None and self._take_script(call.ig_user_id, None, before_body=True):
            self._record(call)
            self._run_hooks(self._request_hooks, call)
            call.outcome, call.delivered = "dropped", False
            self._run_hooks(self._response_hooks, call)
            handler.abort()
            return

        call.body = handler.read_body()
        parsed, body_error = _parse_body(call.body)
        call.json = parsed
        if isinstance(parsed, dict):
            recipient = parsed.get("recipient")
            message = parsed.get("message")
            if isinstance(recipient, dict) and recipient.get("id") is not None:
                call.recipient_id = str(recipient["id"])
            if isinstance(message, dict):
                text = message.get("text")
                call.text = text if isinstance(text, str) else None
                attachment = message.get("attachment")
                call.attachment = attachment if isinstance(attachment, dict) else None
            tag = parsed.get("tag")
            call.tag = tag if isinstance(tag, str) else None
        self._record(call)

        if not self._run_hooks(self._request_hooks, call):
            self._finish(handler, call, 500, graph_error(1, "on_request hook raised"))
            return
        if auth_error is not None:
            self._finish(handler, call, 400, auth_error)
            return
        if body_error is not None:
            self._finish(handler, call, 400, graph_error(100, body_error))
            return

        script = self._take_script(call.ig_user_id, call.recipient_id)
        if script is None:
            self._deliver(handler, call)
        else:
            self._apply(script, handler, call)

    def _deliver(self, handler: _Handler, call: Call) -> None:
        assert call.recipient_id is not None
        call.message_id = self._next_message_id(call.ig_user_id, call.recipient_id)
        call.outcome, call.delivered = "ok", True
        payload = {"recipient_id": call.recipient_id, "message_id": call.message_id}
        self._finish(handler, call, 200, payload)

    def _apply(self, script: Script, handler: _Handler, call: Call) -> None:
        p = script.params
        if script.kind == "fail":
            error = graph_error(
                p["code"],
                p["message"],
                type=p["type"],
                subcode=p["subcode"],
                is_transient=p["is_transient"],
            )
            self._finish(handler, call, p["http_status"], error)
        elif script.kind == "throttle":
            call.outcome = "throttled"
            extra = {} if p["retry_after"] is None else {"Retry-After": str(p["retry_after"])}
            error = graph_error(p["code"], is_transient=True)
            self._finish(handler, call, p["http_status"], error, extra_headers=extra)
        elif script.kind == "server_error":
            self._server_error(handler, call, p["status"], html=p["html"])
        elif script.kind == "delay":
            if p["then"] == "ok":
                assert call.recipient_id is not None
                call.message_id = self._next_message_id(call.ig_user_id, call.recipient_id)
                call.outcome, call.delivered, call.status = "ok", True, 200
            self._stopping.wait(p["seconds"])
            if p["then"] == "ok":
                self._finish(
                    handler,
                    call,
                    200,
                    {"recipient_id": call.recipient_id, "message_id": call.message_id},
                )
            else:
                self._server_error(handler, call, 500, html=False)
        else:  # drop after reading the body
            call.outcome, call.delivered = "dropped", bool(p["delivered"])
            if call.delivered and call.recipient_id is not None:
                call.message_id = self._next_message_id(call.ig_user_id, call.recipient_id)
            self._run_hooks(self._response_hooks, call)
            handler.abort()

    def _server_error(self, handler: _Handler, call: Call, status: int, *, html: bool) -> None:
        if html:
            page = f"<html><body><h1>{status} Server Error</h1></body></html>".encode()
            self._finish(handler, call, status, page, content_type="text/html; charset=utf-8")
        else:
            self._finish(handler, call, status, graph_error(2, is_transient=True))

    def _check_token(self, owner: str, token: str | None) -> dict[str, Any] | None:
        if not token:
            return graph_error(190)
        if self.expires_at.get(token) and self.expires_at[token] <= time.time():
            return graph_error(190, "Error validating access token: Session has expired")
        if self.tokens is None:
            return None
        if token not in self.tokens.values():
            return graph_error(190)
        if owner != "me" and self.tokens.get(owner) != token:
            return graph_error(
                100,
                f"Unsupported post request. Object with ID '{owner}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
                type="GraphMethodException",
                subcode=33,
            )
        return None

    def _resolve_owner(self, owner: str, token: str | None) -> str:
        if owner != "me" or self.tokens is None or not token:
            return owner
        for ig_user_id, valid in self.tokens.items():
            if valid == token:
                return ig_user_id
        return owner


def _quote_token(error: dict[str, Any], call: Call) -> None:
    token = _bearer_token(call.headers) or _first(
        parse_qs(urlsplit(call.path).query).get("access_token")
    )
    if not token:
        return
    url = f"https://graph.instagram.com/v21.0/me?fields=id&access_token={token}"
    error["message"] = f"{error.get('message', '')} (token {token} at {url})"
    error["error_user_msg"] = f"The token {token} was rejected"
    error["error_user_title"] = f"Bearer {token}"


def _first(values: Iterable[str] | None) -> str | None:
    return next(iter(values), None) if values else None


def _bearer_token(headers: Mapping[str, str]) -> str | None:
    for key, value in headers.items():
        if key.lower() == "authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _parse_body(body: bytes) -> tuple[Any | None, str | None]:
    """Parse and validate a Send API body; return ``(json_or_None, error_message_or_None)``."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, "(#100) Invalid JSON in request body"
    if not isinstance(data, dict):
        return data, "(#100) Request body must be a JSON object"
    recipient = data.get("recipient")
    if not isinstance(recipient, dict) or not recipient.get("id"):
        return data, "(#100) The parameter recipient is required (recipient.id is missing)"
    message = data.get("message")
    if not isinstance(message, dict):
        return data, "(#100) The parameter message is required"
    text, attachment = message.get("text"), message.get("attachment")
    if text is not None and attachment is not None:
        return data, "(#100) Only one of message[text] or message[attachment] can be set"
    if text is None and attachment is None:
        return data, "(#100) The parameter message must contain text or an attachment"
    if text is not None:
        if not isinstance(text, str) or not text:
            return data, "(#100) Param message[text] must be a non-empty string"
        if len(text) > MAX_TEXT_CHARS:
            return data, (
                f"(#100) Length of param message[text] must be less than or equal to "
                f"{MAX_TEXT_CHARS} (got {len(text)})"
            )
        return data, None
    if not isinstance(attachment, dict):
        return data, "(#100) Param message[attachment] must be an object"
    if attachment.get("type") not in ATTACHMENT_TYPES:
        return data, (
            "(#100) Param message[attachment][type] must be one of {image, video, audio, file}"
        )
    payload = attachment.get("payload")
    url = payload.get("url") if isinstance(payload, dict) else None
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return data, "(#100) Param message[attachment][payload][url] must be a valid URL"
    return data, None


def main(argv: list[str] | None = None) -> int:
    """Run the fake in the foreground, logging one line per call to stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.graph_api", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="IG_USER_ID=TOKEN",
        help="valid token for an account (repeatable); without any, every token is accepted",
    )
    args = parser.parse_args(argv)
    tokens: dict[str, str] | None = None
    if args.token:
        tokens = {}
        for item in args.token:
            ig_user_id, sep, token = item.partition("=")
            if not sep or not ig_user_id or not token:
                parser.error(f"--token expects IG_USER_ID=TOKEN, got {item!r}")
            tokens[ig_user_id] = token

    fake = FakeGraphAPI(tokens=tokens, host=args.host, port=args.port)

    @fake.on_response
    def _log(call: Call) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(call.at))
        detail = call.text if call.text is not None else call.attachment
        code = f" code={call.error_code}" if call.error_code is not None else ""
        print(
            f"{stamp} {call.method} {urlsplit(call.path).path} -> {call.status or '-'} "
            f"{call.outcome}{code} account={call.ig_user_id} to={call.recipient_id} "
            f"{json.dumps(detail, ensure_ascii=False)}",
            flush=True,
        )

    fake.start()
    print(f"FakeGraphAPI listening on {fake.base_url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
