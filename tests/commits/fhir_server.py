"""A small FHIR R4 server for the tests: real HTTP on a free loopback port, in a background thread.

It speaks the parts of the REST API the `fhir` connector uses (hl7.org/fhir/R4/http.html): GET /metadata,
POST / (transaction, atomic, honouring ifNoneExist, references to entries' fullUrls rewritten), POST /{type}
with If-None-Exist, GET /{type}?identifier=
(searchset), GET and DELETE /{type}/{id}, and POST /token (OAuth2 client credentials). Every resource it
receives is validated with fhir.resources' R4B models: 422 with an OperationOutcome when it is not valid.

Switches, set by the tests (all thread-safe through `lock`):

- `transaction`: whether the CapabilityStatement lists the `transaction` interaction (and POST / works).
- `refuse_write`: refuse the Nth resource write (1-based, counting every create, in a transaction too)
  with 400 and an OperationOutcome saying `refuse_message`.
- `fail(status, times, retry_after=None, methods=("POST",))`: answer `status` that many times first.
- `delay(seconds, times, methods=("POST",))`: sleep before handling (the work is still done, late).
- `require_token`: expect `Authorization: Bearer <token>` from /token (or `static_token`); 401 otherwise.
  `revoke_tokens()` makes every token issued so far answer 401.
- `fail_deletes`: DELETE answers 403 with an OperationOutcome.

`requests` records (method, path, monotonic time, status, headers) of every request, `token_requests`
counts /token.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

FHIR_JSON = "application/fhir+json"
CLIENT_ID, CLIENT_SECRET = "consultcam-test", "s3cret-value"


@dataclass
class Switch:
    status: int
    times: int
    retry_after: str | None = None
    methods: tuple[str, ...] = ("POST",)


@dataclass
class Delay:
    seconds: float
    times: int
    methods: tuple[str, ...] = ("POST",)


@dataclass
class Record:
    method: str
    path: str
    at: float
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names


@dataclass
class FhirServerState:
    transaction: bool = True
    refuse_write: int | None = None
    refuse_message: str = "Media.subject: patient is not registered at this practice"
    fail_deletes: bool = False
    require_token: bool = False
    static_token: str | None = None
    switches: list[Switch] = field(default_factory=list)
    delays: list[Delay] = field(default_factory=list)
    store: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    requests: list[Record] = field(default_factory=list)
    writes: int = 0
    next_id: int = 1
    tokens: set[str] = field(default_factory=set)
    token_requests: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)


class FhirTestServer:
    """`with FhirTestServer() as server:` → server.base_url is http://127.0.0.1:<port>/fhir."""

    def __init__(self) -> None:
        self.state = FhirServerState()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fhir-test-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    def __enter__(self) -> FhirTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    # -- switches and views ------------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        times: int = 1,
        *,
        retry_after: str | None = None,
        methods: tuple[str, ...] = ("POST",),
    ) -> None:
        with self.state.lock:
            self.state.switches.append(Switch(status, times, retry_after, methods))

    def delay(self, seconds: float, times: int = 1, *, methods: tuple[str, ...] = ("POST",)) -> None:
        with self.state.lock:
            self.state.delays.append(Delay(seconds, times, methods))

    def revoke_tokens(self) -> None:
        with self.state.lock:
            self.state.tokens.clear()

    def resources(self, resource_type: str = "Media") -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.store.get(resource_type, {}).values())

    def requests(self, method: str | None = None, path: str | None = None) -> list[Record]:
        with self.state.lock:
            return [
                r
                for r in self.state.requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    def add(self, resource: dict[str, Any]) -> str:
        """Store a resource directly (as if an earlier commit had made it); returns "Type/id"."""
        with self.state.lock:
            return _create(self.state, self.state.store, resource)


@contextlib.contextmanager
def running_fhir_server() -> Iterator[FhirTestServer]:
    with FhirTestServer() as server:
        yield server


# -- the protocol --------------------------------------------------------------------------------------


class _Answer(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def outcome(text: str, code: str = "processing", severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": text}],
    }


def _capability_statement(state: FhirServerState) -> dict[str, Any]:
    interactions = [{"code": "transaction"}] if state.transaction else []
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": [
            {
                "type": kind,
                "interaction": [{"code": c} for c in ("read", "create", "delete", "search-type")],
                "conditionalCreate": True,
                "searchParam": [{"name": "identifier", "type": "token"}],
            }
            for kind in ("Media", "DocumentReference")
        ],
    }
    if interactions:
        rest["interaction"] = interactions
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [rest],
    }


def _validate(resource: Any) -> None:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise _Answer(422, outcome("the body is not a FHIR resource", "structure"))
    try:
        model = get_fhir_model_class(resource["resourceType"])
    except (KeyError, ValueError):
        raise _Answer(
            422, outcome(f"unknown resource type {resource['resourceType']}", "not-supported")
        ) from None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise _Answer(422, outcome(f"invalid {resource['resourceType']}: {problems}", "structure")) from None


def _find(store: dict[str, dict[str, dict[str, Any]]], kind: str, criteria: str) -> list[str]:
    """Ids of `kind` matching `identifier=system|value` (the only search this server knows)."""
    name, _, token = criteria.partition("=")
    if name != "identifier" or not token:
        raise _Answer(400, outcome(f"unsupported search {criteria!r}", "not-supported"))
    system, bar, value = token.partition("|")
    if not bar:
        system, value = "", token
    return [
        rid
        for rid, resource in store.get(kind, {}).items()
        if any(
            i.get("value") == value and (not system or i.get("system") == system)
            for i in resource.get("identifier") or []
        )
    ]


def _create(
    state: FhirServerState, store: dict[str, dict[str, dict[str, Any]]], resource: dict[str, Any]
) -> str:
    rid = str(state.next_id)
    state.next_id += 1
    stored = {**resource, "id": rid, "meta": {"versionId": "1"}}
    store.setdefault(resource["resourceType"], {})[rid] = stored
    return f"{resource['resourceType']}/{rid}"


def _write(
    state: FhirServerState,
    store: dict[str, dict[str, dict[str, Any]]],
    kind: str,
    resource: Any,
    if_none_exist: str | None,
) -> tuple[int, str]:
    """One (conditional) create: (201, location) or (200, location of the existing one)."""
    _validate(resource)
    if resource["resourceType"] != kind:
        raise _Answer(400, outcome(f"a {resource['resourceType']} posted to /{kind}", "invalid"))
    if if_none_exist:
        found = _find(store, kind, if_none_exist)
        if len(found) > 1:
            raise _Answer(412, outcome("more than one resource matches If-None-Exist", "duplicate"))
        if found:
            return 200, f"{kind}/{found[0]}/_history/1"
    state.writes += 1
    if state.refuse_write is not None and state.writes == state.refuse_write:
        raise _Answer(400, outcome(state.refuse_message, "business-rule"))
    return 201, _create(state, store, resource) + "/_history/1"


def _transaction(state: FhirServerState, bundle: Any) -> dict[str, Any]:
    if not state.transaction:
        raise _Answer(501, outcome("this server does not support transactions", "not-supported"))
    _validate(bundle)
    if bundle.get("type") != "transaction":
        raise _Answer(400, outcome("POST / takes a transaction Bundle", "invalid"))
    work = {kind: dict(resources) for kind, resources in state.store.items()}  # all or nothing
    saved_writes, saved_id = state.writes, state.next_id
    answers = []
    resolved: dict[str, str] = {}  # an entry's fullUrl → "Type/id" where it was saved or found
    created: list[str] = []
    try:
        for index, entry in enumerate(bundle.get("entry") or []):
            request = entry.get("request") or {}
            if request.get("method") != "POST":
                raise _Answer(400, outcome(f"entry {index}: only POST is supported", "not-supported"))
            try:
                status, location = _write(
                    state, work, request.get("url", ""), entry.get("resource"), request.get("ifNoneExist")
                )
            except _Answer as answer:
                body = answer.body
                if isinstance(body, dict) and body.get("issue"):
                    body["issue"][0]["expression"] = [f"Bundle.entry[{index}]"]
                raise
            answers.append(
                {"response": {"status": "201 Created" if status == 201 else "200 OK", "location": location}}
            )
            saved = "/".join(location.split("/")[:2])
            if isinstance(entry.get("fullUrl"), str):
                resolved[entry["fullUrl"]] = saved
            if status == 201:
                created.append(saved)
    except _Answer:
        state.writes, state.next_id = saved_writes, saved_id
        raise
    for saved in created:  # http.html#trules: references to an entry's fullUrl now name what was saved
        kind, rid = saved.split("/")
        work[kind][rid] = _resolve(work[kind][rid], resolved)
    state.store = work
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}


def _resolve(value: Any, resolved: dict[str, str]) -> Any:
    """`value` with every Reference.reference and url element (an Attachment's) that is a fullUrl of the
    transaction replaced by "Type/id" (http.html#trules); strings such as an Identifier.value stay."""
    if isinstance(value, list):
        return [_resolve(item, resolved) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: resolved.get(item, item)
        if key in ("reference", "url") and isinstance(item, str)
        else _resolve(item, resolved)
        for key, item in value.items()
    }


def _searchset(state: FhirServerState, kind: str, ids: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(ids),
        "entry": [{"resource": state.store[kind][rid], "search": {"mode": "match"}} for rid in ids],
    }


def _handler(state: FhirServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def _handle(self, method: str) -> None:
            url = urlsplit(self.path)
            path = url.path.removeprefix("/fhir").rstrip("/") or "/"
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            record = Record(
                method, path, time.monotonic(), headers={k.lower(): v for k, v in self.headers.items()}
            )
            with state.lock:
                state.requests.append(record)
                delay = next((d for d in state.delays if d.times > 0 and method in d.methods), None)
                if delay:
                    delay.times -= 1
            if delay:
                time.sleep(delay.seconds)
            try:
                with state.lock:
                    status, body, headers = self._route(method, path, url.query, raw)
            except _Answer as answer:
                status, body, headers = answer.status, answer.body, answer.headers
            record.status = status
            self._reply(status, body, headers)

        def _reply(self, status: int, body: Any, headers: dict[str, str]) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            try:
                self.send_response(status)
                if body is not None:
                    self.send_header("Content-Type", headers.pop("Content-Type", FHIR_JSON))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (a delayed answer)

        def _route(self, method: str, path: str, query: str, raw: bytes) -> tuple[int, Any, dict[str, str]]:
            if path == "/token" and method == "POST":
                return self._token(raw)
            switch = next((s for s in state.switches if s.times > 0 and method in s.methods), None)
            if switch:
                switch.times -= 1
                headers = {"Retry-After": switch.retry_after} if switch.retry_after else {}
                raise _Answer(
                    switch.status, outcome(f"switched to answer {switch.status}", "transient"), headers
                )
            self._authorise()
            parts = [p for p in path.split("/") if p]
            if method == "GET" and parts == ["metadata"]:
                return 200, _capability_statement(state), {}
            body = self._body(raw) if method == "POST" else None
            if method == "POST" and not parts:
                return 200, _transaction(state, body), {}
            if method == "POST" and len(parts) == 1:
                status, location = _write(
                    state, state.store, parts[0], body, self.headers.get("if-none-exist")
                )
                kind, rid = location.split("/")[:2]
                return status, state.store[kind][rid], {"Location": f"{self._base()}/{location}"}
            if method == "GET" and len(parts) == 1:
                criteria = "&".join(f"{k}={v[0]}" for k, v in parse_qs(query).items())
                ids = _find(state.store, parts[0], criteria)
                return 200, _searchset(state, parts[0], ids), {}
            if len(parts) == 2 and method in ("GET", "DELETE"):
                kind, rid = parts
                resource = state.store.get(kind, {}).get(rid)
                if method == "GET":
                    if resource is None:
                        raise _Answer(404, outcome(f"{kind}/{rid} is not known", "not-found"))
                    return 200, resource, {}
                if state.fail_deletes:
                    raise _Answer(
                        403, outcome("deleting resources is not permitted for this client", "forbidden")
                    )
                state.store.get(kind, {}).pop(rid, None)
                return 204, None, {}
            raise _Answer(404, outcome(f"{method} {path} is not supported here", "not-supported"))

        def _body(self, raw: bytes) -> Any:
            try:
                return json.loads(raw)
            except ValueError:
                raise _Answer(400, outcome("the body is not JSON", "structure")) from None

        def _base(self) -> str:
            return f"http://{self.headers.get('host')}/fhir"

        def _authorise(self) -> None:
            if not state.require_token:
                return
            given = self.headers.get("authorization", "")
            token = given.removeprefix("Bearer ") if given.startswith("Bearer ") else None
            if token is None or (token not in state.tokens and token != state.static_token):
                raise _Answer(
                    401, outcome("a valid bearer token is required", "login"), {"WWW-Authenticate": "Bearer"}
                )

        def _token(self, raw: bytes) -> tuple[int, Any, dict[str, str]]:
            state.token_requests += 1
            form = parse_qs(raw.decode())
            given = self.headers.get("authorization", "")
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if form.get("grant_type") != ["client_credentials"] or given != f"Basic {expected}":
                return 401, {"error": "invalid_client"}, {"Content-Type": "application/json"}
            token = f"token-{state.token_requests}"
            state.tokens.add(token)
            body = {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
            return 200, body, {"Content-Type": "application/json", "Cache-Control": "no-store"}

    return Handler
