"""`tidegate dlq ls|show|replay|purge NAME [ID...] [--stage S] [--all]` (CONTRACT section 12),
over the REST API like the rest of the ops client (supervisor.opscli).

    ls NAME [--stage S]            the entries, oldest first (every page)
    show NAME ID...                the entries in full (JSON)
    replay NAME (ID... | --stage S | --all)
    purge NAME (ID... | --stage S | --all)

Imports: stdlib + httpx + supervisor.opscli.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx

from supervisor.opscli import EXIT_ERROR, EXIT_OK, OpsError, call, render

VERBS = ("ls", "show", "replay", "purge")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    d = sub.add_parser("dlq", parents=[common], help="inspect, replay or purge a pipeline's dead-letter queue")
    d.add_argument("verb", choices=VERBS)
    d.add_argument("name")
    d.add_argument("ids", nargs="*", metavar="ID")
    d.add_argument("--stage", help="processor:<id> or sink:<id>")
    d.add_argument("--all", action="store_true", help="every entry (replay, purge)")


def _short(e: dict[str, Any]) -> dict[str, Any]:
    return {k: e[k] for k in ("id", "stage", "position", "attempts", "last_seen", "error")}


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no entries"
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])[:80]) for r in rows)) for c in cols}
    lines = ["  ".join(c.upper().ljust(width[c]) for c in cols)]
    lines += ["  ".join(str(r[c])[:80].ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _selection(a: argparse.Namespace) -> dict[str, Any]:
    given = [bool(a.ids), a.stage is not None, a.all]
    if sum(given) != 1:
        raise OpsError(f"dlq {a.verb}: give entry ids, or --stage S, or --all (exactly one)")
    if a.ids:
        return {"ids": a.ids}
    return {"stage": a.stage} if a.stage is not None else {"all": True}


def run(c: httpx.Client, a: argparse.Namespace) -> int:
    base = f"/pipelines/{a.name}/dlq"
    if a.verb == "ls":
        entries: list[dict[str, Any]] = []
        after = None
        while True:
            query = {k: v for k, v in (("stage", a.stage), ("after", after), ("limit", "1000")) if v is not None}
            page = call(c, "GET", base, params=query).json()
            entries += page["entries"]
            after = page["next"]
            if after is None:
                break
        print(render(entries, a.output) if a.output_given else _table([_short(e) for e in entries]))
        return EXIT_OK
    if a.verb == "show":
        if not a.ids:
            raise OpsError("dlq show: name the entry ids", EXIT_ERROR)
        got = [call(c, "GET", f"{base}/{i}").json() for i in a.ids]
        print(render(got, a.output) if a.output_given else json.dumps(got, indent=2))
        return EXIT_OK
    sel = _selection(a)
    if a.verb == "replay":
        out = call(c, "POST", f"{base}/replay", json=sel).json()
        print(
            render(out, a.output)
            if a.output_given
            else f"replayed {out['replayed']}, failed {out['failed']}, remaining {out['remaining']}"
        )
        return EXIT_OK if out["failed"] == 0 else EXIT_ERROR
    params: list[tuple[str, str]] = [("id", i) for i in sel.get("ids", [])]
    if "stage" in sel:
        params.append(("stage", sel["stage"]))
    out = call(c, "DELETE", base, params=params).json()
    print(render(out, a.output) if a.output_given else f"purged {out['purged']}")
    return EXIT_OK
