"""An S3 protocol server for tests: moto's server mode in a subprocess on a free loopback port.

It speaks real HTTP, so boto3 and httpx talk to it exactly as they would to S3 or MinIO. It does not check
request signatures (what it cannot prove is checked against botocore's own signer in test_s3_store.py).
Reusable by other suites: `from tests.storage.moto_server import start_moto_server`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.harness import free_port

REGION = "ap-southeast-2"
ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"


@dataclass
class MotoServer:
    endpoint: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_moto_server(log_path: Path, timeout: float = 30.0) -> MotoServer:
    """Start `python -m moto.server` on 127.0.0.1:<free port>; returns once it answers HTTP."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"moto_server exited with {process.returncode}: {log_path.read_text()[-2000:]}"
            )
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
            return MotoServer(endpoint, process)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"moto_server did not answer on {endpoint} within {timeout} s")
