"""/metrics of a real supervisor, parsed with prometheus-client's own parser:
counters move with traffic (generator -> JavaScript -> mask -> file, plus a best-effort
HTTP sink that cannot connect), histograms are well formed, gauges are there,
processor time is counted per processor, and a killed worker shows up as a restart
(counters keep their totals)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port, wait_until
from tests.support.supervisor import Supervisor, file_sink, generator_spec

NAME = "metrics-p"


def scrape(sup: Supervisor) -> dict[str, Any]:
    r = sup.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(fams: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float | None:
    fam = fams.get(family)
    if fam is None:
        return None
    for s in fam.samples:
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return None


def proc_s(fams: dict[str, Any], processor: str) -> float | None:
    fam = "tidegate_processor_seconds"
    return value(fams, fam, f"{fam}_total", pipeline=NAME, processor=processor)


def test_metrics_move_with_traffic(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens there: the best-effort sink fails and is counted
    spec = generator_spec(
        NAME,
        [
            file_sink("out", tmp_path / "out.jsonl"),
            {"type": "http", "config": {"id": "web", "url": f"http://127.0.0.1:{dead}/x", "required": False}},
        ],
        rate=2000,
        tx_size=5,
    )
    spec["spec"]["processors"] = [
        {
            "type": "javascript",
            "id": "tag",
            "inline": "export function process(b) { return b.map(e => ({...e, tagged: 1})); }",
        },
        {"type": "mask", "id": "hide", "fields": ["after.payload"], "action": "redact"},
    ]
    spec["spec"]["batch"] = {"max_events": 200, "max_ms": 20}
    with Supervisor(tmp_path) as sup:
        sup.create(spec)
        sup.wait_position(NAME, "out", 300)
        wait_until(
            lambda: (value(scrape(sup), "tidegate_events_out", "tidegate_events_out_total", pipeline=NAME) or 0) >= 300,
            timeout=20,
            message="events_out >= 300 in /metrics",
        )
        first = scrape(sup)
        sup.wait_position(
            NAME, "out", int(value(first, "tidegate_events_out", "tidegate_events_out_total", pipeline=NAME) or 0) + 500
        )
        wait_until(
            lambda: (
                (
                    value(scrape(sup), "tidegate_sink_errors", "tidegate_sink_errors_total", pipeline=NAME, sink="web")
                    or 0
                )
                >= 1
            ),
            timeout=20,
            message="sink errors for web",
        )
        # /metrics follows the workers' heartbeats, a little behind the stored checkpoints
        first_in = value(first, "tidegate_events_in", "tidegate_events_in_total", pipeline=NAME) or 0
        second = wait_until(
            lambda: (
                (m := scrape(sup))
                and (value(m, "tidegate_events_in", "tidegate_events_in_total", pipeline=NAME) or 0) > first_in
                and m
            ),
            timeout=20,
            message="a heartbeat since the first scrape",
        )

        # counters move
        for fam, sample in (
            ("tidegate_events_in", "tidegate_events_in_total"),
            ("tidegate_events_out", "tidegate_events_out_total"),
            ("tidegate_batches", "tidegate_batches_total"),
        ):
            a, b = value(first, fam, sample, pipeline=NAME), value(second, fam, sample, pipeline=NAME)
            assert a is not None and b is not None and b > a, (fam, a, b)
            assert first[fam].type == "counter"
        assert (
            value(second, "tidegate_sink_events", "tidegate_sink_events_total", pipeline=NAME, sink="out") or 0
        ) >= 800
        assert value(second, "tidegate_sink_errors", "tidegate_sink_errors_total", pipeline=NAME, sink="web")
        assert value(second, "tidegate_sink_errors", "tidegate_sink_errors_total", pipeline=NAME, sink="out") in (
            None,
            0.0,
        )

        # processor time: one series per processor (their sum is the pipeline's), each moving
        assert first["tidegate_processor_seconds"].type == "counter"
        for fams in (first, second):
            labels = [s.labels for s in fams["tidegate_processor_seconds"].samples]
            assert sorted(x["processor"] for x in labels if x["pipeline"] == NAME) == ["hide", "tag"], labels
        for pid in ("tag", "hide"):
            a, b = (proc_s(m, pid) for m in (first, second))
            assert a is not None and b is not None and b > a > 0, (pid, a, b)

        # histograms: cumulative buckets, +Inf == count == batches, sums that make sense
        batches = value(second, "tidegate_batches", "tidegate_batches_total", pipeline=NAME)
        for fam in ("tidegate_batch_size_events", "tidegate_batch_latency_seconds"):
            assert second[fam].type == "histogram"
            buckets = [
                (s.labels["le"], s.value)
                for s in second[fam].samples
                if s.name == f"{fam}_bucket" and s.labels["pipeline"] == NAME
            ]
            counts = [c for _, c in buckets]
            assert buckets[-1][0] == "+Inf" and counts == sorted(counts), buckets
            count = value(second, fam, f"{fam}_count", pipeline=NAME)
            assert counts[-1] == count and abs(count - (batches or 0)) <= 2, (fam, count, batches)
        size_sum = value(second, "tidegate_batch_size_events", "tidegate_batch_size_events_sum", pipeline=NAME)
        ev_out = value(second, "tidegate_events_out", "tidegate_events_out_total", pipeline=NAME)
        assert size_sum and ev_out and abs(size_sum - ev_out) <= 250, (size_sum, ev_out)
        # a batch closes at max_events (200, +4 to finish a 5-event tx): nothing above the 500 bucket
        size_le_500 = value(
            second, "tidegate_batch_size_events", "tidegate_batch_size_events_bucket", pipeline=NAME, le="500.0"
        )
        assert size_le_500 == value(
            second, "tidegate_batch_size_events", "tidegate_batch_size_events_count", pipeline=NAME
        )
        assert (
            value(second, "tidegate_batch_latency_seconds", "tidegate_batch_latency_seconds_sum", pipeline=NAME) or 0
        ) > 0

        # gauges
        assert value(second, "tidegate_pipeline_status", pipeline=NAME, status="running") == 1.0
        assert value(second, "tidegate_pipeline_status", pipeline=NAME, status="failed") == 0.0
        assert (value(second, "tidegate_worker_rss_bytes", pipeline=NAME) or 0) > 10 * 1024 * 1024
        assert value(second, "tidegate_source_lag_seconds", pipeline=NAME) is not None
        age = value(second, "tidegate_checkpoint_age_seconds", pipeline=NAME, sink="out")
        assert age is not None and 0 <= age < 30
        assert value(second, "tidegate_pipelines") == 1.0

        # a crash is a restart; counters keep their totals across worker runs
        last = scrape(sup)
        before = value(last, "tidegate_events_out", "tidegate_events_out_total", pipeline=NAME) or 0
        spent = {pid: proc_s(last, pid) or 0.0 for pid in ("tag", "hide")}
        os.kill(sup.worker_pid(NAME), signal.SIGKILL)
        wait_until(
            lambda: value(scrape(sup), "tidegate_restarts", "tidegate_restarts_total", pipeline=NAME) == 1,
            timeout=20,
            message="tidegate_restarts_total == 1",
        )
        sup.wait_status(NAME, "running", timeout=20)
        now = scrape(sup)
        after = value(now, "tidegate_events_out", "tidegate_events_out_total", pipeline=NAME) or 0
        assert after >= before
        for pid, s in spent.items():
            assert (proc_s(now, pid) or 0.0) >= s, (pid, s, proc_s(now, pid))
