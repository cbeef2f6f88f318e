"""Claim -> send -> record for one account's leads, as ``accountrun.AccountRun`` walks
them; an executor does the work for each lead:

* ``LiveExecutor``: claims the account's next leads in a batch (one transaction under the
  account's lock: their rows and states re-read in a few set queries, each decided again,
  the rate window counted once, a ``pending`` row inserted for each with attempted_at
  NULL); then, per message, one small transaction writes the previous message's outcome
  and marks this claim attempted in one conditional UPDATE that re-checks the opt-outs
  (0 rows: no send, the claim is released); then the API call, outside any transaction.
  Claims a run never attempted are released when the account's turn ends, whatever ends
  it; a run that dies leaves them for the next run to release (``claims.py``).
* ``DryExecutor``: the same walk, claims simulated in memory; writes nothing.

The package: ``executor`` (``Executor``, ``DryExecutor``), ``live`` (``LiveExecutor``, put
together from ``claiming``: the claim batch; ``attempt``: the attempt, the API call and the
writing of its outcome; ``transactions``: the write transactions they share), ``answers``
(what an API answer means for the rest of the account's run).
"""

from .answers import UNREACHABLE_STREAK, count_outcome, trip_breaker
from .claiming import CLAIM_BATCH, CLAIM_FRESH_SECONDS, Claim
from .executor import DryExecutor, Executor
from .live import LiveExecutor
from .transactions import Audited

__all__ = [
    "CLAIM_BATCH",
    "CLAIM_FRESH_SECONDS",
    "UNREACHABLE_STREAK",
    "Audited",
    "Claim",
    "DryExecutor",
    "Executor",
    "LiveExecutor",
    "count_outcome",
    "trip_breaker",
]
