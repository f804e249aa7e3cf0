"""`consultcam serve` and `consultcam demo` as a practice's IT person runs them: real processes."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CsrfToken

CONSULTCAM = Path(sys.executable).with_name("consultcam")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTCAM_")}
    return {**env, "CONSULTCAM_DATA_DIR": str(data_dir), **extra}


def _trust(data_dir: Path) -> ssl.SSLContext:
    """Trust the self-signed certificate `serve` made, as a phone does once the user accepts it."""
    return ssl.create_default_context(cafile=data_dir / "tls" / "cert.pem")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """`consultcam serve --tls` on loopback (the LAN set-up, reachable here) with a fresh data directory."""
    port = _free_port()
    process = subprocess.Popen(
        [str(CONSULTCAM), "serve", "--host", "127.0.0.1", "--port", str(port), "--tls"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    cert = tmp_path / "tls" / "cert.pem"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if (
                cert.exists()
                and httpx.get(
                    f"https://127.0.0.1:{port}/healthz", verify=ssl.create_default_context(cafile=cert)
                ).status_code
                == 200
            ):
                break
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"consultcam serve did not start: {process.communicate()[0]}")
    yield process, f"https://127.0.0.1:{port}", tmp_path
    process.terminate()
    process.wait(timeout=10)


def test_serve_prints_a_login_link_that_signs_the_desktop_in(served):
    process, base, data_dir = served
    process.terminate()
    output = process.communicate(timeout=10)[0]
    token = (data_dir / "clinician-token").read_text().strip()
    assert (data_dir / "clinician-token").stat().st_mode & 0o077 == 0
    assert f"{base}/login?token={token}" in output
    assert len(token) >= 32


def test_login_link_sets_a_cookie_and_removes_the_token_from_the_address(served, tmp_path):
    _process, base, data_dir = served
    token = (data_dir / "clinician-token").read_text().strip()
    # A browser page sends back the CSRF token its answers carry (consultcam/web/guard.py).
    hooks = CsrfToken().hooks(asynchronous=False)
    with httpx.Client(base_url=base, verify=_trust(data_dir), event_hooks=hooks) as browser:
        assert browser.get("/").status_code == 401  # the sign-in page
        signed_in = browser.get(f"/login?token={token}&next=/sessions/abc", follow_redirects=False)
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/sessions/abc"
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "Secure" in cookie
        assert token not in cookie
        assert signed_in.headers["strict-transport-security"] == "max-age=31536000"  # HTTPS: HSTS
        assert browser.get("/").status_code == 200
        assert (
            browser.post(
                "/api/sessions", json={"encounterId": "e", "patient": {"id": "p", "name": "N"}}
            ).status_code
            == 201
        )
        wrong = httpx.get(f"{base}/login?token=wrong", verify=_trust(data_dir))
        assert wrong.status_code == 401
        offsite = browser.get(f"/login?token={token}&next=//evil.example/", follow_redirects=False)
        assert offsite.headers["location"] == "/"


def test_demo_opens_a_session_for_a_sample_patient(served):
    _, base, data_dir = served
    result = subprocess.run(
        [str(CONSULTCAM), "demo", "--url", base],
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    pairing = re.search(r"Phone \(scan the code above\): (\S+)", result.stderr + result.stdout)
    assert pairing
    assert pairing.group(1).startswith(f"{base}/m/")
    phone = httpx.post(
        f"{base}/api/pair", json={"token": pairing.group(1).rsplit("/", 1)[1]}, verify=_trust(data_dir)
    )
    assert phone.json()["session"]["patient"]["nhi"] == "ZZZ0016"


def test_demo_says_what_to_do_when_nothing_is_running(tmp_path):
    result = subprocess.run(
        [str(CONSULTCAM), "demo", "--url", f"http://127.0.0.1:{_free_port()}"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "make run" in result.stderr


def test_a_bad_setting_stops_serve_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [str(CONSULTCAM), "serve", "--host", "127.0.0.1", "--port", str(_free_port())],
        env=_env(tmp_path, CONSULTCAM_EMR_URL="ftp://nowhere"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[1:] == [
        "CONSULTCAM_EMR_URL=ftp://nowhere: unsupported EMR URL scheme 'ftp://'; use export://DIR "
        "(FHIR Bundle files), fhir+https://…, alex+https://…/FHIR or dicomweb+https://…; default export://"
    ]
