"""The `alex` connector: Medtech ALEX, Medtech Evolution's FHIR R4 API (`CONSULTCAM_EMR_URL=alex+https://…/FHIR`).

A FhirClient configured with Medtech's policy (composed, not a FhirConnector subclass); the commit itself is
`fhir_commit.commit_one_by_one`. The Medtech-specific values (header names, NHI system, image
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
import dataclasses
import io
import ipaddress
import json
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
    ConnectorUnavailable,
    ImageResult,
    ProgressCallback,
    all_failed,
    preparation_failed,
    split_server_url,
)
from consultcam.commits.connectors.fhir import FHIR_RETRY, build_entries
from consultcam.commits.connectors.fhir_client import FhirClient, FhirFailure, RequestHeaders
from consultcam.commits.connectors.fhir_commit import commit_one_by_one, failed_before_writing
from consultcam.kit.http import RetryPolicy
from consultcam.kit.oauth2 import ClientCredentials
from consultcam.terminology import site_words
from consultcam.terminology.metadata import photo_terms

__all__ = ["ENV_NAMES", "NO_FACILITY", "AlexConnector", "fit_jpeg", "medtech", "parse_url", "site_note"]

#: The settings ALEX needs, all of them (read into `Settings.alex_*`; the registry passes them on).
ENV_NAMES = (
    "CONSULTCAM_ALEX_TOKEN_URL",
    "CONSULTCAM_ALEX_CLIENT_ID",
    "CONSULTCAM_ALEX_CLIENT_SECRET",
    "CONSULTCAM_ALEX_SCOPE",
)
NO_FACILITY = "This session has no facility; launch consultcam from Medtech so it knows the practice"

_QUALITIES = (90, 85, 80, 75, 70, 65, 60)
_SCALE_QUALITY = 80
_SCALE_STEP = 0.8
_MIN_SIDE = 64


@cache
def medtech() -> dict[str, Any]:
    """The Medtech mappings from consultcam/data/medtech.json (packaged data)."""
    text = resources.files("consultcam").joinpath("data", "medtech.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


class AlexConnector:
    """Commits into Medtech ALEX: a FhirClient (OAuth2 client credentials only) with Medtech's policy: one
    Media at a time with compensation, Medtech's headers on every request, its size limit and time zone.

    Options as for FhirConnector: `timeout`, `attempts`, `wait_initial`, `wait_max`, `max_retry_after`
    (seconds), `transport`.
    """

    name = "alex"

    def __init__(
        self,
        base_url: str,
        *,
        oauth: ClientCredentials,
        timeout: float = 30.0,
        retry: RetryPolicy = FHIR_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if oauth is None:
            raise ValueError("Medtech ALEX needs OAuth2 client credentials")
        self.client = FhirClient(
            base_url,
            oauth=oauth,
            retry=retry,
            timeout=timeout,
            transport=transport,
        )
        self.base_url = self.client.base_url
        self._data = medtech()
        self._described = False  # ALEX answered GET metadata once: it is there and signs us in

    def __repr__(self) -> str:  # never the token
        return f"AlexConnector({self.base_url!r})"

    @classmethod
    def from_url(cls, url: str, *, oauth: ClientCredentials, **options: Any) -> AlexConnector:
        """The connector for an `alex+https://` URL (see `parse_url`), signing in with `oauth` (from the
        CONSULTCAM_ALEX_* settings). Raises ValueError (never quoting the URL) when it is not usable."""
        return cls(parse_url(url), oauth=oauth, **options)

    # -- the port ---------------------------------------------------------------------------------------

    async def check(self) -> None:
        """Readiness: GET [base]/metadata answers a CapabilityStatement; ConnectorUnavailable otherwise."""
        try:
            async with self.client.session(self._headers(None)) as fhir:
                await fhir.read_capabilities()
                self._described = True
        except FhirFailure as failure:
            raise ConnectorUnavailable(f"FHIR server: {failure.words} ({failure.outcome})") from None

    async def commit(
        self, context: CommitContext, items: Sequence[CommitItem], progress: ProgressCallback
    ) -> list[ImageResult]:
        """Write every photo or none, one conditional create at a time with compensation (ALEX is never
        assumed to take transactions, whatever its CapabilityStatement says). CommitFailed before any
        request without a valid facility, or when a photo cannot be made to fit Medtech's limit."""
        facility = (context.facility_id or "").strip()
        if not facility:
            raise CommitFailed(f"{NO_FACILITY}.", all_failed(items, NO_FACILITY))
        if not facility.isprintable() or not facility.isascii():
            problem = "The session's facility id is not valid; launch consultcam from Medtech again"
            raise CommitFailed(f"{problem}.", all_failed(items, problem))
        if not items:
            raise CommitFailed("There are no photos to commit. Take or choose a photo first.", [])
        entries = await self._entries(context, items)
        async with self.client.session(self._headers(facility)) as fhir:
            if not self._described:
                try:
                    await fhir.read_capabilities()
                except FhirFailure as failure:
                    raise failed_before_writing(items, failure) from None
                self._described = True
            return await commit_one_by_one(fhir, items, entries, progress, "Media")

    # -- Medtech's policy -------------------------------------------------------------------------------

    def _headers(self, facility: str | None) -> RequestHeaders:
        """The request headers ALEX wants on every request (each retry too): the facility, when there is
        one, and a fresh correlation id. The token endpoint gets neither (FhirClient sends them only to
        the FHIR server)."""
        names = self._data["headers"]

        def headers() -> dict[str, str]:
            values = {names["correlation"]: str(uuid.uuid4())}
            if facility:
                values[names["facility"]] = facility
            return values

        return headers

    async def _entries(self, context: CommitContext, items: Sequence[CommitItem]) -> list[dict[str, Any]]:
        """The Media entries in Medtech's terms (see `_prepare`), each with the site note first."""
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
        entries = await build_entries(context, prepared)
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
            captured_at=None if item.captured_at is None else _local(item.captured_at, zone),
            created_at=_local(item.created_at, zone),
        )


def parse_url(url: str) -> str:
    """The ALEX base URL of `alex+https://host/path/FHIR` (`alex+http` only to a loopback address: tests),
    checked: no user name or password, no ?query or #fragment. Raises ValueError (never quoting the URL)."""
    scheme, parts = split_server_url(
        url,
        schemes=("alex+https", "alex+http"),
        wrong_scheme="a Medtech ALEX URL must start with alex+https://",
        name="the ALEX URL",
        credentials_hint="use the CONSULTCAM_ALEX_CLIENT_* settings",
    )
    if parts.query or parts.fragment:
        raise ValueError("the ALEX URL takes no ?options or #fragment")
    if scheme == "alex+http" and not _is_loopback(parts.hostname or ""):
        raise ValueError("alex+http:// is only for a local test server; use alex+https://")
    base = urlunsplit((scheme.removeprefix("alex+"), parts.netloc, parts.path.rstrip("/"), "", ""))
    return base


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


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    """An aware datetime in `zone`; naive ones are read as UTC (as fhir_media does)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
