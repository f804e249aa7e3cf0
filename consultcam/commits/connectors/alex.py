"""The `alex` connector: Medtech ALEX, Medtech Evolution's FHIR R4 API (`CONSULTCAM_EMR_URL=alex+https://…/FHIR`).

A FhirConnector with Medtech's rules on top. The Medtech-specific values (header names, NHI system, image
limit, time zone) are data, read from `consultcam/data/medtech.json`; body-site and laterality codes and
words come from `consultcam/data/body-sites.json` through `consultcam.terminology`, never from a client.

* Authentication: OAuth2 client credentials only, from CONSULTCAM_ALEX_TOKEN_URL, CONSULTCAM_ALEX_CLIENT_ID,
  CONSULTCAM_ALEX_CLIENT_SECRET and CONSULTCAM_ALEX_SCOPE (all required).
* Every request to ALEX carries `mt-facilityid` (the session's facility) and a fresh `mt-correlationid`
  (uuid4); the token request goes to the identity provider and carries neither. A commit without a
  facility fails before any request.
* No transactions are assumed, whatever the CapabilityStatement says: one conditional create per photo,
  and compensation (deleting what this commit created) when one fails for good.
* Media.identifier is the image id (as for every FHIR connector); the patient's NHI uses the NHI system.
* createdDateTime (and the attachment's creation) carry the Pacific/Auckland offset.
* Images over the limit are re-encoded to fit: JPEG quality stepped down, then the image scaled down
  (never up); width, height, size and hash describe the bytes actually sent.
* ALEX's inbox ignores Media.bodySite, so the label, body site words and laterality also go into the
  first note, e.g. "Lesion A — Upper arm structure (SNOMED CT 40983000), laterality: left (7771000)".
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import io
import ipaddress
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlunsplit
from zoneinfo import ZoneInfo

import httpx
from PIL import Image, ImageOps

from consultcam.commits.connectors.base import (
    CommitContext,
    CommitFailed,
    CommitItem,
    ImageResult,
    ProgressCallback,
    all_failed,
    preparation_failed,
    split_server_url,
)
from consultcam.commits.connectors.fhir import FhirConnector, OAuth2ClientCredentials
from consultcam.terminology import site_words
from consultcam.terminology.metadata import photo_terms

__all__ = ["ENV_NAMES", "NO_FACILITY", "AlexConnector", "fit_jpeg", "medtech", "site_note"]

ENV_NAMES = (
    "CONSULTCAM_ALEX_TOKEN_URL",
    "CONSULTCAM_ALEX_CLIENT_ID",
    "CONSULTCAM_ALEX_CLIENT_SECRET",
    "CONSULTCAM_ALEX_SCOPE",
)
NO_FACILITY = "This session has no facility; launch consultcam from Medtech so it knows the practice"

_facility: contextvars.ContextVar[str | None] = contextvars.ContextVar("alex_facility", default=None)
_QUALITIES = (90, 85, 80, 75, 70, 65, 60)
_SCALE_QUALITY = 80
_SCALE_STEP = 0.8
_MIN_SIDE = 64


@cache
def medtech() -> dict[str, Any]:
    """The Medtech mappings from consultcam/data/medtech.json (packaged data)."""
    text = resources.files("consultcam").joinpath("data", "medtech.json").read_text(encoding="utf-8")
    return json.loads(text)


class AlexConnector(FhirConnector):
    """Commits into Medtech ALEX: one Media at a time with compensation, Medtech headers and limits."""

    name = "alex"

    def __init__(self, base_url: str, *, oauth: OAuth2ClientCredentials, **options: Any) -> None:
        if oauth is None:
            raise ValueError("Medtech ALEX needs OAuth2 client credentials")
        options.pop("resource", None)
        options.pop("bearer_token", None)
        super().__init__(base_url, resource="Media", oauth=oauth, **options)
        self._token_url = httpx.URL(oauth.token_url)
        self._data = medtech()

    def __repr__(self) -> str:  # never the token
        return f"AlexConnector({self.base_url!r})"

    @classmethod
    def from_url(cls, url: str, *, env: Mapping[str, str] | None = None, **options: Any) -> AlexConnector:
        """The connector for `alex+https://host/path/FHIR` (`alex+http` only to a loopback address: tests).

        Credentials come from CONSULTCAM_ALEX_TOKEN_URL, _CLIENT_ID, _CLIENT_SECRET and _SCOPE, all required.
        Raises ValueError (never quoting the URL) when the URL or a setting is not usable.
        """
        env = os.environ if env is None else env
        scheme, parts = split_server_url(
            url,
            schemes=("alex+https", "alex+http"),
            wrong_scheme="a Medtech ALEX URL must start with alex+https://",
            name="the ALEX URL",
            credentials_hint="use the CONSULTCAM_ALEX_CLIENT_* settings",
        )
        if parts.query or parts.fragment:
            raise ValueError("the ALEX URL takes no ?options or #fragment")
        if scheme == "alex+http" and not _is_loopback(parts.hostname):
            raise ValueError("alex+http:// is only for a local test server; use alex+https://")
        values = {name: env.get(name, "").strip() for name in ENV_NAMES}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise ValueError(f"Medtech ALEX needs {', '.join(missing)} to be set")
        oauth = OAuth2ClientCredentials(
            token_url=values["CONSULTCAM_ALEX_TOKEN_URL"],
            client_id=values["CONSULTCAM_ALEX_CLIENT_ID"],
            client_secret=values["CONSULTCAM_ALEX_CLIENT_SECRET"],
            scope=values["CONSULTCAM_ALEX_SCOPE"],
        )
        base = urlunsplit((scheme.removeprefix("alex+"), parts.netloc, parts.path.rstrip("/"), "", ""))
        return cls(base, oauth=oauth, **options)

    # -- the port ---------------------------------------------------------------------------------------

    async def commit(
        self, context: CommitContext, items: Sequence[CommitItem], progress: ProgressCallback
    ) -> list[ImageResult]:
        """FhirConnector.commit, one photo at a time; CommitFailed before any request without a facility."""
        facility = (context.facility_id or "").strip()
        if not facility:
            raise CommitFailed(f"{NO_FACILITY}.", all_failed(items, NO_FACILITY))
        if not facility.isprintable() or not facility.isascii():
            problem = "The session's facility id is not valid; launch consultcam from Medtech again"
            raise CommitFailed(f"{problem}.", all_failed(items, problem))
        token = _facility.set(facility)
        try:
            return await super().commit(context, items, progress)
        finally:
            _facility.reset(token)

    # -- FhirConnector hooks ----------------------------------------------------------------------------

    async def _read_capabilities(self, client: httpx.AsyncClient) -> bool:
        """Check that ALEX describes itself, but never assume transactions."""
        await super()._read_capabilities(client)
        return False

    def _client(self) -> httpx.AsyncClient:
        client = super()._client()
        client.event_hooks["request"].append(self._medtech_headers)
        return client

    async def _medtech_headers(self, request: httpx.Request) -> None:
        """Every HTTP request to ALEX (each retry too) gets the facility and a fresh correlation id."""
        if _endpoint(request.url) == _endpoint(self._token_url):
            return
        headers = self._data["headers"]
        facility = _facility.get()
        if facility:
            request.headers[headers["facility"]] = facility
        request.headers[headers["correlation"]] = str(uuid.uuid4())

    async def _entries(self, context: CommitContext, items: Sequence[CommitItem]) -> list[dict[str, Any]]:
        prepared: list[CommitItem] = []
        errors: dict[int, str] = {}
        for index, item in enumerate(items):
            try:
                prepared.append(await asyncio.to_thread(self._prepare, item))
            except ValueError as exc:
                errors[index] = str(exc)
                prepared.append(item)
        if errors:
            raise preparation_failed(items, errors, "Medtech", "retake the photo or commit again")
        entries = await super()._entries(context, prepared)
        for item, entry in zip(prepared, entries, strict=True):
            _add_site_note(entry["resource"], item.metadata or {})
        return entries

    def _prepare(self, item: CommitItem) -> CommitItem:
        """The item in Medtech's terms: local times in Pacific/Auckland, a JPEG under the size limit."""
        zone = ZoneInfo(self._data["time_zone"])
        jpeg, width, height = item.jpeg, item.width, item.height
        limit = int(self._data["max_image_bytes"])
        if isinstance(jpeg, bytes | bytearray) and len(jpeg) >= limit:
            jpeg, width, height = fit_jpeg(bytes(jpeg), limit)
        return dataclasses.replace(
            item,
            jpeg=jpeg,
            width=width,
            height=height,
            captured_at=_local(item.captured_at, zone),
            created_at=_local(item.created_at, zone),
        )


# -- pieces -----------------------------------------------------------------------------------------------


def fit_jpeg(jpeg: bytes, limit: int) -> tuple[bytes, int, int]:
    """Re-encode a JPEG to fewer than `limit` bytes: quality down first, then smaller (never larger).

    Returns (bytes, width, height) of a baseline JPEG; the EXIF orientation is applied to the pixels, the
    ICC profile kept. Raises ValueError when the bytes do not decode or cannot be made to fit.
    """
    try:
        with Image.open(io.BytesIO(jpeg)) as opened:
            if opened.format != "JPEG":
                raise ValueError("the image is not a JPEG")
            icc = opened.info.get("icc_profile")
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"the image could not be read ({type(exc).__name__})") from None
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")

    def encode(picture: Image.Image, quality: int) -> bytes:
        out = io.BytesIO()
        options: dict[str, Any] = {"format": "JPEG", "quality": quality, "optimize": True}
        if icc:
            options["icc_profile"] = icc
        picture.save(out, **options)
        return out.getvalue()

    for quality in _QUALITIES:
        data = encode(image, quality)
        if len(data) < limit:
            return data, image.width, image.height
    scale = 1.0
    while True:
        scale *= _SCALE_STEP
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if min(size) < _MIN_SIDE:
            raise ValueError(f"the image could not be made smaller than {limit} bytes")
        smaller = image.resize(size, Image.Resampling.LANCZOS)
        data = encode(smaller, _SCALE_QUALITY)
        if len(data) < limit:
            return data, smaller.width, smaller.height


def site_note(metadata: Mapping[str, Any]) -> str | None:
    """Label, body site and laterality in words, for an inbox that ignores Media.bodySite.

    "Lesion A — Upper arm structure (SNOMED CT 40983000), laterality: left (7771000)"; None when there is
    nothing to say. The site's words and the side's code and word are the data file's, looked up from the
    stored code and value (`terminology.metadata.photo_terms`); raises ValueError for a code not listed.
    """
    terms = photo_terms(metadata)
    parts: list[str] = []
    label = metadata.get("label")
    if isinstance(label, str) and label.strip():
        parts.append(" ".join(label.split()))
    where = ""
    if terms.site is not None:
        where = f"{site_words(terms.site.display)} (SNOMED CT {terms.site.code})"
    if terms.side is not None:
        laterality = f"laterality: {terms.side.display.lower()} ({terms.side.code})"
        where = f"{where}, {laterality}" if where else laterality[:1].upper() + laterality[1:]
    if where:
        parts.append(where)
    return " — ".join(parts) or None


def _add_site_note(media: dict[str, Any], metadata: Mapping[str, Any]) -> None:
    """Put site_note() first in Media.note, in place of the label-only note it includes."""
    text = site_note(metadata)
    if not text:
        return
    notes = list(media.get("note") or [])
    label = metadata.get("label")
    if notes and isinstance(label, str) and notes[0].get("text") == label.strip():
        notes = notes[1:]
    media["note"] = [{"text": text}, *notes]


def _local(moment: datetime | None, zone: ZoneInfo) -> datetime | None:
    """An aware datetime in `zone`; naive ones are read as UTC (as fhir_media does)."""
    if not isinstance(moment, datetime):
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone)


def _endpoint(url: httpx.URL) -> tuple[str, str, int | None, str]:
    return (url.scheme, url.host, url.port, url.path)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
