"""Workers' records in Redis: registering, heartbeats, status, deregistering, and listing them. A
mixin of Store (store.py), which owns the scripts (lua/registerWorker-5.lua, heartbeat-2,
setWorkerStatus-5, deregisterWorker-12)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from empfast.errors import refusal
from empfast.store.records import Heartbeat, text

if TYPE_CHECKING:
    from redis import asyncio as aioredis

    from empfast.config import QueueSettings
    from empfast.keys import QueueKeys


class WorkerRecords:
    redis: aioredis.Redis
    keys: QueueKeys
    settings: QueueSettings
    if TYPE_CHECKING:
        async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any: ...

    async def register_worker(self, worker_id: str, job_types: Sequence[str], concurrency: int = 1,
                              *, hub_id: str = "", liveness_ms: int | None = None,
                              now: int | None = None) -> dict[str, int]:
        """Register (or re-register) a worker. Returns the jobs it still holds: job id -> attempt."""
        k = self.keys
        out = await self._run("registerWorker", (k.meta, k.workers, k.stats, k.events, k.worker_states), (
            k.prefix, "" if now is None else now, worker_id, orjson.dumps(list(job_types)),
            concurrency, liveness_ms or self.settings.liveness_ms, hub_id))
        held = out[1]
        return {text(held[i]): int(held[i + 1]) for i in range(0, len(held), 2)}

    async def heartbeat(self, worker_id: str, held: Mapping[str, int] | None = None, *,
                        lease_ms: int | None = None, now: int | None = None) -> Heartbeat:
        """Refresh the worker and extend its leases. `held` (job id -> attempt) is what the caller
        believes the worker holds: any of those it no longer holds is reported lost too, and a job
        active under the worker that `held` leaves out is not extended (lua/heartbeat-2.lua says
        why); without `held`, every job active under the worker is extended."""
        k = self.keys
        args: list[Any] = [k.prefix, "" if now is None else now, worker_id,
                           lease_ms or self.settings.lease_ms, 0 if held is None else 1]
        for job_id, attempt in (held or {}).items():
            args += (job_id, attempt)
        out = await self._run("heartbeat", (k.active, k.workers), args)
        if out[0] != b"OK":
            raise refusal(text(out[0]), worker_id=worker_id)
        return Heartbeat(int(out[1]), [text(x) for x in out[2]], [text(x) for x in out[3]])

    async def set_worker_status(self, worker_id: str, status: str, *,
                                now: int | None = None) -> str:
        """Set "draining" (no new jobs) or "idle" (take jobs again). Returns the status now."""
        k = self.keys
        out = await self._run("setWorkerStatus", (k.meta, k.workers, k.stats, k.events, k.worker_states), (
            k.prefix, "" if now is None else now, worker_id, status))
        if out[0] != b"OK":
            raise refusal(text(out[0]), worker_id=worker_id)
        return text(out[1])

    async def deregister_worker(self, worker_id: str, *, now: int | None = None) -> int:
        """Remove a worker; the jobs it held go back to pending. Returns how many."""
        k = self.keys
        out = await self._run(
            "deregisterWorker", (k.meta, k.active, k.workers, k.seq, k.failed, k.cancelled, k.worker_states,
                                 k.stats, k.events, k.deadlines, k.waiting, k.expiries),
            (k.prefix, "" if now is None else now, worker_id))
        if out[0] != b"OK":
            raise refusal(text(out[0]), worker_id=worker_id)
        return int(out[1])

    async def get_workers(self) -> list[dict[str, Any]]:
        """Every registered worker's record (few: one round trip for the ids, one for the records)."""
        k = self.keys
        ids = [text(w) for w in await self.redis.zrange(k.workers, 0, -1)]
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for worker_id in ids:
            pipe.hgetall(k.worker(worker_id))
            pipe.scard(k.worker_jobs(worker_id))
        raw = await pipe.execute()
        workers = []
        for worker_id, record, jobs in zip(ids, raw[::2], raw[1::2], strict=True):
            if not record:
                continue
            w = {text(a): text(b) for a, b in record.items()}
            workers.append({
                "worker_id": worker_id, "status": w.get("status", "idle"),
                "job_types": orjson.loads(w.get("job_types", "[]")),
                "concurrency": int(w.get("concurrency", 0)), "active_jobs": jobs,
                "hub": w.get("hub", ""), "last_seen": int(w.get("last_seen", 0)),
            })
        return workers
