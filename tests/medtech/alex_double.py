"""TEMPORARY local stand-in (untracked) for the alexdouble branch's server; replaced at merge."""
from __future__ import annotations

import argparse, base64, hashlib, hmac, json, secrets, threading, uuid
from datetime import datetime, UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit, parse_qs
from zoneinfo import ZoneInfo

KEY = secrets.token_bytes(32)
STATE = {"patients": {}, "contexts": {}, "requests": [], "fails": [], "tokens": set(), "decodes": 0}
CLIENT = ("consultcam-test", "test-secret")
LOCK = threading.Lock()


def sign(context: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(KEY, context.encode(), hashlib.sha256).digest()).decode().rstrip("=")


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _send(self, status, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _control(self, method):
        parts = urlsplit(self.path)
        n = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}") if n else {}
        name = parts.path.removeprefix("/_double/")
        if name == "patient":
            pid = uuid.uuid4().hex
            STATE["patients"][pid] = body | {"id": pid}
            return self._send(200, {"id": pid})
        if name == "launch":
            ctx = secrets.token_urlsafe(24) + "+/="
            STATE["contexts"][ctx] = body
            return self._send(200, {"context": ctx, "signature": sign(ctx)})
        if name == "requests":
            return self._send(200, STATE["requests"])
        if name == "fail":
            STATE["fails"].append(body)
            return self._send(200, {})
        if name == "decodes":
            return self._send(200, {"count": STATE["decodes"]})
        return self._send(404, {})

    def do_POST(self):
        if self.path.startswith("/_double/"):
            return self._control("POST")
        return self._handle("POST")

    def do_GET(self):
        if self.path.startswith("/_double/"):
            return self._control("GET")
        return self._handle("GET")

    def _handle(self, method):
        parts = urlsplit(self.path)
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        status = self._answer(method, parts, raw)

    def _answer(self, method, parts, raw):
        rec = {"method": method, "path": parts.path, "query": parts.query,
               "headers": {k.lower(): v for k, v in self.headers.items()}}
        STATE["requests"].append(rec)
        for f in STATE["fails"]:
            if f["times"] > 0 and f["method"] == method and parts.path.startswith(f["path_prefix"]):
                f["times"] -= 1
                return self._send(f["status"], {"error": "injected"})
        if parts.path == "/oauth2/v2.0/token":
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            auth = self.headers.get("authorization", "")
            cid, sec = form.get("client_id"), form.get("client_secret")
            if auth.startswith("Basic "):
                cid, _, sec = base64.b64decode(auth[6:]).decode().partition(":")
                cid, sec = unquote(cid), unquote(sec)
            if (cid, sec) != CLIENT:
                return self._send(401, {"error": "invalid_client"})
            tok = secrets.token_urlsafe(16)
            STATE["tokens"].add(tok)
            return self._send(200, {"access_token": tok, "token_type": "Bearer", "expires_in": 3599})
        auth = self.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in STATE["tokens"]:
            return self._send(401, {"error": "invalid_token"})
        if parts.path.startswith("/vendorforms/api/getlaunchcontextstring/"):
            rest = parts.path.removeprefix("/vendorforms/api/getlaunchcontextstring/")
            c, _, s = rest.partition("/")
            c, s = unquote(c), unquote(s)
            if c not in STATE["contexts"] or not hmac.compare_digest(sign(c), s):
                return self._send(400, {"error": "invalid_signature", "message": "bad"})
            STATE["decodes"] += 1
            return self._send(200, STATE["contexts"][c])
        if parts.path.startswith("/FHIR/"):
            if not self.headers.get("mt-facilityid"):
                return self._send(400, {"resourceType": "OperationOutcome"})
            if parts.path.startswith("/FHIR/Patient/"):
                pid = parts.path.removeprefix("/FHIR/Patient/")
                p = STATE["patients"].get(pid)
                if p is None:
                    return self._send(404, {"resourceType": "OperationOutcome"})
                return self._send(200, {"resourceType": "Patient", "id": pid,
                    "identifier": [{"system": "https://standards.digital.health.nz/ns/nhi-id", "value": p["nhi"]}],
                    "name": [{"family": p["family"], "given": [p["given"]]}], "birthDate": p["birth_date"]})
        return self._send(404, {})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ready-file")
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), H)
    with open(a.ready_file, "w") as f:
        f.write(str(srv.server_address[1]))
    srv.serve_forever()


if __name__ == "__main__":
    main()
