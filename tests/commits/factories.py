"""Test objects the connector tests share: a commit context and a progress recorder."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

from consultcam.commits.connectors.base import CommitContext, PatientRef

PATIENT = PatientRef(id="pat-77", name="Aroha Ngata", nhi="ZZZ0016")
COMMITTED_AT = datetime(2025, 1, 15, 2, 30, 5, tzinfo=UTC)


def commit_context(**changes: Any) -> CommitContext:
    """A commit for Aroha Ngata (NHI ZZZ0016) by practitioner prac-9 with a fresh commit id; `changes`
    replace any field."""
    context = CommitContext(
        session_id="s-1",
        commit_id=uuid.uuid4().hex,
        encounter_id="enc-1",
        patient=PATIENT,
        practitioner_id="prac-9",
        facility_id=None,
        committed_at=COMMITTED_AT,
    )
    return dataclasses.replace(context, **changes)


class Progress:
    """Records the (done, total) calls a connector makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))
