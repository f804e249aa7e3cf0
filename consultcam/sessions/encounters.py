"""Encounter ids a launch makes up when the EMR gives none.

Medtech ALEX launches carry no encounter, nor does a SMART standalone launch without one, so the session's
encounter id is a stable key per patient, clinician and Pacific/Auckland day: "mt-YYYYMMDD-<20 hex>"
(`consultcam.launch.medtech.encounter_key`) or "sm-YYYYMMDD-<20 hex>" (`consultcam.launch.smart_accept`).
Such a key groups the day's photos (a DICOM study, an export folder) but names no Encounter in the record,
so a FHIR write must not reference it (`CommitContext.encounter_in_record`).
"""

from __future__ import annotations

import re

__all__ = ["LAUNCH_KEY", "names_a_record_encounter"]

#: The shape of a made-up encounter key: a prefix per launch, the day, 20 lower-case hex digits.
LAUNCH_KEY = re.compile(r"(?:mt|sm)-\d{8}-[0-9a-f]{20}")


def names_a_record_encounter(encounter_id: str) -> bool:
    """Whether `encounter_id` came from the EMR (an Encounter it has), not a launch's made-up key."""
    return LAUNCH_KEY.fullmatch(encounter_id) is None
