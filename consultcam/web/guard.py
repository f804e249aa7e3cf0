"""What a request must show before any endpoint runs: a body within its route's limit, JSON where the API
takes JSON, and, for an unsafe request (POST, PUT, PATCH, DELETE), that it comes from consultcam's own pages.

One pure ASGI middleware, `RequestGuard`, so every route (and every route added later) is covered the same
way; refusals use the `{error, detail}` body.

Body limits. Each route has one (`body_rules`): JSON calls `CONSULTCAM_MAX_JSON_BODY_BYTES` (64 KiB), a
photo's PATCH (edits with annotations) `CONSULTCAM_MAX_EDIT_BODY_BYTES` (256 KiB), the folder store's signed
PUT `CONSULTCAM_MAX_UPLOAD_BYTES`. A `Content-Length` over the limit is answered 413 before a byte of the body
is read; a chunked body is counted as it streams and answered 413 once it passes the limit. The 413 closes
the connection, so the rest is never read (RFC 9110 §15.5.14).

JSON. Under `/api/` a request body must be `application/json` (or `…+json`), else 415: a browser sends a
cross-site form or a no-cors `fetch` only as `text/plain`, urlencoded or multipart, or without a type.

CSRF (OWASP CSRF Prevention Cheat Sheet: standard headers, Fetch Metadata, signed double submit). Two checks:

- Provenance, for every unsafe request: `Origin`, else `Sec-Fetch-Site`, else `Referer` must be our own origin
  (`CONSULTCAM_PUBLIC_URL`'s, or the request's own `scheme://Host`). Same site is not enough: another port
  of this host is the same site and another origin. `Origin: null` (our pages' forms, under
  `Referrer-Policy: no-referrer`) defers to `Sec-Fetch-Site`. A request that says nothing of where it came
  from is not from a browser's page; the token below still applies to it.
- Token, for an unsafe request that carries a credential cookie (the clinician's or a phone's) and no
  `Authorization: Bearer` (a bearer token is never sent by a browser on its own, so it needs none): the header
  `X-CSRF-Token` (or the form field `csrf_token`) must be `csrf_token(secret, name, value)` of one of those
  cookies: an HMAC bound to the cookie, which another origin can neither read (it is in our pages and our
  responses only, never in a cookie another port could read) nor make.

The page gets its token from `<meta name="csrf-token">` (the template global `csrf_token(request)`) and
from the `X-CSRF-Token` header sent with every response (static assets aside) to a request with a
credential cookie, or that sets one (pairing, signing in), which `web/static/js/api.js` keeps and sends back.

Requests authorised by a signature in their URL (the folder store's PUT) carry no authority from cookies, so
neither check applies to them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request, cookie_parser
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consultcam.auth.principals import CLINICIAN_COOKIE, PHONE_COOKIE
from consultcam.config import Settings
from consultcam.web.errors import error_response

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Cookies that carry authority, in the order their token is offered to a page (the clinician's first).
CREDENTIAL_COOKIES = (CLINICIAN_COOKIE, PHONE_COOKIE)
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


def csrf_token(secret_key: bytes, cookie_name: str, cookie_value: str) -> str:
    """The CSRF token bound to one credential cookie: base64url (no padding) of
    HMAC-SHA256(secret, "consultcam-csrf|<name>|<value>"), 43 characters. A new cookie value (signing in
    again, pairing again) makes a new token; the secret is `Settings.secret_key`, shared by all web
    processes."""
    message = f"consultcam-csrf|{cookie_name}|{cookie_value}".encode()
    digest = hmac.new(secret_key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def credential_cookies(cookies: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (name, value) of each credential cookie present, in CREDENTIAL_COOKIES order."""
    return [(name, cookies[name]) for name in CREDENTIAL_COOKIES if cookies.get(name)]


def page_csrf_token(request: Request) -> str:
    """The CSRF token for the page `request` renders (template global `csrf_token`): bound to the first
    credential cookie the browser sent, or "" when it sent none (a phone before pairing, a first sign-in)."""
    present = credential_cookies(request.cookies)
    if not present:
        return ""
    settings: Settings = request.app.state.runtime.settings
    return csrf_token(settings.secret_key, *present[0])


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of a URL or origin, lower case, without the scheme's default port (RFC 6454
    §6.2); None when it has no scheme or host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def human_bytes(count: int) -> str:
    """65536 → "64 KiB", 10485760 → "10 MiB" (IEC 80000-13), for error details."""
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count >= size:
            value = count / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{count} bytes"


@dataclass(frozen=True)
class BodyRule:
    """What a route takes: `limit` bytes of body; `json`: a body must be application/json; `signed`:
    authorised by a signature in its URL, not by cookies (no CSRF check)."""

    limit: int
    json: bool = True
    signed: bool = False


def body_rules(settings: Settings) -> dict[tuple[str, str], BodyRule]:
    """The routes whose rule is not the default (`max_json_body_bytes`, JSON under /api/), by (method, the
    route's path template as its endpoint declares it)."""
    return {
        ("PATCH", "/api/sessions/{session_id}/images/{image_id}"): BodyRule(settings.max_edit_body_bytes),
        ("PUT", "/api/storage/{key:path}"): BodyRule(settings.max_upload_bytes, json=False, signed=True),
    }


def _check_json(content_type: str) -> None:
    """Refuse (415) a body that is not `application/json` or `application/*+json` (RFC 6839 §3.1)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    came = f"as {content_type}" if content_type else "without a Content-Type"
    raise _Refusal(
        415,
        "UnsupportedMediaType",
        f"This call takes a JSON body: send it with Content-Type: application/json (this one came {came}).",
    )


def _has_bearer(headers: Headers) -> bool:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


class _Refusal(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


class RequestGuard:
    """Pure ASGI middleware enforcing body limits, JSON bodies and the CSRF checks (module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.secret_key = settings.secret_key
        # Path templates compiled as Starlette's router compiles them.
        self.rules = [
            (method, compile_path(path)[0], rule) for (method, path), rule in body_rules(settings).items()
        ]
        self.default_limit = settings.max_json_body_bytes
        self.public_origin = origin_of(settings.public_url) if settings.public_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cookies = cookie_parser(headers.get("cookie", ""))
        # Not on assets: they may sit in a shared cache (no-cache, not no-store) and reach another user.
        if not scope["path"].startswith("/static/"):
            send = self._sending_token(send, credential_cookies(cookies))
        length_text = headers.get("content-length")
        length = int(length_text) if length_text and length_text.isdigit() else None
        has_body = bool(length) or "transfer-encoding" in headers
        unsafe = scope["method"] in UNSAFE_METHODS
        if not unsafe and not has_body:
            await self.app(scope, receive, send)
            return
        rule = self._rule(scope)
        try:
            if length is not None and length > rule.limit:
                raise self._too_large(rule)
            if has_body and rule.json and scope["path"].startswith("/api/"):
                _check_json(headers.get("content-type", ""))
            body_limited = _LimitedBody(receive, rule.limit)
            if unsafe and not rule.signed:
                self._check_provenance(scope, headers)
                await self._check_token(headers, cookies, body_limited)
        except _Refusal as refusal:
            await self._refuse(scope, receive, send, refusal)
            return
        await self._run(scope, body_limited, send, rule)

    # -- body limits --------------------------------------------------------------------------------------

    def _rule(self, scope: Scope) -> BodyRule:
        for method, pattern, rule in self.rules:
            if scope["method"] == method and pattern.fullmatch(scope["path"]):
                return rule
        return BodyRule(self.default_limit)

    @staticmethod
    def _too_large(rule: BodyRule) -> _Refusal:
        what = "the upload URL's" if rule.signed else "this call's"
        hint = "" if rule.signed else " Photos go to the upload URL from POST …/uploads, not in a JSON body."
        detail = f"The request body is over {what} limit of {human_bytes(rule.limit)}.{hint}"
        return _Refusal(413, "PayloadTooLarge", detail)

    async def _run(self, scope: Scope, body: _LimitedBody, send: Send, rule: BodyRule) -> None:
        """Run the app; when the body passes the limit while streaming, answer 413 at once and tell the app
        the client left (Starlette's `ClientDisconnect`), dropping whatever it still sends."""
        started = refused = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def receive() -> Message:
            nonlocal refused
            message = await body.receive()
            if body.over and not refused:
                if started:  # too late for a 413: end the exchange instead
                    return {"type": "http.disconnect"}
                refused = True
                await self._refuse(scope, body.source, send, self._too_large(rule))
                return {"type": "http.disconnect"}
            return message

        try:
            await self.app(scope, receive, guarded_send)
        except Exception:
            if not refused:
                raise
            # The app failed on the body it never got (ClientDisconnect); the client already has its 413.

    # -- CSRF ----------------------------------------------------------------------------------------------

    def _our_origins(self, scope: Scope, headers: Headers) -> set[str]:
        ours = {self.public_origin} if self.public_origin else set()
        host = headers.get("host")
        own = origin_of(f"{scope['scheme']}://{host}") if host else None
        return ours | ({own} if own else set())

    def _check_provenance(self, scope: Scope, headers: Headers) -> None:
        """Refuse a browser request that says it comes from another origin (Fetch Standard §3.1, `Origin`;
        W3C Fetch Metadata, `Sec-Fetch-Site`; RFC 9110 §10.1.3, `Referer`)."""
        ours = self._our_origins(scope, headers)
        origin, site, referer = headers.get("origin"), headers.get("sec-fetch-site"), headers.get("referer")
        if origin and origin != "null":
            claim, ok = f"Origin {origin}", origin_of(origin) in ours
        elif site:
            claim, ok = f"Sec-Fetch-Site: {site}", site == "same-origin"
        elif referer:
            claim, ok = "a Referer of another origin", origin_of(referer) in ours
        else:
            return
        if not ok:
            raise _Refusal(
                403,
                "CrossOriginRequest",
                f"This request came from a page of another origin ({claim}), not from consultcam's own "
                "pages, so it was refused. Use consultcam's pages; behind a proxy, CONSULTCAM_PUBLIC_URL "
                "must be the address people open.",
            )

    async def _check_token(self, headers: Headers, cookies: Mapping[str, str], body: _LimitedBody) -> None:
        present = credential_cookies(cookies)
        if not present or _has_bearer(headers):
            return
        token = headers.get(CSRF_HEADER)
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if token is None and content_type == "application/x-www-form-urlencoded":
            data = await body.read_all()
            if body.over:
                raise _Refusal(413, "PayloadTooLarge", f"The form is over {human_bytes(body.limit)}.")
            try:
                fields = parse_qs(data.decode("latin-1"), max_num_fields=100).get(CSRF_FIELD)
                token = fields[0] if fields else None
            except ValueError:  # more fields than any form of ours has
                token = None
        if not token:
            raise _Refusal(
                403,
                "CsrfTokenMissing",
                "This request carries consultcam's sign-in cookie but not the page's CSRF token "
                f"({CSRF_HEADER}), so it was refused: it may have come from another site. Reload the page "
                "and try again; an API client sends Authorization: Bearer instead of the cookie.",
            )
        sent = token.encode()  # bytes: compare_digest refuses non-ASCII str, and a header may hold any
        if not any(hmac.compare_digest(sent, csrf_token(self.secret_key, *c).encode()) for c in present):
            raise _Refusal(
                403,
                "CsrfTokenInvalid",
                "This request's CSRF token does not belong to this browser's sign-in (it may be from before "
                "it signed in or paired again), so it was refused. Reload the page and try again.",
            )

    def _sending_token(self, send: Send, present: list[tuple[str, str]]) -> Send:
        """`send`, adding `X-CSRF-Token` to a response for a browser with a credential cookie: the one the
        response sets (pairing, signing in), else the first the request carried."""

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                cookie = _set_credential(headers.getlist("set-cookie")) or (present[0] if present else None)
                if cookie:
                    headers[CSRF_HEADER] = csrf_token(self.secret_key, *cookie)
            await send(message)

        return sending

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: _Refusal) -> None:
        # A refused body is not read: the connection closes after the answer.
        headers = {"Connection": "close"} if refusal.status == 413 else None
        response = error_response(refusal.status, refusal.error, refusal.detail, headers)
        await response(scope, receive, send)


def _set_credential(set_cookies: Iterable[str]) -> tuple[str, str] | None:
    """The (name, value) of a credential cookie that these Set-Cookie headers set (not delete)."""
    for header in set_cookies:
        parsed = SimpleCookie()
        try:
            parsed.load(header)
        except Exception:  # noqa: S112 (a cookie we cannot parse is not one we set)
            continue
        for name in CREDENTIAL_COOKIES:
            morsel = parsed.get(name)
            if morsel is not None and morsel.value and morsel.value != '""' and morsel["max-age"] != "0":
                return name, morsel.value
    return None


class _LimitedBody:
    """The request's `receive`, counting body bytes: `over` once more than `limit` arrived. `read_all`
    reads the whole body (up to the limit) and replays it to whoever receives next."""

    def __init__(self, source: Receive, limit: int) -> None:
        self.source, self.limit = source, limit
        self.received, self.over = 0, False
        self._replay: list[Message] = []

    async def receive(self) -> Message:
        if self._replay:
            return self._replay.pop(0)
        message = await self.source()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.over = self.over or self.received > self.limit
        return message

    async def read_all(self) -> bytes:
        chunks, more = [], True
        while more and not self.over:
            message = await self.receive()
            if message["type"] != "http.request":
                self._replay.append(message)
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        self._replay.insert(0, {"type": "http.request", "body": body, "more_body": False})
        return body
