"""`EhrDouble`: the handle tests use to start, steer and inspect the SMART EHR double (issue 13).

    with EhrDouble(redirect_uri=f"{app}/launch/callback") as ehr:
        pid = ehr.add_patient(family="Smith", given="Jane", birth_date="1980-04-02", nhi="ZZZ0016")
        eid = ehr.add_encounter(pid)
        user = ehr.add_practitioner()
        ... run consultcam with ehr.env(), open ehr.launch_url(app, patient=pid, encounter=eid, user=user) ...

The double runs as its own process (`python -m tests.smart.ehr_double`, tests/smart/ehr_double.py) in a new
process group, started with this interpreter from the repository root; the handle steers it over HTTP
(`/_double/...`) and kills the group on exit (or at interpreter exit): tests/doubles.py. See
/work/helpers/EHR_DOUBLE.md.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from tests.doubles import DoubleProcess
from tests.smart.ehr_double import ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_PERMISSION, ENV_REDIRECT_URI
from tests.smart.ehr_fhir import NHI_SYSTEM

__all__ = ["NHI_SYSTEM", "EhrDouble"]


class EhrDouble(DoubleProcess):
    """A running SMART EHR double. Attributes: root "http://127.0.0.1:PORT", iss root + "/fhir",
    client_id, client_secret (None: a public client), redirect_uri, permission ("v2", "v1" or "both": the
    scope names the server lists and accepts). Raises RuntimeError when the process does not start."""

    module, label, folder_prefix = "tests.smart.ehr_double", "EHR double", "ehr-double-"

    def __init__(
        self,
        *,
        client_id: str = "consultcam",
        client_secret: str | None = None,
        redirect_uri: str = "http://127.0.0.1/launch/callback",
        permission: str = "v2",
    ) -> None:
        if permission not in ("v2", "v1", "both"):
            raise ValueError("permission is v2, v1 or both")
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_uri, self.permission = redirect_uri, permission
        self._last_launch: str | None = None

    def __repr__(self) -> str:  # never the secret
        return f"EhrDouble(iss={self.iss!r}, client_id={self.client_id!r})"

    def _environment(self, env: dict[str, str]) -> dict[str, str]:
        env = {
            **env,
            ENV_CLIENT_ID: self.client_id,
            ENV_REDIRECT_URI: self.redirect_uri,
            ENV_PERMISSION: self.permission,
        }
        env.pop(ENV_CLIENT_SECRET, None)
        if self.client_secret is not None:
            env[ENV_CLIENT_SECRET] = self.client_secret
        return env

    def stop_answering(self) -> None:
        """Kill the double (the EHR is unreachable from now on); requests(), token_requests() and
        resources() keep answering what it held."""
        self._last = {
            "requests": self.requests(),
            "token_requests": self.token_requests(),
            "authorize_requests": self.authorize_requests(),
            "resources": {
                k: self.resources(k) for k in ("Media", "DocumentReference", "Patient", "Encounter")
            },
        }
        self.stop()

    # -- settings ------------------------------------------------------------------------------------------

    @property
    def iss(self) -> str:
        """The FHIR base, which is the SMART `iss`."""
        return f"{self.root}/fhir"

    def env(self) -> dict[str, str]:
        """consultcam's settings for this EHR: the issuer list, client id and (confidential) secret."""
        env = {"CONSULTCAM_SMART_ISSUERS": self.iss, "CONSULTCAM_SMART_CLIENT_ID": self.client_id}
        if self.client_secret is not None:
            env["CONSULTCAM_SMART_CLIENT_SECRET"] = self.client_secret
        return env

    # -- data ----------------------------------------------------------------------------------------------

    def add_patient(
        self,
        *,
        family: str = "Smith",
        given: str = "Jane",
        birth_date: str = "1980-04-02",
        nhi: str | None = "ZZZ0016",
    ) -> str:
        """Store a Patient (NHI identifier with NHI_SYSTEM when `nhi`); returns its id. The first patient
        added is the one a standalone launch picks (see select_patient)."""
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "name": [{"family": family, "given": given.split()}],
            "birthDate": birth_date,
        }
        if nhi:
            patient["identifier"] = [{"system": NHI_SYSTEM, "value": nhi}]
        return str(self.add_resource(patient)["id"])

    def add_encounter(self, patient: str, *, status: str = "in-progress") -> str:
        """Store an ambulatory Encounter for `patient`; returns its id."""
        encounter = {
            "resourceType": "Encounter",
            "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{patient}"},
            "period": {"start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        }
        return str(self.add_resource(encounter)["id"])

    def add_practitioner(self, *, family: str = "Ngata", given: str = "Aroha") -> str:
        """Store a Practitioner; returns "Practitioner/<id>" (a user's fhirUser, relative). The first one
        added is the user of a standalone launch."""
        practitioner = {"resourceType": "Practitioner", "name": [{"family": family, "given": given.split()}]}
        return f"Practitioner/{self.add_resource(practitioner)['id']}"

    def add_resource(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Store any resource unchecked; returns it with its id and meta."""
        stored: dict[str, Any] = self._control("POST", "resources", resource)
        return stored

    def select_patient(self, patient: str, user: str | None = None) -> None:
        """The patient (and user) a standalone launch picks from now on."""
        self._control("POST", "select", {"patient": patient} | ({"user": user} if user else {}))

    def new_launch(
        self, *, patient: str | None, encounter: str | None = None, user: str | None = None
    ) -> str:
        """Register an EHR launch context; returns the opaque `launch` value."""
        body = {"patient": patient, "encounter": encounter, "user": user}
        self._last_launch = str(self._control("POST", "launches", body)["launch"])
        return self._last_launch

    def launch_url(self, app_url: str, launch: str | None = None, **context: Any) -> str:
        """`{app_url}/launch?iss=…&launch=…`: `launch`, else a new launch from `context` (new_launch's
        arguments) when given, else the last new_launch()."""
        if launch is None:
            launch = self.new_launch(**context) if context else self._last_launch
        if launch is None:
            raise ValueError("no launch yet: call new_launch() or pass patient=…")
        return f"{app_url.rstrip('/')}/launch?{urlencode({'iss': self.iss, 'launch': launch})}"

    # -- steering ------------------------------------------------------------------------------------------

    def set_redirect_uri(self, uri: str) -> None:
        """The registered redirect URI from now on (for an app whose port is known only once it serves)."""
        self.redirect_uri = uri
        self._control("POST", "redirect-uri", {"uri": uri})

    def deny_next(self, times: int = 1) -> None:
        """The next authorization(s) answer error=access_denied to the redirect URI."""
        self._control("POST", "deny", {"times": times})

    def expire_tokens(self) -> None:
        """Every access token issued so far answers 401 invalid_token from now on."""
        self._control("POST", "expire-tokens", {})

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token issued so far answers invalid_grant from now on."""
        self._control("POST", "revoke-refresh-tokens", {})

    def set_access_token_lifetime(self, seconds: int) -> None:
        """expires_in (and the real lifetime) of access tokens issued from now on."""
        self._control("POST", "token-lifetime", {"seconds": seconds})

    def set_media_supported(self, supported: bool) -> None:
        """False: Media is absent from the CapabilityStatement and POST Media answers 404."""
        self._control("POST", "media", {"supported": supported})

    def next_id_token(self, *, foreign_key: bool = False, **claims: Any) -> None:
        """The next id_token carries `claims` over the right ones (a None value removes the claim), and is
        signed with a key not in the JWKS when `foreign_key` (e.g. next_id_token(nonce="wrong"))."""
        self._control("POST", "next-id-token", {"claims": claims, "foreign_key": foreign_key})

    def fail(self, status: int = 503, times: int = 1, path_prefix: str = "/fhir") -> None:
        """The next `times` EHR calls whose path starts with `path_prefix` answer `status` and do nothing."""
        self._control("POST", "fail", {"status": status, "times": times, "path_prefix": path_prefix})

    # -- what happened -------------------------------------------------------------------------------------

    # resources() and requests(): DoubleProcess's (the EHR's calls)

    def token_requests(self) -> list[dict[str, Any]]:
        """What /token received: {grant_type, code_verifier_ok (None for a refresh), redirect_uri,
        client_auth ("client_secret_basic", "client_secret_post" or "none")}."""
        return self._seen("token-requests")

    def authorize_requests(self) -> list[dict[str, str]]:
        """The query parameters of every /authorize request (response_type, client_id, scope, aud, ...)."""
        return self._seen("authorize-requests")
