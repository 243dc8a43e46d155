"""Benchmark: the JavaScript processor stage beside bare QuickJS and Node.js.

Run: .venv/bin/python bench/bench_processor.py [--events 2000] [--rounds 30]

The stage = `JavascriptProcessor.process(batch_json)` (sandbox child process, JSON over a
pipe, big-int scan) + the runtime's final `msgspec` decode of the result into list[dict].
(a) bare QuickJS: the same function in-process, one call of
    `JSON.stringify(process(JSON.parse(s)))` on the same pre-encoded string.
(b) Node.js (V8): the same function on the same batch, JSON string in and out.
Stage and bare calls are interleaved round by round and medians are reported, so other
load on the machine hits both alike. Targets: stage >= 75% of bare QuickJS; identity
>= 70,000 events/s. Imports: worker + shared + quickjs + msgspec (bench only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import msgspec  # noqa: E402
import quickjs  # noqa: E402

from shared.spec.model import JavascriptProcessorSpec as JsSpec  # noqa: E402
from shared.spec.model import Limits  # noqa: E402
from worker.processors.base import ProcessorContext  # noqa: E402
from worker.processors.javascript import JavascriptProcessor  # noqa: E402

PROCESSORS = {
    "identity": "export function process(batch) {\n  return batch;\n}\n",
    "enrich": (
        "export function process(batch) {\n"
        "  for (const e of batch) {\n"
        "    if (e.after) e.after.amount_cents = Math.round(Number(e.after.amount) * 100);\n"
        '    e.enriched_by = "tidegate";\n'
        "  }\n"
        "  return batch;\n"
        "}\n"
    ),
}


def cdc_event(i: int) -> dict:
    """A realistic ~480-byte PostgreSQL update: six columns incl. a small JSON object."""
    ts = 1732800000000 + i
    row = {
        "id": i,
        "customer_id": 1000 + i % 97,
        "status": "pending",
        "amount": "129.90",
        "meta": {"channel": "web", "items": 3},
        "updated_at": "2024-11-28T13:20:00Z",
    }
    return {
        "op": "u",
        "ts_ms": ts,
        "source": {
            "connector": "postgres",
            "db": "shop",
            "schema": "public",
            "table": "orders",
            "position": f"0/16B{i:05X}:0",
            "tx_id": str(771 + i // 10),
            "ts_ms": ts,
        },
        "before": row,
        "after": dict(row, status="shipped", updated_at="2024-11-29T03:00:00Z"),
    }


def bare_quickjs(code: str):
    ctx = quickjs.Context()
    ctx.module(code + "\nglobalThis.process = process;\n")
    return ctx.eval("(function (s) { return JSON.stringify(process(JSON.parse(s))); })")


def measure(code: str, batch: bytes, rounds: int) -> dict:
    text = batch.decode()
    decode = msgspec.json.Decoder().decode  # what worker/pipeline.py does with the chain's output
    proc = JavascriptProcessor(
        JsSpec(id="bench", inline=code, limits=Limits(cpu_ms=10000, mem_mb=512, timeout_ms=20000)),
        ProcessorContext(pipeline="bench"),
    )
    proc.open()
    bare = bare_quickjs(code)
    try:
        out = decode(proc.process(batch))
        assert decode(bare(text)) == out, "stage and bare QuickJS disagree"
        stage_t, proc_t, bare_t = [], [], []
        stage_cpu = bare_cpu = 0.0
        sandbox = proc._sandbox
        assert sandbox is not None
        child_cpu0 = sandbox.cpu_seconds() or 0.0
        for _ in range(rounds):
            c0, t0 = time.process_time(), time.perf_counter()
            data = proc.process(batch)
            t1 = time.perf_counter()
            decode(data)
            t2, c2 = time.perf_counter(), time.process_time()
            bare(text)
            t3, c3 = time.perf_counter(), time.process_time()
            stage_t.append(t2 - t0)
            proc_t.append(t1 - t0)
            bare_t.append(t3 - t2)
            stage_cpu += c2 - c0
            bare_cpu += c3 - c2
        stage_cpu += (sandbox.cpu_seconds() or 0.0) - child_cpu0  # the sandbox child's share
    finally:
        proc.close()
    med = statistics.median
    return {
        "stage": med(stage_t),
        "process": med(proc_t),
        "bare": med(bare_t),
        "out": len(out),
        "cpu_ratio": bare_cpu / stage_cpu,
    }


def measure_node(code: str, batch: bytes, rounds: int) -> float | None:
    node = shutil.which("node")
    if node is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        code_file, batch_file = os.path.join(tmp, "p.js"), os.path.join(tmp, "batch.json")
        with open(code_file, "w") as f:
            f.write(code)
        with open(batch_file, "wb") as f:
            f.write(batch)
        res = subprocess.run(
            [node, os.path.join(ROOT, "bench", "node_processor.js"), code_file, batch_file, str(rounds)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return json.loads(res.stdout)["median_ms"] / 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    batch = msgspec.json.encode([cdc_event(i) for i in range(1, args.events + 1)])
    n = args.events
    print(f"batch: {n} events, {len(batch) / n:.0f} bytes/event (compact JSON), {args.rounds} rounds, medians")
    print(
        f"{'processor':<10} {'stage ev/s':>11} {'process()':>10} {'bare QuickJS':>13} {'stage/bare':>11} "
        f"{'process/bare':>13} {'Node.js':>9} {'stage/node':>11} {'cpu ratio':>9}"
    )
    ok = True
    for name, code in PROCESSORS.items():
        r = measure(code, batch, args.rounds)
        node = measure_node(code, batch, args.rounds)
        stage, only, bare = n / r["stage"], n / r["process"], n / r["bare"]
        node_rate = n / node if node else float("nan")
        print(
            f"{name:<10} {stage:>11,.0f} {only:>10,.0f} {bare:>13,.0f} {stage / bare:>10.0%} "
            f"{only / bare:>12.0%} {node_rate:>9,.0f} {stage / node_rate:>10.0%} {r['cpu_ratio']:>9.0%}"
        )
        ok &= stage / bare >= 0.75
        if name == "identity":
            ok &= stage >= 70000
    print("stage = process() + the runtime's msgspec decode of its output; process() = the sandbox call alone;")
    print("cpu ratio = bare QuickJS CPU / stage CPU (worker + sandbox child), robust to other load on the host")
    print("targets: stage >= 75% of bare QuickJS; identity >= 70,000 ev/s ->", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
