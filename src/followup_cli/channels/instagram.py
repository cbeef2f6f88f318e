"""The Instagram channel: the Graph API send endpoint.

POST {api_base}/{api_version}/{ig_user_id}/messages with ``Authorization: Bearer <token>``
(the token read from the environment variable the account names; never logged, printed or
stored) and a JSON body ``{"recipient": {"id": IGSID}, "message": {"text": ...}}`` or
``{"message": {"attachment": {"type": "image", "payload": {"url": ...}}}}``. No messaging
tag is ever set: HUMAN_AGENT is for human replies, never for automation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .. import redact
from .base import OutgoingMessage, SendResult
from .http import HttpSender, result_from


class InstagramChannel:
    name = "instagram"

    def __init__(
        self,
        api_base: str,
        api_version: str,
        connect_timeout: float = 5,
        read_timeout: float = 10,
        max_retries: int = 3,
        max_retry_wait: float = 60,
        env: dict[str, str] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.api_version = api_version.strip("/")
        self.env = env if env is not None else os.environ
        kwargs: dict[str, Any] = {}
        if sleep is not None:
            kwargs["sleep"] = sleep
        self.http = HttpSender(connect_timeout, read_timeout, max_retries, max_retry_wait, **kwargs)

    def url_for(self, ig_user_id: str) -> str:
        return f"{self.api_base}/{self.api_version}/{ig_user_id}/messages"

    def send(self, message: OutgoingMessage) -> SendResult:
        token = self.env.get(message.token_env or "") if message.token_env else None
        if not token:
            return SendResult(
                "account_fatal",
                error_message=f"environment variable {message.token_env or '(token_env not set)'} "
                "is not set: no access token for this account",
                attempts=0,
                kind="account",
            )
        if not message.ig_user_id:
            return SendResult(
                "account_fatal",
                error_message="the account has no ig_user_id",
                attempts=0,
                kind="account",
            )
        redact.register(token)  # whatever the API answers, this token is never echoed on
        url = self.url_for(message.ig_user_id)
        headers = {"Authorization": f"Bearer {token}"}
        parts: list[dict[str, Any]] = []
        if message.text:
            parts.append({"text": message.text})
        if message.media_url:
            parts.append(
                {
                    "attachment": {
                        "type": message.media_type or "image",
                        "payload": {"url": message.media_url},
                    }
                }
            )
        total_attempts = 0
        first: SendResult | None = None
        for i, part in enumerate(parts):
            payload = {"recipient": {"id": message.recipient_id}, "message": part}
            attempt, n = self.http.post(url, headers, payload, proceed=message.still_wanted)
            total_attempts += n
            mid = attempt.body.get("message_id") if isinstance(attempt.body, dict) else None
            result = result_from(attempt, total_attempts, mid)
            if i == 0:
                first = result
                if not result.ok:
                    return result
            elif not result.ok:
                # The first part went out; the follow-up counts as sent, the rest is noted.
                return SendResult(
                    "sent",
                    message_id=first.message_id if first else None,
                    error_code=result.error_code,
                    error_subcode=result.error_subcode,
                    error_message=f"part {i + 1} ({'media' if 'attachment' in part else 'text'}) "
                    f"not sent: {result.outcome}: {result.error_message}",
                    attempts=total_attempts,
                    kind="partial",
                )
        assert first is not None
        return SendResult("sent", message_id=first.message_id, attempts=total_attempts)

    def close(self) -> None:
        self.http.close()
