"""Pure restart backoff and the crash window; what a worker's exit means."""

from __future__ import annotations

import random

from shared.protocol import EXIT_CONFIG, EXIT_FAILED, EXIT_LEASE_LOST, EXIT_OK
from supervisor.restart import ExitMeaning, RestartPolicy, crash_error, exit_meaning, given_up_error


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


def test_an_expected_exit_is_what_was_asked() -> None:
    for code in (EXIT_OK, 1, -9, EXIT_FAILED, EXIT_LEASE_LOST, None):
        assert exit_meaning("stop", code, False) is ExitMeaning.STOPPED
        assert exit_meaning("delete", code, True) is ExitMeaning.STOPPED
        assert exit_meaning("restart", code, False) is ExitMeaning.HANDED_BACK
        assert exit_meaning("shutdown", code, True) is ExitMeaning.HANDED_BACK


def test_an_unexpected_exit_is_lease_lost_failed_or_crashed() -> None:
    assert exit_meaning(None, EXIT_LEASE_LOST, False) is ExitMeaning.LEASE_LOST
    assert exit_meaning(None, EXIT_LEASE_LOST, True) is ExitMeaning.LEASE_LOST, "fenced is never a failure"
    assert exit_meaning(None, EXIT_FAILED, False) is ExitMeaning.FAILED
    assert exit_meaning(None, EXIT_CONFIG, False) is ExitMeaning.FAILED
    assert exit_meaning(None, 1, True) is ExitMeaning.FAILED, "the worker reported Failed"
    for code in (EXIT_OK, 1, -9, -11, None):
        assert exit_meaning(None, code, False) is ExitMeaning.CRASHED
    assert exit_meaning("lease_lost", 1, False) is ExitMeaning.CRASHED


def test_crash_errors() -> None:
    assert crash_error("worker exited with code 1", None) == "worker exited with code 1"
    assert (
        crash_error("worker killed by signal SIGKILL", "boom") == "worker killed by signal SIGKILL (last error: boom)"
    )
    assert given_up_error("worker exited with code 1") == "crashed 5 times within 5 minutes; worker exited with code 1"
