"""The Medtech ALEX calls a launch needs (the `MedtechLaunch` port), over the retrying HTTP client.

* `GET {ALEX root}/vendorforms/api/getlaunchcontextstring/{context}/{signature}` decodes a launch (ALEX Apps
  Configuration puts `context` and `signature` in the app's URL); each path segment is percent-encoded. The
  ALEX root is CONSULTCAM_ALEX_LAUNCH_URL, else the `alex+https://…/FHIR` EMR URL without its `/FHIR`.
* `GET {FHIR base}/Patient/{id}` reads the patient, with `mt-facilityid` (the launch's facility).
* Every request to ALEX carries `Authorization: Bearer` (OAuth2 client credentials from the
  CONSULTCAM_ALEX_* settings, cached; fetched again once after a 401) and a fresh `mt-correlationid`
  (uuid4) for Medtech support.
* Answers are read with care: `createdTime` is ISO 8601 (a time without an offset is Pacific/Auckland
  time, Medtech's); ids must be FHIR ids (they go into a header and into references).

A launch is interactive (the GP waits): few, short retries (`LAUNCH_RETRY`), 10 s per phase. Nothing here
logs the context, the signature or a token; httpx's own request log line (which quotes the URL) is
silenced for the decode call by `_HideLaunchUrls`.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import httpx

from consultcam.commits.connectors.alex import medtech, parse_url
from consultcam.commits.connectors.registry import alex_credentials
from consultcam.config import PRACTICE_TIMEZONE, Settings
from consultcam.kit.http import RetryPolicy, Unreachable, new_client, send_with_retries
from consultcam.kit.oauth2 import TokenCache, TokenRefused, TokenUnreachable
from consultcam.launch.port import AlexPatient, LaunchContext, LaunchFailure
from consultcam.models import utcnow

__all__ = ["DECODE_PATH", "LAUNCH_RETRY", "AlexLaunchApi", "alex_root", "parse_context", "parse_patient"]

log = logging.getLogger(__name__)

DECODE_PATH = "/vendorforms/api/getlaunchcontextstring"
#: Two tries, a short pause, and no waiting on a long Retry-After: the GP is looking at the screen.
LAUNCH_RETRY = RetryPolicy(attempts=2, wait_initial=0.25, wait_max=1.0, max_retry_after=2.0,
                           give_up_on_long_retry_after=True)  # fmt: skip
#: FHIR R4 id (hl7.org/fhir/R4/datatypes.html#id): patient, provider and facility must be one.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class _HideLaunchUrls(logging.Filter):
    """Drops httpx's "HTTP Request: GET <url>" line for a decode: its URL is the launch's credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        return DECODE_PATH not in str(record.args) and DECODE_PATH not in str(record.msg)


_HIDE = _HideLaunchUrls()


def alex_root(settings: Settings) -> str:
    """The ALEX root the vendor-forms decode lives under: CONSULTCAM_ALEX_LAUNCH_URL, else the EMR URL's
    base (`alex+https://host/FHIR` → `https://host`). Raises ValueError for an unusable EMR URL."""
    if settings.alex_launch_url:
        return settings.alex_launch_url
    base = parse_url(settings.emr_url)
    return base[: -len("/fhir")] if base.lower().endswith("/fhir") else base


class AlexLaunchApi:
    """Medtech ALEX for launches: `decode` a launch context, `read_patient`. One httpx client for the
    process, closed by `close`. Raises `LaunchFailure` (see `consultcam.launch.port.Why`)."""

    def __init__(
        self,
        root: str,
        fhir_base: str,
        tokens: TokenCache,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy = LAUNCH_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.root = root.rstrip("/")
        self.fhir_base = fhir_base.rstrip("/")
        self._tokens = tokens
        self._retry = retry
        self._client = new_client(timeout=timeout, transport=transport)
        self._data = medtech()
        logging.getLogger("httpx").addFilter(_HIDE)

    def __repr__(self) -> str:  # never the token
        return f"AlexLaunchApi({self.root!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> AlexLaunchApi | None:
        """The adapter for an `alex+https://` CONSULTCAM_EMR_URL with the CONSULTCAM_ALEX_* credentials;
        None for any other EMR URL (no Medtech launch on this server). Raises ValueError when the ALEX URL
        or credentials are unusable (the same checks as the `alex` connector's)."""
        if not settings.emr_url.strip().lower().startswith("alex+"):
            return None
        tokens = TokenCache(alex_credentials(settings), retry=LAUNCH_RETRY)
        return cls(alex_root(settings), parse_url(settings.emr_url), tokens)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def decode(self, context: str, signature: str) -> LaunchContext:
        """`GET {root}/vendorforms/api/getlaunchcontextstring/{context}/{signature}` → the launch context.
        400 or 404 → "bad-signature"; see `_get` for the rest."""
        path = f"{DECODE_PATH}/{quote(context, safe='')}/{quote(signature, safe='')}"
        response = await self._get(f"{self.root}{path}", {}, "ALEX launch decode")
        if response.status_code in (400, 404):
            raise LaunchFailure(
                "bad-signature", f"ALEX refused the launch context (HTTP {response.status_code})"
            )
        return parse_context(_body(response, "the launch decode"))

    async def read_patient(self, patient_id: str, facility_code: str) -> AlexPatient:
        """`GET {FHIR base}/Patient/{id}` with `mt-facilityid` → the patient. 404 (or 410) →
        "patient-not-found"; see `_get` for the rest."""
        headers = {self._data["headers"]["facility"]: facility_code, "Accept": "application/fhir+json"}
        url = f"{self.fhir_base}/Patient/{quote(patient_id, safe='')}"
        response = await self._get(url, headers, "ALEX GET Patient")
        if response.status_code in (404, 410):
            raise LaunchFailure(
                "patient-not-found", f"ALEX has no such patient (HTTP {response.status_code})"
            )
        return parse_patient(_body(response, "the Patient read"), self._data["patient_identifier_system"])

    async def _get(self, url: str, headers: dict[str, str], label: str) -> httpx.Response:
        """GET with a bearer token (fetched again once after a 401) and a fresh `mt-correlationid`. Returns
        a 2xx, 400, 404 or 410 answer; raises LaunchFailure "alex-unreachable" (no answer),
        "alex-credentials" (token refused, or 401/403 from ALEX), "alex-error" (anything else)."""
        stale: str | None = None
        for _ in range(2):
            try:
                token = await self._tokens.token(self._client, stale=stale)
            except TokenRefused as exc:
                raise LaunchFailure("alex-credentials", f"the ALEX token endpoint: {exc}") from None
            except TokenUnreachable as exc:
                raise LaunchFailure("alex-unreachable", f"the ALEX token endpoint: {exc}") from None
            sent = {**headers, "Authorization": f"Bearer {token}"}

            def attempt(sent: dict[str, str] = sent) -> Awaitable[httpx.Response]:
                # A fresh correlation id for every request, retries included (Medtech support's key).
                correlation = {self._data["headers"]["correlation"]: str(uuid.uuid4())}
                return self._client.get(url, headers={**sent, **correlation})

            try:
                attempted = await send_with_retries(attempt, self._retry, method="GET", label=label)
            except Unreachable as exc:
                raise LaunchFailure("alex-unreachable", f"{label}: no answer ({exc})") from None
            response = attempted.response
            if response.status_code != 401:
                break
            stale = token
        status = response.status_code
        if status in (401, 403):
            raise LaunchFailure("alex-credentials", f"{label}: ALEX refused our credentials (HTTP {status})")
        if not (200 <= status < 300 or status in (400, 404, 410)):
            raise LaunchFailure("alex-error", f"{label}: ALEX answered HTTP {status}")
        return response


def _body(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer; LaunchFailure "alex-error" for anything else."""
    try:
        body = response.json() if 200 <= response.status_code < 300 else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise LaunchFailure("alex-error", f"ALEX answered {what} with HTTP {response.status_code}, not JSON")
    return body


def _fhir_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _FHIR_ID.fullmatch(value.strip()):
        raise LaunchFailure("alex-error", f"ALEX's {what} is not a FHIR id")
    return value.strip()


def parse_context(body: dict[str, Any]) -> LaunchContext:
    """ALEX's decode answer `{patientId|null, facilityCode, providerId, createdTime}` → LaunchContext.
    `patientId` null or "" means no patient is open. `createdTime` is ISO 8601; without an offset it is
    Pacific/Auckland time. Raises LaunchFailure "alex-error" for any other shape."""
    patient = body.get("patientId")
    patient_id = None if patient in (None, "") else _fhir_id(patient, "patientId")
    created = body.get("createdTime")
    try:
        created_at = datetime.fromisoformat(created) if isinstance(created, str) else None
    except ValueError:
        created_at = None
    if created_at is None:
        raise LaunchFailure("alex-error", "ALEX's createdTime is not an ISO 8601 date and time")
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=PRACTICE_TIMEZONE)
    return LaunchContext(
        patient_id=patient_id,
        facility_code=_fhir_id(body.get("facilityCode"), "facilityCode"),
        provider_id=_fhir_id(body.get("providerId"), "providerId"),
        created_at=created_at.astimezone(utcnow().tzinfo),
    )


def _display_name(names: Any) -> str | None:
    """FHIR R4 HumanName: the official name, else the usual one, else the first that is not old; its
    `text`, else given names then family."""
    usable = [n for n in names if isinstance(n, dict)] if isinstance(names, list) else []
    for use in ("official", "usual", None):
        for name in usable:
            if use is not None and name.get("use") != use:
                continue
            if use is None and name.get("use") in ("old", "anonymous"):
                continue
            given = [g for g in name.get("given") or [] if isinstance(g, str)]
            family = name["family"] if isinstance(name.get("family"), str) else ""
            text = name["text"] if isinstance(name.get("text"), str) else ""
            words = " ".join(text.split()) or " ".join(" ".join([*given, family]).split())
            if words:
                return words
    return None


def parse_patient(body: dict[str, Any], nhi_system: str) -> AlexPatient:
    """A FHIR R4 Patient from ALEX → AlexPatient (see its docstring). The NHI is the identifier with
    `nhi_system`; a partial birth date (YYYY, YYYY-MM) is left out. Raises LaunchFailure "alex-error" when
    it is not a Patient with an id and a name."""
    if body.get("resourceType") != "Patient":
        raise LaunchFailure("alex-error", "ALEX answered the Patient read with another resource")
    name = _display_name(body.get("name"))
    if name is None:
        raise LaunchFailure("alex-error", "the patient has no name in ALEX")
    nhi = None
    for identifier in body.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == nhi_system:
            value = identifier.get("value")
            nhi = value.strip() if isinstance(value, str) and value.strip() else None
            break
    birth = body.get("birthDate")
    try:
        birth_date = (
            date.fromisoformat(birth) if isinstance(birth, str) and _FULL_DATE.fullmatch(birth) else None
        )
    except ValueError:  # 2020-02-30
        birth_date = None
    return AlexPatient(id=_fhir_id(body.get("id"), "Patient.id"), name=name, nhi=nhi, birth_date=birth_date)
