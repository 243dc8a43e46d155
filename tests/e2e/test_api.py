"""Every route and status code of CONTRACT section 8 (auth is in test_auth),
against a real supervisor process."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import wait_until
from tests.support.supervisor import Supervisor, file_sink, generator_spec

OPS_KEYS = {
    "pid",
    "restarts",
    "uptime_s",
    "last_error",
    "events_in",
    "events_out",
    "batches",
    "inflight",
    "lag_ms",
    "sink_errors",
    "sink_gaps",
    "checkpoints",
}


def spec(name: str, tmp: Path, **src: object) -> dict:
    return generator_spec(name, [file_sink("out", tmp / f"{name}.jsonl")], **({"rate": 2000} | src))


def assert_error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    return body["error"]


def test_health_ready_and_empty_list(supervisor: Supervisor) -> None:
    c = supervisor.client
    assert c.get("/healthz").json() == {"status": "ok"}
    r = c.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "pipelines": []}
    assert c.get("/pipelines").json() == []
    assert c.get("/openapi.json").json()["openapi"].startswith("3.")
    assert "tidegate_" in c.get("/metrics").text or c.get("/metrics").status_code == 200


def test_create_get_list_pipeinfo_shape(supervisor: Supervisor, tmp_path: Path) -> None:
    c = supervisor.client
    doc = spec("alpha", tmp_path)
    doc["metadata"]["labels"] = {"env": "prod"}
    r = c.post("/pipelines", json=doc)
    assert r.status_code == 201, r.text
    info = r.json()
    assert set(info) == {"name", "status", "spec", "ops"}
    assert info["name"] == "alpha" and info["status"] in ("starting", "running")
    assert info["spec"]["apiVersion"] == "tidegate/v1" and info["spec"]["kind"] == "Pipeline"
    assert info["spec"]["spec"]["batch"] == {
        "max_events": 2000,
        "max_bytes": 16777216,
        "max_ms": 50,
        "respect_source_tx": True,
        "max_inflight": 1,
    }
    assert info["spec"]["spec"]["commit_policy"]["mode"] == "required"
    assert info["spec"]["spec"]["sinks"][0]["config"]["required"] is True
    assert OPS_KEYS <= set(info["ops"])
    info = supervisor.wait_status("alpha", "running")
    supervisor.wait_position("alpha", "out", 100)
    wait_until(lambda: supervisor.info("alpha")["ops"]["events_in"] >= 100, message="counters reported")
    info = supervisor.info("alpha")
    ops = info["ops"]
    assert isinstance(ops["pid"], int) and ops["restarts"] == 0 and ops["uptime_s"] > 0
    assert ops["events_in"] >= 100 and ops["batches"] >= 1 and ops["last_error"] is None
    assert set(ops["checkpoints"]["out"]) == {"position", "updated_at"}
    assert ops["checkpoints"]["out"]["updated_at"].endswith("Z")
    # list + label selector
    c.post("/pipelines", json=spec("beta", tmp_path))
    names = [p["name"] for p in c.get("/pipelines").json()]
    assert names == ["alpha", "beta"]
    assert [p["name"] for p in c.get("/pipelines", params={"label": "env=prod"}).json()] == ["alpha"]
    assert c.get("/pipelines", params={"label": "env=dev"}).json() == []
    assert_error(c.get("/pipelines", params={"label": "nokey"}), 400, "bad_request")
    # readyz lists them
    ready = c.get("/readyz").json()
    assert {p["name"] for p in ready["pipelines"]} == {"alpha", "beta"}
    # checkpoints route
    cks = c.get("/pipelines/alpha/checkpoints").json()
    assert set(cks) == {"out"} and int(cks["out"]["position"]) >= 100


def test_errors_are_4xx_with_bodies(supervisor: Supervisor, tmp_path: Path) -> None:
    c = supervisor.client
    assert_error(c.get("/pipelines/nope"), 404, "not_found")
    for op in ("pause", "resume", "stop", "restart"):
        assert_error(c.post(f"/pipelines/nope/{op}"), 404, "not_found")
    assert_error(c.get("/pipelines/nope/checkpoints"), 404, "not_found")
    assert_error(c.delete("/pipelines/nope/checkpoints"), 404, "not_found")
    assert_error(c.delete("/pipelines/nope"), 404, "not_found")
    assert_error(c.patch("/pipelines/nope", json={}), 404, "not_found")
    assert_error(
        c.post("/pipelines", content=b"{not json", headers={"content-type": "application/json"}), 400, "bad_request"
    )
    assert_error(c.post("/pipelines", content=b"[1, 2]"), 422, "invalid_spec")
    assert_error(
        c.post("/pipelines", content=b"metadata: [", headers={"content-type": "application/yaml"}), 400, "bad_request"
    )
    assert_error(
        c.post("/pipelines", content=b"<x/>", headers={"content-type": "application/xml"}),
        415,
        "unsupported_media_type",
    )
    assert_error(c.post("/pipelines", content=b"{" + b" " * (10 * 1024 * 1024) + b"}"), 413, "payload_too_large")
    bad = {
        "metadata": {"name": "Bad Name"},
        "spec": {
            "source": {"type": "generator", "config": {"rate": -1}},
            "sinks": [{"type": "file", "config": {"path": "/tmp/x"}}],
            "batch": {"max_events": 0, "typo": 1},
        },
    }
    err = assert_error(c.post("/pipelines", json=bad), 422, "invalid_spec")
    paths = {d["path"]: d["message"] for d in err["details"]}
    assert paths["spec.batch.max_events"] == "must be >= 1"
    assert "spec.sinks[0].config.id" in paths and "spec.batch.typo" in paths
    assert "metadata.name" in paths and "spec.source.config.rate" in paths
    quorum = spec("q", tmp_path)
    quorum["spec"]["commit_policy"] = {"mode": "quorum", "quorum": 3}
    err = assert_error(c.post("/pipelines", json=quorum), 422, "invalid_spec")
    assert err["details"][0]["path"] == "spec.commit_policy.quorum"
    assert_error(
        c.post("/pipelines", json=generator_spec("env", [file_sink("o", "${NOT_SET_ANYWHERE}")])), 422, "invalid_spec"
    )
    # duplicate name
    assert c.post("/pipelines", json=spec("dup", tmp_path)).status_code == 201
    assert_error(c.post("/pipelines", json=spec("dup", tmp_path)), 409, "conflict")
    # rename by patch, invalid patch
    assert_error(c.patch("/pipelines/dup", json={"metadata": {"name": "other"}}), 409, "conflict")
    assert_error(c.patch("/pipelines/dup", json={"spec": {"batch": {"max_events": -5}}}), 422, "invalid_spec")
    assert_error(
        c.patch("/pipelines/dup", content=b"{", headers={"content-type": "application/merge-patch+json"}),
        400,
        "bad_request",
    )
    # delete checkpoints needs stopped
    assert_error(c.delete("/pipelines/dup/checkpoints"), 409, "conflict")
    assert_error(c.get("/no/such/route"), 404, "not_found")


def test_yaml_body_secrets_redacted_and_env_expansion(tmp_path: Path) -> None:
    out = tmp_path / "y.jsonl"
    with Supervisor(tmp_path, env={"OUT_PATH": str(out), "HOOK_TOKEN": "s3cr3t"}) as sup:
        body = """
metadata: {name: yamlpipe}
spec:
  source: {type: generator, config: {rate: 1000}}
  sinks:
    - type: file
      config: {id: out, path: "${OUT_PATH}"}
    - type: http
      config:
        id: hook
        required: false
        url: "http://user:${HOOK_TOKEN}@127.0.0.1:9/x"
        headers: {Authorization: "Bearer ${HOOK_TOKEN}"}
"""
        r = sup.client.post("/pipelines", content=body, headers={"content-type": "application/yaml"})
        assert r.status_code == 201, r.text
        text = r.text
        assert "s3cr3t" not in text
        cfg = r.json()["spec"]["spec"]["sinks"]
        assert cfg[0]["config"]["path"] == str(out)
        assert cfg[1]["config"]["url"] == "http://user:***@127.0.0.1:9/x"
        assert cfg[1]["config"]["headers"]["Authorization"] == "***"
        wait_until(lambda: out.exists() and out.stat().st_size > 0, timeout=20, message="yaml pipeline output")
        assert "s3cr3t" not in sup.client.get("/pipelines").text
        assert "s3cr3t" not in sup.log_path.read_text()


def test_lifecycle_routes(supervisor: Supervisor, tmp_path: Path) -> None:
    c = supervisor.client
    supervisor.create(spec("life", tmp_path))
    supervisor.wait_status("life", "running")
    assert supervisor.action("life", "pause")["status"] == "paused"
    assert supervisor.action("life", "pause")["status"] == "paused"  # idempotent
    assert supervisor.action("life", "resume")["status"] == "running"
    assert supervisor.action("life", "resume")["status"] == "running"  # idempotent
    info = supervisor.action("life", "stop")
    assert info["status"] == "stopped" and info["ops"]["pid"] is None
    assert supervisor.action("life", "stop")["status"] == "stopped"  # idempotent
    assert_error(c.post("/pipelines/life/pause"), 409, "conflict")
    r = c.delete("/pipelines/life/checkpoints")
    assert r.status_code == 204 and c.get("/pipelines/life/checkpoints").json() == {}
    assert supervisor.action("life", "resume")["status"] in ("starting", "running")
    supervisor.wait_status("life", "running")
    pid = supervisor.info("life")["ops"]["pid"]
    info = supervisor.action("life", "restart")
    assert info["status"] in ("starting", "running")
    supervisor.wait_status("life", "running")
    info = supervisor.info("life")
    assert info["ops"]["pid"] != pid and info["ops"]["restarts"] == 0
    assert c.delete("/pipelines/life").status_code == 204
    assert_error(c.get("/pipelines/life"), 404, "not_found")
