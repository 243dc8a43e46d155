"""PgStore's per-pipeline leases (see shared.store.postgres), in `tidegate_leases`: one row per
pipeline with its owner node, expiry (the database's clock), a fencing token incremented at every
acquisition, the owner's API address and the status/ops it publishes at each renewal.
Imports: stdlib only (the store's connection comes through `_tx`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# An expired lease keeps its owner and token (tokens only grow); 'epoch' = long expired.
EXPIRE = "expires_at = 'epoch', status = NULL, ops = NULL, published_at = NULL"
TAKE = """
ON CONFLICT (pipeline) DO UPDATE SET owner = EXCLUDED.owner, token = l.token + 1,
  expires_at = EXCLUDED.expires_at, api_addr = EXCLUDED.api_addr, status = NULL, ops = NULL, published_at = NULL
WHERE l.expires_at < now() OR l.owner = EXCLUDED.owner
RETURNING pipeline, token"""


@dataclass(slots=True)
class LeaseRow:
    pipeline: str
    owner: str
    token: int
    live: bool  # not expired (by the database's clock)
    expires_in_s: float
    api_addr: str
    status: str | None  # what the owner published at its last renewal
    ops: dict[str, Any] | None


class PgLeases:
    _tx: Callable[..., Any]

    def acquire(
        self,
        owner: str,
        api_addr: str,
        ttl_s: float,
        names: list[str] | None = None,
        held: list[str] | tuple[str, ...] = (),
    ) -> dict[str, int]:
        """Take leases that are free, expired or still ours in the database (a new token
        each time); `names` = these names (a pipeline being created), else every stored
        pipeline not in `held`. Returns {pipeline: token} of those taken."""
        args = {"me": owner, "addr": api_addr, "ttl": float(ttl_s), "names": names or [], "held": list(held)}
        if names is not None:
            src = (
                "SELECT n, %(me)s, 1, now() + %(ttl)s * interval '1 second', %(addr)s FROM unnest(%(names)s::text[]) n"
            )
        else:
            src = (
                "SELECT p.name, %(me)s, 1, now() + %(ttl)s * interval '1 second', %(addr)s "
                "FROM tidegate_pipelines p LEFT JOIN tidegate_leases o ON o.pipeline = p.name "
                "WHERE NOT (p.name = ANY(%(held)s::text[])) "
                "AND (o.pipeline IS NULL OR o.expires_at < now() OR o.owner = %(me)s) ORDER BY p.name"
            )

        def q(cur: Any) -> dict[str, int]:
            cur.execute(
                "INSERT INTO tidegate_leases AS l (pipeline, owner, token, expires_at, api_addr) " + src + TAKE, args
            )
            return {r[0]: int(r[1]) for r in cur.fetchall()}

        taken: dict[str, int] = self._tx(q, retry=False)
        return taken

    def renew(
        self, owner: str, ttl_s: float, held: dict[str, int], published: dict[str, tuple[str, str]] | None = None
    ) -> set[str]:
        """Extend the leases we hold (same owner and token) and publish each one's
        (status, ops JSON); returns the names renewed (the others are lost)."""
        if not held:
            return set()
        names = sorted(held)
        pub = published or {}
        cols = (
            names,
            [held[n] for n in names],
            [pub.get(n, (None, None))[0] for n in names],
            [pub.get(n, (None, None))[1] for n in names],
        )

        def q(cur: Any) -> set[str]:
            cur.execute(
                "UPDATE tidegate_leases AS l SET expires_at = now() + %s * interval '1 second', "
                "status = v.status, ops = v.ops::jsonb, published_at = now() "
                "FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[]) AS v(pipeline, token, status, ops) "
                "WHERE l.pipeline = v.pipeline AND l.owner = %s AND l.token = v.token RETURNING l.pipeline",
                (float(ttl_s), *cols, owner),
            )
            return {r[0] for r in cur.fetchall()}

        renewed: set[str] = self._tx(q)
        return renewed

    def release(self, owner: str, names: list[str]) -> None:
        """Give leases up at once (graceful shutdown): another node may take them now."""
        if names:
            self._tx(
                lambda cur: cur.execute(
                    f"UPDATE tidegate_leases SET {EXPIRE} WHERE owner = %s AND pipeline = ANY(%s::text[])",
                    (owner, list(names)),
                )
            )

    def leases(self, name: str | None = None) -> dict[str, LeaseRow]:
        def q(cur: Any) -> dict[str, LeaseRow]:
            cur.execute(
                "SELECT pipeline, owner, token, expires_at > now(), "
                "GREATEST(EXTRACT(EPOCH FROM expires_at - now()), 0), api_addr, status, ops "
                "FROM tidegate_leases" + ("" if name is None else " WHERE pipeline = %s"),
                () if name is None else (name,),
            )
            return {
                r[0]: LeaseRow(r[0], r[1], int(r[2]), bool(r[3]), float(r[4]), r[5], r[6], r[7]) for r in cur.fetchall()
            }

        rows: dict[str, LeaseRow] = self._tx(q)
        return rows

    def lease(self, name: str) -> LeaseRow | None:
        return self.leases(name).get(name)
