"""The webhook channel: POST the message as JSON to the host app, signed.

Headers: ``X-Followup-Signature: sha256=<hex HMAC-SHA256 of the body>`` (key from the
environment variable ``channel.secret_env``), ``Idempotency-Key`` (a hash of account, lead,
sequence and message: the tool's own never-twice key, the same for any retry or re-send of
one step, from any host or database) so the host app can drop a duplicate delivery.
Answers follow the same error table as the Graph API (429 throttles, 5xx with an error
object is transient, 4xx is permanent).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable
from typing import Any

from .. import redact
from .base import OutgoingMessage, SendResult
from .http import HttpSender, result_from


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        url: str,
        secret_env: str | None = None,
        connect_timeout: float = 5,
        read_timeout: float = 10,
        max_retries: int = 3,
        max_retry_wait: float = 60,
        env: dict[str, str] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.url = url
        self.env = env if env is not None else os.environ
        self.secret_env = secret_env
        kwargs: dict[str, Any] = {}
        if sleep is not None:
            kwargs["sleep"] = sleep
        self.http = HttpSender(connect_timeout, read_timeout, max_retries, max_retry_wait, **kwargs)

    def send(self, message: OutgoingMessage) -> SendResult:
        payload = {
            "account_id": message.account_id,
            "lead_id": message.lead_id,
            "recipient_id": message.recipient_id,
            "sequence_id": message.sequence_id,
            "message_id": message.message_id,
            "variant_id": message.variant_id,
            "text": message.text,
            "media_type": message.media_type,
            "media_url": message.media_url,
            "idempotency_key": message.idempotency_key,
        }
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.idempotency_key}
        secret = self.env.get(self.secret_env) if self.secret_env else None
        if self.secret_env and not secret:
            return SendResult(
                "account_fatal",
                error_message=f"environment variable {self.secret_env} is not set: cannot sign",
                attempts=0,
                kind="account",
            )
        if secret:
            redact.register(secret)
            sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Followup-Signature"] = f"sha256={sig}"
        attempt, n = self.http.post(self.url, headers, data=body, proceed=message.still_wanted)
        mid = attempt.body.get("message_id") if isinstance(attempt.body, dict) else None
        return result_from(attempt, n, mid)

    def close(self) -> None:
        self.http.close()
