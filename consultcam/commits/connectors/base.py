"""The connector port: what a commit hands to a destination EMR and what it gets back.

A connector writes every image of a commit or none of them (DESIGN.md, "commit"). The shapes here are the
contract between the commit service and the `export`, `fhir`, `alex` and `dicomweb` adapters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import SplitResult, urlsplit

from consultcam.kit.status import ImageCommitStatus

__all__ = [
    "CommitContext",
    "CommitFailed",
    "CommitItem",
    "Connector",
    "ConnectorUnavailable",
    "GrantAccess",
    "GrantConnectors",
    "ImageResult",
    "LaunchExpired",
    "PatientRef",
    "ProgressCallback",
    "TokensRefreshed",
    "all_failed",
    "preparation_failed",
    "split_server_url",
]


@dataclass(frozen=True)
class PatientRef:
    """The patient a capture session is bound to, as the EMR launch gave it.

    `id` is the EMR's FHIR Patient id; `nhi` the New Zealand National Health Index number (e.g. "ZZZ0016").
    """

    id: str
    name: str
    nhi: str | None = None
    birth_date: date | None = None


@dataclass(frozen=True)
class CommitContext:
    """Who and what one commit attempt is about.

    `commit_id` is a uuid hex and `committed_at` an aware UTC datetime, both the same for every attempt
    of a session's commit (a retry writes the same thing); `attempt` counts those attempts from 1, so a
    connector knows when an earlier attempt may already have written something (commits/service.py).
    `consent`, when recorded: {"scope": "clinical" | "teaching" | "publication",
    "givenBy": "patient" | "guardian"}. `encounter_in_record` is False when `encounter_id` is a key a
    launch made up because the EMR gave no encounter (`consultcam.sessions.encounters`): it may group
    photos, but a FHIR resource must not reference it.
    """

    session_id: str
    commit_id: str
    encounter_id: str
    patient: PatientRef
    practitioner_id: str | None
    facility_id: str | None
    committed_at: datetime
    consent: dict[str, Any] | None = None
    attempt: int = 1
    encounter_in_record: bool = True


@dataclass(frozen=True)
class CommitItem:
    """One clinical image ready to leave: the final JPEG with edits burned in.

    `image_id` is a uuid string; `width`/`height` in pixels; `metadata` is the image metadata of the API:
    {"bodySite": {"system", "code", "display"}?, "laterality": "left" | "right" | "bilateral" |
    "not-applicable"?, "view": str?, "label": str?, "notes": str?}.
    """

    image_id: str
    jpeg: bytes = field(repr=False)
    width: int
    height: int
    captured_at: datetime | None
    created_at: datetime
    metadata: dict[str, Any]


@dataclass(frozen=True)
class ImageResult:
    """The outcome for one image; `resource_id` is where the destination put it when committed."""

    image_id: str
    status: ImageCommitStatus
    resource_id: str | None = None
    error: str | None = None


class CommitFailed(Exception):
    """All-or-nothing failure: nothing was written.

    `detail` is a sentence a GP understands (what went wrong, what to do); `results` has one
    ImageResult per item, none of them "committed".
    """

    def __init__(self, detail: str, results: list[ImageResult]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.results = results


class LaunchExpired(CommitFailed):
    """The EHR's sign-in a SMART launch granted (issue 13) has expired and cannot be renewed (no refresh
    token, or the EHR refused it): nothing was written; the GP must launch consultcam again from the EHR."""


@dataclass(frozen=True)
class GrantAccess:
    """What a SMART App Launch granted for one capture session, opened (tokens in the clear, in memory only):
    the EHR's FHIR base URL and token endpoint, the client id the launch used, the tokens, the access
    token's expiry (aware UTC, None when the EHR did not say) and the launching user's `fhir_user`
    ("Practitioner/123" or an absolute URL of one). Never logged: repr leaves the tokens out."""

    fhir_base: str
    token_endpoint: str
    client_id: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    access_expires_at: datetime | None = None
    fhir_user: str | None = None


TokensRefreshed = Callable[[str, str | None, datetime | None], Awaitable[None]]
"""Awaited as (access_token, refresh_token, access_expires_at) when a grant's tokens were refreshed, before
they are used: the caller keeps them (sealed, in a transaction of its own)."""


class GrantConnectors(Protocol):
    """Builds the connector for a session opened by a SMART launch: it commits into the grant's EHR with
    the grant's tokens, calling `on_refresh` with new ones (`registry.connector_for_grant`)."""

    def __call__(self, grant: GrantAccess, on_refresh: TokensRefreshed) -> Connector: ...


class ConnectorUnavailable(Exception):
    """Raised by Connector.check() when the destination cannot take a commit right now."""


ProgressCallback = Callable[[int, int], Awaitable[None]]
"""Awaited as (done, total) while a connector works through a commit."""


@runtime_checkable
class Connector(Protocol):
    """A destination for commits, chosen by `CONSULTCAM_EMR_URL` (or, for a session a SMART launch opened,
    by its grant: `GrantConnectors`)."""

    name: str  # "export", "fhir", "alex", "dicomweb", "smart"

    async def commit(
        self, context: CommitContext, items: Sequence[CommitItem], progress: ProgressCallback
    ) -> list[ImageResult]:
        """Write every item or none.

        Returns one result per item, in order, all "committed"; raises CommitFailed otherwise.
        """
        ...

    async def check(self) -> None:
        """Readiness probe; raises (ConnectorUnavailable) when a commit could not succeed now."""
        ...


def all_failed(items: Sequence[CommitItem], error: str) -> list[ImageResult]:
    """One "failed" ImageResult per item, all carrying `error`: the results of a CommitFailed."""
    return [
        ImageResult(image_id=item.image_id, status=ImageCommitStatus.FAILED, error=error) for item in items
    ]


def split_server_url(
    url: str, *, schemes: tuple[str, ...], wrong_scheme: str, name: str, credentials_hint: str
) -> tuple[str, SplitResult]:
    """(scheme, parts) of a connector URL, checked: one of `schemes`, a host, and no user name or password
    (credentials come from the settings: URLs get logged). Raises ValueError with `wrong_scheme`, or
    naming `name` ("the FHIR server URL"), never quoting the URL."""
    scheme, sep, _ = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in schemes:
        raise ValueError(wrong_scheme)
    parts = urlsplit(url.strip())
    if parts.username or parts.password:
        raise ValueError(f"{name} must not carry a user name or password; {credentials_hint}")
    if not parts.hostname:
        raise ValueError(f"{name} has no host")
    return scheme, parts


#: The result of a photo that was fine but not sent because another one in the same commit was not.
HELD_BACK = "not saved because another photo in this commit has a problem"


def preparation_failed(
    items: Sequence[CommitItem],
    problems: str | dict[int, str],
    destination: str,
    what_to_do: str = "correct the photo details and commit again",
) -> CommitFailed:
    """The CommitFailed for a commit stopped before anything was sent: `problems` is one reason for the whole
    commit, or a reason per photo index (the others are held back) so the GP sees every problem at once.
    `destination` completes "could not be prepared for …" (e.g. "the patient record")."""
    if isinstance(problems, str):
        return CommitFailed(
            f"The photos could not be prepared for {destination}: {problems}. Nothing was saved.",
            all_failed(items, problems),
        )
    return CommitFailed(
        f"The photos could not be prepared for {destination}: {'; '.join(problems.values())}. "
        f"Nothing was saved; {what_to_do}.",
        [
            ImageResult(item.image_id, ImageCommitStatus.FAILED, error=problems.get(index, HELD_BACK))
            for index, item in enumerate(items)
        ],
    )
