"""The supervisor's composition root: state store, manager, Starlette app,
embedded Hypercorn, signals (handlers only set events), sd_notify.
Imports: stdlib + starlette + hypercorn + shared + supervisor (never worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import msgspec
import structlog
from hypercorn.asyncio import serve
from hypercorn.config import Config as HyperConfig
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared import logs
from shared.spec.load import SpecInvalid, SpecMalformed, encode_spec, load_file, spec_files
from shared.states import Desired
from shared.store import StoreUnavailable, open_store
from shared.store.base import StateStore
from shared.where import state_url_where
from supervisor import console, metrics, systemd
from supervisor.api import errors, openapi
from supervisor.api.routes import ROUTES
from supervisor.manager import Conflict, PipelineManager

if TYPE_CHECKING:
    from shared.store.postgres import PgStore

# the console page and its files are public; every call they make needs the token
OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/openapi.json", *console.OPEN_PATHS}


@dataclass
class ServeConfig:
    configs: list[str] = field(default_factory=list)
    state_dir: str = ".tidegate"
    api_addr: str = "127.0.0.1:8080"
    log_format: str = "console"
    log_level: str = "info"
    token: str | None = None
    state_url: str | None = None  # postgresql://... shared state store with per-pipeline leases
    node_id: str | None = None  # this supervisor's name in the leases (default <hostname>-<pid>)


class AuthMiddleware:
    """Bearer token on every route but the open ones; constant-time comparison."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.expected is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        got = b""
        for k, v in scope.get("headers", []):
            if k == b"authorization":
                got = v
                break
        if not hmac.compare_digest(got, self.expected):
            hdrs = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
            resp = errors.error_response(
                "unauthorized",
                "missing or wrong bearer token (Authorization: Bearer ...)",
                headers={"www-authenticate": 'Bearer realm="tidegate"', **errors.unread_body_headers(hdrs)},
            )
            await resp(scope, receive, send)
            return
        await self.app(scope, receive, send)


def build_app(manager: PipelineManager, token: str | None) -> Any:
    registry = metrics.build_registry(manager)
    doc = msgspec.json.encode(openapi.build())

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi_route(request: Request) -> Response:
        return Response(doc, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {"manager": manager}

    handlers: dict[Any, Any] = {HTTPException: errors.http_exception, Exception: errors.handle}
    for exc in (errors.ApiError, SpecInvalid, SpecMalformed, msgspec.ValidationError):
        handlers[exc] = errors.handle
    from supervisor.manager import NotFound

    handlers[StoreUnavailable] = errors.handle
    handlers[NotFound] = errors.handle
    handlers[Conflict] = errors.handle
    app = Starlette(
        routes=[
            *ROUTES,
            Route("/metrics", metrics_route),
            Route("/openapi.json", openapi_route),
            *console.build_routes(),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    return AuthMiddleware(app, token)


def check_processor_fn() -> Any:
    try:
        from supervisor.jscheck import check_javascript

        return check_javascript
    except ImportError:
        return None


def load_config_specs(paths: list[str], check: Any) -> tuple[list[Any], list[str]]:
    specs, problems = [], []
    for f in spec_files(paths):
        spec, trouble = load_file(f, check_processor=check)
        if spec is not None:
            specs.append(spec)
        problems.extend(trouble)
    return specs, problems


def seed_store(store: StateStore, specs: list[Any], skip: Any = None) -> None:
    """Config specs at start: created, or updated when they differ (desired state kept).
    `skip(name)`: leave that one alone (shared store: another live node runs it)."""
    for spec in specs:
        row = store.get_pipeline(spec.metadata.name)
        data = encode_spec(spec)
        if row is not None and skip is not None and skip(spec.metadata.name):
            continue
        if row is None:
            store.put_pipeline(spec.metadata.name, data, Desired.RUNNING.value)
        elif row.spec != data:
            store.put_pipeline(
                spec.metadata.name, data, Desired.RUNNING.value if row.desired == Desired.FAILED.value else row.desired
            )


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _open_state(cfg: ServeConfig, state_dir: str, log: Any) -> tuple[StateStore, Any] | None:
    """The state store and, with a state URL, the lease keeper; None (logged) when unreachable."""
    try:
        store = open_store(state_dir, cfg.state_url)
        if not cfg.state_url:
            return store, None
        from shared.store.postgres import PgStore
        from supervisor.leases import LeaseKeeper, default_node_id

        return store, LeaseKeeper(PgStore(cfg.state_url).open(), cfg.node_id or default_node_id(), cfg.api_addr)
    except StoreUnavailable as exc:
        log.error("state_store_unavailable", error=str(exc))
        return None


def _seed(store: StateStore, specs: list[Any], leases: Any, log: Any) -> None:
    def held_elsewhere(name: str) -> bool:
        lease = cast("PgStore", store).lease(name)  # leases: a state URL, so a PgStore
        if lease is not None and lease.live and lease.owner != leases.node:
            log.warning("config_spec_skipped", pipeline=name, reason=f"run by node {lease.owner!r}")
            return True
        return False

    seed_store(store, specs, skip=held_elsewhere if leases is not None else None)


def _hyper_config(addr: str) -> HyperConfig:
    hc = HyperConfig()
    hc.bind = [addr]
    hc.accesslog = None
    hc.errorlog = None
    hc.graceful_timeout = 5
    return hc


async def _reload_loop(reload: asyncio.Event, cfg: ServeConfig, manager: PipelineManager, check: Any, log: Any) -> None:
    """SIGHUP: the --config files again, each applied (created, updated or left as it is)."""
    while True:
        await reload.wait()
        reload.clear()
        specs, problems = await asyncio.to_thread(load_config_specs, cfg.configs, check)
        for p in problems:
            log.error("config_invalid", problem=p)
        for spec in specs:
            try:
                m, what = await manager.apply(msgspec.to_builtins(spec))
            except Conflict as exc:  # shared state store: another node runs it
                log.warning("config_not_applied", pipeline=spec.metadata.name, reason=str(exc))
                continue
            log.info("config_applied", pipeline=m.name, result=what)


def _summary(manager: PipelineManager, addr: str) -> str:
    counts: dict[str, int] = {}
    for m in manager.pipelines.values():
        counts[m.status.value] = counts.get(m.status.value, 0) + 1
    return "pipelines: " + (", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none") + f"; API {addr}"


async def _ready_notifier(
    notifier: systemd.StatusNotifier, cfg: ServeConfig, manager: PipelineManager, leases: Any, log: Any, state_dir: str
) -> None:
    host, _, port = cfg.api_addr.rpartition(":")
    while not _port_open(host or "127.0.0.1", int(port)):
        await asyncio.sleep(0.02)
    notifier.ready()
    where = {"state_store": f"postgresql {state_url_where(cfg.state_url or '')}", "node": leases.node} if leases else {}
    log.info("supervisor_ready", api=cfg.api_addr, state_dir=state_dir, pipelines=len(manager.pipelines), **where)


async def run(cfg: ServeConfig) -> int:
    logs.configure(cfg.log_format, cfg.log_level)
    log = structlog.get_logger().bind(component="supervisor", pid=os.getpid())
    check = check_processor_fn()
    specs, problems = load_config_specs(cfg.configs, check)
    for p in problems:
        log.error("config_invalid", problem=p)
    if problems:
        return 2
    os.makedirs(cfg.state_dir, exist_ok=True)
    state_dir = os.path.abspath(cfg.state_dir)
    opened = _open_state(cfg, state_dir, log)
    if opened is None:
        return 2
    store, leases = opened
    _seed(store, specs, leases, log)
    manager = PipelineManager(
        store, state_dir=state_dir, log_format=cfg.log_format, log_level=cfg.log_level, check_processor=check,
        state_url=cfg.state_url, leases=leases,
    )  # fmt: skip
    app = build_app(manager, cfg.token)
    stop, reload = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    try:
        await manager.start()
    except StoreUnavailable as exc:
        log.error("state_store_unavailable", error=str(exc))
        return 2
    notifier = systemd.StatusNotifier(lambda: _summary(manager, cfg.api_addr))
    manager.on_change = notifier.update

    def healthy() -> bool:  # the loop answers (we run on it) and the worker monitor is alive
        mon = getattr(manager, "_monitor", None)
        return mon is None or not mon.done()

    tasks = [
        loop.create_task(_reload_loop(reload, cfg, manager, check, log), name="reload_loop"),
        loop.create_task(_ready_notifier(notifier, cfg, manager, leases, log, state_dir), name="ready_notifier"),
    ]
    # the watchdog keeps pinging while workers drain at shutdown; cancelled last
    watchdog = loop.create_task(systemd.watchdog_loop(healthy), name="watchdog_loop")
    try:
        await serve(app, _hyper_config(cfg.api_addr), shutdown_trigger=stop.wait)
    finally:
        notifier.stopping(f"stopping: draining {len(manager.pipelines)} pipelines")
        log.info("supervisor_stopping")
        for t in tasks:
            t.cancel()
        await manager.shutdown()
        watchdog.cancel()
        store.close()
        if leases is not None:
            leases.store.close()
        log.info("supervisor_stopped")
    return 0
