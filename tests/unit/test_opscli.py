"""supervisor.opscli pure parts: the merge patch `apply` sends, the unchanged
check, output formats, argument errors."""

from __future__ import annotations

import json

import yaml

from shared.spec.load import to_document, validate_document
from shared.spec.patch import merge_patch
from shared.spec.redact import redact
from supervisor import opscli

DOC = {
    "metadata": {"name": "u1", "labels": {"a": "1"}},
    "spec": {
        "source": {"type": "generator", "config": {"rate": 5}},
        "processors": [{"type": "javascript", "id": "p", "inline": "function process(b) { return b; }"}],
        "sinks": [{"type": "file", "config": {"id": "out", "path": "/tmp/x.jsonl"}}],
    },
}


def served(doc: dict) -> dict:
    return redact(to_document(validate_document(doc, env={})))


def test_merge_patch_for_turns_current_into_wanted() -> None:
    current = served(DOC)
    wanted = {"metadata": {"name": "u1"}, "spec": {"source": {"type": "generator"}, "sinks": DOC["spec"]["sinks"]}}
    patch = opscli.merge_patch_for(current, wanted)
    assert patch["metadata"]["labels"] is None and patch["spec"]["processors"] is None
    assert patch["spec"]["source"]["config"] is None
    merged = merge_patch(current, patch)
    assert merged == wanted
    # the server then fills in defaults again: no labels, no processors, default rate
    spec = to_document(validate_document(merged, env={}))
    assert spec["metadata"]["labels"] == {} and spec["spec"]["processors"] == []
    assert spec["spec"]["source"]["config"]["rate"] == 0.0


def test_unchanged_only_when_equal_and_free_of_secrets_and_variables() -> None:
    assert opscli.unchanged(DOC, served(DOC))
    other = json.loads(json.dumps(DOC))
    other["spec"]["source"]["config"]["rate"] = 6
    assert not opscli.unchanged(other, served(DOC))
    secret = json.loads(json.dumps(DOC))
    secret["spec"]["sinks"].append({"type": "http", "config": {"id": "w", "url": "http://u:pw@h/x"}})
    assert not opscli.unchanged(secret, served(secret))  # the server shows ***: cannot tell, so update
    var = json.loads(json.dumps(DOC))
    var["spec"]["sinks"][0]["config"]["path"] = "${OUT:-/tmp/x.jsonl}"
    assert not opscli.unchanged(var, served(DOC))
    assert not opscli.unchanged({"metadata": {"name": "u1"}}, served(DOC))  # invalid locally


def test_render_formats() -> None:
    info = {
        "name": "u1",
        "status": "running",
        "spec": served(DOC),
        "ops": {
            "events_out": 12,
            "restarts": 1,
            "uptime_s": 3725.0,
            "last_error": "boom\nsecond line",
            "checkpoints": {"out": {"position": "12", "updated_at": "x"}},
        },
    }
    table = opscli.render([info], "table").splitlines()
    assert table[0].split() == [
        "NAME",
        "STATUS",
        "SOURCE",
        "SINKS",
        "EVENTS_OUT",
        "RESTARTS",
        "UPTIME",
        "CHECKPOINTS",
        "LAST_ERROR",
    ]
    assert table[1].split()[:8] == ["u1", "running", "generator", "out", "12", "1", "1h2m", "out=12"]
    assert "boom second line" in table[1]
    assert json.loads(opscli.render(info, "json")) == info
    assert yaml.safe_load(opscli.render(info, "yaml")) == info
    assert [opscli._age(s) for s in (None, 5, 125, 7300, 90000)] == ["-", "5s", "2m5s", "2h1m", "1d1h"]


def test_usage_errors_exit_1() -> None:
    assert opscli.main(["apply"]) == 1  # -f missing
    assert opscli.main(["frobnicate", "x"]) == 1
    assert opscli.main(["get", "--help"]) == 0
