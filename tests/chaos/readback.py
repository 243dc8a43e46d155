"""Reads every sink of the chaos rig back into checker rows (tests.chaos.check)."""

from __future__ import annotations

from typing import Any

from tests.chaos import check
from tests.chaos import writer as w
from tests.chaos.rig import Rig


def _ck(info: dict[str, Any], sid: str) -> int:
    ck = info["ops"]["checkpoints"].get(sid)
    return int(ck["position"]) if ck else 0


def _gaps(info: dict[str, Any], sid: str) -> list[dict[str, str]]:
    return list(info["ops"].get("sink_gaps", {}).get(sid, []))


def _file_ids(rig: Rig, name: str, sid: str, notes: list[str]) -> list[int]:
    events, torn = check.read_file(rig.path(name, sid))
    if torn:
        notes.append(f"{torn} torn lines in the file")
    return [e["after"]["id"] for e in events]


def rows_of(
    rig: Rig, infos: dict[str, dict[str, Any]], marks: dict[tuple[str, str], list[int]] | None = None
) -> list[check.Row]:
    """`marks`: each generator sink's stored checkpoint before each fault (Faults.mark)."""
    m = marks or {}
    rows: list[check.Row] = []
    # generator -> file (required) + http (best-effort)
    info = infos["gen-http"]
    notes: list[str] = []
    ids = _file_ids(rig, "gen-http", "out", notes)
    marks_out = m.get(("gen-http", "out"), [0])
    rows.append(check.gen_row("gen-http", "out", "required", ids, _ck(info, "out"), [], marks_out))
    rows[-1].notes += notes
    web = [e["after"]["id"] for e in rig.web.events()]
    marks_web = m.get(("gen-http", "web"), [0])
    rows.append(check.gen_row("gen-http", "web", "best-effort", web, _ck(info, "web"), _gaps(info, "web"), marks_web))
    # quorum 2 of three
    info = infos["gen-quorum"]
    sets = []
    cks = sorted((_ck(info, s) for s in ("a", "b", "c")), reverse=True)
    for sid in ("a", "b", "c"):
        notes = []
        ids = _file_ids(rig, "gen-quorum", sid, notes) if sid != "c" else [e["after"]["id"] for e in rig.qweb.events()]
        marks_q = m.get(("gen-quorum", sid), [0])
        rows.append(check.gen_row("gen-quorum", sid, "quorum-2", ids, _ck(info, sid), _gaps(info, sid), marks_q))
        rows[-1].notes += notes
        sets.append(set(ids))
    short = check.under_quorum(sets, cks[1], 2)
    if short:
        rows[-1].notes.append(f"{short} events up to the committed position {cks[1]} are in fewer than 2 sinks")
    # JavaScript -> NATS
    if "gen-js-nats" in infos:
        info = infos["gen-js-nats"]
        evs = rig.nats_events()
        rows.append(
            check.gen_row(
                "gen-js-nats",
                "bus",
                "required",
                [e["after"]["id"] for e in evs],
                _ck(info, "bus"),
                [],
                m.get(("gen-js-nats", "bus"), [0]),
            )
        )
        if rows[-1].dup:  # Nats-Msg-Id dedup (a 2-minute window) covers any replay after a crash
            rows[-1].notes.append(f"{rows[-1].dup} duplicates despite the Nats-Msg-Id header")
        wrong = sum(1 for e in evs if e["after"].get("js") != e["after"]["id"] * 2)
        if wrong:
            rows[-1].notes.append(f"{wrong} events not processed by the JavaScript processor")
    # PostgreSQL -> file + redis
    wr = rig.writer
    assert wr is not None
    table = w.table_state(rig.pg.dsn)
    notes = []
    events, torn = check.read_file(rig.path("pg-redis", "out"))
    rows.append(check.pg_row("pg-redis", "out", events, wr.expected, wr.uncertain, table))
    if torn:
        rows[-1].notes.append(f"{torn} torn lines in the file")
    rows.append(check.pg_row("pg-redis", "cache", rig.redis_events(), wr.expected, wr.uncertain, table))
    return rows
