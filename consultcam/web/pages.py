"""Server-rendered pages: the desktop (`/`, `/sessions/{id}`), the phone (`/m/{token}`) and sign-in.

Pages carry no patient data in the HTML: their scripts fetch it through the API, with the same
authorisation as every other call. The QR URL's token is only handed to the page's script, which
redeems it with `POST /api/pair` (a link previewer fetching the URL redeems nothing).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from consultcam.auth import (
    CLINICIAN_COOKIE,
    CLINICIAN_COOKIE_SECONDS,
    is_clinician_token,
    make_clinician_cookie,
)
from consultcam.config import WARN_IMAGES
from consultcam.deps import RuntimeDep, authenticate_clinician

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

LAUNCH_PARAMS = (
    "encounterId",
    "patientId",
    "patientName",
    "nhi",
    "birthDate",
    "practitionerId",
    "facilityId",
)


def _safe_next(value: str | None) -> str:
    """Only same-site paths (no scheme, no host, no `//`) may be redirected to after sign-in."""
    if not value or not value.startswith("/") or value.startswith("//") or urlsplit(value).netloc:
        return "/"
    return value


async def _desktop(request: Request, rt: RuntimeDep, session_id: str | None) -> Response:
    # An OIDC bearer (added by the practice's sign-in proxy) or the embedded token's cookie.
    if await authenticate_clinician(request, rt) is None:
        next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return templates.TemplateResponse(
            request, "signin.html", {"next": next_path, "error": None}, status_code=401
        )
    launch = {key: request.query_params[key] for key in LAUNCH_PARAMS if request.query_params.get(key)}
    config = {
        "maxImages": rt.settings.max_images,
        "warnImages": WARN_IMAGES,
        "pairingTtlSeconds": rt.settings.pairing_ttl_seconds,
    }
    return templates.TemplateResponse(
        request, "desktop.html", {"session_id": session_id, "launch": launch, "config": config}
    )


@router.get("/", response_class=HTMLResponse)
async def desktop_home(request: Request, rt: RuntimeDep) -> Response:
    """The desktop: start a capture session (form, or EMR launch parameters in the query)."""
    return await _desktop(request, rt, None)


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
async def desktop_session(session_id: str, request: Request, rt: RuntimeDep) -> Response:
    """The desktop for one capture session: QR code, live gallery, commit."""
    return await _desktop(request, rt, session_id)


@router.get("/m/{token}", response_class=HTMLResponse)
async def phone(token: str, request: Request, rt: RuntimeDep) -> Response:
    """The phone page opened from the QR code."""
    config = {"maxImages": rt.settings.max_images, "warnImages": WARN_IMAGES}
    return templates.TemplateResponse(request, "mobile.html", {"token": token, "config": config})


def _signed_in(request: Request, rt: RuntimeDep, token: str, next_path: str) -> Response:
    if not is_clinician_token(token, rt.settings.clinician_token):
        return templates.TemplateResponse(
            request,
            "signin.html",
            {
                "next": next_path,
                "error": "That clinician token is not right. Copy it again from the consultcam console.",
            },
            status_code=401,
        )
    response = RedirectResponse(_safe_next(next_path), status_code=303)
    response.set_cookie(
        CLINICIAN_COOKIE,
        make_clinician_cookie(rt.settings.secret_key, rt.settings.clinician_token),
        max_age=CLINICIAN_COOKIE_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.get("/login")
async def login_link(request: Request, rt: RuntimeDep, token: str = "", next: str = "/") -> Response:
    """The login URL printed at start-up (like Jupyter's): sets the clinician cookie, then redirects so the
    token leaves the address bar and the history."""
    return _signed_in(request, rt, token, next)


@router.post("/login")
async def login_form(
    request: Request, rt: RuntimeDep, token: str = Form(""), next: str = Form("/")
) -> Response:
    """The sign-in form: paste the clinician token."""
    return _signed_in(request, rt, token.strip(), next)


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(CLINICIAN_COOKIE, path="/")
    return response
