"""Moved: the sweeper is `consultcam.retention.sweeper` (built from each domain's sweep step), its task
`consultcam.retention.tasks`. This module only keeps the old entry point for `consultcam.jobs` and `consultcam
sweep` (cli.py) until they call the new one; delete it then (issue 11)."""

from __future__ import annotations

from datetime import datetime

from consultcam.retention.sweeper import SweepReport
from consultcam.retention.sweeper import sweep as _sweep
from consultcam.runtime import Runtime
from consultcam.sessions.sweep import ENDED_GRACE

__all__ = ["ENDED_GRACE", "SweepReport", "sweep"]


async def sweep(rt: Runtime, now: datetime | None = None) -> SweepReport:
    """`consultcam.retention.sweeper.sweep` with the runtime's transactions."""
    return await _sweep(rt.unit_of_work, rt, now)
