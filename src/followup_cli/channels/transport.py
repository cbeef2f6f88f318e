"""How one POST goes out: on urllib3, as ``requests`` would send it (the environment's
proxies, NO_PROXY, CA bundle and netrc resolved by ``requests`` once per URL, the prepared
request kept and sent again with each body), its failures raised as ``requests``' adapter
raises them, and its answer's JSON read as ``requests.Response.json`` reads it. The error
table and the retries that use it are in ``http.py``."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.cookies import extract_cookies_to_jar
from requests.hooks import dispatch_hook
from requests.models import REDIRECT_STATI
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, get_netrc_auth
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    DecodeError,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import InvalidHeader as Urllib3InvalidHeader
from urllib3.exceptions import ProxyError as Urllib3ProxyError
from urllib3.exceptions import SSLError as Urllib3SSLError

_MAX_ROUTES = 64  # prepared POSTs kept per session (one per account and URL)


class Answer(NamedTuple):
    """What the error table reads from an HTTP answer."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes


@dataclass(frozen=True)
class _Route:
    """A POST prepared once by ``requests`` (URL, merged headers, netrc or URL credentials,
    proxies, CA bundle) and what its adapter would hand urllib3 for it: the pool (direct,
    through a proxy, TLS settings), the request target, the headers in their order, the
    timeout and the retries (none once a request may have left)."""

    template: requests.PreparedRequest
    settings: dict[str, Any]
    pool: Any  # urllib3.HTTPConnectionPool
    target: str
    headers: dict[str, str]
    timeout: urllib3.Timeout
    retries: Any  # urllib3.Retry


class EnvSession(requests.Session):
    """A ``requests.Session`` that reads the environment once per origin (scheme, host,
    port) instead of on every request: the proxies (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY),
    the CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) and ~/.netrc credentials resolve
    to what ``requests`` would resolve for the first request to that origin, and stay so
    for the session's life (a run). ``post_quick`` sends through urllib3 what
    ``requests`` prepared once; a redirect or a cookie is handled as ``requests`` does."""

    def __init__(self) -> None:
        super().__init__()
        self._settings: dict[tuple[str, str | None, int | None], dict[str, Any]] = {}
        self._netrc: dict[tuple[str, str | None, int | None], Any] = {}
        self._routes: dict[tuple[Any, ...], _Route] = {}

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        if proxies or stream is not None or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        key = _origin_key(url)
        settings = self._settings.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, {}, None, None, None)
            self._settings[key] = settings
        return {**settings, "proxies": dict(settings["proxies"])}

    def post_quick(
        self,
        url: str,
        headers: dict[str, str],
        timeout: tuple[float, float],
        json: Any = None,
        data: bytes | None = None,
    ) -> Answer:
        """``self.post(url, data=data, json=json, headers=headers, timeout=timeout)``: the
        same bytes on the wire, the same answer, the same exceptions (requests' own, as
        its adapter raises them), without ``requests``' per-call work. The request
        ``requests`` prepared the first time for this URL, these headers and this kind of
        body is sent again with this body, by urllib3, on the pool ``requests``' adapter
        chose for it. An answer that redirects or sets a cookie goes on through
        ``requests``' own handling; while the session holds a cookie every request is
        built in full, as ``requests`` builds it."""
        kind = "json" if json is not None else "data" if data else None
        if kind is None or len(self.cookies):
            return _answer(self.post(url, data=data, json=json, headers=headers, timeout=timeout))
        route = self._route(url, kind, headers, timeout)
        if route is None:
            return _answer(self.post(url, data=data, json=json, headers=headers, timeout=timeout))
        body = data if data else _json_bytes(json, route.template)
        sent = route.headers.copy()
        sent["Content-Length"] = str(len(body))
        try:
            raw = route.pool.urlopen(
                "POST", route.target, body=body, headers=sent, redirect=False,
                assert_same_host=False, preload_content=False, decode_content=False,
                retries=route.retries, timeout=route.timeout, chunked=False,
            )  # fmt: skip
        except (Urllib3Error, OSError) as exc:
            err = _as_requests_error(exc, route.template)
            if err is exc:
                raise
            raise err from exc
        hdrs = raw.headers
        if (
            (raw.status in REDIRECT_STATI and "location" in hdrs)
            or "set-cookie" in hdrs
            or "set-cookie2" in hdrs
        ):
            return self._finish(route, raw, body, timeout)
        try:
            content = raw.read(decode_content=True)
        except (Urllib3Error, OSError) as exc:
            err = _as_read_error(exc)
            if err is exc:
                raise
            raise err from exc
        return Answer(raw.status, hdrs, content)

    def _route(
        self, url: str, kind: str, headers: dict[str, str], timeout: tuple[float, float]
    ) -> _Route | None:
        """The prepared POST for this URL, these headers and this kind of body (a JSON
        body, or bytes), or None when ``requests`` must send it in full (an adapter that
        is not requests' own, response hooks)."""
        key = (url, kind, tuple(headers.items()), timeout)
        route = self._routes.get(key)
        if route is not None and route.pool.pool is not None:
            return route
        # first time, or the pool was closed (the session closed, or the pool manager
        # let it go): prepared again, as requests prepares every request
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()
        # the same kind of body sets the same body headers (Content-Type for JSON,
        # Content-Length for both), in the order requests sets them
        sample = requests.Request(
            "POST", url, headers=headers, json={} if kind == "json" else None,
            data=b"-" if kind == "data" else None,
        )  # fmt: skip
        template = self.prepare_request(sample)
        adapter = self.get_adapter(url=template.url)
        if type(adapter) is not HTTPAdapter or any(template.hooks.values()):
            return None
        settings = self.merge_environment_settings(template.url, {}, None, None, None)
        verify, cert, proxies = settings["verify"], settings["cert"], settings["proxies"]
        try:
            pool = adapter.get_connection_with_tls_context(template, verify, proxies, cert)
        except LocationValueError as e:
            raise requests.exceptions.InvalidURL(e, request=template) from None
        adapter.cert_verify(pool, template.url, verify, cert)
        route = self._routes[key] = _Route(
            template=template,
            settings=settings,
            pool=pool,
            target=adapter.request_url(template, proxies),
            headers=dict(template.headers),
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            retries=adapter.max_retries,
        )
        return route

    def _finish(self, route: _Route, raw: Any, body: bytes, timeout: tuple[float, float]) -> Answer:
        """The rest of ``requests.Session.send`` for an answer that redirects or sets a
        cookie: the response built by the adapter, hooks, cookies kept, redirects
        followed (a 307/308 sends this body again), the body read."""
        request = route.template.copy()
        request.body = body
        request.headers["Content-Length"] = str(len(body))
        kwargs = {"timeout": timeout, **route.settings}
        adapter = self.get_adapter(url=request.url)
        r = adapter.build_response(request, raw)
        r = dispatch_hook("response", request.hooks, r, **kwargs)
        extract_cookies_to_jar(self.cookies, request, r.raw)
        history = list(self.resolve_redirects(r, request, **kwargs))
        if history:
            history.insert(0, r)
            r = history.pop()
            r.history = history
        return _answer(r)

    def close(self) -> None:
        self._routes.clear()
        super().close()

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if request.auth is not None or self.auth or not self.trust_env:
            return super().prepare_request(request)
        key = _origin_key(request.url)
        if key not in self._netrc:
            self._netrc[key] = get_netrc_auth(request.url)
        request.auth = self._netrc[key]
        # the netrc answer is known: the base class must not look it up again (this
        # session is one thread's own, so the flag can be lowered for the call)
        self.trust_env = False
        try:
            return super().prepare_request(request)
        finally:
            self.trust_env = True


def _answer(r: requests.Response) -> Answer:
    return Answer(r.status_code, r.headers, r.content)


def _json_bytes(payload: Any, request: requests.PreparedRequest) -> bytes:
    """A JSON body as ``requests`` encodes it (``PreparedRequest.prepare_body``)."""
    try:
        return jsonlib.dumps(payload, allow_nan=False).encode("utf-8")
    except ValueError as ve:
        raise requests.exceptions.InvalidJSONError(ve, request=request) from None


def _as_requests_error(exc: BaseException, request: requests.PreparedRequest) -> BaseException:
    """A urllib3 failure of ``urlopen`` as ``requests``' adapter raises it (``HTTPAdapter
    .send``): a connect timeout apart from a refused or unresolved connection, a read
    timeout apart from a connection lost after sending. Anything else as it came."""
    exc_ = requests.exceptions
    if isinstance(exc, (ProtocolError, OSError)):
        return exc_.ConnectionError(exc, request=request)
    if isinstance(exc, MaxRetryError):
        reason = exc.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return exc_.ConnectTimeout(exc, request=request)
        if isinstance(reason, ResponseError):
            return exc_.RetryError(exc, request=request)
        if isinstance(reason, Urllib3ProxyError):
            return exc_.ProxyError(exc, request=request)
        if isinstance(reason, Urllib3SSLError):
            return exc_.SSLError(exc, request=request)
        return exc_.ConnectionError(exc, request=request)
    if isinstance(exc, ClosedPoolError):
        return exc_.ConnectionError(exc, request=request)
    if isinstance(exc, Urllib3ProxyError):
        return exc_.ProxyError(exc)
    if isinstance(exc, Urllib3SSLError):
        return exc_.SSLError(exc, request=request)
    if isinstance(exc, ReadTimeoutError):
        return exc_.ReadTimeout(exc, request=request)
    if isinstance(exc, Urllib3InvalidHeader):
        return exc_.InvalidHeader(exc, request=request)
    return exc


def _as_read_error(exc: BaseException) -> BaseException:
    """A urllib3 failure while reading the answer's body as ``requests`` raises it
    (``Response.iter_content``)."""
    exc_ = requests.exceptions
    if isinstance(exc, ProtocolError):
        return exc_.ChunkedEncodingError(exc)
    if isinstance(exc, DecodeError):
        return exc_.ContentDecodingError(exc)
    if isinstance(exc, ReadTimeoutError):
        return exc_.ConnectionError(exc)
    if isinstance(exc, Urllib3SSLError):
        return exc_.SSLError(exc)
    return exc


def answer_json(answer: Answer) -> Any:
    """The answer's body as JSON, read as ``requests.Response.json`` reads it; None when it
    is not JSON."""
    content = answer.content
    if content.isascii():  # every charset a server would name reads ASCII the same
        try:
            return jsonlib.loads(content)
        except ValueError:
            return None
    r = requests.Response()
    r._content = content
    r.headers = CaseInsensitiveDict(answer.headers)
    r.encoding = get_encoding_from_headers(r.headers)
    try:
        return r.json()
    except ValueError:
        return None


def _origin_key(url: Any) -> tuple[str, str | None, int | None]:
    """What the environment settings of a URL depend on: its scheme, host and port."""
    parts = urlsplit(url.decode() if isinstance(url, bytes) else str(url))
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.scheme.lower(), parts.hostname, port)
