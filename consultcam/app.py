"""The FastAPI application: routers, security headers, health, readiness and metrics.

`create_app(settings)` builds the runtime (one adapter per port, `bootstrap.build_runtime`) and an app whose
lifespan starts the job queue (with every task registered: `consultcam.worker`) and, in embedded mode, the
periodic sweeper, and closes them on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consultcam import metrics, openapi, worker
from consultcam.auth.endpoints import router as auth_router
from consultcam.bootstrap import build_runtime, check_database
from consultcam.commits.endpoints import router as commits_router
from consultcam.config import Settings, read_settings
from consultcam.events.endpoints import router as events_router
from consultcam.images.endpoints import router as images_router
from consultcam.launch.endpoints import router as launch_router
from consultcam.launch.smart_endpoints import router as smart_launch_router
from consultcam.runtime import Runtime
from consultcam.sessions.endpoints import router as sessions_router
from consultcam.storage.endpoints import router as storage_router
from consultcam.terminology.endpoints import router as terminology_router
from consultcam.web.errors import install_error_handlers
from consultcam.web.guard import RequestGuard, origin_of, page_csrf_token
from consultcam.web.pages import router as pages_router
from consultcam.web.pages import templates as page_templates
from consultcam.web.proxy import TrustedProxyHeaders

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "web" / "static"


def security_headers(
    store_origin: str | None = None, frame_ancestors: Sequence[str] = (), form_origin: str | None = None
) -> dict[bytes, bytes]:
    """Sent with every response. Photos and patient details must never sit in a browser or proxy cache, pages
    must not leak the QR token through Referer, only this origin may use the camera, and only
    `frame_ancestors` may frame a page.

    `store_origin` (`ObjectStore.public_origin`: the S3 endpoint the presigned URLs point at) is added to the
    CSP's `connect-src` (the phone PUTs there) and `img-src` (galleries load photos from there); with the
    folder store the app serves the URLs itself and `'self'` is enough.

    `frame_ancestors` (`CONSULTCAM_FRAME_ANCESTORS`, validated by Settings): CSP 3 `frame-ancestors` sources;
    empty means `'none'`. `X-Frame-Options` (RFC 7034) goes with it for older browsers: `DENY` for `'none'`,
    `SAMEORIGIN` for `'self'` alone, and none at all for a list of origins, which it cannot express (a
    browser that knows CSP ignores it then anyway).

    `form_origin`: the identity provider's origin with OIDC browser sign-in, added to `form-action`: the
    sign-out form without script is redirected to its end-session endpoint, and browsers apply
    `form-action` to a form's redirects too (CSP 3 §6.2.1).

    Raises ValueError for an origin or source that is not one plain `scheme://host[:port]` or keyword (it is
    written into the header)."""
    extra = ""
    for value in (store_origin or "", *frame_ancestors, form_origin or ""):
        if any(c in value for c in ' ;,"\r\n\t') or ("://" not in value and value not in ("", "'self'")):
            raise ValueError(f"{value!r} cannot go into a CSP.")
    if store_origin:
        extra = f" {store_origin}"
    ancestors = " ".join(frame_ancestors) or "'none'"
    csp = (
        f"default-src 'self'; img-src 'self'{extra} data: blob:; media-src 'self' blob:; "
        f"worker-src 'self' blob:; connect-src 'self'{extra}; style-src 'self'; "
        "script-src 'self'; object-src 'none'; base-uri 'none'; "
        f"form-action 'self'{' ' + form_origin if form_origin else ''}; "
        f"frame-ancestors {ancestors}"
    )
    headers = {
        b"referrer-policy": b"no-referrer",
        b"x-content-type-options": b"nosniff",
        b"permissions-policy": b"camera=(self), microphone=(), geolocation=()",
        b"content-security-policy": csp.encode(),
    }
    frame_options = {"'none'": b"DENY", "'self'": b"SAMEORIGIN"}.get(ancestors)
    if frame_options:
        headers[b"x-frame-options"] = frame_options
    return headers


#: The headers with the folder store (everything same-origin).
SECURITY_HEADERS = security_headers()


class SecurityHeaders:
    """Pure ASGI middleware (streams untouched, SSE included): security headers on every response,
    `Cache-Control: no-store` unless a static asset, HSTS over HTTPS, and request metrics by route template.

    `hsts_seconds` > 0: `Strict-Transport-Security: max-age=<n>` on responses to HTTPS requests (RFC 6797
    §7.2: never over plain HTTP), the scheme being the proxy's word when it is trusted (`web.proxy`)."""

    def __init__(
        self, app: ASGIApp, headers: dict[bytes, bytes] | None = None, hsts_seconds: int = 0
    ) -> None:
        self.app = app
        self.headers = headers or SECURITY_HEADERS
        self.hsts = {b"strict-transport-security": f"max-age={hsts_seconds}".encode()} if hsts_seconds else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        static = scope["path"].startswith("/static/")
        status_code = 500
        ours_only = {**self.headers, **(self.hsts if scope["scheme"] == "https" else {})}

        async def send_with_headers(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                ours = {*ours_only, *self.hsts, b"cache-control"} if not static else {*ours_only, *self.hsts}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in ours]
                headers += list(ours_only.items())
                headers.append((b"cache-control", b"no-cache" if static else b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "static" if static else "unmatched")
            metrics.REQUESTS.labels(scope["method"], path, str(status_code)).inc()
            metrics.REQUEST_SECONDS.labels(scope["method"], path).observe(time.perf_counter() - started)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The consultcam web app for `settings` (read from the environment when None).

    Raises `consultcam.config.SettingsInvalid` (one line per problem, naming the environment variable) when
    the environment's settings are refused, and ValueError, naming the setting, when a port's URL is
    unsupported: at construction, not at the first request. The app runs one lifespan; its runtime is closed
    when that ends.
    """
    settings = settings or read_settings()
    runtime = build_runtime(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await worker.start(runtime)
        # Embedded mode sweeps from the web process; with Redis, `consultcam worker` processes do.
        sweeper = asyncio.create_task(worker.run_periodic_sweeper(runtime)) if runtime.redis is None else None
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await worker.stop(runtime)
            await runtime.close()

    app = FastAPI(
        title="consultcam",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        generate_unique_id_function=openapi.operation_id,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    routers = (
        sessions_router,
        images_router,
        commits_router,
        events_router,
        terminology_router,
        pages_router,
        auth_router,
        launch_router,
        smart_launch_router,
    )
    for router in routers:
        app.include_router(router)
    openapi.install(app, routers)
    if settings.resolved_storage_url.startswith("file://"):
        app.include_router(storage_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # The pages carry their CSRF token (<meta name="csrf-token">, the sign-in form's field).
    page_templates.env.globals["csrf_token"] = page_csrf_token
    # Outermost last: the proxy's word (scheme, client) first, then the headers, then the request guard.
    app.add_middleware(RequestGuard, settings=settings)
    app.add_middleware(
        SecurityHeaders,
        headers=security_headers(
            runtime.store.public_origin,
            settings.frame_ancestors,
            origin_of(settings.oidc_issuer) if settings.oidc_login_enabled else None,
        ),
        hsts_seconds=settings.hsts_seconds,
    )
    app.add_middleware(TrustedProxyHeaders, trusted=settings.trusted_proxies)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the database, the object store, the event bus and the EMR connector each answer."""
        runtime: Runtime = request.app.state.runtime
        checks: dict[str, Any] = {}
        for name, probe in (
            ("database", check_database(runtime)),
            ("store", runtime.store.check()),
            ("bus", runtime.bus.check()),
            ("connector", runtime.connector.check()),
        ):
            try:
                await asyncio.wait_for(probe, timeout=3)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"error: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        """Prometheus exposition format."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
