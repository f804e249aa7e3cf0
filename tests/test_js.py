"""The pages' pure JavaScript modules under node's own test runner (tests/js/*.test.mjs), and the image
editor's `edits` checked by the server's validate_edits. Node comes from Debian (`nodejs` in the
Makefile's DEBIAN_TEST_PACKAGES); there is no npm and no build step."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from consultcam.images.processing.edits import validate_edits

ROOT = Path(__file__).resolve().parents[1]
JS_TESTS = ROOT / "tests" / "js"
NODE = shutil.which("node") or shutil.which("nodejs")

pytestmark = pytest.mark.skipif(
    NODE is None, reason="node is not installed: `make system-deps` installs Debian's nodejs"
)


def run_node(*args: str) -> subprocess.CompletedProcess[str]:
    """Run node from the repository root; `NODE` is known to be set (the module is skipped without it)."""
    assert NODE is not None
    return subprocess.run([NODE, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_node_tests_pass() -> None:
    """Every tests/js/*.test.mjs passes; a failure shows node's own report."""
    files = sorted(str(path.relative_to(ROOT)) for path in JS_TESTS.glob("*.test.mjs"))
    assert files, f"no *.test.mjs files in {JS_TESTS}"
    result = run_node("--test", "--test-reporter=spec", *files)
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"


def test_editor_edits_pass_the_servers_validation() -> None:
    """What the edit model sends after many mixed editing sessions is accepted, unchanged, by
    processing.validate_edits (the PATCH endpoint's check)."""
    result = run_node(str(JS_TESTS / "edit-sessions.mjs"))
    assert result.returncode == 0, result.stderr
    sessions = json.loads(result.stdout)
    assert len(sessions) == 200
    for edits in sessions:
        if edits == {}:
            continue
        assert validate_edits(edits) == edits, json.dumps(edits)
