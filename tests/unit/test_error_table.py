"""The delivery error table as code: every Graph API answer maps to one class, every class to
one outcome, and the retry loop retries only what surely did not go through (or what the API
asks to retry), honouring Retry-After and the longest wait it may sleep."""

from __future__ import annotations

import email.utils
import time

import pytest

from followup_cli.channels.http import (
    Attempt,
    HttpSender,
    classify_error,
    parse_retry_after,
    result_from,
)


def err(code: int, subcode: int | None = None, **extra: object) -> dict[str, object]:
    e: dict[str, object] = {"code": code, "message": f"(#{code})", "type": "OAuthException"}
    if subcode is not None:
        e["error_subcode"] = subcode
    e.update(extra)
    return e


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        # throttling: back off, then defer
        (429, None, "throttle"),
        (429, err(613), "throttle"),
        (400, err(4), "throttle"),
        (400, err(17), "throttle"),
        (400, err(32), "throttle"),
        (400, err(613), "throttle"),
        (403, err(4), "throttle"),
        # Business Use Case rate limits (80002: this Instagram account; 80006: Messenger)
        (400, err(80002), "throttle"),
        (400, err(80006), "throttle"),
        (400, err(80001), "throttle"),
        (400, err(341), "throttle"),  # application limit reached: wait and retry
        # transient: the API says it did not go through
        (500, err(1), "transient"),
        (500, err(2, is_transient=True), "transient"),
        (400, err(1200), "transient"),
        (400, err(999, is_transient=True), "transient"),
        (503, err(2), "transient"),
        # ambiguous: nobody knows whether it went out
        (502, None, "ambiguous"),
        (504, None, "ambiguous"),
        (500, None, "ambiguous"),
        (None, None, "ambiguous"),
        # permanent for this lead
        (400, err(551), "permanent"),
        (400, err(10, 2534022), "permanent"),
        (400, err(10, 2018278), "permanent"),
        (400, err(100), "permanent"),
        (400, err(100, 33), "permanent"),
        (400, err(12345), "permanent"),
        (404, None, "permanent"),
        # the account cannot send
        (400, err(190), "account"),
        (400, err(102), "account"),  # API Session: the token expired or was revoked
        (401, err(102, 459), "account"),
        (401, err(190, 463), "account"),
        (400, err(10), "account"),
        (403, err(200), "account"),
        (403, err(230), "account"),
        (403, err(299), "account"),
        (400, err(3), "account"),
        (400, err(368), "account"),
        (401, None, "account"),
        (403, None, "account"),
    ],
)
def test_classify_error__each_answer_has_one_class(
    status: int | None, error: dict | None, kind: str
) -> None:
    assert classify_error(status, error) == kind


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [
        ("ok", "sent"),
        ("throttle", "deferred"),
        ("transient", "deferred"),
        ("ambiguous", "unknown"),
        ("permanent", "failed"),
        ("account", "account_fatal"),
    ],
)
def test_result_from__each_class_has_one_outcome(kind: str, outcome: str) -> None:
    r = result_from(Attempt(kind, status=400, code=551, subcode=None, message="m"), attempts=2)
    assert r.outcome == outcome
    assert r.attempts == 2
    assert r.kind == kind
    assert (r.error_message is None) == (kind == "ok")


def test_parse_retry_after__seconds_fractions_and_http_dates() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.05") == pytest.approx(0.05)
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    in_30 = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after(in_30) or 0) <= 31
    past = email.utils.formatdate(time.time() - 300, usegmt=True)
    assert parse_retry_after(past) == 0.0


class ScriptedSender(HttpSender):
    """HttpSender whose network answers come from a list; records every sleep."""

    def __init__(
        self, answers: list[Attempt], max_retries: int = 3, max_retry_wait: float = 60
    ) -> None:
        self.slept: list[float] = []
        super().__init__(
            1, 1, max_retries, max_retry_wait, sleep=self.slept.append, base_backoff=1.0
        )
        self.answers = list(answers)
        self.calls = 0

    def post_once(self, url, headers, payload=None, data=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.answers.pop(0)


def test_post__throttle_honours_retry_after_then_succeeds() -> None:
    s = ScriptedSender(
        [Attempt("throttle", status=429, retry_after=0.25), Attempt("ok", status=200)]
    )
    last, n = s.post("http://x", {})
    assert (last.kind, n, s.calls) == ("ok", 2, 2)
    assert s.slept == [0.25]


def test_post__retry_after_longer_than_the_allowed_wait_defers_without_sleeping() -> None:
    s = ScriptedSender(
        [Attempt("throttle", status=429, retry_after=3600), Attempt("ok")], max_retry_wait=60
    )
    last, n = s.post("http://x", {})
    assert (last.kind, n) == ("throttle", 1)
    assert s.slept == []
    assert result_from(last, n).outcome == "deferred"


def test_post__transient_backs_off_exponentially_with_jitter_and_is_bounded() -> None:
    s = ScriptedSender([Attempt("transient", status=500, code=2)] * 4, max_retries=3)
    last, n = s.post("http://x", {})
    assert (last.kind, n, s.calls) == ("transient", 4, 4)
    assert len(s.slept) == 3
    for i, wait in enumerate(s.slept):
        base = 2**i
        assert base / 2 <= wait <= base, (i, wait)


def test_post__exponential_wait_beyond_the_allowed_wait_stops_retrying() -> None:
    s = ScriptedSender(
        [Attempt("transient", status=500, code=2)] * 10, max_retries=10, max_retry_wait=3
    )
    last, n = s.post("http://x", {})
    # waits 1, 2 (each with jitter) fit in 3 s; the next one (2-4 s... then 4-8 s) does not
    assert last.kind == "transient"
    assert all(w <= 3 for w in s.slept)
    assert n == len(s.slept) + 1
    assert 2 <= n <= 4


@pytest.mark.parametrize("kind", ["ambiguous", "permanent", "account", "ok"])
def test_post__never_retries_what_may_have_gone_through_or_cannot_succeed(kind: str) -> None:
    s = ScriptedSender([Attempt(kind, status=400), Attempt("ok")])
    last, n = s.post("http://x", {})
    assert (last.kind, n, s.calls) == (kind, 1, 1)
    assert s.slept == []


def test_post__zero_retries_means_one_call() -> None:
    s = ScriptedSender(
        [Attempt("throttle", status=429, retry_after=0.01), Attempt("ok")], max_retries=0
    )
    last, n = s.post("http://x", {})
    assert (last.kind, n) == ("throttle", 1)


def test_post_once__a_closed_port_is_unreachable_and_names_where_without_secrets() -> None:
    """A real closed loopback port: no connection ever opened, so the request surely did not
    leave (retried as transient) and the attempt says where, without path or credentials."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = HttpSender(1, 1, max_retries=2, max_retry_wait=60, sleep=lambda _: None)
    attempt, calls = sender.post(f"http://user:secret@127.0.0.1:{port}/v21.0/1/messages", {}, {})
    assert (attempt.kind, calls) == ("unreachable", 3)
    assert (
        attempt.message
        == f"connection refused by http://127.0.0.1:{port} (the request did not leave)"
    )
    assert result_from(attempt, calls).outcome == "deferred"
