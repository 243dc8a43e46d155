"""`where` for error messages: the host:port (and database) a URL or DSN points at,
never its user or password. One function per kind of address.

Imports: stdlib (psycopg2, for a Postgres DSN, inside `pg_where` only).
"""

from __future__ import annotations

from urllib.parse import urlsplit


def url_where(url: str, default_port: int) -> str:
    """`host:port` of a server URL (the first of a comma-separated list)."""
    try:
        parts = urlsplit(url.split(",")[0])
        return f"{parts.hostname or '127.0.0.1'}:{parts.port or default_port}"
    except ValueError:
        return "<invalid url>"


def redis_where(url: str) -> str:
    return url_where(url, 6379)


def nats_where(url: str) -> str:
    return url_where(url, 4222)


def amqp_where(url: str) -> str:
    return url_where(url, 5672)


def pg_where(dsn: str, unparsable: str = "<invalid dsn>") -> str:
    """`host:port/dbname` of a Postgres DSN (URL or key=value form, as libpq reads it);
    `unparsable` when libpq cannot read it (the source's messages say "(unparsable dsn)")."""
    import psycopg2.extensions

    try:
        p = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return unparsable
    return f"{p.get('host', 'localhost')}:{p.get('port', 5432)}/{p.get('dbname', '')}"


def state_url_where(url: str) -> str:
    """`host:port/db` of a state store URL (`/db` only when it names one)."""
    try:
        u = urlsplit(url)
        host = u.hostname or "localhost"
        port = u.port or 5432
    except ValueError:
        return "<unparsable state URL>"
    db = u.path.lstrip("/")
    return f"{host}:{port}" + (f"/{db}" if db else "")
