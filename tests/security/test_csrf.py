"""CSRF (issue 10, "Access"): with only the clinician's or the phone's cookie, a page of another origin must
not act. Another port of the same host is the same site but another origin, and is the attacker here.

The rules, each tested over real HTTP: an unsafe request (POST, PUT, PATCH, DELETE) from a browser must come
from our own origin (`Origin`, else `Sec-Fetch-Site`, else `Referer`); one that carries a credential cookie
must also carry the page's CSRF token (`X-CSRF-Token`, bound to that cookie); a bearer token needs no CSRF
token; JSON endpoints take only `application/json`; and a commit says what it commits.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from consultcam.config import Settings
from tests.conftest import (
    CLINICIAN_TOKEN,
    PATIENT,
    assert_error,
    jpeg_bytes,
    serving,
    start_session,
    token_of,
    upload,
)
from tests.e2e.flows import add_photo, record_consent
from tests.security.attacker_site import AttackerSite, chromium, consultcam_serve

META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]*)"')
SESSION = {"encounterId": "enc-csrf", "patient": PATIENT}


# -- the attack, in a real browser ----------------------------------------------------------------------


def attack_page(base: str, session_id: str, image_id: str) -> str:
    """What the attacker serves: text/plain form posts (the reported attack: an empty body committed
    everything) and no-cors fetches to commit, and credentialed deletes; `window.attackDone` when all have
    been answered."""
    commit = f"{base}/api/sessions/{session_id}/commit"
    return f"""<!doctype html><html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="empty" method="post" enctype="text/plain" action="{commit}" target="sink1"></form>
<form id="json" method="post" enctype="text/plain" action="{commit}" target="sink2">
  <input name='{{"all": true, "x": "' value='"}}'>
</form>
<script>
const loaded = (name) => new Promise((resolve) => {{
  document.querySelector(`iframe[name=${{name}}]`).addEventListener("load", resolve, {{once: true}});
}});
(async () => {{
  const quiet = (p) => p.then(() => null, () => null);
  const opts = {{method: "POST", mode: "no-cors", credentials: "include"}};
  const del = {{method: "DELETE", credentials: "include"}};
  await Promise.all([
    quiet(fetch("{commit}", opts)),
    quiet(fetch("{commit}", {{...opts, body: '{{"all": true}}'}})),
    quiet(fetch("{commit}", {{...opts, body: new Blob(['{{"imageIds": ["{image_id}"]}}'])}})),
    quiet(fetch("{base}/api/sessions/{session_id}/images/{image_id}", del)),
    quiet(fetch("{base}/api/sessions/{session_id}", del)),
  ]);
  let sunk = loaded("sink1");
  document.getElementById("empty").submit();
  await sunk;
  sunk = loaded("sink2");
  document.getElementById("json").submit();
  await sunk;
  window.attackDone = true;
}})();
</script></body></html>"""


def session_with_photo(server: Any) -> tuple[str, str]:
    """A capture session with consent and one photo, made through the API with the bearer token."""
    with server.api() as api:
        response = api.post("/api/sessions", json={**SESSION, "patient": {**PATIENT, "id": "pat-csrf"}})
        assert response.status_code == 201, response.text
        session_id = response.json()["id"]
    record_consent(server, session_id)
    image = add_photo(server, session_id, jpeg_bytes())
    return session_id, image["id"]


async def test_a_page_on_another_port_cannot_commit_or_delete_with_the_clinicians_cookie(
    tmp_path: Path,
) -> None:
    # No required metadata, so that the one thing stopping a commit is the CSRF defence.
    async with consultcam_serve(tmp_path / "server", CONSULTCAM_REQUIRED_METADATA="") as server:
        session_id, image_id = await asyncio.to_thread(session_with_photo, server)
        with AttackerSite() as site:
            site.pages["/"] = attack_page(server.url, session_id, image_id)
            async with chromium() as browser:
                context = await browser.new_context()
                page = await context.new_page()
                await page.goto(f"{server.url}/login?token={server.token}")
                assert any(c["name"] == "consultcam_clinician" for c in await context.cookies())
                await page.goto(f"{site.url}/")
                await page.wait_for_function("window.attackDone === true", timeout=30_000)
                await context.close()

        def state() -> httpx.Response:
            with server.api() as api:
                return api.get(f"/api/sessions/{session_id}")

        response = await asyncio.to_thread(state)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "open"
        assert [image["id"] for image in response.json()["images"]] == [image_id]
        assert server.outbox() == []


# -- the rules, over plain HTTP ----------------------------------------------------------------------------


async def signed_in(client: httpx.AsyncClient) -> str:
    """Sign `client` in with the printed login link (the clinician cookie); the desktop page's CSRF token."""
    login = await client.get("/login", params={"token": CLINICIAN_TOKEN})
    assert login.status_code == 303, login.text
    page = await client.get("/")
    assert page.status_code == 200, page.text
    match = META_TOKEN.search(page.text)
    return match.group(1) if match else ""


def other_port(origin: str) -> str:
    """An origin on the same host and scheme, another port: same site, other origin."""
    port = int(origin.rsplit(":", 1)[1])
    return f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}"


async def created_nothing(origin: str, encounter: str = SESSION["encounterId"]) -> bool:
    """No session exists for the encounter: the bearer client makes a new one (201), not the old (200)."""
    async with httpx.AsyncClient(
        base_url=origin, headers={"Authorization": f"Bearer {CLINICIAN_TOKEN}"}
    ) as c:
        response = await c.post("/api/sessions", json={**SESSION, "encounterId": encounter})
    return response.status_code == 201


@pytest.mark.backends("sqlite")
async def test_the_clinician_cookie_alone_is_not_enough(app: Any) -> None:
    async with serving(app) as origin, httpx.AsyncClient(base_url=origin, timeout=20) as client:
        token = await signed_in(client)
        assert token, "the desktop page carries its CSRF token"
        forged = (b"0" * 43, b"\xe9" * 43)  # a wrong token; one that is not even ASCII (Latin-1)
        for headers in ({"Origin": origin}, {}, *({"Origin": origin, "X-CSRF-Token": t} for t in forged)):
            refused = await client.post("/api/sessions", json=SESSION, headers=headers)
            assert_error(refused, 403, None, "reload")
            assert refused.json()["error"] in ("CsrfTokenMissing", "CsrfTokenInvalid")
        assert await created_nothing(origin)
        made = await client.post(
            "/api/sessions",
            json={**SESSION, "encounterId": "enc-page"},
            headers={"Origin": origin, "X-CSRF-Token": token},
        )
        assert made.status_code == 201, made.text
        # Every answer to a request with the cookie carries the token, for the page's script to keep.
        assert made.headers["x-csrf-token"] == token


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    "provenance",
    [
        {"Origin": "{other}"},
        {"Origin": "https://127.0.0.1:{port}"},
        {"Origin": "null", "Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Referer": "{other}/attack.html"},
    ],
    ids=["other-port", "other-scheme", "null-same-site", "cross-site", "same-site", "referer"],
)
async def test_another_origin_is_refused_even_with_the_token(app: Any, provenance: dict[str, str]) -> None:
    async with serving(app) as origin:
        values = {"other": other_port(origin), "port": origin.rsplit(":", 1)[1]}
        headers = {name: value.format(**values) for name, value in provenance.items()}
        async with httpx.AsyncClient(base_url=origin, timeout=20) as client:
            token = await signed_in(client)
            refused = await client.post(
                "/api/sessions", json=SESSION, headers={**headers, "X-CSRF-Token": token}
            )
        assert_error(refused, 403, "CrossOriginRequest", "consultcam")
        assert await created_nothing(origin)


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    "provenance",
    [
        {"Origin": "{origin}"},
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},  # a form post from our page (no-referrer)
        {"Referer": "{origin}/sessions/abc"},
        {},  # not a browser: nothing says where it came from; the token decides
    ],
    ids=["origin", "null-same-origin", "referer", "none"],
)
async def test_our_own_pages_pass(app: Any, provenance: dict[str, str]) -> None:
    async with serving(app) as origin:
        headers = {name: value.format(origin=origin) for name, value in provenance.items()}
        async with httpx.AsyncClient(base_url=origin, timeout=20) as client:
            token = await signed_in(client)
            made = await client.post(
                "/api/sessions", json=SESSION, headers={**headers, "X-CSRF-Token": token}
            )
        assert made.status_code == 201, made.text


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize("settings_overrides", [{"public_url": "https://photos.example.org"}])
async def test_the_public_url_is_our_origin_too(app: Any) -> None:
    """Behind a proxy the browser's origin is PUBLIC_URL's, not the address the app listens on."""
    async with serving(app) as origin, httpx.AsyncClient(base_url=origin, timeout=20) as client:
        token = await signed_in(client)
        made = await client.post(
            "/api/sessions",
            json=SESSION,
            headers={"Origin": "https://photos.example.org", "X-CSRF-Token": token},
        )
        assert made.status_code == 201, made.text
        other = await client.post(
            "/api/sessions",
            json={**SESSION, "encounterId": "enc-2"},
            headers={"Origin": "https://photos.example.org:8443", "X-CSRF-Token": token},
        )
        assert_error(other, 403, "CrossOriginRequest")


@pytest.mark.backends("sqlite")
async def test_a_bearer_token_needs_no_csrf_token(app: Any) -> None:
    async with (
        serving(app) as origin,
        httpx.AsyncClient(base_url=origin, headers={"Authorization": f"Bearer {CLINICIAN_TOKEN}"}) as api,
    ):
        assert (await api.post("/api/sessions", json=SESSION)).status_code == 201


@pytest.mark.backends("sqlite")
async def test_the_phone_cookie_needs_the_token_and_the_signed_upload_does_not(app: Any) -> None:
    async with serving(app) as origin:
        async with httpx.AsyncClient(
            base_url=origin, headers={"Authorization": f"Bearer {CLINICIAN_TOKEN}"}
        ) as api:
            session = (await api.post("/api/sessions", json=SESSION)).json()
        async with httpx.AsyncClient(base_url=origin, timeout=20) as phone:
            paired = await phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})
            assert paired.status_code == 200, paired.text
            token = paired.headers.get("x-csrf-token", "")
            consent = {"scope": "clinical", "givenBy": "patient"}
            refused = await phone.put(f"/api/sessions/{session['id']}/consent", json=consent)
            assert_error(refused, 403, "CsrfTokenMissing")
            headers = {"Origin": origin, "X-CSRF-Token": token}
            recorded = await phone.put(
                f"/api/sessions/{session['id']}/consent", json=consent, headers=headers
            )
            assert recorded.status_code == 200, recorded.text
            data = jpeg_bytes()
            target = await phone.post(
                f"/api/sessions/{session['id']}/uploads",
                json={"contentType": "image/jpeg", "sizeBytes": len(data)},
                headers=headers,
            )
            assert target.status_code == 201, target.text
            # The signed PUT is authorised by its signature, not the cookie: no token needed.
            body = target.json()
            put = await phone.request(
                body["method"], body["uploadUrl"], content=data, headers=body["headers"]
            )
            assert put.status_code == 200, put.text
            registered = await phone.post(
                f"/api/sessions/{session['id']}/images", json={"imageId": body["imageId"]}, headers=headers
            )
            assert registered.status_code == 201, registered.text


@pytest.mark.backends("sqlite")
async def test_the_token_is_bound_to_its_cookie(app: Any) -> None:
    """A token made for one cookie (the phone's) does not pass with another (the clinician's)."""
    async with (
        serving(app) as origin,
        httpx.AsyncClient(base_url=origin) as client,
        httpx.AsyncClient(base_url=origin) as phone,
    ):
        await signed_in(client)
        session = (
            await client.post(
                "/api/sessions", json=SESSION, headers={"Authorization": f"Bearer {CLINICIAN_TOKEN}"}
            )
        ).json()
        paired = await phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})
        phone_token = paired.headers.get("x-csrf-token", "")
        assert phone_token
        refused = await client.delete(
            f"/api/sessions/{session['id']}", headers={"Origin": origin, "X-CSRF-Token": phone_token}
        )
        assert_error(refused, 403, "CsrfTokenInvalid")


@pytest.mark.backends("sqlite")
async def test_the_sign_in_form_works_with_a_stale_cookie(app: Any, settings: Settings) -> None:
    """A browser whose clinician cookie no longer counts gets the sign-in form, which carries the token for
    the cookie it still sends."""
    async with serving(app) as origin, httpx.AsyncClient(base_url=origin) as browser:
        browser.cookies.set("consultcam_clinician", "1.stale", domain="127.0.0.1")
        form = await browser.get("/")
        assert form.status_code == 401
        match = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert match, "the sign-in form carries the CSRF token"
        fields = {"token": CLINICIAN_TOKEN, "next": "/"}
        headers = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
        refused = await browser.post("/login", data=fields, headers=headers)
        assert_error(refused, 403, "CsrfTokenMissing")
        signed = await browser.post("/login", data={**fields, "csrf_token": match.group(1)}, headers=headers)
        assert signed.status_code == 303, signed.text


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/plain", b'{"encounterId": "enc-csrf", "patient": {"id": "p", "name": "A B"}}'),
        (None, b'{"encounterId": "enc-csrf", "patient": {"id": "p", "name": "A B"}}'),
        ("application/x-www-form-urlencoded", b"encounterId=enc-csrf"),
        ("multipart/form-data; boundary=x", b"--x--\r\n"),
    ],
    ids=["text-plain", "no-type", "urlencoded", "multipart"],
)
async def test_json_endpoints_refuse_other_bodies(
    clinician: httpx.AsyncClient, content_type: str | None, content: bytes
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    request = clinician.build_request("POST", "/api/sessions", content=content, headers=headers)
    assert request.headers.get("content-type") == content_type
    refused = await clinician.send(request)
    assert_error(refused, 415, "UnsupportedMediaType", "application/json")


async def test_json_with_a_charset_is_json(clinician: httpx.AsyncClient) -> None:
    response = await clinician.post(
        "/api/sessions",
        content=b'{"encounterId": "enc-csrf", "patient": {"id": "p", "name": "A B"}}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201, response.text


# -- a commit says what it commits -------------------------------------------------------------------------


async def test_an_empty_commit_body_commits_nothing(clinician: httpx.AsyncClient, runtime: Any) -> None:
    session = await start_session(clinician)
    for _ in range(2):
        assert (await upload(clinician, session["id"], jpeg_bytes())).status_code == 201
    commit = f"/api/sessions/{session['id']}/commit"
    assert_error(await clinician.post(commit), 422, "CommitScopeMissing", "imageIds", "all")
    assert_error(await clinician.post(commit, json={}), 422, "InvalidRequest", "imageIds", "all")
    assert_error(await clinician.post(commit, json={"all": False}), 422, "InvalidRequest", "imageIds")
    both = await clinician.post(commit, json={"all": True, "imageIds": []})
    assert_error(both, 422, "InvalidRequest", "either")
    state = (await clinician.get(f"/api/sessions/{session['id']}")).json()
    assert state["status"] == "open"
    committed = await clinician.post(commit, json={"all": True})
    assert committed.status_code == 200, committed.text
    assert [r["status"] for r in committed.json()["results"]] == ["committed", "committed"]
