"""The rules for committing a session opened by a SMART App Launch (issue 13): its grant opened for the
commit, the tokens a refresh brings sealed back into it at once, and the launching user as the author.

The grant (`models.SmartGrant`, written at launch by `consultcam.launch`) holds the tokens sealed with the
server's key (`kit.sealing`, purpose "smart-grant": {"access_token", "refresh_token"?}); they are opened only
in memory, for the connector, and never logged nor sent to a browser.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from consultcam.commits import repository
from consultcam.commits.connectors.base import CommitContext, Connector, GrantAccess, TokensRefreshed
from consultcam.config import Settings
from consultcam.db import Transactions, UnitOfWork
from consultcam.kit.sealing import SealBroken, seal, unseal
from consultcam.models import SmartGrant, utcnow
from consultcam.runtime import Runtime

__all__ = [
    "SEAL_PURPOSE",
    "author_from_grant",
    "connector_for",
    "grant_access",
    "sealed_tokens",
    "token_keeper",
]

log = logging.getLogger(__name__)

SEAL_PURPOSE = "smart-grant"


async def grant_access(uow: UnitOfWork, settings: Settings, session_id: str) -> GrantAccess | None:
    """The session's SMART grant with its tokens opened, or None when the session was not opened by a
    SMART launch. A grant whose tokens cannot be opened (the server's secret changed, or no access token)
    comes back with an empty access token and no refresh token: the commit then asks for a new launch."""
    grant: SmartGrant | None = await repository.smart_grant(uow.session, session_id)
    if grant is None:
        return None
    try:
        tokens = unseal(settings.secret_key, SEAL_PURPOSE, grant.sealed_tokens)
    except SealBroken:
        log.warning("the SMART grant of session %s cannot be opened; a new launch is needed", session_id)
        tokens = {}
    access, refresh = tokens.get("access_token"), tokens.get("refresh_token")
    return GrantAccess(
        fhir_base=grant.fhir_base,
        token_endpoint=grant.token_endpoint,
        client_id=grant.client_id,
        access_token=access if isinstance(access, str) else "",
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        access_expires_at=grant.access_expires_at if access else utcnow(),
        fhir_user=grant.fhir_user,
    )


def connector_for(tx: Transactions, rt: Runtime, session_id: str, grant: GrantAccess | None) -> Connector:
    """The connector of a commit of this session: the SMART launch's EHR (`rt.grant_connectors`) when the
    session has a grant, else the practice's (`rt.connector`). Never the practice's for a launched session:
    that is another record. Raises RuntimeError when the runtime cannot build a grant's connector."""
    if grant is None:
        return rt.connector
    if rt.grant_connectors is None:
        raise RuntimeError("this runtime cannot commit a SMART-launched session (no grant_connectors)")
    return rt.grant_connectors(grant, token_keeper(tx, rt.settings, session_id))


def sealed_tokens(settings: Settings, access_token: str, refresh_token: str | None) -> str:
    """The grant's `sealed_tokens` value for these tokens."""
    value = {"access_token": access_token}
    if refresh_token:
        value["refresh_token"] = refresh_token
    return seal(settings.secret_key, SEAL_PURPOSE, value)


def token_keeper(tx: Transactions, settings: Settings, session_id: str) -> TokensRefreshed:
    """The `on_refresh` of a session's connector: seals the new tokens into the grant in a transaction of
    its own, committed before the new token is used, so a crash later in the commit keeps the new refresh
    token (the old one may no longer work: RFC 6749 §6 lets the EHR rotate it)."""

    async def keep(access_token: str, refresh_token: str | None, expires_at: datetime | None) -> None:
        async with tx() as uow:
            await repository.store_grant_tokens(
                uow.session,
                session_id,
                sealed_tokens=sealed_tokens(settings, access_token, refresh_token),
                access_expires_at=expires_at,
                now=utcnow(),
            )

    return keep


def author_from_grant(context: CommitContext, grant: GrantAccess) -> CommitContext:
    """The context with the launching user as the practitioner (Media.operator, DocumentReference.author)
    when the session has none and the grant's `fhirUser` is a Practitioner ("Practitioner/7", or an
    absolute URL ending so; SMART App Launch 2.x, "fhirUser"). Other user types are not a Practitioner
    reference and are left out."""
    if context.practitioner_id or not grant.fhir_user:
        return context
    parts = [part for part in grant.fhir_user.split("?", 1)[0].split("/") if part]
    if len(parts) >= 2 and parts[-2] == "Practitioner":
        return replace(context, practitioner_id=parts[-1])
    return context
