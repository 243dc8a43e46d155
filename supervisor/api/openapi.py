"""OpenAPI 3.1 document of the REST API (CONTRACT section 8), generated from the
msgspec types the routes use (`supervisor.api.models`, `shared.spec.model`).

OpenAPI 3.1 because its schema objects are JSON Schema 2020-12, which is what
`msgspec.json.schema_components` emits (`anyOf` with `{"type": "null"}`,
`discriminator` on the tagged unions). Imports: stdlib + msgspec + shared +
supervisor.api.models.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import msgspec

from shared.spec.model import PipelineSpec
from supervisor.api.models import (
    Checkpoint,
    DlqEntry,
    DlqPage,
    DlqPurgeResult,
    DlqReplayResult,
    ErrorResponse,
    Health,
    PipeInfo,
    Readiness,
    Snapshot,
    SnapshotRequest,
)


def _version() -> str:
    try:
        return importlib.metadata.version("tidegate")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


VERSION = _version()
REF = "#/components/schemas/{name}"
ERROR_TEXT = {
    400: "Malformed request (bad JSON/YAML, bad label selector)",
    401: "Missing or wrong bearer token",
    404: "No such pipeline",
    405: "Method not allowed on this path",
    409: "Conflict with the pipeline's state or name, or (shared state store) another supervisor "
    "node runs it: the message names that node and its API address",
    413: "Body over 10 MiB",
    415: "Unsupported Content-Type",
    422: "Invalid spec (every error with its field path); snapshots: a table not captured or without a primary key",
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(name=name)}


def _resp(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": desc}
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _resp(ERROR_TEXT[c], _ref("ErrorResponse")) for c in codes}


def _op(
    op_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    secured: bool = True,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": ["pipelines" if secured else "service"]}
    if params:
        out["parameters"] = params
    if body:
        out["requestBody"] = body
    if secured:
        out["security"] = [{"bearer": []}]
        responses = {**responses, **_errors(401)}
    else:
        out["security"] = []
    out["responses"] = responses
    return out


def _snapshot_paths(name_param: list[dict[str, Any]]) -> dict[str, Any]:
    """Incremental snapshots (CONTRACT section 13)."""
    snap = _ref("Snapshot")
    id_param = [*name_param, {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    body = {"required": True, "content": {"application/json": {"schema": _ref("SnapshotRequest")}}}

    def action(op: str, summary: str) -> dict[str, Any]:
        return {
            "post": _op(
                f"{op}Snapshot", summary, {"200": _resp("The snapshot", snap), **_errors(404, 409)}, params=id_param
            )
        }

    return {
        "/pipelines/{name}/snapshots": {
            "get": _op(
                "listSnapshots",
                "The pipeline's incremental snapshots",
                {"200": _resp("Snapshots", {"type": "array", "items": snap}), **_errors(404)},
                params=name_param,
            ),
            "post": _op(
                "startSnapshot",
                "Start an incremental snapshot of tables while the pipeline streams",
                {"202": _resp("Started", snap), **_errors(400, 404, 409, 413, 415, 422)},
                params=name_param,
                body=body,
            ),
        },
        "/pipelines/{name}/snapshots/{id}/pause": action("pause", "Pause a snapshot"),
        "/pipelines/{name}/snapshots/{id}/resume": action("resume", "Resume a snapshot"),
        "/pipelines/{name}/snapshots/{id}/cancel": action("cancel", "Cancel a snapshot"),
    }


def build() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [PipeInfo, ErrorResponse, Health, Readiness, PipelineSpec, Checkpoint, DlqPage, DlqEntry]
        + [DlqReplayResult, DlqPurgeResult, Snapshot, SnapshotRequest],
        ref_template=REF,
    )
    name_param = [
        {"name": "name", "in": "path", "required": True, "description": "pipeline name", "schema": {"type": "string"}}
    ]
    spec_body = {
        "required": True,
        "description": "A pipeline spec document (CONTRACT section 2); JSON also when Content-Type is missing",
        "content": {
            "application/json": {"schema": _ref("PipelineSpec")},
            "application/yaml": {"schema": _ref("PipelineSpec")},
        },
    }
    patch_body = {
        "required": True,
        "description": "JSON merge patch (RFC 7386) of the spec document",
        "content": {
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
    pipe = _ref("PipeInfo")

    def action(op: str, summary: str) -> dict[str, Any]:
        return {
            "post": _op(
                f"{op}Pipeline", summary, {"200": _resp("The pipeline", pipe), **_errors(404, 409)}, params=name_param
            )
        }

    paths: dict[str, Any] = {
        "/healthz": {
            "get": _op(
                "healthz",
                "Liveness: the supervisor loop answers",
                {"200": _resp("Alive", _ref("Health"))},
                secured=False,
            )
        },
        "/readyz": {
            "get": _op(
                "readyz",
                "Readiness: stored pipelines have been started",
                {"200": _resp("Ready", _ref("Readiness")), "503": _resp("Starting", _ref("Readiness"))},
                secured=False,
            )
        },
        "/metrics": {
            "get": _op(
                "metrics",
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                secured=False,
            )
        },
        "/openapi.json": {
            "get": _op("openapi", "This document", {"200": _resp("OpenAPI 3.1", {"type": "object"})}, secured=False)
        },
        "/ui": {
            "get": _op(
                "console",
                "The console page (CONTRACT section 8a); it embeds no data, its script calls this API",
                {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
                secured=False,
            )
        },
        "/pipelines": {
            "get": _op(
                "listPipelines",
                "List pipelines",
                {"200": _resp("Pipelines", {"type": "array", "items": pipe}), **_errors(400)},
                params=[
                    {
                        "name": "label",
                        "in": "query",
                        "required": False,
                        "description": "label selector key=value (repeat to AND them)",
                        "schema": {"type": "string", "pattern": "^[^=]+=.*$"},
                    }
                ],
            ),
            "post": _op(
                "createPipeline",
                "Create a pipeline (it starts)",
                {"201": _resp("Created", pipe), **_errors(400, 409, 413, 415, 422)},
                body=spec_body,
            ),
        },
        "/pipelines/{name}": {
            "get": _op(
                "getPipeline", "Get a pipeline", {"200": _resp("The pipeline", pipe), **_errors(404)}, params=name_param
            ),
            "patch": _op(
                "patchPipeline",
                "Merge-patch the spec; the worker restarts from its checkpoint",
                {"200": _resp("Patched", pipe), **_errors(400, 404, 409, 413, 415, 422)},
                params=name_param,
                body=patch_body,
            ),
            "delete": _op(
                "deletePipeline",
                "Stop the worker; remove spec and checkpoints",
                {"204": _resp("Deleted"), **_errors(404, 409)},
                params=name_param,
            ),
        },
        "/pipelines/{name}/pause": action("pause", "Pause (idempotent)"),
        "/pipelines/{name}/resume": action("resume", "Resume (idempotent; restarts a stopped or failed one)"),
        "/pipelines/{name}/stop": action("stop", "Flush, checkpoint and stop (idempotent)"),
        "/pipelines/{name}/restart": action("restart", "Restart the worker from the committed position"),
        "/pipelines/{name}/checkpoints": {
            "get": _op(
                "getCheckpoints",
                "Per-sink checkpoints",
                {
                    "200": _resp(
                        "Checkpoints by sink id", {"type": "object", "additionalProperties": _ref("Checkpoint")}
                    ),
                    **_errors(404),
                },
                params=name_param,
            ),
            "delete": _op(
                "deleteCheckpoints",
                "Forget checkpoints (stopped pipelines only)",
                {"204": _resp("Deleted"), **_errors(404, 409)},
                params=name_param,
            ),
        },
    }
    paths.update(_dlq_paths(name_param))
    paths.update(_snapshot_paths(name_param))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidegate",
            "version": VERSION,
            "description": "Change-data-capture pipeline runtime: REST API. When TIDEGATE_API_TOKEN "
            "is set, every route but /healthz, /readyz, /metrics, /openapi.json and the console (/ui) needs "
            "`Authorization: Bearer <token>`.",
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _replay_schema() -> dict[str, Any]:
    def one(key: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "required": [key], "properties": {key: schema}, "additionalProperties": False}

    return {
        "oneOf": [
            one("ids", {"type": "array", "items": {"type": "string"}}),
            one("stage", {"type": "string"}),
            one("all", {"const": True}),
        ]
    }


def _dlq_paths(name_param: list[dict[str, Any]]) -> dict[str, Any]:
    """The dead-letter queue's routes (CONTRACT section 12)."""
    stage = _query("stage", "only this stage's entries (processor:<id> or sink:<id>)", {"type": "string"})
    page = [
        stage,
        _query("limit", "entries per page (default 100)", {"type": "integer", "minimum": 1, "maximum": 10000}),
        _query("after", "the `next` of the previous page", {"type": "string"}),
    ]
    id_param = {"name": "id", "in": "path", "required": True, "description": "entry id", "schema": {"type": "string"}}
    replay_body = {
        "required": True,
        "description": 'exactly one of {"ids": [...]}, {"stage": "..."} or {"all": true}',
        "content": {"application/json": {"schema": _replay_schema()}},
    }
    return {
        "/pipelines/{name}/dlq": {
            "get": _op(
                "listDlq",
                "DLQ entries, oldest first, paged",
                {"200": _resp("A page of entries", _ref("DlqPage")), **_errors(400, 404)},
                params=name_param + page,
            ),
            "delete": _op(
                "purgeDlq",
                "Purge DLQ entries (all, or one stage's)",
                {"200": _resp("How many were purged", _ref("DlqPurgeResult")), **_errors(404, 409)},
                params=name_param + [stage],
            ),
        },
        "/pipelines/{name}/dlq/replay": {
            "post": _op(
                "replayDlq",
                "Replay entries through the current processors into the sink(s) they failed for",
                {"200": _resp("Outcome", _ref("DlqReplayResult")), **_errors(400, 404, 409, 413, 415, 422)},
                params=name_param,
                body=replay_body,
            )
        },
        "/pipelines/{name}/dlq/{id}": {
            "get": _op(
                "getDlqEntry",
                "One DLQ entry",
                {"200": _resp("The entry", _ref("DlqEntry")), **_errors(404)},
                params=name_param + [id_param],
            )
        },
    }
