"""The hub's HTTP side (docs/management.md section 4): a second port in the hub's process and event
loop, served by Starlette on uvicorn. Health probes (/livez, /readyz) here; Prometheus metrics in
metrics.py; the REST routes, which map one-to-one on the protocol's messages, in rest.py; SSE
streams, fed by the hub's one events reader, in streams.py. Nothing here is on the WebSocket path:
an HTTP request costs the hub's connections no Redis call and no frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from empfast import decoding
from empfast import errors as e
from empfast import messages as m
from empfast.errors import EmpfastError, ProtocolError
from empfast.hub import openapi
from empfast.hub.conn import error_for
from empfast.hub.metrics import CONTENT_TYPE, HubMetrics
from empfast.hub.rest import (
    MONITOR,
    READ,
    HttpError,
    RestRoutes,
    check_same_site,
    error_answer,
    identify,
    query,
    read_body,
    refused,
    room_of,
    stream_peer,
    with_members,
)
from empfast.hub.streams import StreamPeer, Streams, sse_headers
from empfast.ids import MAX_EVENT_ID_PART
from empfast.protocol import EVENT_ID_RE

if TYPE_CHECKING:
    from empfast.hub.server import Hub

log = logging.getLogger("empfast.hub")

READY_TIMEOUT_S = 2.0  # a readiness probe that waits longer than this for Redis says so: not ready
STOP_TIMEOUT_S = 3  # uvicorn's graceful shutdown: open requests get this long, then are cut
START_TIMEOUT_S = 5.0


class HttpListenError(OSError):
    """The HTTP side cannot listen on its address (a port in use, an address not of this host)."""


class EmbeddedServer(uvicorn.Server):
    """uvicorn's server as a task in the hub's loop. It installs no signal handlers: SIGINT and
    SIGTERM stay with `empfast serve`, which stops the hub (and this with it); uvicorn's own would
    replace them and stop only the HTTP side."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response; bytes are sent as they are (a protocol frame with raw JSON spliced in)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(data, status, headers=headers, media_type="application/json")


def resume_point(request: Request, since: str | None) -> str | None:
    """Where a stream resumes: the Last-Event-ID header a reconnecting EventSource sends, else
    `?since=`; an event id "<ms>-<seq>", as subscribe_job's `since` (messages.py)."""
    since = request.headers.get("last-event-id") or since
    if since is None:
        return None
    if not EVENT_ID_RE.match(since) or any(int(part) > MAX_EVENT_ID_PART for part in since.split("-")):
        raise HttpError(400, e.BAD_MESSAGE, "Last-Event-ID (or since) must be an event id '<ms>-<seq>' of "
                        "a frame this stream sent", field="since")
    return since


class HttpSide:
    """The HTTP port of one hub: its Starlette app, and the uvicorn server that runs it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.metrics = HubMetrics(hub)
        self.streams = Streams(hub)
        self.rest = RestRoutes(hub)
        self.app = Starlette(routes=self.routes())
        self.server: EmbeddedServer | None = None
        self.task: asyncio.Task[None] | None = None
        self.socket: socket.socket | None = None

    def routes(self) -> list[BaseRoute]:
        rest = self.rest
        return [
            Route("/", self.dashboard, methods=["GET"]),
            Mount("/dashboard", StaticFiles(packages=[("empfast.hub", "dashboard")]), name="dashboard"),
            Route("/livez", self.livez, methods=["GET"]),
            Route("/healthz", self.livez, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/api/stats", rest.stats, methods=["GET"]),
            Route("/api/workers", rest.workers, methods=["GET"]),
            Route("/api/queues", rest.queues, methods=["GET"]),
            Route("/api/schedules", rest.schedules, methods=["GET"]),
            Route("/api/schedules/{name}", rest.schedule, methods=["PUT", "DELETE"]),
            Route("/api/schedules/{name}/pause", rest.schedule, methods=["POST"]),
            Route("/api/schedules/{name}/resume", rest.schedule, methods=["POST"]),
            Route("/api/jobs", rest.list_jobs, methods=["GET"]),
            Route("/api/jobs", rest.submit, methods=["POST"]),
            # a job id may hold "/" (`:path`); its events' route goes before the job's, which
            # would take ".../events" as part of the id
            Route("/api/jobs/{job_id:path}/events", self.job_events, methods=["GET"]),
            Route("/api/jobs/{job_id:path}/cancel", rest.cancel, methods=["POST"]),
            Route("/api/jobs/{job_id:path}/retry", rest.retry, methods=["POST"]),
            Route("/api/jobs/{job_id:path}", rest.job, methods=["GET"]),
            Route("/api/types/{job_type}/pause", rest.pause, methods=["POST"]),
            Route("/api/types/{job_type}/resume", rest.pause, methods=["POST"]),
            Route("/api/types/{job_type}/limits", rest.limits, methods=["GET"]),
            Route("/api/types/{job_type}/limits", rest.set_limits, methods=["PUT"]),
            Route("/api/bulk/retry", self.bulk, methods=["POST"]),
            Route("/api/bulk/remove", self.bulk, methods=["POST"]),
            Route("/api/info", self.info, methods=["GET"]),
            Route("/api/events", self.feed, methods=["GET"]),
        ]

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.hub.config.http_host or self.hub.config.host

    @property
    def port(self) -> int:
        assert self.socket is not None
        return int(self.socket.getsockname()[1])

    async def start(self) -> None:
        """Listen (bound here, so a port in use fails the hub's start, not a task later), then serve."""
        host, port = self.host, self.hub.config.http_port
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
            self.socket = socket.create_server((host, port), family=family)
        except OSError as exc:
            raise HttpListenError(exc.errno, f"the HTTP side cannot listen on {host}:{port} "
                                  f"({exc.strerror or exc}): choose another --http-port, or 0 to turn "
                                  "it off") from None
        self.socket.setblocking(False)
        cfg = self.hub.config
        config = uvicorn.Config(self.app, host=host, port=port, loop="none", lifespan="off", log_config=None,
                                log_level="warning", access_log=False, http="h11", ws="none",
                                server_header=False, timeout_graceful_shutdown=STOP_TIMEOUT_S,
                                ssl_certfile=cfg.tls_certfile, ssl_keyfile=cfg.tls_keyfile)
        self.server = EmbeddedServer(config)
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[self.socket]))
        async with asyncio.timeout(START_TIMEOUT_S):
            while not self.server.started:
                if self.task.done():  # uvicorn logs why; its exit is a SystemExit
                    raise HttpListenError(0, f"the HTTP side on {host}:{port} did not start")
                await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self.streams.end_all()  # an open SSE response would hold uvicorn's graceful shutdown
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await asyncio.wait([self.task], timeout=STOP_TIMEOUT_S + 2)
        if self.socket is not None:
            self.socket.close()

    # ---- health ------------------------------------------------------------------------------

    async def livez(self, request: Request) -> Response:
        """The process answers: an orchestrator restarts it when this fails. Nothing else is
        checked, so a Redis outage never gets a healthy hub restarted."""
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Whether this hub can serve now: Redis answers a PING, holds the scripts and the events
        reader runs; not while the hub stops. 503 names each check that failed."""
        checks = await self.readiness()
        ready = all(value == "ok" for value in checks.values())
        return json_response({"status": "ready" if ready else "not_ready", "checks": checks},
                             200 if ready else 503)

    async def prometheus(self, request: Request) -> Response:
        """Prometheus metrics (metrics.py). With tokens configured, a scrape needs a monitor (or
        admin) token: the type names in the labels are the queue's business."""
        try:
            identify(self.hub, request, MONITOR)
        except HttpError as exc:
            return exc.response()
        return Response(await self.metrics.scrape(), media_type=CONTENT_TYPE)

    # ---- SSE (streams.py) ---------------------------------------------------------------------

    async def feed(self, request: Request) -> Response:
        """GET /api/events: every job event and worker_status, as a monitor gets them, and stats
        every `interval_s` while they change (subscribe_stats); with `?type=A&type=B`, the job
        events of those types only, with `?jobs=off` none (set_job_feed), and with `?job=ID`
        (repeated) the events of those jobs besides (each a subscribe_job, without replay): what a
        dashboard's page shows, at no cost per job of the queue. Last-Event-ID (or ?since=) first
        replays the events after it."""
        try:
            role, identity = identify(self.hub, request, MONITOR)
            fields = query(request, {"interval_s": "interval_s", "since": "since", "type": "type",
                                     "jobs": "jobs", "job": "job"}, numbers=("interval_s",))
            since = resume_point(request, fields.pop("since", None))
            job_types, job_ids = request.query_params.getlist("type"), request.query_params.getlist("job")
            jobs = fields.pop("jobs", "on")
            if jobs not in ("on", "off"):
                raise HttpError(400, e.BAD_MESSAGE, "jobs must be on (every job event, the default) or off",
                                field="jobs")
            feed = decoding.decode(role, orjson.dumps({
                "type": "set_job_feed", "job_events": jobs == "on",
                **({"job_types": job_types} if job_types else {})}))
            followed = [decoding.decode(role, orjson.dumps({"type": "subscribe_job", "job_id": job_id}))
                        for job_id in job_ids[:self.hub.config.max_subscriptions]]
            fields.pop("type", None)
            fields.pop("job", None)
            assert isinstance(feed, m.SetJobFeed)
            message = decoding.decode(role, orjson.dumps({"type": "subscribe_stats", **fields}))
        except (HttpError, ProtocolError) as exc:
            return refused(exc)
        assert isinstance(message, m.SubscribeStats)
        try:
            peer = StreamPeer(self.hub, role, identity, room_of(self.hub, request))
        except HttpError as exc:
            return exc.response()
        try:
            await self.streams.job_feed(peer, message.interval_s, since, frozenset(feed.job_types or ()),
                                        on=feed.job_events)
            for subscribe in followed:  # a job that is gone, or not this token's, is left out
                with contextlib.suppress(EmpfastError):
                    await self.hub.handle(peer, subscribe)
        except Exception as exc:
            self.hub.detach(peer)
            return error_answer(error_for(exc, None, role))
        return self._stream(peer)

    async def job_events(self, request: Request) -> Response:
        """GET /api/jobs/{id}/events: subscribe_job, with Last-Event-ID (or ?since=) as `since`:
        the events after it (or the job's state when it is older than the stream keeps), then the
        live ones; the stream ends after the job's final event."""
        raw_path = request.scope.get("raw_path") or b""
        if not raw_path.partition(b"?")[0].endswith(b"/events"):
            # "/events" was the end of the job's id, its "/" sent as %2F: GET /api/jobs/{id} is meant
            request.scope["path_params"]["job_id"] += "/events"
            return await self.rest.job(request)
        job_id = request.path_params["job_id"]
        try:
            role, identity = identify(self.hub, request, READ)
            since = resume_point(request, query(request, {"since": "since"}).get("since"))
            message = decoding.decode(role, orjson.dumps({"type": "subscribe_job", "job_id": job_id,
                                                   **({"since": since} if since else {})}))
        except (HttpError, ProtocolError) as exc:
            return refused(exc)
        peer = await stream_peer(self.hub, request, role, identity, message)  # subscribed, the replay
        return peer if isinstance(peer, Response) else self._stream(peer, job_id)

    async def bulk(self, request: Request) -> Response:
        """POST /api/bulk/retry (retry_jobs) and /api/bulk/remove (remove_jobs), the body the
        message's fields: an SSE stream of its bulk_started, bulk_progress and bulk_done, which
        ends it. Closing the response stops the action, as closing a monitor's socket does."""
        kind = "retry_jobs" if request.url.path.endswith("/retry") else "remove_jobs"
        try:
            check_same_site(request)
            role, identity = identify(self.hub, request, MONITOR)
            query(request, {})
            body = (await read_body(request, 4096)).strip() or b"{}"
            message = decoding.decode(role, with_members(body, {"type": kind}))
        except (HttpError, ProtocolError) as exc:
            return refused(exc)
        peer = await stream_peer(self.hub, request, role, identity, message)  # bulk_started; then a task
        if isinstance(peer, Response):
            return peer
        return StreamingResponse(self.streams.events(peer, last_kind="bulk_done"),
                                 media_type="text/event-stream", headers=sse_headers())

    async def dashboard(self, request: Request) -> Response:
        """GET /: the dashboard's page (docs/management.md section 5); its script and style are
        under /dashboard/, and it asks for a token itself when the hub has tokens."""
        page = resources.files("empfast.hub").joinpath("dashboard", "index.html").read_bytes()
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache", "X-Frame-Options": "DENY"})

    async def info(self, request: Request) -> Response:
        """GET /api/info: what the dashboard shows in its header (the queue, this hub, the version),
        and every queue this hub serves."""
        try:
            identify(self.hub, request, READ)
            room = room_of(self.hub, request)
        except HttpError as exc:
            return exc.response()
        return json_response({"queue": room.name, "queues": sorted(self.hub.rooms),
                              "hub_id": self.hub.hub_id, "version": self.metrics.version})

    def _stream(self, peer: StreamPeer, job_id: str | None = None) -> StreamingResponse:
        return StreamingResponse(self.streams.events(peer, job_id), media_type="text/event-stream",
                                 headers=sse_headers())

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi.document(self.metrics.version))

    async def readiness(self) -> dict[str, str]:
        hub = self.hub
        if not hub.running:
            return {"hub": "stopping: it takes no new work"}
        checks = {"redis": "ok", "scripts": "ok", "events_reader": "ok"}
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                missing = await hub.store.unloaded_scripts()
            if missing:  # the next script call loads them again (the sweep's, within a second)
                checks["scripts"] = f"not loaded in Redis: {', '.join(missing)}"
        except TimeoutError:
            checks["redis"] = checks["scripts"] = f"no answer within {READY_TIMEOUT_S:g} s"
        except Exception as exc:  # the Redis client's errors: only the store names them
            checks["redis"] = checks["scripts"] = f"unreachable: {exc}"
        for room in list(hub.rooms.values()):
            if room.opened is not None and not room.opened.done():
                continue  # a queue opening on first use: its connections wait, the others are served
            dispatch = room.dispatch
            reader = dispatch.tasks[0] if dispatch.tasks else None  # Dispatcher.start's first task
            where = "" if len(hub.rooms) == 1 else f" (queue {room.name!r})"
            if reader is None or reader.done():
                checks["events_reader"] = "not running" + where
            elif dispatch.reader_interrupted:
                checks["events_reader"] = ("interrupted: its last read failed; it retries every second"
                                           + where)
        return checks
