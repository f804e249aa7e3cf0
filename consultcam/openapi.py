"""The OpenAPI document as clients see it: readable operation ids and the error responses each call can send.

FastAPI documents only the 2xx answer and a 422 in its own validation shape. Every consultcam error is
`{"error": "<Name>", "detail": "<what to do>", …}` (consultcam/web/errors.py), so `install(app)` rewrites the
document once: the `Error` schema, the 422 in that shape, and on each operation the statuses it can answer.
Those come from two places, so a new route is documented without anyone remembering to:

- what every call of a kind can meet, read from the route itself: a credential dependency (401, 403 for a
  phone where a clinician is needed, 503 when the OIDC issuer cannot be reached; 404 from a session's
  principal dependency for a phone of another session), a `session_id` in the path (404), a request body
  (400 when it cannot be read, 413 over the size limit, 415 when not `application/json`, 422), an unsafe
  method (403 when a cookie-authenticated request cannot prove it comes from our pages: CSRF);
- what a call's own rules raise, from `RULES` below (409 when the session is not open, 410 for a used code…).

`tests/test_openapi.py` runs schemathesis against a live server and fails on any status or body the document
does not declare.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from consultcam import deps

#: The error body (consultcam/web/errors.py `error_response`); extra fields such as `missing` may follow.
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "A stable name to act on, e.g. SessionNotOpen."},
        "detail": {"type": "string", "description": "What went wrong and what to do, for a person."},
    },
    "additionalProperties": True,
}

#: What each status means in this API (the response's description).
REASONS: dict[int, str] = {
    400: "The body could not be read: not UTF-8 JSON.",
    401: "No credential, or one that is not valid: sign in (clinician) or scan the QR code (phone).",
    403: "Not allowed for this caller (a phone where only the clinician may act), or a cookie-authenticated "
    "change that does not come from consultcam's own pages.",
    404: "No such session or photo for this caller.",
    409: "The session is not in a state that allows this (not open, full, committing, consent missing).",
    410: "Gone: the pairing code expired or was replaced by a newer one, or the session has ended.",
    413: "The body or the photo is larger than this server accepts.",
    415: "The body or the photo is not of a type this call accepts (JSON bodies must be application/json).",
    422: "The request is well formed but its values cannot be used; `detail` says which and how to fix them.",
    429: "Too many requests from this client; wait as `Retry-After` says.",
    502: "The EMR refused or failed the commit; nothing was written (every photo or none).",
    503: "A service consultcam needs (identity provider, database, store) did not answer; try again.",
}

#: Statuses a call's own rules can answer, beyond those read from the route (keyed by operation id).
RULES: dict[str, set[int]] = {
    "createSession": {409},
    "newPairing": {409},
    "cancelSession": {409},
    "revokePhone": {409},
    "recordConsent": {409},
    "pair": {404, 409, 410, 429},
    "createUpload": {409, 429},
    "registerImage": {409, 503},
    "updateImage": {409},
    "deleteImage": {409},
    "downloadImage": {409},
    "downloadSession": {409},
    "commit": {409, 502},
    "events": {410, 429},
}

#: Other successful answers: (status, description) answered with the same body as the route's own.
ALSO: dict[str, tuple[int, str]] = {
    "createSession": (200, "The open session for this encounter, resumed, with a fresh pairing."),
}

_CREDENTIALS: dict[Callable[..., Any], set[int]] = {
    deps.get_clinician: {401, 403, 503},
    deps.get_principal: {401, 503},
    deps.get_read_principal: {401, 503},
    deps.get_principal_outside_transaction: {401, 503},
    # A phone of another session, or a bound clinician outside their provider and facility: 404, as if the
    # session did not exist (`deps.authorise_session`).
    deps.get_session_principal: {404},
    deps.get_read_session_principal: {404},
    deps.get_standalone_session_principal: {401, 404, 503},
    deps.get_session_clinician: {401, 403, 404, 503},
    deps.get_read_session_clinician: {401, 403, 404, 503},
    deps.get_standalone_session_clinician: {401, 403, 404, 503},
}


def operation_id(route: APIRoute) -> str:
    """The operation id of a route: its function's name in camelCase (`create_session` → `createSession`),
    unique because the functions are (checked by FastAPI when the document is built)."""
    first, *rest = route.name.split("_")
    return first + "".join(word.title() for word in rest)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def error_statuses(route: APIRoute) -> set[int]:
    """The 4xx/5xx statuses `route` can answer: read from its dependencies, path and body, plus `RULES`."""
    statuses: set[int] = set(RULES.get(operation_id(route), ()))
    for call in _calls(route.dependant):
        statuses |= _CREDENTIALS.get(call, set())
    if "{session_id}" in route.path:
        statuses.add(404)
    if route.dependant.body_params:
        statuses |= {400, 413, 415, 422}
    elif route.dependant.path_params or route.dependant.query_params:
        statuses.add(422)
    if (route.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}:
        statuses.add(403)
    return statuses


def install(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Make `app.openapi()` return the document described in this module's docstring (built once), for the
    routes of `routers` (the app's API routers, included without a prefix of their own)."""

    def document() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Error"] = ERROR_SCHEMA
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for route in (route for router in routers for route in router.routes):
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            for method in route.methods or ():
                operation = schema["paths"][route.path_format][method.lower()]
                responses = operation["responses"]
                if operation_id(route) in ALSO:
                    status, description = ALSO[operation_id(route)]
                    own = responses[str(route.status_code or 200)]
                    responses[str(status)] = {**own, "description": description}
                for status in sorted(error_statuses(route)):
                    responses[str(status)] = {"description": REASONS[status], "content": error}
                operation["responses"] = dict(sorted(responses.items()))
        app.openapi_schema = schema
        return schema

    app.openapi = document  # type: ignore[method-assign]  # FastAPI documents replacing it this way
