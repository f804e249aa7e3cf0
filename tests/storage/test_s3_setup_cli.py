"""`consultcam s3-setup` as an operator runs it: a real process against the S3 protocol server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONSULTCAM = Path(sys.executable).with_name("consultcam")


def run(tmp_path: Path, moto_endpoint: str, bucket: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTCAM_")}
    env |= {
        "CONSULTCAM_DATA_DIR": str(tmp_path),
        "CONSULTCAM_STORAGE_URL": f"s3://{bucket}/clinic",
        "CONSULTCAM_S3_ENDPOINT_URL": moto_endpoint,
    }
    return subprocess.run(
        [str(CONSULTCAM), "s3-setup", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_s3_setup_applies_the_rules_and_can_run_again(tmp_path, moto_endpoint, bucket, s3_admin):
    first = run(tmp_path, moto_endpoint, bucket, "--origin", "https://photos.example.org")
    assert first.returncode == 0, first.stderr
    rules = s3_admin.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert any("https://photos.example.org" in rule["AllowedOrigins"] for rule in rules)
    assert s3_admin.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"][
        "BlockPublicAcls"
    ]
    second = run(tmp_path, moto_endpoint, bucket, "--origin", "https://photos.example.org")
    assert second.returncode == 0, second.stderr


def test_s3_setup_needs_an_origin_and_an_existing_bucket(tmp_path, moto_endpoint, bucket):
    no_origin = run(tmp_path, moto_endpoint, bucket)
    assert no_origin.returncode == 2
    assert "--origin" in no_origin.stderr
    missing = run(tmp_path, moto_endpoint, f"{bucket}-missing", "--origin", "https://photos.example.org")
    assert missing.returncode == 2
    assert "create-bucket" in missing.stderr
