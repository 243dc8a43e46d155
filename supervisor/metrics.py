"""Prometheus /metrics: a collector over the manager's view of every pipeline
(workers report counters through the control protocol; the collector reads
them at scrape time, so nothing is kept twice). Histograms are rebuilt from the
workers' per-bucket counts (`Counters.batch_size_hist` / `batch_ms_hist`).
Processor time is one series per processor (`tidegate_processor_seconds_total{pipeline,
processor}`): their sum is the pipeline's total, so no separate pipeline series is kept.
Imports: stdlib + prometheus-client + shared.protocol + shared.states + supervisor.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from shared.protocol import BATCH_MS_BUCKETS, BATCH_SIZE_BUCKETS
from shared.states import Status


class PipelineCollector(Collector):
    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Any]:
        labels = ["pipeline"]
        ev_in = CounterMetricFamily("tidegate_events_in", "Source events taken into batches", labels=labels)
        ev_out = CounterMetricFamily("tidegate_events_out", "Events of committed batches", labels=labels)
        batches = CounterMetricFamily("tidegate_batches", "Committed batches", labels=labels)
        restarts = CounterMetricFamily("tidegate_restarts", "Worker restarts after crashes", labels=labels)
        proc = CounterMetricFamily(
            "tidegate_processor_seconds", "Time spent in each processor", labels=["pipeline", "processor"]
        )
        sink_err = CounterMetricFamily("tidegate_sink_errors", "Failed sink deliveries", labels=["pipeline", "sink"])
        sink_ev = CounterMetricFamily("tidegate_sink_events", "Events delivered per sink", labels=["pipeline", "sink"])
        inflight = GaugeMetricFamily("tidegate_inflight_batches", "Batches between batcher and commit", labels=labels)
        lag = GaugeMetricFamily(
            "tidegate_source_lag_seconds", "Age of the last committed event at commit", labels=labels
        )
        rss = GaugeMetricFamily("tidegate_worker_rss_bytes", "Worker resident memory", labels=labels)
        status = GaugeMetricFamily(
            "tidegate_pipeline_status", "1 for the pipeline's current status", labels=["pipeline", "status"]
        )
        ck_age = GaugeMetricFamily(
            "tidegate_checkpoint_age_seconds", "Seconds since a sink checkpoint moved", labels=["pipeline", "sink"]
        )
        size_h = HistogramMetricFamily("tidegate_batch_size_events", "Events per committed batch", labels=labels)
        lat_h = HistogramMetricFamily(
            "tidegate_batch_latency_seconds", "From a batch's first event to its commit", labels=labels
        )
        pipes = GaugeMetricFamily("tidegate_pipelines", "Pipelines known to the supervisor")
        now = time.time()
        managed = list(self.manager.pipelines.values())
        pipes.add_metric([], len(managed))
        for m in managed:
            t = m.totals()
            n = [m.name]
            ev_in.add_metric(n, t.events_in)
            ev_out.add_metric(n, t.events_out)
            batches.add_metric(n, t.batches)
            restarts.add_metric(n, m.restarts)
            for pid, ms in processor_ms(m, t).items():
                proc.add_metric([m.name, pid], ms / 1000.0)
            inflight.add_metric(n, t.inflight)
            if t.lag_ms is not None:
                lag.add_metric(n, t.lag_ms / 1000.0)
            rss.add_metric(n, t.rss_bytes)
            for s in Status:
                status.add_metric([m.name, s.value], 1.0 if m.status == s else 0.0)
            for sid, c in t.sink_error_count.items():
                sink_err.add_metric([m.name, sid], c)
            for sid, c in t.sink_events.items():
                sink_ev.add_metric([m.name, sid], c)
            for sid, (_pos, at) in self.manager.store.checkpoints(m.name).items():
                ck_age.add_metric([m.name, sid], max(0.0, now - _parse_ts(at)))
            size_h.add_metric(n, histogram_buckets(t.batch_size_hist, BATCH_SIZE_BUCKETS), float(t.batch_events_sum))
            lat_h.add_metric(
                n, histogram_buckets(t.batch_ms_hist, BATCH_MS_BUCKETS, divisor=1000.0), t.batch_ms_sum / 1000.0
            )
        yield from (
            ev_in,
            ev_out,
            batches,
            restarts,
            proc,
            sink_err,
            sink_ev,
            inflight,
            lag,
            rss,
            status,
            ck_age,
            size_h,
            lat_h,
            pipes,
        )
        yield from source_health(managed)
        yield from sink_lag(managed)
        yield from dlq_families(self.manager, managed)
        yield from snapshot_families(self.manager, managed)


def processor_ms(m: Any, t: Any) -> dict[str, float]:
    """Milliseconds per processor id: every processor of the current spec (0 before its first
    batch), and those an earlier version of the spec had, with the time they took then."""
    out = {p.id: 0.0 for p in m.spec.spec.processors}
    for pid, ms in t.processor_ms_by_id.items():
        out[pid] = out.get(pid, 0.0) + ms
    return out


def source_health(managed: list[Any]) -> list[GaugeMetricFamily]:
    """What a source's database holds for it (`ops.source`, CONTRACT section 8), where reported."""
    wal = GaugeMetricFamily(
        "tidegate_source_retained_wal_bytes", "WAL the PostgreSQL slot retains on the server", labels=["pipeline"]
    )
    behind = GaugeMetricFamily(
        "tidegate_source_binlog_behind_bytes", "Binlog bytes from the reader to the server's end", labels=["pipeline"]
    )
    active = GaugeMetricFamily("tidegate_source_slot_active", "1 while the slot has a reader", labels=["pipeline"])
    for m in managed:
        src = m.source if isinstance(m.source, dict) else {}
        if isinstance(src.get("retained_wal_bytes"), int):
            wal.add_metric([m.name], src["retained_wal_bytes"])
        if isinstance(src.get("behind_bytes"), int):
            behind.add_metric([m.name], src["behind_bytes"])
        if isinstance(src.get("slot_active"), bool):
            active.add_metric([m.name], 1.0 if src["slot_active"] else 0.0)
    return [wal, behind, active]


def sink_lag(managed: list[Any]) -> list[GaugeMetricFamily]:
    """Each sink's distance behind the source (`ops.sink_lag`): events read and not
    acknowledged, and the source age of the oldest of them."""
    labels = ["pipeline", "sink"]
    events = GaugeMetricFamily("tidegate_sink_lag_events", "Events read, not acknowledged by the sink", labels=labels)
    secs = GaugeMetricFamily("tidegate_sink_lag_seconds", "Source age of the oldest event it lacks", labels=labels)
    for m in managed:
        for sid, lag in m.sink_lag().items():
            events.add_metric([m.name, sid], lag["events"])
            secs.add_metric([m.name, sid], lag["ms"] / 1000.0)
    return [events, secs]


def dlq_families(manager: Any, managed: list[Any]) -> Iterator[Any]:
    """`tidegate_dlq_events{pipeline,stage}` (entries in the DLQ now, from the state store) and
    `tidegate_dlq_parked_total{pipeline,stage}` (events parked, as the workers counted them)."""
    labels = ["pipeline", "stage"]
    events = GaugeMetricFamily("tidegate_dlq_events", "Entries in the dead-letter queue", labels=labels)
    parked = CounterMetricFamily("tidegate_dlq_parked", "Events parked in the dead-letter queue", labels=labels)
    for m in managed:
        for stage, n in manager.store.dlq_counts(m.name).items():
            events.add_metric([m.name, stage], n)
        for stage, n in m.totals().dlq_parked.items():
            parked.add_metric([m.name, stage], n)
    yield from (events, parked)


SNAPSHOT_STATES = ("running", "paused", "done", "cancelled", "failed")


def snapshot_families(manager: Any, managed: list[Any]) -> Iterator[Any]:
    """Incremental snapshots (CONTRACT 13, as `GET .../snapshots` shows them): rows read and the
    estimate per snapshot, and how many of a pipeline's snapshots are in each status."""
    labels = ["pipeline", "snapshot"]
    rows = GaugeMetricFamily("tidegate_snapshot_rows_read", "Rows a snapshot has read and committed", labels=labels)
    est = GaugeMetricFamily("tidegate_snapshot_rows_total_estimate", "Rows of a snapshot's tables", labels=labels)
    states = GaugeMetricFamily("tidegate_snapshots", "Snapshots by status", labels=["pipeline", "status"])
    for m in managed:
        count = dict.fromkeys(SNAPSHOT_STATES, 0)
        for snap in manager.snapshots(m.name):
            rows.add_metric([m.name, snap["id"]], snap.get("rows_read") or 0)
            est.add_metric([m.name, snap["id"]], snap.get("rows_total_estimate") or 0)
            count[snap["status"]] = count.get(snap["status"], 0) + 1
        if any(count.values()):
            for status, n in count.items():
                states.add_metric([m.name, status], n)
    yield from (rows, est, states)


def histogram_buckets(counts: list[int], bounds: tuple[float, ...], divisor: float = 1.0) -> list[tuple[str, float]]:
    """Per-bucket counts (last slot: above every bound) -> cumulative (le, count) pairs ending at +Inf."""
    out: list[tuple[str, float]] = []
    total = 0
    padded = list(counts) + [0] * (len(bounds) + 1 - len(counts))
    for bound, c in zip(bounds, padded):
        total += c
        out.append((repr(float(bound) / divisor), float(total)))
    total += sum(padded[len(bounds) :])
    out.append(("+Inf", float(total)))
    return out


def _parse_ts(s: str) -> float:
    """The store's `2026-11-29T03:00:00.12Z` (any fraction, or none) as epoch seconds."""
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def build_registry(manager: Any) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PipelineCollector(manager))
    return reg


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
