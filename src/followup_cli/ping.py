"""A dead-man's-switch ping, healthchecks.io style (``--ping-url URL``).

* at start: ``GET URL/start?rid=RUN``;
* at the end: ``POST URL/<exit code>?rid=RUN`` with the run's one-line summary as the body
  (healthchecks reads 0 as success and any other code as a failure; ``rid`` pairs the two
  pings so the service measures the run's duration).

A ping never holds the run: each request runs in a daemon thread with a short timeout, and
the run waits for it at most ``timeout`` seconds in all. A ping that fails is a warning in
the log, never a change of exit code. The URL is a secret of sorts (anyone holding it can
ping): logs name only its host.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

import requests

from . import logsetup
from .redact import redact

log = logsetup.get("ping")


def _with_suffix(url: str, suffix: str, run_id: str) -> str:
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + (f"/{suffix}" if suffix else "")
    query = (parts.query + "&" if parts.query else "") + f"rid={run_id}"
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


class Pinger:
    def __init__(self, url: str, run_id: str, timeout: float = 5.0) -> None:
        self.url = url
        self.run_id = run_id
        self.timeout = timeout
        self.host = urlsplit(url).netloc or url
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self._said = threading.Lock()  # a ping's warning vs ``finish`` giving up on it
        self._gave_up = False

    def _send(self, method: str, url: str, body: str | None, what: str) -> None:
        try:
            r = requests.request(
                method,
                url,
                data=(body or "").encode("utf-8")[:10_000] if body is not None else None,
                timeout=(self.timeout, self.timeout),
                headers={"User-Agent": "followup-cli"},
            )
            if r.status_code >= 400:
                raise requests.HTTPError(f"HTTP {r.status_code}")
        except Exception as exc:  # noqa: BLE001 - a ping never changes the run
            msg = f"{what} ping to {self.host} failed: {type(exc).__name__}"
            with self._said:
                if self._gave_up:  # the run said it stopped waiting, and its log may be closed
                    return
                self.errors.append(msg)
                log.warning(msg)

    def _spawn(self, method: str, url: str, body: str | None, what: str) -> threading.Thread:
        t = threading.Thread(
            target=self._send, args=(method, url, body, what), name=f"ping-{what}", daemon=True
        )
        t.start()
        self._threads.append(t)
        return t

    def start(self) -> None:
        """Fire the start ping and return at once."""
        self._spawn("GET", _with_suffix(self.url, "start", self.run_id), None, "start")

    def finish(self, exit_code: int, body: str) -> None:
        """Send the end ping; wait at most ``timeout`` seconds for both pings."""
        # the body leaves for a third party: it passes the redaction step like any output
        body = redact(body) or ""
        self._spawn("POST", _with_suffix(self.url, str(exit_code), self.run_id), body, "end")
        import time

        deadline = time.monotonic() + self.timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._said:
            if any(t.is_alive() for t in self._threads):
                self._gave_up = True
                msg = f"ping to {self.host} did not answer within {self.timeout:g}s; not waiting"
                self.errors.append(msg)
                log.warning(msg)


__all__ = ["Pinger"]
