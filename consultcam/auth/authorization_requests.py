"""Pending authorization requests (`AuthorizationRequest`, migration 0006): a browser sent to an
authorization server, waiting for its callback, on any web process (issue 13). Used by the OIDC sign-in
(`purpose` "oidc", `consultcam.auth.oidc_signin`) and the SMART App Launch ("smart").

The row is found by the SHA-256 of its `state` (RFC 6749 §10.12: the state is a bearer value, never stored
in the clear) and used once: `claim` marks `used_at` in one `UPDATE … WHERE used_at IS NULL`, so of two
concurrent callbacks with the same state (a replay, a double click), on any number of processes, exactly
one proceeds. What the callback needs (PKCE code_verifier, nonce, return path) is `sealed` with the
server's key (`consultcam.kit.sealing`). The sweeper deletes rows past `expires_at` (`sweep`).

Functions taking a `db` session never commit (the caller's unit of work does); `sweep` owns its
transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from consultcam.db import Transactions
from consultcam.kit.sealing import SealBroken, seal, unseal
from consultcam.models import AuthorizationRequest, utcnow

Purpose = Literal["oidc", "smart"]
#: How long a browser may take at the authorization server (signing in, choosing a patient).
LIFETIME = timedelta(minutes=10)
#: Why a state was refused: never issued (or tampered with), used already, or too old.
Refusal = Literal["unknown", "used", "expired"]


def state_hash(state: str) -> str:
    """SHA-256 hex of a `state` value (256-bit random, so no salt is needed)."""
    return hashlib.sha256(state.encode()).hexdigest()


async def add(
    db: AsyncSession,
    key: bytes,
    purpose: Purpose,
    state: str,
    issuer: str,
    secrets: dict[str, Any],
    now: datetime | None = None,
) -> None:
    """Record a request whose callback will carry `state`, with `secrets` (a JSON object) sealed under
    `key` for `purpose`; it expires LIFETIME from `now`."""
    now = now or utcnow()
    db.add(
        AuthorizationRequest(
            state_hash=state_hash(state),
            purpose=purpose,
            issuer=issuer,
            sealed=seal(key, f"authorization-request:{purpose}", secrets),
            created_at=now,
            expires_at=now + LIFETIME,
        )
    )
    await db.flush()


@dataclass(frozen=True)
class Claimed:
    """A request claimed by its callback: the `issuer` it went to and its unsealed `secrets`."""

    issuer: str
    secrets: dict[str, Any]


async def claim(
    db: AsyncSession, key: bytes, purpose: Purpose, state: str, now: datetime | None = None
) -> Claimed | Refusal:
    """Use the request `state` names, once: returns what it sealed, or why it is refused ("unknown": never
    issued for `purpose`, tampered with, or sealed under another key; "used": its callback came already;
    "expired": older than LIFETIME). The caller commits the use before acting on it."""
    now = now or utcnow()
    hashed = state_hash(state)
    row = (
        await db.execute(
            select(AuthorizationRequest).where(
                AuthorizationRequest.state_hash == hashed, AuthorizationRequest.purpose == purpose
            )
        )
    ).scalar_one_or_none()
    if row is None:
        return "unknown"
    if row.used_at is not None:
        return "used"
    if row.expires_at <= now:
        return "expired"
    marked = await db.execute(
        update(AuthorizationRequest)
        .where(AuthorizationRequest.state_hash == hashed, AuthorizationRequest.used_at.is_(None))
        .values(used_at=now)
        .returning(AuthorizationRequest.sealed, AuthorizationRequest.issuer)
    )
    found = marked.first()
    if found is None:
        return "used"  # a concurrent callback won
    try:
        secrets = unseal(key, f"authorization-request:{purpose}", found.sealed)
    except SealBroken:
        return "unknown"
    return Claimed(issuer=found.issuer, secrets=secrets)


async def sweep(tx: Transactions, now: datetime | None = None) -> int:
    """Delete the requests past their expiry (used or not), in a transaction of its own; returns how
    many. The sweeper's step "authorization requests"."""
    now = now or utcnow()
    async with tx() as uow:
        result = await uow.session.execute(
            delete(AuthorizationRequest).where(AuthorizationRequest.expires_at <= now)
        )
    return int(getattr(result, "rowcount", 0) or 0)
