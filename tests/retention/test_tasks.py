"""The sweeper as steps and as a task: one step's failure spares the others; the task runs the sweeper."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import pytest
from taskiq import TaskiqState

from consultcam.db import Transactions
from consultcam.retention import sweeper
from consultcam.retention.sweeper import SweepReport, sweep
from consultcam.retention.tasks import sweep_task
from consultcam.runtime import Runtime
from tests.conftest import start_session


async def test_a_failing_step_is_reported_and_the_later_steps_still_run(
    clinician: Any, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await start_session(clinician)
    ran: list[str] = []

    async def broken(tx: Transactions, rt: Runtime, now: datetime, report: SweepReport) -> None:
        raise RuntimeError("store unreachable")

    def spy(name: str, step: sweeper.Step) -> sweeper.Step:
        async def run(tx: Transactions, rt: Runtime, now: datetime, report: SweepReport) -> None:
            ran.append(name)
            await step(tx, rt, now, report)

        return run

    steps = [(name, broken if name == "uploads" else spy(name, step)) for name, step in sweeper.STEPS]
    monkeypatch.setattr(sweeper, "STEPS", tuple(steps))

    report = await sweep(runtime.unit_of_work, runtime)

    assert report.errors == ["uploads: RuntimeError"]
    assert ran == [
        "sessions",
        "commits",
        "orphans",
        "analyses",
        "sign-ins",
        "launches",
        "authorization requests",
    ]


async def test_the_sweep_task_runs_the_sweeper_and_returns_its_report(runtime: Any) -> None:
    assert sweep_task.task_name == "consultcam.sweep"
    state = TaskiqState()
    state.runtime = runtime
    assert await sweep_task(state) == asdict(SweepReport())
