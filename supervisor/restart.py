"""Pure restart policy for crashed workers (CONTRACT section 9), injected clock.

Backoff 1 s doubling to 60 s with +-20% jitter, reset after 60 s healthy; 5
crashes within 5 minutes make the pipeline `failed`. Imports: stdlib only.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

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
