"""The Medtech ALEX test double: a separate process speaking ALEX's wire protocol over real HTTP on 127.0.0.1.

Run: `python -m tests.medtech.alex_double --port 0 --ready-file PATH` (cwd the repository root); it binds,
writes the bound port to PATH (atomically) and serves until killed. The client, scope and launch-signing key
come from the environment (`ALEX_DOUBLE_CLIENT_ID`, `ALEX_DOUBLE_CLIENT_SECRET`, `ALEX_DOUBLE_SCOPE`,
`ALEX_DOUBLE_SIGNING_KEY` as hex), set by the handle (tests/medtech/double.py, which tests use).

ALEX's paths: the token endpoint and the vendor-forms decode (tests/medtech/alex_launch.py) and `/FHIR/...`
(tests/medtech/alex_fhir.py). Every ALEX path but the token endpoint needs a bearer token from it; every
`/FHIR/...` path needs `mt-facilityid` (400 OperationOutcome without); writes need `Content-Type:
application/fhir+json` (415) and a body under 8,000,000 bytes (413).

Control endpoints, never ALEX's (no authentication; JSON in and out): `GET /_double/health`,
`POST /_double/patients`, `POST /_double/launches`, `GET /_double/resources/{Type}`,
`POST /_double/resources`, `GET /_double/requests`, `POST /_double/fail`, `POST /_double/refuse-deletes`,
`POST /_double/revoke-tokens`, `GET /_double/decode-count`.

Every ALEX request is recorded as {method, path, query (percent-decoded), headers (lower-case names, the
Authorization value reduced to its scheme), status}. Nothing is printed: no token, secret or body.
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
from tests.medtech import alex_fhir as fhir
from tests.medtech.alex_fhir import Answer, outcome, refuse
from tests.medtech.alex_launch import DECODE_PATH, TOKEN_PATH, Auth

ENV_CLIENT_ID, ENV_CLIENT_SECRET = "ALEX_DOUBLE_CLIENT_ID", "ALEX_DOUBLE_CLIENT_SECRET"
ENV_SCOPE, ENV_SIGNING_KEY = "ALEX_DOUBLE_SCOPE", "ALEX_DOUBLE_SIGNING_KEY"
DEFAULT_CLIENT_ID, DEFAULT_SCOPE = "consultcam-test", "api://consultcam-test/.default"
_READ_LIMIT = 64_000_000  # bytes: a larger body is not read at all (413 and the connection closed)


@dataclass
class Failure:
    """`fail()`: the next `times` ALEX calls matching method (None: any) and path prefix answer `status`."""

    status: int
    times: int
    method: str | None
    path_prefix: str
    retry_after: str | None = None


@dataclass
class State:
    """Everything the double holds; handlers touch it only under `lock`."""

    auth: Auth
    store: fhir.Store = field(default_factory=fhir.Store)
    failures: list[Failure] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    refuse_deletes: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class DoubleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: State) -> None:
        super().__init__(address, Handler)
        self.state = state

    @property
    def fhir_base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/FHIR"


class Handler(DoubleHandler):
    server: DoubleServer

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        raw = self._body()
        if url.path.startswith("/_double/"):
            self._serve_control(method, url, raw)
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        record = self._record(method, url, headers)
        try:
            with state.lock:
                state.records.append(record)
                if raw is None:
                    raise refuse(413, f"the request body must be under {fhir.MAX_BODY} bytes", "too-costly")
                status, body, extra = self._alex(method, url.path, url.query, raw, headers)
        except Answer as answer:
            status, body, extra = answer.status, answer.body, answer.headers
        except Exception as exc:  # a bug in the double: say so, loudly, to the test
            traceback.print_exc(file=sys.stderr)
            status, body, extra = (
                500,
                outcome(f"ALEX double bug: {type(exc).__name__}"[:300], "exception"),
                {},
            )
        with state.lock:
            record["status"] = status
        self._reply(status, body, extra)

    def _body(self) -> bytes | None:
        """The request body; None when it is too large to read (the connection is then closed)."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                total += size
                if total > _READ_LIMIT:
                    self.close_connection = True
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        if length > _READ_LIMIT:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: Any, headers: dict[str, str]) -> None:
        """Send `body` as JSON: FHIR JSON for a FHIR resource, plain JSON otherwise, unless headers say."""
        data = json.dumps(body).encode() if body is not None else b""
        headers = dict(headers)
        if body is not None:
            fhir_json = isinstance(body, dict) and "resourceType" in body
            default = fhir.FHIR_JSON + "; charset=utf-8" if fhir_json else JSON
            headers = {"Content-Type": headers.pop("Content-Type", default), **headers}
        self._send(status, data, headers)

    # -- ALEX ----------------------------------------------------------------------------------------------

    def _alex(
        self, method: str, path: str, query: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        state = self.server.state
        is_fhir = path == "/FHIR" or path.startswith("/FHIR/")
        self._injected_failure(method, path, is_fhir)
        if path == TOKEN_PATH:
            if method != "POST":
                raise Answer(405, {"error": "invalid_request", "error_description": "POST only"})
            return state.auth.token(raw, headers.get("authorization", ""))
        if not state.auth.valid_bearer(headers.get("authorization", "")):
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            if is_fhir:
                raise Answer(401, outcome("a valid bearer token is required", "login"), challenge)
            raise Answer(
                401, {"error": "invalid_token", "message": "a valid bearer token is required"}, challenge
            )
        if path.startswith(DECODE_PATH):
            if method != "GET":
                raise Answer(405, {"error": "method_not_allowed", "message": "GET only"})
            return 200, state.auth.decode(path.removeprefix(DECODE_PATH)), {}
        if not is_fhir:
            raise Answer(404, {"error": "not_found", "message": f"no ALEX endpoint at {unquote(path)}"})
        if not headers.get("mt-facilityid", "").strip():
            raise refuse(400, "mt-facilityid header is required", "required")
        return self._fhir(method, [unquote(p) for p in path.split("/")[2:] if p], query, raw, headers)

    def _fhir(
        self, method: str, parts: list[str], query: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        state, base = self.server.state, self.server.fhir_base
        if parts == ["metadata"] and method == "GET":
            return 200, fhir.capability_statement(), {}
        if not parts or parts[0] not in fhir.TYPES or len(parts) > 2:
            raise refuse(404, f"{'/'.join(parts) or 'the base'} is not supported by ALEX", "not-supported")
        kind = parts[0]
        if method == "GET" and len(parts) == 1:
            return 200, fhir.search(state.store, kind, query, base), {}
        if method == "GET":
            return 200, fhir.read(state.store, kind, parts[1]), {}
        if method == "POST" and len(parts) == 1:
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != fhir.FHIR_JSON:
                raise refuse(415, f"Content-Type must be {fhir.FHIR_JSON}", "not-supported")
            if len(raw) >= fhir.MAX_BODY:
                raise refuse(413, f"the request body must be under {fhir.MAX_BODY} bytes", "too-costly")
            try:
                resource = json.loads(raw)
            except ValueError:
                raise refuse(400, "the body is not JSON", "structure") from None
            stored = fhir.create(state.store, kind, resource)
            return 201, stored, {"Location": f"{base}/{kind}/{stored['id']}/_history/1"}
        if method == "DELETE" and len(parts) == 2:
            if state.refuse_deletes:
                raise refuse(403, "this client is not permitted to delete resources", "forbidden")
            fhir.delete(state.store, kind, parts[1])
            return 204, None, {}
        raise refuse(405, f"{method} is not supported here", "not-supported")

    def _injected_failure(self, method: str, path: str, is_fhir: bool) -> None:
        for failure in self.server.state.failures:
            if (
                failure.times > 0
                and failure.method in (None, method)
                and path.startswith(failure.path_prefix)
            ):
                failure.times -= 1
                headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
                text = f"the ALEX double was told to answer {failure.status}"
                body = (
                    outcome(text, "transient")
                    if is_fhir
                    else {"error": "temporarily_unavailable", "message": text}
                )
                raise Answer(failure.status, body, headers)

    # -- controls ------------------------------------------------------------------------------------------

    def _control(self, method: str, name: str, raw: bytes | None) -> tuple[int, Any]:
        state = self.server.state
        given: dict[str, Any] = json.loads(raw) if raw else {}
        with state.lock:
            if (method, name) == ("GET", "health"):
                return 200, {"ok": True}
            if (method, name) == ("POST", "patients"):
                names = given["given"]
                names = [names] if isinstance(names, str) else list(names)
                pid = fhir.add_patient(state.store, given["nhi"], given["family"], names, given["birth_date"])
                return 201, {"id": pid}
            if (method, name) == ("POST", "launches"):
                context, signature = state.auth.launch(
                    given["patient_id"], given["provider_id"], given["facility_code"], given["created"]
                )
                return 201, {"context": context, "signature": signature}
            if method == "GET" and name.startswith("resources/"):
                kind = name.removeprefix("resources/")
                return 200, list(state.store.resources.get(kind, {}).values())
            if (method, name) == ("POST", "resources"):
                if given.get("resourceType") not in fhir.TYPES:
                    raise ValueError(f"resourceType must be one of {fhir.TYPES}")
                return 201, state.store.put(given)
            if (method, name) == ("GET", "requests"):
                return 200, [{**r, "headers": dict(r["headers"])} for r in state.records]
            if (method, name) == ("POST", "fail"):
                retry_after = given.get("retry_after")
                state.failures.append(
                    Failure(
                        int(given["status"]),
                        int(given.get("times", 1)),
                        given.get("method"),
                        str(given.get("path_prefix", "")),
                        None if retry_after is None else str(retry_after),
                    )
                )
                return 200, {}
            if (method, name) == ("POST", "refuse-deletes"):
                state.refuse_deletes = bool(given["refuse"])
                return 200, {}
            if (method, name) == ("POST", "revoke-tokens"):
                state.auth.tokens.clear()
                return 200, {}
            if (method, name) == ("GET", "decode-count"):
                return 200, {"count": state.auth.decodes}
        return 404, {"error": f"no control {method} /_double/{name}"}


def main(argv: list[str] | None = None) -> None:
    args = arguments("python -m tests.medtech.alex_double", __doc__.split("\n")[0], argv)
    key = os.environ.get(ENV_SIGNING_KEY)
    auth = Auth(
        client_id=os.environ.get(ENV_CLIENT_ID, DEFAULT_CLIENT_ID),
        client_secret=os.environ.get(ENV_CLIENT_SECRET) or secrets.token_urlsafe(24),
        scope=os.environ.get(ENV_SCOPE, DEFAULT_SCOPE),
        key=bytes.fromhex(key) if key else secrets.token_bytes(32),
    )
    for kind in fhir.WRITABLE:  # import the models now, not during the first create
        get_fhir_model_class(kind)
    serve(DoubleServer(("127.0.0.1", args.port), State(auth)), args.ready_file)


if __name__ == "__main__":
    main()
