"""The reference runs of bench/bench_e2e.py, run as a separate process and independent of
tidegate's code: nothing here imports tidegate (shared, worker, supervisor, tests), and the
process checks that on exit. Each command prints one JSON object: {"seconds": ..., "events": ...}.

    python bench/_e2e_refs.py plain PATH N       build the generator's N events and JSON lines
                                                 itself, write them to PATH, fsync every 2000
    python bench/_e2e_refs.py quickjs N          one bare QuickJS call (the `quickjs` package) per
                                                 batch of 2000 of the same events, timed alone
    python bench/_e2e_refs.py pmr ARGS_JSON      a python-mysql-replication loop over a backlog:
                                                 {"conn": {...}, "db", "table", "file", "pos", "rows"}

Imports: the standard library, msgspec, quickjs, pymysqlreplication.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Iterator
from typing import Any

import msgspec

BATCH = 2000  # the spec's default batch.max_events: the plain loop's fsync cadence and the JS batches
PAYLOAD = 100  # the generator's default payload_bytes
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
IDENTITY_JS = "export function process(batch) { return batch; }\n"
TIDEGATE_PACKAGES = {"shared", "worker", "supervisor", "tests"}


def batches(n: int, seed: int = 0, size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    """The events of a generator source at its defaults (table demo.events, payload 100, tx_size 1,
    seed 0), as CONTRACT section 4 describes them, `size` at a time."""
    rnd = random.Random(seed)
    pool = "".join(rnd.choice(ALPHABET) for _ in range(PAYLOAD + 97))
    num = 1
    while num <= n:
        ts = int(time.time() * 1000)
        out = []
        for k in range(num, min(n, num + size - 1) + 1):
            off = (k * 31) % 97
            out.append(
                {
                    "op": "c",
                    "ts_ms": ts,
                    "source": {
                        "connector": "generator",
                        "db": "demo",
                        "schema": None,
                        "table": "events",
                        "position": str(k),
                        "tx_id": str(k),
                        "ts_ms": ts,
                    },
                    "before": None,
                    "after": {"id": k, "payload": pool[off : off + PAYLOAD]},
                }
            )
        yield out
        num += size


def plain(path: str, n: int) -> float:
    """Build the events and their lines, append them to `path`, fsync every BATCH lines."""
    enc = msgspec.json.Encoder().encode
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    t0 = time.perf_counter()
    try:
        for evs in batches(n):
            data = b"\n".join([enc(e) for e in evs]) + b"\n"
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def bare_quickjs(n: int) -> float:
    """Seconds spent in one `JSON.stringify(process(JSON.parse(s)))` call per batch (identity JS)."""
    import quickjs

    ctx = quickjs.Context()
    ctx.module(IDENTITY_JS + "globalThis.process = process;\n")
    call = ctx.eval("(function (s) { return JSON.stringify(process(JSON.parse(s))); })")
    enc = msgspec.json.Encoder().encode
    spent = 0.0
    for evs in batches(n):
        text = enc(evs).decode()
        t0 = time.perf_counter()
        out = call(text)
        spent += time.perf_counter() - t0
        assert len(out) == len(text), "identity JS changed the batch"
    return spent


def pmr(args: dict[str, Any]) -> float:
    """Iterate the rows of a binlog backlog with python-mysql-replication, as a bare client would."""
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    stream = BinLogStreamReader(
        connection_settings=dict(args["conn"]),
        server_id=random.randint(1 << 30, (1 << 31) - 1),
        blocking=False,
        resume_stream=True,
        log_file=args["file"],
        log_pos=int(args["pos"]),
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=[args["db"]],
        only_tables=[args["table"]],
    )
    rows, n = int(args["rows"]), 0
    t0 = time.perf_counter()
    for ev in stream:
        for _row in ev.rows:
            n += 1
        if n >= rows:
            break
    spent = time.perf_counter() - t0
    stream.close()
    if n != rows:
        raise SystemExit(f"python-mysql-replication saw {n} rows, wanted {rows}")
    return spent


def main(argv: list[str]) -> None:
    cmd = argv[0]
    if cmd == "plain":
        secs, n = plain(argv[1], int(argv[2])), int(argv[2])
    elif cmd == "quickjs":
        secs, n = bare_quickjs(int(argv[1])), int(argv[1])
    elif cmd == "pmr":
        args = json.loads(argv[1])
        secs, n = pmr(args), int(args["rows"])
    else:
        raise SystemExit(f"unknown reference {cmd!r}")
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in TIDEGATE_PACKAGES)
    if leaked:
        raise SystemExit(f"the reference imported tidegate modules: {leaked}")
    print(json.dumps({"seconds": secs, "events": n}))


if __name__ == "__main__":
    main(sys.argv[1:])
