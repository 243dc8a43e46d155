"""Positions of the mysql source: their string forms, their total order, and what a resume must skip.

Pure (stdlib only; tables are duck-typed setup.TableInfo). Two forms, both "the last event delivered":

- binlog row ``<file>:<txpos>:<n>[@<entries>]``: ``txpos`` is where the row's transaction starts in
  the binlog (its GTID event, or BEGIN without GTID); ``n`` is the 1-based index of the row among the
  captured rows of that transaction. Resuming connects at ``txpos`` and skips the first ``n`` captured
  rows of that transaction: a resume in the middle of a transaction neither skips nor repeats a row.
  ``n = 0`` means "start at txpos, skip nothing".
- snapshot row ``snapshot:<ti>:<n>[:end]@<entries>``: a row of the ``ti``-th configured table; ``n`` is
  its primary key when the key is made of integer columns (``17`` or ``17,5``), else ``#<ordinal>``
  (1-based, primary key order); ``end`` marks the last row of the table.

``entries`` (``;``-separated) record the snapshot runs, one per run (a run resumed after a crash adds
one): ``<k>=<file>:<pos>`` tables k.. were read at that binlog point; ``<k>=<file>:<pos>><pk>`` table k
was continued after primary key pk at that point (its rows <= pk come from the earlier entries);
``<k>=<file>:<pos>!`` table k was read again in full (its key is not integer: its changes are then
streamed from its earlier point, so changes made during the interrupted read may come twice; full
row images make that converge). A binlog row of table t is emitted only if its transaction starts at
or after the point that covers the row (`filter_point`), so nothing is missed or doubled across the
snapshot-to-stream handoff. Binlog positions carry only the entries that still lie ahead.

Order (`key`): every snapshot position sorts before every binlog position; snapshot rows by table,
then the binlog point of the run that read them, then key/ordinal; binlog rows by file sequence,
transaction start, row index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SNAPSHOT = "snapshot:"
PLAIN, CONTINUE, REREAD = "", ">", "!"


def file_seq(name: str) -> int:
    """mysql-bin.000042 -> 42 (the order of binlog files)."""
    _, _, suffix = name.rpartition(".")
    try:
        return int(suffix)
    except ValueError:
        raise ValueError(f"not a binlog file name: {name!r}") from None


@dataclass(frozen=True, slots=True)
class BinlogPoint:
    """A place in the binlog (an event boundary); compares in binlog order."""

    file: str
    pos: int

    @classmethod
    def of(cls, file: str, pos: int) -> BinlogPoint:
        file_seq(file)
        return cls(file, int(pos))

    @property
    def sort_key(self) -> tuple[int, int]:
        return (file_seq(self.file), self.pos)

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"

    def __lt__(self, other: BinlogPoint) -> bool:
        return self.sort_key < other.sort_key

    def __le__(self, other: BinlogPoint) -> bool:
        return self.sort_key <= other.sort_key


def format_pk(pk: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in pk)


def parse_pk(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


@dataclass(frozen=True, slots=True)
class Entry:
    k: int
    point: BinlogPoint
    mode: str = PLAIN
    after: tuple[int, ...] = ()  # CONTINUE: rows with a key above this were read at `point`

    def __str__(self) -> str:
        tail = f">{format_pk(self.after)}" if self.mode == CONTINUE else self.mode
        return f"{self.k}={self.point}{tail}"


Entries = tuple[Entry, ...]


def format_entries(entries: Entries) -> str:
    return ";".join(str(e) for e in entries)


def parse_entries(text: str) -> Entries:
    out = []
    for part in filter(None, text.split(";")):
        k, _, rest = part.partition("=")
        after: tuple[int, ...]
        mode, after = PLAIN, ()
        if rest.endswith(REREAD):
            mode, rest = REREAD, rest[:-1]
        elif CONTINUE in rest:
            rest, _, pk = rest.partition(CONTINUE)
            mode, after = CONTINUE, parse_pk(pk)
        file, _, pos = rest.rpartition(":")
        out.append(Entry(int(k), BinlogPoint.of(file, int(pos)), mode, after))
    return tuple(out)


def read_point(entries: Entries, table_index: int) -> BinlogPoint | None:
    """The point at which the latest run read table `table_index` (the last entry with k <= index)."""
    found = None
    for e in entries:
        if e.k <= table_index:
            found = e.point
    return found


def filter_point(entries: Entries, table_index: int, pk: tuple[int, ...] | None) -> BinlogPoint | None:
    """Binlog transactions of this table (row key `pk`, None if unknown) starting before the returned
    point are already in its snapshot rows; None: no filter."""
    for e in reversed(entries):
        if e.k > table_index:
            continue
        if e.k < table_index or e.mode == PLAIN:
            return e.point
        if e.mode == CONTINUE and pk is not None and pk > e.after:
            return e.point
        # rows at or below a continue key, or a table read again: what the earlier runs delivered
    return None


def entries_after(entries: Entries, where: BinlogPoint) -> Entries:
    """The entries that can still filter transactions starting at or after `where` (points only grow)."""
    return tuple(e for e in entries if where < e.point)


def has_row_filters(entries: Entries, table_index: int) -> bool:
    """Whether the filter of this table depends on the row's key (not just on the table)."""
    return any(e.k == table_index and e.mode != PLAIN for e in entries)


@dataclass(frozen=True, slots=True)
class BinlogPos:
    file: str
    txpos: int
    n: int
    entries: Entries = ()

    @property
    def tx_start(self) -> BinlogPoint:
        return BinlogPoint.of(self.file, self.txpos)

    def __str__(self) -> str:
        base = f"{self.file}:{self.txpos}:{self.n}"
        return f"{base}@{format_entries(self.entries)}" if self.entries else base


@dataclass(frozen=True, slots=True)
class SnapshotPos:
    table_index: int
    pk: tuple[int, ...] | None  # None: `ordinal` counts rows
    ordinal: int
    end: bool
    entries: Entries

    def __str__(self) -> str:
        n = format_pk(self.pk) if self.pk is not None else f"#{self.ordinal}"
        end = ":end" if self.end else ""
        return f"{SNAPSHOT}{self.table_index}:{n}{end}@{format_entries(self.entries)}"


def parse(position: str) -> BinlogPos | SnapshotPos:
    try:
        if position.startswith(SNAPSHOT):
            head, _, tail = position[len(SNAPSHOT) :].partition("@")
            parts = head.split(":")
            end = len(parts) == 3 and parts[2] == "end"
            if len(parts) not in (2, 3) or (len(parts) == 3 and not end):
                raise ValueError(position)
            entries = parse_entries(tail)
            if not entries:
                raise ValueError(position)
            if parts[1].startswith("#"):
                return SnapshotPos(int(parts[0]), None, int(parts[1][1:]), end, entries)
            return SnapshotPos(int(parts[0]), parse_pk(parts[1]), 0, end, entries)
        head, _, tail = position.partition("@")
        rest, _, n = head.rpartition(":")
        file, _, txpos = rest.rpartition(":")
        file_seq(file)
        return BinlogPos(file, int(txpos), int(n), parse_entries(tail))
    except ValueError:
        raise ValueError(f"not a mysql source position: {position!r}") from None


def key(position: str) -> tuple:
    """Total order of positions (see the module docstring)."""
    p = parse(position)
    if isinstance(p, SnapshotPos):
        pt = read_point(p.entries, p.table_index)
        if pt is None:
            raise ValueError(f"not a mysql source position: {position!r}")
        return (0, p.table_index, pt.sort_key, p.pk if p.pk is not None else (p.ordinal,))
    return (1, (file_seq(p.file), p.txpos), p.n)


BY_ROW = (-1, -1)  # snapshot_filters marker: the table's filter depends on the row's primary key


def snapshot_filters(tables: dict[tuple[str, str], Any], entries: Entries) -> dict[tuple[str, str], tuple[int, int]]:
    """Per table: transactions starting before this (file seq, pos) are in its snapshot already
    (BY_ROW: that depends on the row's key)."""
    out = {}
    for k, t in tables.items():
        if has_row_filters(entries, t.index):
            out[k] = BY_ROW
            continue
        p = filter_point(entries, t.index, None)
        if p is not None:
            out[k] = p.sort_key
    return out


def in_snapshot(t: Any, before: Any, after: Any, entries: Entries, tx: tuple[int, int]) -> bool:
    """Is this binlog row (its images) already in table t's snapshot rows? (Emitted if any image needs it.)"""
    for values in (before, after):
        if values is None:
            continue
        pk = None
        if t.int_pk:
            try:
                pk = tuple(int(values[c]) for c in t.pk)
            except (KeyError, TypeError, ValueError):
                pk = None
        p = filter_point(entries, t.index, pk)
        if p is None or tx >= p.sort_key:
            return False
    return True
