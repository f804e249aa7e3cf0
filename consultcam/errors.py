"""Domain errors that carry their HTTP status (`status`, `error`, `detail`).

Services raise these; expected conflicts are 4xx, never 500s. No web framework here: the one handler that
turns them into the `{error, detail}` body is `consultcam.web.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Headers for a response that no browser or proxy may keep (every error, every photo).
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
