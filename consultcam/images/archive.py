"""The session's photos as one ZIP download (`GET /api/sessions/{id}/download`, issue 5).

Each ready photo with its edits burned in (`service.render_image`, the path the single download and the
commit use), stored uncompressed (JPEG does not deflate), named `01-<label or body site>.jpg` in gallery
order.
"""

from __future__ import annotations

import re
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import anyio

from consultcam import audit
from consultcam.auth.principals import Principal
from consultcam.config import PRACTICE_TIMEZONE
from consultcam.db import Transactions
from consultcam.errors import Conflict, ResourceNotFound
from consultcam.images.service import ready_images, render_image
from consultcam.sessions import service as sessions
from consultcam.terminology.metadata import UnknownTerm, photo_terms

if TYPE_CHECKING:
    from consultcam.runtime import Runtime

#: The session's ZIP is built in memory up to this size, then in an unlinked temporary file (0600).
ARCHIVE_SPOOL_BYTES = 8 * 1024 * 1024
ARCHIVE_CHUNK_BYTES = 64 * 1024


@dataclass
class SessionArchive:
    """A built ZIP of the session's photos: `file` positioned at its start, `size_bytes` long; the caller
    streams it with `chunks()`, which closes it."""

    filename: str
    file: IO[bytes]
    size_bytes: int
    photos: int

    def chunks(self) -> Iterator[bytes]:
        """The ZIP in 64 KiB pieces (blocking reads: a web framework iterates it in a thread)."""
        try:
            while chunk := self.file.read(ARCHIVE_CHUNK_BYTES):
                yield chunk
        finally:
            self.file.close()


async def session_archive(tx: Transactions, rt: Runtime, actor: Principal, session_id: str) -> SessionArchive:
    """Every ready photo of the session with its edits burned in, as one ZIP (stored, not deflated: JPEG
    does not compress), in gallery order and named `01-<label, else body site>.jpg`; audited.

    Built in a SpooledTemporaryFile one photo at a time, so 50 photos never sit twice in memory, and with
    no transaction open while rendering (it reads, then audits, in transactions of its own, `tx`). A photo
    deleted meanwhile is left out. Raises ResourceNotFound (404), Conflict (409 `NoPhotos`) when there is no
    ready photo.
    """
    async with tx(writes=False) as uow:
        session = await sessions.get_session(uow, session_id)
        images = await ready_images(uow, session_id)
    if not images:
        raise _no_photos()
    width = max(2, len(str(len(images))))
    spool = tempfile.SpooledTemporaryFile(max_size=ARCHIVE_SPOOL_BYTES)  # noqa: SIM115 (closed by chunks())
    written = 0
    try:
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_STORED) as archive:
            for number, image in enumerate(images, start=1):
                try:
                    jpeg = await render_image(rt, image)
                except ResourceNotFound:
                    continue  # deleted (or the session ended) since the listing
                info = zipfile.ZipInfo(
                    f"{number:0{width}d}-{photo_slug(image.image_metadata or {})}.jpg",
                    date_time=_zip_time(image.captured_at or image.created_at),
                )
                info.compress_type = zipfile.ZIP_STORED
                await anyio.to_thread.run_sync(archive.writestr, info, jpeg)
                written += 1
        size = spool.tell()
        spool.seek(0)
        if not written:
            raise _no_photos()
    except BaseException:
        spool.close()
        raise
    async with tx() as uow:
        audit.record(
            uow.session, actor, "session.downloaded", session_id=session_id, images=written, size_bytes=size
        )
    return SessionArchive(
        filename=f"consultcam-{slugify(session.encounter_id, fallback='session')}.zip",
        file=spool,
        size_bytes=size,
        photos=written,
    )


def _no_photos() -> Conflict:
    return Conflict(
        "This session has no photos to download yet (committed photos are no longer kept here). Take or "
        "upload a photo first.",
        error="NoPhotos",
    )


def _zip_time(at: datetime) -> tuple[int, int, int, int, int, int]:
    """A ZIP entry's date and time: the format holds local time with no zone (APPNOTE 4.4.6), so the
    practice's wall clock, as a file manager there shows it; never before 1980, the format's epoch."""
    local = max(at, datetime(1980, 1, 2, tzinfo=UTC)).astimezone(PRACTICE_TIMEZONE)
    return local.year, local.month, local.day, local.hour, local.minute, local.second


def photo_slug(metadata: dict[str, Any]) -> str:
    """A file-name part for a photo: its label, else its body site and side in the data file's words
    (without "structure" or a SNOMED CT semantic tag, whatever words the row stored), else "photo". E.g.
    "lesion-a", "left-forearm" for 14975008 |Forearm structure| on the left. A code no longer listed names
    no site (the commit asks for it to be chosen again)."""
    if label := slugify(str(metadata.get("label") or "")):
        return label
    try:
        words = photo_terms(metadata).file_words
    except UnknownTerm:
        words = ""
    return slugify(words, fallback="photo")


def slugify(text: str, *, fallback: str = "", max_length: int = 60) -> str:
    """Lower-case ASCII letters, digits and single hyphens ("Ārai — left arm" → "arai-left-arm"), safe in
    any file system and in a Content-Disposition header; `fallback` when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or fallback
