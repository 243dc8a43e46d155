"""Positions of the mysql source: their string forms, their total order, and what a resume must skip.

Pure (stdlib only). Two forms, both "the last event delivered":

- binlog row: ``<file>:<txpos>:<n>[@<points>]``: ``txpos`` is where the row's transaction starts in the
  binlog (its GTID event, or BEGIN without GTID); ``n`` is the 1-based index of the row among the
  captured rows of that transaction. Resuming connects at ``txpos`` and skips the first ``n`` captured
  rows of that transaction, so a resume in the middle of a transaction neither skips nor repeats a row.
  ``n = 0`` means "start at txpos, skip nothing" (the point where streaming starts).
- snapshot row: ``snapshot:<ti>:<ord>[:end]@<points>``: the ``ord``-th row (1-based, primary key order)
  of the ``ti``-th configured table; ``end`` marks the last row of that table.

``points`` (``<k>=<file>:<pos>,...``, ascending) are the binlog positions at which snapshots were taken:
tables ``k..`` (up to the next point's k) were read at that point, so binlog transactions that start
before it are already in their snapshot rows and are skipped for those tables. There is one point per
snapshot run that covered new tables (a run resumed after a crash re-reads the interrupted table at a
new point). A binlog position carries only the points that lie after it, so a normal stream has none.

Order (`key`): every snapshot position sorts before every binlog position; snapshot rows by table index,
then by the table's snapshot point (a re-read after a crash sorts after the interrupted read), then by
row; binlog rows by file sequence number, transaction start, row index.
"""
from __future__ import annotations

from dataclasses import dataclass

SNAPSHOT = "snapshot:"


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
    def of(cls, file: str, pos: int) -> "BinlogPoint":
        file_seq(file)
        return cls(file, int(pos))

    @property
    def seq(self) -> int:
        return file_seq(self.file)

    @property
    def sort_key(self) -> tuple[int, int]:
        return (file_seq(self.file), self.pos)

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"

    def __lt__(self, other: "BinlogPoint") -> bool:
        return self.sort_key < other.sort_key

    def __le__(self, other: "BinlogPoint") -> bool:
        return self.sort_key <= other.sort_key


Points = tuple[tuple[int, BinlogPoint], ...]


def format_points(points: Points) -> str:
    return ",".join(f"{k}={p}" for k, p in points)


def parse_points(text: str) -> Points:
    if not text:
        return ()
    out = []
    for part in text.split(","):
        k, _, where = part.partition("=")
        file, _, pos = where.rpartition(":")
        out.append((int(k), BinlogPoint.of(file, int(pos))))
    return tuple(out)


def point_for(points: Points, table_index: int) -> BinlogPoint | None:
    """The snapshot point that covers table `table_index` (the last point with k <= index)."""
    found = None
    for k, p in points:
        if k <= table_index:
            found = p
        else:
            break
    return found


def points_after(points: Points, where: BinlogPoint) -> Points:
    """The points that still filter transactions starting at or after `where`."""
    return tuple((k, p) for k, p in points if where < p)


@dataclass(frozen=True, slots=True)
class BinlogPos:
    file: str
    txpos: int
    n: int
    points: Points = ()

    @property
    def tx_start(self) -> BinlogPoint:
        return BinlogPoint.of(self.file, self.txpos)

    def __str__(self) -> str:
        base = f"{self.file}:{self.txpos}:{self.n}"
        return f"{base}@{format_points(self.points)}" if self.points else base


@dataclass(frozen=True, slots=True)
class SnapshotPos:
    table_index: int
    ordinal: int
    end: bool
    points: Points

    def __str__(self) -> str:
        end = ":end" if self.end else ""
        return f"{SNAPSHOT}{self.table_index}:{self.ordinal}{end}@{format_points(self.points)}"


def parse(position: str) -> BinlogPos | SnapshotPos:
    try:
        if position.startswith(SNAPSHOT):
            head, _, pts = position[len(SNAPSHOT):].partition("@")
            parts = head.split(":")
            end = len(parts) == 3 and parts[2] == "end"
            if len(parts) not in (2, 3) or (len(parts) == 3 and not end):
                raise ValueError(position)
            points = parse_points(pts)
            if not points:
                raise ValueError(position)
            return SnapshotPos(int(parts[0]), int(parts[1]), end, points)
        head, _, pts = position.partition("@")
        rest, _, n = head.rpartition(":")
        file, _, txpos = rest.rpartition(":")
        file_seq(file)
        return BinlogPos(file, int(txpos), int(n), parse_points(pts))
    except ValueError:
        raise ValueError(f"not a mysql source position: {position!r}") from None


def key(position: str) -> tuple[int, ...]:
    """Total order of positions (see the module docstring)."""
    p = parse(position)
    if isinstance(p, SnapshotPos):
        pt = point_for(p.points, p.table_index)
        assert pt is not None
        return (0, p.table_index, pt.seq, pt.pos, p.ordinal)
    return (1, file_seq(p.file), p.txpos, p.n)
