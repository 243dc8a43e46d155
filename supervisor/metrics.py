"""Prometheus /metrics: a collector over the manager's view of every pipeline
(workers report counters through the control protocol). Imports: stdlib +
prometheus-client + supervisor.
"""
from __future__ import annotations

import time
from typing import Any, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client import generate_latest

STATUSES = ("starting", "running", "paused", "stopping", "stopped", "failed")


class PipelineCollector(Collector):
    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Any]:
        labels = ["pipeline"]
        ev_in = CounterMetricFamily("tidegate_events_in", "Source events taken into batches", labels=labels)
        ev_out = CounterMetricFamily("tidegate_events_out", "Events of committed batches", labels=labels)
        batches = CounterMetricFamily("tidegate_batches", "Committed batches", labels=labels)
        restarts = CounterMetricFamily("tidegate_restarts", "Worker restarts after crashes", labels=labels)
        proc = CounterMetricFamily("tidegate_processor_seconds", "Time spent in processors", labels=labels)
        sink_err = CounterMetricFamily("tidegate_sink_errors", "Failed sink deliveries", labels=["pipeline", "sink"])
        sink_ev = CounterMetricFamily("tidegate_sink_events", "Events delivered per sink", labels=["pipeline", "sink"])
        inflight = GaugeMetricFamily("tidegate_inflight_batches", "Batches between batcher and commit", labels=labels)
        lag = GaugeMetricFamily("tidegate_source_lag_seconds", "Age of the last committed event at commit",
                                labels=labels)
        rss = GaugeMetricFamily("tidegate_worker_rss_bytes", "Worker resident memory", labels=labels)
        status = GaugeMetricFamily("tidegate_pipeline_status", "1 for the pipeline's current status",
                                   labels=["pipeline", "status"])
        ck_age = GaugeMetricFamily("tidegate_checkpoint_age_seconds", "Seconds since a sink checkpoint moved",
                                   labels=["pipeline", "sink"])
        now = time.time()
        for m in list(self.manager.pipelines.values()):
            t = m.totals()
            n = [m.name]
            ev_in.add_metric(n, t.events_in)
            ev_out.add_metric(n, t.events_out)
            batches.add_metric(n, t.batches)
            restarts.add_metric(n, m.restarts)
            proc.add_metric(n, t.processor_ms / 1000.0)
            inflight.add_metric(n, t.inflight)
            if t.lag_ms is not None:
                lag.add_metric(n, t.lag_ms / 1000.0)
            rss.add_metric(n, t.rss_bytes)
            for s in STATUSES:
                status.add_metric([m.name, s], 1.0 if m.status.value == s else 0.0)
            for sid, c in t.sink_error_count.items():
                sink_err.add_metric([m.name, sid], c)
            for sid, c in t.sink_events.items():
                sink_ev.add_metric([m.name, sid], c)
            for sid, (_pos, at) in self.manager.store.checkpoints(m.name).items():
                ck_age.add_metric([m.name, sid], max(0.0, now - _parse_ts(at)))
        yield from (ev_in, ev_out, batches, restarts, proc, sink_err, sink_ev, inflight, lag, rss, status, ck_age)


def _parse_ts(s: str) -> float:
    import datetime as dt
    try:
        return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        return time.time()


def build_registry(manager: Any) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PipelineCollector(manager))
    return reg


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
