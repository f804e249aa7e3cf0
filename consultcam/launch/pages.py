"""The page a launch answers with when it does not open consultcam (template `launch.html`), shared by
the Medtech launch (`consultcam.launch.endpoints`) and the SMART launch (`consultcam.launch.smart_endpoints`);
each keeps its own table of `Problem`s, worded for its EMR.

A launch URL holds a credential (a Medtech context, a SMART code or state): every answer is sent with
`HEADERS` (`Cache-Control: no-store`, `Referrer-Policy: no-referrer`; the app's middleware sends the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request
from fastapi.responses import Response

from consultcam.config import PRACTICE_TIMEZONE
from consultcam.web.pages import templates

#: Sent with every launch answer, page or redirect.
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class Problem:
    """How a launch page words one outcome: its status, `tone` (info, warn, error), icon, title, what
    happened, what to do now (`todo`, one short sentence; numbered `steps` when it takes more) and what to
    do if that does not help (`later`)."""

    status: int
    tone: str
    icon: str
    title: str
    happened: str
    todo: str
    later: str = ""
    steps: tuple[str, ...] = ()


def launch_page(
    request: Request,
    problem: Problem,
    reason: str,
    headers: Mapping[str, str] | None = None,
    *,
    brand_sub: str | None = None,
) -> Response:
    """The page for `problem` with its status, the time in the practice's zone (Pacific/Auckland, e.g.
    "3 Dec 2026, 09:41:07") and `reason` (the code IT support looks up), sent with HEADERS plus `headers`
    (e.g. Retry-After). `brand_sub`: the line under the brand (None: the template's Medtech wording)."""
    now = datetime.now(PRACTICE_TIMEZONE)
    context: dict[str, object] = {
        "problem": problem,
        "reason": reason,
        "when": f"{now.day} {now:%b %Y, %H:%M:%S}",
    }
    if brand_sub is not None:
        context["brand_sub"] = brand_sub
    return templates.TemplateResponse(
        request, "launch.html", context, status_code=problem.status, headers={**HEADERS, **(headers or {})}
    )
