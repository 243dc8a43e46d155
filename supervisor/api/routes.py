"""REST routes (CONTRACT section 8): thin - decode -> manager -> encode.

Routes are async and run on the loop thread (workers are spawned from it).
Imports: stdlib + starlette + msgspec + shared + supervisor.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.spec.load import SpecMalformed, parse, to_document
from shared.spec.redact import redact
from shared.spec.validate import kind_of
from supervisor import dlq
from supervisor.api.errors import ApiError
from supervisor.managed import Managed
from supervisor.manager import PipelineManager

MAX_BODY = 10 * 1024 * 1024
JSON_TYPES = {"", "application/json", "text/json"}
YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
MERGE_TYPES = {"application/merge-patch+json"}

_enc = msgspec.json.Encoder()


def json(body: Any, status: int = 200) -> Response:
    return Response(_enc.encode(body), status_code=status, media_type="application/json")


def manager(request: Request) -> PipelineManager:
    mgr: PipelineManager = request.state.manager
    return mgr


def pipe_info(mgr: PipelineManager, m: Managed) -> dict[str, Any]:
    return {"name": m.name, "status": m.status.value, "spec": redact(to_document(m.spec)), "ops": mgr.ops(m)}


def foreign_info(v: Any) -> dict[str, Any]:
    """A pipeline another supervisor owns (shared state store): see supervisor.leases."""
    return {"name": v.name, "status": v.status, "spec": redact(to_document(v.spec)), "ops": v.ops}


async def read_body(request: Request, *, patch: bool = False) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    allowed = JSON_TYPES | YAML_TYPES | (MERGE_TYPES if patch else set())
    if ctype not in allowed:
        raise ApiError(
            "unsupported_media_type",
            f"unsupported Content-Type {ctype!r}; use application/json or application/yaml"
            + (" or application/merge-patch+json" if patch else ""),
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError("payload_too_large", f"request body over {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError("payload_too_large", f"request body over {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError("bad_request", "empty request body; send the pipeline spec as JSON or YAML")
    try:  # bounded work (shared.spec.decode), in a thread so the loop and /healthz keep answering
        doc = await run_in_threadpool(parse, raw, yaml_ok=ctype in YAML_TYPES or ctype == "")
    except SpecMalformed as exc:
        raise ApiError("bad_request", f"request body {exc}" if str(exc).startswith("not UTF-8") else str(exc)) from None
    if not isinstance(doc, dict):
        kind = kind_of(doc)
        raise ApiError(
            "invalid_spec",
            f"request body must be a JSON object, got {kind}",
            [{"path": "$", "message": "must be an object"}],
        )
    return doc


async def healthz(request: Request) -> Response:
    return json({"status": "ok"})


async def readyz(request: Request) -> Response:
    mgr = manager(request)
    pipes = [{"name": m.name, "status": m.status.value} for m in mgr.pipelines.values()]
    return json({"status": "ready" if mgr.ready else "starting", "pipelines": pipes}, 200 if mgr.ready else 503)


async def list_pipelines(request: Request) -> Response:
    mgr = manager(request)
    wanted: list[tuple[str, str]] = []
    for sel in request.query_params.getlist("label"):
        k, sep, v = sel.partition("=")
        if not sep or not k:
            raise ApiError("bad_request", f"label selector {sel!r} must be key=value")
        wanted.append((k, v))
    out = [
        pipe_info(mgr, m) for m in mgr.pipelines.values() if all(m.spec.metadata.labels.get(k) == v for k, v in wanted)
    ]
    out += [foreign_info(f) for f in mgr.foreigners() if all(f.spec.metadata.labels.get(k) == v for k, v in wanted)]
    return json(out)


async def create_pipeline(request: Request) -> Response:
    mgr = manager(request)
    m = await mgr.create(await read_body(request))
    return json(pipe_info(mgr, m), 201)


async def get_pipeline(request: Request) -> Response:
    mgr = manager(request)
    name = request.path_params["name"]
    m = mgr.pipelines.get(name)
    return json(pipe_info(mgr, m) if m is not None else foreign_info(mgr.foreign(name)))


async def patch_pipeline(request: Request) -> Response:
    mgr = manager(request)
    name = request.path_params["name"]
    await mgr.owned(name)
    m = await mgr.patch(name, await read_body(request, patch=True))
    return json(pipe_info(mgr, m))


async def delete_pipeline(request: Request) -> Response:
    await manager(request).delete(request.path_params["name"])
    return Response(status_code=204)


def _action(op: str) -> Any:
    async def endpoint(request: Request) -> Response:
        mgr = manager(request)
        m = await getattr(mgr, op)(request.path_params["name"])
        return json(pipe_info(mgr, m))

    endpoint.__name__ = f"{op}_pipeline"
    return endpoint


async def get_checkpoints(request: Request) -> Response:
    return json(manager(request).checkpoints(request.path_params["name"]))


async def delete_checkpoints(request: Request) -> Response:
    await manager(request).clear_checkpoints(request.path_params["name"])
    return Response(status_code=204)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 10000:
        raise ApiError("bad_request", f"limit must be an integer from 1 to 10000, got {raw!r}")
    return int(raw)


async def list_dlq(request: Request) -> Response:
    q = request.query_params
    return json(
        dlq.entries(manager(request), request.path_params["name"], q.get("stage"), _limit(request), q.get("after"))
    )


async def get_dlq_entry(request: Request) -> Response:
    return json(dlq.entry(manager(request), request.path_params["name"], request.path_params["id"]))


async def replay_dlq(request: Request) -> Response:
    mgr = manager(request)
    name = request.path_params["name"]
    await mgr.owned(name)  # 404 before the body is judged
    body = await read_body(request)
    try:
        return json(await dlq.replay(mgr, name, body))
    except dlq.BadRequest as exc:
        raise ApiError("invalid_spec", str(exc), [{"path": "$", "message": str(exc)}]) from None


async def purge_dlq(request: Request) -> Response:
    q = request.query_params
    ids = q.getlist("id") or None
    everything = q.get("all") in ("1", "true")
    stage = None if everything else q.get("stage")
    return json(dlq.purge(manager(request), request.path_params["name"], stage, ids))


def _reply(reply: Any) -> Response:
    """A worker's SnapshotReply as the HTTP answer."""
    if reply.code >= 400:
        code = {404: "not_found", 409: "conflict", 422: "invalid_spec"}.get(reply.code, "internal")
        raise ApiError(code, reply.message, status=reply.code)
    return json(reply.snapshot, reply.code)


async def start_snapshot(request: Request) -> Response:
    mgr = manager(request)
    name = request.path_params["name"]
    await mgr.owned(name)
    body = await read_body(request)
    tables, chunk = body.get("tables"), body.get("chunk_rows", 10000)
    if not isinstance(tables, list) or not tables or not all(isinstance(t, str) and t for t in tables):
        raise ApiError(
            "invalid_spec", "tables: a non-empty list of table names", [{"path": "tables", "message": "required"}]
        )
    if not isinstance(chunk, int) or isinstance(chunk, bool) or not 1 <= chunk <= 1_000_000:
        raise ApiError(
            "invalid_spec",
            "chunk_rows: an integer from 1 to 1000000",
            [{"path": "chunk_rows", "message": "out of range"}],
        )
    return _reply(await mgr.snapshot(name, "start", tables=tables, chunk_rows=chunk))


async def list_snapshots(request: Request) -> Response:
    return json(manager(request).snapshots(request.path_params["name"]))


def _snapshot_action(action: str) -> Any:
    async def endpoint(request: Request) -> Response:
        p = request.path_params
        return _reply(await manager(request).snapshot(p["name"], action, snap_id=p["id"]))

    endpoint.__name__ = f"{action}_snapshot"
    return endpoint


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/pipelines", list_pipelines, methods=["GET"]),
    Route("/pipelines", create_pipeline, methods=["POST"]),
    Route("/pipelines/{name}", get_pipeline, methods=["GET"]),
    Route("/pipelines/{name}", patch_pipeline, methods=["PATCH"]),
    Route("/pipelines/{name}", delete_pipeline, methods=["DELETE"]),
    Route("/pipelines/{name}/pause", _action("pause"), methods=["POST"]),
    Route("/pipelines/{name}/resume", _action("resume"), methods=["POST"]),
    Route("/pipelines/{name}/stop", _action("stop"), methods=["POST"]),
    Route("/pipelines/{name}/restart", _action("restart"), methods=["POST"]),
    Route("/pipelines/{name}/checkpoints", get_checkpoints, methods=["GET"]),
    Route("/pipelines/{name}/checkpoints", delete_checkpoints, methods=["DELETE"]),
    Route("/pipelines/{name}/dlq", list_dlq, methods=["GET"]),
    Route("/pipelines/{name}/dlq", purge_dlq, methods=["DELETE"]),
    Route("/pipelines/{name}/dlq/replay", replay_dlq, methods=["POST"]),
    Route("/pipelines/{name}/dlq/{id}", get_dlq_entry, methods=["GET"]),
    Route("/pipelines/{name}/snapshots", list_snapshots, methods=["GET"]),
    Route("/pipelines/{name}/snapshots", start_snapshot, methods=["POST"]),
    Route("/pipelines/{name}/snapshots/{id}/pause", _snapshot_action("pause"), methods=["POST"]),
    Route("/pipelines/{name}/snapshots/{id}/resume", _snapshot_action("resume"), methods=["POST"]),
    Route("/pipelines/{name}/snapshots/{id}/cancel", _snapshot_action("cancel"), methods=["POST"]),
]
