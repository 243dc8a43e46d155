"""Pure commit policy and per-sink checkpoint rules (CONTRACT section 7).

Imports: stdlib only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Key = Callable[[str], Any]


def waited_sinks(mode: str, sinks: Sequence[tuple[str, bool]]) -> set[str]:
    """Sinks whose acknowledgement the policy needs before it can commit a batch.
    `quorum` needs any N: none is waited for individually."""
    if mode == "all":
        return {s for s, _ in sinks}
    if mode == "required":
        return {s for s, req in sinks if req}
    return set()


def committed_position(
    mode: str, quorum: int | None, sinks: Sequence[tuple[str, bool]], checkpoints: dict[str, str | None], key: Key
) -> str | None:
    """Where the policy is satisfied. None: nothing committed yet."""
    if mode == "all":
        ids = [s for s, _ in sinks]
    elif mode == "required":
        ids = [s for s, req in sinks if req]
    else:
        ids = [s for s, _ in sinks]
    positions = [checkpoints.get(s) for s in ids]
    if mode in ("all", "required"):
        if not positions or any(p is None for p in positions):
            return None
        return min(positions, key=key)  # type: ignore[arg-type]
    n = quorum or len(ids)
    known = sorted((p for p in positions if p is not None), key=key, reverse=True)
    if len(known) < n:
        return None
    return known[n - 1]


def position_le(a: str | None, b: str | None, key: Key) -> bool:
    """a <= b, where None is before everything."""
    if a is None:
        return True
    if b is None:
        return False
    return bool(key(a) <= key(b))


def skip_delivered(events: list[dict[str, Any]], checkpoint: str | None, key: Key) -> list[dict[str, Any]]:
    """Events strictly after a sink's checkpoint (events without a position are kept)."""
    if checkpoint is None:
        return events
    ck = key(checkpoint)
    out = []
    for e in events:
        src = e.get("source")
        pos = src.get("position") if isinstance(src, dict) else None
        if pos is None:
            out.append(e)
            continue
        try:
            if key(str(pos)) > ck:
                out.append(e)
        except Exception:  # noqa: BLE001 - a processor rewrote the position: keep the event
            out.append(e)
    return out
