"""OpenAPI 3 document of the REST API, generated from the msgspec types the
routes use. Imports: stdlib + msgspec + shared + supervisor.api.models.
"""
from __future__ import annotations

from typing import Any

import msgspec

from shared.spec.model import PipelineSpec
from supervisor.api.models import ErrorResponse, Health, PipeInfo, Readiness


def _resp(desc: str, ref: str | None = None, array: bool = False) -> dict[str, Any]:
    if ref is None:
        return {"description": desc}
    schema: dict[str, Any] = {"$ref": f"#/components/schemas/{ref}"}
    if array:
        schema = {"type": "array", "items": schema}
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    names = {400: "Malformed request", 401: "Missing or wrong bearer token", 404: "No such pipeline",
             409: "Conflict with the pipeline's state", 413: "Body over 10 MiB",
             415: "Unsupported Content-Type", 422: "Invalid spec"}
    return {str(c): _resp(names[c], "ErrorResponse") for c in codes}


def build() -> dict[str, Any]:
    _, components = msgspec.json.schema_components([PipeInfo, ErrorResponse, Health, Readiness, PipelineSpec],
                                                   ref_template="#/components/schemas/{name}")
    name_param = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    spec_body = {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/PipelineSpec"}},
        "application/yaml": {"schema": {"$ref": "#/components/schemas/PipelineSpec"}}}}
    patch_body = {"required": True, "content": {
        "application/merge-patch+json": {"schema": {"type": "object"}},
        "application/json": {"schema": {"type": "object"}}}}
    sec = [{"bearer": []}]

    def action(summary: str, extra: tuple[int, ...] = ()) -> dict[str, Any]:
        return {"post": {"summary": summary, "parameters": name_param, "security": sec,
                         "responses": {"200": _resp("The pipeline", "PipeInfo"), **_errors(401, 404, *extra)}}}

    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _resp("Alive", "Health")}}},
        "/readyz": {"get": {"summary": "Readiness", "responses": {"200": _resp("Ready", "Readiness"),
                                                                 "503": _resp("Starting", "Readiness")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
            "description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/pipelines": {
            "get": {"summary": "List pipelines", "security": sec,
                    "parameters": [{"name": "label", "in": "query", "required": False,
                                    "schema": {"type": "string"}, "description": "key=value"}],
                    "responses": {"200": _resp("Pipelines", "PipeInfo", array=True), **_errors(400, 401)}},
            "post": {"summary": "Create a pipeline", "security": sec, "requestBody": spec_body,
                     "responses": {"201": _resp("Created", "PipeInfo"), **_errors(400, 401, 409, 413, 415, 422)}}},
        "/pipelines/{name}": {
            "get": {"summary": "Get a pipeline", "parameters": name_param, "security": sec,
                    "responses": {"200": _resp("The pipeline", "PipeInfo"), **_errors(401, 404)}},
            "patch": {"summary": "Merge-patch the spec", "parameters": name_param, "security": sec,
                      "requestBody": patch_body,
                      "responses": {"200": _resp("Patched", "PipeInfo"),
                                    **_errors(400, 401, 404, 409, 413, 415, 422)}},
            "delete": {"summary": "Delete a pipeline", "parameters": name_param, "security": sec,
                       "responses": {"204": _resp("Deleted"), **_errors(401, 404)}}},
        "/pipelines/{name}/pause": action("Pause", (409,)),
        "/pipelines/{name}/resume": action("Resume"),
        "/pipelines/{name}/stop": action("Stop"),
        "/pipelines/{name}/restart": action("Restart"),
        "/pipelines/{name}/checkpoints": {
            "get": {"summary": "Per-sink checkpoints", "parameters": name_param, "security": sec,
                    "responses": {"200": {"description": "Checkpoints by sink id", "content": {"application/json": {
                        "schema": {"type": "object", "additionalProperties": {
                            "$ref": "#/components/schemas/Checkpoint"}}}}}, **_errors(401, 404)}},
            "delete": {"summary": "Forget checkpoints (stopped pipelines only)", "parameters": name_param,
                       "security": sec, "responses": {"204": _resp("Deleted"), **_errors(401, 404, 409)}}},
    }
    return {"openapi": "3.0.3",
            "info": {"title": "tidegate", "version": "0.1.0",
                     "description": "Change-data-capture pipeline runtime: REST API"},
            "paths": paths,
            "components": {"schemas": components,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
