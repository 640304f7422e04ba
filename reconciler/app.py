"""The reconciler's HTTP service: health, metrics, status API, GitHub webhook, dashboard.

Every response carries the security headers; the API description is served as /openapi.json to
readers only, and no documentation pages (they load scripts from a CDN)."""

from __future__ import annotations

import hmac
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler import dashboard
from reconciler.config import ServiceSettings
from reconciler.metrics import Metrics
from reconciler.service import ApprovalRefused, Reconciler
from reconciler.store import Store
from reconciler.webhooks import PayloadError, payload, push_to, signature_ok

SECURITY_HEADERS = {
    "Content-Security-Policy": dashboard.CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware: SECURITY_HEADERS on every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: ServiceSettings) -> FastAPI:
    assert settings.state_dir is not None  # decided when the settings were read
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.database)
    reconciler = Reconciler(settings, store, Metrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        reconciler.start()
        yield
        reconciler.stop()  # SIGTERM: finish the pass under way (bounded), then stop

    app = FastAPI(
        title="stackward reconciler", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_middleware(SecurityHeaders)
    app.state.reconciler = reconciler

    def authorised(request: Request) -> None:
        header = request.headers.get("authorization", "")
        token = settings.api_token
        if not token or not hmac.compare_digest(header, f"Bearer {token}"):
            raise HTTPException(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )

    def readable(request: Request) -> None:
        if settings.read_requires_token:
            authorised(request)

    def known(name: str) -> None:
        if name not in reconciler.environments():
            raise HTTPException(404, f"no environment named {name!r}")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Ready when the loop runs, the database answers and the source is checked out and
        fetched; each check says "ok" or what is wrong (never a URL or an error's text)."""
        try:
            store.ping()
            database = "ok"
        except SQLAlchemyError:
            database = "the database does not answer"
        checks = {
            "loop": "ok" if reconciler.running else "the reconcile loop is not running",
            "database": database,
            "source": reconciler.source.problem() or "ok",
        }
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(request: Request) -> dict:
        readable(request)
        return app.openapi()

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        readable(request)
        return Response(reconciler.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/api/environments")
    def environments(request: Request) -> list[dict]:
        readable(request)
        return [reconciler.status(name).to_dict() for name in reconciler.environments()]

    @app.get("/api/environments/{name}")
    def environment(name: str, request: Request) -> dict:
        readable(request)
        known(name)
        return reconciler.status(name).to_dict()

    @app.get("/api/environments/{name}/history")
    def history(name: str, request: Request) -> list[dict]:
        readable(request)
        known(name)
        return reconciler.history(name)

    @app.post("/api/environments/{name}/reconcile", status_code=202)
    def reconcile(name: str, request: Request) -> dict:
        authorised(request)
        known(name)
        reconciler.request(name)
        return {"queued": name}

    @app.post("/api/environments/{name}/suspend")
    def suspend(name: str, request: Request) -> dict:
        authorised(request)
        known(name)
        return reconciler.set_suspended(name, True).to_dict()

    @app.post("/api/environments/{name}/resume")
    def resume(name: str, request: Request) -> dict:
        authorised(request)
        known(name)
        return reconciler.set_suspended(name, False).to_dict()

    @app.post("/api/environments/{name}/approve")
    async def approve(name: str, request: Request) -> JSONResponse:
        authorised(request)
        known(name)
        try:
            body = await request.json()
        except ValueError:
            body = None
        plan_hash = body.get("plan_hash") if isinstance(body, dict) else None
        if not isinstance(plan_hash, str):
            return JSONResponse(
                {"error": 'send {"plan_hash": "<the hash waiting for approval>"}'}, status_code=400
            )
        try:
            approved = await run_in_threadpool(
                reconciler.approve, name, plan_hash
            )  # it waits on the database
            return JSONResponse(approved.to_dict())
        except ApprovalRefused as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)

    @app.post("/webhooks/github")
    async def github_webhook(request: Request) -> JSONResponse:
        length = int(request.headers.get("content-length") or 0)
        if length > settings.webhook_max_bytes:
            return JSONResponse({"error": "payload too large"}, status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.webhook_max_bytes:
                return JSONResponse({"error": "payload too large"}, status_code=413)
        if not signature_ok(settings.webhook_secret, body, request.headers.get("x-hub-signature-256")):
            return JSONResponse({"error": "missing or invalid X-Hub-Signature-256"}, status_code=401)
        event_name = request.headers.get("x-github-event", "")
        if event_name == "ping":
            return JSONResponse({"pong": True})
        if event_name != "push":
            return JSONResponse(
                {"ignored": f"{event_name or 'unknown'} events do not trigger reconciles"}, status_code=202
            )
        try:
            event = payload(body, request.headers.get("content-type"))
        except PayloadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        delivery = request.headers.get("x-github-delivery", "")
        if delivery and not store.first_delivery(delivery):  # recorded only once it parsed
            return JSONResponse({"ignored": "delivery already received"}, status_code=202)
        why = push_to(event, settings.branch)
        if why:
            return JSONResponse({"ignored": why}, status_code=202)
        reconciler.request()
        return JSONResponse({"queued": reconciler.environments()}, status_code=202)

    commit_url = (
        f"{settings.remote.removesuffix('.git')}/commit/" if settings.remote.startswith("https://") else ""
    )

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> str:
        readable(request)
        return dashboard.overview([reconciler.status(n) for n in reconciler.environments()], commit_url)

    @app.get("/environments/{name}", response_class=HTMLResponse)
    def environment_page(name: str, request: Request) -> str:
        readable(request)
        known(name)
        return dashboard.environment_page(reconciler.status(name), reconciler.history(name), commit_url)

    return app
