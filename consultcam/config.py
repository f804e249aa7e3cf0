"""Settings: one typed object read from `CONSULTCAM_*` environment variables (pydantic-settings).

Every port is chosen by a URL here (DESIGN.md, "Architecture: ports with one URL each"); the defaults are the
embedded ones, so `consultcam serve` runs with no service installed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from functools import cached_property
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Sessions warn the clinician when this many photos are taken (seeds: "20-image session limit with warning").
WARN_IMAGES = 20
#: New Zealand general practice: local dates and times (DICOM, ZIP entries) are Pacific/Auckland.
PRACTICE_TIMEZONE = ZoneInfo("Pacific/Auckland")

#: Signature algorithms an OIDC token may use: asymmetric only (RFC 8725 §3.1, §3.2; RFC 7518 §3.1).
OIDC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
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
    clinician_token: str = ""  # embedded-mode clinician secret; generated at first start when unset
    secret: str = ""  # signing secret shared by all web processes; unset: DATA_DIR/secret.key

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
        """The AI endpoint gets photos: HTTPS only (plain HTTP only to this machine), and a model with it."""
        if not self.ai_base_url:
            return self
        if not is_https_or_loopback(self.ai_base_url) or urlsplit(self.ai_base_url).query:
            raise ValueError(
                "CONSULTCAM_AI_BASE_URL must be an https:// URL without a query (http:// only to this "
                "machine, e.g. http://127.0.0.1:11434/v1 for a local Ollama), because photos are sent to it"
            )
        if self.ai_base_url.endswith("/chat/completions"):
            raise ValueError(
                "CONSULTCAM_AI_BASE_URL is the API root, without /chat/completions "
                "(e.g. https://api.openai.com/v1)"
            )
        if not self.ai_model.strip():
            raise ValueError(
                "CONSULTCAM_AI_MODEL is required when CONSULTCAM_AI_BASE_URL is set: the name of a vision "
                "model the server offers"
            )
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

    # -- sign-in: server-side clinician sessions, rate limits --

    # -- load and faults: commits, decodes, upload slots --

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
        """OIDC needs the issuer and the audience together, and HTTPS (plain HTTP only to loopback)."""
        if bool(self.oidc_issuer) != bool(self.oidc_audience):
            raise ValueError("set CONSULTCAM_OIDC_ISSUER and CONSULTCAM_OIDC_AUDIENCE together, or neither")
        for name in ("oidc_issuer", "oidc_jwks_url"):
            url = getattr(self, name)
            if url and not is_https_or_loopback(url):
                raise ValueError(
                    f"CONSULTCAM_{name.upper()} must be an https:// URL (http:// only to loopback)"
                )
        if self.oidc_issuer and not self.oidc_clinician_claim.strip():
            raise ValueError("CONSULTCAM_OIDC_CLINICIAN_CLAIM must name a claim, e.g. sub")
        return self

    @property
    def oidc_enabled(self) -> bool:
        """Production clinician sign-in: OIDC bearer JWTs (consultcam/oidc.py)."""
        return bool(self.oidc_issuer and self.oidc_audience)

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: str) -> str:
        """`postgres://`, `postgresql://` mean asyncpg, `sqlite://` aiosqlite (db.normalise_database_url)."""
        from consultcam.db import normalise_database_url

        return normalise_database_url(value)

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

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
            self.data_dir.mkdir(parents=True, exist_ok=True)
            import secrets

            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(secrets.token_bytes(32))
            tmp.chmod(0o600)
            tmp.replace(path)
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
