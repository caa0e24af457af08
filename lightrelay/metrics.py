"""Prometheus metrics: one registry per app, fed from the one place every call ends.

``Metrics.observe(row)`` takes the usage row the relay records for each call
(``UsageRecorder`` calls it), so the pipeline pays a few label look-ups per call
and nothing else. ``render()`` is the ``/metrics`` body.

Several workers behind one port (``serve --workers N``): the CLI points
prometheus-client's multiprocess mode at a fresh directory
(``PROMETHEUS_MULTIPROC_DIR``); each worker writes its values there and any
worker's ``/metrics`` answers with the sum over all of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
CONTENT_TYPE = CONTENT_TYPE_LATEST
MAX_SERIES_CACHED = 4096  # label sets whose series observe() keeps at hand (the cache starts over past it)


class Metrics:
    def __init__(self, *, multiproc_dir: str | None = None) -> None:
        self._multiproc_dir = multiproc_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        labels = ("model", "channel", "door")
        self.calls = Counter("lightrelay_calls", "Chat calls that reached the pipeline, by outcome status",
                             (*labels, "status"), registry=r)
        self.errors = Counter("lightrelay_call_errors", "Chat calls that ended with status >= 400",
                              (*labels, "status"), registry=r)
        self.latency = Histogram("lightrelay_call_seconds", "Total time of a chat call", labels,
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.first_byte = Histogram("lightrelay_first_byte_seconds", "Time to the first reply byte of a stream",
                                    labels, buckets=LATENCY_BUCKETS, registry=r)
        self.local_queue = Gauge("lightrelay_local_queue_depth", "Calls waiting for the built-in local model",
                                 registry=r, multiprocess_mode="livesum")
        self.backend_up = Gauge("lightrelay_counter_backend_up",
                                "1 when the daily-count backend answers (redis or sql), else 0", ("backend",),
                                registry=r, multiprocess_mode="livemin")
        self.usage_rows = Counter("lightrelay_usage_rows_written", "Usage rows written to the database",
                                  registry=r)
        self.usage_writes = Counter("lightrelay_usage_writes",
                                    "Database write transactions made by the usage recorder", registry=r)
        self.usage_pending = Gauge("lightrelay_usage_rows_pending", "Usage rows queued, not yet written",
                                   registry=r, multiprocess_mode="livesum")
        self.queue_depth: Callable[[], int] = lambda: 0  # set by the app: the local model's queue
        self._series: dict[tuple[str, str, str, int], tuple[Any, Any, Any]] = {}

    def observe(self, row: dict[str, Any]) -> None:
        """One finished call (a usage row as ``Relay._record`` builds it)."""
        key = (row["model"], row["channel"] or "", row["door"], row["status"])
        series = self._series.get(key)
        if series is None:
            series = self._series_for(key)
        series[0].inc()
        if series[1] is not None:
            series[1].inc()
        series[2].observe(row["total_ms"] / 1000)
        if row.get("first_byte_ms") is not None:
            self.first_byte.labels(*key[:3]).observe(row["first_byte_ms"] / 1000)

    def _series_for(self, key: tuple[str, str, str, int]) -> tuple[Any, Any, Any]:
        """The labelled series of one (model, channel, door, status), looked up once: ``labels()`` checks
        and locks on every call, which cost more than the counting itself."""
        model, channel, door, status = key
        if len(self._series) >= MAX_SERIES_CACHED:
            self._series.clear()
        series = self._series[key] = (
            self.calls.labels(model, channel, door, str(status)),
            self.errors.labels(model, channel, door, str(status)) if status >= 400 else None,
            self.latency.labels(model, channel, door))
        return series

    def wrote_usage(self, rows: int, pending: int) -> None:
        self.usage_rows.inc(rows)
        self.usage_writes.inc()
        self.usage_pending.set(pending)

    def render(self) -> bytes:
        self.local_queue.set(self.queue_depth())
        if not self._multiproc_dir:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self._multiproc_dir)
        return generate_latest(merged)

    def close(self) -> None:
        """A worker stopping: its live gauges leave the multiprocess sums."""
        if self._multiproc_dir:
            multiprocess.mark_process_dead(os.getpid(), self._multiproc_dir)
