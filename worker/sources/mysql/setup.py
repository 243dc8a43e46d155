"""Server facts for the mysql source: DSN, server checks, privileges, table metadata (binlog: binlog.py).

Imports: stdlib, pymysql, shared.errors and the sibling modules of worker.sources.mysql. Every function here blocks
(pymysql): call them on a thread. Errors are SourceError whose message names the server, the cause and
the fix; `retryable` is True only for connection trouble (the server restarting, a dropped link).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql

from shared.errors import SourceError
from worker.sources.mysql.values import Column, make_converter

INT_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint"})
CONNECTION_ERRORS = {2002, 2003, 2005, 2006, 2013, 2055, 1053, 1927}  # 1053/1927: server shutdown/killed


@dataclass(frozen=True, slots=True)
class Dsn:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    db: str | None = None
    ssl: str = "preferred"  # disabled | preferred | required (dsn ?ssl=...)

    @property
    def where(self) -> str:
        return f"mysql {self.host}:{self.port}"

    def connect_args(self, **extra: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "charset": "utf8mb4",
            "connect_timeout": 5,
            "autocommit": True,
        }
        if self.ssl == "disabled":
            args["ssl_disabled"] = True
        elif self.ssl == "required":
            args["ssl"] = {"check_hostname": False}
        args.update(extra)
        return args


def parse_dsn(dsn: str) -> Dsn:
    u = urlsplit(dsn)
    if u.scheme not in ("mysql", "mariadb") or not u.hostname:
        raise SourceError(
            f"mysql source: dsn must look like mysql://user:password@host:3306/db, got scheme {u.scheme!r}",
            retryable=False,
        )
    db = unquote(u.path.lstrip("/")) or None
    query = dict(parse_qsl(u.query))
    # TLS on loopback buys nothing and costs ~70 ms per connection (pymysql loads the CA store)
    loopback = u.hostname in ("127.0.0.1", "localhost", "::1")
    ssl = query.pop("ssl", "disabled" if loopback else "preferred").lower()
    ssl = {"true": "required", "1": "required", "false": "disabled", "0": "disabled"}.get(ssl, ssl)
    if ssl not in ("disabled", "preferred", "required") or query:
        raise SourceError(
            f"mysql source: dsn options {sorted(query) or ['ssl=' + ssl]} not understood; "
            "the only option is ?ssl=disabled|preferred|required",
            retryable=False,
        )
    return Dsn(
        host=u.hostname,
        port=u.port or 3306,
        user=unquote(u.username or "root"),
        password=unquote(u.password or ""),
        db=db,
        ssl=ssl,
    )


def error(where: str, exc: BaseException, doing: str = "") -> SourceError:
    """A pymysql (or socket) error as a SourceError naming the cause and the fix."""
    if isinstance(exc, SourceError):
        return exc
    code = exc.args[0] if isinstance(exc, pymysql.MySQLError) and exc.args else None
    msg = exc.args[1] if isinstance(exc, pymysql.MySQLError) and len(exc.args) > 1 else str(exc)
    what = f"{where}: {doing + ': ' if doing else ''}"
    if not isinstance(exc, (pymysql.MySQLError, OSError, EOFError, struct.error)):
        return SourceError(f"{what}unexpected {exc.__class__.__name__}: {exc}", retryable=False)
    if (
        code in CONNECTION_ERRORS
        or not isinstance(exc, pymysql.MySQLError)
        or code is None
        or isinstance(exc, pymysql.err.InterfaceError)
    ):
        return SourceError(
            f"{what}connection failed or lost ({msg or exc.__class__.__name__}); retrying from the last position",
            retryable=True,
        )
    if code == 1045:
        return SourceError(
            f"{what}access denied ({msg}): fix the user/password in spec.source.config.dsn", retryable=False
        )
    if code == 1227:
        return SourceError(
            f"{what}missing privilege ({msg}): GRANT REPLICATION SLAVE, REPLICATION CLIENT "
            "ON *.* TO the dsn's user (MariaDB: REPLICATION SLAVE, BINLOG MONITOR)",
            retryable=False,
        )
    if code in (1142, 1044):
        return SourceError(f"{what}{msg}: GRANT SELECT on the captured tables to the dsn's user", retryable=False)
    if code == 1236:
        return SourceError(
            f"{what}the server cannot send the binlog from the checkpoint ({msg}); "
            "if it was purged, the checkpoint is lost: DELETE /pipelines/<name>/checkpoints "
            "to take a new snapshot, and keep binlogs longer (binlog_expire_logs_seconds)",
            retryable=False,
        )
    if code in (1049, 1146):
        return SourceError(f"{what}{msg}: fix spec.source.config.tables or create it", retryable=False)
    return SourceError(f"{what}{msg} (error {code})", retryable=True)


def connect(dsn: Dsn, **extra: Any) -> pymysql.connections.Connection:
    try:
        return pymysql.connect(**dsn.connect_args(**extra))
    except pymysql.MySQLError as exc:
        raise error(dsn.where, exc, "connect") from exc


@dataclass(slots=True)
class ServerInfo:
    flavor: str  # "mariadb" | "mysql"
    version: str
    server_id: int
    row_metadata_full: bool  # column names travel in the binlog (binlog_row_metadata=FULL)
    warnings: list[str] = field(default_factory=list)


def variables(cur: Any, names: list[str]) -> dict[str, str]:
    marks = ",".join(["%s"] * len(names))
    cur.execute(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({marks})", names)
    return {str(k).lower(): str(v) for k, v in cur.fetchall()}


def check_server(cur: Any, where: str) -> ServerInfo:
    v = variables(cur, ["version", "log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata", "server_id"])
    flavor = "mariadb" if "mariadb" in v.get("version", "").lower() else "mysql"
    if v.get("log_bin", "OFF").upper() not in ("ON", "1"):
        raise SourceError(
            f"{where}: the binary log is off: set log_bin (for example `log_bin = mysql-bin` "
            "under [mysqld]) and restart the server (scripts/services/mariadb.sh does it)",
            retryable=False,
        )
    if v.get("binlog_format", "").upper() != "ROW":
        raise SourceError(
            f"{where}: binlog_format is {v.get('binlog_format')}, row changes need ROW: "
            "SET GLOBAL binlog_format = 'ROW' and put binlog_format = ROW under [mysqld]",
            retryable=False,
        )
    info = ServerInfo(
        flavor,
        v.get("version", "?"),
        int(v.get("server_id", "0") or 0),
        v.get("binlog_row_metadata", "").upper() == "FULL",
    )
    if v.get("binlog_row_image", "FULL").upper() != "FULL":
        info.warnings.append(
            f"{where}: binlog_row_image is {v.get('binlog_row_image')}: `before` images and "
            "unchanged columns will be missing; SET GLOBAL binlog_row_image = 'FULL'"
        )
    if not info.row_metadata_full:
        info.warnings.append(
            f"{where}: binlog_row_metadata is not FULL: column names are read from "
            "information_schema (wrong across ALTER TABLE, ENUM/SET names lost); "
            "SET GLOBAL binlog_row_metadata = 'FULL'"
        )
    return info


def check_privileges(cur: Any, where: str) -> list[str]:
    """Fail when the user clearly lacks the replication privileges; warnings when roles may grant them."""
    cur.execute("SHOW GRANTS FOR CURRENT_USER()")
    grants = [str(r[0]).upper() for r in cur.fetchall()]
    glob = " ".join(g for g in grants if " ON *.* " in g)
    if "ALL PRIVILEGES" in glob:
        return []
    missing = [
        p
        for p, alts in (
            ("REPLICATION SLAVE", ("REPLICATION SLAVE", "REPLICATION REPLICA")),
            ("REPLICATION CLIENT", ("REPLICATION CLIENT", "BINLOG MONITOR")),
        )
        if not any(a in glob for a in alts)
    ]
    if not missing:
        return []
    text = (
        f"{where}: the dsn's user lacks {' and '.join(missing)} (MariaDB names REPLICATION CLIENT "
        f"BINLOG MONITOR): GRANT {', '.join(missing)} ON *.* TO the user"
    )
    if any(" ON " not in g for g in grants if g.startswith("GRANT ")) and any("`" in g for g in grants):
        return [text + " (or check its roles)"]
    raise SourceError(text, retryable=False)


@dataclass(slots=True)
class TableInfo:
    db: str
    name: str
    index: int
    columns: list[Column]
    pk: list[str]
    estimated_rows: int
    convert: Callable[..., dict[str, Any]]

    @property
    def full_name(self) -> str:
        return f"{self.db}.{self.name}"

    @property
    def int_pk(self) -> bool:
        """A primary key of integer columns only: Python orders it exactly like the server."""
        types = {c.name: c.data_type for c in self.columns}
        return bool(self.pk) and all(types.get(c) in INT_TYPES for c in self.pk)


def all_tables(cur: Any, db: str) -> list[tuple[str, str]]:
    cur.execute(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
        "AND TABLE_TYPE = 'BASE TABLE' AND TABLE_NAME <> 'tidegate_signal' ORDER BY TABLE_NAME",
        (db,),  # the incremental snapshots' watermarks (chunks.SIGNAL_TABLE) are not captured
    )
    return [(db, r[0]) for r in cur.fetchall()]


def load_tables(cur: Any, names: list[tuple[str, str]], flavor: str, where: str) -> list[TableInfo]:
    out = []
    for index, (db, name) in enumerate(names):
        cur.execute(
            "SELECT TABLE_TYPE, TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (db, name),
        )
        row = cur.fetchone()
        if row is None:
            raise SourceError(
                f"{where}: table {db}.{name} not found: create it or fix spec.source.config.tables", retryable=False
            )
        if row[0] != "BASE TABLE":
            raise SourceError(
                f"{where}: {db}.{name} is a {row[0]}, not a table: only base tables have "
                "binlog row events; fix spec.source.config.tables",
                retryable=False,
            )
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (db, name),
        )
        cols = [(str(c), str(d), str(t)) for c, d, t in cur.fetchall()]
        json_cols: set[str] = set()
        if flavor == "mariadb":
            cur.execute(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
                (db, name),
            )
            for (clause,) in cur.fetchall():
                clause = str(clause).strip()
                if clause.lower().startswith("json_valid(") and clause.endswith(")"):
                    json_cols.add(clause[len("json_valid(") : -1].strip("`"))
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            (db, name),
        )
        pk = [str(r[0]) for r in cur.fetchall()]
        columns = [Column(c, d, t, c in json_cols) for c, d, t in cols]
        out.append(TableInfo(db, name, index, columns, pk, int(row[1] or 0), make_converter(columns)))
    return out
