"""Pieces of the OpenAPI document (supervisor.api.openapi): references, responses, the error
table and one operation; the dead-letter queue's and the incremental snapshots' paths.
Imports: stdlib only.
"""

from __future__ import annotations

from typing import Any

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


def ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(name=name)}


def resp(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": desc}
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def errors(*codes: int) -> dict[str, Any]:
    return {str(c): resp(ERROR_TEXT[c], ref("ErrorResponse")) for c in codes}


def op(
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
        responses = {**responses, **errors(401)}
    else:
        out["security"] = []
    out["responses"] = responses
    return out


def snapshot_paths(name_param: list[dict[str, Any]]) -> dict[str, Any]:
    """Incremental snapshots (CONTRACT section 13)."""
    snap = ref("Snapshot")
    id_param = [*name_param, {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    body = {"required": True, "content": {"application/json": {"schema": ref("SnapshotRequest")}}}

    def action(verb: str, summary: str) -> dict[str, Any]:
        return {
            "post": op(
                f"{verb}Snapshot", summary, {"200": resp("The snapshot", snap), **errors(404, 409)}, params=id_param
            )
        }

    return {
        "/pipelines/{name}/snapshots": {
            "get": op(
                "listSnapshots",
                "The pipeline's incremental snapshots",
                {"200": resp("Snapshots", {"type": "array", "items": snap}), **errors(404)},
                params=name_param,
            ),
            "post": op(
                "startSnapshot",
                "Start an incremental snapshot of tables while the pipeline streams",
                {"202": resp("Started", snap), **errors(400, 404, 409, 413, 415, 422)},
                params=name_param,
                body=body,
            ),
        },
        "/pipelines/{name}/snapshots/{id}/pause": action("pause", "Pause a snapshot"),
        "/pipelines/{name}/snapshots/{id}/resume": action("resume", "Resume a snapshot"),
        "/pipelines/{name}/snapshots/{id}/cancel": action("cancel", "Cancel a snapshot"),
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


def dlq_paths(name_param: list[dict[str, Any]]) -> dict[str, Any]:
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
            "get": op(
                "listDlq",
                "DLQ entries, oldest first, paged",
                {"200": resp("A page of entries", ref("DlqPage")), **errors(400, 404)},
                params=name_param + page,
            ),
            "delete": op(
                "purgeDlq",
                "Purge DLQ entries (all, or one stage's)",
                {"200": resp("How many were purged", ref("DlqPurgeResult")), **errors(404, 409)},
                params=name_param + [stage],
            ),
        },
        "/pipelines/{name}/dlq/replay": {
            "post": op(
                "replayDlq",
                "Replay entries through the current processors into the sink(s) they failed for",
                {"200": resp("Outcome", ref("DlqReplayResult")), **errors(400, 404, 409, 413, 415, 422)},
                params=name_param,
                body=replay_body,
            )
        },
        "/pipelines/{name}/dlq/{id}": {
            "get": op(
                "getDlqEntry",
                "One DLQ entry",
                {"200": resp("The entry", ref("DlqEntry")), **errors(404)},
                params=name_param + [id_param],
            )
        },
    }
