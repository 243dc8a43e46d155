"""A worker whose loop stops answering (here: SIGSTOP) is killed after the
heartbeat timeout and restarted from its checkpoint; other pipelines go on."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support import wait_until
from tests.support.supervisor import Supervisor, file_sink, generator_spec, read_jsonl


def test_silent_worker_is_killed_and_restarted(tmp_path: Path) -> None:
    with Supervisor(tmp_path, env={"TIDEGATE_HEARTBEAT_TIMEOUT_S": "2"}) as sup:
        sup.create(generator_spec("stuck", [file_sink("out", tmp_path / "stuck.jsonl")], rate=500))
        sup.create(generator_spec("fine", [file_sink("out", tmp_path / "fine.jsonl")], rate=500))
        sup.wait_position("stuck", "out", 50)
        sup.wait_position("fine", "out", 50)  # on a loaded machine it may start later
        pid = sup.worker_pid("stuck")
        os.kill(pid, signal.SIGSTOP)
        before = int(sup.info("fine")["ops"]["checkpoints"]["out"]["position"])
        info = wait_until(
            lambda: (i := sup.info("stuck"))["ops"]["pid"] not in (None, pid) and i,
            timeout=30,
            message="the hung worker replaced",
        )
        assert info["ops"]["restarts"] == 1
        assert "no heartbeat" in info["ops"]["last_error"], info["ops"]["last_error"]
        after = int(sup.info("fine")["ops"]["checkpoints"]["out"]["position"])
        assert after > before, "the other pipeline kept flowing"
        ck = int(sup.wait_status("stuck", "running")["ops"]["checkpoints"]["out"]["position"])
        sup.wait_position("stuck", "out", ck + 50)
        ids = sorted({e["after"]["id"] for e in read_jsonl(tmp_path / "stuck.jsonl")})
        assert ids == list(range(1, ids[-1] + 1)), "nothing lost across the kill"
