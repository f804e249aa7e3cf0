"""The describe job: the taskiq task registered as DESCRIBE_TASK ("consultcam.analysis.describe").

Registration queues it by name (`consultcam.analysis.service.schedule_analysis`), so nothing imports this
module but the worker's task list; the work itself is `consultcam.analysis.service.describe_image`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskiq import TaskiqDepends, TaskiqState, async_shared_broker

from consultcam.analysis.service import DESCRIBE_TASK, describe_image
from consultcam.kit import jobs

if TYPE_CHECKING:
    from consultcam.runtime import Runtime


@async_shared_broker.task(task_name=DESCRIBE_TASK)
@jobs.retried(attempts=3, max_wait_seconds=10)
async def describe_task(
    session_id: str,
    image_id: str,
    state: TaskiqState = TaskiqDepends(),  # noqa: B008 (taskiq's DI)
) -> str:
    """Describe one image (`describe_image`, owning its transactions). Retried (jobs.retried) only for
    database or store failures; the AI call has its own retries and a failed description is a result, not
    an error."""
    runtime: Runtime = state.runtime
    return await describe_image(runtime.unit_of_work, runtime, session_id, image_id)
