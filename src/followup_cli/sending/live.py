"""``LiveExecutor``: the claims (``claiming``), the attempts and sends (``attempt``) and the
write transactions they share (``transactions``), put together."""

from __future__ import annotations

from .attempt import Attempting
from .claiming import Claiming


class LiveExecutor(Claiming, Attempting):
    """Claims in batches, then per message: one transaction (the previous outcome, this
    claim marked attempted if nobody opted out), the API call, and the outcome held for the
    next transaction of the account (or one of its own when the account's turn ends). Until
    written, the claim stays ``pending``, attempted: a run that dies in between leaves it
    for the next run to mark ``unknown``, never to resend."""
