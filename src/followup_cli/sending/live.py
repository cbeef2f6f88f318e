"""``LiveExecutor``: the claims (``claiming``), the attempts and sends (``attempt``) and the
write transactions they share (``transactions``), put together."""

from __future__ import annotations

from ..clock import wall
from .attempt import Attempting
from .claiming import Claiming


class LiveExecutor(Claiming, Attempting):
    """Claims in batches, then per message: one transaction (the previous outcome, this
    claim marked attempted if nobody opted out), the API call, and the outcome held for the
    next transaction of the account (or one of its own when the account's turn ends). Until
    written, the claim stays ``pending``, attempted: a run that dies in between leaves it
    for the next run to mark ``unknown``, never to resend."""

    writes = True

    def heartbeat(self) -> None:
        """The run's row shows it is alive, so that other runs never take its open claims
        for a dead run's."""
        self.store.heartbeat(self.run_id, wall())

    def wait_for_window(self, budget: float) -> bool:
        """Only when time is real (no --now) and the run's budget allows."""
        return self.real_time and self.engine._wait_for_rate_window(
            self.account, self.store, self.run_id, budget
        )
