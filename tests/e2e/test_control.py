"""Pause, resume, stop, PATCH and persistence of states across supervisor restarts."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support import wait_until
from tests.support.supervisor import Supervisor, file_sink, generator_spec, read_jsonl


def size(p: Path) -> int:
    return p.stat().st_size if p.exists() else 0


def test_pause_resume_stop_patch_and_persistence(tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    sup = Supervisor(tmp_path).start()
    try:
        spec = generator_spec("p", [file_sink("out", out)], rate=2000)
        spec["spec"]["batch"] = {"max_events": 100, "max_ms": 20}
        sup.create(spec)
        wait_until(lambda: size(out) > 0, message="output")
        t0 = time.monotonic()
        info = sup.action("p", "pause")
        assert info["status"] == "paused" and time.monotonic() - t0 < 1.0, "paused within 1 s"
        still = size(out)
        for _ in range(10):  # ~1 s of observation: the file stays still
            assert size(out) == still
            time.sleep(0.1)
        assert sup.action("p", "resume")["status"] == "running"
        wait_until(lambda: size(out) > still, message="growing again after resume")
        # stop flushes and checkpoints: the checkpoint equals the last line in the file
        info = sup.action("p", "stop")
        assert info["status"] == "stopped"
        last = read_jsonl(out)[-1]["after"]["id"]
        assert int(info["ops"]["checkpoints"]["out"]["position"]) == last
        # PATCH batch settings while stopped: stays stopped, spec updated
        r = sup.client.patch(
            "/pipelines/p",
            json={"spec": {"batch": {"max_events": 7}}},
            headers={"content-type": "application/merge-patch+json"},
        )
        assert r.status_code == 200 and r.json()["spec"]["spec"]["batch"]["max_events"] == 7
        assert r.json()["status"] == "stopped"
        sup.action("p", "resume")
        sup.wait_status("p", "running")
        # PATCH while running restarts the worker with the new settings, from its checkpoint
        pid = sup.worker_pid("p")
        before = int(sup.info("p")["ops"]["checkpoints"]["out"]["position"])
        r = sup.client.patch(
            "/pipelines/p",
            json={"spec": {"batch": {"max_events": 3, "max_ms": 5000}, "source": {"config": {"rate": 20000}}}},
        )
        assert r.status_code == 200, r.text
        wait_until(lambda: sup.info("p")["ops"]["pid"] not in (None, pid), message="worker restarted")
        wait_until(
            lambda: int(sup.info("p")["ops"]["checkpoints"]["out"]["position"]) >= before + 30,
            message="progress after patch",
        )
        ids = [e["after"]["id"] for e in read_jsonl(out)]
        assert sorted(set(ids)) == list(range(1, max(ids) + 1)), "nothing lost across pause/stop/patch"
        # the new max_events holds: no batch over 3 events (a caught-up source may close smaller ones)
        o1 = sup.info("p")["ops"]
        wait_until(lambda: sup.info("p")["ops"]["batches"] >= o1["batches"] + 50, message="50 more batches")
        o2 = sup.info("p")["ops"]
        per_batch = (o2["events_out"] - o1["events_out"]) / (o2["batches"] - o1["batches"])
        assert per_batch <= 3, f"batches of at most 3 events now: {per_batch:.2f} on average"
        assert sup.info("p")["ops"]["restarts"] == 0
        # paused and stopped survive a supervisor restart
        sup.create(generator_spec("s", [file_sink("out", tmp_path / "s.jsonl")], rate=100))
        sup.action("p", "pause")
        sup.action("s", "stop")
        assert sup.stop() == 0
        sup.start()
        assert sup.info("p")["status"] == "paused"
        assert sup.info("s")["status"] == "stopped" and sup.info("s")["ops"]["pid"] is None
        still = size(out)
        time.sleep(0.5)
        assert size(out) == still
        assert sup.action("p", "resume")["status"] == "running"
        wait_until(lambda: size(out) > still, message="resumed after supervisor restart")
    finally:
        sup.close()


def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    sup = Supervisor(tmp_path).start()
    try:
        sup.create(generator_spec("t", [file_sink("out", out)], rate=5000))
        wait_until(lambda: size(out) > 1000, message="output")
        assert sup.stop() == 0
        sup.start()
        info = sup.info("t")
        ck = int(info["ops"]["checkpoints"]["out"]["position"])
        ids = [e["after"]["id"] for e in read_jsonl(out)]
        assert ids[:ck] == list(range(1, ck + 1))
        assert info["status"] in ("starting", "running"), "running pipelines start again"
    finally:
        sup.close()


def test_restarts_while_small_batches_queue_for_the_window_lose_nothing(tmp_path: Path) -> None:
    """A stop refuses the batch waiting for a place in the max_inflight window; no later batch
    may be delivered past it (its checkpoint would skip the refused one for good)."""
    out = tmp_path / "r.jsonl"
    with Supervisor(tmp_path) as sup:
        spec = generator_spec("r", [file_sink("out", out)])  # unbounded, full speed
        spec["spec"]["batch"] = {"max_events": 3, "max_ms": 5}
        sup.create(spec)
        for i in range(6):
            sup.wait_position("r", "out", 1)
            pos = int(sup.info("r")["ops"]["checkpoints"]["out"]["position"])
            sup.wait_position("r", "out", pos + 300)  # flowing again after the last restart
            pid = sup.worker_pid("r")
            sup.action("r", "restart")
            wait_until(lambda p=pid: sup.info("r")["ops"]["pid"] not in (None, p), message=f"restart {i + 1}")
        sup.action("r", "stop")
        ids = [e["after"]["id"] for e in read_jsonl(out)]
        assert sorted(set(ids)) == list(range(1, max(ids) + 1)), "nothing lost across restarts"
