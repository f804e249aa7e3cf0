"""The SMART EHR double: a separate process speaking SMART App Launch 2.x and FHIR R4 over real HTTP.

Run: `python -m tests.smart.ehr_double --port 0 --ready-file PATH` (cwd the repository root); it binds,
makes an RS256 key, writes the bound port to PATH (atomically) and serves until killed. The client comes from
the environment (`EHR_DOUBLE_CLIENT_ID`, `EHR_DOUBLE_CLIENT_SECRET` (absent: a public client),
`EHR_DOUBLE_REDIRECT_URI`, `EHR_DOUBLE_PERMISSION` v2/v1/both), set by the handle (tests/smart/double.py).

Paths: `/fhir` is the FHIR base (the SMART `iss`): `/fhir/.well-known/smart-configuration` and
`/fhir/metadata` without a token, everything else with one (tests/smart/ehr_fhir.py); `/auth/authorize`,
`/auth/token`, `/auth/jwks` (tests/smart/ehr_auth.py). Controls, never the EHR's (no authentication, JSON):
`/_double/...` (see `_control`). Every EHR request is recorded as {method, path, query (percent-decoded),
headers (lower-case; Authorization reduced to its scheme), status}. Nothing is printed.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import traceback
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from fhir.resources.R4B import get_fhir_model_class

from tests.doubles import JSON, DoubleHandler, arguments, serve
from tests.smart import ehr_fhir as fhir
from tests.smart.ehr_auth import AUTHORIZE_PATH, JWKS_PATH, TOKEN_PATH, Auth, Redirect
from tests.smart.ehr_fhir import Answer, refuse

ENV_CLIENT_ID, ENV_CLIENT_SECRET = "EHR_DOUBLE_CLIENT_ID", "EHR_DOUBLE_CLIENT_SECRET"
ENV_REDIRECT_URI, ENV_PERMISSION = "EHR_DOUBLE_REDIRECT_URI", "EHR_DOUBLE_PERMISSION"
_READ_LIMIT = 64_000_000


@dataclass
class Failure:
    status: int
    times: int
    path_prefix: str


@dataclass
class State:
    auth: Auth
    store: fhir.Store = field(default_factory=fhir.Store)
    failures: list[Failure] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class DoubleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: State) -> None:
        super().__init__(address, Handler)
        self.state = state

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def iss(self) -> str:
        return self.root + "/fhir"


class Handler(DoubleHandler):
    server: DoubleServer

    def _handle(self, method: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        if length > _READ_LIMIT:
            self.close_connection = True
            self._reply(413, fhir.outcome("too large"), {})
            return
        raw = self.rfile.read(length) if length else b""
        if url.path.startswith("/_double/"):
            self._serve_control(method, url, raw)
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        record = self._record(method, url, headers)
        extra: dict[str, str] = {}
        try:
            with state.lock:
                state.records.append(record)
                status, body, extra = self._ehr(method, url.path, url.query, raw, headers)
        except Redirect as redirect:
            status, body, extra = 302, None, {"Location": redirect.location, "Cache-Control": "no-store"}
        except Answer as answer:
            status, body, extra = answer.status, answer.body, answer.headers
        except Exception as exc:  # a bug in the double: say so to the test
            traceback.print_exc(file=sys.stderr)
            status, body = 500, fhir.outcome(f"EHR double bug: {type(exc).__name__}", "exception")
        with state.lock:
            record["status"] = status
        self._reply(status, body, extra)

    def _reply(self, status: int, body: Any, headers: dict[str, str]) -> None:
        headers = dict(headers)
        if isinstance(body, str):
            data = body.encode()
            headers.setdefault("Content-Type", "text/html; charset=utf-8")
        elif body is not None:
            data = json.dumps(body).encode()
            fhir_json = isinstance(body, dict) and "resourceType" in body
            headers.setdefault("Content-Type", fhir.FHIR_JSON + "; charset=utf-8" if fhir_json else JSON)
        else:
            data = b""
        self._send(status, data, headers)

    # -- the EHR -------------------------------------------------------------------------------------------

    def _ehr(
        self, method: str, path: str, query: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        state, root, iss = self.server.state, self.server.root, self.server.iss
        for failure in state.failures:
            if failure.times > 0 and path.startswith(failure.path_prefix):
                failure.times -= 1
                raise refuse(
                    failure.status, f"the EHR double was told to answer {failure.status}", "transient"
                )
        if path == "/fhir/.well-known/smart-configuration" and method == "GET":
            return 200, state.auth.smart_configuration(root, iss), {}
        if path == JWKS_PATH and method == "GET":
            return 200, state.auth.jwks(), {}
        if path == AUTHORIZE_PATH and method == "GET":
            state.auth.authorize(query, iss)
        if path == TOKEN_PATH and method == "POST":
            return state.auth.token(raw, headers.get("authorization", ""), iss)
        if path == "/fhir/metadata" and method == "GET":
            return 200, fhir.capability_statement(state.store, root), {}
        if path != "/fhir" and not path.startswith("/fhir/"):
            raise refuse(404, f"nothing at {unquote(path)}", "not-found")
        grant = state.auth.bearer(headers.get("authorization", ""))
        if grant is None:
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            raise Answer(401, fhir.outcome("a valid bearer token is required", "login"), challenge)
        parts = [unquote(p) for p in path.split("/")[2:] if p]
        scopes, patient = grant.scope, grant.patient
        if method == "POST" and not parts:
            return 200, fhir.transaction(state.store, _json(raw), iss, scopes, patient), {}
        if not parts or parts[0] not in fhir.READABLE or len(parts) > 2:
            raise refuse(404, f"{'/'.join(parts) or 'the base'} is not supported", "not-supported")
        kind = parts[0]
        if method == "GET" and len(parts) == 1:
            return 200, fhir.search(state.store, kind, query, iss, scopes), {}
        if method == "GET":
            return 200, fhir.read(state.store, kind, parts[1], scopes, patient), {}
        if method == "POST" and len(parts) == 1:
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type not in (fhir.FHIR_JSON, "application/json"):
                raise refuse(415, f"Content-Type must be {fhir.FHIR_JSON}", "not-supported")
            status, stored = fhir.create(
                state.store, kind, _json(raw), scopes, patient, headers.get("if-none-exist")
            )
            return status, stored, {"Location": f"{iss}/{kind}/{stored['id']}/_history/1"}
        if method == "DELETE" and len(parts) == 2:
            fhir.delete(state.store, kind, parts[1], scopes)
            return 204, None, {}
        raise refuse(405, f"{method} is not supported here", "not-supported")

    # -- controls ------------------------------------------------------------------------------------------

    def _control(self, method: str, name: str, raw: bytes | None) -> tuple[int, Any]:
        state, auth, store = self.server.state, self.server.state.auth, self.server.state.store
        given: dict[str, Any] = json.loads(raw) if raw else {}
        with state.lock:
            if (method, name) == ("GET", "health"):
                return 200, {"ok": True, "iss": self.server.iss}
            if (method, name) == ("POST", "resources"):
                stored = store.put(given)
                if given["resourceType"] == "Patient" and auth.selected_patient is None:
                    auth.selected_patient = stored["id"]
                if given["resourceType"] == "Practitioner" and auth.selected_user is None:
                    auth.selected_user = f"Practitioner/{stored['id']}"
                return 201, stored
            if method == "GET" and name.startswith("resources/"):
                return 200, list(store.resources.get(name.removeprefix("resources/"), {}).values())
            if (method, name) == ("POST", "launches"):
                launch = secrets.token_urlsafe(16)
                auth.launches[launch] = {k: given.get(k) for k in ("patient", "encounter", "user")}
                return 201, {"launch": launch}
            if (method, name) == ("POST", "select"):
                auth.selected_patient = given.get("patient", auth.selected_patient)
                auth.selected_user = given.get("user", auth.selected_user)
                return 200, {}
            if (method, name) == ("POST", "redirect-uri"):
                auth.redirect_uri = str(given["uri"])
                return 200, {}
            if (method, name) == ("POST", "deny"):
                auth.deny += int(given.get("times", 1))
                return 200, {}
            if (method, name) == ("POST", "expire-tokens"):
                for grant in auth.tokens.values():
                    grant.expires_at = 0.0
                return 200, {}
            if (method, name) == ("POST", "revoke-refresh-tokens"):
                auth.refresh_tokens.clear()
                return 200, {}
            if (method, name) == ("POST", "token-lifetime"):
                auth.token_lifetime = int(given["seconds"])
                return 200, {}
            if (method, name) == ("POST", "media"):
                store.media = bool(given["supported"])
                return 200, {}
            if (method, name) == ("POST", "next-id-token"):
                auth.id_token_override = dict(given.get("claims") or {})
                auth.foreign_key_next = bool(given.get("foreign_key"))
                return 200, {}
            if (method, name) == ("POST", "fail"):
                failure = Failure(int(given["status"]), int(given.get("times", 1)), str(given["path_prefix"]))
                state.failures.append(failure)
                return 200, {}
            if (method, name) == ("GET", "requests"):
                return 200, [{**r, "headers": dict(r["headers"])} for r in state.records]
            if (method, name) == ("GET", "token-requests"):
                return 200, list(auth.token_log)
            if (method, name) == ("GET", "authorize-requests"):
                return 200, list(auth.authorize_log)
        return 404, {"error": f"no control {method} /_double/{name}"}


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise refuse(400, "the body is not JSON", "structure") from None


def main(argv: list[str] | None = None) -> None:
    args = arguments("python -m tests.smart.ehr_double", __doc__.split("\n")[0], argv)
    auth = Auth(
        client_id=os.environ.get(ENV_CLIENT_ID, "consultcam"),
        client_secret=os.environ.get(ENV_CLIENT_SECRET) or None,
        redirect_uri=os.environ.get(ENV_REDIRECT_URI, "http://127.0.0.1/launch/callback"),
        permission=os.environ.get(ENV_PERMISSION, "v2"),
    )
    for kind in ("Media", "DocumentReference", "Bundle"):  # import the models now, not at the first write
        get_fhir_model_class(kind)
    serve(DoubleServer(("127.0.0.1", args.port), State(auth)), args.ready_file)


if __name__ == "__main__":
    main()
