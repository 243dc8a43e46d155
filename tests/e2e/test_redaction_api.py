"""CONTRACT section 2 through the API: `routing_key` is shown (it routes and hides
nothing), every real secret is `***` in PipeInfo and the log, and a GET -> edit ->
PATCH round trip of the redacted document keeps the stored secrets (issue 10, item 6)."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.support import wait_until
from tests.support.httpserver import RecordingServer
from tests.support.supervisor import Supervisor, file_sink, generator_spec


def sink_configs(info: dict) -> dict[str, dict]:
    return {s["config"]["id"]: s["config"] for s in info["spec"]["spec"]["sinks"]}


def test_routing_key_shown_secrets_hidden(supervisor: Supervisor, tmp_path: Path) -> None:
    doc = generator_spec("routes", [file_sink("out", tmp_path / "o.jsonl")], rate=10)
    doc["spec"]["sinks"] += [
        {
            "type": "rabbitmq",
            "config": {
                "id": "mq",
                "required": False,
                "url": "amqp://guest:mqpass1@127.0.0.1:5672/",
                "exchange": "",
                "routing_key": "orders.created",
            },
        },
        {
            "type": "kafka",
            "config": {
                "id": "k",
                "required": False,
                "brokers": "127.0.0.1:1",
                "topic": "t",
                "client_conf": {"sasl.password": "kpass1", "ssl.key.password": "kpass2", "acks": "all"},
            },
        },
    ]
    r = supervisor.client.post("/pipelines", json=doc)
    assert r.status_code == 201, r.text
    for text in (r.text, supervisor.client.get("/pipelines/routes").text, supervisor.client.get("/pipelines").text):
        assert "mqpass1" not in text and "kpass1" not in text and "kpass2" not in text
    cfg = sink_configs(supervisor.info("routes"))
    assert cfg["mq"]["routing_key"] == "orders.created"
    assert cfg["mq"]["url"] == "amqp://guest:***@127.0.0.1:5672/"
    assert cfg["k"]["client_conf"] == {"sasl.password": "***", "ssl.key.password": "***", "acks": "all"}
    assert supervisor.client.delete("/pipelines/routes").status_code == 204
    log = supervisor.log_path.read_text()
    assert "mqpass1" not in log and "kpass1" not in log and "kpass2" not in log


def test_redacted_round_trip_keeps_the_secrets(supervisor: Supervisor, tmp_path: Path) -> None:
    hook = RecordingServer().start()
    try:
        url = hook.url.replace("http://", "http://user:pw-1@")
        sink = {"id": "hook", "url": url, "headers": {"X-Api-Token": "tok-1", "X-Route": "r1"}}
        doc = generator_spec("trip", [{"type": "http", "config": sink}], rate=200)
        assert supervisor.client.post("/pipelines", json=doc).status_code == 201
        info = supervisor.wait_status("trip", "running")
        pid = info["ops"]["pid"]
        edited = info["spec"]
        assert edited["spec"]["sinks"][0]["config"]["headers"] == {"X-Api-Token": "***", "X-Route": "r1"}
        assert edited["spec"]["sinks"][0]["config"]["url"] == hook.url.replace("http://", "http://user:***@")
        edited["spec"]["batch"]["max_events"] = 7
        r = supervisor.client.patch(
            "/pipelines/trip", json=edited, headers={"content-type": "application/merge-patch+json"}
        )
        assert r.status_code == 200, r.text
        assert sink_configs(r.json())["hook"]["headers"]["X-Api-Token"] == "***"
        wait_until(lambda: supervisor.info("trip")["ops"]["pid"] not in (None, pid), message="worker restarted")
        seen = len(hook.posts)
        wait_until(lambda: len(hook.posts) > seen + 3, timeout=30, message="posts from the patched worker")
        with hook.lock:
            seen_headers = [{k.lower(): v for k, v in p["headers"].items()} for p in hook.posts]
        assert {h["x-api-token"] for h in seen_headers} == {"tok-1"}
        assert {h["authorization"] for h in seen_headers} == {"Basic " + base64.b64encode(b"user:pw-1").decode()}
        assert {h["x-route"] for h in seen_headers} == {"r1"}
    finally:
        hook.stop()
