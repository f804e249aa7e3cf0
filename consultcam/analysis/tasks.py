"""The AI description job: queued when an image is registered, it describes the photo and publishes
`image.analysed`.

`image.analysis` moves through (issue 6):

- `disabled`: no endpoint configured (the default; no photo leaves the practice);
- `pending`: registered, job queued;
- `running`: the job has the photo;
- `done` `{description, model, promptVersion, analysedAt}`, or `failed` `{reason, model, promptVersion,
  analysedAt}`.

The description is only ever shown next to the photo as AI-generated; nothing copies it into the record
(the connectors read `metadata`, never `analysis`): the clinician accepts or edits it into `metadata.notes`.
The job writes in two short transactions around the slow call, each under the session lock, and writes
nothing once the photo is deleted or committed or its session is no longer open.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
from taskiq import TaskiqDepends, TaskiqState, async_shared_broker

from consultcam import jobs
from consultcam.analysis.ai import AnalysisFailed, ChatCompletionsClient, prepare_jpeg
from consultcam.analysis.prompt import PROMPT_VERSION
from consultcam.errors import Conflict, ResourceNotFound
from consultcam.events.bus import publish_after_commit
from consultcam.images.service import IMAGE_WORK, event_image, get_image
from consultcam.models import ClinicalImage, utcnow
from consultcam.sessions import service as sessions

if TYPE_CHECKING:
    from consultcam.runtime import Runtime, UnitOfWork

log = logging.getLogger(__name__)

#: States in which the job may (still) work on an image: `running` again when a job lost with a killed
#: worker is delivered a second time.
_WORKABLE = ("pending", "running")


def schedule_analysis(uow: UnitOfWork, rt: Runtime, image: ClinicalImage) -> None:
    """At registration: set `image.analysis` to `disabled` (no CONSULTCAM_AI_BASE_URL) or `pending`, and
    in the latter case queue `describe_task` once `uow` commits (never for a registration rolled back)."""
    if not rt.settings.ai_enabled:
        image.analysis = {"status": "disabled"}
        return
    image.analysis = {"status": "pending"}
    session_id, image_id = image.session_id, image.id

    async def _queue() -> None:
        await jobs.enqueue(rt, describe_task, session_id, image_id)

    uow.after_commit(_queue)


@async_shared_broker.task(task_name="consultcam.analysis.describe")
@jobs.retried(attempts=3, max_wait_seconds=10)
async def describe_task(
    session_id: str,
    image_id: str,
    state: TaskiqState = TaskiqDepends(),  # noqa: B008 (taskiq's DI)
) -> str:
    """Describe one image (see `describe_image`). Retried (jobs.retried) only for database or store
    failures; the AI call has its own retries and a failed description is a result, not an error."""
    runtime: Runtime = state.runtime
    return await describe_image(runtime, session_id, image_id)


async def describe_image(rt: Runtime, session_id: str, image_id: str) -> str:
    """Send the image's stored JPEG (downscaled, ai.prepare_jpeg) to the configured endpoint and store the
    outcome in `analysis`, publishing `image.analysed` with the image.

    Returns "done", "failed", or "skipped" when there was nothing (more) to do: AI off, the image deleted or
    committed, its session closed, or its analysis no longer pending/running. Raises only for database or
    store failures (the job is then retried).
    """
    if not rt.settings.ai_enabled:
        return "skipped"
    async with rt.unit_of_work() as uow:
        image = await _writable_image(uow, rt, session_id, image_id)
        if image is None or (image.analysis or {}).get("status") not in _WORKABLE:
            return "skipped"
        image.analysis = {"status": "running"}
        object_key = image.object_key
    assert object_key
    try:
        data = await rt.store.get(object_key)
    except KeyError:
        return "skipped"  # deleted since: the photo or its session is gone
    try:
        jpeg = await anyio.to_thread.run_sync(prepare_jpeg, data, limiter=IMAGE_WORK)
        client = ChatCompletionsClient.from_settings(rt.settings, limiter=_limiter(rt))
        described = await client.describe(jpeg)
        analysis: dict[str, Any] = {
            "status": "done",
            "description": described.text,
            "model": described.model,
            "promptVersion": described.prompt_version,
        }
    except AnalysisFailed as failed:
        analysis = {"status": "failed", "reason": failed.reason}
    except Exception as exc:
        log.exception("AI description of image %s failed unexpectedly", image_id)
        analysis = {"status": "failed", "reason": f"The photo could not be described ({type(exc).__name__})."}
    analysis.setdefault("model", rt.settings.ai_model)
    analysis.setdefault("promptVersion", PROMPT_VERSION)
    analysis["analysedAt"] = utcnow().isoformat().replace("+00:00", "Z")
    async with rt.unit_of_work() as uow:
        image = await _writable_image(uow, rt, session_id, image_id)
        if image is None or (image.analysis or {}).get("status") != "running":
            log.info("AI description of image %s dropped: the photo or its session has moved on", image_id)
            return "skipped"
        image.analysis = analysis
        publish_after_commit(uow, rt.bus, session_id, "image.analysed", {"image": event_image(image, rt)})
    return str(analysis["status"])


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
