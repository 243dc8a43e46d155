"""supervisor.api.openapi: a valid OpenAPI 3.1 document (checked against the
official meta-schema that schemathesis ships), generated from the msgspec types,
covering exactly the route table, with auth on every protected operation."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from shared.spec.model import PipelineSpec
from supervisor.api import openapi
from supervisor.api.models import PipeInfo
from supervisor.api.routes import ROUTES

OPEN = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/ui"}


def test_valid_openapi_31() -> None:
    doc = openapi.build()
    errors = [str(e)[:300] for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
    assert errors == []
    assert doc["openapi"] == "3.1.0"
    json.dumps(doc)  # serializable as served


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_ref_resolves_and_schemas_come_from_the_structs() -> None:
    doc = openapi.build()
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas, ref
    _, generated = msgspec.json.schema_components([PipeInfo, PipelineSpec], ref_template="#/components/schemas/{name}")
    for name, schema in generated.items():
        assert schemas[name] == schema, name


def test_paths_match_the_route_table_and_auth() -> None:
    doc = openapi.build()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {(m, r.path) for r in ROUTES for m in (r.methods or set()) if m != "HEAD"}
    served |= {("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/ui")}
    assert documented == served
    ids = set()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] not in ids
            ids.add(op["operationId"])
            if path in OPEN:
                assert op["security"] == [] and "401" not in op["responses"], (method, path)
            else:
                assert op["security"] == [{"bearer": []}] and "401" in op["responses"], (method, path)
            if "{name}" in path:
                assert "404" in op["responses"]
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    post = doc["paths"]["/pipelines"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "application/yaml"}
    assert {"400", "409", "413", "415", "422"} <= set(post["responses"])
    assert "application/merge-patch+json" in doc["paths"]["/pipelines/{name}"]["patch"]["requestBody"]["content"]
