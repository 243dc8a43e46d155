"""The faults of a chaos run and their schedule, drawn from the seed (so a failing run replays).

Each fault returns a one-line outcome; what breaks a promise beside the data (a worker left
behind by its supervisor, a SIGTERM that does not exit 0, a hung worker not replaced) goes
to `problems` / `orphans`, which fail the run.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

from tests.chaos.monitor import Healthz, Tracker, _stat
from tests.chaos.rig import HEARTBEAT_TIMEOUT_S, Rig

# kind: (weight, needs a pipeline)
KINDS: dict[str, tuple[int, bool]] = {
    "worker_kill": (4, True),
    "worker_kill_in_recovery": (2, True),
    "worker_sigstop": (2, True),
    "supervisor_kill": (2, False),
    "supervisor_term": (2, False),
    "pg_restart": (2, False),
    "redis_restart": (2, False),
    "redis_proxy_cut": (2, False),
    "redis_proxy_stall": (2, False),
    "redis_proxy_slow": (1, False),
    "http_outage": (2, False),
    "redis_cut_and_kill": (1, False),
    "pg_restart_and_kill": (1, False),
    "http_outage_and_kill": (1, False),
    "api_pause_resume": (2, True),
    "api_restart": (2, True),
    "api_patch": (1, True),
    "pause_across_supervisor_kill": (1, True),
}

Fault = tuple[float, str, str | None, float]  # (at s, kind, pipeline, a parameter in [0, 1))


def schedule(seed: int, seconds: float, every_s: float, pipelines: list[str]) -> list[Fault]:
    rng = random.Random(seed)
    kinds = list(KINDS)
    weights = [KINDS[k][0] for k in kinds]
    out: list[Fault] = []
    t = every_s * (0.5 + rng.random())
    while t < seconds:
        kind = rng.choices(kinds, weights)[0]
        target = rng.choice(pipelines) if KINDS[kind][1] else None
        out.append((round(t, 1), kind, target, rng.random()))
        t += every_s * (0.5 + rng.random())
    return out


class Faults:
    def __init__(self, rig: Rig, health: Healthz, tracker: Tracker) -> None:
        self.rig, self.sup, self.health, self.tracker = rig, rig.sup, health, tracker
        self.problems: list[str] = []
        self.orphans: list[str] = []
        self.resumed: list[str] = []
        self.marks: dict[tuple[str, str], list[int]] = {}  # (pipeline, sink) -> checkpoint before each fault

    def mark(self) -> None:
        """Each generator sink's stored checkpoint now, right before a fault: what a crash may
        re-deliver lies after it (tests.chaos.check.DUP_WINDOW)."""
        for name in self.rig.pipelines():
            if not name.startswith("gen-"):
                continue
            r = self.sup.client.get(f"/pipelines/{name}/checkpoints")
            for sid, ck in (r.json() if r.status_code == 200 else {}).items():
                self.marks.setdefault((name, sid), [0]).append(int(ck["position"]))

    def do(self, kind: str, target: str | None, p: float) -> str:
        fn = getattr(self, kind)
        return str(fn(target, p) if KINDS[kind][1] else fn(p))

    # ------------------------------------------------------------------ workers
    def _pid(self, name: str) -> int | None:
        pid = self.sup.info(name)["ops"]["pid"]
        return int(pid) if pid else None

    def _replaced(self, name: str, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.sup.info(name)
            if info["ops"]["pid"] not in (None, pid) or info["status"] in ("failed", "stopped", "paused"):
                return True
            time.sleep(0.1)
        return False

    def worker_kill(self, name: str, p: float) -> str:
        pid = self._pid(name)
        if pid is None:
            return "no worker running"
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL pid {pid}"

    def worker_kill_in_recovery(self, name: str, p: float) -> str:
        pid = self._pid(name)
        if pid is None:
            return "no worker running"
        os.kill(pid, signal.SIGKILL)
        if not self._replaced(name, pid, 30):
            self.problems.append(f"{name}: worker {pid} not replaced 30 s after SIGKILL")
            return "not replaced"
        time.sleep(p * 1.5)  # somewhere in its start: opening the source, the sinks, the skips
        again = self._pid(name)
        if again is None:
            return f"SIGKILL pid {pid}; no second worker"
        os.kill(again, signal.SIGKILL)
        return f"SIGKILL pid {pid}, then its successor {again} after {p * 1.5:.2f}s"

    def worker_sigstop(self, name: str, p: float) -> str:
        pid = self._pid(name)
        if pid is None:
            return "no worker running"
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        if not self._replaced(name, pid, HEARTBEAT_TIMEOUT_S + 30):
            self.problems.append(f"{name}: SIGSTOPped worker {pid} not replaced past the heartbeat timeout")
            os.kill(pid, signal.SIGCONT)
            return "not replaced"
        took = time.monotonic() - t0
        deadline = time.monotonic() + 5
        while (st := _stat(pid)) is not None and st[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.1)
        if st is not None and st[0] != "Z":
            self.orphans.append(f"{name}: SIGSTOPped worker {pid} still alive after its replacement")
            os.kill(pid, signal.SIGKILL)
        return f"SIGSTOP pid {pid}; replaced after {took:.1f}s"

    # ------------------------------------------------------------------ the supervisor
    def _down_and_up(self, how: str) -> str:
        self.health.pause()
        t0 = time.monotonic()
        if how == "kill":
            self.sup.kill()
        else:
            code = self.sup.stop(timeout=60)
            if code != 0:
                self.problems.append(f"supervisor SIGTERM exit code {code}")
        left = self.tracker.wait_gone(5.0)  # CONTRACT 9: within 2 s; 5 on a loaded machine
        gone_s = time.monotonic() - t0
        for pid, cmd in left:
            self.orphans.append(f"after supervisor {how}: pid {pid} ({cmd}) alive {gone_s:.1f}s later")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.sup.start()
        self.tracker.root = self.sup.pid
        self.health.resume()
        return f"{how}; workers gone within {gone_s:.1f}s; back up after {time.monotonic() - t0:.1f}s"

    def supervisor_kill(self, p: float) -> str:
        return self._down_and_up("kill")

    def supervisor_term(self, p: float) -> str:
        return self._down_and_up("term")

    # ------------------------------------------------------------------ servers
    def pg_restart(self, p: float) -> str:
        t0 = time.monotonic()
        self.rig.pg.restart()
        return f"restarted in {time.monotonic() - t0:.1f}s"

    def redis_restart(self, p: float) -> str:
        self.rig.redis.stop()
        time.sleep(p * 3)
        self.rig.redis.start()
        return f"down {p * 3:.1f}s"

    def _proxy(self, how: str, p: float) -> str:
        assert self.rig.proxy is not None
        if how == "slow":
            self.rig.proxy.slow(0.02 + p * 0.1)
        else:
            getattr(self.rig.proxy, how)()
        time.sleep(2 + p * 6)
        self.rig.proxy.heal()
        return f"{how} {2 + p * 6:.1f}s"

    def redis_proxy_cut(self, p: float) -> str:
        return self._proxy("cut", p)

    def redis_proxy_stall(self, p: float) -> str:
        return self._proxy("stall", p)

    def redis_proxy_slow(self, p: float) -> str:
        return self._proxy("slow", p)

    def http_outage(self, p: float) -> str:
        server = self.rig.web if p < 0.5 else self.rig.qweb
        server.fail_status = 503
        time.sleep(3 + p * 6)
        server.fail_status = None
        return f"{'web' if p < 0.5 else 'quorum c'} answered 503 for {3 + p * 6:.1f}s"

    # ------------------------------------------------------------------ two at once
    def redis_cut_and_kill(self, p: float) -> str:
        """The worker SIGKILLed while its Redis sink is cut off (batches held, unacknowledged)."""
        assert self.rig.proxy is not None
        self.rig.proxy.cut()
        try:
            time.sleep(1 + p * 2)
            killed = self.worker_kill("pg-redis", p)
            time.sleep(1 + p * 2)
        finally:
            self.rig.proxy.heal()
        return f"cut, {killed} in the cut, healed"

    def pg_restart_and_kill(self, p: float) -> str:
        """The source server restarted, and the worker SIGKILLed as it reconnects."""
        self.rig.pg.restart()
        time.sleep(p)
        return f"restarted; {self.worker_kill('pg-redis', p)} {p:.2f}s later"

    def http_outage_and_kill(self, p: float) -> str:
        """The best-effort sink falls behind (503s), then its worker is SIGKILLed: the restarted
        one records the gap from the head the killed one stored."""
        self.rig.web.fail_status = 503
        try:
            time.sleep(2 + p * 3)
            killed = self.worker_kill("gen-http", p)
            time.sleep(1 + p * 2)
        finally:
            self.rig.web.fail_status = None
        return f"web 503, {killed} meanwhile"

    # ------------------------------------------------------------------ the API
    def api_pause_resume(self, name: str, p: float) -> str:
        st = self.sup.client.post(f"/pipelines/{name}/pause").status_code
        time.sleep(1 + p * 2)
        rt = self.sup.client.post(f"/pipelines/{name}/resume").status_code
        if rt != 200:
            self.problems.append(f"{name}: resume answered {rt}")
        return f"pause {st}, resume {rt} after {1 + p * 2:.1f}s"

    def api_restart(self, name: str, p: float) -> str:
        code = self.sup.client.post(f"/pipelines/{name}/restart").status_code
        if code != 200:
            self.problems.append(f"{name}: restart answered {code}")
        return f"restart {code}"

    def api_patch(self, name: str, p: float) -> str:
        n = 20 + int(p * 300)
        body: dict[str, Any] = {"spec": {"batch": {"max_events": n}}}
        code = self.sup.client.patch(f"/pipelines/{name}", json=body).status_code
        if code != 200:
            self.problems.append(f"{name}: PATCH answered {code}")
        return f"PATCH batch.max_events={n}: {code}"

    def pause_across_supervisor_kill(self, name: str, p: float) -> str:
        """CONTRACT 8: every state is persisted; a paused pipeline stays paused across a crash."""
        st = self.sup.client.post(f"/pipelines/{name}/pause").status_code
        how = self._down_and_up("kill")
        now = self.sup.info(name)["status"]
        if st == 200 and now != "paused":
            self.problems.append(f"{name}: paused, supervisor SIGKILLed: {now} after the restart")
        rt = self.sup.client.post(f"/pipelines/{name}/resume").status_code
        return f"pause {st}; supervisor {how}; {now}; resume {rt}"

    # ------------------------------------------------------------------ after each fault
    def repair(self) -> None:
        """A pipeline `failed` (six crashes in five minutes is the contract, not a defect) is
        resumed, and said so."""
        for name in self.rig.pipelines():
            info = self.sup.info(name)
            if info["status"] == "failed":
                self.resumed.append(f"{name}: {info['ops'].get('last_error')}")
                self.sup.client.post(f"/pipelines/{name}/resume")
