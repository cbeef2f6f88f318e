"""The console channel: prints each message; the demo's channel."""

from __future__ import annotations

import itertools
import sys
import threading
from typing import TextIO

from .base import OutgoingMessage, SendResult


class ConsoleChannel:
    name = "console"

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> SendResult:
        if not message.wanted():
            return SendResult("cancelled", attempts=0, kind="cancelled")
        with self._lock:
            n = next(self._ids)
            if not self.quiet:
                who = f"@{message.username}" if message.username else message.recipient_id
                media = f" [{message.media_type}: {message.media_url}]" if message.media_url else ""
                text = (message.text or "").replace("\n", " ")
                stream = self.stream or sys.stdout
                print(
                    f"[{message.account_id}] -> {who} ({message.lead_id}) "
                    f"{message.sequence_id}/{message.message_id}"
                    f"{'/' + message.variant_id if message.variant_id else ''}: {text}{media}",
                    file=stream,
                )
        return SendResult("sent", message_id=f"console-{n}")

    def close(self) -> None:
        return None
