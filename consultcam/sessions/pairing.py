"""Pairing (issue 2): a QR code carries a 256-bit token that gives the phone its credential.

The token is stored only as SHA-256, valid for `PAIRING_TTL_SECONDS`, redeemed at most once by one atomic
`UPDATE … WHERE redeemed_at IS NULL RETURNING`; a new code supersedes the unredeemed ones. Redeeming gives
the phone a credential bound to that session (`consultcam.sessions.service` authenticates and revokes
those). Lock order (consultcam.db): the session row before its tokens and phones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import segno

from consultcam import audit
from consultcam.auth.principals import Clinician, Phone, hash_secret, new_secret
from consultcam.db import UnitOfWork
from consultcam.errors import Conflict, Gone, ResourceNotFound
from consultcam.events.bus import publish_after_commit
from consultcam.models import CaptureSession, PairingToken, PhoneCredential, utcnow
from consultcam.runtime import Runtime
from consultcam.sessions import repository
from consultcam.sessions import service as sessions
from consultcam.sessions.schemas import PairingOut


def qr_svg(url: str) -> str:
    """The pairing URL as an inline, scalable SVG QR code (segno; ISO/IEC 18004, error correction M)."""
    return segno.make(url, error="m", boost_error=False).svg_inline(
        scale=1, border=2, dark="#0b2239", light="#ffffff", omitsize=True, title="Scan with the phone camera"
    )


async def issue_pairing(
    uow: UnitOfWork, rt: Runtime, actor: Clinician, session: CaptureSession, base_url: str
) -> PairingOut:
    """A new single-use pairing token for `session`; earlier unredeemed codes stop working.

    Raises Conflict (409) when the session is not open.
    """
    await sessions.lock_session(uow, session.id)  # a redemption or another new code of this session waits
    sessions.require_open(session, rt.settings)
    now = utcnow()
    await repository.supersede_pairings(uow.session, session.id, now)
    token = new_secret()
    expires_at = now + timedelta(seconds=rt.settings.pairing_ttl_seconds)
    uow.session.add(
        PairingToken(
            session_id=session.id, token_hash=hash_secret(token), created_at=now, expires_at=expires_at
        )
    )
    sessions.touch(session)
    audit.record(uow.session, actor, "pairing.issued", session_id=session.id)
    url = f"{base_url.rstrip('/')}/m/{token}"
    return PairingOut(url=url, expires_at=expires_at, qr_svg=qr_svg(url))


@dataclass(frozen=True)
class Pairing:
    """A redeemed pairing: the session, the new phone credential row and its secret (shown once)."""

    session: CaptureSession
    phone: PhoneCredential
    phone_token: str


async def redeem_pairing(
    uow: UnitOfWork, rt: Runtime, token: str, *, user_agent: str, current: Phone | None
) -> Pairing:
    """Redeem a pairing token once, atomically, and issue a phone credential bound to its session.

    `current` is the phone credential the caller already holds (its cookie), if live. A phone that reloads
    the page (it holds the credential from this very token, or another of the same session) gets a fresh
    credential in place of its old one. A phone paired with another session that redeems this one's code
    leaves that session: its old credential is revoked there with reason "paired-elsewhere", which the other
    desktop hears (`phone.revoked`) and the audit trail records (issue 10). Raises ResourceNotFound 404
    (unknown code), Conflict 409 (already used, or the session is closed), Gone 410 (expired or replaced
    by a newer code).
    """
    now = utcnow()
    token_hash = hash_secret(token)
    # Lock order (consultcam.db): the session row before its token, as `issue_pairing` does; the UPDATE
    # below stays the one atomic step that lets a single redemption through. With the phone's other
    # session too, both rows in id order, so two phones swapping sessions never wait on each other.
    await repository.lock_sessions_for_pairing(
        uow.session, token_hash, current.session_id if current is not None else None
    )
    redeemed = await repository.redeem_token(uow.session, token_hash, now)
    if redeemed is None:
        pairing_id, session_id = await _explain_unredeemable(uow, token_hash, current)
    else:
        pairing_id, session_id = redeemed
    session = await sessions.get_session(uow, session_id)
    sessions.require_open(session, rt.settings)
    if current is not None and current.session_id == session.id:  # the same phone again: rotate
        await repository.revoke_phone(uow.session, current.id, now)
        bus, replaced = rt.bus, current.id

        async def _end_streams() -> None:  # whoever still holds the old credential stops listening
            await bus.end_streams(credential_id=replaced)

        uow.after_commit(_end_streams)
    elif current is not None:  # the phone moves here from another session: that desktop is told
        left = await sessions.get_session(uow, current.session_id)
        await sessions.revoke_phones(uow, rt, current, left, reason="paired-elsewhere", phone_id=current.id)
    phone_token = new_secret()
    phone = PhoneCredential(
        session_id=session.id,
        pairing_token_id=pairing_id,
        token_hash=hash_secret(phone_token),
        user_agent=user_agent[:300],
        created_at=now,
        last_seen_at=now,
    )
    uow.session.add(phone)
    sessions.touch(session)
    await uow.session.flush()
    moved = {"previous_phone_id": current.id} if current and current.session_id != session.id else {}
    audit.record(
        uow.session,
        Phone(id=phone.id, session_id=session.id),
        "phone.paired",
        session_id=session.id,
        user_agent=phone.user_agent,
        **moved,
    )
    publish_after_commit(
        uow,
        rt.bus,
        session.id,
        "phone.paired",
        {"phone": {"id": phone.id, "userAgent": phone.user_agent, "pairedAt": now.isoformat()}},
    )
    return Pairing(session=session, phone=phone, phone_token=phone_token)


async def _explain_unredeemable(uow: UnitOfWork, token_hash: str, current: Phone | None) -> tuple[str, str]:
    """Say why a token could not be redeemed, or return (pairing id, session id) when the caller is the
    phone that redeemed it (a page reload)."""
    row = await repository.pairing_by_hash(uow.session, token_hash)
    if row is None:
        raise ResourceNotFound(
            "This QR code is not recognised. Ask for a new code on the desktop and scan it again.",
            error="PairingTokenNotFound",
        )
    if row.redeemed_at is not None:
        if current is not None and current.session_id == row.session_id:
            owner = await repository.phone_by_id(uow.session, current.id)
            if owner is not None and owner.pairing_token_id == row.id:
                return row.id, row.session_id
        raise Conflict(
            "This QR code has already been used by another phone. Ask for a new code on the desktop "
            "and scan it again.",
            error="PairingTokenUsed",
        )
    if row.superseded_at is not None:
        raise Gone(
            "This QR code was replaced by a newer one. Scan the code now shown on the desktop.",
            error="PairingTokenReplaced",
        )
    raise Gone(
        "This QR code has expired (codes last a few minutes). Press “New code” on the desktop and scan "
        "again.",
        error="PairingTokenExpired",
    )
