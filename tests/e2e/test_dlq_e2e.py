"""Bad events and the dead-letter queue through a real `tidegate serve` (CONTRACT section 12).

- A JavaScript processor that throws for one id in 20,000 generator events, `on_error: dlq`:
  every other id reaches the file sink in order, one DLQ entry names the processor, the
  error and the position; PATCH a fixed processor, replay: the event is delivered, the DLQ
  is empty. With `skip`: counted in ops.skipped, logged with the position, nothing parked.
- A Postgres sink whose table has a CHECK constraint, beside a file sink: the violating
  row is parked for the Postgres sink only, the file sink has every event; the table
  fixed, replay delivers it to Postgres alone.
- A full DLQ holds the pipeline with ops.last_error saying so; a purge lets it go on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.test_sink_pgsink import db, query  # noqa: F401 - fixture
from tests.support import wait_until
from tests.support.supervisor import Supervisor, file_sink, generator_spec, read_jsonl

MERGE = {"content-type": "application/merge-patch+json"}
N, BAD = 20000, 12345
THROWS = (
    "export function process(batch) {\n"
    f"  for (const e of batch) {{ if (e.after.id === {BAD}) throw new Error('cannot take id ' + e.after.id); }}\n"
    "  return batch;\n}\n"
)
FIXED = "export function process(batch) { for (const e of batch) e.after.fixed = true; return batch; }\n"


def js_pipeline(name: str, out: Path, on_error: str) -> dict[str, Any]:
    doc = generator_spec(name, [file_sink("out", out)], count=N, payload_bytes=10)
    doc["spec"]["processors"] = [{"type": "javascript", "id": "guard", "inline": THROWS, "on_error": on_error}]
    return doc


def dlq(sup: Supervisor, name: str, **params: Any) -> dict[str, Any]:
    r = sup.client.get(f"/pipelines/{name}/dlq", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def replay(sup: Supervisor, name: str, body: dict[str, Any]) -> dict[str, Any]:
    r = sup.client.post(f"/pipelines/{name}/dlq/replay", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_throwing_processor_parks_one_event_and_replay_delivers_it(supervisor: Supervisor, tmp_path: Path) -> None:
    sup, name, out = supervisor, "tg-dlq-js", tmp_path / "out.jsonl"
    sup.create(js_pipeline(name, out, "dlq"))
    sup.wait_position(name, "out", N, timeout=120)
    ids = [e["after"]["id"] for e in read_jsonl(out)]
    assert ids == [i for i in range(1, N + 1) if i != BAD]  # every other id, in order
    page = dlq(sup, name)
    assert page["next"] is None and len(page["entries"]) == 1
    [e] = page["entries"]
    assert (e["stage"], e["position"], e["attempts"], e["generation"]) == ("processor:guard", str(BAD), 1, 1)
    assert f"cannot take id {BAD}" in e["error"] and "processor 'guard'" in e["error"]
    assert e["event"]["after"]["id"] == BAD and e["first_seen"] and e["last_seen"]
    assert sup.client.get(f"/pipelines/{name}/dlq/{e['id']}").json() == e
    assert sup.client.get(f"/pipelines/{name}/dlq/999999").status_code == 404
    assert sup.client.get("/pipelines/nope/dlq").status_code == 404
    assert sup.info(name)["ops"]["dlq"] == {"processor:guard": 1}
    # a replay with the processor still broken keeps the entry, its error and attempts updated
    assert replay(sup, name, {"ids": [e["id"]]}) == {"replayed": 0, "failed": 1, "remaining": 1}
    again = sup.client.get(f"/pipelines/{name}/dlq/{e['id']}").json()
    assert again["attempts"] == 2 and again["last_seen"] >= e["last_seen"]
    patch = {"spec": {"processors": [{"type": "javascript", "id": "guard", "inline": FIXED, "on_error": "dlq"}]}}
    r = sup.client.patch(f"/pipelines/{name}", json=patch, headers=MERGE)
    assert r.status_code == 200, r.text
    wait_until(lambda: sup.info(name)["status"] == "running" and sup.info(name)["ops"]["pid"], timeout=30)
    assert replay(sup, name, {"all": True}) == {"replayed": 1, "failed": 0, "remaining": 0}
    lines = read_jsonl(out)
    assert [x["after"]["id"] for x in lines].count(BAD) == 1 and lines[-1]["after"] == {
        **e["event"]["after"],
        "fixed": True,
    }
    assert dlq(sup, name) == {"entries": [], "next": None} and sup.info(name)["ops"]["dlq"] == {}
    assert replay(sup, name, {"stage": "processor:guard"}) == {"replayed": 0, "failed": 0, "remaining": 0}
    assert sup.client.post(f"/pipelines/{name}/dlq/replay", json={"ids": [1], "all": True}).status_code == 422


def test_skip_counts_and_logs_the_position_and_parks_nothing(supervisor: Supervisor, tmp_path: Path) -> None:
    sup, name, out = supervisor, "tg-dlq-skip", tmp_path / "out.jsonl"
    sup.create(js_pipeline(name, out, "skip"))
    sup.wait_position(name, "out", N, timeout=120)
    assert [e["after"]["id"] for e in read_jsonl(out)] == [i for i in range(1, N + 1) if i != BAD]
    wait_until(lambda: sup.info(name)["ops"]["skipped"] == 1, timeout=10, message="ops.skipped == 1")
    assert dlq(sup, name)["entries"] == [] and sup.info(name)["ops"]["dlq"] == {}
    log = (sup.tmp / "supervisor.log").read_text()
    [line] = [x for x in log.splitlines() if "events_skipped" in x]
    assert f'"{BAD}"' in line or f"'{BAD}'" in line, line


def test_a_postgres_constraint_parks_the_row_for_that_sink_alone(
    supervisor: Supervisor,
    tmp_path: Path,
    db: str,  # noqa: F811
) -> None:
    sup, name, out, n, bad = supervisor, "tg-dlq-pg", tmp_path / "all.jsonl", 3000, 1717
    query(db, f"ALTER TABLE orders ADD CONSTRAINT not_{bad} CHECK (id <> {bad})")
    pg = {"type": "postgres", "config": {"id": "replica", "dsn": db, "table": "orders", "on_error": "dlq"}}
    sup.create(generator_spec(name, [pg, file_sink("all", out)], count=n, payload_bytes=20, tables=["shop.orders"]))
    sup.wait_position(name, "replica", n, timeout=120)
    sup.wait_position(name, "all", n, timeout=60)
    assert [e["after"]["id"] for e in read_jsonl(out)] == list(range(1, n + 1))
    assert query(db, "SELECT count(*), count(*) FILTER (WHERE id = %s) FROM orders", bad) == [(n - 1, 0)]
    [e] = dlq(sup, name)["entries"]
    assert (e["stage"], e["position"]) == ("sink:replica", str(bad)) and "not_1717" in e["error"]
    assert dlq(sup, name, stage="sink:all")["entries"] == []
    assert replay(sup, name, {"stage": "sink:replica"}) == {"replayed": 0, "failed": 1, "remaining": 1}
    query(db, f"ALTER TABLE orders DROP CONSTRAINT not_{bad}")
    assert replay(sup, name, {"stage": "sink:replica"}) == {"replayed": 1, "failed": 0, "remaining": 0}
    assert query(db, "SELECT count(*) FROM orders WHERE id = %s", bad) == [(1,)]
    assert len(read_jsonl(out)) == n  # the file sink got no second copy
    assert query(db, "SELECT count(*) FROM orders") == [(n,)]


def test_a_full_dlq_holds_and_a_purge_lets_it_go_on(supervisor: Supervisor, tmp_path: Path) -> None:
    sup, name, out = supervisor, "tg-dlq-full", tmp_path / "out.jsonl"
    odd = (
        "export function process(b) { for (const e of b) if (e.after.id % 100 === 0) throw new Error('x'); return b; }"
    )
    doc = generator_spec(name, [file_sink("out", out)], count=1000, payload_bytes=10)
    doc["spec"]["processors"] = [{"type": "javascript", "id": "hundreds", "inline": odd, "on_error": "dlq"}]
    doc["spec"]["dlq"] = {"max_events": 3}
    doc["spec"]["batch"] = {"max_events": 50}
    sup.create(doc)
    msg: dict[str, Any] = {}

    def held() -> bool:
        msg["ops"] = sup.info(name)["ops"]
        return "DLQ is full" in (msg["ops"]["last_error"] or "")

    wait_until(held, timeout=60, message=lambda: f"ops.last_error names the full DLQ ({msg.get('ops')})")
    assert msg["ops"]["dlq"] == {"processor:hundreds": 3}
    ck = int(msg["ops"]["checkpoints"]["out"]["position"])
    assert ck < 400 and all(e["after"]["id"] <= ck for e in read_jsonl(out))
    r = sup.client.delete(f"/pipelines/{name}/dlq", params={"stage": "processor:hundreds"})
    assert r.status_code == 200 and r.json() == {"purged": 3}
    wait_until(lambda: sup.info(name)["ops"]["dlq"] == {"processor:hundreds": 3}, timeout=60)
    assert sup.client.delete(f"/pipelines/{name}/dlq").json() == {"purged": 3}
    wait_until(lambda: sup.info(name)["ops"]["dlq"] == {"processor:hundreds": 3}, timeout=60)
    assert sup.client.delete(f"/pipelines/{name}/dlq").json() == {"purged": 3}
    sup.wait_position(name, "out", 1000, timeout=60)
    assert [e["after"]["id"] for e in read_jsonl(out)] == [i for i in range(1, 1001) if i % 100]
    assert sup.info(name)["ops"]["dlq"] == {"processor:hundreds": 1}
