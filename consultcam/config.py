"""Settings: one typed object read from `CONSULTCAM_*` environment variables (pydantic-settings).

Every port is chosen by a URL here (DESIGN.md, "Architecture: ports with one URL each"); the defaults are the
embedded ones, so `consultcam serve` runs with no service installed.
"""

from __future__ import annotations

import socket
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Sessions warn the clinician when this many photos are taken (seeds: "20-image session limit with warning").
WARN_IMAGES = 20


class Settings(BaseSettings):
    """consultcam settings. Sizes are bytes, durations as named (seconds, minutes, hours)."""

    model_config = SettingsConfigDict(env_prefix="CONSULTCAM_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str = ""  # default: sqlite+aiosqlite:///DATA_DIR/consultcam.db
    storage_url: str = ""  # default: file://DATA_DIR/objects
    redis_url: str = ""  # unset: in-process event bus and job queue
    emr_url: str = "export://"  # export:// writes Bundles to DATA_DIR/outbox
    public_url: str = ""  # default: this host's LAN address, see `resolved_public_url`
    clinician_token: str = ""  # embedded-mode clinician secret; generated at first start when unset

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
    oidc_issuer: str = ""
    oidc_audience: str = ""

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
        """32 random bytes kept in DATA_DIR/secret.key (0600): signs store URLs and clinician cookies.

        Production runs many processes; they share it through the same file or `CONSULTCAM_SECRET_KEY`.
        """
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            import secrets

            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(secrets.token_bytes(32))
            tmp.chmod(0o600)
            tmp.replace(path)
        return path.read_bytes()

    def public_base_url(self, scheme: str, port: int) -> str:
        """The base URL put in QR codes: `PUBLIC_URL`, else `scheme://<LAN address>:port`."""
        return self.public_url or f"{scheme}://{lan_address()}:{port}"


def lan_address() -> str:
    """This host's address on the LAN (the interface of the default route), or 127.0.0.1 when offline."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): no packet is sent for UDP connect
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
