"""TEMPORARY local stand-in (untracked) for the alexdouble branch's handle; replaced at merge."""
from __future__ import annotations

import subprocess, sys, tempfile, time
from datetime import datetime, UTC
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx

NHI_SYSTEM = "https://standards.digital.health.nz/ns/nhi-id"


class AlexDouble:
    client_id, client_secret, scope = "consultcam-test", "test-secret", "api://consultcam-test/.default"

    def __enter__(self):
        ready = Path(tempfile.mkdtemp()) / "ready"
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.medtech.alex_double", "--port", "0", "--ready-file", str(ready)])
        for _ in range(200):
            if ready.exists() and ready.read_text():
                break
            time.sleep(0.05)
        port = int(ready.read_text())
        self.root = f"http://127.0.0.1:{port}"
        self.fhir_url = self.root + "/FHIR"
        self.emr_url = "alex+" + self.fhir_url
        self.token_url = self.root + "/oauth2/v2.0/token"
        return self

    def __exit__(self, *a):
        self.proc.kill(); self.proc.wait()

    def env(self):
        return {"CONSULTCAM_EMR_URL": self.emr_url, "CONSULTCAM_ALEX_TOKEN_URL": self.token_url,
                "CONSULTCAM_ALEX_CLIENT_ID": self.client_id, "CONSULTCAM_ALEX_CLIENT_SECRET": self.client_secret,
                "CONSULTCAM_ALEX_SCOPE": self.scope}

    def _post(self, name, body):
        return httpx.post(f"{self.root}/_double/{name}", json=body).json()

    def add_patient(self, *, nhi, family, given, birth_date):
        return self._post("patient", {"nhi": nhi, "family": family, "given": given, "birth_date": birth_date})["id"]

    def launch(self, *, patient_id, provider_id="PRV123", facility_code="F2N060-E", created=None):
        created = (created or datetime.now(UTC)).astimezone(ZoneInfo("Pacific/Auckland")).isoformat(timespec="seconds")
        r = self._post("launch", {"patientId": patient_id, "facilityCode": facility_code, "providerId": provider_id, "createdTime": created})
        return r["context"], r["signature"]

    def launch_query(self, **kw):
        c, s = self.launch(**kw)
        return urlencode({"context": c, "signature": s})

    def requests(self):
        return [r for r in httpx.get(f"{self.root}/_double/requests").json()]

    def fail(self, *, status=503, times=1, method="POST", path_prefix="/FHIR/DocumentReference", retry_after=None):
        self._post("fail", {"status": status, "times": times, "method": method, "path_prefix": path_prefix})

    def stop_answering(self):
        self.proc.kill(); self.proc.wait()

    def decode_count(self):
        return httpx.get(f"{self.root}/_double/decodes").json()["count"]
