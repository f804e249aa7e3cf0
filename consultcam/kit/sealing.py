"""Sealed values: small JSON objects encrypted and authenticated with the server's key, for secrets the
server must read back later (a PKCE code_verifier until its callback, a SMART access token until the
commit) but must not keep in the clear at rest.

Fernet (AES-128-CBC with HMAC-SHA256, `cryptography`) under a key derived per purpose with HKDF-SHA256
(RFC 5869) from `Settings.secret_key`, so a value sealed for one purpose cannot be opened for another, and
every web process sharing CONSULTCAM_SECRET opens what another sealed. Changing the secret makes every
sealed value unreadable (`SealBroken`): pending sign-ins and SMART grants must then be started again.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SealBroken", "seal", "unseal"]


class SealBroken(Exception):
    """A sealed value could not be opened: tampered with, sealed for another purpose, older than allowed,
    or sealed under another server key."""


def _fernet(key: bytes, purpose: str) -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"consultcam:seal:{purpose}".encode()
    ).derive(key)
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(key: bytes, purpose: str, value: dict[str, Any]) -> str:
    """`value` (a JSON-serialisable dict) encrypted for `purpose` under `key` (≥ 32 bytes, the server's
    `Settings.secret_key`): a URL-safe ASCII string."""
    data = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return _fernet(key, purpose).encrypt(data).decode("ascii")


def unseal(key: bytes, purpose: str, sealed: str, *, max_age_seconds: int | None = None) -> dict[str, Any]:
    """The dict `seal(key, purpose, …)` made. Raises SealBroken when it was tampered with, sealed for
    another purpose or key, or is older than `max_age_seconds` (when given)."""
    try:
        data = _fernet(key, purpose).decrypt(sealed.encode("ascii"), ttl=max_age_seconds)
        value = json.loads(data)
    except (InvalidToken, UnicodeError, ValueError) as exc:
        raise SealBroken(f"the sealed value for {purpose} could not be opened") from exc
    if not isinstance(value, dict):
        raise SealBroken(f"the sealed value for {purpose} is not an object")
    return value
