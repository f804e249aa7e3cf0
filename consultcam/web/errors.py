"""The HTTP side of the domain errors: one `{error, detail}` body for every error the app answers.

`install_error_handlers(app)` maps domain errors (`consultcam.errors.ConsultcamError`: their own status,
name and detail), request validation (422 `InvalidRequest`), unreadable bodies (400 `InvalidBody`), stray
HTTP errors (404 `NotFound`, 405 `MethodNotAllowed`) and anything unexpected (500 `InternalError`, logged)
to that body, never cached.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from consultcam.errors import NO_STORE, ConsultcamError

log = logging.getLogger(__name__)


def error_response(
    status: int,
    error: str,
    detail: str,
    headers: dict[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """The one error body shape: `{"error": name, "detail": sentence, **extra}`, never cached. `extra` may not
    replace `error` or `detail`."""
    body = {**(extra or {}), "error": error, "detail": detail}
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, request validation and stray HTTP errors to the `{error, detail}` body."""

    @app.exception_handler(ConsultcamError)
    async def _domain(_: Request, exc: ConsultcamError) -> JSONResponse:
        headers = exc.headers or ({"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)
        return error_response(exc.status, exc.error, exc.detail, headers, exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return error_response(
            422, "InvalidRequest", "; ".join(parts) + ". Fix the request and send it again."
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not read the body at all (not UTF-8, not JSON)
            return error_response(
                400,
                "InvalidBody",
                "The request body could not be read: send a JSON object encoded as UTF-8, with "
                "Content-Type: application/json.",
            )
        names = {404: "NotFound", 405: "MethodNotAllowed"}
        return error_response(exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(
            500,
            "InternalError",
            "Something went wrong on the server. Try again; if it "
            "keeps happening, tell your practice IT support.",
        )
