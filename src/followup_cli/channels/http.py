"""HTTP sending shared by the Instagram and webhook channels: one POST with tenacity
retries, and the error table that decides what each answer means.

The error table (Graph API codes; docs/delivery.md and README "Delivery errors"):

class      answers                                        what the tool does
---------  ---------------------------------------------  ---------------------------------------
throttle   HTTP 429; codes 4, 17, 32, 341, 613;           retry after Retry-After (else exponential
           80000-80014 (Business Use Case, 80002: IG)     backoff with jitter), at most max_retries
                                                          times; a wait over max_retry_wait_seconds
                                                          or a storm defers: the claim is released,
                                                          the account stops for this run
transient  codes 1, 2, 1200; is_transient; HTTP 500/503   bounded retry (it did not go through),
           with a Graph error                             then deferred: the claim is released and
                                                          the lead stays due for the next run
unreachable connection refused, connect timeout, unknown  as transient, counted per account; an
           host, a server certificate not trusted (no     account that nothing reached for a whole
           request ever left)                             run stops: one line naming it and the
                                                          URL, exit 3
ambiguous  read timeout; connection reset after sending;  ``unknown``: recorded, never resent
           502/504 or a 5xx without a Graph error;        blindly (``followup unknown``)
           an unreadable 2xx
permanent  551; 10 with a subcode (2534022, 2018278:      ``failed`` with the code, no retry; the
           outside the window); 100; other 4xx            enrollment ends
account    190, 102; 10 w/o subcode, 200-299              the account stops for this run (one line
           (permissions); 3; 368 (blocked for policy);    naming it and its token variable, exit
           HTTP 401/403 without a code                    3); other accounts go on
"""

from __future__ import annotations

import email.utils
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt

from .base import SendResult
from .transport import EnvSession, answer_json

THROTTLE_CODES = {4, 17, 32, 341, 613}
# Business Use Case rate limits: 80002 is an Instagram account's, 80006 Messenger's (the
# others: Pages, ads, lead ads, WhatsApp, catalogs); "wait a bit and try again"
BUC_THROTTLE_CODES = frozenset(range(80000, 80015))
TRANSIENT_CODES = {1, 2, 1200}
OUTSIDE_WINDOW_SUBCODES = {2534022, 2018278}
PERMANENT_CODES = {551, 100}
ACCOUNT_CODES = {190, 102, 3, 368}  # 102: API Session (token expired or revoked)


@dataclass(frozen=True)
class Attempt:
    """One HTTP answer (or its absence), classified."""

    kind: (
        str  # ok | throttle | transient | unreachable | ambiguous | permanent | account | cancelled
    )
    status: int | None = None
    body: Any = None
    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    retry_after: float | None = None


def classify_error(http_status: int | None, error: dict[str, Any] | None) -> str:
    """The error table as a function: HTTP status + Graph error object -> class."""
    code = _int(error.get("code")) if error else None
    subcode = _int(error.get("error_subcode")) if error else None
    if http_status == 429 or code in THROTTLE_CODES or code in BUC_THROTTLE_CODES:
        return "throttle"
    if code == 10:
        return "permanent" if subcode in OUTSIDE_WINDOW_SUBCODES or subcode else "account"
    if code in ACCOUNT_CODES or (code is not None and 200 <= code <= 299):
        return "account"
    if code in PERMANENT_CODES:
        return "permanent"
    if code in TRANSIENT_CODES or (error and error.get("is_transient") is True):
        return "transient"
    if http_status in (401, 403):
        return "account"
    if http_status is not None and http_status >= 500:
        if error and http_status in (500, 503):
            return "transient"
        return "ambiguous"
    if http_status is not None and 400 <= http_status < 500:
        return "permanent"
    return "ambiguous"


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpSender:
    """POSTs JSON with retries that follow the error table. One session per thread."""

    def __init__(
        self,
        connect_timeout: float,
        read_timeout: float,
        max_retries: int,
        max_retry_wait: float,
        sleep: Callable[[float], None] = time.sleep,
        base_backoff: float = 1.0,
    ) -> None:
        self.timeout = (connect_timeout, read_timeout)
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.sleep = sleep
        self.base_backoff = base_backoff
        self._local = threading.local()

    @property
    def session(self) -> EnvSession:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = EnvSession()
        return s

    def close(self) -> None:
        s = getattr(self._local, "session", None)
        if s is not None:
            s.close()

    def post_once(
        self, url: str, headers: dict[str, str], payload: Any = None, data: bytes | None = None
    ) -> Attempt:
        """One POST of a JSON payload (or of exact bytes, when they are signed), classified."""
        try:
            if data is not None:
                resp = self.session.post_quick(url, headers, self.timeout, data=data)
            else:
                resp = self.session.post_quick(url, headers, self.timeout, json=payload)
        except requests.exceptions.ConnectTimeout:
            why = f"connect timeout to {origin(url)} (the request did not leave)"
            return Attempt("unreachable", message=why)
        except requests.exceptions.ReadTimeout:
            return Attempt("ambiguous", message="read timeout: the request left, no answer came")
        except requests.exceptions.SSLError as exc:
            if not _certificate_refused(exc):
                return Attempt("ambiguous", message="TLS failed after connecting: outcome unknown")
            why = (
                f"the certificate of {origin(url)} is not trusted (the request did not leave;"
                " check the CA bundle: REQUESTS_CA_BUNDLE)"
            )
            return Attempt("unreachable", message=why)
        except requests.exceptions.ConnectionError as exc:
            refused = _refused(exc)
            if refused:
                why = f"{refused} {origin(url)} (the request did not leave)"
                return Attempt("unreachable", message=why)
            return Attempt("ambiguous", message="connection lost after sending: outcome unknown")
        except requests.exceptions.RequestException as exc:
            return Attempt("ambiguous", message=f"{type(exc).__name__}")
        body = answer_json(resp)
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            error = None
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        if 200 <= resp.status < 300 and error is None:
            if body is None and resp.content:
                return Attempt("ambiguous", status=resp.status, message="unreadable 2xx")
            return Attempt("ok", status=resp.status, body=body)
        kind = classify_error(resp.status, error)
        return Attempt(
            kind,
            status=resp.status,
            body=body,
            code=_int(error.get("code")) if error else None,
            subcode=_int(error.get("error_subcode")) if error else None,
            message=(error.get("message") if error else None) or f"HTTP {resp.status}",
            retry_after=retry_after,
        )

    def _wait_for(self, attempt: Attempt, number: int) -> float:
        if attempt.retry_after is not None:
            return attempt.retry_after
        # exponential with full jitter: 1, 2, 4 ... seconds, times a random factor
        return self.base_backoff * (2 ** (number - 1)) * (0.5 + random.random() / 2)

    def post(
        self,
        url: str,
        headers: dict[str, str],
        payload: Any = None,
        data: bytes | None = None,
        proceed: Callable[[], bool] | None = None,
    ) -> tuple[Attempt, int]:
        """POST with retries for throttle/transient answers; returns the last attempt and count.
        ``proceed`` is asked before every attempt; False ends it as ``cancelled``."""
        planned: dict[int, float] = {}

        def should_retry(a: Attempt) -> bool:
            return a.kind in ("throttle", "transient", "unreachable")

        def planned_wait(state: RetryCallState) -> float:
            # One draw per attempt, whichever of wait/stop tenacity asks first (it runs
            # wait before stop): the wait that is checked is the wait that is slept.
            n = state.attempt_number
            if n not in planned:
                a: Attempt = state.outcome.result()  # type: ignore[union-attr]
                planned[n] = self._wait_for(a, n)
            return planned[n]

        def stop_long_wait(state: RetryCallState) -> bool:
            return planned_wait(state) > self.max_retry_wait

        def wait(state: RetryCallState) -> float:
            return planned_wait(state)

        count = 0

        def once() -> Attempt:
            nonlocal count
            if proceed is not None and not proceed():
                return Attempt("cancelled", message="no longer wanted (opted out meanwhile)")
            count += 1
            return self.post_once(url, headers, payload, data)

        # The first attempt before tenacity: most answers end the call (ok, and everything
        # never retried), and tenacity's machinery costs ~15 us a call. A retryable first
        # answer is handed to tenacity as its first attempt: the same waits and stops.
        first: list[Attempt] = [once()]
        if not should_retry(first[0]):
            return first[0], count
        retrying = Retrying(
            retry=retry_if_result(should_retry),
            stop=stop_after_attempt(self.max_retries + 1) | stop_long_wait,
            wait=wait,
            sleep=self.sleep,
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
            reraise=True,
        )
        result = retrying(lambda: first.pop() if first else once())
        return result, count


def origin(url: str) -> str:
    """scheme://host[:port] of a URL: where a request goes, without path or credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _refused(exc: BaseException) -> str | None:
    """Why a connection never opened (refused, no route, unknown host), or None when it
    may have opened (the request may have left)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        name = type(cur).__name__
        text = str(cur)
        if "NameResolutionError" in name or "Failed to resolve" in text:
            return "cannot resolve the host of"
        if name == "ConnectionRefusedError" or "Connection refused" in text:
            return "connection refused by"
        if name == "NewConnectionError":
            return "cannot connect to"
        inner = cur.args[0] if cur.args and isinstance(cur.args[0], BaseException) else None
        cur = cur.__cause__ or cur.__context__ or inner
    return None


def _certificate_refused(exc: BaseException) -> bool:
    """Whether TLS failed on the server's certificate: the handshake, before any byte of
    the request is written (the message was not sent)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(cur):
            return True
        more = (cur.__cause__, cur.__context__, getattr(cur, "reason", None), *cur.args)
        todo.extend(x for x in more if isinstance(x, BaseException))
    return False


def result_from(attempt: Attempt, attempts: int, message_id: str | None = None) -> SendResult:
    """An HTTP attempt -> the channel-level SendResult."""
    outcome = {
        "ok": "sent",
        "throttle": "deferred",
        "transient": "deferred",
        "unreachable": "deferred",
        "ambiguous": "unknown",
        "permanent": "failed",
        "account": "account_fatal",
        "cancelled": "cancelled",
    }[attempt.kind]
    return SendResult(
        outcome,  # type: ignore[arg-type]
        message_id=message_id,
        error_code=attempt.code,
        error_subcode=attempt.subcode,
        error_message=attempt.message if attempt.kind != "ok" else None,
        http_status=attempt.status,
        retry_after=attempt.retry_after,
        attempts=attempts,
        kind=attempt.kind,
    )
