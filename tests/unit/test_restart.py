"""Pure restart backoff and the crash window."""

from __future__ import annotations

import random

from supervisor.restart import RestartPolicy


def test_backoff_doubles_with_jitter_and_caps() -> None:
    p = RestartPolicy()
    rng = random.Random(1)
    delays = [p.on_crash(i * 1000.0, 1.0, rng) for i in range(10)]  # crashes far apart: no window failure
    for i, d in enumerate(delays):
        base = min(60.0, 2.0**i)
        assert d is not None and 0.8 * base <= d <= 1.2 * base


def test_healthy_run_resets_backoff() -> None:
    p = RestartPolicy()
    p.on_crash(0, 1.0)
    p.on_crash(1000, 1.0)
    d = p.on_crash(2000, 61.0)
    assert d is not None and d <= 1.2


def test_sixth_crash_within_five_minutes_fails() -> None:
    p = RestartPolicy()
    results = [p.on_crash(t, 1.0) for t in (0, 10, 20, 30, 40)]
    assert all(r is not None for r in results), "five crashes are restarted"
    assert p.on_crash(50, 1.0) is None
    q = RestartPolicy()
    for t in (0, 100, 200, 301, 400, 500):
        assert q.on_crash(t, 1.0) is not None, "old crashes leave the window"
