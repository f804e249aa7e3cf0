"""Settings: one typed object read from `CONSULTCAM_*` environment variables (pydantic-settings).

Every port is chosen by a URL here (DESIGN.md, "Architecture: ports with one URL each"); the defaults are the
embedded ones, so `consultcam serve` runs with no service installed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import annotated_types
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

if TYPE_CHECKING:
    from consultcam.terminology import Terminology

#: Sessions warn the clinician when this many photos are taken (seeds: "20-image session limit with warning").
WARN_IMAGES = 20
#: New Zealand general practice: local dates and times (DICOM, ZIP entries) are Pacific/Auckland.
PRACTICE_TIMEZONE = ZoneInfo("Pacific/Auckland")

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


class Settings(BaseSettings):
    """consultcam settings. Sizes are bytes, durations as named (seconds, minutes, hours)."""

    # hide_input_in_errors: a refused URL may carry a password; the message names the setting instead.
    model_config = SettingsConfigDict(env_prefix="CONSULTCAM_", extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Path("./data")
    database_url: str = ""  # default: sqlite+aiosqlite:///DATA_DIR/consultcam.db
    storage_url: str = ""  # default: file://DATA_DIR/objects
    redis_url: str = ""  # unset: in-process event bus and job queue
    redis_prefix: str = "consultcam:"  # key namespace, so deployments (and test runs) can share a Redis
    emr_url: str = "export://"  # export:// writes Bundles to DATA_DIR/outbox
    public_url: str = ""  # default: this host's LAN address, see `resolved_public_url`
    clinician_token: str = Field("", repr=False)  # embedded-mode clinician secret; made at first start
    secret: str = Field("", repr=False)  # signing key of all web processes; unset: DATA_DIR/secret.key

    pairing_ttl_seconds: int = Field(600, ge=30, le=3600)
    session_idle_minutes: int = Field(120, ge=1)
    retention_hours: int = Field(24, ge=1)
    max_images: int = Field(50, ge=1, le=500)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(50_000_000, ge=1_000_000)
    capture_max_edge_px: int = Field(2048, ge=256)
    capture_max_bytes: int = Field(1024 * 1024, ge=64 * 1024)
    upload_url_ttl_seconds: int = Field(300, ge=30, le=3600)
    download_url_ttl_seconds: int = Field(300, ge=10, le=900)
    sweep_interval_seconds: int = Field(60, ge=1)

    # Issue 5: the capture rules a practice chooses.
    consent_required: bool = True  # no photo is taken before the patient's consent is recorded
    phone_can_commit: bool = False  # off: the clinician reviews and commits on the desktop
    # Fields every photo needs before a commit; env: "bodySite,laterality", "" for none.
    required_metadata: Annotated[tuple[str, ...], NoDecode] = ("bodySite",)

    # AI description (issue 6, docs/ai.md): any OpenAI-compatible chat-completions API. Unset: off, and no
    # photo leaves the practice.
    ai_base_url: str = ""  # the API root, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1
    ai_model: str = ""  # required with the base URL: a vision model the server knows
    ai_api_key: str = Field("", repr=False)  # sent as `Authorization: Bearer`; never logged nor shown
    ai_timeout_seconds: float = Field(30.0, gt=0, le=300)  # per request
    ai_concurrency: int = Field(2, ge=1, le=32)  # requests at once from one process
    ai_max_retries: int = Field(3, ge=0, le=10)  # after the first try, on 429, 5xx, timeouts

    @field_validator("ai_base_url")
    @classmethod
    def _ai_root(cls, value: str) -> str:
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _ai_complete(self) -> Settings:
        """The AI endpoint gets photos: HTTPS only (plain HTTP only to this machine), and a model with it.
        Raises one ValueError with one line per problem."""
        if not self.ai_base_url:
            return self
        problems = []
        parts = urlsplit(self.ai_base_url)
        if not is_https_or_loopback(self.ai_base_url) or parts.query or parts.fragment:
            problems.append(
                "CONSULTCAM_AI_BASE_URL must be an https:// URL without a query (http:// only to this "
                "machine, e.g. http://127.0.0.1:11434/v1 for a local Ollama), because photos are sent to it"
            )
        if self.ai_base_url.endswith("/chat/completions"):
            problems.append(
                "CONSULTCAM_AI_BASE_URL is the API root, without /chat/completions "
                "(e.g. https://api.openai.com/v1)"
            )
        if not self.ai_model.strip():
            problems.append(
                "CONSULTCAM_AI_MODEL is required when CONSULTCAM_AI_BASE_URL is set: the name of a vision "
                "model the server offers"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def ai_enabled(self) -> bool:
        """An AI endpoint is configured: photos are described after registration (docs/ai.md)."""
        return bool(self.ai_base_url)

    # Issue 10 (hardening). Each part's settings go in its own block below, so they merge cleanly.
    # -- streams: caps on open event streams --
    # Open Server-Sent Event streams, counted on every web process (Redis) or in the one process (embedded);
    # one more is a 429 (consultcam/events/streams.py). A page holds one; a reconnect may briefly hold two.
    streams_per_session: int = Field(32, ge=1, le=10_000)  # per capture session, whoever reads it
    streams_per_credential: int = Field(8, ge=1, le=1_000)  # per phone credential (or clinician sign-in)

    # -- web: CSRF, framing, proxies, body limits --
    # Who may show the pages in a frame (CSP frame-ancestors): empty = nobody; "self"; or the origins of an
    # EMR that embeds consultcam, comma separated, e.g. "https://emr.example.org,https://*.pms.example:8443".
    frame_ancestors: Annotated[tuple[str, ...], NoDecode] = ()
    # Reverse proxies whose X-Forwarded-For/-Proto and Forwarded (RFC 7239) headers count: IPs or CIDRs, comma
    # separated (e.g. "127.0.0.1" for a TLS proxy on this machine). Empty: nobody's; the peer is the client.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    hsts_seconds: int = Field(31_536_000, ge=0, le=63_072_000)  # HSTS max-age over HTTPS (RFC 6797); 0: off
    max_json_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)  # any request but those below
    max_edit_body_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024)  # PATCH of a photo (edits)

    @field_validator("frame_ancestors", mode="before")
    @classmethod
    def _frame_ancestors(cls, value: object) -> object:
        """CSP 3 `frame-ancestors` sources we accept: `self`, or `http(s)://host[:port]` (host may start with
        `*.`), normalised to `'self'` and lower case; "none" alone means nobody (the default)."""
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

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _trusted_proxies(cls, value: object) -> object:
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

    # -- sign-in: server-side clinician sessions, rate limits --
    # A browser's sign-in (consultcam.signin) ends after this long without a request, and at the latest this
    # long after signing in; POST /logout ends it at once.
    signin_idle_minutes: int = Field(120, ge=5, le=24 * 60)
    signin_max_hours: int = Field(12, ge=1, le=7 * 24)
    # Requests per client address in a sliding window (consultcam.ratelimit), as "<count>/<second|minute|
    # hour>" or "<count> per <n> <unit>"; shared by every web process through Redis when it is configured.
    rate_limit_login: str = "10/minute"  # GET and POST /login: guesses at the clinician token
    rate_limit_pair: str = "30/minute"  # POST /api/pair: QR codes redeemed

    @field_validator("clinician_token")
    @classmethod
    def _strong_clinician_token(cls, value: str) -> str:
        """A configured embedded token must be a strong random secret (auth.clinician_token_weakness); unset,
        `consultcam serve` generates one of 256 bits."""
        from consultcam.auth import clinician_token_weakness

        # A value that is not even printable ASCII without spaces is `_header_safe`'s to report, one line.
        readable = value.isascii() and value.isprintable() and " " not in value
        weakness = clinician_token_weakness(value) if value and readable else None
        if weakness:
            raise ValueError(
                f"CONSULTCAM_CLINICIAN_TOKEN: too weak ({weakness}); set a random string of at least 32 "
                "characters, e.g. from: python3 -c 'import secrets; print(secrets.token_urlsafe(32))', or "
                "unset it and consultcam generates one"
            )
        return value

    @field_validator("rate_limit_login", "rate_limit_pair")
    @classmethod
    def _rate_limit(cls, value: str, info: ValidationInfo) -> str:
        """Parsed by the `limits` library's notation; a count of at least 1 per window."""
        from limits import parse

        try:
            if parse(value).amount >= 1:
                return value.strip()
        except ValueError:
            pass
        raise ValueError(
            f"CONSULTCAM_{str(info.field_name).upper()} must be a rate such as 10/minute, 100/hour or "
            "30 per 5 minutes"
        )

    # -- load and faults: commits, decodes, upload slots --
    # commits: how long a running commit holds its session without a heartbeat (renewed every third of
    # it); a commit whose process died is seen as interrupted this long after its last heartbeat. Keep it
    # above a connector's request timeout (30 s), so what a dead process left on the wire has landed.
    commit_lease_seconds: int = Field(60, ge=2, le=3600)  # commits
    # decodes and upload slots (consultcam/images/admission.py, images/service.py issue_upload):
    decode_memory_budget_mb: int = Field(512, ge=64, le=1024 * 1024)  # MiB all decodes of a process may hold
    decode_wait_seconds: float = Field(30.0, ge=1, le=600)  # a registration waits this long for it, then 503
    decode_threads: int = Field(0, ge=0, le=256)  # decodes at once per process; 0: half the CPU cores
    max_pending_uploads: int = Field(10, ge=1, le=500)  # upload URLs a credential may hold unregistered

    # -- clinical: terms and identifiers --
    # A practice's extra body sites: a JSON file shaped like consultcam/data/body-sites.json holding only
    # `source` and `bodySites`, checked the same way here (unset: the packaged 24 only).
    body_sites_extension: Path | None = None
    # A phone's capture time is believed from this long before the session was opened (photos queued on
    # the phone) up to this far in the future (clock skew); outside, the upload time is kept with a warning.
    capture_before_session_hours: int = Field(24, ge=0, le=24 * 7)
    capture_clock_skew_seconds: int = Field(300, ge=0, le=3600)

    @field_validator("body_sites_extension", mode="before")
    @classmethod
    def _extension_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("body_sites_extension")
    @classmethod
    def _extension_checked(cls, value: Path | None) -> Path | None:
        """The extension file is read and checked now, so a bad one stops the start (not a request)."""
        if value is None:
            return None
        from consultcam.terminology import TerminologyDataError, load_extension

        path = value.expanduser().resolve()
        try:
            load_extension(path)
        except TerminologyDataError as exc:
            raise ValueError(
                f"CONSULTCAM_BODY_SITES_EXTENSION: {exc}; fix the file or unset the setting"
            ) from None
        return path

    @cached_property
    def terminology(self) -> Terminology:
        """The terms this deployment accepts: the packaged list plus BODY_SITES_EXTENSION's sites."""
        from consultcam.terminology import TERMINOLOGY, load_extension

        return load_extension(self.body_sites_extension) if self.body_sites_extension else TERMINOLOGY

    # -- outbound: EMR connector credentials (docs/connectors.md) --
    # Never in CONSULTCAM_EMR_URL (URLs get logged); commits/connectors/registry.py hands them to the
    # connector. fhir+https: a static bearer token, or OAuth2 client credentials (RFC 6749 §4.4).
    emr_bearer_token: SecretStr | None = None
    emr_token_url: str = ""  # the token endpoint; with EMR_CLIENT_ID and EMR_CLIENT_SECRET
    emr_client_id: str = ""
    emr_client_secret: SecretStr | None = None
    emr_scope: str = ""  # optional, space separated
    # alex+https (Medtech ALEX): OAuth2 client credentials, all four required.
    alex_token_url: str = ""
    alex_client_id: str = ""
    alex_client_secret: SecretStr | None = None
    alex_scope: str = ""

    @field_validator("emr_token_url", "alex_token_url")
    @classmethod
    def _token_endpoint(cls, value: str, info: ValidationInfo) -> str:
        """The client secret is sent there: https:// (http:// only to this machine), no #fragment."""
        value = value.strip()
        if value and (not is_https_or_loopback(value) or "#" in value):
            raise ValueError(
                f"CONSULTCAM_{str(info.field_name).upper()} must be an https:// URL (http:// only to this "
                "machine) without a #fragment, because the client secret is sent to it"
            )
        return value

    @field_validator("emr_client_id", "alex_client_id", "emr_scope", "alex_scope")
    @classmethod
    def _oauth2_words(cls, value: str, info: ValidationInfo) -> str:
        """client_id is VSCHARs (RFC 6749 A.1); a scope is NQCHAR tokens separated by spaces (§3.3)."""
        value = value.strip()
        scope = str(info.field_name).endswith("_scope")
        refused = '"\\' if scope else ""
        if not all(" " <= c <= "~" and c not in refused for c in value) or len(value) > 1024:
            what = 'scope tokens separated by spaces, without " or \\' if scope else "printable ASCII"
            raise ValueError(
                f"CONSULTCAM_{str(info.field_name).upper()} must be {what} (at most 1024 characters)"
            )
        return value

    @field_validator("emr_bearer_token", "emr_client_secret", "alex_client_secret")
    @classmethod
    def _credential(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Sent in an Authorization header: printable ASCII (a bearer token without spaces, RFC 6750 §2.1;
        a client secret may have them, RFC 6749 A.2); a newline would end the header."""
        if value is None:
            return None
        secret = value.get_secret_value().strip()
        spaces = str(info.field_name).endswith("bearer_token")
        if not all(" " <= c <= "~" for c in secret) or (spaces and " " in secret) or len(secret) > 4096:
            raise ValueError(
                f"CONSULTCAM_{str(info.field_name).upper()} must be printable ASCII"
                + (" without spaces" if spaces else "")
                + " (at most 4096 characters)"
            )
        return SecretStr(secret) if secret else None

    s3_endpoint_url: str = ""
    s3_sse_kms_key_id: str = ""  # SSE-KMS key (id, ARN or alias) for S3 objects; unset: SSE-S3 (AES256)
    # Production clinician sign-in (consultcam/oidc.py): both set = OIDC bearer JWTs are verified.
    oidc_issuer: str = ""  # e.g. https://login.example.org/realms/practice: the exact `iss`
    oidc_audience: str = ""  # a value the token's `aud` must contain (the client id / API identifier)
    oidc_jwks_url: str = ""  # default: `jwks_uri` from <issuer>/.well-known/openid-configuration
    oidc_algorithms: Annotated[tuple[str, ...], NoDecode] = ("RS256", "ES256")  # env: "RS256,ES256"
    oidc_leeway_seconds: int = Field(60, ge=0, le=300)  # clock skew allowed on exp, nbf and iat
    oidc_clinician_claim: str = "sub"  # the claim naming the practitioner: Clinician.id = "oidc:<value>"
    oidc_jwks_cache_seconds: int = Field(300, ge=10, le=86400)  # how long fetched keys are trusted
    oidc_http_timeout_seconds: float = Field(5.0, gt=0, le=30)  # discovery and JWKS fetches
    oidc_allow_embedded_token: bool = False  # also accept CLINICIAN_TOKEN when OIDC is on (not in production)

    @field_validator("oidc_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        return tuple(a.strip() for a in value.split(",") if a.strip()) if isinstance(value, str) else value

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """RFC 8725 §3.1-3.2: never `none`, never HS* (a public JWKS key must not become an HMAC secret)."""
        refused = [a for a in value if a not in OIDC_ALGORITHMS]
        if refused or not value:
            raise ValueError(
                f"CONSULTCAM_OIDC_ALGORITHMS may only name {', '.join(sorted(OIDC_ALGORITHMS))}; "
                f"refused: {', '.join(refused) or '(empty)'}"
            )
        return value

    @field_validator("required_metadata", mode="before")
    @classmethod
    def _metadata_fields(cls, value: object) -> object:
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

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        """OIDC needs the issuer and the audience together, and HTTPS (plain HTTP only to loopback).
        Raises one ValueError with one line per problem."""
        problems = []
        if bool(self.oidc_issuer) != bool(self.oidc_audience):
            problems.append("set CONSULTCAM_OIDC_ISSUER and CONSULTCAM_OIDC_AUDIENCE together, or neither")
        for name in ("oidc_issuer", "oidc_jwks_url"):
            url = getattr(self, name)
            if url and not is_https_or_loopback(url):
                problems.append(
                    f"CONSULTCAM_{name.upper()} must be an https:// URL (http:// only to loopback)"
                )
        if self.oidc_issuer and not self.oidc_clinician_claim.strip():
            problems.append("CONSULTCAM_OIDC_CLINICIAN_CLAIM must name a claim, e.g. sub")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def oidc_enabled(self) -> bool:
        """Production clinician sign-in: OIDC bearer JWTs (consultcam/oidc.py)."""
        return bool(self.oidc_issuer and self.oidc_audience)

    # Every setting is checked here, at start, so a mistake stops the process with one line naming the
    # variable (`read_settings`) rather than failing at the first request that needs it.

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: str) -> str:
        """`postgres://`, `postgresql://` mean asyncpg, `sqlite://` aiosqlite (db.normalise_database_url);
        PostgreSQL pool options in the query must be whole numbers (db.POOL_DEFAULTS)."""
        from consultcam.db import check_pool_options, normalise_database_url

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

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, value: str) -> str:
        """`file:///folder` or `s3://bucket[/prefix]` (store.create_store, s3.parse_s3_url)."""
        value = value.strip()
        if not value or (value.startswith("file://") and value.removeprefix("file://")):
            return value
        if value.startswith("s3://"):
            from consultcam.storage.s3 import parse_s3_url

            parse_s3_url(value)
            return value
        raise ValueError(
            f"CONSULTCAM_STORAGE_URL: unsupported object store {_scheme_words(value)}; use "
            "file:///path/to/folder (embedded) or s3://bucket/prefix (production)"
        )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        """`redis://`, `rediss://` (TLS) or `unix://` as redis-py reads them (redis.connection.parse_url)."""
        value = value.strip()
        if not value:
            return value
        from redis.connection import parse_url

        try:
            parse_url(value)
        except ValueError:
            raise ValueError(
                f"CONSULTCAM_REDIS_URL: not a Redis URL ({_scheme_words(value)}); use redis://host:6379/0, "
                "rediss://host:6380/0 (TLS) or unix:///path/to/redis.sock"
            ) from None
        return value

    @field_validator("redis_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        if not 1 <= len(value) <= 64 or not value.isprintable() or any(c.isspace() for c in value):
            raise ValueError(
                "CONSULTCAM_REDIS_PREFIX must be 1 to 64 characters without spaces, e.g. consultcam:"
            )
        return value

    @field_validator("emr_url")
    @classmethod
    def _emr_scheme(cls, value: str) -> str:
        """One of the connectors' schemes (commits.connectors.registry.connector_from_url); the rest of the
        URL is checked when the connector is built."""
        scheme, sep, _ = value.strip().partition("://")
        if not sep or scheme.lower() not in EMR_SCHEMES:
            shown = scheme.lower() + sep if sep else "(none)"
            raise ValueError(
                f"CONSULTCAM_EMR_URL: unsupported EMR URL scheme {shown!r}; use export://DIR (FHIR Bundle "
                "files), fhir+https://…, alex+https://…/FHIR or dicomweb+https://…"
            )
        return value.strip()

    @field_validator("public_url", "s3_endpoint_url")
    @classmethod
    def _web_address(cls, value: str, info: ValidationInfo) -> str:
        """An http(s) URL with a host and without credentials, ?query or #fragment (QR codes and CORS use
        the public URL's origin; boto the endpoint's)."""
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
            example = (
                "https://photos.example.org" if info.field_name == "public_url" else "https://s3.example.org"
            )
            raise ValueError(
                f"CONSULTCAM_{str(info.field_name).upper()} must be an http:// or https:// address with a "
                f"host and nothing after the path (no ?query or #fragment), e.g. {example}"
            )
        return value

    @field_validator("clinician_token", "ai_api_key", "s3_sse_kms_key_id")
    @classmethod
    def _header_safe(cls, value: str, info: ValidationInfo) -> str:
        """Sent in HTTP headers and URLs: printable ASCII without spaces (a newline would end the header)."""
        if value and not (
            value.isascii() and value.isprintable() and " " not in value and len(value) <= 2048
        ):
            raise ValueError(
                f"CONSULTCAM_{str(info.field_name).upper()} must be printable ASCII without spaces "
                "(at most 2048 characters)"
            )
        return value

    @field_validator("secret")
    @classmethod
    def _strong_secret(cls, value: str) -> str:
        """It signs clinician cookies and store URLs: a short one could be guessed offline from one."""
        if value and (len(value) < 32 or any(c.isspace() for c in value)):
            raise ValueError(
                "CONSULTCAM_SECRET must be at least 32 characters without spaces, the same on every web "
                "process, e.g. from: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        value = value.expanduser().resolve()
        existing = next(path for path in (value, *value.parents) if path.exists())
        if not existing.is_dir():
            raise ValueError("CONSULTCAM_DATA_DIR must be a folder, not a file nor a path through one")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'consultcam.db'}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or f"file://{self.data_dir / 'objects'}"

    @cached_property
    def secret_key(self) -> bytes:
        """The key that signs embedded store URLs and clinician cookies: `CONSULTCAM_SECRET` when set (web
        processes behind one load balancer must share it), else 32 random bytes kept in DATA_DIR/secret.key
        (0600), made on first use."""
        if self.secret:
            return hashlib.sha256(self.secret.encode()).digest()
        path = self.data_dir / "secret.key"
        if not path.exists():
            import secrets

            from consultcam.files import write_private

            # Not replacing: processes starting together on one DATA_DIR all end up with the first key.
            write_private(path, secrets.token_bytes(32), replace=False)
        return path.read_bytes()


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


def _scheme_words(url: str) -> str:
    """`scheme 'ftp://'` for a message: never the rest of the URL, which may carry a password."""
    scheme, sep, _ = url.partition("://")
    return f"scheme {scheme + sep!r}" if sep and scheme.isascii() and len(scheme) <= 32 else "no scheme://"


# -- Settings that cannot start consultcam: one line per problem ---------------------------------------------


class SettingsInvalid(Exception):
    """The environment's settings cannot start consultcam. `problems`: one line each, naming the variable
    and what to set, never a secret's value (see `settings_problems`)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """`Settings()` from the environment, or SettingsInvalid listing every problem pydantic found (every
    field at once; the cross-field checks run once the fields are valid). `environ` is where the offending
    values are looked up to show them (default os.environ, which pydantic-settings reads)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsInvalid(settings_problems(exc, environ)) from None
    except SettingsError as exc:  # a complex field whose value is not JSON
        raise SettingsInvalid([_unreadable(exc, environ)]) from None


def settings_problems(error: ValidationError, environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per problem in `error` (from building Settings).

    A field's line: `CONSULTCAM_NAME=value: what it must be; default …`, e.g.
    `CONSULTCAM_PAIRING_TTL_SECONDS=5: must be a whole number from 30 to 3600 (seconds); default 600`.
    The value is left out when it did not come from `environ`; a secret's (tokens, keys, passwords) is
    never shown, and a URL's password and secret-looking query values are replaced by ***. A cross-field
    check's message already names its variables and is kept as it is, one line per problem it found.
    """
    environ = os.environ if environ is None else environ
    lines: list[str] = []
    for item in error.errors(include_url=False, include_input=False):
        message = str(item["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        name = str(item["loc"][0]) if item["loc"] else ""
        if name not in Settings.model_fields:
            lines.extend(line.strip() for line in message.splitlines() if line.strip())
            continue
        variable = env_name(name)
        value = _env_value(variable, environ)
        shown = variable if value is None else f"{variable}={_shown(name, value)}"
        if item["type"] == "value_error":
            what = "; ".join(line.strip() for line in message.splitlines() if line.strip())
            what = what.removeprefix(variable).lstrip(":, ").rstrip(".")
        else:
            what = _expected(name) or message[:1].lower() + message[1:]
        lines.append(f"{shown}: {what}; {_default_words(name)}")
    return list(dict.fromkeys(lines))


def env_name(field: str) -> str:
    """The environment variable of a Settings field: `CONSULTCAM_` + its name in capitals."""
    return f"CONSULTCAM_{field.upper()}"


def _env_value(variable: str, environ: Mapping[str, str]) -> str | None:
    # pydantic-settings matches names without regard to case (case_sensitive=False).
    for key, value in environ.items():
        if key.upper() == variable:
            return value
    return None


_SECRET_NAME = re.compile(r"token|secret|password|api_key")
_SECRET_QUERY = re.compile(r"pass|secret|token|key|sig|auth", re.IGNORECASE)


def _shown(name: str, value: str) -> str:
    """The value as it may be printed: hidden for a secret, without credentials for a URL, on one line."""
    field = Settings.model_fields[name]
    if field.repr is False or _SECRET_NAME.search(name):
        return "(hidden)"
    if name.endswith("_url"):
        value = _without_credentials(value)
    shown = value if value.isprintable() else repr(value)
    return shown if len(shown) <= 120 else shown[:117] + "..."


def _without_credentials(url: str) -> str:
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
        query = "&".join(
            f"{key}=***" if _SECRET_QUERY.search(key) else f"{key}={value}"
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return _scheme_words(url)


#: Units named by a setting's suffix, for messages.
_UNITS = {"seconds": "seconds", "minutes": "minutes", "hours": "hours", "bytes": "bytes", "px": "pixels"}


def _expected(name: str) -> str | None:
    """What a number or a yes/no setting must be, from its type and bounds, e.g. `must be a whole number
    from 30 to 3600 (seconds)`; None for other types (their validator's message says it)."""
    field = Settings.model_fields[name]
    if field.annotation is bool:
        return "must be true or false (or 1/0, yes/no, on/off)"
    kind = {int: "a whole number", float: "a number"}.get(field.annotation)  # type: ignore[call-overload]
    if kind is None:
        return None
    low = high = ""
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            low = f"{bound.ge}"
        elif isinstance(bound, annotated_types.Gt):
            low = f"more than {bound.gt}"
        elif isinstance(bound, annotated_types.Le):
            high = f"{bound.le}"
        elif isinstance(bound, annotated_types.Lt):
            high = f"less than {bound.lt}"
    if low and high:
        limits = f" from {low} to {high}" if low[0].isdigit() else f" {low} and at most {high}"
    elif low:
        limits = f" of at least {low}" if low[0].isdigit() else f" {low}"
    elif high:
        limits = f" of at most {high}" if high[0].isdigit() else f" {high}"
    else:
        limits = ""
    unit = _UNITS.get(name.rsplit("_", 1)[-1])
    return f"must be {kind}{limits}" + (f" ({unit})" if unit else "")


def _default_words(name: str) -> str:
    default = Settings.model_fields[name].default
    if default in ("", None, ()):
        return "default unset"
    if isinstance(default, bool):
        return f"default {str(default).lower()}"
    if isinstance(default, tuple):
        return f"default {','.join(map(str, default))}"
    if isinstance(default, Path) and not default.is_absolute():
        return f"default ./{default}"
    return f"default {default}"


def _unreadable(error: SettingsError, environ: Mapping[str, str] | None) -> str:
    """pydantic-settings could not decode a complex field's value (JSON): the same line shape."""
    found = re.search(r'field "(\w+)"', str(error))
    name = found.group(1) if found else ""
    if name not in Settings.model_fields:
        return f"a setting could not be read: {error}"
    variable = env_name(name)
    value = _env_value(variable, os.environ if environ is None else environ)
    shown = variable if value is None else f"{variable}={_shown(name, value)}"
    return f"{shown}: could not be read (a JSON value is expected); {_default_words(name)}"
