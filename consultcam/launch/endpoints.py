"""`GET /launch/medtech?context=…&signature=…`: Medtech Evolution opens consultcam for the patient on the GP's
screen (ALEX Apps Configuration; the rules are `consultcam.launch.medtech`).

Accepted: the GP's browser is signed in (bound to that provider and facility) and sent on with a 303 to
`/sessions/{id}`: nothing identifying in that URL. Otherwise a page saying in plain words what happened and
what to do, with the status a client can act on:

| reason | status |
|---|---|
| no patient open in Medtech | 200 (the page asks to open one and click again) |
| context or signature missing or malformed | 400 |
| bad signature, expired or not yet valid, already used | 403 |
| this server has no Medtech ALEX (`alex+https` EMR URL) | 404 |
| too many launches from this client (CONSULTCAM_RATE_LIMIT_LOGIN's rate) | 429 with Retry-After |
| ALEX unreachable, failing, refusing our credentials, or without that patient | 502 |

The URL holds the launch's credential: every answer is `Cache-Control: no-store` and `Referrer-Policy:
no-referrer` (the app's headers; set here as well), and the context is never logged nor audited.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from consultcam.deps import RuntimeDep
from consultcam.launch import medtech
from consultcam.launch.medtech import LaunchRefused, Reason
from consultcam.launch.pages import HEADERS, Problem, launch_page
from consultcam.ratelimit import TooManyRequests, client_address, limiter
from consultcam.web.pages import begin_signin

router = APIRouter(include_in_schema=False)

#: What a context or signature may look like: 1 to 4096 visible ASCII characters (Medtech's are base64
#: or hex; anything longer or with spaces did not come from Medtech).
_PARAMETER = re.compile(r"[\x21-\x7e]{1,4096}")

_AGAIN = "Go back to Medtech and click the consultcam icon again."
_WAIT = "Wait a minute, then click the consultcam icon in Medtech again."
_IT = "If it happens again, ask your practice's IT support to check consultcam's Medtech set-up."


PROBLEMS: dict[Reason | str, Problem] = {
    "no-patient": Problem(
        200, "info", "i-user-x", "No patient is open in Medtech",
        happened="consultcam takes photos for the patient open in Medtech, and no patient was open when you "
        "clicked the icon.",
        todo="Open a patient in Medtech, then click the consultcam icon again.",
        steps=(
            "In Medtech Evolution, open the patient you are seeing.",
            "Click the consultcam icon on the Medtech toolbar.",
            "Scan the QR code consultcam shows with the clinic phone.",
        ),
    ),
    "bad-request": Problem(
        400, "error", "i-alert", "This is not a complete Medtech link",
        happened="The address that opened consultcam is missing the launch details Medtech adds, or they "
        "were cut short (for example when the address was copied by hand). Nothing was opened.",
        todo=_AGAIN, later=_IT,
    ),
    "bad-signature": Problem(
        403, "error", "i-lock", "Medtech could not confirm this link",
        happened="Medtech ALEX did not recognise the launch details in this address, so consultcam cannot "
        "tell which practice, GP or patient it is for. Nothing was opened.",
        todo=_AGAIN, later=_IT,
    ),
    "expired": Problem(
        403, "warn", "i-clock", "This consultcam link has expired",
        happened="A link from the consultcam icon works for 5 minutes, and this one is older: it may have "
        "been opened from the browser's history or a bookmark.",
        todo=_AGAIN, later="Each click opens a fresh link.",
    ),
    "future": Problem(
        403, "warn", "i-clock", "A clock looks wrong",
        happened="The link from Medtech is dated more than 2 minutes ahead of consultcam's clock, so it "
        "cannot be checked: this computer's clock or the server's is wrong.",
        todo=_AGAIN, later="If it happens again, ask your practice's IT support to check the clocks.",
    ),
    "replayed": Problem(
        403, "warn", "i-refresh", "This link has already been used",
        happened="Each click on the consultcam icon opens consultcam once. This link was used before, "
        "perhaps by reloading the page or going back to it.",
        todo=_AGAIN, later="The patient's open session, with any photos taken so far, opens again.",
    ),
    "not-configured": Problem(
        404, "error", "i-info", "consultcam is not connected to Medtech here",
        happened="This consultcam server is not set up to be opened from Medtech Evolution.",
        todo="Ask your practice's IT support to connect consultcam to Medtech ALEX.",
        later="They will find the steps in consultcam's Medtech set-up guide.",
    ),
    "rate-limited": Problem(
        429, "warn", "i-clock", "Too many launches from this computer",
        happened="consultcam was opened from this computer many times in the last minute.",
        todo="Wait a moment, then click the consultcam icon in Medtech again.",
    ),
    "alex-unreachable": Problem(
        502, "error", "i-wifi-off", "Medtech ALEX is not answering",
        happened="consultcam asks Medtech ALEX who the patient is before it opens, and ALEX did not answer. "
        "Nothing was opened.",
        todo=_WAIT, later=_IT,
    ),
    "alex-credentials": Problem(
        502, "error", "i-lock", "Medtech ALEX refused consultcam",
        happened="Medtech ALEX did not accept consultcam's credentials, so consultcam cannot check the "
        "patient or file photos. Nothing was opened.",
        todo="Ask your practice's IT support to check consultcam's Medtech ALEX client settings.",
    ),
    "alex-error": Problem(
        502, "error", "i-alert", "Medtech ALEX gave an answer consultcam cannot use",
        happened="Medtech ALEX answered, but not with details consultcam can rely on (it may be busy or "
        "failing). Nothing was opened.",
        todo=_WAIT, later=_IT,
    ),
    "patient-not-found": Problem(
        502, "error", "i-user-x", "Medtech ALEX cannot find this patient",
        happened="Medtech ALEX has no record of the patient open in Medtech at this practice, so consultcam "
        "cannot open a session for them. Nothing was opened.",
        todo="Check that the right patient is open in Medtech, then click the consultcam icon again.",
        later=_IT,
    ),
}  # fmt: skip


def _page(request: Request, reason: str, headers: dict[str, str] | None = None) -> Response:
    """The launch page for `reason`, with its status, a time and the reason code for IT support."""
    return launch_page(request, PROBLEMS[reason], reason, headers)


def _parameter(request: Request, name: str) -> str | None:
    """The one value of query parameter `name`, or None when absent, repeated or malformed. A space is read
    back as "+": a base64 context pasted into the URL without encoding loses its "+" to form decoding."""
    values = request.query_params.getlist(name)
    if len(values) != 1:
        return None
    value = values[0].replace(" ", "+")
    return value if _PARAMETER.fullmatch(value) else None


@router.get("/launch/medtech", response_class=HTMLResponse)
async def medtech_launch(request: Request, rt: RuntimeDep) -> Response:
    """Medtech ALEX Apps launch: decode the context through ALEX, sign the GP in, open or resume the
    patient's capture session, 303 to /sessions/{id}; or a page saying what went wrong."""
    client = client_address(request)
    try:
        await limiter(request).hit("launch", client)
    except TooManyRequests as exc:
        return _page(request, "rate-limited", exc.headers)
    context, signature = _parameter(request, "context"), _parameter(request, "signature")
    try:
        if rt.medtech_launch is None:
            raise LaunchRefused("not-configured")
        if context is None or signature is None:
            raise LaunchRefused("bad-request")
        checked = await medtech.check(rt, context, signature)
        async with rt.unit_of_work() as uow:
            accepted = await medtech.accept(uow, rt, checked)
            response = await begin_signin(
                request, rt, accepted.clinician, "medtech", f"/sessions/{accepted.session.id}", uow=uow
            )
    except LaunchRefused as refused:
        await medtech.record_refusal(rt.unit_of_work, refused, client)
        return _page(request, refused.reason)
    response.headers.update(HEADERS)
    return response
