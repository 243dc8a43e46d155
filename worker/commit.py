"""Pure commit policy and per-sink checkpoint rules (CONTRACT section 7).

Imports: stdlib only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


def holders(
    mode: str,
    quorum: int | None,
    sinks: Sequence[tuple[str, bool]],
    checkpoints: dict[str, str | None],
    lagging: Mapping[str, str],
    key: Key,
) -> list[str]:
    """Which of the `lagging` sinks (id -> the newest position it was given) hold the committed
    position back: moving their checkpoints there moves it on. One sink if one is enough (the one
    furthest behind, None first); else all of them together (a quorum that needs several); else none (the policy's
    waited-for sinks hold it: `required` and `all` never wait for a best-effort sink)."""
    now = committed_position(mode, quorum, sinks, checkpoints, key)

    def moves(ids: Sequence[str]) -> bool:
        trial = {**checkpoints, **{s: lagging[s] for s in ids}}
        new = committed_position(mode, quorum, sinks, trial, key)
        return new is not None and not position_le(new, now, key)

    ids = [s for s in lagging if not position_le(lagging[s], checkpoints.get(s), key)]
    single = [s for s in ids if moves([s])]
    if single:
        behind = [s for s in single if checkpoints.get(s) is None]
        return behind[:1] or [min(single, key=lambda s: key(checkpoints[s]))]  # type: ignore[arg-type]
    return ids if ids and moves(ids) else []


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


@dataclass(frozen=True)
class Skip:
    """A best-effort sink skipped ahead at start: it never gets [from_pos, to_pos]."""

    sink_id: str
    from_pos: str
    to_pos: str


@dataclass(frozen=True)
class StartingPoint:
    checkpoints: dict[str, str | None]  # each sink's, after the skips
    committed: str | None  # where the source resumes (after this position)
    skips: list[Skip]


def starting_point(
    mode: str,
    quorum: int | None,
    sinks: Sequence[tuple[str, bool]],
    stored: Mapping[str, str | None],
    own: Mapping[str, str | None],
    heads: Mapping[str, str],
    position_after: Callable[[str | None], str | None],
    key: Key,
) -> StartingPoint:
    """Where a pipeline starts (CONTRACT 7). Each sink starts from its stored checkpoint, or its
    own (a sink that keeps one, e.g. Kafka exactly_once) when that is further on. The committed
    position follows from the policy. A best-effort sink behind it skips ahead, never silently:
    the skipped events were read by an earlier worker, not this one, so the gap's `from` is the
    sink's stored head (the first event the earlier worker gave it and it never acknowledged),
    valid only while it lies after the sink's checkpoint and at or before the committed position;
    else the position the source names (`position_after`); else the "after <checkpoint>" form
    of a state dir from before heads were stored."""
    checkpoints: dict[str, str | None] = {}
    for sid, _ in sinks:
        ck, mine = stored.get(sid), own.get(sid)
        checkpoints[sid] = mine if mine is not None and not position_le(mine, ck, key) else ck
    committed = committed_position(mode, quorum, sinks, checkpoints, key)
    skips: list[Skip] = []
    if committed is None:
        return StartingPoint(checkpoints, None, skips)
    waited = waited_sinks(mode, sinks)
    for sid, _ in sinks:
        ck = checkpoints[sid]
        if sid in waited or position_le(committed, ck, key):
            continue
        first: str | None = heads.get(sid)
        if first is not None and (position_le(first, ck, key) or not position_le(first, committed, key)):
            first = None  # stale: from before the sink's checkpoint moved
        if first is None:
            first = position_after(ck)
        if first is None:
            first = f"after {ck}" if ck else "start"
        skips.append(Skip(sid, first, committed))
        checkpoints[sid] = committed
    return StartingPoint(checkpoints, committed, skips)
