"""Pure restart policy for crashed workers (CONTRACT section 9), injected clock,
and what a worker's exit means (`exit_meaning`: stopped, handed back, lease
lost, failed or crashed) with the errors a crash leaves.

Backoff 1 s doubling to 60 s with +-20% jitter, reset after 60 s healthy; 5
crashes within 5 minutes make the pipeline `failed`.
Imports: stdlib + shared.protocol (exit codes).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from shared.protocol import EXIT_CONFIG, EXIT_FAILED, EXIT_LEASE_LOST

BASE_S = 1.0
CAP_S = 60.0
HEALTHY_RESET_S = 60.0
MAX_CRASHES = 6  # the 6th crash within the window fails the pipeline: 5 are restarted
CRASH_WINDOW_S = 300.0


@dataclass
class RestartPolicy:
    crashes: deque[float] = field(default_factory=deque)
    streak: int = 0

    def on_crash(self, now: float, ran_s: float, rng: random.Random | None = None) -> float | None:
        """Record a crash at `now` after running `ran_s` seconds; return the delay
        before the next start, or None when the pipeline must be `failed`."""
        if ran_s >= HEALTHY_RESET_S:
            self.streak = 0
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > CRASH_WINDOW_S:
            self.crashes.popleft()
        if len(self.crashes) >= MAX_CRASHES:
            return None
        delay = min(CAP_S, BASE_S * (2**self.streak))
        self.streak += 1
        jittered: float = delay * (rng or random).uniform(0.8, 1.2)
        return jittered

    def reset(self) -> None:
        self.crashes.clear()
        self.streak = 0


class ExitMeaning(Enum):
    """What a worker's exit means for its pipeline."""

    STOPPED = "stopped"  # stopped or deleted on request
    HANDED_BACK = "handed_back"  # restart or shutdown: the caller decides what comes next
    LEASE_LOST = "lease_lost"  # fenced: another node runs it now; not a crash of the pipeline
    FAILED = "failed"  # failed for good (the worker said so, or its spec cannot be built)
    CRASHED = "crashed"  # anything else: restarted after the backoff, or failed past the crash window


def exit_meaning(intent: str | None, code: int | None, failed_by_worker: bool) -> ExitMeaning:
    """`intent`: why the supervisor expected the worker to exit (None: it did not)."""
    if intent in ("stop", "delete"):
        return ExitMeaning.STOPPED
    if intent in ("restart", "shutdown"):
        return ExitMeaning.HANDED_BACK
    if code == EXIT_LEASE_LOST:
        return ExitMeaning.LEASE_LOST
    if failed_by_worker or code in (EXIT_FAILED, EXIT_CONFIG):
        return ExitMeaning.FAILED
    return ExitMeaning.CRASHED


def crash_error(reason: str, last_error: str | None) -> str:
    """A crash's last_error: how the worker went, with the error it last reported."""
    return reason if not last_error else f"{reason} (last error: {last_error})"


def given_up_error(reason: str) -> str:
    """last_error of a pipeline failed by the crash window."""
    return f"crashed {MAX_CRASHES - 1} times within {CRASH_WINDOW_S / 60:g} minutes; {reason}"
