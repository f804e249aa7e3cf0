"""Crash during commit (issue 10, "Load and faults"): kill -9 of a real `consultcam serve` mid-commit.

Each test runs `consultcam serve` as a process on the test's database (SQLite and PostgreSQL), slows the
commit with a real delay on the wire (a slow link to S3, a FHIR server that answers late), kills the process
with SIGKILL and starts it again on the same data. Asserted is what a GP or an auditor would notice: the
session is not left "committing" past the commit lease, the audit trail names the interruption, the session
the desktop reads says so, a second commit succeeds with the same commit id, and the record holds exactly
one copy of each photo. A long commit that keeps renewing its lease is never reopened under it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import boto3
import httpx
import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consultcam.db import WRITE_OPTION, create_engine, create_sessionmaker
from consultcam.models import AuditEvent, CaptureSession
from tests.commits.fhir_server import FhirTestServer
from tests.commits.slow_proxy import SlowProxy
from tests.conftest import CONSENT, PATIENT, assert_error, jpeg_bytes
from tests.e2e.harness import Server, launch_chromium, start_server
from tests.storage.moto_server import ACCESS_KEY, REGION, SECRET_KEY, start_moto_server

#: CONSULTCAM_COMMIT_LEASE_SECONDS here: a heartbeat each second, an interrupted commit found in three.
LEASE = 3
PHOTOS = ("fundus-left-eye.jpg", "coffee.jpg", "rocket.jpg")
T = TypeVar("T")


# -- the pieces -------------------------------------------------------------------------------------------


class Database:
    """The server's database as the test sees it, through the project's own engine (SQLite or PostgreSQL):
    reads, and a lock held like another writer would hold it."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._engine = create_engine(url)
        self._sessions = create_sessionmaker(self._engine)
        self._held: AsyncSession | None = None

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(coroutine)

    def session(self, session_id: str) -> CaptureSession:
        async def read() -> CaptureSession:
            async with self._sessions() as db:
                return (
                    await db.execute(select(CaptureSession).where(CaptureSession.id == session_id))
                ).scalar_one()

        return self._run(read())

    def audit(self, session_id: str) -> list[AuditEvent]:
        async def read() -> list[AuditEvent]:
            async with self._sessions() as db:
                query = select(AuditEvent).where(AuditEvent.session_id == session_id).order_by(AuditEvent.id)
                return list((await db.execute(query)).scalars().all())

        return self._run(read())

    def hold(self, session_id: str) -> None:
        """Lock as a writer would: SQLite's write lock (BEGIN IMMEDIATE), PostgreSQL's session row lock.
        The commit's last step (recording its outcome) waits behind it."""

        async def lock() -> AsyncSession:
            db = self._sessions()
            await db.connection(execution_options={WRITE_OPTION: True})
            await db.execute(select(CaptureSession).where(CaptureSession.id == session_id).with_for_update())
            return db

        self._held = self._run(lock())

    def release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._run(held.rollback())
            self._run(held.close())

    def close(self) -> None:
        self.release()
        self._run(self._engine.dispose())
        self._loop.close()


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.close()


@pytest.fixture
def slow_s3(tmp_path: Path) -> Iterator[tuple[dict[str, str], SlowProxy]]:
    """An S3 protocol server (moto) with a fresh bucket, reached through a SlowProxy; the store settings
    and credentials for `consultcam serve`."""
    moto = start_moto_server(tmp_path / "moto.log")
    bucket = f"consultcam-crash-{uuid.uuid4().hex[:10]}"
    boto3.client(
        "s3",
        endpoint_url=moto.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    try:
        with SlowProxy(int(moto.endpoint.rsplit(":", 1)[1])) as proxy:
            yield (
                {
                    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                    "AWS_REGION": REGION,
                    "AWS_DEFAULT_REGION": REGION,
                    "AWS_EC2_METADATA_DISABLED": "true",
                    "CONSULTCAM_STORAGE_URL": f"s3://{bucket}/consultcam",
                    "CONSULTCAM_S3_ENDPOINT_URL": proxy.url,
                },
                proxy,
            )
    finally:
        moto.stop()


class Servers:
    """`consultcam serve` processes, one after another, on one data folder and database; all stopped at the
    end of the test, whatever happened."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env, self.started = tmp, env, []  # type: tuple[Path, dict[str, str], list[Server]]

    def start(self) -> Server:
        server = start_server(
            self.tmp / f"run{len(self.started)}", CONSULTCAM_DATA_DIR=str(self.tmp / "data"), **self.env
        )
        server.data_dir = self.tmp / "data"  # every run on the same data (start_server's own is per run)
        self.started.append(server)
        return server

    def stop(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def servers(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Servers]]:
    made: list[Servers] = []

    def make(**env: str) -> Servers:
        made.append(
            Servers(
                tmp_path,
                {
                    "CONSULTCAM_DATABASE_URL": database_url,
                    "CONSULTCAM_COMMIT_LEASE_SECONDS": str(LEASE),
                    "CONSULTCAM_REQUIRED_METADATA": "",
                    **env,
                },
            )
        )
        return made[-1]

    yield make
    for each in made:
        each.stop()


def kill(server: Server) -> None:
    """SIGKILL: no shutdown handler, no finally block, no last write."""
    server.process.kill()
    server.process.wait(timeout=10)


def wait_for(what: str, check: Callable[[], T], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def session_with_photos(server: Server, count: int = 3) -> tuple[dict[str, Any], list[str]]:
    """A session with the patient's consent and `count` photos, uploaded as the pages do."""
    with server.api() as api:
        session = api.post(
            "/api/sessions", json={"encounterId": f"enc-{uuid.uuid4().hex[:8]}", "patient": PATIENT}
        )
        assert session.status_code == 201, session.text
        session_id = session.json()["id"]
        assert api.put(f"/api/sessions/{session_id}/consent", json=CONSENT).status_code == 200
        image_ids = []
        for name in PHOTOS[:count]:
            data = jpeg_bytes(name)
            slot = api.post(
                f"/api/sessions/{session_id}/uploads",
                json={"contentType": "image/jpeg", "sizeBytes": len(data)},
            ).json()
            url = slot["uploadUrl"] if "://" in slot["uploadUrl"] else server.url + slot["uploadUrl"]
            assert (
                httpx.request(slot["method"], url, content=data, headers=slot["headers"]).status_code == 200
            )
            registered = api.post(f"/api/sessions/{session_id}/images", json={"imageId": slot["imageId"]})
            assert registered.status_code == 201, registered.text
            image_ids.append(slot["imageId"])
    return session.json(), image_ids


def commit(server: Server, session_id: str, image_ids: list[str], timeout: float = 60) -> httpx.Response:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=timeout
    ) as api:
        return api.post(f"/api/sessions/{session_id}/commit", json={"imageIds": image_ids})


def get_session(server: Server, session_id: str) -> dict[str, Any]:
    with server.api() as api:
        response = api.get(f"/api/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return response.json()


def actions(database: Database, session_id: str) -> list[str]:
    return [event.action for event in database.audit(session_id) if event.action.startswith("commit.")]


# -- export: the Bundle was written, the process died before recording it ---------------------------------


def test_an_export_commit_killed_after_writing_its_bundle_is_interrupted_and_retried_into_one_bundle(
    servers: Callable[..., Servers], database: Database, slow_s3: tuple[dict[str, str], SlowProxy]
) -> None:
    s3_env, slow_link = slow_s3
    run = servers(CONSULTCAM_SWEEP_INTERVAL_SECONDS="1", **s3_env)
    first = run.start()
    session, image_ids = session_with_photos(first)
    session_id = session["id"]

    # Reading the photos back from S3 takes a second each; meanwhile the claim is in the database, and
    # another writer takes the lock the commit's last step needs. The Bundle gets written; the outcome not.
    slow_link.delay = 1.0
    with ThreadPoolExecutor(1) as pool:
        request: Future[httpx.Response] = pool.submit(commit, first, session_id, image_ids)
        wait_for("the commit's claim", lambda: database.session(session_id).status == "committing")
        database.hold(session_id)
        slow_link.delay = 0.0
        [written] = wait_for("the export Bundle", first.outbox)
        time.sleep(0.3)  # the commit is now waiting for the lock to record its success
        kill(first)
        database.release()
        with pytest.raises(httpx.TransportError):
            request.result(timeout=10)  # the desktop's request died with the process

    dead = database.session(session_id)
    assert dead.status == "committing"
    assert actions(database, session_id) == ["commit.started"]

    second = run.start()
    # Found by the sweeper once the lease lapsed, without anyone looking: audited, session open again.
    interrupted = wait_for(
        "commit.interrupted in the audit trail",
        lambda: [e for e in database.audit(session_id) if e.action == "commit.interrupted"],
        timeout=LEASE + 10,
    )[0]
    assert interrupted.actor_type == "system"
    assert interrupted.actor_id == "sweeper"
    assert interrupted.detail["commit_id"] == dead.commit_id
    assert interrupted.detail["attempt"] == 1

    state = get_session(second, session_id)
    assert state["status"] == "open"
    assert state["lastCommit"]["status"] == "interrupted"
    assert state["lastCommit"]["commitId"] == dead.commit_id
    assert "interrupted" in state["commitError"]
    assert "Commit again" in state["lastCommit"]["detail"]

    retried = commit(second, session_id, image_ids)
    assert retried.status_code == 200, retried.text
    assert retried.json()["commitId"] == dead.commit_id  # the same commit, carried through the retry
    assert [r["status"] for r in retried.json()["results"]] == ["committed"] * 3

    # Exactly one Bundle, with each photo once: the retry wrote the same file, not a second one.
    [bundle_path] = second.outbox()
    assert bundle_path.name == written.name
    bundle = json.loads(bundle_path.read_text())
    assert bundle["identifier"]["value"] == f"urn:uuid:{uuid.UUID(dead.commit_id)}"
    identifiers = [entry["resource"]["identifier"][0]["value"] for entry in bundle["entry"]]
    assert sorted(identifiers) == sorted(image_ids)
    assert not list((second.data_dir / "outbox").glob(".*.tmp"))
    assert actions(database, session_id) == [
        "commit.started",
        "commit.interrupted",
        "commit.started",
        "commit.succeeded",
    ]
    assert get_session(second, session_id)["lastCommit"]["status"] == "committed"


# -- FHIR: the request was on the wire when the process died ---------------------------------------------


@pytest.mark.parametrize("transaction", [True, False], ids=["transaction", "one-by-one"])
def test_a_fhir_commit_killed_mid_request_is_shown_interrupted_and_retried_without_duplicates(
    servers: Callable[..., Servers], database: Database, transaction: bool
) -> None:
    with FhirTestServer() as fhir:
        fhir.state.transaction = transaction
        run = servers(
            CONSULTCAM_EMR_URL=f"fhir+http://127.0.0.1:{fhir.port}/fhir",
            CONSULTCAM_SWEEP_INTERVAL_SECONDS="3600",
        )
        first = run.start()
        session, image_ids = session_with_photos(first)
        session_id = session["id"]
        # The first write (the whole transaction, or the first Media) is answered four seconds late; the
        # FHIR server still does the work, for a client that is gone by then.
        fhir.delay(4.0, times=1)
        with ThreadPoolExecutor(1) as pool:
            request = pool.submit(commit, first, session_id, image_ids)
            [in_flight] = wait_for("the write on the wire", lambda: fhir.requests("POST"))
            kill(first)
            killed = time.monotonic()
            with pytest.raises(httpx.TransportError):
                request.result(timeout=10)
        wait_for("the FHIR server to finish the dead process's write", lambda: in_flight.status, timeout=10)
        assert len(fhir.resources("Media")) == (3 if transaction else 1)
        dead = database.session(session_id)
        assert dead.status == "committing"

        second = run.start()
        # One lease after the process died, the GP reloads the desktop: it says what happened and offers
        # to commit again; committing again from the page saves every photo.
        time.sleep(max(0.0, killed + LEASE + 0.2 - time.monotonic()))
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                desktop = browser.new_page(locale="en-NZ")
                desktop.set_default_timeout(15_000)
                desktop.goto(f"{second.url}/login?token={second.token}")
                desktop.goto(f"{second.url}/sessions/{session_id}")
                card = desktop.locator(".commit-card")
                expect(card).to_contain_text("The last commit was interrupted")
                expect(card).to_contain_text("Commit again")
                state = get_session(second, session_id)
                assert state["status"] == "open"
                assert state["lastCommit"]["status"] == "interrupted"
                assert state["lastCommit"]["commitId"] == dead.commit_id
                assert state["lastCommit"]["attempt"] == 1

                desktop.get_by_test_id("commit").click()
                desktop.get_by_test_id("commit-confirm").get_by_role("button", name="Commit 3 photos").click()
                expect(desktop.get_by_test_id("commit-result")).to_contain_text(
                    f"3 photos saved to {PATIENT['name']}'s record"
                )
            finally:
                browser.close()
        [interrupted] = [e for e in database.audit(session_id) if e.action == "commit.interrupted"]
        assert (interrupted.actor_type, interrupted.actor_id) == ("system", "session-read")
        assert interrupted.detail["commit_id"] == dead.commit_id

        after = get_session(second, session_id)["lastCommit"]
        assert (after["status"], after["commitId"], after["attempt"]) == ("committed", dead.commit_id, 2)
        media = fhir.resources("Media")
        assert sorted(m["identifier"][0]["value"] for m in media) == sorted(image_ids)  # one copy each
        assert actions(database, session_id) == [
            "commit.started",
            "commit.interrupted",
            "commit.started",
            "commit.succeeded",
        ]


# -- a long commit keeps its lease ------------------------------------------------------------------------


def test_a_long_commit_that_keeps_its_lease_is_never_reopened_and_a_second_commit_is_told_the_truth(
    servers: Callable[..., Servers], database: Database
) -> None:
    with FhirTestServer() as fhir:
        run = servers(
            CONSULTCAM_EMR_URL=f"fhir+http://127.0.0.1:{fhir.port}/fhir",
            CONSULTCAM_SWEEP_INTERVAL_SECONDS="1",
        )
        server = run.start()
        session, image_ids = session_with_photos(server)
        session_id = session["id"]
        fhir.delay(3.0 * LEASE, times=1)  # the record system takes three leases to answer
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            request = pool.submit(commit, server, session_id, image_ids)
            wait_for("the transaction on the wire", lambda: fhir.requests("POST"))
            time.sleep(max(0.0, started + 2 * LEASE - time.monotonic()))  # two leases in, the sweeper ran

            state = get_session(server, session_id)
            assert state["status"] == "committing"
            assert state["lastCommit"]["status"] == "running"
            refused = commit(server, session_id, image_ids)
            body = assert_error(refused, 409, "CommitInProgress", "already running")
            heard = re.search(r"last heard from (just now|(\d+) seconds ago)", body["detail"])
            assert heard, body["detail"]
            assert heard.group(2) is None or int(heard.group(2)) < LEASE

            finished = request.result(timeout=30)
        assert finished.status_code == 200, finished.text
        assert [r["status"] for r in finished.json()["results"]] == ["committed"] * 3
        assert sorted(m["identifier"][0]["value"] for m in fhir.resources("Media")) == sorted(image_ids)
        assert len(fhir.requests("POST")) == 1  # the refused commit sent nothing
        assert get_session(server, session_id)["status"] == "committed"
        assert actions(database, session_id) == ["commit.started", "commit.succeeded"]
