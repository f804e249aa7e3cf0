"""The OpenAPI document against the running server: schemathesis sends generated requests (valid and not) to
a real `consultcam serve` on each database backend and fails on a 5xx, a status the document does not
declare, or a body that does not match the declared schema (our `{error, detail}` shape included).

Each operation is tried on a fresh capture session with a paired phone and one registered photo, so the
generated requests reach the rules behind the identifiers, not only "no such session". Bounded: a fixed
number of examples per operation, no deadline (the machine is shared and noisy), no database of examples.
The event stream is left out: it never ends, which a request/response fuzzer cannot wait for; its errors
are tested in tests/events and tests/security.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import GenerationMode

from consultcam.db import migrate
from tests.conftest import CONSENT, PATIENT, token_of
from tests.e2e.harness import Server, start_server
from tests.production.cluster import create_database, drop_database

EXAMPLES = int(os.environ.get("CONSULTCAM_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`consultcam serve` on a fresh database of each backend."""
    env: dict[str, str] = {"CONSULTCAM_SWEEP_INTERVAL_SECONDS": "3600"}
    database = ""
    if request.param == "postgresql":
        database = create_database()
        migrate(database)
        env["CONSULTCAM_DATABASE_URL"] = database
    running = start_server(tmp_path_factory.mktemp(f"openapi-{request.param}"), **env)
    try:
        yield running
    finally:
        running.stop()
        if database:
            drop_database(database)


def _photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (180, 120, 100)).save(out, "JPEG", quality=85)
    return out.getvalue()


def scene(server: Server) -> dict[str, str]:
    """A fresh session with consent, a paired phone and one registered photo: the ids to aim at."""
    with server.api() as clinician, httpx.Client(base_url=server.url, timeout=10) as phone:
        encounter = f"enc-{os.urandom(6).hex()}"
        session = clinician.post("/api/sessions", json={"encounterId": encounter, "patient": PATIENT}).json()
        clinician.put(f"/api/sessions/{session['id']}/consent", json=CONSENT).raise_for_status()
        phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])}).raise_for_status()
        data = _photo()
        slot = clinician.post(
            f"/api/sessions/{session['id']}/uploads",
            json={"contentType": "image/jpeg", "sizeBytes": len(data)},
        ).json()
        clinician.request(slot["method"], slot["uploadUrl"], content=data, headers=slot["headers"])
        image = clinician.post(f"/api/sessions/{session['id']}/images", json={"imageId": slot["imageId"]})
        image.raise_for_status()
    return {"session_id": session["id"], "image_id": slot["imageId"]}


def fuzz(operation: Any, server: Server, ids: dict[str, str]) -> None:
    """EXAMPLES generated requests to one operation as the clinician, aimed at `ids` where the path names
    them; raises what the first failing check raised."""
    headers = {"Authorization": f"Bearer {server.token}"}

    aimed = {name: value for name, value in ids.items() if "{" + name + "}" in operation.path}
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=aimed),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)

    run()


def test_every_answer_is_documented(server: Server) -> None:
    """Generated requests to every operation as the clinician: no 5xx, and every status and body is the
    documented one. Each operation is tried on a scene of its own; the failures of all are reported."""
    schema = schemathesis.openapi.from_url(f"{server.url}/api/openapi.json")
    failures: dict[str, str] = {}
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw.get("operationId") == "events":
            continue
        ids = scene(server)
        tried += 1

        try:
            fuzz(operation, server, ids)
        except (Exception, BaseExceptionGroup) as exc:
            failures[operation.label] = str(exc)[:2000]
    assert tried >= 15
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_errors_are_documented_in_our_shape(server: Server) -> None:
    """The document declares the `{error, detail}` body for every error, FastAPI's own validation shape
    nowhere, and readable operation ids."""
    document = httpx.get(f"{server.url}/api/openapi.json", timeout=10).json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert document["components"]["schemas"]["Error"]["required"] == ["error", "detail"]
    operations = [op for ops in document["paths"].values() for op in ops.values()]
    for operation in operations:
        assert operation["operationId"][0].islower(), operation
        assert "_" not in operation["operationId"], operation
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error", (operation["operationId"], status)
    commit = document["paths"]["/api/sessions/{session_id}/commit"]["post"]
    assert {"401", "403", "404", "409", "422", "502"} <= set(commit["responses"])
