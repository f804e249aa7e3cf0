"""Bad settings stop every `consultcam` command with one line per problem naming the environment variable and
what to set, exit status 2, no traceback, and never a secret's value (issue 10, "Bad settings").

Every field of Settings must have a bad value in BAD: a new setting without one fails
`test_every_setting_is_refused_with_one_line_naming_its_variable`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consultcam import cli
from consultcam.commits.connectors.registry import connector_from_url
from consultcam.config import EMR_SCHEMES, Settings, env_name

CONSULTCAM = Path(sys.executable).with_name("consultcam")
#: Every secret below contains it; no output may.
SECRET = "hunter2"

#: A bad value for every setting, as environment variables without the prefix. Several variables where the
#: problem is between settings (the first named is the field's own); "{file}" is a path to a regular file.
BAD: dict[str, dict[str, str]] = {
    "data_dir": {"DATA_DIR": "{file}"},
    "database_url": {"DATABASE_URL": f"nonsense://admin:{SECRET}-db@db.example.org/consultcam"},
    "storage_url": {"STORAGE_URL": "ftp://files.example.org/photos"},
    "redis_url": {"REDIS_URL": f"http://:{SECRET}-redis@cache.example.org:6379/0"},
    "redis_prefix": {"REDIS_PREFIX": "consult cam"},
    "emr_url": {"EMR_URL": "ftp://emr.example.org/inbox"},
    "public_url": {"PUBLIC_URL": "https://photos.example.org/?practice=1"},
    "clinician_token": {"CLINICIAN_TOKEN": f"{SECRET} clinician token"},
    "secret": {"SECRET": SECRET},
    "pairing_ttl_seconds": {"PAIRING_TTL_SECONDS": "5"},
    "session_idle_minutes": {"SESSION_IDLE_MINUTES": "0"},
    "retention_hours": {"RETENTION_HOURS": "0"},
    "max_images": {"MAX_IMAGES": "abc"},
    "max_upload_bytes": {"MAX_UPLOAD_BYTES": "10MB"},
    "fhir_max_request_bytes": {"FHIR_MAX_REQUEST_BYTES": "1000"},
    "fhir_max_transaction_entries": {"FHIR_MAX_TRANSACTION_ENTRIES": "0"},
    "mhd_source_id": {"MHD_SOURCE_ID": "1.2.840.10008"},
    "max_image_pixels": {"MAX_IMAGE_PIXELS": "1000"},
    "capture_max_edge_px": {"CAPTURE_MAX_EDGE_PX": "100"},
    "capture_max_bytes": {"CAPTURE_MAX_BYTES": "1024"},
    "upload_url_ttl_seconds": {"UPLOAD_URL_TTL_SECONDS": "7200"},
    "download_url_ttl_seconds": {"DOWNLOAD_URL_TTL_SECONDS": "3600"},
    "sweep_interval_seconds": {"SWEEP_INTERVAL_SECONDS": "-1"},
    "consent_required": {"CONSENT_REQUIRED": "maybe"},
    "phone_can_commit": {"PHONE_CAN_COMMIT": "sometimes"},
    "required_metadata": {"REQUIRED_METADATA": "bodySite,colour"},
    "ai_base_url": {"AI_BASE_URL": "http://ai.example.org/v1", "AI_MODEL": "llava"},
    "ai_model": {"AI_MODEL": " ", "AI_BASE_URL": "https://ai.example.org/v1"},
    "ai_api_key": {"AI_API_KEY": f"sk-{SECRET}\nX-Injected: 1"},
    "ai_timeout_seconds": {"AI_TIMEOUT_SECONDS": "0"},
    "ai_concurrency": {"AI_CONCURRENCY": "100"},
    "ai_max_retries": {"AI_MAX_RETRIES": "-1"},
    "s3_endpoint_url": {"S3_ENDPOINT_URL": "minio:9000"},
    "s3_sse_kms_key_id": {"S3_SSE_KMS_KEY_ID": "alias/photo key"},
    "oidc_issuer": {"OIDC_ISSUER": "http://login.example.org/realms/practice", "OIDC_AUDIENCE": "consultcam"},
    "oidc_audience": {"OIDC_AUDIENCE": "consultcam"},
    "oidc_jwks_url": {"OIDC_JWKS_URL": "http://login.example.org/jwks"},
    "oidc_algorithms": {"OIDC_ALGORITHMS": "RS256,HS256"},
    "oidc_leeway_seconds": {"OIDC_LEEWAY_SECONDS": "3600"},
    "oidc_clinician_claim": {
        "OIDC_CLINICIAN_CLAIM": " ",
        "OIDC_ISSUER": "https://login.example.org",
        "OIDC_AUDIENCE": "consultcam",
    },
    "oidc_jwks_cache_seconds": {"OIDC_JWKS_CACHE_SECONDS": "1"},
    "oidc_http_timeout_seconds": {"OIDC_HTTP_TIMEOUT_SECONDS": "0"},
    "oidc_allow_embedded_token": {"OIDC_ALLOW_EMBEDDED_TOKEN": "perhaps"},
    "body_sites_extension": {"BODY_SITES_EXTENSION": "{file}"},
    "capture_before_session_hours": {"CAPTURE_BEFORE_SESSION_HOURS": "-1"},
    "capture_clock_skew_seconds": {"CAPTURE_CLOCK_SKEW_SECONDS": "86400"},
    "commit_lease_seconds": {"COMMIT_LEASE_SECONDS": "1"},
    "decode_memory_budget_mb": {"DECODE_MEMORY_BUDGET_MB": "16"},
    "decode_wait_seconds": {"DECODE_WAIT_SECONDS": "0"},
    "decode_threads": {"DECODE_THREADS": "-2"},
    "max_pending_uploads": {"MAX_PENDING_UPLOADS": "0"},
    "frame_ancestors": {"FRAME_ANCESTORS": "https://emr.example.org/path;script-src *"},
    "trusted_proxies": {"TRUSTED_PROXIES": "10.0.0.0/33"},
    "hsts_seconds": {"HSTS_SECONDS": "-5"},
    "max_json_body_bytes": {"MAX_JSON_BODY_BYTES": "12"},
    "max_edit_body_bytes": {"MAX_EDIT_BODY_BYTES": "lots"},
    "streams_per_session": {"STREAMS_PER_SESSION": "0"},
    "streams_per_credential": {"STREAMS_PER_CREDENTIAL": "many"},
    "signin_idle_minutes": {"SIGNIN_IDLE_MINUTES": "1"},
    "signin_max_hours": {"SIGNIN_MAX_HOURS": "0"},
    "rate_limit_login": {"RATE_LIMIT_LOGIN": "lots"},
    "rate_limit_pair": {"RATE_LIMIT_PAIR": "0/minute"},
    "emr_bearer_token": {"EMR_BEARER_TOKEN": f"{SECRET} bearer token"},
    "emr_token_url": {"EMR_TOKEN_URL": "http://login.example.org/token"},
    "emr_client_id": {"EMR_CLIENT_ID": "consult\tcam"},
    "emr_client_secret": {"EMR_CLIENT_SECRET": f"{SECRET}\tsecret"},
    "emr_scope": {"EMR_SCOPE": 'patient/Media.write "all"'},
    "alex_token_url": {"ALEX_TOKEN_URL": "ftp://login.example.org/token"},
    "alex_client_id": {"ALEX_CLIENT_ID": "consultcam\x7f"},
    "alex_client_secret": {"ALEX_CLIENT_SECRET": f"{SECRET}\x1b[2J"},
    "alex_scope": {"ALEX_SCOPE": "patient\\Media.write"},
    "alex_launch_url": {"ALEX_LAUNCH_URL": "http://alex.example.org"},
    "oidc_client_id": {"OIDC_CLIENT_ID": "consult\ncam"},
    "oidc_client_secret": {"OIDC_CLIENT_SECRET": f"{SECRET}\nsecret"},
    "smart_issuers": {"SMART_ISSUERS": "https://ehr.example.org/fhir,http://ehr.example.org/fhir"},
    "smart_client_id": {"SMART_CLIENT_ID": "consultcam\x7f"},
    "smart_client_secret": {"SMART_CLIENT_SECRET": f"{SECRET}\x1b[2J"},
    "smart_offline_access": {"SMART_OFFLINE_ACCESS": "perhaps"},
}


def environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This process's environment without any CONSULTCAM_ variable, DATA_DIR in `tmp_path`, then
    `settings` (names without the prefix)."""
    regular = tmp_path / "a-file"
    regular.write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CONSULTCAM_")}
    env["CONSULTCAM_DATA_DIR"] = str(tmp_path / "data")
    env |= {f"CONSULTCAM_{name}": value.replace("{file}", str(regular)) for name, value in settings.items()}
    return env


def problems_of(stderr: str) -> list[str]:
    """The problem lines after the heading, checked for what must never be there."""
    lines = stderr.splitlines()
    assert lines, "nothing was printed"
    assert lines[0].startswith("consultcam cannot start: "), stderr
    for line in lines:
        assert "Traceback" not in line, stderr
        assert "pydantic" not in line, stderr
        assert "[type=" not in line, stderr
        assert SECRET not in line, stderr
    return lines[1:]


def run_in_process(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli.app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_refused_with_one_line_naming_its_variable(
    field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if field not in BAD:
        pytest.fail(f"no bad value for {env_name(field)}: add one to BAD in {__file__}")
    code, stdout, stderr = run_in_process(monkeypatch, environment(tmp_path, **BAD[field]), "migrate")
    assert code == 2, stderr
    assert stdout == ""
    problems = problems_of(stderr)
    assert len(problems) == 1, stderr
    assert env_name(field) in problems[0], stderr
    assert not (tmp_path / "data").exists()  # refused before anything was made


def test_a_number_says_its_range_unit_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(tmp_path, PAIRING_TTL_SECONDS="5")
    _, _, stderr = run_in_process(monkeypatch, env, "migrate")
    assert problems_of(stderr) == [
        "CONSULTCAM_PAIRING_TTL_SECONDS=5: must be a whole number from 30 to 3600 (seconds); default 600"
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = ("PAIRING_TTL_SECONDS", "MAX_IMAGES", "DATABASE_URL", "PUBLIC_URL", "SECRET", "CONSENT_REQUIRED")
    env = environment(tmp_path, **{name: BAD[name.lower()][name] for name in wrong})
    code, _, stderr = run_in_process(monkeypatch, env, "migrate")
    assert code == 2
    problems = problems_of(stderr)
    assert stderr.splitlines()[0] == "consultcam cannot start: 6 settings to fix."
    assert sorted(line.split("=", 1)[0] for line in problems) == sorted(f"CONSULTCAM_{n}" for n in wrong)


def test_a_url_is_shown_without_its_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(tmp_path, DATABASE_URL=f"mysql://admin:{SECRET}@db.example.org/x?password={SECRET}")
    _, _, stderr = run_in_process(monkeypatch, env, "migrate")
    (line,) = problems_of(stderr)
    assert line.startswith("CONSULTCAM_DATABASE_URL=mysql://admin:***@db.example.org/x?password=***: ")
    assert "unsupported database URL scheme 'mysql://'" in line


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["migrate"], ["sweep"], ["s3-setup"], ["demo"]])
def test_every_command_that_reads_settings_stops_the_same_way(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(tmp_path, MAX_IMAGES="abc", REDIS_URL="redis://127.0.0.1:6379/0")
    code, _, stderr = run_in_process(monkeypatch, env, *command)
    assert code == 2, stderr
    assert problems_of(stderr) == [
        "CONSULTCAM_MAX_IMAGES=abc: must be a whole number from 1 to 500; default 50"
    ]


def test_serve_as_a_process_prints_one_line_per_problem_and_exits_2(tmp_path: Path) -> None:
    env = environment(
        tmp_path,
        PAIRING_TTL_SECONDS="5",
        DATABASE_URL=BAD["database_url"]["DATABASE_URL"],
        MAX_IMAGES="abc",
        CLINICIAN_TOKEN=BAD["clinician_token"]["CLINICIAN_TOKEN"],
    )
    result = subprocess.run(
        [str(CONSULTCAM), "serve", "--host", "127.0.0.1", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert problems_of(result.stderr) == [
        "CONSULTCAM_DATABASE_URL=nonsense://admin:***@db.example.org/consultcam: unsupported database URL "
        "scheme 'nonsense://'; use postgresql://user:password@host:5432/dbname (PostgreSQL through asyncpg) "
        "or sqlite:///path/to/consultcam.db; default unset",
        "CONSULTCAM_CLINICIAN_TOKEN=(hidden): must be printable ASCII without spaces (at most 2048 "
        "characters); default unset",
        "CONSULTCAM_PAIRING_TTL_SECONDS=5: must be a whole number from 30 to 3600 (seconds); default 600",
        "CONSULTCAM_MAX_IMAGES=abc: must be a whole number from 1 to 500; default 50",
    ]


@pytest.mark.parametrize(
    ("command", "settings", "variable"),
    [
        (
            ["serve"],
            {"AI_BASE_URL": "http://ai.example.org/v1", "AI_MODEL": "llava"},
            "CONSULTCAM_AI_BASE_URL",
        ),
        (["serve"], {"PUBLIC_URL": "photos.example.org"}, "CONSULTCAM_PUBLIC_URL"),
        (
            ["worker"],
            {"REDIS_URL": "redis://127.0.0.1:6379/0", "RETENTION_HOURS": "0"},
            "CONSULTCAM_RETENTION",
        ),
    ],
)
def test_serve_and_worker_as_processes_name_the_variable(
    command: list[str], settings: dict[str, str], variable: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(CONSULTCAM), *command],
        env=environment(tmp_path, **settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    (line,) = problems_of(result.stderr)
    assert line.startswith(variable), line


@pytest.mark.parametrize("command", [["serve", "--host", "127.0.0.1", "--port", "9"], ["migrate"]])
def test_a_data_dir_that_cannot_be_made_stops_with_one_line(command: list[str], tmp_path: Path) -> None:
    env = environment(tmp_path)
    env["CONSULTCAM_DATA_DIR"] = "/proc/consultcam-test/data"  # even root cannot make a folder there
    result = subprocess.run(
        [str(CONSULTCAM), *command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("consultcam cannot start: /proc/consultcam-test"), line
    assert "CONSULTCAM_DATA_DIR" in line


def test_the_emr_schemes_checked_with_the_settings_are_the_connectors_own(tmp_path: Path) -> None:
    refused = []
    for scheme in EMR_SCHEMES:
        try:
            connector_from_url(f"{scheme}://127.0.0.1/x", Settings(data_dir=tmp_path))
        except ValueError as exc:  # e.g. credentials missing: not a refused scheme
            refused += [scheme] if "unsupported" in str(exc) else []
    assert refused == []
    with pytest.raises(ValueError, match="unsupported EMR URL scheme"):
        connector_from_url("ftp://127.0.0.1/x", Settings(data_dir=tmp_path))


def test_an_oidc_client_without_its_issuer_or_secret_stops_with_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONSULTCAM_OIDC_CLIENT_ID alone would send clinicians nowhere: the issuer, audience and the client
    secret go with it (a confidential client)."""
    env = environment(tmp_path, OIDC_CLIENT_ID="consultcam")
    code, _, stderr = run_in_process(monkeypatch, env, "migrate")
    assert code == 2
    assert "CONSULTCAM_OIDC_CLIENT_ID needs CONSULTCAM_OIDC_ISSUER" in stderr
    assert "_CLIENT_SECRET" in stderr
