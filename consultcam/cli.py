"""The `consultcam` command: serve, demo, migrate, sweep.

`consultcam serve` on a LAN address serves HTTPS with a self-signed certificate (phones need a secure
context for the camera); `--host 127.0.0.1` serves plain HTTP for local use and tests.

Each command imports what it runs inside itself (the web app, boto3, taskiq, uvicorn), so `consultcam --help`
and the small commands start at once; none of these imports is needed to break a cycle (nothing imports
this module).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import ssl
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from consultcam.config import Settings, SettingsInvalid, lan_address, read_settings

app = typer.Typer(
    help="consultcam: clinical photography for GP consultations.", no_args_is_help=True, add_completion=False
)
# soft_wrap: a message stays on one line however narrow the terminal (logs and tests read them whole).
console = Console(stderr=True, soft_wrap=True)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def clinician_token(settings: Settings) -> str:
    """`CONSULTCAM_CLINICIAN_TOKEN`, else the one in DATA_DIR/clinician-token (0600), made at first start."""
    if settings.clinician_token:
        return settings.clinician_token
    path = settings.data_dir / "clinician-token"
    if not path.exists():
        from consultcam.files import write_private

        write_private(path, secrets.token_urlsafe(32).encode(), replace=False)  # the first start's wins
    return path.read_text().strip()


def _settings() -> Settings:
    """The settings from the environment; on any mistake, one line per problem naming the environment
    variable and what to set (never a secret's value), then exit status 2 (`config.read_settings`)."""
    try:
        return read_settings()
    except SettingsInvalid as exc:
        count = len(exc.problems)
        typer.echo(f"consultcam cannot start: {count} setting{'s' * (count != 1)} to fix.", err=True)
        for line in exc.problems:
            typer.echo(line, err=True)
        raise typer.Exit(2) from None


def _cannot_write(exc: OSError) -> NoReturn:
    """A folder or file the settings name cannot be made or written: one line, exit status 2."""
    where = f"{exc.filename}: " if exc.filename else ""
    typer.echo(
        f"consultcam cannot start: {where}{exc.strerror or exc}. Check CONSULTCAM_DATA_DIR (and any path in "
        "CONSULTCAM_DATABASE_URL, CONSULTCAM_STORAGE_URL or CONSULTCAM_EMR_URL): the folder must be one this "
        "user may create and write.",
        err=True,
    )
    raise typer.Exit(2) from exc


def _migrate(settings: Settings) -> None:
    from consultcam.db import migrate

    try:
        migrate(settings.resolved_database_url)
    except OSError as exc:
        if exc.filename:  # the SQLite file or its folder, not a server that does not answer
            _cannot_write(exc)
        _database_unreachable(exc)
    except Exception as exc:
        _database_unreachable(exc)


def _database_unreachable(exc: Exception) -> NoReturn:
    console.print(
        f"[red]Could not prepare the database[/red] ({type(exc).__name__}: {exc}). "
        "Check CONSULTCAM_DATABASE_URL and that the database server is running.",
        markup=True,
        highlight=False,
    )
    raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; a LAN address serves HTTPS.")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(help="TCP port.")] = 8443,
    tls: Annotated[
        bool | None, typer.Option("--tls/--no-tls", help="Default: HTTPS unless on loopback.")
    ] = None,
    migrate: Annotated[bool, typer.Option(help="Upgrade the database schema first.")] = True,
) -> None:
    """Start the web app on the embedded defaults (SQLite, folder store, in-process bus and queue)."""
    import uvicorn

    from consultcam.app import create_app

    _configure_logging()
    settings = _settings()
    use_tls = not _is_loopback(host) if tls is None else tls
    scheme = "https" if use_tls else "http"
    shown_host = lan_address() if host in ("0.0.0.0", "::") else host  # noqa: S104
    try:
        updates: dict[str, object] = {"clinician_token": clinician_token(settings)}
    except OSError as exc:
        _cannot_write(exc)
    if not settings.public_url:
        updates["public_url"] = f"{scheme}://{shown_host}:{port}"
    settings = settings.model_copy(update=updates)
    if migrate:
        _migrate(settings)
    _preflight(settings)
    try:
        app_ = create_app(settings)
    except ValueError as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except OSError as exc:
        _cannot_write(exc)
    certfile: str | None = None
    keyfile: str | None = None
    if use_tls:
        from consultcam.tls import ensure_self_signed

        try:
            cert, key = ensure_self_signed(settings.data_dir / "tls", [shown_host])
        except OSError as exc:
            _cannot_write(exc)
        certfile, keyfile = str(cert), str(key)
    base = settings.public_url
    console.print(f"\n[bold]consultcam[/bold] is starting on {scheme}://{shown_host}:{port}")
    console.print(f"Data: {settings.data_dir}   Commits go to: {settings.emr_url}")
    if settings.oidc_enabled and not settings.oidc_allow_embedded_token:
        issuer, audience = settings.oidc_issuer, settings.oidc_audience
        console.print(f"Clinicians sign in through {issuer} (audience {audience}).\n")
    else:
        console.print("Open the desktop (this link signs you in; keep it private):")
        console.print(
            f"    [bold cyan]{base}/login?token={settings.clinician_token}[/bold cyan]\n", soft_wrap=True
        )
    if use_tls:
        console.print("[dim]The certificate is self-signed: browsers ask once to trust it.[/dim]\n")
    # Proxy headers are the app's to judge (CONSULTCAM_TRUSTED_PROXIES, consultcam/web/proxy.py): uvicorn's
    # own handling would believe X-Forwarded-* from any local process.
    uvicorn.run(
        app_,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        proxy_headers=False,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )


def _preflight(settings: Settings) -> None:
    """Refuse to start, with a clear message and exit code 2, when the database or Redis does not answer."""
    from consultcam.bootstrap import Unreachable, build_runtime, preflight

    async def check() -> None:
        runtime = build_runtime(settings)
        try:
            await preflight(runtime)
        finally:
            await runtime.close()

    try:
        asyncio.run(check())
    except Unreachable as exc:
        reason = str(exc).rstrip(".")
        console.print(
            f"[red]Cannot start:[/red] {reason}. Check the setting and that the service is running."
        )
        raise typer.Exit(2) from exc
    except ValueError as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except OSError as exc:
        _cannot_write(exc)


def _configure_logging() -> None:
    """INFO to stderr for `serve` and `worker`, without the lines that are noise or say too much."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("taskiq").setLevel(logging.WARNING)  # one line per sweep is noise
    # httpx logs each request's full URL at INFO, query included (an NHI in a FHIR search): kit/http logs
    # its own line per answer instead, without the query.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@app.command()
def worker(
    metrics_port: Annotated[int, typer.Option(help="Serve Prometheus metrics on this port (0: off).")] = 0,
) -> None:
    """Run jobs from the Redis job queue (production; embedded mode runs them in the web process)."""
    import signal

    from consultcam.bootstrap import build_runtime
    from consultcam.worker import run_worker

    _configure_logging()
    settings = _settings()
    if not settings.redis_url:
        console.print(
            "[red]consultcam worker needs CONSULTCAM_REDIS_URL[/red]: without Redis, "
            "`consultcam serve` runs the jobs itself."
        )
        raise typer.Exit(2)
    _preflight(settings)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")

    async def main() -> None:
        runtime = build_runtime(settings)
        task = asyncio.create_task(run_worker(runtime))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        console.print("consultcam worker: taking jobs")
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            await runtime.close()

    asyncio.run(main())


@app.command("s3-setup")
def s3_setup(
    origin: Annotated[
        str | None, typer.Option(help="Origin the pages are served from (default: CONSULTCAM_PUBLIC_URL).")
    ] = None,
) -> None:
    """Check the S3 bucket; apply CORS, public access block, default encryption and the 1-day lifecycle
    backstop. Safe to run again."""
    from consultcam.storage.s3 import S3StoreError
    from consultcam.storage.setup import setup_bucket

    settings = _settings()
    public = origin or settings.public_url
    if not public:
        console.print("[red]Give --origin https://photos.example.org[/red] (or set CONSULTCAM_PUBLIC_URL).")
        raise typer.Exit(2)
    try:
        lines = asyncio.run(setup_bucket(settings, public))
    except (ValueError, S3StoreError) as exc:
        console.print(f"[red]s3-setup failed:[/red] {exc}")
        raise typer.Exit(2) from exc
    for line in lines:
        typer.echo(line)


@app.command("migrate")
def migrate_command() -> None:
    """Upgrade the database schema to the newest revision."""
    _migrate(_settings())
    console.print("Database is up to date.")


@app.command()
def sweep() -> None:
    """Run the sweeper once now (deletes what has expired) and print what it did."""
    from consultcam.bootstrap import build_runtime
    from consultcam.retention.sweeper import sweep as run_sweep

    settings = _settings()
    _migrate(settings)

    async def main() -> None:
        runtime = build_runtime(settings)
        try:
            console.print(await run_sweep(runtime.unit_of_work, runtime))
        finally:
            await runtime.close()

    asyncio.run(main())


@app.command()
def demo(
    url: Annotated[str, typer.Option(help="Base URL of the running consultcam.")] = "https://127.0.0.1:8443",
) -> None:
    """Open a capture session for a sample patient on a running consultcam and show its QR code here."""
    import httpx
    import segno

    settings = _settings()
    verify: bool | ssl.SSLContext = True
    cert = settings.data_dir / "tls" / "cert.pem"
    if url.startswith("https://") and cert.exists():
        verify = ssl.create_default_context(cafile=cert)  # our own self-signed certificate
    body: dict[str, Any] = {
        "encounterId": f"demo-{secrets.token_hex(4)}",
        "practitionerId": "demo-gp",
        "patient": {
            "id": "demo-patient",
            "name": "Aroha Demo-Patient",
            "nhi": "ZZZ0016",
            "birthDate": "1984-03-09",
        },
    }
    try:
        token = clinician_token(settings)
    except OSError as exc:
        _cannot_write(exc)
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/api/sessions",
            json=body,
            verify=verify,
            timeout=10,
            headers={"Authorization": f"Bearer {token}"},
        )
    except httpx.HTTPError as exc:
        console.print(
            f"[red]Could not reach consultcam at {url}[/red] ({exc}). Start it with `make run` first, "
            "or pass --url."
        )
        raise typer.Exit(2) from exc
    if response.status_code >= 400:
        console.print(f"[red]consultcam refused the demo session:[/red] {response.text}")
        raise typer.Exit(1)
    session = response.json()
    pairing_url = session["pairing"]["url"]
    segno.make(pairing_url, error="m").terminal(compact=True)
    console.print(f"\nSample patient: {body['patient']['name']} (NHI {body['patient']['nhi']})")
    console.print(f"Desktop: {url.rstrip('/')}/sessions/{session['id']}", soft_wrap=True)
    console.print(f"Phone (scan the code above): {pairing_url}", soft_wrap=True)


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
