"""`AlexDouble`: the handle tests use to start, steer and inspect the Medtech ALEX double (issue 12).

    with AlexDouble() as alex:
        pid = alex.add_patient(nhi="ZZZ0016", family="Smith", given="Jane", birth_date="1980-04-02")
        context, signature = alex.launch(patient_id=pid, provider_id="PRV123", facility_code="F2N060-E")
        ... run consultcam with alex.env() ...
        assert alex.resources("DocumentReference")[0]["subject"] == {"reference": f"Patient/{pid}"}

The double runs as its own process (`python -m tests.medtech.alex_double`, tests/medtech/alex_double.py) in a
new process group, started with this interpreter from the repository root; the handle steers it over HTTP
(`/_double/...`) and kills the group on exit (or at interpreter exit, whatever happens): tests/doubles.py.
Each handle has its own client secret and launch-signing key, made up here and passed through the environment
(never argv).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from tests.doubles import DoubleProcess
from tests.medtech.alex_double import (
    DEFAULT_CLIENT_ID,
    DEFAULT_SCOPE,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    ENV_SCOPE,
    ENV_SIGNING_KEY,
)
from tests.medtech.alex_fhir import NHI_SYSTEM
from tests.medtech.alex_launch import sign

__all__ = ["NHI_SYSTEM", "AlexDouble", "sign"]


class AlexDouble(DoubleProcess):
    """A running ALEX double: URLs, credentials and controls (see the module docstring).

    Attributes: root "http://127.0.0.1:PORT", fhir_url root + "/FHIR", emr_url "alex+http://…/FHIR",
    token_url root + "/oauth2/v2.0/token", client_id, client_secret, scope, signing_key (bytes: the HMAC
    key of launch signatures, for tests that forge one). Raises RuntimeError when the process does not start.
    """

    module, label, folder_prefix = "tests.medtech.alex_double", "ALEX double", "alex-double-"

    def __init__(self, *, client_id: str = DEFAULT_CLIENT_ID, scope: str = DEFAULT_SCOPE) -> None:
        super().__init__()
        self.client_id, self.scope = client_id, scope
        self.client_secret = secrets.token_urlsafe(24)
        self.signing_key = secrets.token_bytes(32)

    def __repr__(self) -> str:  # never the secret or the key
        return f"AlexDouble(root={self.root!r}, client_id={self.client_id!r})"

    # -- life ----------------------------------------------------------------------------------------------

    def _environment(self, env: dict[str, str]) -> dict[str, str]:
        return {
            **env,
            ENV_CLIENT_ID: self.client_id,
            ENV_CLIENT_SECRET: self.client_secret,
            ENV_SCOPE: self.scope,
            ENV_SIGNING_KEY: self.signing_key.hex(),
        }

    def stop_answering(self) -> None:
        """Kill the double: from now on connections to it are refused (ALEX unreachable). resources(),
        requests() and decode_count() keep answering what it held when it died."""
        self._last = {
            "requests": self.requests(),
            "decode_count": self.decode_count(),
            "resources": {kind: self.resources(kind) for kind in ("Patient", "DocumentReference", "Media")},
        }
        self.stop()

    # -- URLs and settings ---------------------------------------------------------------------------------

    @property
    def fhir_url(self) -> str:
        return f"{self.root}/FHIR"

    @property
    def emr_url(self) -> str:
        """CONSULTCAM_EMR_URL for this double: alex+http://127.0.0.1:PORT/FHIR."""
        return "alex+" + self.fhir_url

    @property
    def token_url(self) -> str:
        return f"{self.root}/oauth2/v2.0/token"

    def env(self) -> dict[str, str]:
        """consultcam's settings to talk to this double (EMR URL and the four ALEX client settings)."""
        return {
            "CONSULTCAM_EMR_URL": self.emr_url,
            "CONSULTCAM_ALEX_TOKEN_URL": self.token_url,
            "CONSULTCAM_ALEX_CLIENT_ID": self.client_id,
            "CONSULTCAM_ALEX_CLIENT_SECRET": self.client_secret,
            "CONSULTCAM_ALEX_SCOPE": self.scope,
        }

    # -- data ----------------------------------------------------------------------------------------------

    def add_patient(self, *, nhi: str, family: str, given: str | list[str], birth_date: str) -> str:
        """Store a Patient (NHI identifier with NHI_SYSTEM, birth date YYYY-MM-DD); returns its ALEX id."""
        body = {"nhi": nhi, "family": family, "given": given, "birth_date": birth_date}
        return str(self._control("POST", "patients", body)["id"])

    def add_resource(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Store a Patient, DocumentReference or Media directly, unchecked (as if made earlier, e.g. by a
        commit that died before it knew); returns it with its new id and meta."""
        stored: dict[str, Any] = self._control("POST", "resources", resource)
        return stored

    def launch(
        self,
        patient_id: str | None,
        *,
        provider_id: str = "PRV123",
        facility_code: str = "F2N060-E",
        created: datetime | None = None,
    ) -> tuple[str, str]:
        """Register a launch as Medtech Evolution would: (context, signature) for the app's URL.

        created: when Medtech made the context (aware; default now); decoded as createdTime with the
        Pacific/Auckland offset. Raises ValueError for a naive datetime."""
        created = created or datetime.now(UTC)
        if created.tzinfo is None:
            raise ValueError("created must be an aware datetime")
        body = {
            "patient_id": patient_id,
            "provider_id": provider_id,
            "facility_code": facility_code,
            "created": created.isoformat(),
        }
        answer = self._control("POST", "launches", body)
        return str(answer["context"]), str(answer["signature"])

    def launch_query(
        self,
        patient_id: str | None,
        *,
        provider_id: str = "PRV123",
        facility_code: str = "F2N060-E",
        created: datetime | None = None,
    ) -> str:
        """`context=…&signature=…` (URL-encoded) for GET /launch/medtech."""
        context, signature = self.launch(
            patient_id=patient_id, provider_id=provider_id, facility_code=facility_code, created=created
        )
        return urlencode({"context": context, "signature": signature})

    # -- what happened -------------------------------------------------------------------------------------

    # resources() and requests(): DoubleProcess's (ALEX's calls; Patient, DocumentReference, Media)

    def decode_count(self) -> int:
        """How many vendor-forms decodes were answered 200."""
        if self._last is not None:
            return int(self._last["decode_count"])
        return int(self._control("GET", "decode-count")["count"])

    # -- steering ------------------------------------------------------------------------------------------

    def fail(
        self,
        status: int = 503,
        times: int = 1,
        method: str | None = "POST",
        path_prefix: str = "/FHIR/DocumentReference",
        retry_after: int | str | None = None,
    ) -> None:
        """The next `times` ALEX calls with `method` (None: any) whose path starts with `path_prefix` answer
        `status` (with Retry-After when given) and do nothing else. Applies to the token endpoint and the
        vendor-forms decode too when the prefix matches them."""
        body = {"status": status, "times": times, "method": method, "path_prefix": path_prefix}
        self._control("POST", "fail", {**body, "retry_after": retry_after})

    def refuse_deletes(self, refuse: bool = True) -> None:
        """While True, every DELETE answers 403 with an OperationOutcome and deletes nothing."""
        self._control("POST", "refuse-deletes", {"refuse": refuse})

    def revoke_tokens(self) -> None:
        """Every access token issued so far answers 401 from now on (as after expiry)."""
        self._control("POST", "revoke-tokens", {})
