"""Spec loading: every error with its path, env expansion, redaction, merge patch."""

from __future__ import annotations

import pytest

from shared.spec.load import SpecInvalid, SpecMalformed, expand_env, load_bytes, parse, to_document
from shared.spec.patch import merge_patch
from shared.spec.redact import redact

GOOD = b"""
metadata: {name: orders-to-redis}
spec:
  source: {type: generator}
  sinks: [{type: file, config: {id: out, path: /tmp/x}}]
"""


def errors(doc: bytes, **kw) -> dict[str, str]:
    with pytest.raises(SpecInvalid) as e:
        load_bytes(doc, **kw)
    return dict(e.value.errors)


def test_defaults_filled_in() -> None:
    d = to_document(load_bytes(GOOD))
    assert d["apiVersion"] == "tidegate/v1" and d["kind"] == "Pipeline"
    assert d["spec"]["batch"] == {
        "max_events": 2000,
        "max_bytes": 16777216,
        "max_ms": 50,
        "respect_source_tx": True,
        "max_inflight": 1,
    }
    assert d["spec"]["source"]["config"]["tables"] == ["demo.events"]
    assert d["spec"]["processors"] == [] and d["spec"]["commit_policy"]["mode"] == "required"


def test_every_error_at_once_with_paths() -> None:
    errs = errors(b"""
apiVersion: v2
metadata: {name: -bad-}
spec:
  source: {type: kafka}
  sinks: [{type: file, config: {path: ""}}]
  batch: {max_events: 0, max_ms: "fast"}
  extra: 1
""")
    assert errs["apiVersion"].startswith("must be one of")
    assert "metadata.name" in errs
    assert errs["spec.source.type"].startswith("unknown type 'kafka'")
    assert errs["spec.sinks[0].config.id"] == "required field missing"
    assert errs["spec.sinks[0].config.path"] == "must not be empty"
    assert errs["spec.batch.max_events"] == "must be >= 1"
    assert errs["spec.batch.max_ms"] == "expected an integer, got a string"
    assert errs["spec.extra"].startswith("unknown field")


def test_semantic_errors() -> None:
    errs = errors(b"""
metadata: {name: a}
spec:
  source: {type: postgres, config: {dsn: "mysql://x", tables: [orders]}}
  sinks:
    - {type: file, config: {id: s, path: /a, required: false}}
    - {type: file, config: {id: s, path: /b, required: false}}
  processors:
    - {type: javascript, id: p, inline: "function process(b) { return b; }"}
    - {type: javascript, id: p, inline: "function process(b) { return b; }"}
""")
    assert "duplicate sink id" in errs["spec.sinks[1].config.id"]
    assert "duplicate processor id" in errs["spec.processors[1].id"]
    assert errs["spec.commit_policy.mode"].startswith("mode required needs")
    assert errs["spec.source.config.dsn"] == "must be a postgresql:// URL"
    assert "schema.table" in errs["spec.source.config.tables[0]"]


def test_quorum_bounds() -> None:
    doc = GOOD + b"  commit_policy: {mode: quorum, quorum: 2}\n"
    assert "between 1 and the number of sinks (1)" in errors(doc)["spec.commit_policy.quorum"]
    assert (
        "required when mode is quorum"
        in errors(GOOD + b"  commit_policy: {mode: quorum}\n")["spec.commit_policy.quorum"]
    )


def test_env_expansion() -> None:
    env = {"A": "1", "PATH_X": "/p"}
    errs: list = []
    out = expand_env({"x": "${A}-${B:-dflt}-$${keep}-${source.table}", "y": ["${PATH_X}", "${MISSING}"]}, env, "", errs)
    assert out["x"] == "1-dflt-${keep}-${source.table}"
    assert out["y"][0] == "/p"
    assert errs == [("y[1]", "environment variable MISSING is not set (use ${MISSING:-default} for a default)")]


def test_processor_check_hook() -> None:
    doc = GOOD + b"  processors: [{type: javascript, id: js, inline: 'oops('}]\n"
    errs = errors(doc, check_processor=lambda code: "SyntaxError at line 1, column 5")
    assert errs["spec.processors[0].inline"] == "processor 'js': SyntaxError at line 1, column 5"


def test_malformed_and_yaml_booleans() -> None:
    with pytest.raises(SpecMalformed):
        parse(b"a: [")
    assert parse(b"x: on\ny: true") == {"x": "on", "y": True}


def test_redaction() -> None:
    doc = {
        "dsn": "postgresql://app:hunter2@db/shop",
        "password": "p",
        "api_key": "k",
        "nested": {"token": "t"},
        "headers": {"Authorization": "Bearer z", "X-Other": "ok"},
        "plain": "mysql://root@h/db",
        "kv": "host=x password=abc user=u",
    }
    r = redact(doc)
    assert r["dsn"] == "postgresql://app:***@db/shop"
    assert r["password"] == r["api_key"] == r["nested"]["token"] == r["headers"]["Authorization"] == "***"
    assert r["headers"]["X-Other"] == "ok" and r["plain"] == "mysql://root@h/db"
    assert r["kv"] == "host=x password=*** user=u"


def test_merge_patch_rfc7386() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}) == {
        "a": 1,
        "b": {"d": 3, "e": 4},
        "f": [1],
    }
    assert merge_patch({"a": 1}, [1]) == [1]
    assert merge_patch({"password": "real"}, {"password": "***"}) == {"password": "real"}


def test_non_string_type_tags_are_422_material() -> None:
    errs = errors(b"""
metadata: {name: a}
spec:
  source: {type: [1]}
  sinks: [{type: {}, config: {id: x, path: /p}}]
  processors: [{type: {}, id: p, inline: x}]
""")
    assert errs["spec.source.type"].startswith("unknown type")
    assert errs["spec.sinks[0].type"].startswith("unknown type")
    assert errs["spec.processors[0].type"] == "unknown type {} (one of: javascript, filter, flatten, outbox, mask)"


def test_merge_patch_keeps_masked_secrets_inside_arrays_and_urls() -> None:
    stored = {
        "sinks": [
            {"type": "http", "config": {"id": "a", "url": "http://u:pw@h/x", "headers": {"Authorization": "B t"}}},
            {"type": "rabbitmq", "config": {"id": "b", "url": "amqp://g:secret@h/", "routing_key": "r.k"}},
        ]
    }
    shown = redact(stored)
    assert shown["sinks"][1]["config"]["routing_key"] == "r.k"
    edited = {"sinks": [shown["sinks"][1], shown["sinks"][0], {"type": "file", "config": {"id": "c", "path": "***"}}]}
    merged = merge_patch(stored, edited)
    assert merged["sinks"][0] == stored["sinks"][1] and merged["sinks"][1] == stored["sinks"][0]
    assert merged["sinks"][2]["config"]["path"] == "***"  # nothing stored to keep: taken as written
    assert merge_patch({"url": "http://u:pw@h"}, {"url": "http://u:new@h"}) == {"url": "http://u:new@h"}


def test_redaction_depth_is_bounded() -> None:
    deep: object = "x"
    for _ in range(10_000):
        deep = [deep]
    assert redact({"a": deep})["a"] is not None  # no RecursionError


def test_on_error_and_dlq_defaults_and_errors_with_paths() -> None:
    d = to_document(load_bytes(GOOD))
    assert d["spec"]["dlq"] == {"max_events": 100000, "max_bytes": 268435456}
    assert d["spec"]["sinks"][0]["config"]["on_error"] == "fail"
    ok = to_document(
        load_bytes(
            b"""
metadata: {name: bad-events}
spec:
  source: {type: generator}
  processors: [{type: flatten, id: fl, on_error: skip}]
  sinks: [{type: file, config: {id: out, path: /tmp/x, on_error: dlq}}]
  dlq: {max_events: 10, max_bytes: 1000}
"""
        )
    )
    assert ok["spec"]["processors"][0]["on_error"] == "skip"
    assert ok["spec"]["sinks"][0]["config"]["on_error"] == "dlq"
    assert ok["spec"]["dlq"] == {"max_events": 10, "max_bytes": 1000}
    errs = errors(b"""
metadata: {name: bad-events}
spec:
  source: {type: generator}
  processors: [{type: javascript, id: js, inline: "function process(b) { return b; }", on_error: park}]
  sinks: [{type: file, config: {id: out, path: /tmp/x, on_error: drop}}]
  dlq: {max_events: 0, size: 1}
""")
    assert errs["spec.processors[0].on_error"] == "must be one of: dlq, fail, skip"
    assert errs["spec.sinks[0].config.on_error"] == "must be one of: dlq, fail, skip"
    assert errs["spec.dlq.max_events"] == "must be >= 1"
    assert "unknown field" in errs["spec.dlq.size"]
