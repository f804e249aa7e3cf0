"""The checks and normalisations of single settings, for the Settings validators (`config.Settings`): each
takes the value as read from the environment and returns it normalised, or raises ValueError whose message
names the variable and what to set (`config_errors` turns it into the one line the operator reads).

Also the rules' fixed values (`OIDC_ALGORITHMS`, `EMR_SCHEMES`, `METADATA_FIELDS`; re-exported by
`consultcam.config`) and two helpers other modules use: `is_https_or_loopback`, `lan_address`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from consultcam.config_errors import scheme_words
from consultcam.db import check_pool_options, normalise_database_url
from consultcam.storage.s3_location import parse_s3_url
from consultcam.terminology import TerminologyDataError, load_extension

#: Signature algorithms an OIDC token may use: asymmetric only (RFC 8725 §3.1, §3.2; RFC 7518 §3.1).
OIDC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

#: CONSULTCAM_EMR_URL schemes, one per connector (commits.connectors.registry.connector_from_url).
EMR_SCHEMES = frozenset(
    {"export", "fhir+https", "fhir+http", "alex+https", "alex+http", "dicomweb+https", "dicomweb+http"}
)

#: Image metadata fields a practice may require on every photo before a commit (CONSULTCAM_REQUIRED_METADATA),
#: named as in the API's image metadata.
METADATA_FIELDS = ("bodySite", "laterality", "view", "label")


def is_https_or_loopback(url: str) -> bool:
    """True for an https:// URL, or an http:// URL to this machine (tests, a local identity provider)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return parts.hostname == "localhost"


def lan_address() -> str:
    """This host's address on the LAN (the interface of the default route), or 127.0.0.1 when offline."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): no packet is sent for UDP connect
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


# -- web --------------------------------------------------------------------------------------------------


def frame_ancestors(value: object) -> object:
    """CSP 3 `frame-ancestors` sources we accept: `self`, or `http(s)://host[:port]` (host may start with
    `*.`), normalised to `'self'` and lower case; "none" alone means nobody (the default). A comma list or a
    sequence; anything else is left for pydantic to refuse."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        return value
    names = [str(item).strip().strip("'").lower() for item in items if str(item).strip()]
    if names == ["none"]:
        return ()
    origin = r"https?://(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?"
    bad = [name for name in names if name != "self" and not re.fullmatch(origin, name)]
    if bad:
        raise ValueError(
            "CONSULTCAM_FRAME_ANCESTORS takes `self` and origins like https://emr.example.org (scheme, "
            "host, optional port; nothing else), comma separated; empty for nobody. Refused: "
            + ", ".join(bad)
        )
    return tuple(dict.fromkeys("'self'" if name == "self" else name for name in names))


def trusted_proxies(value: object) -> object:
    """IP addresses or networks (CIDR), comma separated; a host name is refused (it would need DNS)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        return value
    names = [str(item).strip() for item in items if str(item).strip()]
    bad = []
    for name in names:
        try:
            ipaddress.ip_network(name, strict=False)
        except ValueError:
            bad.append(name)
    if bad:
        raise ValueError(
            "CONSULTCAM_TRUSTED_PROXIES takes IP addresses or networks, comma separated (e.g. "
            f"127.0.0.1,10.0.0.0/8); refused: {', '.join(bad)}"
        )
    return tuple(names)


def rate_limit(value: str, variable: str) -> str:
    """A rate in the `limits` library's notation ("10/minute", "30 per 5 minutes"), at least 1 per window."""
    # limits is only needed to read a rate: imported here so importing the settings does not load it.
    from limits import parse

    try:
        if parse(value).amount >= 1:
            return value.strip()
    except ValueError:
        pass
    raise ValueError(f"{variable} must be a rate such as 10/minute, 100/hour or 30 per 5 minutes")


def web_address(value: str, variable: str, example: str) -> str:
    """An http(s) URL with a host and without credentials, ?query or #fragment (QR codes and CORS use
    the public URL's origin; boto the endpoint's), without a trailing slash; "" stays unset."""
    value = value.strip().rstrip("/")
    if not value:
        return value
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        ok = False
    else:
        ok = not (parts.query or parts.fragment or value.endswith(("?", "#")))
    if not ok:
        raise ValueError(
            f"{variable} must be an http:// or https:// address with a host and nothing after the path "
            f"(no ?query or #fragment), e.g. {example}"
        )
    return value


# -- clinical ---------------------------------------------------------------------------------------------


def body_sites_extension(value: Path) -> Path:
    """The extension file, resolved, read and checked now (`terminology.load_extension`), so a bad one stops
    the start rather than a request."""
    path = value.expanduser().resolve()
    try:
        load_extension(path)
    except TerminologyDataError as exc:
        raise ValueError(
            f"CONSULTCAM_BODY_SITES_EXTENSION: {exc}; fix the file or unset the setting"
        ) from None
    return path


def required_metadata(value: object) -> object:
    """A comma list (or a sequence) of METADATA_FIELDS, any case, e.g. "bodySite, laterality"; "" means
    nothing is required. Names are normalised to the API's spelling, each kept once, in order."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple | set | frozenset):
        return value
    by_name = {name.lower(): name for name in METADATA_FIELDS}
    names = [str(item).strip() for item in value if str(item).strip()]
    unknown = [name for name in names if name.lower() not in by_name]
    if unknown:
        raise ValueError(
            f"CONSULTCAM_REQUIRED_METADATA may only name {', '.join(METADATA_FIELDS)} (comma separated; "
            f"empty for none); unknown: {', '.join(unknown)}"
        )
    return tuple(dict.fromkeys(by_name[name.lower()] for name in names))


# -- ports: one URL each (DESIGN.md, "Architecture") --------------------------------------------------------


def database_url(value: str) -> str:
    """`postgres://`, `postgresql://` mean asyncpg, `sqlite://` aiosqlite (db.normalise_database_url);
    PostgreSQL pool options in the query must be whole numbers (db.POOL_DEFAULTS)."""
    try:
        value = normalise_database_url(value)
        check_pool_options(value)
    except Exception as exc:  # SQLAlchemy's ArgumentError, int() on a port: words without the URL
        if isinstance(exc, ValueError) and str(exc).startswith("CONSULTCAM_DATABASE_URL"):
            raise
        raise ValueError(
            "CONSULTCAM_DATABASE_URL cannot be read as a URL; use "
            "postgresql://user:password@host:5432/dbname or sqlite:///path/to/consultcam.db"
        ) from None
    return value


def storage_url(value: str) -> str:
    """`file:///folder` or `s3://bucket[/prefix]` (storage.registry.create_store, s3_location.parse_s3_url);
    "" stays unset."""
    value = value.strip()
    if not value or (value.startswith("file://") and value.removeprefix("file://")):
        return value
    if value.startswith("s3://"):
        parse_s3_url(value)
        return value
    raise ValueError(
        f"CONSULTCAM_STORAGE_URL: unsupported object store {scheme_words(value)}; use "
        "file:///path/to/folder (embedded) or s3://bucket/prefix (production)"
    )


def redis_url(value: str) -> str:
    """`redis://`, `rediss://` (TLS) or `unix://` as redis-py reads them (redis.connection.parse_url)."""
    value = value.strip()
    if not value:
        return value
    # redis-py is only needed when a Redis URL is set: imported here so embedded mode does not load it.
    from redis.connection import parse_url

    try:
        parse_url(value)  # type: ignore[no-untyped-call]  # redis-py leaves parse_url unannotated
    except ValueError:
        raise ValueError(
            f"CONSULTCAM_REDIS_URL: not a Redis URL ({scheme_words(value)}); use redis://host:6379/0, "
            "rediss://host:6380/0 (TLS) or unix:///path/to/redis.sock"
        ) from None
    return value


def redis_prefix(value: str) -> str:
    """A key namespace: 1 to 64 printable characters without spaces."""
    if not 1 <= len(value) <= 64 or not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError(
            "CONSULTCAM_REDIS_PREFIX must be 1 to 64 characters without spaces, e.g. consultcam:"
        )
    return value


def emr_url(value: str) -> str:
    """One of the connectors' schemes (EMR_SCHEMES); the rest of the URL is checked when the connector is
    built (commits.connectors.registry.connector_from_url)."""
    scheme, sep, _ = value.strip().partition("://")
    if not sep or scheme.lower() not in EMR_SCHEMES:
        shown = scheme.lower() + sep if sep else "(none)"
        raise ValueError(
            f"CONSULTCAM_EMR_URL: unsupported EMR URL scheme {shown!r}; use export://DIR (FHIR Bundle "
            "files), fhir+https://…, alex+https://…/FHIR or dicomweb+https://…"
        )
    return value.strip()


def token_endpoint(value: str, variable: str) -> str:
    """An OAuth2 token endpoint (CONSULTCAM_EMR_TOKEN_URL, _ALEX_TOKEN_URL): the client secret is sent there,
    so https:// (http:// only to this machine) and no #fragment (RFC 6749 §3.2). Empty: not set."""
    value = value.strip()
    if value and (not is_https_or_loopback(value) or "#" in value):
        raise ValueError(
            f"{variable} must be an https:// URL (http:// only to this machine) without a #fragment, "
            "because the client secret is sent to it"
        )
    return value


def alex_launch_url(value: str) -> str:
    """CONSULTCAM_ALEX_LAUNCH_URL: the ALEX root that decodes a Medtech launch (the bearer token is sent
    there), so https:// (http:// only to this machine), no ?query or #fragment; the trailing / dropped.
    Empty: not set."""
    value = value.strip().rstrip("/")
    if value and (not is_https_or_loopback(value) or "#" in value or "?" in value):
        raise ValueError(
            "CONSULTCAM_ALEX_LAUNCH_URL must be an https:// URL (http:// only to this machine) without "
            "?query or #fragment, such as https://alexapi.medtechglobal.com"
        )
    return value


def smart_issuers(values: tuple[str, ...]) -> tuple[str, ...]:
    """CONSULTCAM_SMART_ISSUERS: the FHIR base URLs allowed to launch consultcam, compared exactly with a
    launch's `iss` (SMART App Launch 2.x, "EHR launch"): each https:// (http:// only to this machine),
    without ?query or #fragment; a trailing / is dropped, as from `iss`."""
    checked: list[str] = []
    for value in values:
        url = value.strip().rstrip("/")
        if not is_https_or_loopback(url) or "#" in url or "?" in url:
            raise ValueError(
                "CONSULTCAM_SMART_ISSUERS must list https:// FHIR base URLs separated by commas (http:// "
                "only to this machine), without ?query or #fragment, such as https://ehr.example.org/fhir/R4"
            )
        checked.append(url)
    return tuple(checked)


def oauth2_words(value: str, variable: str, *, scope: bool) -> str:
    """A client_id (VSCHARs, RFC 6749 A.1) or a scope (NQCHAR tokens separated by spaces, §3.3), at most
    1024 characters."""
    value = value.strip()
    refused = '"\\' if scope else ""
    if not all(" " <= c <= "~" and c not in refused for c in value) or len(value) > 1024:
        what = 'scope tokens separated by spaces, without " or \\' if scope else "printable ASCII"
        raise ValueError(f"{variable} must be {what} (at most 1024 characters)")
    return value


def credential(value: SecretStr | None, variable: str, *, bearer: bool) -> SecretStr | None:
    """A secret sent in an Authorization header: printable ASCII, at most 4096 characters (a bearer token
    without spaces, RFC 6750 §2.1; a client secret may have them, RFC 6749 A.2); a newline would end the
    header. Blank: None."""
    if value is None:
        return None
    secret = value.get_secret_value().strip()
    if not all(" " <= c <= "~" for c in secret) or (bearer and " " in secret) or len(secret) > 4096:
        raise ValueError(
            f"{variable} must be printable ASCII"
            + (" without spaces" if bearer else "")
            + " (at most 4096 characters)"
        )
    return SecretStr(secret) if secret else None
