"""What an API answer means for the rest of an account's run: its counters, and the account
stopped (with one line naming it and what to look at) when nothing more can go out."""

from __future__ import annotations

from ..channels.base import SendResult
from ..config import Account, Settings
from ..results import AccountResult

UNREACHABLE_STREAK = 3  # sends in a row that found no API stop an account that it once reached


def count_outcome(res: AccountResult, account: Account, result: SendResult) -> None:
    """What an API answer means for the rest of the account's run: its counters, and the
    account stopped when the answer says nothing more can go out in this run."""
    if result.kind != "unreachable" and result.outcome != "cancelled" and result.attempts:
        res.reached, res.unreachable_streak = True, 0
    if result.outcome == "sent":
        res.sent += 1
        res.attempts += 1
    elif result.outcome == "failed":
        res.failed[str(result.error_code or result.http_status or "error")] += 1
        res.attempts += 1
        res.breaker_failures += 1
    elif result.outcome == "unknown":
        res.unknown += 1
        res.attempts += 1
    elif result.outcome == "deferred" and result.kind == "unreachable":
        res.deferred["unreachable"] += 1
        res.unreachable_streak += 1
        if not res.reached or res.unreachable_streak >= UNREACHABLE_STREAK:
            res.stopped = res.stopped or _unreachable_line(account, res, result)
    elif result.outcome == "deferred":
        res.deferred["throttled" if result.kind == "throttle" else "transient"] += 1
        if result.kind == "throttle":
            res.stopped = res.stopped or (
                f"throttled by the API (code {result.error_code or result.http_status}); "
                "the rest waits for the next run"
            )
    elif result.outcome == "cancelled":
        res.skipped["opted_out_during_send"] += 1
    else:  # account_fatal
        res.deferred["account_stopped"] += 1
        res.stopped = _account_stop_line(account, result)


def trip_breaker(res: AccountResult, account: Account, st: Settings) -> None:
    """Stop the account for this run once too many of its sends failed."""
    if (
        not res.stopped
        and res.attempts >= st.breaker_min_sends
        and res.breaker_failures / res.attempts > st.breaker_failure_rate
    ):
        res.stopped = (
            f"circuit breaker: {res.breaker_failures} of {res.attempts} sends failed "
            f"(over {st.breaker_failure_rate:.0%}); "
            f"account {account.id} stopped for this run"
        )


def _unreachable_line(account: Account, res: AccountResult, result: SendResult) -> str:
    """One line naming the account and the URL nothing answered at."""
    what = result.error_message or "no connection"
    if res.reached:
        return (
            f"account {account.id} stopped: the API became unreachable ({what}) for "
            f"{res.unreachable_streak} sends in a row; the rest waits for the next run"
        )
    return (
        f"account {account.id} stopped: the API was unreachable on every attempt of this run "
        f"({what}); check channel.api_base and the network; its due follow-ups wait"
    )


def _account_stop_line(account: Account, result: SendResult) -> str:
    """One line naming the account, what the API said, and the token variable to look at."""
    code = result.error_code
    what = result.error_message or "account error"
    if code is not None:
        what += f" (code {code})"
    var = f"${account.token_env}" if account.token_env else "its token (no token_env configured)"
    if code == 368:
        hint = f"Meta blocked the account for policy reasons; sending resumes when lifted ({var})"
    elif code == 10 or code == 3 or (code is not None and 200 <= code <= 299):
        hint = f"the token in {var} lacks a messaging permission"
    else:
        hint = f"check its token in {var}"
    return f"account {account.id} stopped: {what}; {hint}"
