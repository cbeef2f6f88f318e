"""Channels behind one interface; ``make_channel`` builds the configured one. The HTTP
channels (and ``requests`` behind them, ~0.1 s of start-up) are imported only when the
config names one: a console run starts without them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from ..config import Config
from .base import Channel, OutgoingMessage, SendResult
from .console import ConsoleChannel


def make_channel(
    config: Config,
    stream: TextIO | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Channel:
    """The configured channel; ``sleep`` (default ``time.sleep``) waits between retries."""
    ch = config.channel
    if ch.type == "instagram":
        from .instagram import InstagramChannel

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
        from .webhook import WebhookChannel

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
