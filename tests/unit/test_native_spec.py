"""Native processor specs: defaults, every load-time error with its path (a 422 through the
API), the mask key as a secret (redacted, `${VAR}`-expanded, kept by PATCH)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from shared.spec.load import SpecInvalid, to_document, validate_document
from shared.spec.patch import merge_patch
from shared.spec.redact import redact


def doc(*processors: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p"},
        "spec": {
            "source": {"type": "generator"},
            "processors": list(processors),
            "sinks": [{"type": "file", "config": {"id": "o", "path": "/tmp/x"}}],
        },
    }


def errors(*processors: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(SpecInvalid) as e:
        validate_document(doc(*processors), env=env or {})
    return dict(e.value.errors)


def normalized(*processors: dict[str, Any], env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return to_document(validate_document(doc(*processors), env=env or {}))["spec"]["processors"]


def test_defaults_and_the_given_operator_only() -> None:
    got = normalized(
        {"type": "filter", "id": "f", "where": [{"path": "after.s", "in": ["a"]}, {"path": "after.s", "eq": None}]},
        {"type": "flatten", "id": "fl"},
        {"type": "outbox", "id": "ob", "tables": ["public.outbox"]},
        {"type": "mask", "id": "m", "fields": ["after.email"]},
    )
    assert got == [
        {
            "type": "filter",
            "id": "f",
            "action": "keep",
            "ops": None,
            "tables": None,
            "where": [{"path": "after.s", "in": ["a"]}, {"path": "after.s", "eq": None}],
            "on_error": "fail",
        },
        {"type": "flatten", "id": "fl", "separator": "__", "max_depth": None, "lists": "keep", "on_error": "fail"},
        {
            "type": "outbox",
            "id": "ob",
            "tables": ["public.outbox"],
            "payload_column": "payload",
            "route": "${aggregate_type}",
            "key_column": "aggregate_id",
            "header_columns": [],
            "on_error": "fail",
        },
        {
            "type": "mask",
            "id": "m",
            "fields": ["after.email"],
            "action": "redact",
            "key": None,
            "length": None,
            "on_error": "fail",
        },
    ]


def test_filter_errors_carry_their_paths() -> None:
    errs = errors(
        {
            "type": "filter",
            "id": "f",
            "action": "maybe",
            "ops": ["c", "x"],
            "tables": ["orders", "shop.[ab]", "a.b.c"],
            "where": [
                {"path": "after.name", "regex": "(unclosed"},
                {"path": "after.s", "like": "a%"},
                {"path": "after.s"},
                {"path": "after.s", "eq": 1, "gt": 0},
                {"path": "after.t", "gt": "yesterday"},
                {"path": "status", "changed": True},
                {"path": "after.s", "eq": 1, "unknown_changed": False},
                {"path": "after..s", "exists": True},
            ],
        }
    )
    at = "spec.processors[0]"
    assert errs[f"{at}.action"] == "must be one of: drop, keep"
    assert errs[f"{at}.ops[1]"] == "must be one of: c, d, r, u"
    assert errs[f"{at}.where[1].like"].startswith("unknown field (known fields: changed, eq, exists, gt, gte, in,")
    assert len(errs) == 3, "structural errors first, all at once"
    errs = errors(
        {
            "type": "filter",
            "id": "f",
            "tables": ["orders", "shop.[ab]", "a.b.c"],
            "where": [
                {"path": "after.name", "regex": "(unclosed"},
                {"path": "after.s"},
                {"path": "after.s", "eq": 1, "gt": 0},
                {"path": "after.t", "gt": "yesterday"},
                {"path": "status", "changed": True},
                {"path": "after.s", "eq": 1, "unknown_changed": False},
                {"path": "after..s", "exists": True},
            ],
        }
    )
    assert errs[f"{at}.tables[0]"].startswith("invalid table glob 'orders': must be db.table")
    assert errs[f"{at}.tables[1]"] == "invalid glob 'shop.[ab]': only * and ? are wildcards"
    assert errs[f"{at}.tables[2]"].startswith("invalid table glob 'a.b.c'")
    assert errs[f"{at}.where[0].regex"].startswith("invalid regex: missing ), unterminated subpattern")
    assert errs[f"{at}.where[1]"].startswith("needs one operator (one of: eq, ne, in, not_in, gt, gte, lt, lte,")
    assert errs[f"{at}.where[2]"].startswith("has several operators (eq, gt): give one per item")
    assert errs[f"{at}.where[3].gt"] == "expected a number or an ISO 8601 timestamp, got 'yesterday'"
    assert errs[f"{at}.where[4].path"] == "with changed, a path into the row images (after.<column>), got 'status'"
    assert errs[f"{at}.where[5].unknown_changed"] == "only allowed with changed"
    assert errs[f"{at}.where[6].path"].startswith("invalid path 'after..s'")


def test_flatten_outbox_mask_errors_carry_their_paths() -> None:
    errs = errors(
        {"type": "flatten", "id": "a", "separator": "", "max_depth": 0, "lists": "explode"},
        {"type": "outbox", "id": "b", "tables": []},
        {"type": "mask", "id": "c", "fields": [], "action": "shred"},
    )
    assert errs["spec.processors[0].separator"] == "must not be empty"
    assert errs["spec.processors[0].max_depth"] == "must be >= 1"
    assert errs["spec.processors[0].lists"] == "must be one of: index, json, keep"
    assert errs["spec.processors[1].tables"] == "must have at least 1 item"
    assert errs["spec.processors[2].fields"] == "must have at least 1 item"
    assert errs["spec.processors[2].action"] == "must be one of: hash, redact, truncate"
    errs = errors(
        {"type": "outbox", "id": "b", "tables": ["outbox"], "route": "${bad-name}"},
        {"type": "mask", "id": "c", "fields": ["after.*.ssn", "after.x[1]", "after."], "action": "hash"},
        {"type": "mask", "id": "d", "fields": ["after.x"], "action": "truncate", "key": "k"},
        {"type": "mask", "id": "e", "fields": ["after.x"], "length": 3},
    )
    assert errs["spec.processors[0].tables[0]"].startswith("invalid table glob 'outbox'")
    assert errs["spec.processors[0].route"] == "invalid template '${bad-name}': write ${column} with a column name"
    assert errs["spec.processors[1].fields[0]"] == "only the last part of 'after.*.ssn' may be a glob"
    assert errs["spec.processors[1].fields[1]"] == "invalid glob 'x[1]': only * and ? are wildcards"
    assert errs["spec.processors[1].fields[2]"].startswith("invalid path 'after.'")
    assert errs["spec.processors[1].key"] == "required when action is hash"
    assert errs["spec.processors[2].length"] == "required when action is truncate"
    assert errs["spec.processors[2].key"] == "only allowed when action is hash"
    assert errs["spec.processors[3].length"] == "only allowed when action is truncate"


def test_unknown_type_and_duplicate_ids_across_kinds() -> None:
    errs = errors({"type": "lua", "id": "x"})
    assert errs["spec.processors[0].type"] == "unknown type 'lua' (one of: javascript, filter, flatten, outbox, mask)"
    errs = errors({"type": "flatten", "id": "x"}, {"type": "javascript", "id": "x", "inline": "function process(b){}"})
    assert errs["spec.processors[1].id"] == "duplicate processor id 'x' (also spec.processors[0])"


def test_the_mask_key_is_a_secret_expanded_redacted_and_kept_by_patch() -> None:
    m = {"type": "mask", "id": "m", "fields": ["after.email"], "action": "hash", "key": "${MASK_KEY}"}
    assert errors(m)["spec.processors[0].key"].startswith("environment variable MASK_KEY is not set")
    spec = validate_document(doc(m), env={"MASK_KEY": "s3cret"})
    assert spec.spec.processors[0].key == "s3cret"  # type: ignore[union-attr]
    shown = redact(to_document(spec))
    assert shown["spec"]["processors"][0]["key"] == "***"
    assert "s3cret" not in msgspec.json.encode(shown).decode()
    stored = to_document(spec)
    patched = merge_patch(stored, {"spec": {"processors": shown["spec"]["processors"]}})
    assert patched["spec"]["processors"][0]["key"] == "s3cret", "a GET -> PATCH round trip keeps the key"


def test_validate_with_the_javascript_checker_skips_native_processors() -> None:
    seen: list[str] = []

    def check(code: str) -> str | None:
        seen.append(code)
        return None

    d = doc({"type": "filter", "id": "f"}, {"type": "javascript", "id": "j", "inline": "function process(b){return b}"})
    validate_document(d, env={}, check_processor=check)
    assert seen == ["function process(b){return b}"]


def test_hostile_regexes_are_422_material() -> None:
    where = [{"path": "after.x", "regex": r} for r in ("(" * 5000 + ")" * 5000, "a{99999999999}", "\\")]
    errs = errors({"type": "filter", "id": "f", "where": where})
    assert errs["spec.processors[0].where[0].regex"] == "invalid regex: nested too deeply"
    assert errs["spec.processors[0].where[1].regex"] == "invalid regex: the repetition number is too large"
    assert errs["spec.processors[0].where[2].regex"].startswith("invalid regex: bad escape")


def test_openapi_knows_the_native_types() -> None:
    from supervisor.api import openapi

    schemas = openapi.build()["components"]["schemas"]
    for name in ("FilterProcessorSpec", "FilterConditionSpec", "FlattenProcessorSpec", "OutboxProcessorSpec"):
        assert name in schemas, name
    mask = schemas["MaskProcessorSpec"]
    assert mask["properties"]["type"] == {"enum": ["mask"]} and "key" in mask["properties"]
    assert set(schemas["FilterConditionSpec"]["properties"]) >= {"path", "in", "not_in", "changed", "unknown_changed"}
