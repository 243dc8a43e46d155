"""A short fixed-seed chaos run (tests/chaos; `make chaos` runs the long one): about two minutes
of faults through a real `tidegate serve` (workers SIGKILLed and SIGSTOPped, the supervisor
SIGKILLed and SIGTERMed, the private PostgreSQL and Redis restarted, the Redis connection cut
and stalled by a proxy, an HTTP endpoint answering 503, pause/resume/restart/PATCH mid-stream),
then every sink read back: nothing lost, no unrecorded gap, no order violation, no orphan."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require_service

ROOT = Path(__file__).resolve().parents[2]
SEED = 12


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_short_seeded_chaos_run_finds_nothing(tmp_path: Path) -> None:
    require_service("nats", "127.0.0.1", 4222)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = ["--minutes", "2", "--seed", str(SEED), "--fault-every", "8", "--workdir", str(tmp_path / "chaos")]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.chaos", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=450,
    )
    out = proc.stdout + proc.stderr
    print(out)
    assert proc.returncode == 0, f"the chaos run found something (exit {proc.returncode}):\n{out[-6000:]}"
    assert f"chaos seed {SEED}: OK" in out
