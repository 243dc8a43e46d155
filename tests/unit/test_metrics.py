"""supervisor.metrics: histogram buckets from per-bucket counts, and the
collector over a real PipelineManager and SQLite store (no workers spawned)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from shared.protocol import BATCH_MS_BUCKETS, BATCH_SIZE_BUCKETS, Counters
from shared.spec.load import validate_document
from shared.states import Desired, Status
from shared.store.sqlite import SqliteStore
from supervisor import metrics
from supervisor.managed import Managed
from supervisor.manager import PipelineManager


def test_histogram_buckets_are_cumulative_and_end_at_inf() -> None:
    counts = [0] * (len(BATCH_SIZE_BUCKETS) + 1)
    counts[0], counts[2], counts[-1] = 2, 3, 1  # 2 batches of <=1, 3 of <=100, 1 above 50000
    b = metrics.histogram_buckets(counts, BATCH_SIZE_BUCKETS)
    assert b[0] == ("1.0", 2.0) and b[1] == ("10.0", 2.0) and b[2] == ("100.0", 5.0)
    assert b[-2] == ("50000.0", 5.0) and b[-1] == ("+Inf", 6.0)
    ms = metrics.histogram_buckets([1] * (len(BATCH_MS_BUCKETS) + 1), BATCH_MS_BUCKETS, divisor=1000.0)
    assert [le for le, _ in ms][:4] == ["0.001", "0.005", "0.01", "0.025"] and ms[-1] == ("+Inf", 13.0)
    # a short list (older worker) is padded, never crashes
    assert metrics.histogram_buckets([], BATCH_SIZE_BUCKETS)[-1] == ("+Inf", 0.0)


def test_collector_renders_every_family(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path)).open()
    try:
        mgr = PipelineManager(store, state_dir=str(tmp_path), log_format="json", log_level="error")
        spec = validate_document(
            {
                "metadata": {"name": "m1"},
                "spec": {
                    "source": {"type": "generator"},
                    "sinks": [{"type": "file", "config": {"id": "out", "path": str(tmp_path / "o.jsonl")}}],
                },
            }
        )
        m = Managed("m1", spec, Desired.RUNNING, status=Status.RUNNING, restarts=2)
        size_hist = [0] * (len(BATCH_SIZE_BUCKETS) + 1)
        size_hist[2] = 4
        m.base = Counters(
            events_in=300,
            events_out=290,
            batches=3,
            processor_ms=1500.0,
            processor_ms_by_id={"old": 1500.0},  # a processor an earlier spec had
            batch_events_sum=290,
            batch_ms_sum=60.0,
            sink_events={"out": 290},
            sink_error_count={"out": 1},
            batch_size_hist=size_hist,
        )
        m.cur = Counters(
            events_in=10,
            events_out=10,
            batches=1,
            batch_events_sum=10,
            rss_bytes=12345,
            lag_ms=40,
            batch_size_hist=[0] * (len(BATCH_SIZE_BUCKETS) + 1),
        )
        m.source = {"slot": "s", "retained_wal_bytes": 52428800, "slot_active": False, "errors": {}}
        mgr.pipelines.add(m)
        store.put_pipeline("m1", b"{}", "running")
        store.save_checkpoints("m1", {"out": "300"})
        text = metrics.render(metrics.build_registry(mgr)).decode()
    finally:
        store.close()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
    p = (("pipeline", "m1"),)
    assert samples[("tidegate_events_in_total", p)] == 310
    assert samples[("tidegate_events_out_total", p)] == 300
    assert samples[("tidegate_batches_total", p)] == 4
    assert samples[("tidegate_restarts_total", p)] == 2
    assert samples[("tidegate_processor_seconds_total", (("pipeline", "m1"), ("processor", "old")))] == 1.5
    assert ("tidegate_processor_seconds_total", p) not in samples, "per processor only: sum() is the total"
    assert samples[("tidegate_sink_errors_total", (("pipeline", "m1"), ("sink", "out")))] == 1
    assert samples[("tidegate_worker_rss_bytes", p)] == 12345
    assert samples[("tidegate_source_lag_seconds", p)] == 0.04
    assert samples[("tidegate_pipeline_status", (("pipeline", "m1"), ("status", "running")))] == 1
    assert samples[("tidegate_batch_size_events_count", p)] == 4
    assert samples[("tidegate_batch_size_events_sum", p)] == 300
    assert samples[("tidegate_batch_latency_seconds_sum", p)] == 0.06
    assert 0 <= samples[("tidegate_checkpoint_age_seconds", (("pipeline", "m1"), ("sink", "out")))] < 60
    assert samples[("tidegate_pipelines", ())] == 1
    assert samples[("tidegate_source_retained_wal_bytes", p)] == 52428800
    assert samples[("tidegate_source_slot_active", p)] == 0
    assert ("tidegate_source_binlog_behind_bytes", p) not in samples  # not a mysql source
    assert fams["tidegate_batch_size_events"].type == "histogram"


def test_processor_seconds_per_processor_id_across_worker_runs(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path)).open()
    try:
        mgr = PipelineManager(store, state_dir=str(tmp_path), log_format="json", log_level="error")
        js = "export function process(b) { return b; }"
        spec = validate_document(
            {
                "metadata": {"name": "two"},
                "spec": {
                    "source": {"type": "generator"},
                    "processors": [
                        {"type": "filter", "id": "keep", "ops": ["c"]},
                        {"type": "javascript", "id": "tag", "inline": js},
                        {"type": "mask", "id": "pii", "fields": ["after.email"]},
                    ],
                    "sinks": [{"type": "file", "config": {"id": "out", "path": str(tmp_path / "o.jsonl")}}],
                },
            }
        )
        m = Managed("two", spec, Desired.RUNNING, status=Status.RUNNING)
        m.base = Counters(processor_ms=1750.0, processor_ms_by_id={"keep": 250.0, "tag": 1500.0})  # a crashed run
        m.cur = Counters(processor_ms=1000.0, processor_ms_by_id={"keep": 100.0, "tag": 900.0})
        mgr.pipelines.add(m)
        store.put_pipeline("two", b"{}", "running")
        text = metrics.render(metrics.build_registry(mgr)).decode()
    finally:
        store.close()
    (fam,) = [f for f in text_string_to_metric_families(text) if f.name == "tidegate_processor_seconds"]
    assert fam.type == "counter"
    got = {s.labels["processor"]: s.value for s in fam.samples if s.name == "tidegate_processor_seconds_total"}
    assert got == {"keep": 0.35, "tag": 2.4, "pii": 0.0}, "a processor yet to run is there, at 0"
    assert all(s.labels["pipeline"] == "two" for s in fam.samples)
    assert sum(got.values()) == m.totals().processor_ms / 1000.0
