"""Domain errors that carry their HTTP status, and the one handler that turns them into `{error, detail}`.

Services raise these and never import FastAPI; expected conflicts are 4xx, never 500s.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}


class ConsultcamError(Exception):
    """Base of every domain error: `status` (HTTP), `error` (stable name), `detail` (what to do), and
    optionally `extra` fields a client can act on (e.g. `missing: [{imageId, fields}]`)."""

    status = 400
    error = "BadRequest"
    #: Extra response headers (e.g. an RFC 6750 §3 `WWW-Authenticate` with an error code); None: the default.
    headers: dict[str, str] | None = None

    def __init__(
        self,
        detail: str,
        *,
        error: str | None = None,
        status: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if error:
            self.error = error
        if status:
            self.status = status
        #: More fields for the body beside `error` and `detail` (JSON-ready, camelCase), e.g. `missing`.
        self.extra: dict[str, Any] = dict(extra or {})


class NotAuthenticated(ConsultcamError):
    status, error = 401, "NotAuthenticated"


class NotPermitted(ConsultcamError):
    status, error = 403, "NotPermitted"


class ResourceNotFound(ConsultcamError):
    status, error = 404, "NotFound"


class Conflict(ConsultcamError):
    status, error = 409, "Conflict"


class Gone(ConsultcamError):
    status, error = 410, "Gone"


class PayloadTooLarge(ConsultcamError):
    status, error = 413, "PayloadTooLarge"


class UnsupportedMediaType(ConsultcamError):
    status, error = 415, "UnsupportedMediaType"


class Unprocessable(ConsultcamError):
    status, error = 422, "Unprocessable"


class UpstreamFailed(ConsultcamError):
    status, error = 502, "UpstreamFailed"


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
