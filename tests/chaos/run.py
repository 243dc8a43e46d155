"""`make chaos`: several pipelines through a real `tidegate serve`, a writer on the private
PostgreSQL throughout, faults on a seeded schedule (printed first, so a failing run replays
with the same CHAOS_SEED), then every sink read back. Exit 1 on any loss, unrecorded gap,
order violation, orphan process or broken promise; 0 otherwise.

    python -m tests.chaos --minutes 2 --seed 7 --fault-every 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg2

from tests.chaos import check
from tests.chaos import writer as w
from tests.chaos.faults import Faults, schedule
from tests.chaos.monitor import Healthz, Tracker, rss_kb
from tests.chaos.readback import rows_of
from tests.chaos.rig import Rig

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


def poll(pred: Any, timeout: float, what: str, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except Exception:  # noqa: BLE001 - a server mid-restart: try again
            pass
        time.sleep(every)
    say(f"timed out after {timeout:.0f}s waiting for {what}")
    return False


def rss(rig: Rig) -> dict[str, int | None]:
    out: dict[str, int | None] = {"supervisor": rss_kb(rig.sup.pid)}
    for name in rig.pipelines():
        out[name] = rss_kb(rig.sup.info(name)["ops"]["pid"])
    return out


def pg_events(rig: Rig) -> list[dict[str, Any]]:
    return check.read_file(rig.path("pg-redis", "out"))[0]


def sentinel(rig: Rig) -> tuple[str, int]:
    """One last insert after the writer stopped: once a sink has it, it has had its chance at
    everything before (a transaction with a fresh id and seq, retried until it commits)."""
    wr = rig.writer
    assert wr is not None
    rid, seq = wr.next_id, wr.next_seq
    for _ in range(60):
        try:
            c = psycopg2.connect(rig.pg.dsn, connect_timeout=3)
            with c.cursor() as cur:
                cur.execute(f"INSERT INTO {w.TABLE} VALUES (%s, %s, 0) ON CONFLICT DO NOTHING", (rid, seq))
            c.commit()
            c.close()
            wr.expected.add(("c", seq))
            return ("c", seq)
        except psycopg2.Error:
            time.sleep(1)
    raise AssertionError("could not insert the sentinel row")


def warm_up(rig: Rig, faults: Faults) -> None:
    """Every pipeline running; the PostgreSQL pipeline's worker SIGKILLed in its snapshot and
    again at its handoff to the stream; the whole snapshot in the file sink."""
    names = rig.pipelines()
    poll(lambda: all(rig.sup.info(n)["status"] == "running" for n in names), 60, "every pipeline running")
    snap = {("r", i) for i in range(1, w.INITIAL_ROWS + 1)}

    def snapshot_read() -> int:
        return len(snap & {check.ident(e) for e in pg_events(rig)})

    if poll(lambda: snapshot_read() > 0, 60, "the snapshot under way"):
        say(f"fault worker_kill pg-redis in its snapshot ({snapshot_read()} rows read): {_kill_pg(faults)}")
    poll(lambda: snapshot_read() == len(snap), 120, "the PostgreSQL snapshot in the file sink")
    say(f"fault worker_kill pg-redis at its snapshot/stream handoff: {_kill_pg(faults)}")
    # the writer starts once the snapshot is committed whole: a snapshot interrupted *while the
    # writer runs* is re-exported at a newer point and leaves rows deleted in between downstream
    # (a known defect, issue #12's note; the fix is to finish it as a watermarked backfill)
    poll(
        lambda: all(
            not (c or {}).get("position", "snapshot:").startswith("snapshot:")
            for c in (rig.sup.info("pg-redis")["ops"]["checkpoints"].get(s) for s in ("out", "cache"))
        ),
        120,
        "the PostgreSQL snapshot committed by both sinks",
    )


def _kill_pg(faults: Faults) -> str:
    try:
        return faults.worker_kill("pg-redis", 0.0)
    except Exception as exc:  # noqa: BLE001
        faults.problems.append(f"kill in the snapshot: {exc}")
        return f"ERROR {exc}"


def run_faults(rig: Rig, faults: Faults, plan: list[Any], seconds: float) -> None:
    start = time.monotonic()
    for at, kind, target, p in plan:
        wait = at - (time.monotonic() - start)
        if wait > 0:
            time.sleep(wait)
        t0 = time.monotonic()
        try:
            faults.mark()
            outcome = faults.do(kind, target, p)
        except Exception as exc:  # noqa: BLE001 - a fault that could not be applied is a problem
            outcome = f"ERROR {type(exc).__name__}: {exc}"
            faults.problems.append(f"fault {kind} {target or ''}: {outcome}")
        say(f"fault {kind} {target or ''}: {outcome} ({time.monotonic() - t0:.1f}s)")
        try:
            faults.repair()
        except Exception as exc:  # noqa: BLE001
            say(f"repair: {exc}")
    rest = seconds - (time.monotonic() - start)
    if rest > 0:
        time.sleep(rest)


def finish(rig: Rig, faults: Faults) -> dict[str, dict[str, Any]]:
    """Stop the writer, see the sentinel through, stop each pipeline (flushed, checkpointed);
    their final PipeInfo."""
    assert rig.writer is not None
    rig.writer.stop.set()
    rig.writer.join(30)
    mark = sentinel(rig)
    faults.repair()
    poll(lambda: mark in {check.ident(e) for e in pg_events(rig)}, 120, "the sentinel in pg-redis/out")
    poll(lambda: mark in {check.ident(e) for e in rig.redis_events()}, 120, "the sentinel in pg-redis/cache")
    infos = {}
    for name in rig.pipelines():
        r = rig.sup.client.post(f"/pipelines/{name}/stop", timeout=90)
        if r.status_code != 200:
            faults.problems.append(f"{name}: stop answered {r.status_code}")
        infos[name] = rig.sup.info(name)
        if infos[name]["status"] != "stopped":
            faults.problems.append(f"{name}: {infos[name]['status']} after stop")
    return infos


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos")
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("CHAOS_MINUTES", "5")))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", str(int(time.time()) % 100000))))
    ap.add_argument("--fault-every", type=float, default=float(os.environ.get("CHAOS_FAULT_EVERY_S", "20")))
    ap.add_argument("--workdir", default=os.environ.get("CHAOS_DIR"))
    a = ap.parse_args(argv)
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="tg_chaos_"))
    rig = Rig(workdir, a.seed)
    say(f"chaos: seed {a.seed}, {a.minutes} min, a fault every ~{a.fault_every}s, workdir {workdir}")
    say(f"replay: make chaos CHAOS_SEED={a.seed} CHAOS_MINUTES={a.minutes} CHAOS_FAULT_EVERY_S={a.fault_every}")
    try:
        return _run(rig, a.minutes * 60, a.seed, a.fault_every)
    finally:
        rig.close()


def _run(rig: Rig, seconds: float, seed: int, every: float) -> int:
    rig.start()
    plan = schedule(seed, seconds, every, rig.pipelines())
    for at, kind, target, p in plan:
        say(f"planned +{at:6.1f}s {kind} {target or ''} p={p:.3f}")
    health, tracker = Healthz(rig.sup.url), Tracker()
    tracker.root = rig.sup.pid
    tracker.start()
    health.resume()
    health.start()
    faults = Faults(rig, health, tracker)
    warm_up(rig, faults)
    assert rig.writer is not None
    rig.writer.start()
    poll(lambda: rig.writer is not None and rig.writer.txs > 50, 30, "the writer under way")
    poll(lambda: all(rig.sup.info(n)["ops"]["pid"] for n in rig.pipelines()), 30, "every worker up")
    rss_start = rss(rig)
    say(f"rss start (kB): {rss_start}")
    run_faults(rig, faults, plan, seconds)
    say(
        f"writer: {rig.writer.txs} transactions, {rig.writer.rolled_back} rolled back, "
        f"{len(rig.writer.uncertain)} changes uncertain, {rig.writer.reconnects} reconnects, error {rig.writer.error}"
    )
    poll(lambda: all(rig.sup.info(n)["ops"]["pid"] for n in rig.pipelines()), 30, "every worker up")
    rss_end = rss(rig)
    infos = finish(rig, faults)
    health.pause()
    code = rig.sup.stop(timeout=60)
    if code != 0:
        faults.problems.append(f"final SIGTERM: exit code {code}")
    tracker.scan()
    for pid, cmd in tracker.wait_gone(5.0):
        faults.orphans.append(f"after the final stop: pid {pid} ({cmd})")
    health.stop.set()
    tracker.stop.set()
    rows = rows_of(rig, infos, faults.marks)
    print(check.table(rows))
    print(f"healthz: {health.polls} polls, max {health.max_s * 1000:.0f} ms, {len(health.failures)} failures")
    for f in health.failures[:10]:
        print(f"  ! healthz {f}")
    print("rss kB start -> end: " + ", ".join(f"{k} {rss_start.get(k)} -> {rss_end.get(k)}" for k in rss_start))
    print(f"orphans: {len(faults.orphans)}")
    for line in faults.orphans + [f"problem: {p}" for p in faults.problems]:
        print(f"  ! {line}")
    for line in faults.resumed:
        print(f"  resumed after failed: {line}")
    if rig.writer.error:
        faults.problems.append(f"writer: {rig.writer.error}")
    bad = any(r.bad() for r in rows) or faults.orphans or faults.problems or health.failures
    print(f"chaos seed {seed}: {'FAIL' if bad else 'OK'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
