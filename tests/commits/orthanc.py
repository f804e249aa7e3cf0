"""A real Orthanc with its DICOMweb plugin for the tests: free ports, a temporary storage folder, a generated
JSON configuration, no authentication, and only the loopback interface.

Debian packages `orthanc` and `orthanc-dicomweb` provide it (`/usr/sbin/Orthanc`, the plugin under
/usr/share/orthanc/plugins). `CONSULTCAM_TEST_ORTHANC` and `CONSULTCAM_TEST_ORTHANC_DICOMWEB_PLUGIN` point
elsewhere. When either is missing the tests that need it FAIL with a message saying what to install: they
never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)
INSTALL_HINT = "install the Debian packages: apt-get install orthanc orthanc-dicomweb"


def find_orthanc() -> str:
    explicit = os.environ.get("CONSULTCAM_TEST_ORTHANC")
    found = explicit or shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin")
    if not found or not os.access(found, os.X_OK):
        pytest.fail(f"Orthanc is not installed (no Orthanc executable found); {INSTALL_HINT}", pytrace=False)
    return found


def find_dicomweb_plugin() -> str:
    explicit = os.environ.get("CONSULTCAM_TEST_ORTHANC_DICOMWEB_PLUGIN")
    candidates = [explicit] if explicit else list(PLUGIN_CANDIDATES)
    if not explicit:
        candidates += sorted(str(p) for p in Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail(f"the Orthanc DICOMweb plugin is not installed (looked in {candidates}); {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class OrthancServer:
    process: subprocess.Popen[bytes]
    http_port: int
    dicom_port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The connector URL: dicomweb+http://127.0.0.1:PORT/dicom-web."""
        return f"dicomweb+http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def log(self) -> str:
        path = self.directory / "orthanc.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_orthanc(directory: Path, *, timeout: float = 30.0) -> OrthancServer:
    """Start Orthanc in `directory` and wait until its REST API and DICOMweb answer."""
    executable, plugin = find_orthanc(), find_dicomweb_plugin()
    directory.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "consultcam-test",
        "StorageDirectory": str(directory / "storage"),
        "IndexDirectory": str(directory / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "CONSULTCAMTEST",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "DicomServerEnabled": True,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": 1,
        "SaveJobs": False,
    }
    config_path = directory / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = (directory / "orthanc.log").open("wb")
    process = subprocess.Popen(
        [executable, str(config_path)], cwd=directory, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    server = OrthancServer(process, http_port, dicom_port, directory)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"Orthanc exited with code {process.returncode} on start:\n{server.log}")
        try:
            if (
                httpx.get(f"{server.url}/system", timeout=2).status_code == 200
                and httpx.get(f"{server.url}/dicom-web/studies", timeout=2).status_code == 200
            ):
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"Orthanc did not answer within {timeout:.0f} s:\n{server.log}")
        time.sleep(0.1)
