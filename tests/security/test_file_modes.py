"""Files: everything consultcam keeps on disk is 0600 in 0700 folders, whatever the umask (README, "Settings":
DATA_DIR). The database holds patients' names and NHIs, the outbox their records, the objects their photos,
and secret.key signs every clinician cookie: another account on the machine must not read any of it.

Root ignores permission bits, so these tests read the modes an attacker's account would meet rather than try
to read the files as another user.
"""

from __future__ import annotations

import asyncio
import io
import os
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from consultcam.app import create_app
from consultcam.config import Settings
from consultcam.db import migrate
from tests.conftest import PATIENT, PHOTOS, serving
from tests.e2e.harness import free_port

CONSULTCAM = Path(sys.executable).with_name("consultcam")

#: What a whole session leaves in DATA_DIR on the embedded defaults (SQLite, folder store, export outbox).
EXPECTED = {
    "consultcam.db",
    "consultcam.db-wal",
    "consultcam.db-shm",
    "secret.key",
    "clinician-token",
    "tls/key.pem",
    "tls/cert.pem",
}


def loose(data_dir: Path) -> list[str]:
    """Every entry under (and including) `data_dir` that another account could list or read: folders not
    0700, files not 0600, anything that is neither (a symlink could point out of the folder)."""
    found = []
    for path in [data_dir, *sorted(data_dir.rglob("*"))]:
        info = os.lstat(path)
        mode = stat.S_IMODE(info.st_mode)
        wanted = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600 if stat.S_ISREG(info.st_mode) else None
        if mode != wanted:
            found.append(
                f"{path.relative_to(data_dir.parent)} {mode:04o} (want {wanted and f'{wanted:04o}'})"
            )
    return found


def names(data_dir: Path) -> set[str]:
    return {path.relative_to(data_dir).as_posix() for path in data_dir.rglob("*") if path.is_file()}


def photo() -> bytes:
    with Image.open(PHOTOS / "fundus-left-eye.jpg") as source:
        image = source.convert("RGB").resize((800, 600))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


async def whole_session(
    base: str, clinician_token: str, verify: ssl.SSLContext | bool, check: Callable[[str], Awaitable[None]]
) -> None:
    """Create a session, pair a phone, take one photo, commit it to the export outbox, as the pages do over
    real HTTP; `check(stage)` runs once the photo is stored ("uploaded") and once the commit is written
    ("committed"). The phone uses its bearer credential, the clinician the embedded token."""
    async with (
        httpx.AsyncClient(
            base_url=base, verify=verify, timeout=30, headers={"Authorization": f"Bearer {clinician_token}"}
        ) as desk,
        httpx.AsyncClient(base_url=base, verify=verify, timeout=30) as anyone,
    ):
        created = await desk.post(
            "/api/sessions",
            json={
                "encounterId": "enc-files",
                "practitionerId": "gp-1",
                "patient": PATIENT,
            },
        )
        assert created.status_code == 201, created.text
        session = created.json()
        sid = session["id"]
        token = session["pairing"]["url"].rsplit("/m/", 1)[1]
        paired = await anyone.post("/api/pair", json={"token": token})
        assert paired.status_code == 200, paired.text
        phone_headers = {"Authorization": f"Bearer {paired.json()['phoneToken']}"}
        async with httpx.AsyncClient(
            base_url=base, verify=verify, timeout=30, headers=phone_headers
        ) as phone:
            consent = await phone.put(
                f"/api/sessions/{sid}/consent", json={"scope": "clinical", "givenBy": "patient"}
            )
            assert consent.status_code == 200, consent.text
            data = photo()
            slot = await phone.post(
                f"/api/sessions/{sid}/uploads", json={"contentType": "image/jpeg", "sizeBytes": len(data)}
            )
            assert slot.status_code == 201, slot.text
            put = await phone.request(
                slot.json()["method"], slot.json()["uploadUrl"], content=data, headers=slot.json()["headers"]
            )
            assert put.status_code == 200, put.text
            image = await phone.post(f"/api/sessions/{sid}/images", json={"imageId": slot.json()["imageId"]})
            assert image.status_code == 201, image.text
        assert (await anyone.get("/readyz")).status_code == 200  # probes the store and the outbox too
        await check("uploaded")
        committed = await desk.post(f"/api/sessions/{sid}/commit", json={"imageIds": [image.json()["id"]]})
        assert committed.status_code == 200, committed.text
        assert committed.json()["status"] == "committed", committed.text
        await check("committed")


@pytest.mark.parametrize("umask", [0o000, 0o022], ids=["umask-000", "umask-022"])
async def test_serve_keeps_every_file_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    data_dir = tmp_path / "data"  # not made here: `consultcam serve` makes it, as on a first start
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTCAM_")}
    env |= {"CONSULTCAM_DATA_DIR": str(data_dir), "CONSULTCAM_REQUIRED_METADATA": ""}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CONSULTCAM), "serve", "--host", "127.0.0.1", "--port", str(port), "--tls"],
            env=env,
            umask=umask,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"consultcam serve did not start:\n{log.read_text()}"
            cert = data_dir / "tls" / "cert.pem"
            if cert.exists():
                verify = ssl.create_default_context(cafile=cert)
                try:
                    if httpx.get(f"{base}/healthz", verify=verify, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            await asyncio.sleep(0.2)

        seen: dict[str, set[str]] = {}

        async def check(stage: str) -> None:
            seen[stage] = names(data_dir)
            assert not (found := loose(data_dir)), f"{stage}: {found}"

        token = (data_dir / "clinician-token").read_text().strip()
        await whole_session(base, token, verify, check)
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert seen["uploaded"] >= EXPECTED, seen["uploaded"]  # the WAL and shm exist while the server runs
    assert any(name.startswith("objects/sessions/") for name in seen["uploaded"]), seen["uploaded"]
    assert any(name.startswith("outbox/") and name.endswith(".json") for name in seen["committed"])
    assert loose(data_dir) == []  # and after a clean stop


async def test_an_app_built_by_a_library_user_keeps_files_private_and_tightens_an_old_install(
    tmp_path: Path,
) -> None:
    """`create_app` in someone else's process under umask 000, on a DATA_DIR an older consultcam left
    world-readable (folder 0777, database 0666): the start tightens it, everything new is private."""
    data_dir = tmp_path / "data"
    database = data_dir / "consultcam.db"
    previous = os.umask(0)
    try:
        data_dir.mkdir(mode=0o777)
        database.touch(mode=0o666)
        await asyncio.to_thread(migrate, f"sqlite+aiosqlite:///{database}")
        settings = Settings(
            data_dir=data_dir,
            database_url="",
            clinician_token="library-user-token-0123456789abcdef",
            public_url="",
            emr_url="export://",
            required_metadata=(),
            sweep_interval_seconds=3600,
        )
        app = create_app(settings)

        async def check(stage: str) -> None:
            assert not (found := loose(data_dir)), f"{stage}: {found}"

        async with app.router.lifespan_context(app), serving(app) as base:
            await whole_session(base, settings.clinician_token, False, check)
    finally:
        os.umask(previous)
    assert {"consultcam.db", "secret.key"} <= names(data_dir)
    assert loose(data_dir) == []
