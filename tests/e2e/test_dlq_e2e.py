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

import os
import subprocess
import sys
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


def tg(sup: Supervisor, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TIDEGATE_SERVER=sup.url)
    cmd = [sys.executable, "-m", "supervisor.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


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
    ls = tg(sup, "dlq", "ls", name)
    assert ls.returncode == 0 and "sink:replica" in ls.stdout and str(bad) in ls.stdout, ls
    shown = tg(sup, "dlq", "show", name, e["id"], "-o", "json")
    assert shown.returncode == 0 and f'"id": {bad}' in shown.stdout.replace('"id":' + str(bad), f'"id": {bad}')
    failed = tg(sup, "dlq", "replay", name, "--stage", "sink:replica")
    assert failed.returncode == 1 and "failed 1, remaining 1" in failed.stdout, failed
    assert sup.client.get(f"/pipelines/{name}/dlq/{e['id']}").json()["attempts"] == 2
    metrics = sup.client.get("/metrics").text
    assert f'tidegate_dlq_events{{pipeline="{name}",stage="sink:replica"}} 1.0' in metrics
    assert f'tidegate_dlq_parked_total{{pipeline="{name}",stage="sink:replica"}} 1.0' in metrics
    query(db, f"ALTER TABLE orders DROP CONSTRAINT not_{bad}")
    done = tg(sup, "dlq", "replay", name, "--all")
    assert done.returncode == 0 and "replayed 1, failed 0, remaining 0" in done.stdout, done
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


def test_sigkill_while_parking_and_while_replaying_loses_nothing_parks_nothing_twice(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    import os
    import signal
    import threading

    from tests.support.sinks import kill_worker_and_wait_restart
    from tests.support.supervisor import ids_in, wait_pid_gone

    sup, name, out, n = supervisor, "tg-dlq-kill", tmp_path / "out.jsonl", 6000
    every = (
        "export function process(b) {\n"
        "  for (const e of b) if (e.after.id % 97 === 0) throw new Error('bad ' + e.after.id);\n  return b;\n}\n"
    )
    doc = generator_spec(name, [file_sink("out", out)], count=n, rate=2000, payload_bytes=10)
    doc["spec"]["processors"] = [{"type": "javascript", "id": "p97", "inline": every, "on_error": "dlq"}]
    sup.create(doc)
    sup.wait_position(name, "out", 1500, timeout=60)
    kill_worker_and_wait_restart(sup, name)  # in the middle of the stream: batches with poison in flight
    sup.wait_position(name, "out", n, timeout=120)
    poison = [i for i in range(1, n + 1) if i % 97 == 0]
    assert ids_in(out) == {i for i in range(1, n + 1) if i % 97}  # nothing missing (a replay may repeat)
    entries = dlq(sup, name, limit=1000)["entries"]
    assert [int(e["position"]) for e in entries] == poison  # each parked once, oldest first
    assert sup.info(name)["ops"]["dlq"] == {"processor:p97": len(poison)}
    patch = {"spec": {"processors": [{"type": "javascript", "id": "p97", "inline": FIXED, "on_error": "dlq"}]}}
    assert sup.client.patch(f"/pipelines/{name}", json=patch, headers=MERGE).status_code == 200
    wait_until(lambda: sup.info(name)["status"] == "running" and sup.info(name)["ops"]["pid"], timeout=30)
    pid = sup.worker_pid(name)
    answers: list[int] = []
    t = threading.Thread(
        target=lambda: answers.append(sup.client.post(f"/pipelines/{name}/dlq/replay", json={"all": True}).status_code)
    )
    t.start()
    wait_until(lambda: bool(ids_in(out) & set(poison)) or answers, timeout=30, message="the replay to start")
    os.kill(pid, signal.SIGKILL)
    wait_pid_gone(pid)
    t.join(60)
    assert answers and answers[0] in (200, 409), answers
    wait_until(
        lambda: sup.info(name)["ops"]["pid"] not in (None, pid) and sup.info(name)["status"] == "running", timeout=60
    )
    left = dlq(sup, name, limit=1000)["entries"]
    assert {int(e["position"]) for e in left} <= set(poison)
    delivered = ids_in(out) & set(poison)
    assert delivered | {int(e["position"]) for e in left} == set(poison)  # each one delivered or still parked
    assert replay(sup, name, {"all": True})["remaining"] == 0
    assert ids_in(out) == set(range(1, n + 1)) and dlq(sup, name)["entries"] == []


def test_an_http_400_parks_for_that_sink_and_a_503_is_never_parked(supervisor: Supervisor, tmp_path: Path) -> None:
    from tests.support.httpserver import RecordingServer

    sup, name, out, n, bad = supervisor, "tg-dlq-http", tmp_path / "all.jsonl", 2000, 777
    srv = RecordingServer().start()
    try:
        srv.refuse_ids = {bad}
        hook = {"type": "http", "config": {"id": "hook", "url": srv.url, "on_error": "dlq"}}
        sup.create(generator_spec(name, [hook, file_sink("all", out)], count=n, payload_bytes=10))
        sup.wait_position(name, "hook", n, timeout=60)
        assert sorted(srv.ids()) == [i for i in range(1, n + 1) if i != bad]
        assert [e["after"]["id"] for e in read_jsonl(out)] == list(range(1, n + 1))
        [e] = dlq(sup, name)["entries"]
        assert (e["stage"], e["position"]) == ("sink:hook", str(bad)) and "returned 400" in e["error"]
        # a retryable failure (5xx) holds whatever on_error says: nothing is parked meanwhile
        srv.refuse_ids, srv.fail_status = set(), 503
        assert replay(sup, name, {"all": True}) == {"replayed": 0, "failed": 1, "remaining": 1}
        doc = generator_spec(name, [hook, file_sink("all", out)], count=n + 500, payload_bytes=10)
        assert sup.client.patch(f"/pipelines/{name}", json=doc, headers=MERGE).status_code == 200
        wait_until(
            lambda: "hook" in sup.info(name)["ops"]["sink_errors"], timeout=30, message="the 503 in ops.sink_errors"
        )
        assert sup.info(name)["ops"]["dlq"] == {"sink:hook": 1}
        srv.fail_status = None
        sup.wait_position(name, "hook", n + 500, timeout=60)
        assert sorted(srv.ids()) == [i for i in range(1, n + 501) if i != bad]
        assert replay(sup, name, {"stage": "sink:hook"}) == {"replayed": 1, "failed": 0, "remaining": 0}
        assert sorted(srv.ids()) == list(range(1, n + 501))
        assert len(read_jsonl(out)) == n + 500  # the file sink had it already: no second copy
    finally:
        srv.stop()
