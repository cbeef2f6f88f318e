"""What a value in sequences.yaml may be: the operators, the default opt-out keywords, the
documented ranges, the base model every section shares (unknown keys forbidden, numbers
finite, frozen) and the value checks more than one section uses."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict

from ..leadcolumns import COLUMN_NAMES

LEAD_COLUMNS = COLUMN_NAMES
OPERATORS = ("eq", "ne", "in", "not_in", "between", "gt", "gte", "lt", "lte", "exists", "contains")
# Opt-out keywords matched as whole words or phrases in a lead's last message, after
# Unicode normalisation (NFKC, case-folded, accents and repeated spaces ignored): "ＳＴＯＰ",
# "Stop!" and "no  mas mensajes" all match. Single words only where they are unambiguous in
# a sales conversation: "cancelar" ("posso cancelar a qualquer momento?"), "basta" ("basta
# clicar"), "sair" or "plus de messages" ("more messages" in French) would opt out people
# asking ordinary questions, so those languages get phrases instead.
DEFAULT_OPTOUT_KEYWORDS: tuple[str, ...] = (
    # English
    "stop", "unsubscribe", "no more messages", "remove me from your list",
    "do not message me", "don't message me", "do not contact me", "don't contact me",
    "leave me alone",
    # Spanish
    "baja", "darme de baja", "no más mensajes", "no quiero más mensajes", "no me escribas",
    "deja de escribirme", "dejen de escribirme", "desuscribir", "desuscribirme",
    "cancelar suscripción",
    # Portuguese
    "parar", "pare", "não quero mais mensagens", "chega de mensagens", "não me mande mais",
    "descadastrar", "descadastre", "cancelar inscrição",
    # French
    "arrêter", "arrêtez", "désabonner", "désinscrire", "désinscription", "ne plus recevoir",
    "plus aucun message", "ne m'écrivez plus",
    # German
    "stopp", "abmelden", "abbestellen", "keine nachrichten mehr", "keine weiteren nachrichten",
    "nicht mehr schreiben",
    # Italian
    "disiscrivimi", "disiscrivere", "cancellami", "basta messaggi", "non scrivermi più",
    "non voglio più messaggi", "annulla iscrizione",
)  # fmt: skip
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")

# The documented ranges (README, "Configuration"). Every number in the file is finite
# (`.inf` and `.nan` are errors) and within these bounds, so no value can overflow a date,
# a counter or the database at 9:00.
HOURS_MAX = 8760  # delays, silences, intervals, windows: at most a year
SCORE_BOUND = 1_000_000  # min_score, max_score, priority: within +-1e6
COUNT_MAX = 1000  # follow-ups per lead, per day, per sequence
WEIGHT_MAX = 1_000_000
RATE_MAX = 1_000_000  # messages_per_hour (Instagram allows about 300 a second)
TEXT_BYTES_MAX = 100_000  # channel.max_text_bytes
# The file itself: its size, and how many YAML nodes it expands to (anchors and aliases
# count once per use, so an "alias bomb" stops here instead of eating the memory).
FILE_BYTES_MAX = 1_000_000
NODES_MAX = 100_000
DEPTH_MAX = 64
# The channel's own limit on a text message, in UTF-8 bytes (Instagram refuses longer ones
# with code 100). None: no limit but the template sandbox's.
TEXT_LIMITS: dict[str, int | None] = {"instagram": 1000, "webhook": None, "console": None}
LOOPBACK_HOSTS = ("localhost",)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _check_url(value: str, what: str) -> str:
    """An absolute https:// URL; plain http:// only to this machine (tests, a local relay)."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ValueError(
            f"{what} {value!r} is not an absolute URL; write it as https://host[/path]"
        )
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError(
            f"{what} {value!r}: plain http:// sends tokens and messages in clear text; use "
            "https:// (http:// is allowed only to localhost/127.0.0.1, for tests)"
        )
    return value


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as Europe/Madrid"
        ) from exc
    return value


def _check_keywords(v: tuple[str, ...] | None) -> tuple[str, ...] | None:
    for kw in v or ():
        if not kw.strip():
            raise ValueError("a blank opt-out keyword matches nothing; remove it")
    return v
