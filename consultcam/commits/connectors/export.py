"""The `export` connector: one FHIR R4 transaction Bundle JSON file per commit, in a private folder.

This is the embedded default (`CONSULTCAM_EMR_URL=export://DIR`): a practice's EMR importer, or a person,
picks the files up. The files are patient records: the folder is created 0700 and each file written 0600,
atomically (temp file in the same folder, fsync, rename), so a reader never sees half a Bundle.

Once per commit (issue 10): the file is named by the commit id, which every retry of a session's commit
shares, so a retry after a crash or a failure writes the same file again instead of a second Bundle. An
identical Bundle already there is left untouched (an importer watching the folder sees nothing new); a
different one (photos added or removed since) replaces it; a temp file a killed process left is removed.
Each entry is also a conditional create on the image id, for importers that already took an earlier file.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from consultcam.commits.connectors.base import (
    CommitContext,
    CommitFailed,
    CommitItem,
    ConnectorUnavailable,
    ImageResult,
    ProgressCallback,
    all_failed,
    preparation_failed,
)
from consultcam.commits.fhir_media import assemble_transaction_bundle, bundle_entry, check_context
from consultcam.files import private_dir, write_private
from consultcam.kit.status import ImageCommitStatus

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ExportConnector:
    """Writes each commit as `<directory>/<UTC time>-<encounter id>-<commit id>.json`, once per commit id."""

    name = "export"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def from_url(cls, url: str, *, data_dir: Path = Path("data")) -> ExportConnector:
        """The connector for an `export://DIR` URL.

        Everything after `export://` is the directory (percent-decoded; there is no host part, unlike
        file://): `export:///srv/outbox` is absolute, `export://outbox`, `export://./outbox` and
        `export://../outbox` are relative to the current directory when the URL is read, `export://~/x`
        is under the home directory, and `export://` alone is DATA_DIR/outbox. Relative paths are made
        absolute here so a later chdir cannot move the outbox. Raises ValueError for other URLs.
        """
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.strip().lower() != "export":
            raise ValueError("an export connector URL must start with export://")
        if "?" in rest or "#" in rest:
            raise ValueError("an export:// URL takes a directory only, without ?query or #fragment")
        raw = unquote(rest)
        directory = Path(raw).expanduser() if raw else Path(data_dir) / "outbox"
        return cls(directory.absolute())

    async def commit(
        self, context: CommitContext, items: Sequence[CommitItem], progress: ProgressCallback
    ) -> list[ImageResult]:
        """Write every item into one transaction Bundle file, or nothing.

        Calls progress(i, n) as each Bundle entry is built. Returns one "committed" ImageResult per item
        with resource_id = the entry's fullUrl "urn:uuid:<image id>". Raises CommitFailed (every item
        "failed", no file left behind) when the input is not valid FHIR R4 or the file cannot be written.
        Exceptions raised by `progress` itself propagate unchanged; nothing has been written by then.
        """
        if not items:
            raise CommitFailed("There are no photos to commit. Take or choose a photo first.", [])
        try:
            check_context(context)
        except ValueError as exc:
            raise preparation_failed(items, str(exc), "the patient record") from exc

        entries, errors = await self._entries(context, items, progress)
        if errors:
            raise preparation_failed(items, errors, "the patient record")
        try:
            bundle = await asyncio.to_thread(assemble_transaction_bundle, context, entries)
        except ValueError as exc:
            raise preparation_failed(items, str(exc), "the patient record") from exc

        try:
            await asyncio.to_thread(_save_once, self.directory, export_filename(context), bundle)
        except OSError as exc:
            why = _os_error_words(exc)
            raise CommitFailed(
                f"The photos could not be saved to the export folder ({why}). Nothing was saved; ask for "
                f"the folder {self.directory} to be fixed, then commit again.",
                all_failed(items, why),
            ) from exc
        return [
            ImageResult(
                image_id=item.image_id, status=ImageCommitStatus.COMMITTED, resource_id=entry["fullUrl"]
            )
            for item, entry in zip(items, entries, strict=True)
        ]

    async def check(self) -> None:
        """Readiness: the export folder exists (or can be made) and a file can be created in it.

        Raises ConnectorUnavailable otherwise.
        """
        try:
            await asyncio.to_thread(_probe, self.directory)
        except OSError as exc:
            raise ConnectorUnavailable(
                f"export folder {self.directory} is not writable ({_os_error_words(exc)})"
            ) from exc

    async def _entries(
        self, context: CommitContext, items: Sequence[CommitItem], progress: ProgressCallback
    ) -> tuple[list[dict[str, Any]], dict[int, str]]:
        """Build every entry, collecting per-photo problems so the GP sees all of them at once."""
        entries: list[dict[str, Any]] = []
        errors: dict[int, str] = {}
        for index, item in enumerate(items):
            try:
                # base64 and validation of a megabyte photo take tens of milliseconds: off the event loop.
                entries.append(await asyncio.to_thread(bundle_entry, context, item))
            except ValueError as exc:
                errors[index] = str(exc)
                continue
            if not errors:
                await progress(index + 1, len(items))
        return entries, errors


def export_filename(context: CommitContext) -> str:
    """`<YYYYmmddTHHMMSSZ>-<encounter id, filename-safe, ≤64 chars>-<commit id hex>.json`."""
    committed_at = context.committed_at
    if committed_at.tzinfo is None:
        committed_at = committed_at.replace(tzinfo=UTC)  # as in fhir_media: naive means UTC
    stamp = committed_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    encounter = _UNSAFE.sub("_", context.encounter_id)[:64] or "encounter"
    return f"{stamp}-{encounter}-{uuid.UUID(context.commit_id).hex}.json"


def _save_once(directory: Path, filename: str, bundle: dict[str, Any]) -> Path:
    """Write `bundle` as `directory/filename` (from export_filename) unless this commit already has a file
    there: then that file is kept when it holds the same Bundle, else replaced in place. Returns the path.
    The commit id ends the name, so "this commit's file" is `*-<commit id>.json` whatever its time stamp."""
    commit_hex = filename.removesuffix(".json").rsplit("-", 1)[-1]
    earlier = sorted(directory.glob(f"*-{commit_hex}.json")) if directory.is_dir() else []
    for stale in directory.glob(f".*-{commit_hex}.*.tmp") if directory.is_dir() else []:
        stale.unlink(missing_ok=True)  # half-written by a process killed mid-write: never a record
    path = earlier[0] if earlier else directory / filename
    if earlier and _same_bundle(path, bundle):
        return path
    _write_bundle(path, bundle)
    return path


def _same_bundle(path: Path, bundle: dict[str, Any]) -> bool:
    try:
        return bool(json.loads(path.read_bytes()) == bundle)
    except (OSError, ValueError):
        return False  # unreadable or not JSON: write it again


def _write_bundle(path: Path, bundle: dict[str, Any]) -> None:
    data = json.dumps(bundle, ensure_ascii=False, indent=2).encode("utf-8")
    _ensure_directory(path.parent)
    # 0600, through a dot-prefixed .tmp file (importers skip it), fsync, rename, fsync of the folder.
    write_private(path, data)


def _ensure_directory(directory: Path) -> None:
    # Made 0700 with any missing parents; an existing folder keeps the permissions its owner gave it.
    private_dir(directory)


def _probe(directory: Path) -> None:
    _ensure_directory(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".probe.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)


def _os_error_words(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied"
    return exc.strerror or type(exc).__name__
