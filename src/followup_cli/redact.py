"""Secrets stay secret: one redaction step for every text that comes from outside.

An API error body, an exception's text or a URL may quote an access token, a client
secret or a database password. Every such text passes :func:`redact` before it is stored
(tracking ``error_message``, run notes, events, audit detail), logged (a filter on every
handler, ``logsetup``) or printed (the CLI's error lines, ``--json``, reports). It removes:

* the secrets in use by this process, registered with :func:`register` (the account
  tokens read from the environment, the webhook secret): the exact value and its URL- and
  JSON-encoded forms;
* ``access_token=`` / ``input_token=`` / ``client_secret=`` / ``appsecret_proof=`` /
  ``password=`` (and a few more) values in query strings, libpq keyword strings
  (``password='p w'``) and JSON (``"access_token": "..."``);
* ``Authorization:`` header values, ``Bearer …`` / ``OAuth …`` / ``Basic …`` credentials;
* the password in a URL's user info (``postgresql://user:pw@host/db``).

Each is replaced with ``***``; the rest of the text stays as it was, readable. A secret
shorter than :data:`MIN_SECRET` characters is not registered (it would blank ordinary
words); the patterns still catch it where it is named (``access_token=x``).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET = 8

# Names whose value is a credential wherever it appears as name=value or "name": "value".
_KEYS = (
    r"access_token|input_token|refresh_token|fb_exchange_token|client_secret|"
    r"appsecret_proof|app_secret|password|passwd|secret_key|api_key|apikey|sslpassword"
)
# name=value in a query string or a libpq keyword string; the value may be quoted
# ('p w' with \' escapes) and the '=' may come URL-encoded (%3D) inside another URL.
_KEY_VALUE = re.compile(
    rf"(?i)(?:(?<![A-Za-z0-9])|(?<=%3F)|(?<=%26))(?P<key>{_KEYS})(?P<eq>\s*=\s*|%3D)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&'\",;#)}\]>]+)"
)
# "name": "value" in JSON (or a Python dict's repr with single quotes).
_JSON_VALUE = re.compile(
    rf"(?i)(?P<key>[\"'](?:{_KEYS}|authorization)[\"']\s*:\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
)
# An Authorization header (or a header dict's repr): keep the scheme, hide the credentials.
_AUTH_HEADER = re.compile(
    r"(?i)(?P<key>\bauthorization[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(?P<scheme>bearer|oauth|basic|token|digest)\s+)?(?P<value>[^\s\"',;}\]]+)"
)
# A credential after its scheme anywhere in prose: "Bearer abc…", "OAuth abc…". A word
# that is plainly prose ("OAuth access token", "Bearer token", "OAuth graph.example.com")
# is left alone: the value must look like a credential (16+ token characters, with a
# letter and a digit).
_SCHEME_VALUE = re.compile(
    r"(?i)\b(?P<scheme>bearer|oauth|basic)\s+"
    r"(?P<value>(?=[A-Za-z0-9._~+=|%-]*\d)(?=[A-Za-z0-9._~+=|%-]*[A-Za-z])"
    r"[A-Za-z0-9._~+=|%-]{16,})"
)
# user:password@ in a URL (postgresql://, postgres://, https://, amqp://, …).
_URL_USERINFO = re.compile(
    r"(?i)(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@?#'\"]*):(?P<value>[^\s'\"<>/]*)@"
)

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def _forms(value: str) -> set[str]:
    """A secret as it may appear in a text: raw, URL-encoded, JSON-escaped."""
    forms = {value, quote(value, safe=""), quote_plus(value), quote(value)}
    forms.add(json.dumps(value)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    return {f for f in forms if f}


def _alternation(secrets: Iterable[str]) -> re.Pattern[str]:
    forms = set().union(*(_forms(s) for s in secrets))
    # longest first, so a secret that contains another is removed whole
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))


def _has_word(value: str) -> bool:
    return re.search(r"\w", value) is not None


def register(*values: str | None) -> None:
    """Add secrets in use by this process (tokens, signing secrets): from now on
    :func:`redact` removes them from every text. Empty and very short values are ignored."""
    global _pattern
    fresh = {
        v.strip()
        for v in values
        if isinstance(v, str) and len(v.strip()) >= MIN_SECRET and _has_word(v)
    }
    with _lock:
        if fresh <= _secrets:
            return
        _secrets.update(fresh)
        _pattern = _alternation(_secrets)


def register_env(env: Mapping[str, str], names: Iterable[str | None]) -> None:
    """Register the values of the environment variables ``names`` (those that are set)."""
    register(*(env.get(n) for n in names if n))


# Environment variables whose values are secrets whatever the config says (the body
# encryption key, the suppression key, tokens named the conventional way).
_SECRET_ENV = re.compile(r"^FOLLOWUP_\w*(TOKEN|SECRET|KEY|PASSWORD|PASSWD)\w*$")


def register_environment(env: Mapping[str, str] | None = None) -> None:
    """Register the values of the ``FOLLOWUP_*TOKEN*/SECRET*/KEY*/PASSWORD*`` variables."""
    env = os.environ if env is None else env
    register_env(env, [k for k in env if _SECRET_ENV.match(k)])


def register_config(config: Any, env: Mapping[str, str] | None = None) -> None:
    """Register the secrets a loaded config points at: every account's token variable and
    the webhook signing secret's variable (the values, read from ``env``)."""
    env = os.environ if env is None else env
    names = [getattr(a, "token_env", None) for a in getattr(config, "accounts", ())]
    names.append(getattr(getattr(config, "channel", None), "secret_env", None))
    register_env(env, names)
    register_environment(env)


def clear() -> None:
    """Forget the registered secrets (tests)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def registered() -> int:
    """How many secrets are registered."""
    return len(_secrets)


def _key_value(m: re.Match[str]) -> str:
    value = m["value"]
    quote_char = value[0] if value[:1] in ("'", '"') else ""
    # "password=pw: cannot connect": a colon or full stop that ends the value is the
    # sentence's, not the secret's (one character of a secret that ends so is kept)
    tail = value[-1] if not quote_char and len(value) > 1 and value[-1] in ":." else ""
    return f"{m['key']}{m['eq']}{quote_char}{MASK}{quote_char}{tail}"


def _json_value(m: re.Match[str]) -> str:
    q = m["value"][0]
    return f"{m['key']}{q}{MASK}{q}"


def _auth_header(m: re.Match[str]) -> str:
    scheme = f"{m['scheme']} " if m["scheme"] else ""
    return f"{m['key']}{scheme}{MASK}"


def redact(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """``text`` with every secret replaced by ``***``: the registered secrets, ``secrets``
    (extra exact values for this call), and credentials the patterns recognise. ``None``
    stays ``None``; a text without secrets comes back unchanged."""
    if not text:
        return text
    if not isinstance(text, str):
        text = str(text)
    if "=" in text or "%3D" in text or "%3d" in text:
        text = _KEY_VALUE.sub(_key_value, text)
    if ":" in text:
        text = _JSON_VALUE.sub(_json_value, text)
        text = _URL_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _AUTH_HEADER.sub(_auth_header, text)
    text = _SCHEME_VALUE.sub(lambda m: f"{m['scheme']} {MASK}", text)
    # exact values last: nothing after this step can bring one back
    extra = [s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET and _has_word(s)]
    pattern = _alternation({*extra, *_secrets}) if extra else _pattern
    if pattern is not None:
        text = _until_gone(pattern, text)
    return text


def _until_gone(pattern: re.Pattern[str], text: str) -> str:
    # A replacement next to a secret's own characters may form it anew ("a***" for the
    # secret "a**"): replace until none is left. Every pass removes at least one word
    # character (a secret holds one), so this ends.
    while pattern.search(text):
        text = pattern.sub(MASK, text)
    return text


def redact_obj(value: Any) -> Any:
    """Every string inside ``value`` (dicts, lists, tuples; keys too) redacted; the rest
    as it is. For JSON output and for structures stored as JSON."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {(redact(k) if isinstance(k, str) else k): redact_obj(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_obj(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_obj(v) for v in value)
    return value


__all__ = [
    "MASK",
    "redact",
    "redact_obj",
    "register",
    "register_env",
    "register_environment",
    "register_config",
    "clear",
    "registered",
]
