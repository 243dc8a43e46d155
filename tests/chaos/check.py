"""The chaos checker: every sink read back and compared with what it must hold.

Generator pipelines: event N is `after.id = N` at position N. A waited-for sink must hold
1..its checkpoint; a best-effort (or quorum) sink may miss events only inside a gap recorded in
`ops.sink_gaps`; under quorum 2 each event up to the committed position is in two sinks.
PostgreSQL pipeline: each event has an identity (tests.chaos.writer); a sink must hold every
committed change, nothing rolled back, per row in order, and replaying it gives the table.
Duplicates are counted and reported (at-least-once may repeat what lay past a crash): for the
generator pipelines each duplicate must lie within DUP_WINDOW events after the sink's stored
checkpoint as read right before some fault (a crash re-delivers only what lay past the committed
position); any other duplicate is an excess, and fails the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# what may lie past a sink's stored checkpoint when a fault strikes: the batches in flight
# (max_inflight 1 x max_events <= 320 in the rig, PATCH included), a best-effort sink's backlog
# (300) and the few events generated between the reading and the fault, with room to spare
DUP_WINDOW = 2000


@dataclass
class Row:
    pipeline: str
    sink: str
    policy: str
    expected: int = 0
    received: int = 0
    missing: int = 0
    dup: int = 0
    excess: int = 0  # duplicates outside every window a fault allows (generator pipelines)
    order: int = 0
    gaps: int = 0  # ranges recorded in ops.sink_gaps
    in_gaps: int = 0  # events missing inside those ranges (allowed)
    unrecorded: int = 0  # events missing outside every recorded gap (a loss)
    notes: list[str] = field(default_factory=list)

    def bad(self) -> bool:
        return bool(self.missing or self.order or self.unrecorded or self.excess or self.notes)


def read_file(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Complete lines of a file sink, and how many lines would not parse (torn)."""
    out, torn = [], 0
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    torn += 1
    except FileNotFoundError:
        pass
    return out, torn


def _gap_ranges(gaps: list[dict[str, str]]) -> list[tuple[int, int]]:
    out = []
    for g in gaps:
        lo, hi = g["from"], g["to"]
        lo_n = 1 if lo == "start" else int(lo.split()[-1]) + (1 if lo.startswith("after") else 0)
        out.append((lo_n, int(hi)))
    return out


def gen_row(
    pipeline: str,
    sink: str,
    policy: str,
    ids: list[int],
    upto: int,
    gaps: list[dict[str, str]],
    marks: list[int] | None = None,
) -> Row:
    """Generator events at a sink: `ids` in arrival order, expected 1..upto; `marks`: the sink's
    stored checkpoint read right before each fault (None: duplicates are not bounded)."""
    row = Row(pipeline, sink, policy, expected=upto, received=len(set(ids)))
    row.dup = len(ids) - len(set(ids))
    seen: set[int] = set()
    last = 0
    windows = sorted(marks or [])
    for i in ids:
        if i in seen:
            if marks is not None and not any(lo < i <= lo + DUP_WINDOW for lo in windows):
                row.excess += 1
            continue
        seen.add(i)
        if i < last:
            row.order += 1
        last = i
    ranges = _gap_ranges(gaps)
    row.gaps = len(ranges)
    for i in range(1, upto + 1):
        if i in seen:
            continue
        if any(lo <= i <= hi for lo, hi in ranges):
            row.in_gaps += 1
        elif policy == "required":
            row.missing += 1
        else:
            row.unrecorded += 1
    return row


def under_quorum(sets: list[set[int]], committed: int, quorum: int) -> int:
    return sum(1 for i in range(1, committed + 1) if sum(i in s for s in sets) < quorum)


def ident(e: dict[str, Any]) -> tuple[str, int]:
    if e["op"] == "d":
        return ("d", e["before"]["id"])
    if e["op"] == "r":
        return ("r", e["after"]["id"])
    return (e["op"], e["after"]["seq"])


def pg_row(
    pipeline: str,
    sink: str,
    events: list[dict[str, Any]],
    expected: set[tuple[str, int]],
    uncertain: set[tuple[str, int]],
    table: dict[int, int],
) -> Row:
    row = Row(pipeline, sink, "required", expected=len(expected))
    firsts: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    for e in events:
        k = ident(e)
        if k in seen:
            row.dup += 1
            continue
        seen.add(k)
        firsts.append(e)
    row.received = len(seen)
    row.missing = len(expected - seen)
    phantom = seen - expected - uncertain
    if phantom:
        row.notes.append(f"{len(phantom)} events of no committed change, e.g. {sorted(phantom)[:3]}")
    state: dict[int, int] = {}
    deleted: set[int] = set()
    for e in firsts:
        key = (e["before"] or e["after"])["id"]
        if key in deleted:
            row.order += 1
            continue
        if e["op"] == "d":
            deleted.add(key)
            state.pop(key, None)
            continue
        seq = e["after"]["seq"]
        if key in state and seq <= state[key]:
            row.order += 1
        state[key] = max(seq, state.get(key, -1))
    diff = {k for k in set(state) | set(table) if state.get(k) != table.get(k)}
    if diff:
        row.notes.append(f"replay differs from the table in {len(diff)} rows, e.g. {sorted(diff)[:5]}")
    return row


HEAD = (
    "pipeline",
    "sink",
    "policy",
    "expected",
    "received",
    "missing",
    "dup",
    "excess",
    "order",
    "gaps",
    "in_gaps",
    "unrec",
)


def table(rows: list[Row]) -> str:
    cells = [HEAD] + [
        (
            r.pipeline,
            r.sink,
            r.policy,
            *(
                str(v)
                for v in (r.expected, r.received, r.missing, r.dup, r.excess, r.order, r.gaps, r.in_gaps, r.unrecorded)
            ),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEAD))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(HEAD))) for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in rows:
        for n in r.notes:
            lines.append(f"  ! {r.pipeline}/{r.sink}: {n}")
    return "\n".join(lines)
