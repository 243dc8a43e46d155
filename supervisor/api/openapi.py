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
from supervisor.api.openapi_parts import REF, dlq_paths, errors, op, ref, resp, snapshot_paths


def _version() -> str:
    try:
        return importlib.metadata.version("tidegate")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


VERSION = _version()


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
            "application/json": {"schema": ref("PipelineSpec")},
            "application/yaml": {"schema": ref("PipelineSpec")},
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
    pipe = ref("PipeInfo")

    def action(verb: str, summary: str) -> dict[str, Any]:
        return {
            "post": op(
                f"{verb}Pipeline", summary, {"200": resp("The pipeline", pipe), **errors(404, 409)}, params=name_param
            )
        }

    paths: dict[str, Any] = {
        "/healthz": {
            "get": op(
                "healthz",
                "Liveness: the supervisor loop answers",
                {"200": resp("Alive", ref("Health"))},
                secured=False,
            )
        },
        "/readyz": {
            "get": op(
                "readyz",
                "Readiness: stored pipelines have been started",
                {"200": resp("Ready", ref("Readiness")), "503": resp("Starting", ref("Readiness"))},
                secured=False,
            )
        },
        "/metrics": {
            "get": op(
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
            "get": op("openapi", "This document", {"200": resp("OpenAPI 3.1", {"type": "object"})}, secured=False)
        },
        "/ui": {
            "get": op(
                "console",
                "The console page (CONTRACT section 8a); it embeds no data, its script calls this API",
                {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
                secured=False,
            )
        },
        "/pipelines": {
            "get": op(
                "listPipelines",
                "List pipelines",
                {"200": resp("Pipelines", {"type": "array", "items": pipe}), **errors(400)},
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
            "post": op(
                "createPipeline",
                "Create a pipeline (it starts)",
                {"201": resp("Created", pipe), **errors(400, 409, 413, 415, 422)},
                body=spec_body,
            ),
        },
        "/pipelines/{name}": {
            "get": op(
                "getPipeline", "Get a pipeline", {"200": resp("The pipeline", pipe), **errors(404)}, params=name_param
            ),
            "patch": op(
                "patchPipeline",
                "Merge-patch the spec; the worker restarts from its checkpoint",
                {"200": resp("Patched", pipe), **errors(400, 404, 409, 413, 415, 422)},
                params=name_param,
                body=patch_body,
            ),
            "delete": op(
                "deletePipeline",
                "Stop the worker; remove spec and checkpoints",
                {"204": resp("Deleted"), **errors(404, 409)},
                params=name_param,
            ),
        },
        "/pipelines/{name}/pause": action("pause", "Pause (idempotent)"),
        "/pipelines/{name}/resume": action("resume", "Resume (idempotent; restarts a stopped or failed one)"),
        "/pipelines/{name}/stop": action("stop", "Flush, checkpoint and stop (idempotent)"),
        "/pipelines/{name}/restart": action("restart", "Restart the worker from the committed position"),
        "/pipelines/{name}/checkpoints": {
            "get": op(
                "getCheckpoints",
                "Per-sink checkpoints",
                {
                    "200": resp(
                        "Checkpoints by sink id", {"type": "object", "additionalProperties": ref("Checkpoint")}
                    ),
                    **errors(404),
                },
                params=name_param,
            ),
            "delete": op(
                "deleteCheckpoints",
                "Forget checkpoints (stopped pipelines only)",
                {"204": resp("Deleted"), **errors(404, 409)},
                params=name_param,
            ),
        },
    }
    paths.update(dlq_paths(name_param))
    paths.update(snapshot_paths(name_param))
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
