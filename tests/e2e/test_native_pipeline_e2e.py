"""Native processors through a real `tidegate serve`: generator -> filter -> javascript ->
mask -> file sink, checked line by line; the mask key comes from `${VAR}` and the API shows
it redacted; a bad regex is a 422 naming its path."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from tests.support import wait_until
from tests.support.supervisor import Supervisor, file_sink, generator_spec, read_jsonl

KEY = "k3y-for-tests"
ENRICH = (
    "export function process(batch) {\n"
    "  for (const e of batch) e.after.email = 'user' + e.after.id + '@example.com';\n"
    "  return batch;\n"
    "}\n"
)


def test_filter_javascript_mask_to_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    doc = generator_spec("native", [file_sink("out", out)], tables=["shop.orders", "shop.users"], count=600)
    doc["spec"]["processors"] = [
        {"type": "filter", "id": "orders", "tables": ["shop.ord*"], "where": [{"path": "after.id", "lte": 400}]},
        {"type": "javascript", "id": "enrich", "inline": ENRICH},
        {"type": "mask", "id": "pii", "fields": ["after.email"], "action": "hash", "key": "${TG_MASK_KEY}"},
        {"type": "mask", "id": "short", "fields": ["after.pay*"], "action": "truncate", "length": 5},
    ]
    doc["spec"]["batch"] = {"max_events": 64}
    only = generator_spec("only", [file_sink("out", tmp_path / "only.jsonl")], count=300)
    only["spec"]["processors"] = [
        {"type": "filter", "id": "f", "action": "drop", "where": [{"path": "after.id", "gt": 100}]}
    ]
    with Supervisor(tmp_path, env={"TG_MASK_KEY": KEY}) as sup:
        sup.create(only)  # a filter alone: the file gets the kept events' source encodings
        info = sup.create(doc)
        assert info["spec"]["spec"]["processors"][2]["key"] == "***", "the mask key is a secret"
        sup.wait_position("native", "out", 600)
        wait_until(
            lambda: (o := sup.info("native")["ops"])["events_in"] == 600 and o["events_out"] == 200,
            message="ops: 600 events in, 200 out",
        )
        metrics = sup.client.get("/metrics").text
        for pid in ("orders", "enrich", "pii", "short"):
            assert f'tidegate_processor_seconds_total{{pipeline="native",processor="{pid}"}}' in metrics
        bad = generator_spec("bad", [file_sink("o", tmp_path / "bad.jsonl")])
        bad["spec"]["processors"] = [{"type": "filter", "id": "f", "where": [{"path": "after.x", "regex": "("}]}]
        r = sup.client.post("/pipelines", json=bad)
        assert r.status_code == 422
        (detail,) = r.json()["error"]["details"]
        assert detail["path"] == "spec.processors[0].where[0].regex"
        assert detail["message"].startswith("invalid regex: missing ), unterminated subpattern")
        sup.wait_position("only", "out", 300)
    kept = read_jsonl(tmp_path / "only.jsonl")
    assert [e["after"]["id"] for e in kept] == list(range(1, 101)) and kept[0]["source"]["position"] == "1"
    lines = wait_until(lambda: read_jsonl(out), message="the file sink's lines")
    assert [e["after"]["id"] for e in lines] == list(range(1, 400, 2)), "orders (odd ids) up to 400, in order"
    for e in lines:
        n = e["after"]["id"]
        assert e["source"]["table"] == "orders" and e["op"] == "c"
        want = hmac.new(KEY.encode(), f"user{n}@example.com".encode(), hashlib.sha256).hexdigest()
        assert e["after"]["email"] == want
        assert len(e["after"]["payload"]) == 5
        assert set(e["after"]) == {"id", "payload", "email"}
