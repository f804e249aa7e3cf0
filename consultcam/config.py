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

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Sessions warn the clinician when this many photos are taken (seeds: "20-image session limit with warning").
WARN_IMAGES = 20

#: Signature algorithms an OIDC token may use: asymmetric only (RFC 8725 §3.1, §3.2; RFC 7518 §3.1).
OIDC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


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

    ai_base_url: str = ""
    ai_model: str = ""
    ai_api_key: str = ""

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
