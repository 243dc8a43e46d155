"""JavaScript processors through a real `tidegate serve` (CONTRACT section 5), HTTP only.

- timeout_ms / cpu_ms / mem_mb runaways each fail their own pipeline (ops.last_error names
  the limit; `failed` after the retries) while a healthy pipeline keeps flowing and the
  supervisor's pid never changes; PATCH with a fixed script resumes from the checkpoint
  without dropping anything.
- a syntax error is a 422 at POST/PATCH naming the processor, line and column.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support import wait_until
from tests.support.supervisor import Supervisor, file_sink, generator_spec, read_jsonl

MERGE = {"content-type": "application/merge-patch+json"}


def js(id: str, code: str, **limits: int) -> dict[str, Any]:
    return {"type": "javascript", "id": id, "inline": code, **({"limits": limits} if limits else {})}


def pipeline(name: str, tmp: Path, processors: list[dict[str, Any]], rate: int) -> dict[str, Any]:
    doc = generator_spec(name, [file_sink("out", tmp / f"{name}.jsonl")], rate=rate, payload_bytes=20)
    doc["spec"]["processors"] = processors
    doc["spec"]["batch"] = {"max_events": 100, "max_ms": 20}
    return doc


RUNAWAYS = {
    "tg-js-loop": (
        js("spin", "export function process(batch) {\n  while (true) {}\n}\n", timeout_ms=200),
        "processor 'spin': timeout_ms 200 exceeded",
    ),
    "tg-js-cpu": (
        js(
            "burn",
            "export function process(batch) {\n  let x = 0;\n  for (;;) x = (x * 31 + 7) % 1000003;\n}\n",
            cpu_ms=300,
            timeout_ms=10000,
        ),
        "processor 'burn': cpu_ms 300 exceeded",
    ),
    "tg-js-mem": (
        js(
            "bomb",
            "export function process(batch) {\n  const a = [];\n  for (;;) a.push('x'.repeat(1000) + a.length);\n}\n",
            mem_mb=16,
        ),
        "processor 'bomb': mem_mb 16 exceeded",
    ),
}


def checkpoint(sup: Supervisor, name: str) -> int:
    ck = sup.info(name)["ops"]["checkpoints"].get("out")
    return int(ck["position"]) if ck else 0


def test_limits_fail_only_their_pipeline(supervisor: Supervisor, tmp_path: Path) -> None:
    sup, sup_pid = supervisor, supervisor.pid
    ok = pipeline(
        "tg-js-ok",
        tmp_path,
        [
            js("evens", "export function process(batch) {\n  return batch.filter(e => e.after.id % 2 === 0);\n}\n"),
            js(
                "enrich",
                "let n = 0;\nfunction process(batch) {\n"
                "  for (const e of batch) { e.after.seq = ++n; e.after.half = e.after.id / 2; }\n"
                "  return batch;\n}\n",
            ),
        ],
        rate=400,
    )
    sup.create(ok)
    for name, (proc, _) in RUNAWAYS.items():
        sup.create(pipeline(name, tmp_path, [proc], rate=200))
    sup.wait_position("tg-js-ok", "out", 20)

    # Watch the healthy pipeline the whole time the runaways are being retried and failed.
    progress: list[tuple[float, int]] = [(time.monotonic(), checkpoint(sup, "tg-js-ok"))]
    seen_limit: dict[str, str] = {}

    def runaways_failed() -> bool:
        assert sup.proc is not None and sup.proc.poll() is None and sup.pid == sup_pid
        assert sup.client.get("/healthz").json() == {"status": "ok"}
        progress.append((time.monotonic(), checkpoint(sup, "tg-js-ok")))
        done = True
        for name, (_, expect) in RUNAWAYS.items():
            info = sup.info(name)
            err = info["ops"]["last_error"]
            if err and expect in err and info["status"] == "running":
                seen_limit[name] = err  # reported while still retrying
            done &= info["status"] == "failed"
        return done

    wait_until(
        runaways_failed,
        timeout=60,
        interval=0.5,
        message=lambda: (
            "runaway pipelines failed: "
            + ", ".join(f"{n}={sup.info(n)['status']} ({sup.info(n)['ops']['last_error']})" for n in RUNAWAYS)
        ),
    )
    for name, (_, expect) in RUNAWAYS.items():
        info = sup.info(name)
        assert expect in info["ops"]["last_error"], info["ops"]
        assert checkpoint(sup, name) == 0, "a failed batch must not advance the checkpoint"
    assert set(seen_limit) == set(RUNAWAYS), seen_limit  # GET showed the limit during the retries too

    # the healthy pipeline advanced throughout: its checkpoint never stood still for 3 s
    longest, since = 0.0, progress[0]
    for t, pos in progress[1:]:
        if pos > since[1]:
            since = (t, pos)
        longest = max(longest, t - since[0])
    assert progress[-1][1] > progress[0][1] + 500, progress
    assert longest < 3, f"healthy pipeline stood still for {longest:.1f}s: {progress}"
    out = read_jsonl(tmp_path / "tg-js-ok.jsonl")
    assert out and all(e["after"]["id"] % 2 == 0 for e in out)
    assert all(e["after"]["half"] * 2 == e["after"]["id"] for e in out)
    assert [e["after"]["seq"] for e in out[:5]] == [1, 2, 3, 4, 5]  # module state across batches
    assert sup.pid == sup_pid and sup.proc is not None and sup.proc.poll() is None

    # PATCH a fixed script: the failed pipeline resumes from its checkpoint, nothing dropped
    r = sup.client.patch(
        "/pipelines/tg-js-loop",
        headers=MERGE,
        json={"spec": {"processors": [js("spin", "export function process(batch) { return batch; }", timeout_ms=200)]}},
    )
    assert r.status_code == 200, r.text
    sup.wait_status("tg-js-loop", "running")
    sup.wait_position("tg-js-loop", "out", 300)
    ids = [e["after"]["id"] for e in read_jsonl(tmp_path / "tg-js-loop.jsonl")]
    assert ids[:300] == list(range(1, 301)), "events of the failed batches must be delivered after the fix"


def test_syntax_error_is_422_with_line_and_column(supervisor: Supervisor, tmp_path: Path) -> None:
    c = supervisor.client
    bad = "export function process(batch) {\n  return batch.map(e => {\n    e.x = ;\n  });\n}\n"
    doc = pipeline(
        "tg-js-syntax", tmp_path, [js("fine", "function process(b) { return b; }"), js("broken", bad)], rate=10
    )
    r = c.post("/pipelines", json=doc)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_spec"
    assert err["details"] == [
        {
            "path": "spec.processors[1].inline",
            "message": "processor 'broken': SyntaxError: unexpected token in expression: ';' at line 3, column 11",
        }
    ]
    assert c.get("/pipelines/tg-js-syntax").status_code == 404

    doc["spec"]["processors"][1] = js("broken", "function transform(b) { return b; }")
    r = c.post("/pipelines", json=doc)
    assert r.status_code == 422 and "no function process(batch) defined" in r.text, r.text

    doc["spec"]["processors"] = [js("fine", "function process(b) { return b; }")]
    supervisor.create(doc)
    r = c.patch(
        "/pipelines/tg-js-syntax",
        headers=MERGE,
        json={"spec": {"processors": [js("fine", "function process(b) {\n  return b\n}}\n")]}},
    )
    assert r.status_code == 422, r.text
    detail = r.json()["error"]["details"][0]
    assert detail["path"] == "spec.processors[0].inline" and "processor 'fine'" in detail["message"]
    assert "line 3" in detail["message"] and "column" in detail["message"]
