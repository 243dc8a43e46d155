"""The binlog distance (CONTRACT section 8, `ops.source` for mysql): the position the
reader is at, the server's current one and the binlog bytes between them, read by
worker.sources.health.HealthPoller on its own connection (SHOW MASTER STATUS and
SHOW BINARY LOGS). Imports: stdlib + pymysql + worker.sources.health + the sibling modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.sources.health import HealthPoller
from worker.sources.mysql.binlog import current_point
from worker.sources.mysql.position import BinlogPos, parse
from worker.sources.mysql.setup import Dsn, connect, parse_dsn

FIELDS = ("binlog_file", "binlog_pos", "server_binlog_file", "server_binlog_pos", "behind_bytes")


def distance(sizes: list[tuple[str, int]], file: str, pos: int, server_file: str, server_pos: int) -> int | None:
    """Bytes of binlog from (file, pos) to (server_file, server_pos); None when `file` is not listed."""
    if file == server_file:
        return max(0, server_pos - pos)
    names = [n for n, _ in sizes]
    if file not in names or server_file not in names:
        return None
    i, j = names.index(file), names.index(server_file)
    return max(0, sizes[i][1] - pos) + sum(s for _, s in sizes[i + 1 : j]) + server_pos


class BinlogProbe:
    fields: tuple[str, ...] = FIELDS

    def __init__(self, dsn: Dsn, reading: Callable[[], tuple[str | None, int | None]]) -> None:
        self.dsn, self.reading = dsn, reading
        self._conn: Any = None

    def read(self) -> dict[str, Any]:
        file, pos = self.reading()
        out: dict[str, Any] = {"binlog_file": file, "binlog_pos": pos}
        try:
            if self._conn is None or not self._conn.open:
                self._conn = connect(self.dsn)
            with self._conn.cursor() as cur:
                point = current_point(cur, self.dsn.where)
                out.update(server_binlog_file=point.file, server_binlog_pos=point.pos)
                if file is None or pos is None:
                    return out
                sizes: list[tuple[str, int]] = []
                if file != point.file:
                    cur.execute("SHOW BINARY LOGS")
                    sizes = [(r[0], int(r[1])) for r in cur.fetchall()]
        except Exception as exc:
            self.close()
            out["errors"] = {"binlog": f"{exc.__class__.__name__}: {str(exc).strip()}"}
            return out
        out["behind_bytes"] = distance(sizes, file, pos, point.file, point.pos)
        if out["behind_bytes"] is None:
            out["errors"] = {"binlog": f"binlog {file} is no longer on the server"}
        return out

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass


def binlog_health(dsn: Dsn, status: dict[str, Any], pipeline: str) -> HealthPoller:
    """The poller of a mysql source whose reader keeps its binlog file and pos in `status`."""
    return HealthPoller(BinlogProbe(dsn, lambda: (status.get("file"), status.get("pos"))), f"mysql-{pipeline}").start()


def stop_health(poller: HealthPoller | None) -> HealthPoller | None:
    """Stop the poller (its thread closes its connection); returns what to keep in its place: None."""
    if poller is not None:
        poller.stop()
    return None


def committed_probe(dsn: str, committed: str | None) -> BinlogProbe:
    """The probe of a pipeline no worker runs: its distance from the committed position
    (a snapshot position has no binlog point yet: only the server's is reported)."""
    at = parse(committed) if committed else None
    point = (at.file, at.txpos) if isinstance(at, BinlogPos) else (None, None)
    return BinlogProbe(parse_dsn(dsn), lambda: point)
