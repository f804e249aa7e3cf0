"""The AI description of a photo: queued when an image is registered (`schedule_analysis`), run by the
describe job (`consultcam.analysis.tasks`, which calls `describe_image`), published as `image.analysed`.

`image.analysis` moves through (issue 6):

- `disabled`: no endpoint configured (the default; no photo leaves the practice);
- `pending`: registered, job queued;
- `running` `{startedAt}`: the job has the photo (its sending is audited: `image.sent-for-analysis`);
- `done` `{description, model, promptVersion, analysedAt}`, or `failed` `{reason, model, promptVersion,
  analysedAt}`; the sweeper also fails an analysis pending or running too long (`fail_stuck_analyses`).

The description is only ever shown next to the photo as AI-generated; nothing copies it into the record
(the connectors read `metadata`, never `analysis`): the clinician accepts or edits it into `metadata.notes`.
The job writes in short transactions around the slow call, each under the session lock, and writes
nothing once the photo is deleted or committed or its session is no longer open.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio

from consultcam import audit
from consultcam.analysis.ai import (
    RETRY_AFTER_MAX_SECONDS,
    AnalysisFailed,
    ChatCompletionsClient,
    prepare_jpeg,
)
from consultcam.analysis.prompt import PROMPT_VERSION
from consultcam.db import Transactions, UnitOfWork
from consultcam.errors import Conflict, ResourceNotFound
from consultcam.events.bus import publish_after_commit
from consultcam.images import repository as images
from consultcam.images.service import IMAGE_WORK, event_image, get_image
from consultcam.kit.status import AnalysisStatus
from consultcam.models import ClinicalImage, utcnow
from consultcam.sessions import service as sessions

if TYPE_CHECKING:
    from consultcam.config import Settings
    from consultcam.runtime import Runtime

log = logging.getLogger(__name__)

#: The describe job's task name (queued by name: `kit.jobs.enqueue`; the task is `analysis.tasks`).
DESCRIBE_TASK = "consultcam.analysis.describe"
#: Queues a job by task name with JSON arguments: `kit.jobs.enqueue` bound to the runtime's broker (passed
#: in, so this service imports no job framework: taskiq loads Starlette).
Enqueue = Callable[..., Awaitable[None]]
#: States in which the job may (still) work on an image: `running` again when a job lost with a killed
#: worker is delivered a second time.
_WORKABLE = (AnalysisStatus.PENDING, AnalysisStatus.RUNNING)

#: The sweeper never gives up on an analysis sooner than this (see `stuck_after`).
STUCK_AFTER_MIN = timedelta(minutes=15)
STUCK_REASON = (
    "The description did not finish: consultcam may have been restarted while it ran, or the AI service "
    "stopped answering. The photo itself is not affected."
)


def schedule_analysis(uow: UnitOfWork, settings: Settings, enqueue: Enqueue, image: ClinicalImage) -> None:
    """At registration: set `image.analysis` to `disabled` (no CONSULTCAM_AI_BASE_URL) or `pending`, and
    in the latter case queue the describe job (`enqueue(DESCRIBE_TASK, session_id, image_id)`) once `uow`
    commits (never for a registration rolled back)."""
    if not settings.ai_enabled:
        image.analysis = {"status": AnalysisStatus.DISABLED}
        return
    image.analysis = {"status": AnalysisStatus.PENDING}
    uow.after_commit(functools.partial(enqueue, DESCRIBE_TASK, image.session_id, image.id))


async def describe_image(tx: Transactions, rt: Runtime, session_id: str, image_id: str) -> str:
    """The describe job's work, in transactions of its own (`tx`): send the image's stored JPEG
    (downscaled, ai.prepare_jpeg) to the configured endpoint and store the outcome in `analysis`,
    publishing `image.analysed` with the image.

    Returns "done", "failed", or "skipped" when there was nothing (more) to do: AI off, the image deleted or
    committed, its session closed, or its analysis no longer pending/running. Raises only for database or
    store failures (the job is then retried).
    """
    if not rt.settings.ai_enabled:
        return "skipped"
    async with tx() as uow:
        image = await _writable_image(uow, rt, session_id, image_id)
        if image is None or (image.analysis or {}).get("status") not in _WORKABLE:
            return "skipped"
        image.analysis = {"status": AnalysisStatus.RUNNING, "startedAt": _iso(utcnow())}
        object_key = image.object_key
    assert object_key
    try:
        data = await rt.store.get(object_key)
    except KeyError:
        return "skipped"  # deleted since: the photo or its session is gone
    analysis = await _describe(tx, rt, session_id, image_id, data)
    analysis.setdefault("model", rt.settings.ai_model)
    analysis.setdefault("promptVersion", PROMPT_VERSION)
    analysis["analysedAt"] = _iso(utcnow())
    async with tx() as uow:
        image = await _writable_image(uow, rt, session_id, image_id)
        if image is None or (image.analysis or {}).get("status") != AnalysisStatus.RUNNING:
            log.info("AI description of image %s dropped: the photo or its session has moved on", image_id)
            return "skipped"
        image.analysis = analysis
        publish_after_commit(uow, rt.bus, session_id, "image.analysed", {"image": event_image(image, rt)})
    return str(analysis["status"])


async def _describe(
    tx: Transactions, rt: Runtime, session_id: str, image_id: str, data: bytes
) -> dict[str, Any]:
    """The outcome for `analysis` (without model, prompt version and time): `done` with the description, or
    `failed` with the reason. The sending is audited first, in its own transaction, so a photo never leaves
    without a record of it, even when the process dies during the request. Raises only for database
    failures (of that audit row)."""
    try:
        jpeg = await anyio.to_thread.run_sync(prepare_jpeg, data, limiter=IMAGE_WORK)
    except Exception as exc:
        log.exception("AI description of image %s: the photo could not be prepared", image_id)
        return {
            "status": AnalysisStatus.FAILED,
            "reason": f"The photo could not be described ({type(exc).__name__}).",
        }
    client = ChatCompletionsClient.from_settings(rt.settings, limiter=_limiter(rt))
    async with tx() as uow:
        audit.record(
            uow.session,
            None,
            "image.sent-for-analysis",
            session_id=session_id,
            image_id=image_id,
            system="ai-description",
            model=client.model,
            endpoint_host=endpoint_host(rt.settings.ai_base_url),
            prompt_version=PROMPT_VERSION,
            size_bytes=len(jpeg),
        )
    try:
        described = await client.describe(jpeg)
    except AnalysisFailed as failed:
        return {"status": AnalysisStatus.FAILED, "reason": failed.reason}
    except Exception as exc:
        log.exception("AI description of image %s failed unexpectedly", image_id)
        return {
            "status": AnalysisStatus.FAILED,
            "reason": f"The photo could not be described ({type(exc).__name__}).",
        }
    return {
        "status": AnalysisStatus.DONE,
        "description": described.text,
        "model": described.model,
        "promptVersion": described.prompt_version,
    }


def endpoint_host(base_url: str) -> str:
    """The host (and port, when given) of an AI endpoint URL, for the audit trail: never the path, a query
    or credentials put in the URL. "https://user:pw@ai.example:8443/v1" → "ai.example:8443"."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


async def _writable_image(
    uow: UnitOfWork, rt: Runtime, session_id: str, image_id: str
) -> ClinicalImage | None:
    """The image, session and image rows locked (session first, as everywhere), if the job may still write
    to it: it is `ready` (not deleted, not committed) and its session is open and not expired."""
    try:
        session = await sessions.lock_session(uow, session_id)
        image = await get_image(uow, session_id, image_id, for_update=True)
        sessions.require_open(session, rt.settings)
    except (ResourceNotFound, Conflict):
        return None
    return image


def _limiter(rt: Runtime) -> anyio.CapacityLimiter:
    """The process's AI_CONCURRENCY limiter, kept in the runtime's broker state (one runtime per process)."""
    state = rt.broker.state
    limiter = state.get("ai_limiter")
    if limiter is None:
        limiter = state["ai_limiter"] = anyio.CapacityLimiter(rt.settings.ai_concurrency)
    return limiter


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def stuck_after(settings: Settings) -> timedelta:
    """How long an analysis may stay `pending` (since registration) or `running` (since `startedAt`) before
    the sweeper marks it failed: the longest a job can take (every try timing out, each wait between tries
    the longest Retry-After honoured) plus a minute for the queue, and never less than STUCK_AFTER_MIN."""
    retries = settings.ai_max_retries
    longest = settings.ai_timeout_seconds * (retries + 1) + retries * RETRY_AFTER_MAX_SECONDS + 60
    return max(STUCK_AFTER_MIN, timedelta(seconds=longest))


async def fail_stuck_analyses(tx: Transactions, rt: Runtime, now: datetime) -> int:
    """The sweeper's analysis step, each image in a transaction of its own (`tx`): mark `failed` (with
    STUCK_REASON) every analysis of a photo still in the session that has been `pending` or `running`
    longer than `stuck_after`, publishing `image.analysed` for each, so a job lost with a killed process
    (the embedded queue lives in memory) does not say "Describing…" for ever. A job that does finish later
    finds the analysis no longer running and drops its result. Works whether or not AI is still
    configured. Returns how many were marked."""
    bound = stuck_after(rt.settings)
    async with tx(writes=False) as uow:
        candidates = await images.analyses_in_progress(uow, now - bound)
    marked = 0
    for session_id, image_id in candidates:
        async with tx() as uow:
            image = await _writable_image(uow, rt, session_id, image_id)
            analysis = (image.analysis or {}) if image is not None else {}
            if image is None or not _stuck(analysis, image.registered_at, now - bound):
                continue
            failed: dict[str, Any] = {"status": AnalysisStatus.FAILED, "reason": STUCK_REASON}
            if model := analysis.get("model") or rt.settings.ai_model:
                failed["model"] = model
            image.analysis = {**failed, "promptVersion": PROMPT_VERSION, "analysedAt": _iso(now)}
            publish_after_commit(uow, rt.bus, session_id, "image.analysed", {"image": event_image(image, rt)})
            marked += 1
    if marked:
        log.warning("sweeper: %d AI descriptions did not finish and were marked failed", marked)
    return marked


def _stuck(analysis: dict[str, Any], registered_at: datetime | None, before: datetime) -> bool:
    """Whether an analysis pending since registration, or running since its `startedAt`, began before
    `before`. A running analysis with no readable `startedAt` counts from registration."""
    status = analysis.get("status")
    if status not in _WORKABLE:
        return False
    since = registered_at
    if status == AnalysisStatus.RUNNING:
        with contextlib.suppress(KeyError, ValueError):
            since = datetime.fromisoformat(str(analysis["startedAt"]))
    return since is not None and since < before
