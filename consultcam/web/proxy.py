"""Who the client is, and which scheme it used, when a reverse proxy stands in between.

A TLS proxy (docs/deploy.md) talks plain HTTP to consultcam and says what it saw in `Forwarded` (RFC 7239)
or the older `X-Forwarded-For` / `X-Forwarded-Proto`. Anyone can send those headers, so they count only when
the connection comes from a proxy listed in `CONSULTCAM_TRUSTED_PROXIES`; from anyone else they are ignored
and the peer is the client. The scheme decides the cookies' `Secure` flag, HSTS and the request's own origin
(CSRF); the client address is what per-client limits count.

`consultcam serve` runs uvicorn with `proxy_headers=False`, so this middleware is the only place that reads
them, whichever server runs the app.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

Network = IPv4Network | IPv6Network
_SCHEMES = {"http": ("http", "ws"), "https": ("https", "wss")}


def networks(values: Iterable[str]) -> tuple[Network, ...]:
    """`["127.0.0.1", "10.0.0.0/8"]` → networks (an address is a /32 or /128). Raises ValueError."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip())


def _address(value: str | None) -> IPv4Address | IPv6Address | None:
    """An RFC 7239 §6 node (`192.0.2.4`, `192.0.2.4:80`, `[2001:db8::1]:80`, maybe quoted) or an
    X-Forwarded-For entry as an IP address; None for `unknown`, obfuscated ids and garbage."""
    if not value:
        return None
    node = value.strip().strip('"')
    if node.startswith("["):
        node = node[1 : node.find("]")] if "]" in node else ""
    elif node.count(":") == 1:
        node = node.split(":", 1)[0]
    try:
        return ipaddress.ip_address(node)
    except ValueError:
        return None


def _split(text: str, separator: str) -> list[str]:
    """Split on `separator` outside quoted strings (RFC 7230 §3.2.6 quoted-string, with backslash escapes)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _list(values: Iterable[str]) -> list[str]:
    """The comma-separated entries of a header sent one or more times, stripped, empties dropped."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def forwarded_elements(value: str) -> list[dict[str, str]]:
    """RFC 7239 §4: `for=192.0.2.60;proto=http, for="[2001:db8::1]"` → one dict per element (the proxy
    nearest to us is last), parameter names in lower case, values unquoted."""
    elements = []
    for element in _split(value, ","):
        pairs: dict[str, str] = {}
        for pair in _split(element, ";"):
            name, sep, raw = pair.partition("=")
            if sep and name.strip():
                text = raw.strip()
                if len(text) >= 2 and text[0] == text[-1] == '"':
                    text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                pairs[name.strip().lower()] = text
        elements.append(pairs)
    return elements


class TrustedProxyHeaders:
    """Pure ASGI middleware: when the peer is a trusted proxy, set `scope["scheme"]` and `scope["client"]`
    from `Forwarded`, else from `X-Forwarded-For`/`-Proto`.

    The hops are read right to left (the nearest proxy appends last), skipping those that are themselves
    trusted proxies; the first hop that is not is the client, and the scheme is the one that hop used
    (`proto` of its `Forwarded` element, or the matching `X-Forwarded-Proto` entry; a single
    `X-Forwarded-Proto`, as nginx's `proxy_set_header X-Forwarded-Proto $scheme` sends, is the edge's)."""

    def __init__(self, app: ASGIApp, trusted: Sequence[str] = ()) -> None:
        self.app = app
        self.trusted = networks(trusted)

    def _trusted(self, address: IPv4Address | IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if (
            scope["type"] in ("http", "websocket")
            and self.trusted
            and peer
            and self._trusted(_address(str(peer[0])))
        ):
            client, scheme = self._resolve(Headers(scope=scope))
            if client is not None or scheme is not None:
                scope = dict(scope)
                if client is not None:
                    scope["client"] = (client, 0)
                if scheme is not None:
                    scope["scheme"] = _SCHEMES[scheme][scope["type"] == "websocket"]
        await self.app(scope, receive, send)

    def _resolve(self, headers: Headers) -> tuple[str | None, str | None]:
        """(client address, scheme) as the trusted proxies tell it; None for what they do not say."""
        if "forwarded" in headers:
            elements = forwarded_elements(",".join(headers.getlist("forwarded")))
            hops = [(element.get("for"), element.get("proto")) for element in elements]
        else:
            addresses = _list(headers.getlist("x-forwarded-for"))
            protos = _list(headers.getlist("x-forwarded-proto"))
            if addresses and len(protos) == len(addresses):
                hops = list(zip(addresses, protos, strict=True))
            else:
                # A single value is what the edge proxy set for the client's connection; a list of another
                # length cannot be matched to the hops, so it is not believed.
                edge = protos[0] if len(protos) == 1 else None
                hops = [(address, edge) for address in addresses] or [(None, edge)]
        if not hops:
            return None, None
        chosen = hops[0]
        for node, proto in reversed(hops):
            chosen = (node, proto)
            if not self._trusted(_address(node)):
                break
        address = _address(chosen[0])
        proto = (chosen[1] or "").lower()
        return (str(address) if address else None), (proto if proto in _SCHEMES else None)
