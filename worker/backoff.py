"""Exponential backoff with jitter: the one retry schedule of the worker (sink
deliveries, sink and source opens, checkpoint writes, source reconnects).

Imports: stdlib only.
"""

from __future__ import annotations

import asyncio
import random

RETRY_BASE_S = 0.25
RETRY_CAP_S = 5.0


def backoff(attempt: int, base: float = RETRY_BASE_S, cap: float = RETRY_CAP_S, jitter: float = 0.2) -> float:
    """Seconds to wait before retry number `attempt` (0-based): `base * 2**attempt`,
    capped at `cap`, times a random factor in [1 - jitter, 1 + jitter]."""
    return min(cap, base * (2**attempt)) * random.uniform(1.0 - jitter, 1.0 + jitter)


async def sleep_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep, cut short by a stop; True when stopping."""
    try:
        async with asyncio.timeout(seconds):
            await stopping.wait()
    except TimeoutError:
        pass
    return stopping.is_set()
