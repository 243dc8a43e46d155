"""Issue 2 bench: generator -> file sink (fsync per batch, batches of 2000)
through a real supervisor + worker, beside the raw limit measured in the same
run: a plain loop that builds the same events and writes the same JSON lines
with the same fsync cadence, with no batching machinery.

    .venv/bin/python bench/bench_core.py [--events N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.supervisor import Supervisor, file_sink, generator_spec  # noqa: E402


def raw_loop(path: Path, n: int, batch: int = 2000, payload_bytes: int = 100) -> float:
    """Same events as the generator source, same lines, fsync every `batch`."""
    import random

    rnd = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    pool = "".join(rnd.choice(alphabet) for _ in range(payload_bytes + 97))
    enc = msgspec.json.Encoder().encode
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    t0 = time.perf_counter()
    num = 1
    while num <= n:
        ts = int(time.time() * 1000)
        lines = []
        for k in range(num, min(n, num + batch - 1) + 1):
            off = (k * 31) % 97
            ev = {
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
                "after": {"id": k, "payload": pool[off : off + payload_bytes]},
            }
            lines.append(enc(ev))
        os.write(fd, b"\n".join(lines) + b"\n")
        os.fsync(fd)
        num += batch
    dt = time.perf_counter() - t0
    os.close(fd)
    return n / dt


def peak_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pipeline_rate(tmp: Path, n: int, inflight: int) -> tuple[float, int]:
    """events/s from the first event's generation (its ts_ms) to the durable
    checkpoint of the last one (its updated_at): the worker's own clock, so the
    bench polls the API only lightly and steals no CPU from the worker."""
    import datetime as dt
    import json

    out = tmp / f"out-{inflight}.jsonl"
    with Supervisor(tmp / f"sup-{inflight}") as sup:
        spec = generator_spec("bench", [file_sink("out", out, fsync="batch")], count=n)
        spec["spec"]["batch"] = {"max_events": 2000, "max_inflight": inflight}
        sup.create(spec)
        pid = sup.worker_pid("bench")
        while True:
            ck = sup.info("bench")["ops"]["checkpoints"].get("out")
            if ck and int(ck["position"]) >= n:
                break
            time.sleep(0.2)
        rss = peak_rss(pid)
        with open(out, "rb") as f:
            first_ms = json.loads(f.readline())["ts_ms"]
        end = dt.datetime.strptime(ck["updated_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        return n / (end.timestamp() - first_ms / 1000), rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tg-bench-") as d:
        tmp = Path(d)
        raw = raw_loop(tmp / "raw.jsonl", a.events)
        rows = [("raw loop (same events, same lines, fsync/2000)", raw, 0)]
        for inflight in (1, 4):
            rate, rss = pipeline_rate(tmp, a.events, inflight)
            rows.append((f"tidegate generator->file, max_inflight={inflight}", rate, rss))
    print(f"\n{'measure':<52} {'events/s':>12} {'vs raw':>8} {'worker peak RSS':>16}")
    for name, rate, rss in rows:
        print(
            f"{name:<52} {rate:>12,.0f} {rate / raw:>8.0%} {rss / 2**20:>13.1f} MiB"
            if rss
            else f"{name:<52} {rate:>12,.0f} {rate / raw:>8.0%} {'':>16}"
        )
    print("targets: >= 70% of the raw loop and >= 150,000 events/s")


if __name__ == "__main__":
    main()
