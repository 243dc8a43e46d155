"""Positions of the postgres source: what they mean, how they parse and sort.

Imports: stdlib only. A position names one event, so a resume neither skips nor
repeats part of a transaction (CONTRACT section 3).

Streaming events: ``<commit LSN>:<index in tx>`` e.g. ``0/16B3748:3`` (index is
0-based over the events the source emits for that transaction). The commit LSN
is the start of the transaction's commit record (pgoutput Begin.final_lsn).

Snapshot rows (op ``r``): ``snapshot:<table index>:<row number>:<runs>[:last]``.
``runs`` records which snapshot epoch covered which tables: ``0@0/1A00,2@0/1C00``
means tables 0-1 were read from the snapshot exported at LSN 0/1A00 and tables
2.. from one exported at 0/1C00 (after a restart mid-snapshot, see
``stream``). ``last`` marks the final row of a table, so a resume knows that
table is complete. The sort key is ``(0, epoch, table, row)``: every snapshot
row sorts before every streaming event ``(1, lsn, index)``, and a re-snapshot
(a later epoch) sorts after the rows of the interrupted one.

While streaming events still fall inside the window where a re-snapshotted table
must skip changes its snapshot already holds (commit LSN < that table's epoch),
their positions carry the runs too: ``0/16B3748:3:0@0/1A00,2@0/1C00``.
"""

from __future__ import annotations

from typing import NamedTuple

SNAPSHOT_PREFIX = "snapshot:"

Runs = tuple[tuple[int, int], ...]  # ((first table index, epoch lsn), ...), ascending


def lsn_to_int(text: str) -> int:
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_str(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def format_runs(runs: Runs) -> str:
    return ",".join(f"{t}@{lsn_str(e)}" for t, e in runs)


def parse_runs(text: str) -> Runs:
    if not text:
        return ()
    out = []
    for part in text.split(","):
        t, _, e = part.partition("@")
        out.append((int(t), lsn_to_int(e)))
    return tuple(out)


def epoch_of(runs: Runs, table: int) -> int:
    """The epoch (snapshot LSN) that covers table index `table`."""
    epoch = 0
    for start, e in runs:
        if start <= table:
            epoch = e
        else:
            break
    return epoch


def max_epoch(runs: Runs) -> int:
    return max((e for _, e in runs), default=0)


class SnapshotPos(NamedTuple):
    table: int
    row: int
    runs: Runs
    last: bool

    def format(self) -> str:
        tail = ":last" if self.last else ""
        return f"{SNAPSHOT_PREFIX}{self.table}:{self.row}:{format_runs(self.runs)}{tail}"


class StreamPos(NamedTuple):
    lsn: int
    index: int  # type: ignore[assignment]  # the field shadows tuple.index, as intended
    runs: Runs

    def format(self) -> str:
        base = f"{lsn_str(self.lsn)}:{self.index}"
        if self.runs and self.lsn < max_epoch(self.runs):
            return f"{base}:{format_runs(self.runs)}"
        return base


def parse(position: str) -> SnapshotPos | StreamPos:
    """Parse a position string; ValueError names what is wrong."""
    try:
        if position.startswith(SNAPSHOT_PREFIX):
            parts = position[len(SNAPSHOT_PREFIX) :].split(":")
            if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "last"):
                raise ValueError("expected snapshot:<table>:<row>:<runs>[:last]")
            return SnapshotPos(int(parts[0]), int(parts[1]), parse_runs(parts[2]), len(parts) == 4)
        parts = position.split(":")
        if len(parts) not in (2, 3):
            raise ValueError("expected <lsn>:<index>[:<runs>]")
        return StreamPos(lsn_to_int(parts[0]), int(parts[1]), parse_runs(parts[2]) if len(parts) == 3 else ())
    except ValueError as exc:
        raise ValueError(f"not a postgres source position: {position!r} ({exc})") from None


def position_key(position: str) -> tuple[int, ...]:
    """Total order of positions: snapshot rows first, then the stream by (commit LSN, index)."""
    if position.startswith(SNAPSHOT_PREFIX):
        parts = position[len(SNAPSHOT_PREFIX) :].split(":")
        table = int(parts[0])
        return (0, epoch_of(parse_runs(parts[2]), table), table, int(parts[1]))
    lsn, _, rest = position.partition(":")
    hi, _, lo = lsn.partition("/")
    idx = rest.partition(":")[0]
    return (1, (int(hi, 16) << 32) | int(lo, 16), int(idx))
