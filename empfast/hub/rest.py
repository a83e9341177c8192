"""The REST routes of the HTTP side (docs/management.md section 4), one-to-one on the protocol's
messages: each request becomes the message it stands for, decoded and validated by messages.py as a
frame is, and handled by the hub's own handler (clients.py, monitors.py) for a `RequestPeer` of the
role the token opens. So validation, visibility (client scope own) and the store calls are the
WebSocket side's, and the answer is the reply frame (payloads and results spliced in raw), with an
HTTP status for its error code.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from empfast import decoding
from empfast import errors as e
from empfast import messages as m
from empfast.errors import ProtocolError
from empfast.hub import frames
from empfast.hub.auth import ROLES, Identity
from empfast.hub.conn import error_for
from empfast.hub.streams import RequestPeer, StreamPeer
from empfast.store import TypeLimit

if TYPE_CHECKING:
    from empfast.hub.room import QueueRoom
    from empfast.hub.server import Hub

# the HTTP status of each error code of the protocol (docs/protocol.md section 3)
STATUS_OF_CODE = {e.BAD_JSON: 400, e.BAD_MESSAGE: 400, e.UNKNOWN_TYPE: 400, e.UNAUTHORIZED: 401,
                  e.FORBIDDEN: 403, e.NOT_FOUND: 404, e.TOO_LARGE: 413, e.LIMIT_EXCEEDED: 400,
                  e.UNAVAILABLE: 503, e.INTERNAL: 500}
# the roles whose token a route takes, the first that the token opens is used: reading is a
# monitor's (or a client's, whose scope own then applies); acting on jobs is a client's, as on the
# WebSocket side, so a monitor (viewer) token gets 403 on every route that changes something
READ = ("monitor", "client")
ACT = ("client",)
MONITOR = ("monitor",)
TRUE_FALSE = {"true": True, "1": True, "false": False, "0": False}
MAX_WAIT_S = 300  # POST /api/jobs?wait_s=: the longest an HTTP request waits for its job
CONFLICT = 409


class HttpError(Exception):
    """A request refused before it reached a handler: answered with an error frame and `status`."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return answer(frames.error(self.code, self.message, **self.extra), self.status, headers)


def answer(data: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(data, status, headers=headers, media_type="application/json")


def error_answer(frame: bytes) -> Response:
    """An error frame of a handler, with the HTTP status of its code."""
    parsed = orjson.loads(frame)
    status = STATUS_OF_CODE.get(parsed["code"], 500)
    if parsed["code"] == e.LIMIT_EXCEEDED and parsed.get("field") == "payload":
        status = 413
    return answer(frame, status)


def refused(exc: HttpError | ProtocolError) -> Response:
    """The answer to a request refused before a handler ran: its token, a parameter, the message."""
    if isinstance(exc, HttpError):
        return exc.response()
    return error_answer(frames.error(exc.code, exc.message, **exc.extra))


def room_of(hub: Hub, request: Request) -> QueueRoom:
    """The queue a request names with ?queue= (every /api route takes it), else the default one.
    The HTTP side serves the queues the hub serves; it opens none (a WebSocket connection may)."""
    name = request.query_params.get("queue")
    if name is None:
        return hub.default_room
    room = hub.rooms.get(name)
    if room is None:
        raise HttpError(404, e.NOT_FOUND, f"queue {name!r} is not served by this hub (it serves "
                        f"{', '.join(sorted(hub.rooms))}): name one of them", field="queue")
    return room


async def stream_peer(hub: Hub, request: Request, role: str, identity: Identity,
                      message: m.AnyMessage) -> StreamPeer | Response:
    """A StreamPeer of the request's queue that has handled `message` (what the handler sent waits
    in its queue), or the error answer when the handler refused."""
    try:
        peer = StreamPeer(hub, role, identity, room_of(hub, request))
    except HttpError as exc:
        return exc.response()
    try:
        await hub.handle(peer, message)
    except Exception as exc:
        hub.detach(peer)
        return error_answer(error_for(exc, None, role))
    return peer


def check_same_site(request: Request) -> None:
    """A route that changes something refuses a browser's cross-site request: with auth off (or a
    token a page could guess), any web page its operator opens could otherwise POST to the hub on
    localhost. Browsers say where a request comes from (Sec-Fetch-Site, Origin); curl, the SDKs and
    other programs send neither, and pass."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if (site is not None and site not in ("same-origin", "none")) or (
            origin is not None and origin.split("://", 1)[-1] != host):
        raise HttpError(403, e.FORBIDDEN, "a cross-site request may not change jobs: send it from the "
                        "hub's own origin, or without a browser")


def identify(hub: Hub, request: Request, roles: tuple[str, ...]) -> tuple[str, Identity]:
    """The role (of `roles`) and identity the request's bearer token opens. 401 without a token
    of this hub; 403 for one that opens none of these roles."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    for role in roles:
        identity = hub.auth.identify(token, role)
        if identity is not None:
            return role, identity
    if token and any(hub.auth.identify(token, role) is not None for role in ROLES):
        raise HttpError(403, e.FORBIDDEN, f"this token does not open the {' or '.join(roles)} role this "
                        "route needs (reading takes a monitor token, acting on jobs a client token; an "
                        "admin token opens both)")
    raise HttpError(401, e.UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer TOKEN' "
                    "with a monitor or admin token (a client token to act on jobs)")


async def ask(hub: Hub, request: Request, roles: tuple[str, ...], message: dict[str, Any] | bytes,
              ok_status: int = 200, *, changes: bool = False) -> Response:
    """Handle one protocol message for this request and answer with the handler's reply.
    `changes`: a monitor's message that changes jobs (pausing), refused cross-site as ACT's are."""
    try:
        if roles is ACT or changes:
            check_same_site(request)
        role, identity = identify(hub, request, roles)
        decoded = decoding.decode(role, message if isinstance(message, bytes) else orjson.dumps(message))
        room = room_of(hub, request)
    except (HttpError, ProtocolError) as exc:
        return refused(exc)
    peer = RequestPeer(hub, role, identity, room)
    try:
        changed = await hub.handle(peer, decoded)
    except Exception as exc:
        return error_answer(error_for(exc, None, role))
    finally:
        peer.forget_subscriptions()
    # a handler's reply is the last it sends: a retry subscribes the request before its store call,
    # so the job's new event may come first (and goes no further)
    reply = peer.sent[-1]
    if reply.startswith(b'{"type":"error"'):
        return error_answer(reply)
    # a cancel of a finished job, a retry of one that is not failed or cancelled: the same reply,
    # as 409 Conflict, so a caller that looks at the status alone sees that nothing changed
    return answer(reply, CONFLICT if changed is False else ok_status)


def query(request: Request, names: dict[str, str], numbers: tuple[str, ...] = (),
          flags: tuple[str, ...] = ()) -> dict[str, Any]:
    """The query's parameters as message fields (`names`: parameter -> field). Numbers and flags
    are converted when they can be; when not, the text goes on and the message's decoder names the
    field. An unknown parameter is refused, so a typo does not go unnoticed; `queue` is every
    route's (room_of)."""
    fields: dict[str, Any] = {}
    for name, value in request.query_params.multi_items():
        if name == "queue":
            continue
        if name not in names:
            raise HttpError(400, e.BAD_MESSAGE, f"unknown query parameter {name!r}; this route takes "
                            f"{', '.join(sorted(names)) or 'none'}", field=name)
        if name in flags and value.lower() in ("true", "false"):
            fields[names[name]] = value.lower() == "true"
        elif name in numbers:  # a parameter that is both (logs): a number unless true or false
            fields[names[name]] = number(value)
        elif name in flags:
            fields[names[name]] = TRUE_FALSE.get(value.lower(), value)
        else:
            fields[names[name]] = value
    return fields


def number(text: str) -> int | float | str:
    """A query parameter as the number it spells, else the text (for the decoder to refuse)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, read no further than `limit` bytes (the hub's frame limit)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HttpError(413, e.TOO_LARGE, f"the body is {declared} bytes, over the limit of {limit} "
                        "(max_frame_bytes)", limit=limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, e.TOO_LARGE, f"the body is over the limit of {limit} bytes "
                            "(max_frame_bytes)", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def with_members(body: bytes, members: dict[str, Any]) -> bytes:
    """A JSON object body with `members` added at its end (so they win over the same names in the
    body), without parsing it: a submitted payload reaches the store as the exact text it was sent
    as, as over the WebSocket."""
    body = body.strip()
    if not (body.startswith(b"{") and body.endswith(b"}")):
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, e.BAD_JSON, f"the body is not valid JSON ({exc})") from None
        raise HttpError(400, e.BAD_MESSAGE, "the body must be a JSON object (see docs/protocol.md 4.1)",
                        field="")
    inner = body[1:-1].strip()
    return b"{" + (inner + b"," if inner else b"") + orjson.dumps(members)[1:]


class RestRoutes:
    """The handlers of the REST routes of one hub (the table is in http.py, the description in
    openapi.py)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def stats(self, request: Request) -> Response:
        return await self._ask(request, READ, {"type": "get_stats"}, {})

    async def workers(self, request: Request) -> Response:
        return await self._ask(request, MONITOR, {"type": "get_workers"}, {})

    async def queues(self, request: Request) -> Response:
        return await self._ask(request, MONITOR, {"type": "get_queues"}, {})

    async def schedules(self, request: Request) -> Response:
        return await self._ask(request, MONITOR, {"type": "list_schedules"}, {})

    async def schedule(self, request: Request) -> Response:
        """PUT /api/schedules/{name} (set_schedule: the body is its members), POST
        .../pause and .../resume, DELETE (remove_schedule): a monitor's, refused cross-site."""
        name = request.path_params["name"]
        try:
            query(request, {})
            if request.method == "PUT":
                body = await read_body(request, self.hub.config.max_frame_bytes)
                message: bytes | dict[str, Any] = with_members(body, {"type": "set_schedule", "name": name})
            elif request.method == "DELETE":
                message = {"type": "remove_schedule", "name": name}
            else:
                kind = "pause" if request.url.path.endswith("/pause") else "resume"
                message = {"type": f"{kind}_schedule", "name": name}
        except HttpError as exc:
            return exc.response()
        return await ask(self.hub, request, MONITOR, message, changes=True)

    async def list_jobs(self, request: Request) -> Response:
        names = {"status": "status", "type": "job_type", "order": "order", "limit": "limit",
                 "cursor": "cursor", "payloads": "payloads"}
        return await self._ask(request, READ, {"type": "list_jobs"}, names, ("limit",), ("payloads",))

    async def job(self, request: Request) -> Response:
        return await self._ask(request, READ, {"type": "get_job_status", **self._job_id(request)},
                               {"payload": "payload", "logs": "logs"}, ("logs",), ("payload", "logs"))

    async def submit(self, request: Request) -> Response:
        """POST /api/jobs: a body like submit_job's (job_type, payload, priority, job_id,
        max_attempts, delay_s or run_at, timeout_s, ttl_s or expires_at, depends_on). 201 when the job was
        created; 200 when a job of that id existed. With `?wait_s=N` (up to MAX_WAIT_S), the answer
        waits for the job's end, at most N seconds, and is the job's state then (job_status, with
        `created`): its result once completed."""
        try:
            wait_s = query(request, {"wait_s": "wait_s"}, numbers=("wait_s",)).get("wait_s")
            if wait_s is not None and not (isinstance(wait_s, int | float) and 0 < wait_s <= MAX_WAIT_S):
                raise HttpError(400, e.BAD_MESSAGE, "wait_s must be a number of seconds, above 0 and at "
                                f"most {MAX_WAIT_S}", field="wait_s")
            body = await read_body(request, self.hub.config.max_frame_bytes)
            message = with_members(body, {"type": "submit_job", "subscribe": wait_s is not None})
        except HttpError as exc:
            return exc.response()
        if wait_s is not None:
            return await self._submit_and_wait(request, message, float(wait_s))
        response = await ask(self.hub, request, ACT, message)
        if response.status_code == 200 and orjson.loads(bytes(response.body)).get("created"):
            response.status_code = 201
        return response

    async def _submit_and_wait(self, request: Request, message: bytes, wait_s: float) -> Response:
        """Submit subscribed (the job's final event comes to the request's peer), wait for that
        event or the time, then answer with the job's state."""
        try:
            check_same_site(request)
            role, identity = identify(self.hub, request, ACT)
            decoded = decoding.decode(role, message)
        except (HttpError, ProtocolError) as exc:
            return refused(exc)
        peer = await stream_peer(self.hub, request, role, identity, decoded)
        if isinstance(peer, Response):
            return peer
        try:
            # the reply; a job event the reader brought during the store call may be ahead of it
            accepted = next(frame for frame in map(orjson.loads, peer.queued)
                            if frame.get("type") in ("job_accepted", "error"))
            if accepted.get("type") == "error":
                return error_answer(orjson.dumps(accepted))
            job_id = accepted["job_id"]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    while job_id in peer.subs.jobs and not peer.ended:  # a final event ends it
                        peer.wake.clear()
                        await peer.wake.wait()
            state = await self.hub.clients.job_status(peer, job_id, None, created=accepted["created"])
        except Exception as exc:
            return error_answer(error_for(exc, None, role))
        finally:
            self.hub.detach(peer)
        return answer(state, 201 if accepted["created"] else 200)

    async def cancel(self, request: Request) -> Response:
        return await self._ask(request, ACT, {"type": "cancel_job", **self._job_id(request)}, {})

    async def pause(self, request: Request) -> Response:
        """POST /api/types/{job_type}/pause (pause_type) and .../resume (resume_type)."""
        kind = "pause_type" if request.url.path.endswith("/pause") else "resume_type"
        try:
            query(request, {})
        except HttpError as exc:
            return exc.response()
        message = {"type": kind, "job_type": request.path_params["job_type"]}
        return await ask(self.hub, request, MONITOR, message, changes=True)

    async def limits(self, request: Request) -> Response:
        """GET /api/types/{job_type}/limits: the type's limits as set_type_limits answers them
        (`type_limits`, nulls where unset), read from get_stats, which lists every limited type."""
        job_type = request.path_params["job_type"]
        try:
            query(request, {})
        except HttpError as exc:
            return exc.response()
        answered = await ask(self.hub, request, MONITOR, {"type": "get_stats"})
        if answered.status_code != 200:
            return answered
        stats = orjson.loads(bytes(answered.body))
        limit = stats["limits"].get(job_type) or TypeLimit().as_dict()
        pending = stats["by_type"].get(job_type, {}).get("pending", 0)
        return answer(orjson.dumps({"type": "type_limits", "job_type": job_type, **limit, "pending": pending,
                                    "limits": stats["limits"]}))

    async def set_limits(self, request: Request) -> Response:
        """PUT /api/types/{job_type}/limits: set_type_limits, the body its members (`concurrency`,
        `rate`, `per_s`; null or absent clears one); a monitor's, refused cross-site as pausing is."""
        job_type = request.path_params["job_type"]
        try:
            query(request, {})
            body = (await read_body(request, 4096)).strip() or b"{}"
            message = with_members(body, {"type": "set_type_limits", "job_type": job_type})
        except HttpError as exc:
            return exc.response()
        return await ask(self.hub, request, MONITOR, message, changes=True)

    async def retry(self, request: Request) -> Response:
        """POST /api/jobs/{id}/retry, with an optional body {attempts, retry_id}."""
        try:
            query(request, {})
            body = (await read_body(request, 4096)).strip() or b"{}"
            message = with_members(body, {"type": "retry_job", **self._job_id(request)})
        except HttpError as exc:
            return exc.response()
        return await ask(self.hub, request, ACT, message)

    @staticmethod
    def _job_id(request: Request) -> dict[str, str]:
        return {"job_id": request.path_params["job_id"]}

    async def _ask(self, request: Request, roles: tuple[str, ...], message: dict[str, Any],
                   names: dict[str, str], numbers: tuple[str, ...] = (),
                   flags: tuple[str, ...] = ()) -> Response:
        try:
            fields = query(request, names, numbers, flags)
        except HttpError as exc:
            return exc.response()
        return await ask(self.hub, request, roles, {**fields, **message})
