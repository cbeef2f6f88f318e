"""The dead-man's-switch ping never holds the run, and says nothing after the run stopped
waiting for it (``ping.Pinger``)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import requests

from followup_cli import ping


def test_ping__a_ping_that_ends_after_the_run_gave_up_on_it_logs_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The run waits at most ``timeout`` for its pings, then says it is not waiting and
    ends (closing its log file). A ping that fails after that must not log: before, its
    warning reached the closed file handler, which opened the file again and leaked it
    (a ResourceWarning that failed a test in CI under load)."""
    release = threading.Event()

    def hanging(*args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        raise requests.ReadTimeout("read timed out")

    monkeypatch.setattr(ping.requests, "request", hanging)
    pinger = ping.Pinger("http://127.0.0.1:9/check", "run-1", timeout=0.05)
    with caplog.at_level(logging.WARNING, logger="followup"):
        pinger.finish(0, "1 sent")
        assert pinger.errors == ["ping to 127.0.0.1:9 did not answer within 0.05s; not waiting"]
        release.set()
        for t in pinger._threads:
            t.join(10)
        assert not any(t.is_alive() for t in pinger._threads)
    gave_up = ["ping to 127.0.0.1:9 did not answer within 0.05s; not waiting"]
    assert pinger.errors == gave_up
    assert [r.getMessage() for r in caplog.records] == gave_up


def test_ping__a_ping_that_fails_in_time_is_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise requests.ConnectionError("refused")

    monkeypatch.setattr(ping.requests, "request", refused)
    pinger = ping.Pinger("http://127.0.0.1:9/check", "run-1", timeout=5)
    with caplog.at_level(logging.WARNING, logger="followup"):
        pinger.finish(0, "1 sent")
    assert pinger.errors == ["end ping to 127.0.0.1:9 failed: ConnectionError"]
    assert [r.getMessage() for r in caplog.records] == pinger.errors
