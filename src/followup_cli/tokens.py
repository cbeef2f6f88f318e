"""Access tokens: is each account's variable set, does the API accept the token, when does it
expire; and the refresh of a long-lived Instagram token.

Instagram API with Instagram Login (``graph.instagram.com``), documented endpoints:

* ``GET /{version}/me?fields=user_id,username``: the token works, and for which account
  (its ``user_id`` must be the account's ``ig_user_id``);
* ``GET /{version}/debug_token?input_token=…``: ``data.expires_at`` (Unix time, 0 = never),
  ``data.is_valid``, ``data.scopes``; when the API will not say, the expiry is unknown;
* ``GET /refresh_access_token?grant_type=ig_refresh_token&access_token=…`` (unversioned):
  ``{"access_token", "token_type", "expires_in"}``; the token must be at least 24 hours old
  and unexpired; the new one is valid 60 days.

A token is read from the environment variable the account names (``token_env``), sent in a
request, and never logged, printed (except the new one by ``tokens refresh``, on purpose,
for the operator's secret store) or stored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import Account, Config, Problem
from .errors import ConfigError
from .redact import redact, register


@dataclass
class TokenState:
    account_id: str
    enabled: bool
    token_env: str | None
    is_set: bool
    accepted: bool | None = None  # None: not asked (offline, or a channel without tokens)
    username: str | None = None
    user_id: str | None = None
    expires_at: datetime | None = None
    never_expires: bool = False
    scopes: list[str] = field(default_factory=list)
    problem: str | None = None

    def days_left(self, now: datetime) -> float | None:
        if self.expires_at is None:
            return None
        return (self.expires_at - now).total_seconds() / 86_400

    def as_dict(self, now: datetime) -> dict[str, Any]:
        d = asdict(self)
        d["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        left = self.days_left(now)
        d["days_left"] = round(left, 1) if left is not None else None
        return d


def uses_tokens(config: Config) -> bool:
    return config.channel.type == "instagram"


def env_states(config: Config, env: Mapping[str, str] | None = None) -> list[TokenState]:
    """Offline: whether each account's variable is set (no request)."""
    env = os.environ if env is None else env
    return [
        TokenState(
            a.id,
            a.enabled,
            a.token_env,
            bool(a.token_env and env.get(a.token_env)),
        )
        for a in config.accounts
    ]


def unset_problems(config: Config, env: Mapping[str, str] | None = None) -> list[Problem]:
    """Warnings for ``sequences check``: enabled accounts whose token variable is unset."""
    if not uses_tokens(config):
        return []
    out = []
    for s in env_states(config, env):
        if not s.enabled:
            continue
        if not s.token_env:
            what = "no token_env: the account has no access token; name its variable"
        elif not s.is_set:
            what = (
                f"environment variable {s.token_env} is not set here: the account's sends "
                "would stop with exit 3 (set it in the env file cron or systemd reads)"
            )
        else:
            continue
        out.append(Problem(None, f"accounts: {s.account_id}", what, "warning"))
    return out


class TokenClient:
    """The three token endpoints; ``timeout`` seconds per request. ``requests`` is imported
    here, not with the module: a run only asks which tokens are unset."""

    def __init__(self, api_base: str, api_version: str, timeout: float = 10) -> None:
        import requests

        self.api_base = api_base.rstrip("/")
        self.api_version = api_version.strip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self._request_errors = requests.RequestException

    def _get(self, path: str, params: dict[str, str], token: str) -> tuple[int, Any]:
        try:
            r = self.session.get(
                f"{self.api_base}{path}",
                params=params,
                headers={"Authorization": f"Bearer {token}"}
                if "access_token" not in params
                else {},
                timeout=self.timeout,
            )
        except self._request_errors as exc:
            # the exception's text may hold the URL, and so a token: name its type only
            raise TokenError(
                f"the API at {self.api_base} did not answer ({type(exc).__name__})"
            ) from None
        try:
            body = r.json()
        except ValueError:
            body = None
        return r.status_code, body

    def me(self, token: str) -> tuple[int, Any]:
        return self._get(f"/{self.api_version}/me", {"fields": "user_id,username"}, token)

    def debug(self, token: str) -> tuple[int, Any]:
        return self._get(f"/{self.api_version}/debug_token", {"input_token": token}, token)

    def refresh(self, token: str) -> tuple[int, Any]:
        return self._get(
            "/refresh_access_token",
            {"grant_type": "ig_refresh_token", "access_token": token},
            token,
        )

    def close(self) -> None:
        self.session.close()


class TokenError(Exception):
    pass


def _graph_error(body: Any) -> str:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = err.get("code")
        text = f"{err.get('message') or 'error'}" + (f" (code {code})" if code else "")
        return redact(text) or text  # an API that quotes the token back must not print it
    return "no Graph answer"


def check(
    config: Config,
    env: Mapping[str, str] | None = None,
    account: str | None = None,
    client: TokenClient | None = None,
) -> list[TokenState]:
    """Per account: set? accepted by the API? for which account? expiring when?"""
    env = os.environ if env is None else env
    states = [s for s in env_states(config, env) if account in (None, s.account_id)]
    if not uses_tokens(config):
        for s in states:
            s.problem = f"the {config.channel.type} channel uses no access token"
        return states
    own = client is None
    client = client or TokenClient(
        config.channel.api_base, config.channel.api_version, config.channel.timeout_seconds
    )
    try:
        for s in states:
            acct = config.account(s.account_id)
            assert acct is not None
            _check_one(s, acct, env, client)
    finally:
        if own:
            client.close()
    return states


def _check_one(s: TokenState, acct: Account, env: Mapping[str, str], client: TokenClient) -> None:
    if not s.token_env:
        s.problem = "no token_env in the config"
        return
    if not s.is_set:
        s.problem = f"{s.token_env} is not set"
        return
    token = env[s.token_env]
    register(token)
    try:
        status, body = client.me(token)
        if status != 200 or not isinstance(body, dict):
            s.accepted = False
            s.problem = f"the API rejects the token in {s.token_env}: {_graph_error(body)}"
            return
        s.accepted = True
        s.user_id = str(body.get("user_id") or body.get("id") or "") or None
        s.username = body.get("username")
        if acct.ig_user_id and s.user_id and s.user_id != acct.ig_user_id:
            s.problem = (
                f"the token in {s.token_env} belongs to Instagram account {s.user_id}"
                f"{' (@' + s.username + ')' if s.username else ''}, not ig_user_id "
                f"{acct.ig_user_id}"
            )
        status, body = client.debug(token)
        data = body.get("data") if isinstance(body, dict) else None
        if status == 200 and isinstance(data, dict):
            if data.get("is_valid") is False:
                s.accepted = False
                s.problem = f"the API says the token in {s.token_env} is not valid"
            exp = data.get("expires_at")
            if isinstance(exp, int | float):
                if exp == 0:
                    s.never_expires = True
                else:
                    s.expires_at = datetime.fromtimestamp(exp, UTC)
            s.scopes = list(data.get("scopes") or [])
    except TokenError as exc:
        s.problem = str(exc)


def refresh(
    config: Config,
    account_id: str,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> tuple[str, datetime | None]:
    """A new long-lived token for ``account_id`` (and when it expires). Writes nothing."""
    env = os.environ if env is None else env
    acct = config.account(account_id)
    if acct is None:
        raise ConfigError(f"tokens refresh {account_id}: no such account in the config")
    if not uses_tokens(config):
        raise ConfigError(f"the {config.channel.type} channel uses no access token to refresh")
    if not acct.token_env or not env.get(acct.token_env):
        raise ConfigError(
            f"tokens refresh {account_id}: {acct.token_env or 'token_env'} is not set; "
            "export the current token first (a token that expired cannot be refreshed)"
        )
    client = TokenClient(
        config.channel.api_base, config.channel.api_version, config.channel.timeout_seconds
    )
    register(env[acct.token_env])
    try:
        status, body = client.refresh(env[acct.token_env])
    except TokenError as exc:
        raise ConfigError(f"tokens refresh {account_id}: {exc}") from None
    finally:
        client.close()
    token = body.get("access_token") if isinstance(body, dict) else None
    if status != 200 or not token:
        raise ConfigError(
            f"tokens refresh {account_id}: the API refused: {_graph_error(body)} (a token must "
            "be at least 24 hours old and unexpired; an expired one needs a new login)"
        )
    expires_in = body.get("expires_in")
    when = now or datetime.now(UTC)
    expires = when + timedelta(seconds=expires_in) if isinstance(expires_in, int) else None
    return str(token), expires


__all__ = ["TokenState", "env_states", "unset_problems", "check", "refresh", "TokenClient"]
