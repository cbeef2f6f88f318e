"""Channels behind one interface; ``make_channel`` builds the configured one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from ..config import Config
from .base import Channel, OutgoingMessage, SendResult
from .console import ConsoleChannel
from .instagram import InstagramChannel
from .webhook import WebhookChannel


def make_channel(
    config: Config,
    stream: TextIO | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Channel:
    """The configured channel; ``sleep`` (default ``time.sleep``) waits between retries."""
    ch = config.channel
    if ch.type == "instagram":
        return InstagramChannel(
            ch.api_base,
            ch.api_version,
            connect_timeout=ch.connect_timeout_seconds,
            read_timeout=ch.timeout_seconds,
            max_retries=ch.max_retries,
            max_retry_wait=ch.max_retry_wait_seconds,
            sleep=sleep,
        )
    if ch.type == "webhook":
        assert ch.url is not None
        return WebhookChannel(
            ch.url,
            ch.secret_env,
            connect_timeout=ch.connect_timeout_seconds,
            read_timeout=ch.timeout_seconds,
            max_retries=ch.max_retries,
            max_retry_wait=ch.max_retry_wait_seconds,
            sleep=sleep,
        )
    return ConsoleChannel(stream=stream)


__all__ = ["Channel", "OutgoingMessage", "SendResult", "make_channel", "ConsoleChannel"]
