"""Prometheus metrics of one hub (GET /metrics on the HTTP side, docs/management.md section 4).

Counted where the work already happens, never on a job's path: the queue-wide numbers come from one
stats read per scrape (getStats, the counters the scripts keep in `{Q}:stats`, so they are the same
on every hub of a queue and survive a hub's restart); this hub's own connections and workers from
its registries. Each hub has a registry of its own, so hubs in one process do not collide.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from empfast.hub.server import Hub
    from empfast.store import Stats

log = logging.getLogger("empfast.hub")

CONTENT_TYPE = CONTENT_TYPE_LATEST
STATS_TIMEOUT_S = 5.0  # a scrape whose stats read takes longer reports the store down
CURRENT_STATES = ("pending", "scheduled", "active", "completed", "failed", "cancelled")
# the cumulative per-type counters of {Q}:stats that end a job, as `outcome`; `failed` is a job
# dead-lettered after its last attempt (a retried attempt is counted in retried, not here)
OUTCOMES = ("completed", "failed", "cancelled")


def _version() -> str:
    try:
        return version("empfast")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


class HubMetrics(Collector):
    """The collector of one hub. `scrape` reads the stats, then renders every metric from them."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.registry = CollectorRegistry(auto_describe=False)  # describing would read the stats
        self.registry.register(self)
        self.version = _version()
        self._stats: Stats | None = None
        self._collect_s = 0.0

    async def scrape(self) -> bytes:
        """The text exposition. When Redis does not answer, the queue-wide metrics are left out and
        `empfast_store_up` is 0; this hub's own are still there."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(STATS_TIMEOUT_S):
                self._stats = await self.hub.store.stats()
        except Exception as exc:  # the Redis client's errors, or the timeout
            log.warning("metrics: the stats read failed (%s); empfast_store_up is 0", exc)
            self._stats = None
        self._collect_s = time.perf_counter() - started
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        queue = self.hub.store.settings.name
        info = GaugeMetricFamily("empfast_build_info", "the empfast version this hub runs (always 1)",
                                 labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        yield GaugeMetricFamily("empfast_store_up", "1 when this scrape's stats read from Redis answered",
                                value=0 if self._stats is None else 1)
        yield GaugeMetricFamily("empfast_collect_duration_seconds", "how long this scrape's stats read took",
                                value=self._collect_s)
        if self._stats is not None:
            yield from queue_metrics(queue, self._stats)
        yield from self.hub_metrics(queue)

    def hub_metrics(self, queue: str) -> Iterator[Metric]:
        """What this hub holds: its connections by role (SSE streams as `sse`) and its workers."""
        hub = self.hub
        workers = GaugeMetricFamily("empfast_workers", "workers registered through this hub's connections",
                                    labels=["queue"])
        workers.add_metric([queue], len(hub.workers))
        yield workers
        roles = Counter({"client": 0, "worker": 0, "monitor": 0})
        roles.update(peer.role for peer in hub.peers)
        if hub.http is not None:
            roles["sse"] = len(hub.http.streams)
        connections = GaugeMetricFamily("empfast_connections", "open connections to this hub, by role",
                                        labels=["role"])
        for role, count in sorted(roles.items()):
            connections.add_metric([role], count)
        yield connections


def queue_metrics(queue: str, stats: Stats) -> Iterator[Metric]:
    """The queue-wide numbers of one stats read: current counts, and the scripts' cumulative
    counters per job type (bounded by max_job_types)."""
    jobs = GaugeMetricFamily("empfast_jobs", "jobs of the queue by state now (completed, failed and "
                             "cancelled: the ones retention still keeps)", labels=["queue", "state"])
    for state in CURRENT_STATES:
        jobs.add_metric([queue, state], getattr(stats, state))
    yield jobs
    by_type = GaugeMetricFamily("empfast_type_jobs", "pending and active jobs by type now",
                                labels=["queue", "type", "state"])
    finished = CounterMetricFamily("empfast_jobs_finished", "jobs that ended, by type and outcome "
                                   "(failed: dead-lettered after the last attempt)",
                                   labels=["queue", "type", "outcome"])
    enqueued = CounterMetricFamily("empfast_jobs_enqueued", "jobs added, by type", labels=["queue", "type"])
    retried = CounterMetricFamily("empfast_jobs_retried", "attempts retried after a failure, and jobs "
                                  "retried by hand, by type", labels=["queue", "type"])
    for job_type, counts in sorted(stats.by_type.items()):
        for state in ("pending", "active"):
            by_type.add_metric([queue, job_type, state], counts.get(state, 0))
        for outcome in OUTCOMES:
            finished.add_metric([queue, job_type, outcome], counts.get(outcome, 0))
        enqueued.add_metric([queue, job_type], counts.get("added", 0))
        retried.add_metric([queue, job_type], counts.get("retried", 0))
    yield from (by_type, finished, enqueued, retried)
    workers = GaugeMetricFamily("empfast_queue_workers", "workers registered with the queue (on every "
                                "hub), by state", labels=["queue", "state"])
    for state, count in sorted(stats.workers.items()):
        workers.add_metric([queue, state], count)
    yield workers
