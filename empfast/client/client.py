"""The Client: one connection to a hub's client endpoint, its requests, and the watches that keep
each followed job's events (docs/protocol.md section 4.1)."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import weakref
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from empfast.client.jobs import (
    JobCancelledError,
    JobFailedError,
    JobHandle,
    JobSpec,
    NotRetryableError,
    SubmitManyError,
    Watch,
    When,
    as_spec,
    job_body,
    job_bytes,
    spec_arguments,
)
from empfast.connection import (
    Connection,
    ConnectionClosed,
    Disconnected,
    HubError,
    endpoint,
)
from empfast.errors import TRANSIENT_CODES
from empfast.ids import event_key, new_job_id
from empfast.limits import MAX_BATCH
from empfast.protocol import JOB_EVENT_TYPES

log = logging.getLogger("empfast.client")
_JOB_FIELD_RE = re.compile(r"^jobs\[(\d+)\]")


class Client:
    """A connection to a hub's client endpoint: `async with Client(url) as client:`, or `connect()`
    ... `close()`. `request_timeout_s` bounds each call, reconnect waits included (then TimeoutError);
    `connect_timeout_s` bounds `connect()`. `queue`: the hub's queue the connection is bound to (None:
    the default); `for_queue` gives a client of another, which `submit(queue=...)` uses."""

    def __init__(self, url: str, *, queue: str | None = None, token: str | None = None,
                 client_id: str | None = None, request_timeout_s: float = 30.0,
                 connect_timeout_s: float | None = 30.0, backoff_base_s: float = 0.1,
                 backoff_cap_s: float = 10.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.url, self.queue = url, queue
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._options: dict[str, Any] = dict(
            token=token, client_id=client_id, request_timeout_s=request_timeout_s, ssl_context=ssl_context,
            connect_timeout_s=connect_timeout_s, backoff_base_s=backoff_base_s, backoff_cap_s=backoff_cap_s)
        self._queues: dict[str, Client] = {}  # for_queue's clients, closed with this one
        self.connection = Connection(
            endpoint(url, "client", client_id, queue), on_push=self._on_push, on_connected=self._on_connected,
            backoff_base_s=backoff_base_s, backoff_cap_s=backoff_cap_s, token=token, ssl_context=ssl_context)
        # weak: a job nobody waits on, iterates or holds a handle of is forgotten (its events are
        # then dropped on arrival) instead of piling up in a long-lived client
        self._watches: weakref.WeakValueDictionary[str, Watch] = weakref.WeakValueDictionary()
        self._started = False
        self._ended: asyncio.Future[None] | None = None

    # ---- lifecycle -----------------------------------------------------------------------------

    async def connect(self) -> Client:
        """Connect to the hub; HubError `unauthorized` for a wrong token, TimeoutError when no hub
        answered within `connect_timeout_s`."""
        if self._started:
            return self
        self._started = True
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await self.connection.start()
        except TimeoutError:
            await self.close()
            raise TimeoutError(f"could not connect to the hub at {self.url} within "
                               f"{self.connect_timeout_s} s: is it running, and is the URL right?") from None
        except BaseException:
            await self.close()
            raise
        self._ended = asyncio.ensure_future(self.connection.wait_closed())
        self._ended.add_done_callback(self._on_connection_ended)
        return self

    def _on_connection_ended(self, _: asyncio.Future[None]) -> None:
        """The connection gave up (e.g. the hub refused our token on a reconnect) or was closed:
        waiters and requests would otherwise wait for events and a connection that never come."""
        reason = self.connection.fatal or ConnectionClosed("the client was closed")
        for watch in list(self._watches.values()):
            watch.fail(reason)

    async def close(self) -> None:
        """Close the connection (and for_queue's); waiters and iterators still running raise
        ConnectionClosed."""
        for other in self._queues.values():
            await other.close()
        await self.connection.close()
        for watch in list(self._watches.values()):
            watch.fail(ConnectionClosed("the client was closed"))

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def for_queue(self, queue: str) -> Client:
        """A client of another queue of the same hub, with this client's settings: a connection of
        its own (a connection is bound to one queue, docs/protocol.md section 2), made on first use
        and closed with this client. Its jobs, stats and listings are that queue's."""
        if queue == self.queue:
            return self
        other = self._queues.get(queue)
        if other is None:
            other = self._queues[queue] = Client(self.url, queue=queue, **self._options)
        return await other.connect()

    # ---- requests ------------------------------------------------------------------------------

    async def submit(self, job_type: str, payload: Any = None, *, priority: int = 0,
                     job_id: str | None = None, max_attempts: int = 3, delay_s: float = 0,
                     payload_json: bytes | str | None = None, queue: str | None = None,
                     timeout_s: float | None = None, run_at: When | None = None, ttl_s: float | None = None,
                     expires_at: When | None = None, group: str | None = None,
                     depends_on: Sequence[str] | None = None) -> JobHandle:
        """Add a job. `payload` is encoded once with orjson; `payload_json` (JSON text) is sent as is.
        `job_id` is an idempotency key: a job that exists already is left as it is (`created=False`); without
        one, a random id is made here, so a submit is repeated safely after a reconnect. `queue`: another
        queue of the hub (for_queue). `timeout_s` bounds each attempt (unset: the type's or queue's default);
        `run_at` replaces delay_s; `ttl_s` or `expires_at`: a job not started by then fails `expired` (epoch
        seconds or aware datetimes). `group`: its tenant (jobs go round-robin by group). `depends_on`:
        ids of the queue's jobs it waits for (`waiting`) until each has completed (protocol.md 4.1)."""
        spec = JobSpec(job_type, payload, priority, job_id, max_attempts, delay_s, payload_json,
                       timeout_s, run_at, ttl_s, expires_at, group, depends_on)
        if queue is not None and queue != self.queue:
            return await (await self.for_queue(queue)).submit(**spec_arguments(spec))
        job_id = job_id or new_job_id()
        body, raw = job_body(spec, job_id)
        message: dict[str, Any] = {"type": "submit_job", **body}
        # the watch exists before the frame leaves: the hub subscribes us before it adds the job,
        # so the job's first event may arrive before the reply
        watch = self._watches.get(job_id)
        fresh = watch is None
        if watch is None:
            watch = self._watches[job_id] = Watch(job_id)
        watch.submitting += 1
        watch.submits.append(message)
        try:
            reply = await self._call(message, None if raw is None else ("payload", raw))
        except BaseException:
            if fresh and not watch.events and self._watches.get(job_id) is watch:
                del self._watches[job_id]
            raise
        finally:
            watch.submitting -= 1
            watch.submits.remove(message)
        if reply.get("subscribed") is False and message.get("subscribe", True) and watch.live:
            # the hub is at this connection's subscription limit; ask again, so that waiting on
            # the handle reports the limit instead of waiting for events that never come
            self._start_subscription(watch)
        return JobHandle(self, watch, reply.get("status", "pending"), bool(reply.get("created", True)),
                         reply.get("position"))

    async def submit_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]], *,
                          batch_size: int = MAX_BATCH, queue: str | None = None) -> list[str]:
        """Add many jobs, `batch_size` (at most 1000) per request, one batch after another; returns
        their ids in order. Each batch is all or nothing: when the hub refuses one, SubmitManyError
        names the bad job's index in `jobs` and lists the ids of the batches added before it.
        The submitter is not subscribed to these jobs; `result(job_id)` and `events(job_id)`
        subscribe when asked (on the client of their queue: for_queue)."""
        if not 0 < batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH}, got {batch_size}")
        if queue is not None and queue != self.queue:
            return await (await self.for_queue(queue)).submit_many(jobs, batch_size=batch_size)
        specs = [as_spec(job, i) for i, job in enumerate(jobs)]
        ids = [spec.job_id or new_job_id() for spec in specs]
        encoded = [job_bytes(spec, job_id) for spec, job_id in zip(specs, ids, strict=True)]
        for start in range(0, len(encoded), batch_size):
            batch = b"[" + b",".join(encoded[start:start + batch_size]) + b"]"
            try:
                await self._call({"type": "submit_jobs", "subscribe": False}, ("jobs", batch))
            except HubError as exc:
                raise _batch_error(exc, start, len(encoded), ids) from None
        return ids

    async def status(self, job_id: str, *, payload: bool = False, logs: bool | int = False) -> dict[str, Any]:
        """The job's state (`status`, `progress`, `result`, `error`, `position` while pending, ...,
        its `payload` when asked for, and `logs`: True for its log lines, N for the newest N);
        HubError `not_found`."""
        message: dict[str, Any] = {"type": "get_job_status", "job_id": job_id}
        if payload:
            message["payload"] = True
        if logs:
            message["logs"] = logs
        return await self._call(message)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job: a waiting one at once, a running one through its worker. Returns its state
        after the cancel; a finished job is left unchanged."""
        return await self._call({"type": "cancel_job", "job_id": job_id})

    async def retry(self, job_id: str, attempts: int = 1) -> JobHandle:
        """Run a failed (dead-lettered) or cancelled job again, with `attempts` more attempts. The
        handle follows the new run (`result()`, `events()`). A job in any other state is left
        unchanged and NotRetryableError says its status; HubError `not_found` for an unknown id."""
        old = self._watches.get(job_id)
        # the new run's events are recorded from the first: the hub subscribes us before it acts
        watch = self._watches[job_id] = Watch(job_id)
        watch.submitting += 1
        try:
            # the retry id makes a re-send after a lost reply a repeat, not a refusal
            reply = await self._call({"type": "retry_job", "job_id": job_id, "attempts": attempts,
                                      "retry_id": new_job_id()})
        except BaseException:
            self._restore_watch(job_id, watch, old)
            raise
        finally:
            watch.submitting -= 1
        if not reply.get("retried"):
            self._restore_watch(job_id, watch, old)
            raise NotRetryableError(job_id, str(reply.get("status")))
        return JobHandle(self, watch, str(reply.get("status")), created=False)

    def _restore_watch(self, job_id: str, watch: Watch, old: Watch | None) -> None:
        if self._watches.get(job_id) is watch and not watch.events:
            if old is not None:
                self._watches[job_id] = old
            else:
                del self._watches[job_id]

    async def stats(self) -> dict[str, Any]:
        """The queue's counts: pending, scheduled, active, completed, failed, cancelled, by_type."""
        return await self._call({"type": "get_stats"})

    async def list_jobs(self, status: str, *, job_type: str | None = None, newest_first: bool = False,
                        limit: int = 50, cursor: str | None = None, payloads: bool = False) -> dict[str, Any]:
        """One page of the jobs of a status (docs/management.md): `rows` (payload and result
        decoded when asked for) and the `cursor` of the next page (None at the end). Needs a hub
        that lets this client see every job (not under client scope own)."""
        message: dict[str, Any] = {"type": "list_jobs", "status": status, "limit": limit,
                                   "order": "newest" if newest_first else "oldest", "payloads": payloads}
        if job_type is not None:
            message["job_type"] = job_type
        if cursor is not None:
            message["cursor"] = cursor
        return await self._call(message)

    async def iter_jobs(self, status: str, *, page_size: int = 100,
                        **options: Any) -> AsyncIterator[dict[str, Any]]:
        """Every job of a status, page after page (list_jobs' options), each row once."""
        cursor: str | None = None
        while True:
            page = await self.list_jobs(status, limit=page_size, cursor=cursor, **options)
            for row in page["rows"]:
                yield row
            cursor = page["cursor"]
            if cursor is None:
                return

    async def ping(self) -> None:
        await self._call({"type": "ping"})

    async def result(self, job_id: str, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Wait for the job's result, also for a job that finished before the call. Raises
        JobFailedError, JobCancelledError, HubError `not_found`, or TimeoutError after `timeout` s."""
        return await self._wait_result(job_id, timeout)

    def events(self, job_id: str, since: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """The job's events from now on (or after the event id `since`), each a dict with `type`
        (job_update, job_log, job_completed, job_failed, job_cancelled) and `event_id`. Ends after the final
        event. Without `since`, a finished job yields its final event at once. An event with
        `resumed: false` stands for events lost from the hub's bounded history."""
        return self._iterate(job_id, since)

    # ---- internals -----------------------------------------------------------------------------

    async def _call(self, message: dict[str, Any], raw: tuple[str, bytes] | None = None) -> dict[str, Any]:
        """A request, sent again while its outcome is unknown (dropped socket, hub unable to reach
        Redis). Every request of this client is safe to repeat. `raw`: a member given as JSON text."""
        if not self._started:
            raise ConnectionClosed("the client is not connected: use `async with Client(url)` "
                                   "or await client.connect() first")
        pause = 0.01
        try:
            async with asyncio.timeout(self.request_timeout_s):
                while True:
                    try:
                        reply = await self.connection.request(message, raw=raw, timeout_s=None)
                    except Disconnected as exc:
                        log.info("%s: %s; sending it again after reconnecting", message["type"], exc)
                    except HubError as exc:
                        if exc.code != "unavailable":
                            raise
                        log.warning("%s: %s; trying again in %.2f s", message["type"], exc, pause)
                    else:
                        reply.pop("req", None)
                        reply.pop("type", None)
                        return reply
                    # also yields to the loop, so a disconnect being processed can clear `ready`
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 1.0)
        except TimeoutError:
            if self.connection.fatal is not None:
                raise self.connection.fatal from None
            raise TimeoutError(f"no reply from the hub at {self.url} to {message['type']} within "
                               f"{self.request_timeout_s} s: check that the hub is running and reachable; "
                               "the request may or may not have been applied, and sending it again is "
                               "safe") from None

    def _subscribe_message(self, watch: Watch) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "subscribe_job", "job_id": watch.job_id}
        since = watch.last_id or watch.since
        if since:
            message["since"] = since
        return message

    async def _watch(self, job_id: str, since: str | None = None) -> Watch:
        """The job's watch, subscribed (HubError `not_found` for an unknown job)."""
        watch = self._watches.get(job_id)
        if watch is None:
            watch = self._watches[job_id] = Watch(job_id, since)
            self._start_subscription(watch)
        if watch.subscribing is not None:
            await asyncio.shield(watch.subscribing)
        elif watch.error is not None:
            raise watch.error
        return watch

    def _start_subscription(self, watch: Watch) -> None:
        task = asyncio.ensure_future(self._subscribe(watch))
        # consumed here too, so a subscription whose caller went away logs no "never retrieved"
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        watch.subscribing = task

    async def _subscribe(self, watch: Watch) -> None:
        try:
            await self._call(self._subscribe_message(watch))
        except BaseException as exc:
            watch.fail(exc)
            if self._watches.get(watch.job_id) is watch:
                del self._watches[watch.job_id]
            raise
        finally:
            watch.subscribing = None

    async def _wait_result(self, job: Watch | str, timeout_s: float | None) -> Any:
        job_id = job.job_id if isinstance(job, Watch) else job
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                watch = job if isinstance(job, Watch) else await self._watch(job)
                while watch.final is None:
                    if watch.error is not None:
                        raise watch.error
                    await watch.changed()
        except TimeoutError:
            if not deadline.expired():
                raise  # a request's own timeout, which says what went wrong
            raise TimeoutError(f"job {job_id!r} did not finish within {timeout_s} s; it goes on running: "
                               "wait again, or cancel it") from None
        final = watch.final
        kind = final["type"]
        if kind == "job_completed":
            return final.get("result")
        if kind == "job_cancelled":
            raise JobCancelledError(job_id)
        raise JobFailedError(job_id, final.get("error") or "", final.get("attempt"))

    async def _iterate(self, job: Watch | str, since: str | None) -> AsyncIterator[dict[str, Any]]:
        watch = job if isinstance(job, Watch) else await self._watch(job, since)
        floor = event_key(since)
        seen = 0
        while True:
            events = watch.events
            while seen < len(events):
                frame = events[seen]
                seen += 1
                key = event_key(frame.get("event_id")) if floor is not None else None
                if key is None or floor is None or key > floor:
                    yield frame
            if watch.final is not None:
                return
            if watch.error is not None:
                raise watch.error
            await watch.changed()

    def _on_push(self, frame: dict[str, Any], data: bytes) -> None:
        kind = frame.get("type")
        if kind in JOB_EVENT_TYPES:
            job_id = frame.get("job_id")
            watch = self._watches.get(job_id) if isinstance(job_id, str) else None
            if watch is not None and not watch.add(frame):
                log.debug("dropped a repeated %s of job %r (%s)", kind, watch.job_id, frame.get("event_id"))
        elif kind == "error":
            log.warning("the hub reported an error outside any request: %s: %s",
                        frame.get("code"), frame.get("error"))

    async def _on_connected(self) -> None:
        """Resubscribe every unfinished watched job, from the last event seen. Watches whose first
        subscribe is still in flight, and jobs being submitted whose events we have not seen (the
        job may not exist yet), are left to their own request, which is sent again by itself."""
        watches = [w for w in list(self._watches.values())
                   if w.live and w.subscribing is None and (w.submitting == 0 or w.last_id)]
        if not watches:
            return
        for watch in watches:
            for submit in watch.submits:
                # followed by the resubscribe: a submit that subscribed too would bring the final
                # state of a job that finished meanwhile a second time
                submit["subscribe"] = False
        log.info("resubscribing to %d jobs", len(watches))
        outcomes = await asyncio.gather(
            *(self.connection.request(self._subscribe_message(w), timeout_s=self.request_timeout_s,
                                      wait_connected=False) for w in watches),
            return_exceptions=True)
        retry: BaseException | None = None
        for watch, outcome in zip(watches, outcomes, strict=True):
            if isinstance(outcome, HubError) and outcome.code not in TRANSIENT_CODES:
                watch.fail(outcome)  # e.g. not_found: the job was removed by retention meanwhile
            elif isinstance(outcome, BaseException):
                retry = outcome
        if retry is not None:
            # the Connection reconnects (and calls this again) on these; anything else would stop
            # its reconnect loop for good
            if isinstance(retry, TimeoutError | Disconnected | HubError):
                raise retry
            raise Disconnected(f"resubscribing failed ({retry!r})")


def _batch_error(exc: HubError, start: int, total: int, ids: list[str]) -> SubmitManyError:
    """The hub's refusal of one batch, with the field renamed to the job's index in the whole list."""
    frame = dict(exc.frame)
    field = frame.get("field")
    if isinstance(field, str):
        match = _JOB_FIELD_RE.match(field)
        if match:
            frame["field"] = f"jobs[{start + int(match[1])}]{field[match.end():]}"
    frame["error"] = (f"{frame.get('error', '')} (in the batch from job {start}: nothing of that batch "
                      f"was added; the {start} jobs before it were, out of {total}; fix the job and "
                      "submit the rest again, repeating ids already added is safe)")
    return SubmitManyError(frame, ids[:start])
