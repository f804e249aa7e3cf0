"""`MedplumServer`: the handle tests use to start, steer and read the FHIR server built on Medplum's packages.

    with MedplumServer(max_request_bytes=1024 * 1024) as server:
        ... FhirConnector(server.base_url) ...
        server.settings(transaction=False, binary=False, refuse_write=3)
        server.requests(), server.read("Media", id), server.search("Media", identifier=...)

The server (tests/medplum/server.mjs: @medplum/fhir-router's FhirRouter and MemoryRepository, @medplum/core's
validator) runs under Node as its own process in a new process group on a free loopback port, written to a
ready file; the handle kills the group on exit (or at interpreter exit). `make test` installs it (`npm ci
--prefix tests/medplum`). The Medplum packages ask for Node 22.18+; on Node 20 the one thing missing is a
global WebSocket, which `--experimental-websocket` provides.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import weakref
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.doubles import start_process

SERVER_DIR = Path(__file__).resolve().parents[1] / "medplum"
NODE = shutil.which("node") or "/usr/bin/node"
START_TIMEOUT = 60.0  # seconds: Medplum indexes every FHIR R4 StructureDefinition at start (~3 s here)
FHIR_JSON = "application/fhir+json"

__all__ = ["MedplumServer"]


def node_flags() -> list[str]:
    """`--experimental-websocket` on Node before 22 (Medplum's core expects a global WebSocket)."""
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True).stdout
    major = int(version.strip().lstrip("v").split(".")[0])
    return ["--experimental-websocket"] if major < 22 else []


class MedplumServer:
    """A running server: `base_url` is http://127.0.0.1:<port>/fhir; `max_request_bytes` its body limit (413
    past it). Raises RuntimeError when it does not start, pytest.fail when it is not installed."""

    def __init__(self, *, max_request_bytes: int = 1024 * 1024) -> None:
        self.max_request_bytes = max_request_bytes
        self.root = ""
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._http: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return f"{self.root}/fhir"

    def __enter__(self) -> MedplumServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if not (SERVER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
            pytest.fail("the Medplum test server is not installed: run `make test-medplum` (make test does)")
        env = {
            **os.environ,
            "MEDPLUM_PORT": "0",
            "MEDPLUM_MAX_REQUEST_BYTES": str(self.max_request_bytes),
        }
        _, self._finalizer, port = start_process(
            self,
            [NODE, *node_flags(), str(SERVER_DIR / "server.mjs"), "--ready-file"],
            env,
            cwd=SERVER_DIR,
            label="Medplum test server",
            folder_prefix="medplum-server-",
            timeout=START_TIMEOUT,
        )
        self.root = f"http://127.0.0.1:{port}"
        self._http = httpx.Client(base_url=self.root, timeout=30.0, trust_env=False)

    def stop(self) -> None:
        """Kill the process group; idempotent."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._finalizer is not None:
            self._finalizer()

    # -- switches -----------------------------------------------------------------------------------------

    def settings(
        self,
        *,
        transaction: bool | None = None,
        binary: bool | None = None,
        max_request_bytes: int | None = None,
        refuse_write: int | None = None,
        lose_answers: int | None = None,
        fail_requests: int | None = None,
    ) -> None:
        """Whether the CapabilityStatement lists `transaction` (and POST / takes one) and Binary create; the
        body limit; refuse the Nth resource write from now on with 400 (0: none); do the next `lose_answers`
        POSTs other than Binary and answer them 503 (the answer lost on the way); answer the next
        `fail_requests` POSTs other than Binary 503 without doing them."""
        changes = {
            "transaction": transaction,
            "binary": binary,
            "maxRequestBytes": max_request_bytes,
            "refuseWrite": refuse_write,
            "loseAnswers": lose_answers,
            "failRequests": fail_requests,
        }
        self._client().post("/_control/settings", json={k: v for k, v in changes.items() if v is not None})

    # -- what it holds and saw ------------------------------------------------------------------------------

    def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        """Every FHIR request so far: {method, path, bytes (body), status}."""
        records: list[dict[str, Any]] = self._client().get("/_control/requests").json()
        return [r for r in records if method is None or r["method"] == method]

    def resources(self, kind: str) -> list[dict[str, Any]]:
        """Every stored resource of `kind` (not deleted)."""
        found: list[dict[str, Any]] = self._client().get("/_control/resources", params={"type": kind}).json()
        return found

    def read(self, reference: str) -> dict[str, Any]:
        """GET [base]/<type>/<id> through the FHIR API; raises AssertionError unless 200."""
        response = self._client().get(f"/fhir/{reference}", headers={"Accept": FHIR_JSON})
        assert response.status_code == 200, response.text[:500]
        resource: dict[str, Any] = response.json()
        return resource

    def search(self, kind: str, **params: str) -> list[dict[str, Any]]:
        """GET [base]/<kind>?params through the FHIR API: the matching resources."""
        response = self._client().get(f"/fhir/{kind}", params=params, headers={"Accept": FHIR_JSON})
        assert response.status_code == 200, response.text[:500]
        return [entry["resource"] for entry in response.json().get("entry") or []]

    def _client(self) -> httpx.Client:
        assert self._http is not None, "the Medplum test server is not running"
        return self._http
