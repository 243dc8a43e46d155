"""Crash safety (issue 2, must show 4): SIGKILLed workers and a SIGKILLed
supervisor lose no event; other pipelines keep flowing; workers never outlive
their supervisor by more than 2 s."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

from tests.support import wait_until
from tests.support.supervisor import Supervisor, file_sink, generator_spec, ids_in, pid_alive, wait_pid_gone

COUNT = 200_000


def test_worker_and_supervisor_kills_lose_nothing(tmp_path: Path) -> None:
    big, side = tmp_path / "big.jsonl", tmp_path / "side.jsonl"
    rnd = random.Random(7)
    sup = Supervisor(tmp_path).start()
    try:
        spec = generator_spec("big", [file_sink("out", big)], count=COUNT, rate=40_000)
        spec["spec"]["batch"] = {"max_events": 2000}
        sup.create(spec)
        sup.create(generator_spec("side", [file_sink("out", side)], rate=500))
        kills = 0
        while kills < 5:
            pid = sup.worker_pid("big")
            sup.wait_status("big", "running")
            target = int(sup.info("big")["ops"]["checkpoints"].get("out", {"position": "0"})["position"])
            target = min(COUNT - 1, target + rnd.randint(1, 15_000))
            wait_until(
                lambda target=target, pid=pid: (
                    int(sup.info("big")["ops"]["checkpoints"].get("out", {"position": "0"})["position"]) >= target
                    or not pid_alive(pid)
                ),
                timeout=60,
                interval=0.01,
                message="progress before a kill",
            )
            side_before = sup.info("side")["ops"]["checkpoints"].get("out", {"position": "0"})["position"]
            os.kill(pid, signal.SIGKILL)
            kills += 1
            wait_until(
                lambda pid=pid: sup.info("big")["ops"]["pid"] not in (None, pid),
                timeout=60,
                message="the worker restarted",
            )
            # the other pipeline kept flowing, in the same supervisor
            wait_until(
                lambda side_before=side_before: (
                    sup.info("side")["ops"]["checkpoints"]["out"]["position"] != side_before
                ),
                timeout=10,
                message="side pipeline flowing",
            )
        info = sup.info("big")
        assert info["ops"]["restarts"] == 5
        assert "SIGKILL" in (info["ops"]["last_error"] or "")
        assert sup.info("side")["ops"]["restarts"] == 0
        # now the supervisor itself
        workers = [sup.worker_pid("big"), sup.worker_pid("side")]
        sup.kill()
        for w in workers:
            assert wait_pid_gone(w, timeout=2.5) <= 2.0, "a worker outlived its supervisor by more than 2 s"
        sup.start()
        sup.wait_position("big", "out", COUNT, timeout=120)
        missing = set(range(1, COUNT + 1)) - ids_in(big)
        assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:10]}"
    finally:
        sup.close()
