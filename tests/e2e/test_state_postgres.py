"""`tidegate serve --state-url postgresql://...` (CONTRACT section 10): the Postgres
state store survives restarts and kills; two supervisors on one state database
share the work through per-pipeline leases: the non-owner shows the pipeline and
answers 409 naming the owner to a control request; when the owner is SIGKILLed
the other takes the pipeline over within the lease TTL and delivers every event;
a worker whose lease was taken cannot checkpoint any more and exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.store.postgres import PgStore
from tests.support import free_port, wait_until
from tests.support.pgstate import fresh_database
from tests.support.supervisor import ROOT, Supervisor, file_sink, generator_spec, ids_in, wait_pid_gone

TTL_S = 2.0
ENV = {"TIDEGATE_LEASE_TTL_S": str(TTL_S)}


@pytest.fixture
def state_url() -> Iterator[str]:
    """A fresh state database per test (the supervisors would adopt an earlier test's pipelines)."""
    with fresh_database("tg_state_e2e") as url:
        yield url


def node(tmp: Path, url: str, name: str) -> Supervisor:
    return Supervisor(tmp / name, args=["--state-url", url, "--node-id", name], env=ENV)


def position(sup: Supervisor, name: str) -> int:
    ck = sup.info(name)["ops"]["checkpoints"].get("out")
    return int(ck["position"]) if ck else 0


def owner(sup: Supervisor, name: str) -> str | None:
    o = sup.info(name)["ops"].get("owner")
    return o["node"] if o and o["live"] else None


def assert_all_delivered(path: Path, count: int) -> None:
    missing = set(range(1, count + 1)) - ids_in(path)
    assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:10]}"


def test_state_url_survives_restart_and_kill(tmp_path: Path, state_url: str) -> None:
    count, out = 30_000, tmp_path / "gen.jsonl"
    sup = node(tmp_path, state_url, "solo").start()
    try:
        sup.create(generator_spec("gen", [file_sink("out", out)], count=count, rate=8_000))
        sup.create(generator_spec("held", [file_sink("out", tmp_path / "held.jsonl")], rate=100))
        sup.action("held", "stop")
        sup.wait_position("gen", "out", 3_000)
        assert sup.info("gen")["ops"]["owner"] == {"node": "solo", "api_addr": sup.url, "live": True}
        assert sup.stop() == 0
        # everything is in PostgreSQL, nothing in a local tidegate.db
        assert not (sup.state_dir / "tidegate.db").exists()
        store = PgStore(state_url).open()
        try:
            before = int(store.checkpoints("gen")["out"][0])
            assert before >= 3_000
            desired = {r.name: r.desired for r in store.list_pipelines()}
            assert desired == {"gen": "running", "held": "stopped"}
            lease = store.lease("gen")
            assert lease is not None and not lease.live, "a graceful stop gives the leases up"
        finally:
            store.close()
        sup.start()
        assert sup.info("held")["status"] == "stopped"
        assert position(sup, "gen") >= before
        sup.wait_status("gen", "running")
        # SIGKILL: the same node id takes its own leases back at once
        mid = wait_until(
            lambda: position(sup, "gen") > before and position(sup, "gen"),
            timeout=20,
            message="progress after the restart",
        )
        sup.kill()
        t0 = time.monotonic()
        sup.start()
        assert time.monotonic() - t0 < TTL_S + 10
        assert position(sup, "gen") >= mid
        sup.wait_position("gen", "out", count, timeout=30)
        assert_all_delivered(out, count)
    finally:
        sup.close()


def test_two_supervisors_share_then_take_over(tmp_path: Path, state_url: str) -> None:
    count, out = 40_000, tmp_path / "shared.jsonl"
    a = node(tmp_path, state_url, "a").start()
    b = node(tmp_path, state_url, "b").start()
    try:
        spec = generator_spec("shared", [file_sink("out", out)], count=count, rate=8_000)
        a.create(spec)
        a.wait_position("shared", "out", 2_000)
        # B shows it, with the status A publishes, and refuses to control it
        wait_until(lambda: b.info("shared")["status"] == "running", timeout=10, message="B shows A's status")
        info = b.info("shared")
        assert info["ops"]["owner"] == {"node": "a", "api_addr": a.url, "live": True}
        assert info["ops"]["pid"] == a.info("shared")["ops"]["pid"]
        assert [p["name"] for p in b.client.get("/pipelines").json()] == ["shared"]
        assert b.client.get("/pipelines/shared/checkpoints").json()["out"]["position"]
        requests = [("POST", f"/pipelines/shared/{op}", None) for op in ("pause", "resume", "stop", "restart")]
        requests += [
            ("PATCH", "/pipelines/shared", {"spec": {"batch": {"max_events": 10}}}),
            ("DELETE", "/pipelines/shared", None),
            ("DELETE", "/pipelines/shared/checkpoints", None),
            ("POST", "/pipelines", spec),
        ]
        for method, path, body in requests:
            r = b.client.request(method, path, json=body)
            assert r.status_code == 409, (method, path, r.status_code, r.text)
            err = r.json()["error"]
            assert err["code"] == "conflict" and "'a'" in err["message"] and a.url in err["message"], err
        assert a.info("shared")["status"] == "running"
        # A dies; its worker with it; B takes the pipeline over within the TTL
        worker = a.worker_pid("shared")
        a.kill()
        wait_pid_gone(worker, timeout=2.5)
        t0 = time.monotonic()
        wait_until(
            lambda: owner(b, "shared") == "b" and b.info("shared")["ops"]["pid"],
            timeout=TTL_S + 10,
            message=lambda: f"B took the lease over; log:\n{b.log_tail(20)}",
        )
        assert time.monotonic() - t0 < TTL_S + TTL_S / 3 + 3
        b.wait_position("shared", "out", count, timeout=30)
        assert_all_delivered(out, count)
        assert b.info("shared")["ops"]["restarts"] == 0
        assert b.action("shared", "stop")["status"] == "stopped"  # B owns it now
    finally:
        a.close()
        b.close()


def test_a_control_request_takes_over_a_pipeline_nobody_runs(tmp_path: Path, state_url: str) -> None:
    """A stops gracefully (its leases given up): B serves a control request for the pipeline at
    once, taking it over, and the desired state it stores survives."""
    a = node(tmp_path, state_url, "a").start()
    b = node(tmp_path, state_url, "b").start()
    try:
        a.create(generator_spec("orphan", [file_sink("out", tmp_path / "orphan.jsonl")], rate=500))
        a.wait_position("orphan", "out", 1)
        assert a.stop() == 0
        info = b.action("orphan", "pause")
        assert info["status"] == "paused" and info["ops"]["owner"]["node"] == "b"
        assert b.action("orphan", "stop")["status"] == "stopped"
        store = PgStore(state_url).open()
        try:
            row = store.get_pipeline("orphan")
            assert row is not None and row.desired == "stopped"
        finally:
            store.close()
    finally:
        a.close()
        b.close()


def test_a_worker_that_lost_its_lease_cannot_checkpoint(tmp_path: Path, state_url: str) -> None:
    """A frozen supervisor (SIGSTOP) stops renewing while its worker keeps running: B takes
    the lease, the old worker's next checkpoint write is refused and it exits; A, thawed,
    lets the pipeline go. Nothing is lost and it is not counted as a failure."""
    count, out = 30_000, tmp_path / "fenced.jsonl"
    a = node(tmp_path, state_url, "a").start()
    b = node(tmp_path, state_url, "b").start()
    try:
        a.create(generator_spec("fenced", [file_sink("out", out)], count=count, rate=6_000))
        a.wait_position("fenced", "out", 2_000)
        worker = a.worker_pid("fenced")
        os.kill(a.pid, signal.SIGSTOP)
        try:
            wait_until(lambda: owner(b, "fenced") == "b", timeout=TTL_S + 10, message="B took the lease")
            wait_pid_gone(worker, timeout=10)  # fenced: it exits by itself
        finally:
            os.kill(a.pid, signal.SIGCONT)
        wait_until(lambda: owner(a, "fenced") == "b", timeout=10, message="A let the pipeline go")
        assert "lease_lost" in a.log_path.read_text()
        b.wait_position("fenced", "out", count, timeout=30)
        assert_all_delivered(out, count)
        info = b.info("fenced")
        assert info["status"] == "running" and info["ops"]["restarts"] == 0
        assert a.info("fenced")["status"] != "failed"
    finally:
        a.close()
        b.close()


def test_serve_state_url_errors(tmp_path: Path) -> None:
    """A wrong scheme or an unreachable server: exit 2 with a message naming host:port, never the password."""
    base = [
        sys.executable,
        "-m",
        "supervisor.cli",
        "serve",
        "--state-dir",
        str(tmp_path / "s"),
        "--api-addr",
        f"127.0.0.1:{free_port()}",
        "--log-format",
        "json",
    ]
    r = subprocess.run(
        [*base, "--state-url", "mysql://u:pw@127.0.0.1/db"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2 and "postgresql://" in r.stderr
    port = free_port()
    r = subprocess.run(
        [*base, "--state-url", f"postgresql://tg:S3cr3tPw@127.0.0.1:{port}/state"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 2 and f"127.0.0.1:{port}/state" in out and "state_store_unavailable" in out, out
    assert "S3cr3tPw" not in out
