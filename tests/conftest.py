"""Shared fixtures: a real app on a temporary SQLite file and folder store, clients for the clinician and
phones, and photos built from `tests/photos` the way phones produce them."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from consultcam.app import create_app
from consultcam.config import Settings
from consultcam.db import migrate

#: Real photos (CC0 or public domain, sources in tests/photos/README.md), in the repo for clean checkouts.
PHOTOS = Path(__file__).resolve().parent / "photos"
CLINICIAN_TOKEN = "test-clinician-token-0123456789abcdef"
PATIENT = {"id": "pat-1", "name": "Mere Tester", "nhi": "ZZZ0016", "birthDate": "1980-02-29"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's sync API keeps an event loop running in the main thread for the
    rest of the session, and the async tests and migrations need that thread's loop free."""
    items.sort(key=lambda item: "e2e" in item.path.parts)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Settings a test changes: `@pytest.mark.parametrize("settings_overrides", [{"max_images": 3}])`."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, settings_overrides: dict[str, Any]) -> Settings:
    """Embedded settings in a fresh data directory, with the schema migrated."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "clinician_token": CLINICIAN_TOKEN,
        "public_url": "",
        "sweep_interval_seconds": 3600,
        "emr_url": "export://",
        **settings_overrides,
    }
    settings = Settings(**values)
    migrate(settings.resolved_database_url)
    return settings


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def runtime(app: Any) -> Any:
    return app.state.runtime


def _client(app: Any, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
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
    clinician: httpx.AsyncClient, encounter: str = "enc-1", **extra: Any
) -> dict[str, Any]:
    response = await clinician.post(
        "/api/sessions", json={"encounterId": encounter, "patient": PATIENT, **extra}
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def token_of(pairing_url: str) -> str:
    return pairing_url.rsplit("/m/", 1)[1]


async def pair_phone(new_client: Any, session: dict[str, Any]) -> httpx.AsyncClient:
    """A phone client that redeemed the session's QR code (authenticated by the cookie it was given)."""
    phone = new_client()
    response = await phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})
    assert response.status_code == 200, response.text
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
