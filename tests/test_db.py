"""The database on both backends: URLs and pools, one Alembic history that builds the same schema on SQLite
and PostgreSQL, types that mean the same on both, and the rules that must hold when requests race each
other across web processes (issue 3, "Concurrency"): one redemption per pairing token, the per-session
image cap, one open session per encounter, one image per registered upload.

The races run through two apps on one database (two engines and pools, as two `consultcam serve`
processes have), with requests alternating between them.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import ValidationError
from sqlalchemy import func, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import create_async_engine

from consultcam.app import create_app
from consultcam.config import Settings
from consultcam.db import alembic_config, create_engine, migrate, normalise_database_url
from consultcam.models import AuditEvent, Base, CaptureSession, ClinicalImage, PhoneCredential, utcnow
from consultcam.sessions import service as sessions_service
from tests.conftest import (
    CLINICIAN_TOKEN,
    PATIENT,
    assert_error,
    jpeg_bytes,
    pair_phone,
    start_session,
    token_of,
)
from tests.postgres_server import PostgresServer, new_database_name, url_of

ROOT = Path(__file__).resolve().parents[1]
CAPPED = pytest.mark.parametrize("settings_overrides", [{"max_images": 3}])


# --- fixtures and helpers --------------------------------------------------------------------------------


@pytest.fixture
def empty_database(database_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (no tables) on each backend: a new SQLite file, or a new PostgreSQL
    database made from template0."""
    if database_backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = new_database_name("e")
    server.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield url_of(server.admin_url, name)
    finally:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def second_app(settings: Settings) -> AsyncIterator[Any]:
    """Another app on the same database and store, with its own engine, pool, bus and broker: a second
    web process."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def clients(app: Any, second_app: Any) -> AsyncIterator[Any]:
    """`make(i)`: a new clinician client on app `i % 2`, so concurrent requests alternate between the two
    processes. Closed after the test."""
    async with AsyncExitStack() as stack:

        async def make(i: int, **headers: str) -> httpx.AsyncClient:
            target = (app, second_app)[i % 2]
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=target),
                base_url="http://testserver",
                headers={"authorization": f"Bearer {CLINICIAN_TOKEN}", **headers},
            )
            return await stack.enter_async_context(client)

        yield make


async def anonymous_clients(make: Any, n: int) -> list[httpx.AsyncClient]:
    clients = [await make(i) for i in range(n)]
    for client in clients:
        client.headers.pop("authorization")
    return clients


async def scalar(runtime: Any, query: Any) -> Any:
    async with runtime.sessionmaker() as db:
        return (await db.execute(query)).scalar_one()


async def event_types(apps: list[Any], session_id: str) -> list[str]:
    """Every event published for the session, by either process (each has its own in-process bus)."""
    found = []
    for application in apps:
        found += [e.type for e in await application.state.runtime.bus.read(session_id, None, 0)]
    return found


def schema_diff(connection: Any) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match the models (types included)."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


async def run_sync(url: str, fn: Any) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(fn)
    finally:
        await engine.dispose()


# --- URLs and engines ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgres://cc:s%40cret@db.example:5433/consultcam",
            "postgresql+asyncpg://cc:s%40cret@db.example:5433/consultcam",
        ),
        ("postgresql://cc@db/consultcam", "postgresql+asyncpg://cc@db/consultcam"),
        ("postgresql+asyncpg://cc@db/consultcam", "postgresql+asyncpg://cc@db/consultcam"),
        (
            "postgresql://cc@db/consultcam?sslmode=verify-full",
            "postgresql+asyncpg://cc@db/consultcam?ssl=verify-full",
        ),
        (
            "sqlite:////var/lib/consultcam/consultcam.db",
            "sqlite+aiosqlite:////var/lib/consultcam/consultcam.db",
        ),
        ("sqlite+aiosqlite:///data/consultcam.db", "sqlite+aiosqlite:///data/consultcam.db"),
        ("", ""),
    ],
)
def test_database_urls_are_normalised_to_the_async_drivers(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected
    assert Settings(database_url=given).database_url == expected


@pytest.mark.parametrize(
    "url", ["mysql://cc@db/consultcam", "postgresql+psycopg2://cc@db/consultcam", "consultcam.db"]
)
def test_other_databases_are_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(database_url=url)
    assert "CONSULTCAM_DATABASE_URL" in str(refused.value)
    assert "postgresql://" in str(refused.value)


def test_pool_settings_come_from_the_url_and_never_reach_the_driver() -> None:
    engine = create_engine(
        "postgresql+asyncpg://cc@db.example/consultcam?pool_size=3&max_overflow=2&prepared_statement_cache_size=0"
    )
    assert engine.pool.size() == 3
    assert engine.pool._max_overflow == 2  # type: ignore[attr-defined]
    assert dict(engine.url.query) == {"prepared_statement_cache_size": "0"}
    default = create_engine("postgresql+asyncpg://cc@db.example/consultcam")
    assert default.pool.size() == 10
    with pytest.raises(ValueError, match="pool_size must be a whole number"):
        create_engine("postgresql+asyncpg://cc@db.example/consultcam?pool_size=many")


@pytest.mark.backends("postgresql")
async def test_a_libpq_style_url_runs_the_app_end_to_end(database_url: str, tmp_path: Path) -> None:
    """CONSULTCAM_DATABASE_URL=postgresql://… (what PostgreSQL hosts hand out), pool options included."""
    libpq = database_url.replace("postgresql+asyncpg://", "postgresql://") + "?pool_size=2&max_overflow=0"
    settings = Settings(data_dir=tmp_path / "data", database_url=libpq, clinician_token=CLINICIAN_TOKEN)
    await asyncio.to_thread(migrate, settings.resolved_database_url)  # at head already: no error
    application = create_app(settings)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url="http://testserver",
            headers={"authorization": f"Bearer {CLINICIAN_TOKEN}"},
        ) as clinician,
    ):
        session = await start_session(clinician)
        assert (await clinician.get(f"/api/sessions/{session['id']}")).status_code == 200
        assert (await clinician.get("/readyz")).json()["checks"]["database"] == "ok"
        assert application.state.runtime.engine.pool.size() == 2


# --- one migration history, the same schema ------------------------------------------------------------


async def test_migrations_build_the_schema_the_models_describe(empty_database: str) -> None:
    """`consultcam migrate` on an empty database gives exactly the models' schema (autogenerate finds
    nothing to change), the same on both backends; 0001 alone lacks only what 0002 adds; down to nothing
    and up again gives it again."""
    await asyncio.to_thread(command.upgrade, alembic_config(empty_database), "0001")
    missing = await run_sync(empty_database, schema_diff)
    # Later revisions add columns and tables (0003_*); of the indexes, 0001 lacks only 0002's and those of
    # the tables added later.
    later_tables = {"signin_sessions", "launch_context_uses", "authorization_requests"}  # 0004-0006
    assert [
        (diff[0], diff[1].name)
        for diff in missing
        if diff[0].endswith("_index") and diff[1].table.name not in later_tables
    ] == [("add_index", "uq_capture_sessions_open_encounter")]
    await asyncio.to_thread(migrate, empty_database)
    assert await run_sync(empty_database, schema_diff) == []
    head = ScriptDirectory.from_config(alembic_config(empty_database)).get_current_head()
    version = await run_sync(empty_database, lambda c: MigrationContext.configure(c).get_current_revision())
    assert version == head

    await asyncio.to_thread(command.downgrade, alembic_config(empty_database), "base")
    assert await run_sync(empty_database, lambda c: set(inspect(c).get_table_names())) == {"alembic_version"}
    await asyncio.to_thread(migrate, empty_database)
    assert await run_sync(empty_database, schema_diff) == []


async def test_migration_0002_closes_all_but_the_newest_open_session_of_an_encounter(
    empty_database: str,
) -> None:
    """Databases from before 0002 may hold an idle open session and a newer one for one encounter; the
    older is marked expired (the sweeper then deletes it), so the unique index can be built."""
    await asyncio.to_thread(command.upgrade, alembic_config(empty_database), "0001")
    now = utcnow().replace(tzinfo=None)
    rows = [("older", "enc-1", now - timedelta(hours=3)), ("newer", "enc-1", now), ("alone", "enc-2", now)]

    def insert(connection: Any) -> None:
        for session_id, encounter, created in rows:
            connection.execute(
                text(
                    "INSERT INTO capture_sessions (id, status, encounter_id, patient_id, patient_name, "
                    "created_by, created_at, last_activity_at, retain_until, version) VALUES "
                    "(:id, 'open', :encounter, 'p', 'N', 'test', :created, :created, :created, 1)"
                ),
                {"id": session_id, "encounter": encounter, "created": created},
            )

    await run_sync(empty_database, insert)
    await asyncio.to_thread(migrate, empty_database)

    def statuses(connection: Any) -> dict[str, tuple[str, int]]:
        return {
            r.id: (r.status, r.version) for r in connection.execute(text("SELECT * FROM capture_sessions"))
        }

    assert await run_sync(empty_database, statuses) == {
        "older": ("expired", 2),
        "newer": ("open", 1),
        "alone": ("open", 1),
    }


async def test_migration_0008_keeps_older_rows_with_no_launch_issuer_and_goes_down_and_up(
    empty_database: str,
) -> None:
    """0008 on rows from before it: a SMART session takes the issuer of its launch's grant (the accepted
    `iss`, so the GP's next launch reaches it); a session with no grant and the SMART sign-in (whose EHR
    nothing recorded: `consultcam.auth.signin` no longer counts it) keep `launch_issuer` null, nothing
    guessed; 0008 down and up again keeps the rows and gives the models' schema."""
    await asyncio.to_thread(command.upgrade, alembic_config(empty_database), "0007_oidc_fhir_user")
    now = utcnow().replace(tzinfo=None)

    def insert(connection: Any) -> None:
        connection.execute(
            text(
                "INSERT INTO capture_sessions (id, status, encounter_id, patient_id, patient_name, "
                "practitioner_id, created_by, created_at, last_activity_at, retain_until, version, "
                "commit_attempt) VALUES ('s-smart', 'open', 'enc-1', 'p', 'N', '7', "
                "'smart:ehr.example:Practitioner/7', :now, :now, :now, 1, 0)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO capture_sessions (id, status, encounter_id, patient_id, patient_name, "
                "practitioner_id, created_by, created_at, last_activity_at, retain_until, version, "
                "commit_attempt) VALUES ('s-token', 'open', 'enc-2', 'p', 'N', '7', "
                "'clinician', :now, :now, :now, 1, 0)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO smart_grants (session_id, issuer, fhir_base, token_endpoint, client_id, scope, "
                "sealed_tokens, created_at, updated_at) VALUES ('s-smart', 'https://ehr.example/fhir', "
                "'https://ehr.example/fhir', 'https://ehr.example/token', 'consultcam', '', 'sealed', "
                ":now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO signin_sessions (id, token_hash, method, binding, subject, user_agent, "
                "created_at, last_seen_at, idle_expires_at, expires_at, practitioner_id) VALUES ('g-smart', "
                "'h', 'smart', 'b', 'smart:ehr.example:Practitioner/7', '', :now, :now, :now, :now, '7')"
            ),
            {"now": now},
        )

    def issuers(connection: Any) -> list[tuple[str, str | None]]:
        return [
            tuple(r)
            for r in connection.execute(
                text(
                    "SELECT id, launch_issuer FROM capture_sessions UNION ALL "
                    "SELECT id, launch_issuer FROM signin_sessions ORDER BY 1"
                )
            )
        ]

    def columns(connection: Any) -> dict[str, set[str]]:
        found = inspect(connection)
        return {t: {c["name"] for c in found.get_columns(t)} for t in ("capture_sessions", "signin_sessions")}

    await run_sync(empty_database, insert)
    await asyncio.to_thread(migrate, empty_database)
    after = [("g-smart", None), ("s-smart", "https://ehr.example/fhir"), ("s-token", None)]
    assert await run_sync(empty_database, issuers) == after
    assert await run_sync(empty_database, schema_diff) == []

    await asyncio.to_thread(command.downgrade, alembic_config(empty_database), "0007_oidc_fhir_user")
    assert not any("launch_issuer" in names for names in (await run_sync(empty_database, columns)).values())
    await asyncio.to_thread(migrate, empty_database)
    assert await run_sync(empty_database, issuers) == after
    assert await run_sync(empty_database, schema_diff) == []
    with pytest.raises(IntegrityError):  # the one-open-session-per-encounter index survived the round trip
        await run_sync(
            empty_database,
            lambda c: c.execute(
                text(
                    "INSERT INTO capture_sessions (id, status, encounter_id, patient_id, patient_name, "
                    "created_by, created_at, last_activity_at, retain_until, version, commit_attempt) "
                    "VALUES ('s-2', 'open', 'enc-1', 'p', 'N', 'x', :now, :now, :now, 1, 0)"
                ),
                {"now": now},
            ),
        )


@pytest.mark.backends("postgresql")
async def test_processes_starting_together_migrate_once(empty_database: str) -> None:
    """Web processes and workers all run `migrate()` at start; on one empty PostgreSQL database at once,
    every one succeeds (the advisory lock in migrations/env.py makes them take turns)."""
    code = "import sys; from consultcam.db import migrate; migrate(sys.argv[1])"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, empty_database, cwd=ROOT, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(4)
    ]
    results = [await process.communicate() for process in processes]
    assert [p.returncode for p in processes] == [0] * 4, [err.decode()[-500:] for _, err in results]
    assert await run_sync(empty_database, schema_diff) == []


async def test_the_database_allows_one_open_session_per_encounter(runtime: Any) -> None:
    """The partial unique index (migration 0002): a second open session for an encounter is refused by
    the database itself; closed ones do not count."""

    def session(status: str, encounter: str = "enc-1") -> CaptureSession:
        now = utcnow()
        return CaptureSession(
            status=status,
            encounter_id=encounter,
            patient_id="p",
            patient_name="N",
            created_by="test",
            retain_until=now + timedelta(hours=1),
        )

    async with runtime.unit_of_work() as uow:
        uow.session.add_all(
            [session("open"), session("cancelled"), session("expired"), session("open", "enc-2")]
        )
    with pytest.raises(IntegrityError):
        async with runtime.unit_of_work() as uow:
            uow.session.add(session("open"))
    query = select(func.count()).select_from(CaptureSession).where(CaptureSession.encounter_id == "enc-1")
    assert await scalar(runtime, query) == 3


# --- types that mean the same on both backends ---------------------------------------------------------


async def test_timestamps_come_back_aware_utc_whatever_the_server_timezone(
    runtime: Any, database_backend: str, database_url: str
) -> None:
    """UTCDateTime: any aware datetime is stored as its UTC instant and read back as aware UTC, also from
    a PostgreSQL connection whose TimeZone is Pacific/Auckland; comparisons in SQL use the instant."""
    nzdt = timezone(timedelta(hours=13))
    created = datetime(2026, 1, 15, 9, 30, 0, 123456, tzinfo=nzdt)
    async with runtime.unit_of_work() as uow:
        uow.session.add(
            AuditEvent(at=created, actor_type="system", actor_id="test", action="session.viewed", detail={})
        )
    extra = (
        {"connect_args": {"server_settings": {"timezone": "Pacific/Auckland"}}}
        if database_backend == "postgresql"
        else {}
    )
    engine = create_async_engine(database_url, **extra)
    try:
        async with engine.connect() as connection:
            at = (await connection.execute(select(AuditEvent.at))).scalar_one()
            later = select(func.count()).where(AuditEvent.at > datetime(2026, 1, 14, 20, 30, tzinfo=UTC))
            earlier = select(func.count()).where(AuditEvent.at > datetime(2026, 1, 14, 20, 31, tzinfo=UTC))
            assert (await connection.execute(later)).scalar_one() == 1
            assert (await connection.execute(earlier)).scalar_one() == 0
    finally:
        await engine.dispose()
    assert at == created
    assert at.utcoffset() == timedelta(0)
    assert at.isoformat() == "2026-01-14T20:30:00.123456+00:00"
    with pytest.raises(StatementError, match="naive datetime"):
        async with runtime.unit_of_work() as uow:
            uow.session.add(
                AuditEvent(
                    at=datetime(2026, 1, 1), actor_type="system", actor_id="t", action="session.viewed"
                )
            )


async def test_json_columns_round_trip_and_refuse_what_is_not_json(runtime: Any) -> None:
    """JSON on SQLite, JSONB on PostgreSQL: the same values come back (key order aside: JSONB sorts keys),
    and NaN, which JSONB cannot hold, is refused on both."""
    detail = {"z": [1, 2.5, -0.001, None, True], "a": {"name": "Ngā Tūpuna 🙂", "n": 10**15}, "empty": {}}
    async with runtime.unit_of_work() as uow:
        uow.session.add(AuditEvent(actor_type="system", actor_id="t", action="session.viewed", detail=detail))
    stored = await scalar(runtime, select(AuditEvent.detail))
    assert stored == detail
    with pytest.raises(StatementError, match="Out of range float values are not JSON compliant"):
        async with runtime.unit_of_work() as uow:
            uow.session.add(
                AuditEvent(actor_type="system", actor_id="t", action="session.viewed", detail={"x": math.nan})
            )


async def test_text_with_nul_is_422_on_every_backend(clinician: httpx.AsyncClient) -> None:
    """PostgreSQL cannot store U+0000 in text or JSONB (SQLite can): refused at the API on both."""
    response = await clinician.post(
        "/api/sessions", json={"encounterId": "enc-1", "patient": {**PATIENT, "name": "Mere\x00Tester"}}
    )
    assert_error(response, 422, "InvalidRequest", "patient.name", "control characters")
    session = await start_session(clinician)
    presign = await clinician.post(
        f"/api/sessions/{session['id']}/uploads",
        json={"contentType": "image/jpeg", "sizeBytes": 1000, "filename": "arm\x00.jpg"},
    )
    assert_error(presign, 422, "InvalidRequest", "NUL")


# --- races across two web processes --------------------------------------------------------------------


async def test_40_concurrent_redemptions_of_one_code_pair_exactly_one_phone(
    clinician: httpx.AsyncClient, clients: Any, runtime: Any
) -> None:
    session = await start_session(clinician)
    token = token_of(session["pairing"]["url"])
    phones = await anonymous_clients(clients, 40)
    responses = await asyncio.gather(*(phone.post("/api/pair", json={"token": token}) for phone in phones))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 39, statuses
    assert {r.json()["error"] for r in responses if r.status_code == 409} == {"PairingTokenUsed"}
    assert await scalar(runtime, select(func.count()).select_from(PhoneCredential)) == 1


@CAPPED
async def test_10_concurrent_presigns_never_exceed_max_images(
    clinician: httpx.AsyncClient, clients: Any, runtime: Any
) -> None:
    session = await start_session(clinician)
    uploaders = [await clients(i) for i in range(10)]
    responses = await asyncio.gather(
        *(
            client.post(
                f"/api/sessions/{session['id']}/uploads",
                json={"contentType": "image/jpeg", "sizeBytes": 1000},
            )
            for client in uploaders
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [409] * 7, statuses
    assert {r.json()["error"] for r in responses if r.status_code == 409} == {"SessionFull"}
    count = select(func.count()).select_from(ClinicalImage).where(ClinicalImage.session_id == session["id"])
    assert await scalar(runtime, count) == 3


async def test_10_concurrent_starts_for_one_encounter_open_one_session(clients: Any, runtime: Any) -> None:
    """Double clicks, two tabs, two web processes: one session is opened, the others resume it."""
    desktops = [await clients(i) for i in range(10)]
    responses = await asyncio.gather(
        *(d.post("/api/sessions", json={"encounterId": "enc-race", "patient": PATIENT}) for d in desktops)
    )
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    query = select(func.count()).select_from(CaptureSession).where(CaptureSession.encounter_id == "enc-race")
    assert await scalar(runtime, query) == 1
    # Each answer carried a new code that replaced the previous ones: exactly one still pairs a phone.
    pairs = await anonymous_clients(clients, 10)
    paired = await asyncio.gather(
        *(
            p.post("/api/pair", json={"token": token_of(r.json()["pairing"]["url"])})
            for p, r in zip(pairs, responses, strict=True)
        )
    )
    assert sorted(r.status_code for r in paired) == [200] + [410] * 9


def lined_up(put: Any, barrier: asyncio.Barrier) -> Any:
    """`store.put` that, once a thumbnail is stored (the last step before registration's final
    transaction), waits until every party of `barrier` got there too."""

    async def put_then_wait(key: str, data: bytes, **kwargs: Any) -> Any:
        result = await put(key, data, **kwargs)
        if key.endswith(".thumb.jpg"):
            await asyncio.wait_for(barrier.wait(), 30)
        return result

    return put_then_wait


async def test_concurrent_registrations_of_one_upload_record_one_image(
    clinician: httpx.AsyncClient,
    clients: Any,
    app: Any,
    second_app: Any,
    runtime: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = await start_session(clinician)
    data = jpeg_bytes("coffee.jpg")
    slot = (
        await clinician.post(
            f"/api/sessions/{session['id']}/uploads",
            json={"contentType": "image/jpeg", "sizeBytes": len(data)},
        )
    ).json()
    put = await clinician.request(slot["method"], slot["uploadUrl"], content=data, headers=slot["headers"])
    assert put.status_code == 200, put.text
    # Line the registrations up where the race is: bytes verified and stored, the final transaction next.
    stored = asyncio.Barrier(6)
    for application in (app, second_app):
        store = application.state.runtime.store
        monkeypatch.setattr(store, "put", lined_up(store.put, stored))
    registrars = [await clients(i) for i in range(6)]
    responses = await asyncio.gather(
        *(
            r.post(f"/api/sessions/{session['id']}/images", json={"imageId": slot["imageId"]})
            for r in registrars
        )
    )
    assert sorted(r.status_code for r in responses) == [200] * 5 + [201], [r.text for r in responses]
    assert len({r.json()["sha256"] for r in responses}) == 1
    images = select(func.count()).select_from(ClinicalImage).where(ClinicalImage.session_id == session["id"])
    assert await scalar(runtime, images) == 1
    audited = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "image.uploaded")
    assert await scalar(runtime, audited) == 1
    assert (await event_types([app, second_app], session["id"])).count("image.added") == 1


async def register_one_photo(clinician: httpx.AsyncClient, session_id: str) -> None:
    data = jpeg_bytes("cat.jpg")
    slot = (
        await clinician.post(
            f"/api/sessions/{session_id}/uploads", json={"contentType": "image/jpeg", "sizeBytes": len(data)}
        )
    ).json()
    await clinician.request(slot["method"], slot["uploadUrl"], content=data, headers=slot["headers"])
    registered = await clinician.post(f"/api/sessions/{session_id}/images", json={"imageId": slot["imageId"]})
    assert registered.status_code == 201, registered.text


async def test_concurrent_commits_write_the_record_once(
    clinician: httpx.AsyncClient, clients: Any, runtime: Any
) -> None:
    """Five clicks on "commit" across two processes: one commit runs, the others are 409; one Bundle."""
    session = await start_session(clinician)
    await register_one_photo(clinician, session["id"])
    committers = [await clients(i) for i in range(5)]
    responses = await asyncio.gather(
        *(c.post(f"/api/sessions/{session['id']}/commit", json={"all": True}) for c in committers)
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 4, [r.text for r in responses]
    assert {r.json()["error"] for r in responses if r.status_code == 409} <= {
        "CommitInProgress",
        "AlreadyCommitted",
    }
    assert len(list((runtime.settings.data_dir / "outbox").glob("*.json"))) == 1


async def test_a_commit_and_a_cancel_at_once_leave_one_outcome(
    clinician: httpx.AsyncClient, clients: Any, runtime: Any
) -> None:
    """Whichever comes first wins; the other is a 409 (or 404 once the session is gone), never both done."""
    session = await start_session(clinician)
    await register_one_photo(clinician, session["id"])
    committer, canceller = await clients(0), await clients(1)
    commit, cancel = await asyncio.gather(
        committer.post(f"/api/sessions/{session['id']}/commit", json={"all": True}),
        canceller.delete(f"/api/sessions/{session['id']}"),
    )
    status = await scalar(runtime, select(CaptureSession.status).where(CaptureSession.id == session["id"]))
    if commit.status_code == 200:
        assert cancel.status_code == 409, cancel.text
        assert status == "committed"
    else:
        assert cancel.status_code == 204, cancel.text
        assert commit.status_code in (404, 409), commit.text
        assert status == "cancelled"


@pytest.mark.backends("postgresql")
async def test_a_cancel_that_read_the_session_before_a_commit_claimed_it_is_refused(
    clinician: httpx.AsyncClient, new_client: Any, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel reads the session (open), a commit claims it meanwhile and calls the connector, then the
    cancel goes on: it must see the claim (409), not overwrite it and delete the photos being committed.
    PostgreSQL only: on SQLite the cancel's transaction holds the write lock from its first read, so the
    claim cannot come in between (this test would wait for it in vain)."""
    session = await start_session(clinician)
    await register_one_photo(clinician, session["id"])
    claimed, cancelled = asyncio.Event(), asyncio.Event()
    read = sessions_service.get_session

    async def read_then_wait_for_the_claim(uow: Any, session_id: str, **options: Any) -> Any:
        found = await read(uow, session_id, **options)
        if not options.get("for_update") and not claimed.is_set():  # the cancel's look, not the claim's
            await asyncio.wait_for(claimed.wait(), 10)
        return found

    send = runtime.connector.commit

    async def claimed_then_wait_for_the_cancel(*args: Any) -> Any:
        claimed.set()
        await asyncio.wait_for(cancelled.wait(), 10)
        return await send(*args)

    monkeypatch.setattr(sessions_service, "get_session", read_then_wait_for_the_claim)
    monkeypatch.setattr(runtime.connector, "commit", claimed_then_wait_for_the_cancel)

    async def cancel() -> httpx.Response:
        try:
            return await new_client(authorization=f"Bearer {CLINICIAN_TOKEN}").delete(
                f"/api/sessions/{session['id']}"
            )
        finally:
            cancelled.set()

    async def commit() -> httpx.Response:
        await asyncio.sleep(0.05)  # the cancel reads first
        return await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    cancel_response, commit_response = await asyncio.gather(cancel(), commit())
    assert commit_response.status_code == 200, commit_response.text
    assert_error(cancel_response, 409, "SessionClosed", "committed")
    status = await scalar(runtime, select(CaptureSession.status).where(CaptureSession.id == session["id"]))
    assert status == "committed"


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_burst_of_mixed_requests_on_one_session_never_deadlocks(
    clinician: httpx.AsyncClient, new_client: Any, runtime: Any, seed: int
) -> None:
    """Presigns and reads from the phone, new codes, the encounter reopened and a cancel, all at once on one
    session: every request gets a 2xx or a 4xx. Without the session lock taken first (consultcam.db)
    PostgreSQL detects deadlocks here and aborts requests with 500s."""
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    async with runtime.unit_of_work() as uow:  # the phone's next request records it was seen (a write)
        await uow.session.execute(
            update(PhoneCredential).values(last_seen_at=utcnow() - timedelta(minutes=5))
        )
    base = f"/api/sessions/{session['id']}"
    requests = [clinician.delete(base)]
    for _ in range(5):
        requests += [
            phone.post(f"{base}/uploads", json={"contentType": "image/jpeg", "sizeBytes": 1000}),
            phone.get(base),
            clinician.post(f"{base}/pairing"),
            clinician.post("/api/sessions", json={"encounterId": "enc-1", "patient": PATIENT}),
        ]
    random.Random(seed).shuffle(requests)
    responses = await asyncio.gather(*requests)
    assert all(r.status_code < 500 for r in responses), [r.text for r in responses if r.status_code >= 500]
    status = await scalar(runtime, select(CaptureSession.status).where(CaptureSession.id == session["id"]))
    assert status == "cancelled"
    images = select(func.count()).select_from(ClinicalImage).where(ClinicalImage.session_id == session["id"])
    assert await scalar(runtime, images) == 0


async def test_an_idle_open_session_is_expired_when_its_encounter_starts_again(
    clinician: httpx.AsyncClient, new_client: Any, runtime: Any, settings: Settings
) -> None:
    """The unique index allows one open session per encounter, so an idled-out one (not yet swept) is
    expired on the spot, its phone signed out, before the new one opens."""
    first = await start_session(clinician)
    phone = await pair_phone(new_client, first)
    async with runtime.unit_of_work() as uow:
        row = await uow.session.get(CaptureSession, first["id"])
        row.last_activity_at = utcnow() - timedelta(minutes=settings.session_idle_minutes + 1)
    second = await start_session(clinician)
    assert second["id"] != first["id"]
    assert (
        await scalar(runtime, select(CaptureSession.status).where(CaptureSession.id == first["id"]))
        == "expired"
    )
    assert_error(await phone.get(f"/api/sessions/{first['id']}"), 401)


# --- PostgreSQL unreachable ----------------------------------------------------------------------------


def test_postgres_down_fails_the_postgresql_tests_and_never_skips_them(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CONSULTCAM_TEST_POSTGRES_URL": "postgresql+asyncpg://postgres@127.0.0.1:9/test",  # discard port
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'inner'}",
            "tests/test_db.py::test_json_columns_round_trip_and_refuse_what_is_not_json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout[-2000:]
    assert "PostgreSQL is not reachable" in result.stdout
    assert "1 passed, 1 error" in result.stdout, result.stdout[-2000:]
    assert "skipped" not in result.stdout
