"""The sweep task, "consultcam.sweep": queued once per SWEEP_INTERVAL_SECONDS by the periodic sweeper
(see `consultcam.kit.jobs.claim_period`), run by a worker."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from taskiq import TaskiqDepends, TaskiqState, async_shared_broker

from consultcam.kit.jobs import retried
from consultcam.retention.sweeper import sweep
from consultcam.runtime import Runtime

#: The sweep task's name (queued by `worker.run_periodic_sweeper`, or by hand with `kit.jobs.enqueue`).
SWEEP_TASK = "consultcam.sweep"


@async_shared_broker.task(task_name=SWEEP_TASK)
@retried(attempts=3, max_wait_seconds=10)
async def sweep_task(state: TaskiqState = TaskiqDepends()) -> dict[str, Any]:  # noqa: B008 (taskiq's DI)
    """Run the sweeper once with the runtime bound to the broker's state (its transactions and ports);
    returns its report as a dict (`SweepReport`'s fields)."""
    runtime: Runtime = state.runtime
    return asdict(await sweep(runtime.unit_of_work, runtime))
