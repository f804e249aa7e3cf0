"""The embedded object store: a folder on disk, with URLs the app itself serves and verifies.

A URL is `/api/storage/{key}?method=&exp=&ct=&len=&sig=`: `sig` is HMAC-SHA256 over the method, key, expiry
(Unix seconds), content type and exact length, so a URL can be neither extended nor reused for other bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from consultcam.files import private_dir, write_private
from consultcam.storage.keys import check_key
from consultcam.storage.store import PresignedRequest, StoredObject

URL_PREFIX = "/api/storage/"


class InvalidSignature(Exception):
    """The URL's signature does not match, has expired, or the request differs from what was signed."""


class LocalObjectStore:
    """Objects as 0600 files under `root`, in 0700 folders. Writes go to a temp file then `os.replace`."""

    #: URLs are this app's own (same origin): nothing to add to the Content-Security-Policy.
    public_origin: str | None = None

    def __init__(self, root: str | Path, *, secret_key: bytes) -> None:
        self.root = Path(root).expanduser().resolve()
        self._secret = hashlib.sha256(b"consultcam-local-store" + secret_key).digest()
        private_dir(self.root)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    # -- signed URLs ---------------------------------------------------------------------------------

    def _sign(self, method: str, key: str, exp: int, content_type: str, length: int | str) -> str:
        message = f"{method}\n{key}\n{exp}\n{content_type}\n{length}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _url(
        self, method: str, key: str, expires_in: int, content_type: str = "", length: int | str = ""
    ) -> tuple[str, int]:
        exp = int(time.time()) + expires_in
        query = {
            "method": method,
            "exp": exp,
            "ct": content_type,
            "len": length,
            "sig": self._sign(method, key, exp, content_type, length),
        }
        return f"{URL_PREFIX}{quote(check_key(key))}?{urlencode(query)}", exp

    async def presign_put(
        self, key: str, *, content_type: str, size_bytes: int, expires_in: int
    ) -> PresignedRequest:
        url, exp = self._url("PUT", key, expires_in, content_type, size_bytes)
        return PresignedRequest(
            url=url,
            method="PUT",
            headers={"Content-Type": content_type},
            expires_at=datetime.fromtimestamp(exp, UTC),
        )

    async def presign_get(self, key: str, *, expires_in: int) -> str:
        return self._url("GET", key, expires_in)[0]

    def verify(self, method: str, key: str, query: dict[str, str]) -> tuple[str, int | None]:
        """Check a signed URL's query for `method` on `key`; returns (content type, exact length or None).

        Raises InvalidSignature (the caller answers 403) when anything differs or the URL has expired.
        """
        try:
            exp = int(query["exp"])
            ct, length, sig = query.get("ct", ""), query.get("len", ""), query["sig"]
        except (KeyError, ValueError) as exc:
            raise InvalidSignature("the URL is incomplete") from exc
        if query.get("method") != method:
            raise InvalidSignature(f"this URL is not for {method}")
        if not hmac.compare_digest(sig, self._sign(method, key, exp, ct, length)):
            raise InvalidSignature("the URL's signature does not match")
        if exp < time.time():
            raise InvalidSignature("the URL has expired")
        return ct, int(length) if length else None

    # -- objects -------------------------------------------------------------------------------------

    def _write_file(self, key: str, chunks: list[bytes] | bytes) -> None:
        target = self.path(key)
        for attempt in range(3):  # a cancel may delete the session's folder between mkdir and the write
            try:
                # 0600 in 0700 folders (consultcam/files.py). Not fsynced, as before: temporary copies,
                # deleted at the commit or after RETENTION_HOURS.
                write_private(target, chunks, durable=False)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        await asyncio.to_thread(self._write_file, key, data)

    async def put_chunks(self, key: str, chunks: list[bytes]) -> None:
        """Write an upload received in chunks (the signed-URL PUT handler)."""
        await asyncio.to_thread(self._write_file, key, chunks)

    async def head(self, key: str) -> StoredObject | None:
        try:
            stat = await asyncio.to_thread(self.path(key).stat)
        except FileNotFoundError:
            return None
        return StoredObject(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError as exc:
            raise KeyError(key) from exc

    async def delete(self, *keys: str) -> None:
        for key in keys:
            await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    async def delete_prefix(self, prefix: str) -> int:
        directory = self.path(prefix.rstrip("/"))
        count = len(await self.list(prefix))
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)
        return count

    async def list(self, prefix: str) -> list[StoredObject]:
        def walk() -> list[StoredObject]:
            base = self.path(prefix.rstrip("/")) if prefix.strip("/") else self.root
            found = []
            for path in base.rglob("*") if base.is_dir() else []:
                if path.is_file() and not path.name.startswith("."):  # keys never start with a dot
                    stat = path.stat()
                    key = path.relative_to(self.root).as_posix()
                    found.append(StoredObject(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)))
            return found

        return await asyncio.to_thread(walk)

    async def close(self) -> None:
        return None

    async def check(self) -> None:
        await asyncio.to_thread(self._write_file, "readyz/probe", b"ok")
