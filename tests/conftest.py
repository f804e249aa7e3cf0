"""Shared fixtures: a real app on a fresh database (SQLite and PostgreSQL) and a folder store, clients for
the clinician and phones, and photos built from `tests/photos` the way phones produce them.

Every test that uses `settings` (so `app`, `runtime`, the clients) runs once per database backend, with
ids `[sqlite]` and `[postgresql]`, each on a database of its own:

- SQLite: a copy of a file migrated once per test run.
- PostgreSQL: `CREATE DATABASE consultcam_t_<random> TEMPLATE <migrated template>`, dropped `WITH (FORCE)`
  after the test; the template is made from template0 and migrated once per run. The databases are made
  ahead and dropped behind by a background thread (tests/postgres_server.py), so tests do not wait.

`tests/test_db.py` migrates empty databases of both kinds for real.

The server is `CONSULTCAM_TEST_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/test, a
database to connect to for CREATE DATABASE). When it does not answer, the [postgresql] tests fail with a
message saying so; they never skip. `--backend sqlite` (or `postgresql`) runs one backend on purpose, and
`@pytest.mark.backends("postgresql")` keeps a test to the backends it makes sense on.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from PIL import Image
from sqlalchemy.engine import make_url

from consultcam.app import create_app
from consultcam.config import Settings
from consultcam.db import migrate
from tests.e2e.harness import free_port
from tests.postgres_server import POSTGRES_URL, PostgresServer, new_database_name, url_of

#: Real photos (CC0 or public domain, sources in tests/photos/README.md), in the repo for clean checkouts.
PHOTOS = Path(__file__).resolve().parent / "photos"
CLINICIAN_TOKEN = "test-clinician-token-0123456789abcdef"
PATIENT = {"id": "pat-1", "name": "Mere Tester", "nhi": "ZZZ0016", "birthDate": "1980-02-29"}

BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=("all", *BACKENDS),
        default="all",
        help="database backend(s) for the tests that use one (default: all)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run this test only on these database backends (sqlite, postgresql)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop backend variants nobody asked for (`--backend`, `@pytest.mark.backends`), and run the browser
    tests last: Playwright's sync API keeps an event loop running in the main thread for the rest of the
    session, and the async tests and migrations need that thread's loop free."""
    chosen = BACKENDS if config.getoption("backend") == "all" else (config.getoption("backend"),)
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("database_backend") if callspec else None
        marker = item.get_closest_marker("backends")
        if backend is not None and (backend not in chosen or (marker and backend not in marker.args)):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    items.sort(key=lambda item: "e2e" in item.path.parts)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The PostgreSQL server with a migrated template database for this run; fails (never skips) the
    [postgresql] tests with what to do when the server does not answer."""
    server = PostgresServer(POSTGRES_URL)
    template = new_database_name("tpl")
    try:
        try:
            server.execute(f"CREATE DATABASE \"{template}\" TEMPLATE template0 ENCODING 'UTF8'")
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            pytest.fail(
                f"PostgreSQL is not reachable at {make_url(POSTGRES_URL)!r} ({type(exc).__name__}: {exc}). "
                "The [postgresql] tests need it: start PostgreSQL, set CONSULTCAM_TEST_POSTGRES_URL to a "
                "server where this user may CREATE DATABASE, or run `pytest --backend sqlite` to test "
                "SQLite only.",
                pytrace=False,
            )
        server.template = template  # dropped by close() even if the migration fails
        migrate(url_of(POSTGRES_URL, template))
        server.use_template(template)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per run (rollback journal, so the one file is the whole database)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "consultcam.db"
    migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=BACKENDS)
def database_backend(request: pytest.FixtureRequest) -> str:
    """The database backend of this variant of the test: "sqlite" or "postgresql" (the test id's suffix)."""
    return str(request.param)


@pytest.fixture
def database_url(database_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for this test, on each backend in turn; dropped afterwards."""
    if database_backend == "sqlite":
        path = tmp_path / "data" / "consultcam.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.take()
    yield url
    server.give_back(url)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Settings a test changes: `@pytest.mark.parametrize("settings_overrides", [{"max_images": 3}])`."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, database_url: str, settings_overrides: dict[str, Any]) -> Settings:
    """Embedded settings in a fresh data directory, on a fresh migrated database of each backend in turn
    (`database_backend` is parametrised: test ids end in [sqlite] and [postgresql]).

    Product defaults hold except `required_metadata`, empty here so that tests about other things commit
    photos without a body site; tests of the check set it (`settings_overrides`). Consent stays required:
    `start_session` records it."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "clinician_token": CLINICIAN_TOKEN,
        "public_url": "",
        "sweep_interval_seconds": 3600,
        "emr_url": "export://",
        "required_metadata": (),
        **settings_overrides,
    }
    return Settings(**values)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def runtime(app: Any) -> Any:
    return app.state.runtime


class CsrfToken:
    """What the pages' api.js does (consultcam/web/guard.py): keep the `X-CSRF-Token` every answer carries
    and send it back with each unsafe request, for test clients that use the cookies (phones, browsers)."""

    UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def __init__(self) -> None:
        self.value = ""

    def on_request(self, request: httpx.Request) -> None:
        if request.method in self.UNSAFE and self.value and "x-csrf-token" not in request.headers:
            request.headers["X-CSRF-Token"] = self.value

    def on_response(self, response: httpx.Response) -> None:
        self.value = response.headers.get("x-csrf-token", self.value)

    async def aon_request(self, request: httpx.Request) -> None:
        self.on_request(request)

    async def aon_response(self, response: httpx.Response) -> None:
        self.on_response(response)

    def hooks(self, *, asynchronous: bool = True) -> dict[str, list[Any]]:
        """`event_hooks` for an httpx.AsyncClient (or, `asynchronous=False`, an httpx.Client)."""
        if asynchronous:
            return {"request": [self.aon_request], "response": [self.aon_response]}
        return {"request": [self.on_request], "response": [self.on_response]}


def _client(app: Any, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers=headers,
        event_hooks=CsrfToken().hooks(),
    )


@pytest.fixture
async def clinician(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client signed in as the clinician (Bearer token)."""
    async with _client(app, authorization=f"Bearer {CLINICIAN_TOKEN}") as client:
        yield client


@pytest.fixture
async def anonymous(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app) as client:
        yield client


@pytest.fixture
async def new_client(app: Any) -> AsyncIterator[Any]:
    """Factory for extra clients (more phones); closed at the end of the test."""
    clients: list[httpx.AsyncClient] = []

    def make(**headers: str) -> httpx.AsyncClient:
        client = _client(app, **headers)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def start_session(
    clinician: httpx.AsyncClient, encounter: str = "enc-1", *, consent: bool = True, **extra: Any
) -> dict[str, Any]:
    """Open (or resume) a capture session as the clinician. When the session asks for consent
    (CONSULTCAM_CONSENT_REQUIRED, the default) the clinician records it (CONSENT), so photos can be taken
    at once, as before issue 5; `consent=False` leaves it unrecorded."""
    response = await clinician.post(
        "/api/sessions", json={"encounterId": encounter, "patient": PATIENT, **extra}
    )
    assert response.status_code in (200, 201), response.text
    session = response.json()
    if consent and session["consentRequired"] and session["consent"] is None:
        recorded = await record_consent(clinician, session["id"])
        assert recorded.status_code == 200, recorded.text
        session["consent"] = recorded.json()["consent"]
    return session


#: The consent the helpers record: clinical record only, given by the patient.
CONSENT = {"scope": "clinical", "givenBy": "patient"}


async def record_consent(
    client: httpx.AsyncClient, session_id: str, consent: dict[str, Any] | None = None
) -> httpx.Response:
    """`PUT /api/sessions/{id}/consent` as `client` (the clinician or the session's phone)."""
    return await client.put(f"/api/sessions/{session_id}/consent", json=consent or CONSENT)


def token_of(pairing_url: str) -> str:
    return pairing_url.rsplit("/m/", 1)[1]


async def pair_phone(new_client: Any, session: dict[str, Any], *, consent: bool = True) -> httpx.AsyncClient:
    """A phone client that redeemed the session's QR code (authenticated by the cookie it was given). When
    the session still asks for consent, the phone records it (CONSENT), as the phone page does before the
    first photo; `consent=False` leaves it unrecorded."""
    phone = new_client()
    response = await phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})
    assert response.status_code == 200, response.text
    paired = response.json()["session"]
    if consent and paired["consentRequired"] and paired["consent"] is None:
        recorded = await record_consent(phone, paired["id"])
        assert recorded.status_code == 200, recorded.text
    return phone


async def upload(
    client: httpx.AsyncClient,
    session_id: str,
    data: bytes,
    content_type: str = "image/jpeg",
    metadata: dict[str, Any] | None = None,
) -> httpx.Response:
    """Presign, PUT and register one photo, as the phone page does; returns the registration response."""
    presign = await client.post(
        f"/api/sessions/{session_id}/uploads", json={"contentType": content_type, "sizeBytes": len(data)}
    )
    assert presign.status_code == 201, presign.text
    body = presign.json()
    put = await client.request(body["method"], body["uploadUrl"], content=data, headers=body["headers"])
    assert put.status_code == 200, put.text
    return await client.post(
        f"/api/sessions/{session_id}/images",
        json={"imageId": body["imageId"], **({"metadata": metadata} if metadata else {})},
    )


def assert_error(
    response: httpx.Response, status: int, error: str | None = None, *words: str
) -> dict[str, Any]:
    """The `{error, detail}` body, never cached, with a detail that says what to do (and names `words`)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    if error:
        assert body["error"] == error, body
    assert len(body["detail"]) > 20, body
    for word in words:
        assert word.lower() in body["detail"].lower(), body
    assert response.headers["cache-control"] == "no-store"
    return body


def jpeg_bytes(name: str = "fundus-left-eye.jpg") -> bytes:
    return (PHOTOS / name).read_bytes()


def phone_photo(
    name: str = "fundus-left-eye.jpg", orientation: int = 6, size: tuple[int, int] = (4032, 3024)
) -> bytes:
    """A 12-megapixel JPEG as a phone writes it: landscape sensor pixels, EXIF Orientation and GPS tags."""
    with Image.open(PHOTOS / name) as source:
        image = source.convert("RGB").resize(size)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestPhone"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "S", 2: (36.0, 50.0, 30.0), 3: "E", 4: (174.0, 45.0, 50.0)})
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


async def next_event(source: httpx.Response | AsyncIterator[str], wanted: str) -> dict[str, Any]:
    """The first SSE event of type `wanted` on a streaming response, or on an iterator of its lines (which
    can be asked again for the next one), its `data` parsed."""
    event: dict[str, Any] = {}
    lines = source.aiter_lines() if isinstance(source, httpx.Response) else source
    async for line in lines:
        if not line:
            if event.get("event") == wanted:
                return event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = json.loads(value) if name == "data" else value.strip()
    raise AssertionError(f"the stream ended without {wanted}")


@asynccontextmanager
async def serving(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """`app` served by uvicorn on loopback `port` (None: a free one; a known port for an app whose registered
    redirect URI names it) in this event loop; yields its http:// origin."""
    port = free_port() if port is None else port
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the test server did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
