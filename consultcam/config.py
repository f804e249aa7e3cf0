"""Settings: one typed object read from `CONSULTCAM_*` environment variables (pydantic-settings).

Every port is chosen by a URL here (DESIGN.md, "Architecture: ports with one URL each"); the defaults are the
embedded ones, so `consultcam serve` runs with no service installed.

Where things are: this module holds the `Settings` class (fields, their cross-field checks and derived
values) and `read_settings`; `config_checks` the checks and normalisations of single values (URLs, lists,
rates) the validators call; `config_errors` the report of settings that cannot start consultcam, one line
per problem (`SettingsInvalid`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from consultcam import config_checks as checks
from consultcam.auth.principals import clinician_token_weakness
from consultcam.config_checks import (
    EMR_SCHEMES,
    METADATA_FIELDS,
    OIDC_ALGORITHMS,
    is_https_or_loopback,
    lan_address,
)
from consultcam.config_errors import SettingsInvalid, env_name, settings_problems, unreadable
from consultcam.files import write_private
from consultcam.terminology import TERMINOLOGY, Terminology, load_extension

__all__ = [
    "EMR_SCHEMES",
    "METADATA_FIELDS",
    "OIDC_ALGORITHMS",
    "PRACTICE_TIMEZONE",
    "WARN_IMAGES",
    "Settings",
    "SettingsInvalid",
    "env_name",
    "is_https_or_loopback",
    "lan_address",
    "read_settings",
]

#: Sessions warn the clinician when this many photos are taken (seeds: "20-image session limit with warning").
WARN_IMAGES = 20
#: New Zealand general practice: local dates and times (DICOM, ZIP entries) are Pacific/Auckland.
PRACTICE_TIMEZONE = ZoneInfo("Pacific/Auckland")


#: An OID as a URN (RFC 3001 "urn:oid:"; ITU-T X.660 arcs: 0, 1 or 2, then numbers without leading zeros).
OID_URN = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")


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

    @field_validator("mhd_source_id")
    @classmethod
    def _oid_urn(cls, value: str) -> str:
        """An OID as a URN (RFC 3001), as IHE MHD's sourceId is (IHE ITI TF-3 §4.2.3.2.13: sourceId)."""
        value = value.strip()
        if value and not OID_URN.fullmatch(value):
            raise ValueError(
                f"must be an OID as a URN, like urn:oid:1.2.3.4.5 (numbers separated by dots, no leading "
                f"zeros), not {value!r}; ask the document registry's administrator for the practice's OID"
            )
        return value

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
        return checks.frame_ancestors(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _trusted_proxies(cls, value: object) -> object:
        return checks.trusted_proxies(value)

    # -- sign-in: server-side clinician sessions, rate limits --
    # A browser's sign-in (consultcam.auth.signin) ends after this long without a request, and at the latest
    # this long after signing in; POST /logout ends it at once.
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
        return checks.rate_limit(value, env_name(str(info.field_name)))

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
        return None if value is None else checks.body_sites_extension(value)

    @cached_property
    def terminology(self) -> Terminology:
        """The terms this deployment accepts: the packaged list plus BODY_SITES_EXTENSION's sites."""
        return load_extension(self.body_sites_extension) if self.body_sites_extension else TERMINOLOGY

    # -- outbound: EMR connector credentials (docs/connectors.md) --
    # Never in CONSULTCAM_EMR_URL (URLs get logged); commits/connectors/registry.py hands them to the
    # connector. fhir+https: a static bearer token, or OAuth2 client credentials (RFC 6749 §4.4).
    emr_bearer_token: SecretStr | None = None
    emr_token_url: str = ""  # the token endpoint; with EMR_CLIENT_ID and EMR_CLIENT_SECRET
    emr_client_id: str = ""
    emr_client_secret: SecretStr | None = None
    emr_scope: str = ""  # optional, space separated
    # fhir+https: the largest request body the server takes (Medplum's sample: 1 MB of JSON); a larger commit
    # sends the photos as Binary first, or in several transactions (commits/connectors/fhir_limits.py).
    fhir_max_request_bytes: int = Field(1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)
    # fhir+https: the most entries the server takes in one transaction (Medplum: 8 with conditional creates);
    # unset: no limit. More photos go in several transactions, compensated (connectors/fhir_limits.py).
    fhir_max_transaction_entries: int | None = Field(None, ge=1, le=10_000)
    # fhir+https://…?profile=mhd: the SubmissionSet's sourceId, the practice's own OID (`urn:oid:1.2.…`) when
    # its document registry asks for one; unset: an OID under 2.25 made from the facility (fhir_mhd.py).
    mhd_source_id: str = ""
    # alex+https (Medtech ALEX): OAuth2 client credentials, all four required.
    alex_token_url: str = ""
    alex_client_id: str = ""
    alex_client_secret: SecretStr | None = None
    alex_scope: str = ""
    # The ALEX root for the vendor-forms launch decode (issue 12, docs/medtech.md); unset: the alex+https
    # EMR URL without its /FHIR (`consultcam.launch.medtech.alex_root`).
    alex_launch_url: str = ""

    @field_validator("emr_token_url", "alex_token_url")
    @classmethod
    def _token_endpoint(cls, value: str, info: ValidationInfo) -> str:
        return checks.token_endpoint(value, env_name(str(info.field_name)))

    @field_validator("alex_launch_url")
    @classmethod
    def _alex_launch_url(cls, value: str) -> str:
        return checks.alex_launch_url(value)

    @field_validator(
        "emr_client_id", "alex_client_id", "emr_scope", "alex_scope", "oidc_client_id", "smart_client_id"
    )
    @classmethod
    def _oauth2_words(cls, value: str, info: ValidationInfo) -> str:
        name = str(info.field_name)
        return checks.oauth2_words(value, env_name(name), scope=name.endswith("_scope"))

    @field_validator(
        "emr_bearer_token",
        "emr_client_secret",
        "alex_client_secret",
        "oidc_client_secret",
        "smart_client_secret",
    )
    @classmethod
    def _credential(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        name = str(info.field_name)
        return checks.credential(value, env_name(name), bearer=name.endswith("bearer_token"))

    s3_endpoint_url: str = ""
    s3_sse_kms_key_id: str = ""  # SSE-KMS key (id, ARN or alias) for S3 objects; unset: SSE-S3 (AES256)
    # Production clinician sign-in (consultcam/auth/oidc.py): both set = OIDC bearer JWTs are verified.
    oidc_issuer: str = ""  # e.g. https://login.example.org/realms/practice: the exact `iss`
    oidc_audience: str = ""  # a value the token's `aud` must contain (the client id / API identifier)
    oidc_jwks_url: str = ""  # default: `jwks_uri` from <issuer>/.well-known/openid-configuration
    oidc_algorithms: Annotated[tuple[str, ...], NoDecode] = ("RS256", "ES256")  # env: "RS256,ES256"
    oidc_leeway_seconds: int = Field(60, ge=0, le=300)  # clock skew allowed on exp, nbf and iat
    oidc_clinician_claim: str = "sub"  # the claim naming the practitioner: Clinician.id = "oidc:<value>"
    oidc_jwks_cache_seconds: int = Field(300, ge=10, le=86400)  # how long fetched keys are trusted
    oidc_http_timeout_seconds: float = Field(5.0, gt=0, le=30)  # discovery and JWKS fetches
    oidc_allow_embedded_token: bool = False  # also accept CLINICIAN_TOKEN when OIDC is on (not in production)
    # Browser sign-in by the OIDC authorization code flow (issue 13): the confidential client registered
    # with the issuer above; redirect URI {PUBLIC_URL}/auth/callback.
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr | None = None
    # SMART App Launch 2.x (issue 13): the FHIR servers allowed to launch consultcam (their `iss`, exactly;
    # env: comma separated), the client registered with them, and whether to ask for offline_access.
    smart_issuers: Annotated[tuple[str, ...], NoDecode] = ()
    smart_client_id: str = ""
    smart_client_secret: SecretStr | None = None
    smart_offline_access: bool = False

    @field_validator("oidc_algorithms", "smart_issuers", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        return tuple(a.strip() for a in value.split(",") if a.strip()) if isinstance(value, str) else value

    @field_validator("smart_issuers")
    @classmethod
    def _smart_issuers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return checks.smart_issuers(value)

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
        return checks.required_metadata(value)

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
        if self.oidc_client_id and not (self.oidc_issuer and self.oidc_client_secret):
            problems.append(
                "CONSULTCAM_OIDC_CLIENT_ID needs CONSULTCAM_OIDC_ISSUER, _AUDIENCE and _CLIENT_SECRET too "
                "(consultcam signs clinicians in as a confidential client)"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def oidc_enabled(self) -> bool:
        """Production clinician sign-in: OIDC bearer JWTs (consultcam/auth/oidc.py)."""
        return bool(self.oidc_issuer and self.oidc_audience)

    @property
    def oidc_login_enabled(self) -> bool:
        """Browser sign-in by the OIDC authorization code flow (consultcam/auth/oidc_login.py): OIDC on and
        a client registered (CONSULTCAM_OIDC_CLIENT_ID)."""
        return self.oidc_enabled and bool(self.oidc_client_id)

    # Every setting is checked here, at start, so a mistake stops the process with one line naming the
    # variable (`read_settings`) rather than failing at the first request that needs it.

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: str) -> str:
        return checks.database_url(value)

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, value: str) -> str:
        return checks.storage_url(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        return checks.redis_url(value)

    @field_validator("redis_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        return checks.redis_prefix(value)

    @field_validator("emr_url")
    @classmethod
    def _emr_scheme(cls, value: str) -> str:
        return checks.emr_url(value)

    @field_validator("public_url", "s3_endpoint_url")
    @classmethod
    def _web_address(cls, value: str, info: ValidationInfo) -> str:
        name = str(info.field_name)
        example = "https://photos.example.org" if name == "public_url" else "https://s3.example.org"
        return checks.web_address(value, env_name(name), example)

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
            # Not replacing: processes starting together on one DATA_DIR all end up with the first key.
            write_private(path, secrets.token_bytes(32), replace=False)
        return path.read_bytes()


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """`Settings()` from the environment, or SettingsInvalid listing every problem pydantic found (every
    field at once; the cross-field checks run once the fields are valid), one line each
    (`config_errors.settings_problems`). `environ` is where the offending values are looked up to show them
    (default os.environ, which pydantic-settings reads)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsInvalid(settings_problems(exc, Settings.model_fields, environ)) from None
    except SettingsError as exc:  # a complex field whose value is not JSON
        raise SettingsInvalid([unreadable(exc, Settings.model_fields, environ)]) from None
