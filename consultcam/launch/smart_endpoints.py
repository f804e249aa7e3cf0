"""`GET /launch?iss=…[&launch=…]` and `GET /launch/callback?code=…&state=…`: SMART App Launch 2.x from an EHR
in CONSULTCAM_SMART_ISSUERS (the rules are `consultcam.launch.smart` and
`consultcam.launch.smart_accept`).

`/launch` sends the browser (302) to the EHR's authorize endpoint; the EHR sends it back to
`{PUBLIC_URL}/launch/callback`. Accepted: the user's browser is signed in and sent on with a 303 to
`/sessions/{id}`: nothing identifying in that URL. Otherwise a page saying in plain words what happened and
what to do, with the status a client can act on:

| reason | status |
|---|---|
| iss, launch, state or code missing or malformed | 400 |
| iss not in CONSULTCAM_SMART_ISSUERS; the user declined; state unknown, used or expired; the user is not a
  Practitioner | 403 |
| this server has no SMART set-up | 404 |
| the encounter's open session is another patient's or out of this user's reach | 409 |
| too many launches from this client (CONSULTCAM_RATE_LIMIT_LOGIN's rate) | 429 with Retry-After |
| the EHR unreachable, failing, refusing the code, an invalid id_token, no patient, patient not found | 502 |

The URLs carry a code and a state: every answer is `Cache-Control: no-store` and `Referrer-Policy:
no-referrer`, and neither is logged nor audited.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from consultcam.deps import RuntimeDep
from consultcam.launch import smart, smart_accept
from consultcam.launch.pages import HEADERS, Problem, launch_page
from consultcam.launch.smart import Reason, SmartRefused
from consultcam.ratelimit import TooManyRequests, client_address, limiter
from consultcam.web.pages import begin_signin

router = APIRouter(include_in_schema=False)

_VISIBLE = re.compile(r"[\x21-\x7e]{1,4096}")
_ERROR = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]{1,128}")  # RFC 6749 §4.1.2.1 error codes

_AGAIN = "Go back to the patient record system and open consultcam from there again."
_WAIT = "Wait a minute, then open consultcam from the patient record system again."
_IT = "If it happens again, ask your practice's IT support to check consultcam's SMART set-up."
_NOTHING = " Nothing was opened."

PROBLEMS: dict[Reason | str, Problem] = {
    "bad-request": Problem(
        400, "error", "i-alert", "This is not a complete launch link",
        happened="The address that opened consultcam is missing details the patient record system adds, or "
        "they were cut short (for example when the address was copied by hand)." + _NOTHING,
        todo=_AGAIN, later=_IT,
    ),
    "unknown-issuer": Problem(
        403, "error", "i-lock", "consultcam does not know this patient record system",
        happened="consultcam opens only from the patient record systems your practice connected it to, and "
        "this link names another one." + _NOTHING,
        todo=_AGAIN, later="If this system should be connected, ask your practice's IT support to add it.",
    ),
    "denied": Problem(
        403, "warn", "i-lock", "Access was not allowed",
        happened="The patient record system did not give consultcam access (the request was declined)."
        + _NOTHING,
        todo="Open consultcam from the patient record system again and allow access when asked.",
    ),
    "bad-state": Problem(
        403, "error", "i-lock", "This sign-in could not be checked",
        happened="The answer from the patient record system does not match a sign-in consultcam started, "
        "so it was not trusted." + _NOTHING,
        todo=_AGAIN, later=_IT,
    ),
    "replayed": Problem(
        403, "warn", "i-refresh", "This sign-in has already been used",
        happened="Each launch signs in once. This one was used before, perhaps by reloading the page or "
        "going back to it.",
        todo=_AGAIN, later="The patient's open session, with any photos taken so far, opens again.",
    ),
    "expired": Problem(
        403, "warn", "i-clock", "This sign-in took too long",
        happened="A sign-in must come back from the patient record system within 10 minutes, and this one "
        "did not." + _NOTHING,
        todo=_AGAIN,
    ),
    "not-a-practitioner": Problem(
        403, "error", "i-user-x", "consultcam opens only for clinicians",
        happened="The patient record system did not sign you in as a clinician (a practitioner), so "
        "consultcam cannot tell whose photos these would be." + _NOTHING,
        todo="Sign in to the patient record system with your own clinician account, then open consultcam "
        "from there again.",
        later="If you are signed in as a clinician, ask your practice's IT support to check that the record "
        "system gives consultcam the fhirUser scope.",
    ),
    "not-configured": Problem(
        404, "error", "i-info", "consultcam is not connected to a patient record system here",
        happened="This consultcam server is not set up to be opened by SMART App Launch.",
        todo="Ask your practice's IT support to connect consultcam to your patient record system.",
        later="They will find the steps in consultcam's deployment guide.",
    ),
    "encounter-held": Problem(
        409, "warn", "i-user-x", "This consultation is open elsewhere",
        happened="The consultation already has an open consultcam session for another patient or another "
        "clinician, which your sign-in cannot take over." + _NOTHING,
        todo="Ask them to commit or cancel it, or check the patient in the record system.",
    ),
    "rate-limited": Problem(
        429, "warn", "i-clock", "Too many launches from this computer",
        happened="consultcam was opened from this computer many times in the last minute.",
        todo="Wait a moment, then open consultcam again.",
    ),
    "authorize-error": Problem(
        502, "error", "i-alert", "The patient record system refused the sign-in",
        happened="The patient record system answered consultcam's sign-in request with an error."
        + _NOTHING,
        todo=_WAIT, later=_IT,
    ),
    "ehr-unreachable": Problem(
        502, "error", "i-wifi-off", "The patient record system is not answering",
        happened="consultcam asks the patient record system who the patient is before it opens, and it did "
        "not answer." + _NOTHING,
        todo=_WAIT, later=_IT,
    ),
    "ehr-error": Problem(
        502, "error", "i-alert", "The patient record system gave an answer consultcam cannot use",
        happened="The patient record system answered, but not with details consultcam can rely on."
        + _NOTHING,
        todo=_WAIT, later=_IT,
    ),
    "token-refused": Problem(
        502, "error", "i-lock", "The patient record system refused consultcam",
        happened="The patient record system did not accept consultcam's sign-in (its code or consultcam's "
        "client registration)." + _NOTHING,
        todo=_AGAIN, later=_IT,
    ),
    "id-token-invalid": Problem(
        502, "error", "i-lock", "Your identity could not be confirmed",
        happened="The patient record system's statement of who you are did not pass consultcam's checks, "
        "so it was not trusted." + _NOTHING,
        todo=_AGAIN, later=_IT,
    ),
    "no-patient": Problem(
        502, "info", "i-user-x", "No patient was chosen",
        happened="The patient record system did not say which patient consultcam is for." + _NOTHING,
        todo="Open a patient in the patient record system, then open consultcam again.",
    ),
    "patient-not-found": Problem(
        502, "error", "i-user-x", "The patient record system cannot find this patient",
        happened="consultcam could not read the patient or the consultation with the access it was given."
        + _NOTHING,
        todo="Check that the right patient is open, then open consultcam again.", later=_IT,
    ),
}  # fmt: skip


def _page(request: Request, reason: str, headers: dict[str, str] | None = None) -> Response:
    """The launch page for `reason`, with its status, a time and the reason code for IT support."""
    return launch_page(request, PROBLEMS[reason], reason, headers, brand_sub="Clinical photography")


def _parameter(request: Request, name: str, shape: re.Pattern[str] = _VISIBLE) -> str | None:
    """The one value of query parameter `name`, or None when absent, repeated or malformed."""
    values = request.query_params.getlist(name)
    return values[0] if len(values) == 1 and shape.fullmatch(values[0]) else None


def redirect_uri(request: Request, public_url: str) -> str:
    """`{PUBLIC_URL}/launch/callback` (this request's own origin when PUBLIC_URL is not set)."""
    return f"{(public_url or str(request.base_url)).rstrip('/')}/launch/callback"


@router.get("/launch", response_class=HTMLResponse)
async def smart_launch(request: Request, rt: RuntimeDep) -> Response:
    """SMART EHR launch (`iss` and `launch`) or standalone launch (`iss` only): 302 to the EHR's
    authorize endpoint, or a page saying what went wrong."""
    client = client_address(request)
    try:
        await limiter(request).hit("launch", client)
    except TooManyRequests as exc:
        return _page(request, "rate-limited", exc.headers)
    iss = _parameter(request, "iss")
    has_launch = "launch" in request.query_params
    launch = _parameter(request, "launch")
    try:
        if rt.smart_launch is None:
            raise SmartRefused("not-configured")
        if iss is None or (has_launch and launch is None):
            raise SmartRefused("bad-request")
        location = await smart.start(rt, iss, launch, redirect_uri(request, rt.settings.public_url))
    except SmartRefused as refused:
        await smart.record_refusal(rt.unit_of_work, refused, client)
        return _page(request, refused.reason)
    return RedirectResponse(location, status_code=302, headers=HEADERS)


@router.get("/launch/callback", response_class=HTMLResponse)
async def smart_callback(request: Request, rt: RuntimeDep) -> Response:
    """The EHR's answer: claim the state, exchange the code, check who and for which patient, open or resume
    the session, sign the browser in, 303 to /sessions/{id}; or a page saying what went wrong."""
    client = client_address(request)
    state, code = _parameter(request, "state", _VISIBLE), _parameter(request, "code")
    error = _parameter(request, "error", _ERROR)
    try:
        if rt.smart_launch is None:
            raise SmartRefused("not-configured")
        if state is None or (code is None and error is None) or len(state) > 512:
            raise SmartRefused("bad-request")
        pending = await smart.claim(rt, state, error)
        checked = await smart.check(rt, pending, code or "")
        async with rt.unit_of_work() as uow:
            accepted = await smart_accept.accept(uow, rt, checked)
            response = await begin_signin(
                request, rt, accepted.clinician, "smart", f"/sessions/{accepted.session.id}", uow=uow
            )
    except SmartRefused as refused:
        await smart.record_refusal(rt.unit_of_work, refused, client)
        return _page(request, refused.reason)
    response.headers.update(HEADERS)
    return response
