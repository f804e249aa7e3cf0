"""The `dicomweb` connector: each photo as a DICOM image (VL Photographic Image, or Dermoscopic Photography
Image for a dermoscopy photo), stored with STOW-RS.

`CONSULTCAM_EMR_URL=dicomweb+http://host:port/dicom-web` (or `dicomweb+https://…`) stores into the DICOMweb
service at `http://host:port/dicom-web`; `user:password@` in the URL is sent as HTTP Basic authentication
and never logged. The datasets are built by `consultcam.commits.dicom` (one study per encounter, one series
per capture session and Modality, the JPEG encapsulated as it is, complete Part 10 File Meta Information so
the file the archive keeps is conformant).

All or nothing: the whole commit goes in one STOW-RS request. When the archive keeps some instances and
refuses others (FailedSOPSequence), the kept ones are deleted where the archive allows it (DICOMweb has no
standard delete; some archives accept DELETE on the instance URL, Orthanc does not) and CommitFailed says
plainly which remain. Because every UID is derived from the image, session and encounter, committing again
never makes a second copy: the archive overwrites or ignores an instance it already has.

dicomweb-client is synchronous (requests); it runs in a worker thread. Transient failures (5xx, timeouts,
dropped connections) are retried with the kit's back-off (`consultcam.kit.http.backoff`, full jitter); a 4xx
never is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from pydicom.dataset import Dataset
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

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
from consultcam.commits.dicom import PRACTICE_TIMEZONE, build_instance, taken_at
from consultcam.commits.fhir_media import photo_name
from consultcam.kit.http import RetryPolicy, backoff
from consultcam.kit.status import ImageCommitStatus

log = logging.getLogger(__name__)

#: STOW-RS Failure Reason (0008,1197) codes (PS3.18 Table I.2-1 / PS3.4 B.2.3) in words.
_FAILURE_REASONS = {
    0xA700: "the archive is out of storage space",
    0xA900: "the archive says the photo does not match its DICOM type",
    0xC000: "the archive could not read the photo",
    0x0110: "the archive failed while processing the photo",
    0x0122: "the archive does not accept this kind of DICOM photo (its SOP Class)",
    0x0124: "the archive refused it (not authorised)",
    0xA770: "the archive refused it because the photo is too large",
    0xC122: "the archive does not accept this kind of JPEG",
}


class StowClient(Protocol):
    """The part of dicomweb_client.DICOMwebClient the connector uses (tests substitute their own)."""

    def store_instances(self, datasets: Sequence[Dataset]) -> Dataset: ...

    def delete_instance(
        self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str
    ) -> None: ...

    def search_for_studies(self, *, limit: int | None = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class _Outcome:
    """What the archive said about one STOW-RS request."""

    stored: set[str]
    failed: dict[str, str]  # SOP Instance UID → reason in words
    status: int | None = None  # HTTP status when the request as a whole was refused


class DicomWebConnector:
    """Stores each commit as one STOW-RS request of VL Photographic and Dermoscopic Photography Images."""

    name = "dicomweb"

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        timezone: tzinfo = PRACTICE_TIMEZONE,
        client_factory: Callable[[], StowClient] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = (username, password or "") if username else None
        self.timeout = timeout
        self.attempts = attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.timezone = timezone
        self._client_factory = client_factory or self._dicomweb_client

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DicomWebConnector:
        """`dicomweb+http://[user:password@]host[:port]/path` → DICOMweb base `http://host[:port]/path`."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("dicomweb+http", "dicomweb+https"):
            raise ValueError("a DICOMweb connector URL must start with dicomweb+http:// or dicomweb+https://")
        if not parts.hostname:
            raise ValueError(
                "a DICOMweb connector URL needs a host, for example dicomweb+http://pacs/dicom-web"
            )
        if parts.query or parts.fragment:
            raise ValueError("a dicomweb+http URL takes no ?query or #fragment")
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        base = urlunsplit((scheme.removeprefix("dicomweb+"), netloc, parts.path.rstrip("/"), "", ""))
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(base, username=username, password=password, **options)

    def _dicomweb_client(self) -> StowClient:
        from dicomweb_client.api import DICOMwebClient

        session = requests.Session()
        if self._auth:
            session.auth = self._auth
        client = DICOMwebClient(url=self.base_url, session=session, timeout=self.timeout)
        client.set_http_retry_params(retry=False)  # retries are ours (tenacity), with the 4xx rule
        return client

    # -- commit ---------------------------------------------------------------------------------------

    async def commit(
        self, context: CommitContext, items: Sequence[CommitItem], progress: ProgressCallback
    ) -> list[ImageResult]:
        """Store every item in one STOW-RS request, or none.

        Returns one "committed" ImageResult per item with resource_id
        "studies/<study UID>/series/<series UID>/instances/<SOP Instance UID>" (the WADO-RS path under the
        base URL). Raises CommitFailed otherwise; progress(i, n) is awaited as each dataset is built.
        """
        if not items:
            raise CommitFailed("There are no photos to commit. Take or choose a photo first.", [])
        datasets = await self._datasets(context, items, progress)
        uids = [str(ds.SOPInstanceUID) for ds in datasets]
        try:
            outcome = await self._with_retries(lambda: self._store(datasets))
        except CommitFailed as exc:
            raise CommitFailed(exc.detail, all_failed(items, exc.detail)) from exc

        missing = [uid for uid in uids if uid not in outcome.stored]
        if not missing:
            return [
                ImageResult(image_id=item.image_id, status=ImageCommitStatus.COMMITTED, resource_id=_path(ds))
                for item, ds in zip(items, datasets, strict=True)
            ]
        await self._roll_back(context, items, datasets, outcome)
        raise AssertionError("unreachable")  # _roll_back always raises

    async def _datasets(
        self, context: CommitContext, items: Sequence[CommitItem], progress: ProgressCallback
    ) -> list[Dataset]:
        study_at = min(taken_at(item) for item in items)
        datasets: list[Dataset] = []
        errors: dict[int, str] = {}
        for index, item in enumerate(items):
            try:
                datasets.append(
                    await asyncio.to_thread(
                        build_instance,
                        context,
                        item,
                        instance_number=index + 1,
                        study_at=study_at,
                        timezone=self.timezone,
                    )
                )
            except (ValueError, TypeError) as exc:
                errors[index] = str(exc)
                continue
            if not errors:
                await progress(index + 1, len(items))
        if errors:
            raise preparation_failed(items, errors, "the imaging archive")
        return datasets

    def _store(self, datasets: Sequence[Dataset]) -> _Outcome:
        """One STOW-RS request (in a worker thread). 4xx → _Outcome with status, 5xx/network → raise."""
        client = self._client_factory()
        try:
            response = client.store_instances(datasets)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if exc.response is not None and status is not None and 400 <= status < 500:
                body = _response_dataset(exc.response)
                outcome = _outcome(body) if body is not None else _Outcome(set(), {})
                return _Outcome(outcome.stored, outcome.failed, status)
            raise
        return _outcome(response)

    async def _with_retries(self, call: Callable[[], Any]) -> Any:
        """Run `call` in a thread, retrying transient failures; CommitFailed in GP words on giving up."""
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=backoff(RetryPolicy(wait_initial=self.backoff_initial, wait_max=self.backoff_max)),
                retry=retry_if_exception(_transient),
                reraise=True,
            ):
                with attempt:
                    return await asyncio.to_thread(call)
        except requests.HTTPError as exc:  # a 5xx that did not go away
            status = exc.response.status_code if exc.response is not None else "?"
            raise CommitFailed(
                f"The imaging archive had a problem and did not confirm the photos (error {status}, after "
                f"{self.attempts} tries). Commit again later; this will not make duplicate copies.",
                [],
            ) from exc
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise CommitFailed(
                "The imaging archive could not be reached or did not answer in time (after "
                f"{self.attempts} tries). Check the network, then commit again; this will not make "
                "duplicate copies.",
                [],
            ) from exc
        except requests.RequestException as exc:
            raise CommitFailed(
                f"The photos could not be sent to the imaging archive ({type(exc).__name__}). Commit again "
                "later; this will not make duplicate copies.",
                [],
            ) from exc
        except ValueError as exc:  # an answer dicomweb-client cannot read
            raise CommitFailed(
                "The imaging archive gave an answer consultcam does not understand, so it is not known "
                "whether the photos were saved. Ask the practice's IT support to check the archive; "
                "committing again will not make duplicate copies.",
                [],
            ) from exc
        raise AssertionError("unreachable")

    async def _roll_back(
        self,
        context: CommitContext,
        items: Sequence[CommitItem],
        datasets: Sequence[Dataset],
        outcome: _Outcome,
    ) -> None:
        """Some or all were refused: delete the stored ones where possible, then raise CommitFailed."""
        by_uid = dict(zip((str(ds.SOPInstanceUID) for ds in datasets), items, strict=True))
        stored = [ds for ds in datasets if str(ds.SOPInstanceUID) in outcome.stored]
        remaining = await asyncio.to_thread(self._delete, stored) if stored else []
        whole = _request_words(outcome.status) if outcome.status and not outcome.failed else None

        results = []
        for ds, item in zip(datasets, items, strict=True):
            uid = str(ds.SOPInstanceUID)
            if uid in outcome.failed:
                error = f"refused by the imaging archive: {outcome.failed[uid]}"
            elif uid in remaining:
                error = "saved in the imaging archive, but the commit failed and it could not be removed"
            elif uid in outcome.stored:
                error = "removed again from the imaging archive because another photo was refused"
            else:
                error = whole or "the imaging archive did not confirm this photo"
            results.append(ImageResult(image_id=item.image_id, status=ImageCommitStatus.FAILED, error=error))

        if whole:
            detail = f"The imaging archive refused the photos: {whole}. Nothing was saved."
        else:
            refused = len(datasets) - len(outcome.stored)
            detail = f"The imaging archive refused {refused} of {len(datasets)} photos"
            reasons = sorted(set(outcome.failed.values()))
            detail += f" ({'; '.join(reasons)})." if reasons else "."
            if not stored:
                detail += " Nothing was saved."
            elif not remaining:
                detail += " The photos it had saved were removed again, so nothing was saved."
            else:
                names = ", ".join(photo_name(by_uid[uid]) for uid in remaining)
                detail += (
                    f" The archive does not allow consultcam to remove photos, so {len(remaining)} of them "
                    f"remain{'s' if len(remaining) == 1 else ''} in the patient's imaging record ({names}; "
                    f"SOP Instance UID{'s' if len(remaining) > 1 else ''} {', '.join(remaining)}). Fix the "
                    "problem and commit again to complete the set (this will not duplicate them), or ask "
                    "the archive's administrator to remove them."
                )
        log.warning(
            "dicomweb commit %s failed: %d stored, %d refused, %d left in the archive",
            context.commit_id,
            len(outcome.stored),
            len(outcome.failed),
            len(remaining),
        )
        raise CommitFailed(detail, results)

    def _delete(self, stored: Sequence[Dataset]) -> list[str]:
        """Try DICOMweb DELETE on each stored instance; the SOP Instance UIDs that could not be deleted."""
        client = self._client_factory()
        remaining = []
        for ds in stored:
            try:
                client.delete_instance(
                    str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
                )
            except (requests.RequestException, ValueError):
                remaining.append(str(ds.SOPInstanceUID))
        return remaining

    # -- readiness ------------------------------------------------------------------------------------

    async def check(self) -> None:
        """Readiness: a QIDO-RS search for one study answers. Raises ConnectorUnavailable otherwise."""
        try:
            await asyncio.to_thread(lambda: self._client_factory().search_for_studies(limit=1))
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise ConnectorUnavailable(f"the DICOMweb archive answered a search with HTTP {status}") from exc
        except requests.RequestException as exc:
            raise ConnectorUnavailable(
                f"the DICOMweb archive cannot be reached ({type(exc).__name__})"
            ) from exc
        except ValueError as exc:
            raise ConnectorUnavailable("the DICOMweb archive's answer to a search is not DICOM JSON") from exc


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.HTTPError):
        return exc.response is not None and exc.response.status_code >= 500
    return isinstance(exc, (requests.Timeout, requests.ConnectionError))


def _response_dataset(response: requests.Response) -> Dataset | None:
    """The DICOM JSON body of a refused STOW-RS request, when it has one."""
    try:
        return Dataset.from_json(response.json())
    except ValueError:
        return None


def _outcome(response: Dataset) -> _Outcome:
    stored = {
        str(item.ReferencedSOPInstanceUID)
        for item in response.get("ReferencedSOPSequence", [])
        if "ReferencedSOPInstanceUID" in item
    }
    failed = {
        str(item.ReferencedSOPInstanceUID): _reason_words(item.get("FailureReason"))
        for item in response.get("FailedSOPSequence", [])
        if "ReferencedSOPInstanceUID" in item
    }
    return _Outcome(stored - failed.keys(), failed)


def _reason_words(code: Any) -> str:
    try:
        value = int(code)
    except (TypeError, ValueError):
        return "no reason given"
    words = _FAILURE_REASONS.get(value)
    if words is None and 0xA700 <= value <= 0xA7FF:
        words = _FAILURE_REASONS[0xA700]
    if words is None and 0xA900 <= value <= 0xA9FF:
        words = _FAILURE_REASONS[0xA900]
    if words is None and 0xC000 <= value <= 0xCFFF:
        words = _FAILURE_REASONS[0xC000]
    return f"{words or 'the archive refused it'} (code {value:04X}H)"


def _request_words(status: int) -> str:
    if status in (401, 403):
        return (
            f"consultcam is not allowed to store there (HTTP {status}); ask for the DICOMweb account in "
            "CONSULTCAM_EMR_URL to be checked"
        )
    if status == 404:
        return "the archive address is wrong (HTTP 404); ask for CONSULTCAM_EMR_URL to be checked"
    if status == 413:
        return "the photos are too large for the archive (HTTP 413); commit fewer photos at a time"
    return f"HTTP {status}"


def _path(ds: Dataset) -> str:
    return f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
