"""Object keys: the store port's key scheme, shared by every adapter (`local.py`, `s3.py`) and by the
services that name objects. Every object of a capture session lives under `sessions/{sessionId}/`.
"""

from __future__ import annotations

import re

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


def check_key(key: str) -> str:
    """Return `key` if it is safe as a relative path (no `..`, no leading `/`); raise ValueError otherwise."""
    if not _KEY_RE.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid object key {key!r}")
    return key


def session_prefix(session_id: str) -> str:
    """Every object of a capture session lives under this prefix: cancel, commit, expiry delete one prefix."""
    return f"sessions/{session_id}/"


def upload_key(session_id: str, image_id: str) -> str:
    """Where the phone PUTs the bytes as captured (any accepted type), before verification. Read once by
    each registration attempt, never after: a presigned S3 URL cannot be revoked, so a later PUT only makes
    an orphan the sweeper deletes."""
    return f"{session_prefix(session_id)}uploads/{image_id}"


def parse_upload_key(key: str) -> tuple[str, str] | None:
    """(session id, image id) of an `upload_key`, or None when `key` is not one."""
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == "sessions" and parts[2] == "uploads" and all(parts):
        return parts[1], parts[3]
    return None


def image_key(session_id: str, image_id: str, version: str = "") -> str:
    """The normalised JPEG (oriented, no EXIF). `version` (registration uses the start of the JPEG's
    SHA-256) gives each registration attempt keys of its own, so one never overwrites another's photo."""
    return f"{session_prefix(session_id)}{image_id}{'.' + version if version else ''}.jpg"


def thumbnail_key(session_id: str, image_id: str, version: str = "") -> str:
    """The thumbnail JPEG shown in galleries (`version` as for `image_key`)."""
    return f"{session_prefix(session_id)}{image_id}{'.' + version if version else ''}.thumb.jpg"
