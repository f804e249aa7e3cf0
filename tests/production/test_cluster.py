"""Issue 3's proof: two web processes and a worker on PostgreSQL, Redis and S3 behave as one service."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import PATIENT, CsrfToken, jpeg_bytes
from tests.production.cluster import Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster.start(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


def start_session(cluster: Cluster, web: int = 0) -> dict[str, Any]:
    with cluster.webs[web].api() as desktop:
        response = desktop.post(
            "/api/sessions", json={"encounterId": f"enc-{time.monotonic_ns()}", "patient": PATIENT}
        )
    assert response.status_code == 201, response.text
    return response.json()


def paired_phone(cluster: Cluster, session: dict[str, Any], web: int = 0) -> httpx.Client:
    """A phone paired through web process `web` that has recorded the patient's consent, as the phone page
    does before the first photo (CONSULTCAM_CONSENT_REQUIRED is on by default)."""
    phone = httpx.Client(
        base_url=cluster.webs[web].url, timeout=10, event_hooks=CsrfToken().hooks(asynchronous=False)
    )
    response = phone.post("/api/pair", json={"token": session["pairing"]["url"].rsplit("/", 1)[1]})
    assert response.status_code == 200, response.text
    assert response.json()["session"]["consentRequired"] is True
    consent = phone.put(
        f"/api/sessions/{session['id']}/consent", json={"scope": "clinical", "givenBy": "patient"}
    )
    assert consent.status_code == 200, consent.text
    return phone


#: A body site: what CONSULTCAM_REQUIRED_METADATA asks of every photo before a commit, by default.
UPPER_ARM = {"system": "http://snomed.info/sct", "code": "40983000", "display": "Upper arm structure"}


def upload(
    phone: httpx.Client, session_id: str, data: bytes, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Presign through the web process, PUT straight to S3, register through the web process."""
    presign = phone.post(
        f"/api/sessions/{session_id}/uploads", json={"contentType": "image/jpeg", "sizeBytes": len(data)}
    )
    assert presign.status_code == 201, presign.text
    body = presign.json()
    assert "X-Amz-Signature=" in body["uploadUrl"]  # straight to S3, not through the web process
    put = httpx.put(body["uploadUrl"], content=data, headers=body["headers"], timeout=10)
    assert put.status_code == 200, put.text
    registered = phone.post(
        f"/api/sessions/{session_id}/images",
        json={"imageId": body["imageId"], **({"metadata": metadata} if metadata else {})},
    )
    assert registered.status_code == 201, registered.text
    return registered.json()


class EventReader:
    """A session's SSE stream read from one web process in a thread; each event kept with its arrival time."""

    def __init__(self, web_url: str, token: str, session_id: str, last_event_id: str | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        headers = {"Authorization": f"Bearer {token}"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self._thread = threading.Thread(
            target=self._run, args=(f"{web_url}/api/sessions/{session_id}/events", headers), daemon=True
        )
        self._thread.start()
        assert self.connected.wait(10)

    def _run(self, url: str, headers: dict[str, str]) -> None:
        current: dict[str, Any] = {}
        try:
            with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=60)) as response:
                self.connected.set()
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if not line:
                        if current.get("event") not in (None, "ping"):
                            self.events.append({**current, "received": time.perf_counter()})
                        current = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        current[name] = json.loads(value) if name == "data" else value.strip()
        except httpx.HTTPError:
            if not self._stop.is_set():  # a closed reader's server may go away (restart): that is fine
                raise

    def wait_for(self, event_type: str, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events if e["event"] == event_type]
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(f"no {count}× {event_type} in {[e['event'] for e in self.events]}")

    def close(self) -> None:
        self._stop.set()


def test_a_photo_registered_on_one_process_reaches_a_desktop_on_the_other(cluster: Cluster):
    session = start_session(cluster, web=0)
    reader = EventReader(cluster.webs[1].url, cluster.webs[1].token, session["id"])
    phone = paired_phone(cluster, session, web=0)
    image = upload(phone, session["id"], jpeg_bytes())
    [added] = reader.wait_for("image.added")
    reader.close()
    assert added["data"]["data"]["image"]["id"] == image["id"]
    # The object is in the bucket, encrypted, under the configured prefix.
    head = cluster.s3().head_object(
        Bucket=cluster.bucket,
        Key=f"consultcam/sessions/{session['id']}/{image['id']}.{image['sha256'][:16]}.jpg",
    )
    assert head["ServerSideEncryption"] == "AES256"
    # And the other process serves it.
    with cluster.webs[1].api() as desktop:
        state = desktop.get(f"/api/sessions/{session['id']}").json()
    assert [i["id"] for i in state["images"]] == [image["id"]]
    assert httpx.get(state["images"][0]["urls"]["thumbnail"]).status_code == 200


def test_one_pairing_token_redeemed_forty_times_across_processes_pairs_one_phone(cluster: Cluster):
    session = start_session(cluster)
    token = session["pairing"]["url"].rsplit("/", 1)[1]
    urls = [cluster.webs[i % 2].url for i in range(40)]
    barrier = threading.Barrier(40)

    def redeem(url: str) -> int:
        barrier.wait()
        return httpx.post(f"{url}/api/pair", json={"token": token}, timeout=20).status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(redeem, urls))
    assert sorted(statuses) == [200] + [409] * 39


def test_a_reconnecting_stream_gets_exactly_what_it_missed(cluster: Cluster):
    session = start_session(cluster)
    phone = paired_phone(cluster, session)
    web_b = cluster.webs[1]
    first_reader = EventReader(web_b.url, web_b.token, session["id"])
    first = upload(phone, session["id"], jpeg_bytes())
    [paired] = first_reader.wait_for("phone.paired")
    [added] = first_reader.wait_for("image.added")
    first_reader.close()
    missed = [upload(phone, session["id"], jpeg_bytes(name)) for name in ("cat.jpg", "coffee.jpg")]
    second_reader = EventReader(web_b.url, web_b.token, session["id"], last_event_id=added["id"])
    replayed = second_reader.wait_for("image.added", 2)
    second_reader.close()
    assert paired["id"] < added["id"]
    assert [e["data"]["data"]["image"]["id"] for e in replayed] == [m["id"] for m in missed]
    assert all(e["data"]["data"]["image"]["id"] != first["id"] for e in second_reader.events)


def test_restarting_a_web_process_loses_nothing(cluster: Cluster):
    session = start_session(cluster, web=1)
    phone = paired_phone(cluster, session, web=0)
    image = upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": UPPER_ARM})
    reader = EventReader(cluster.webs[1].url, cluster.webs[1].token, session["id"])
    [before] = reader.wait_for("image.added")
    reader.close()
    web_b = cluster.restart_web(1)
    with web_b.api() as desktop:
        state = desktop.get(f"/api/sessions/{session['id']}").json()
    assert [i["id"] for i in state["images"]] == [image["id"]]
    replay = EventReader(web_b.url, web_b.token, session["id"])
    assert [e["id"] for e in replay.wait_for("image.added")] == [before["id"]]
    replay.close()
    with web_b.api() as desktop:
        committed = desktop.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert committed.status_code == 200, committed.text
    assert [r["status"] for r in committed.json()["results"]] == ["committed"]
    objects = cluster.s3().list_objects_v2(
        Bucket=cluster.bucket, Prefix=f"consultcam/sessions/{session['id']}/"
    )
    assert objects.get("KeyCount", 0) == 0  # temporary copies deleted after the commit


def test_an_upload_that_never_arrives_leaves_nothing_behind(cluster: Cluster):
    session = start_session(cluster)
    phone = paired_phone(cluster, session)
    presign = phone.post(
        f"/api/sessions/{session['id']}/uploads", json={"contentType": "image/jpeg", "sizeBytes": 1000}
    )
    image_id = presign.json()["imageId"]
    missing = phone.post(f"/api/sessions/{session['id']}/images", json={"imageId": image_id})
    assert missing.status_code == 422
    assert missing.json()["error"] == "UploadMissing"
    with cluster.webs[0].api() as desktop:
        assert desktop.get(f"/api/sessions/{session['id']}").json()["images"] == []


def test_readyz_reports_each_service(cluster: Cluster):
    ready = httpx.get(f"{cluster.webs[0].url}/readyz").json()
    assert ready == {
        "status": "ready",
        "checks": {"database": "ok", "store": "ok", "bus": "ok", "connector": "ok"},
    }


def test_the_worker_sweeps_abandoned_uploads(cluster: Cluster):
    """With Redis configured the web processes never sweep; the worker does, once per period."""
    session = start_session(cluster)
    phone = paired_phone(cluster, session)
    presign = phone.post(
        f"/api/sessions/{session['id']}/uploads", json={"contentType": "image/jpeg", "sizeBytes": 1000}
    )
    image_id = presign.json()["imageId"]

    async def expire_upload() -> None:
        connection = await asyncpg.connect(cluster.env["CONSULTCAM_DATABASE_URL"].replace("+asyncpg", ""))
        try:
            await connection.execute(
                "UPDATE clinical_images SET upload_expires_at = now() - interval '1 hour' WHERE id = $1",
                image_id,
            )
        finally:
            await connection.close()

    asyncio.run(expire_upload())
    deadline = time.monotonic() + 20
    count = None
    while time.monotonic() < deadline:
        with cluster.webs[0].api() as desktop:
            count = desktop.get(f"/api/sessions/{session['id']}").json()["imageCount"]
        if count == 0:
            break
        time.sleep(0.25)
    assert count == 0
