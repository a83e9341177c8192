"""Prometheus metrics of one hub (GET /metrics on the HTTP side, docs/management.md section 4).

Counted where the work already happens, never on a job's path: the queue-wide numbers come from one
stats read per scrape (getStats, the counters the scripts keep in `{Q}:stats`, so they are the same
on every hub of a queue and survive a hub's restart); this hub's own connections and workers from
its registries, its frames and script calls from counters the hub and store keep anyway. Run and
wait times are read at scrape time too: the jobs completed since the last scrape (the newest
SAMPLE_PER_SCRAPE of them) from the completed set, each observed once. Each hub has a registry of its
own, so hubs in one process do not collide.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from empfast.ids import event_key

if TYPE_CHECKING:
    from empfast.hub.room import QueueRoom
    from empfast.hub.server import Hub
    from empfast.store import Stats

log = logging.getLogger("empfast.hub")

CONTENT_TYPE = CONTENT_TYPE_LATEST
STATS_TIMEOUT_S = 5.0  # a scrape whose stats read takes longer reports the store down
CURRENT_STATES = ("waiting", "pending", "scheduled", "active", "completed", "failed", "cancelled")
# the cumulative per-type counters of {Q}:stats that end a job, as `outcome`; `failed` is a job
# dead-lettered after its last attempt (a retried attempt is counted in retried, not here)
OUTCOMES = ("completed", "failed", "cancelled")
SAMPLE_PER_SCRAPE = 500  # completed jobs a scrape reads for the run and wait times (one page)
TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


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
        self._stats: dict[str, Stats] | None = None  # queue -> its stats of this scrape; None: failed
        self._collect_s = 0.0
        self._lag_s: dict[str, float] = {}  # queue -> how far this hub's reader of it is behind
        self.run_time = Histogram("empfast_job_duration_seconds", "how long completed jobs ran (their last "
                                  "attempt: started to finished), by type", ["queue", "type"],
                                  buckets=TIME_BUCKETS, registry=self.registry)
        self.wait_time = Histogram("empfast_job_wait_seconds", "how long completed jobs waited before their "
                                   "last attempt started (from added, or due), by type", ["queue", "type"],
                                   buckets=TIME_BUCKETS, registry=self.registry)
        # queue -> the newest completion observed: its finish time, and the ids finished in that ms
        self._seen: dict[str, tuple[int, set[str]]] = {}

    async def scrape(self) -> bytes:
        """The text exposition. When Redis does not answer, the queue-wide metrics are left out and
        `empfast_store_up` is 0; this hub's own are still there."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(STATS_TIMEOUT_S):
                stats: dict[str, Stats] = {}
                for room in list(self.hub.rooms.values()):
                    stats[room.name] = await room.store.stats()
                    await self._observe_completions(room)
                    self._lag_s[room.name] = await self._reader_lag_s(room)
                self._stats = stats
        except Exception as exc:  # the Redis client's errors, or the timeout
            log.warning("metrics: the stats read failed (%s); empfast_store_up is 0", exc)
            self._stats = None
            self._lag_s = {}
        self._collect_s = time.perf_counter() - started
        return generate_latest(self.registry)

    async def _observe_completions(self, room: QueueRoom) -> None:
        """The run and wait times of the jobs completed since the last scrape, newest first, at
        most SAMPLE_PER_SCRAPE (more in one interval: the newest of them, a sample)."""
        page = await room.store.list_jobs("completed", newest_first=True, limit=SAMPLE_PER_SCRAPE)
        queue = room.name
        seen_ms, seen_ids = self._seen.get(queue, (0, set()))
        newest_ms, newest_ids = seen_ms, set(seen_ids)
        for row in page.rows:
            finished, job_id = row["finished_at"] or 0, row["job_id"]
            if finished < seen_ms or (finished == seen_ms and job_id in seen_ids):
                break
            if finished > newest_ms:
                newest_ms, newest_ids = finished, set()
            if finished == newest_ms:
                newest_ids.add(job_id)
            started = row["started_at"]
            if started:
                self.run_time.labels(queue, row["job_type"]).observe(max(0, finished - started) / 1000)
                since = max(row["created_at"] or started, row["run_at"] or 0)
                self.wait_time.labels(queue, row["job_type"]).observe(max(0, started - since) / 1000)
        self._seen[queue] = (newest_ms, newest_ids)

    @staticmethod
    async def _reader_lag_s(room: QueueRoom) -> float:
        """How far this hub's events reader of a queue is behind the stream's newest entry, in the
        entries' own clock (0 when it has read it)."""
        newest = await room.store.newest_event_id()
        read = room.dispatch.last_event_id
        newest_key, read_key = event_key(newest), event_key(read)
        if newest_key is None or read_key is None or read_key >= newest_key:
            return 0.0
        return max(0, newest_key[0] - read_key[0]) / 1000

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("empfast_build_info", "the empfast version this hub runs (always 1)",
                                 labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        yield GaugeMetricFamily("empfast_store_up", "1 when this scrape's stats read from Redis answered",
                                value=0 if self._stats is None else 1)
        yield GaugeMetricFamily("empfast_collect_duration_seconds", "how long this scrape's stats read took",
                                value=self._collect_s)
        if self._stats is not None:
            yield from queue_metrics(self._stats)
        if self._lag_s:
            lag = GaugeMetricFamily("empfast_events_reader_lag_seconds", "how far this hub's events "
                                    "reader is behind the stream's newest entry", labels=["queue"])
            for queue, lag_s in sorted(self._lag_s.items()):
                lag.add_metric([queue], lag_s)
            yield lag
        yield from self.hub_metrics()

    def hub_metrics(self) -> Iterator[Metric]:
        """What this hub holds: its connections by role (SSE streams as `sse`) and its workers."""
        hub = self.hub
        rooms = sorted(hub.rooms.values(), key=lambda room: room.name)
        workers = GaugeMetricFamily("empfast_workers", "workers registered through this hub's connections",
                                    labels=["queue"])
        for room in rooms:
            workers.add_metric([room.name], len(room.workers))
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
        frames = CounterMetricFamily("empfast_frames", "WebSocket text frames this hub received (in) and "
                                     "sent (out)", labels=["direction"])
        frames.add_metric(["in"], hub.frames_in)
        frames.add_metric(["out"], hub.frames_out)
        yield frames
        yield SummaryMetricFamily("empfast_redis_script_call_seconds", "this hub's Lua script calls to "
                                  "Redis, round trip included (sum / count: the mean latency)",
                                  count_value=sum(room.store.script_calls for room in rooms),
                                  sum_value=sum(room.store.script_seconds for room in rooms))


def queue_metrics(stats_of: dict[str, Stats]) -> Iterator[Metric]:
    """The queue-wide numbers of one stats read of each queue: current counts, and the scripts'
    cumulative counters per job type (bounded by max_job_types)."""
    jobs = GaugeMetricFamily("empfast_jobs", "jobs of the queue by state now (completed, failed and "
                             "cancelled: the ones retention still keeps)", labels=["queue", "state"])
    for queue, stats in sorted(stats_of.items()):
        for state in CURRENT_STATES:
            jobs.add_metric([queue, state], getattr(stats, state))
    yield jobs
    by_type = GaugeMetricFamily("empfast_type_jobs", "waiting, pending, scheduled and active jobs by type "
                                "now",
                                labels=["queue", "type", "state"])
    finished = CounterMetricFamily("empfast_jobs_finished", "jobs that ended, by type and outcome "
                                   "(failed: dead-lettered after the last attempt)",
                                   labels=["queue", "type", "outcome"])
    enqueued = CounterMetricFamily("empfast_jobs_enqueued", "jobs added, by type", labels=["queue", "type"])
    retried = CounterMetricFamily("empfast_jobs_retried", "attempts retried after a failure, and jobs "
                                  "retried by hand, by type", labels=["queue", "type"])
    workers = GaugeMetricFamily("empfast_queue_workers", "workers registered with the queue (on every "
                                "hub), by state", labels=["queue", "state"])
    for queue, stats in sorted(stats_of.items()):
        for job_type, counts in sorted(stats.by_type.items()):
            for state in ("waiting", "pending", "scheduled", "active"):
                by_type.add_metric([queue, job_type, state], counts.get(state, 0))
            for outcome in OUTCOMES:
                finished.add_metric([queue, job_type, outcome], counts.get(outcome, 0))
            enqueued.add_metric([queue, job_type], counts.get("added", 0))
            retried.add_metric([queue, job_type], counts.get("retried", 0))
        for state, count in sorted(stats.workers.items()):
            workers.add_metric([queue, state], count)
    yield from (by_type, finished, enqueued, retried, workers)
