"""docs/security.md over real sockets: each role's tokens open only that role (admin opens all),
lists of tokens for rotation, tokens from files, worker tokens bound to worker ids (an impostor
cannot take a running worker's job), client scope `own`, and no token or password in logs,
exception texts or URLs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from in_process import run_in_process
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from support import MakeStore, RedisServer, WSPeer, connect, free_port, submit, ws_url

from empfast import cli
from empfast.client import Client
from empfast.config import HubConfig, RedisOptions
from empfast.connection import HubError, redact
from empfast.hub import Hub
from empfast.store import Added, NewJob, Store, redis_from_options
from empfast.worker import Job, Worker

ROLE_TOKENS = {"client_tokens": "c-old,c-new", "worker_tokens": "w-tok", "monitor_tokens": "m-tok",
               "admin_tokens": "a-tok"}
TIMINGS: dict[str, Any] = {"port": 0, "http_port": 0, "sweep_interval_s": 0.05, "stats_interval_s": 0.05,
                           "events_block_ms": 50}

HubFactory = Callable[..., Any]


@pytest.fixture
async def make_hub(make_store: MakeStore) -> AsyncIterator[HubFactory]:
    """Started hubs with these HubConfig settings, on one store."""
    store = await make_store(lease_ms=2_000, liveness_ms=3_000)
    started: list[Hub] = []

    async def make(**settings: Any) -> Hub:
        hub = Hub(store, HubConfig(**TIMINGS, **settings))
        await hub.start()
        started.append(hub)
        return hub

    yield make
    for hub in started:
        await hub.stop()


async def refused(hub: Hub, path: str, headers: dict[str, str] | None = None) -> None:
    """The connection gets `unauthorized` naming the role, then a close frame with 1008."""
    frames: list[bytes] = []
    close_codes: asyncio.Queue[int] = asyncio.Queue()

    class Listener(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                frames.append(frame.get_payload_as_bytes())
            elif frame.msg_type == WSMsgType.CLOSE:
                close_codes.put_nowait(int(frame.get_close_code()))

    transport, _ = await ws_connect(Listener, ws_url(hub, path), extra_headers=headers)
    try:
        async with asyncio.timeout(5):
            assert await close_codes.get() == 1008, path
    finally:
        transport.disconnect()
    (error,) = [orjson.loads(frame) for frame in frames]
    assert error["type"] == "error" and error["code"] == "unauthorized", (path, error)
    role = path.split("?")[0].split("/")[2]
    assert f"wrong token for the {role} role" in error["error"]  # a token of another role says which


async def ping(hub: Hub, path: str, headers: dict[str, str] | None = None) -> None:
    """The connection is let in and answers."""
    peer = await connect(hub, path, headers)
    peer.send({"type": "ping", "req": 1})
    assert (await peer.until("pong"))["req"] == 1
    peer.close()


# ---- tokens per role -------------------------------------------------------------------------------

async def test_each_roles_token_opens_only_its_role_and_admin_opens_all(make_hub: HubFactory) -> None:
    hub = await make_hub(**ROLE_TOKENS)
    opens = {"c-old": {"client"}, "w-tok": {"worker"}, "m-tok": {"monitor"},
             "a-tok": {"client", "worker", "monitor"}}
    for token, roles in opens.items():
        for role in ("client", "worker", "monitor"):
            if role in roles:
                await ping(hub, f"/ws/{role}", {"Authorization": f"Bearer {token}"})
            else:
                await refused(hub, f"/ws/{role}", {"Authorization": f"Bearer {token}"})


async def test_both_tokens_of_a_list_work_so_a_token_rotates_without_downtime(make_hub: HubFactory) -> None:
    hub = await make_hub(**ROLE_TOKENS)
    await ping(hub, "/ws/client?token=c-old")
    await ping(hub, "/ws/client?token=c-new")


async def test_a_wrong_or_missing_token_is_unauthorized_and_closed(make_hub: HubFactory) -> None:
    hub = await make_hub(**ROLE_TOKENS)
    for path in ("/ws/client", "/ws/client?token=wrong", "/ws/worker?token=c-old", "/ws/monitor?token="):
        await refused(hub, path)
    await refused(hub, "/ws/client", {"Authorization": "Bearer c-old-and-more"})


async def test_the_single_token_still_opens_every_role(make_hub: HubFactory) -> None:
    hub = await make_hub(token="s3cret")
    for role in ("client", "worker", "monitor"):
        await ping(hub, f"/ws/{role}?token=s3cret")
        await refused(hub, f"/ws/{role}?token=other")


async def test_tokens_from_files_work(make_hub: HubFactory, tmp_path: Path) -> None:
    (tmp_path / "clients").write_text("# rotated on 2026-12-01\nc-file-1\nc-file-2, c-file-3\n")
    (tmp_path / "all").write_text("every-role\n")
    hub = await make_hub(client_tokens="c-flag", client_tokens_file=str(tmp_path / "clients"),
                         token_file=str(tmp_path / "all"))
    for token in ("c-flag", "c-file-1", "c-file-2", "c-file-3", "every-role"):
        await ping(hub, f"/ws/client?token={token}")
    await ping(hub, "/ws/worker?token=every-role")
    await refused(hub, "/ws/worker?token=c-file-1")
    await refused(hub, "/ws/client?token=%23")


def test_a_token_setting_that_cannot_work_is_refused_at_start(tmp_path: Path) -> None:
    from empfast.store import Store

    store = Store.embedded()
    cases = [({"monitor_tokens": "m=x"}, "only worker tokens"),
             ({"worker_tokens": "w|x"}, "a token may not"),
             ({"worker_tokens": "w=*"}, "a binding is worker ids"),
             ({"worker_tokens": "w=gpu/1"}, "a binding is worker ids"),
             ({"client_scope": "own"}, "client_scope own needs client_tokens"),
             ({"client_scope": "own", "token": "t", "admin_tokens": "a"}, "client_scope own needs"),
             ({"admin_tokens_file": str(tmp_path / "missing")}, "admin_tokens_file: cannot read")]
    for settings, says in cases:
        with pytest.raises(ValueError, match=says) as caught:
            Hub(store, HubConfig(**settings))
        assert "m=x" not in str(caught.value)


# ---- worker identity -------------------------------------------------------------------------------

async def test_a_bound_worker_token_cannot_register_another_id(make_hub: HubFactory) -> None:
    hub = await make_hub(worker_tokens="gpu-tok=gpu-*|spare")
    worker = await connect(hub, "/ws/worker?token=gpu-tok")
    worker.send({"type": "register_worker", "req": 1, "worker_id": "cpu-1", "job_types": ["a"]})
    error = await worker.until("error", req=1)
    assert error["code"] == "forbidden" and "'cpu-1'" in error["error"] and error["field"] == "worker_id"
    assert "cpu-1" not in hub.default_room.workers
    for worker_id in ("gpu-7", "spare"):  # the connection stays, and may register what it is bound to
        bound = worker if worker_id == "gpu-7" else await connect(hub, "/ws/worker/spare?token=gpu-tok")
        bound.send({"type": "register_worker", "req": 2, "worker_id": worker_id, "job_types": ["a"]})
        assert (await bound.until("worker_registered", req=2))["worker_id"] == worker_id


async def test_an_impostor_cannot_take_a_running_workers_id_nor_its_job(make_hub: HubFactory) -> None:
    hub = await make_hub(worker_tokens="real-tok=gpu-1,other-tok=cpu-*", client_tokens="c")
    real = await connect(hub, "/ws/worker/gpu-1?token=real-tok")
    real.send({"type": "register_worker", "job_types": ["render"]})
    await real.until("worker_registered")
    client = await connect(hub, "/ws/client?token=c")
    job_id = await submit(client, "render", {"secret": "payload"})
    assigned = await real.until("job_assigned")

    impostor = await connect(hub, "/ws/worker/gpu-1?token=other-tok")
    impostor.send({"type": "register_worker", "req": 1, "job_types": ["render"]})
    assert (await impostor.until("error", req=1))["code"] == "forbidden"
    impostor.send({"type": "complete_job", "req": 2, "job_id": job_id, "attempt": 1, "result": "forged"})
    assert (await impostor.until("error", req=2))["code"] == "not_registered"

    real.send({"type": "complete_job", "req": 3, "job_id": job_id, "attempt": assigned["attempt"],
               "result": "real"})
    assert (await real.until("job_completed_ack", req=3))["job_id"] == job_id
    done = await client.until("job_completed", job_id=job_id)
    assert done["result"] == "real" and done["worker_id"] == "gpu-1"
    with contextlib.suppress(TimeoutError):
        frame = await impostor.next(wait_s=0.2)
        assert frame["type"] != "job_assigned"


async def test_a_worker_whose_token_is_bound_to_other_ids_stops_with_forbidden(make_hub: HubFactory) -> None:
    """Reconnecting as is cannot help, as for a wrong token: the worker stops instead of retrying."""
    hub = await make_hub(worker_tokens="gpu-tok=gpu-*")
    worker = Worker(ws_url(hub), {"a": echo}, worker_id="cpu-1", token="gpu-tok", reconnect_base_s=0.01)
    with pytest.raises(HubError) as refused_worker:
        async with asyncio.timeout(5):
            await worker.start()
    assert refused_worker.value.code == "forbidden" and "'cpu-1'" in str(refused_worker.value)
    await worker.connection.close()


async def echo(job: Job) -> Any:
    return job.payload


# ---- no secrets in logs, exception texts or URLs ---------------------------------------------------

SDK_TOKEN = "sdk-token-5f2a9c"


async def test_the_sdk_sends_its_token_in_a_header_and_never_logs_it(
        make_hub: HubFactory, caplog: pytest.LogCaptureFixture) -> None:
    # (picows's own trace, below DEBUG, shows the upgrade request: docs/security.md section 5)
    caplog.set_level(logging.DEBUG)
    hub = await make_hub(client_tokens=SDK_TOKEN)
    port = hub.port
    async with Client(ws_url(hub), token=SDK_TOKEN, backoff_base_s=0.05) as client:
        assert SDK_TOKEN not in client.connection.url
        await hub.stop()
        await asyncio.sleep(0.2)  # a few refused reconnects, each logged
        back = Hub(hub.store, HubConfig(**{**TIMINGS, "port": port}, client_tokens=SDK_TOKEN))
        await back.start()
        try:
            assert (await client.stats())["pending"] == 0
            assert client.connection.connects >= 2
        finally:
            await back.stop()
    assert "reconnecting to" in caplog.text
    assert SDK_TOKEN not in caplog.text


async def test_no_exception_text_of_the_sdk_holds_the_token(make_hub: HubFactory) -> None:
    hub = await make_hub(client_tokens="right")
    with pytest.raises(HubError) as refused_token:
        async with Client(ws_url(hub), token=SDK_TOKEN):
            pass
    with pytest.raises(TimeoutError) as unreachable:
        async with Client(f"ws://127.0.0.1:{free_port()}", token=SDK_TOKEN, connect_timeout_s=0.3):
            pass
    for caught in (refused_token, unreachable):
        assert SDK_TOKEN not in "".join(traceback.format_exception(caught.value))


def test_redact_masks_a_token_and_any_token_in_a_url() -> None:
    text = f"failed: ws://h:1/ws/client?token={SDK_TOKEN}&x=1 and Bearer {SDK_TOKEN}"
    assert redact(text, SDK_TOKEN) == "failed: ws://h:1/ws/client?token=***&x=1 and Bearer ***"
    assert redact("ws://h:1/ws/worker?a=1&TOKEN=abc") == "ws://h:1/ws/worker?a=1&TOKEN=***"


REDIS_PASSWORD = "hunter2-redis-pw"


def test_secret_settings_stay_out_of_a_settings_objects_repr() -> None:
    shown = repr(HubConfig(token="t-1", client_tokens="t-2", worker_tokens="t-3", monitor_tokens="t-4",
                           admin_tokens="t-5")) + repr(RedisOptions(password=REDIS_PASSWORD))
    assert not any(secret in shown for secret in ("t-1", "t-2", "t-3", "t-4", "t-5", REDIS_PASSWORD))


def test_the_redis_password_from_a_file_or_variable_joins_the_url_at_connect(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(REDIS_PASSWORD + "\n")
    client = redis_from_options(RedisOptions(url="redis://127.0.0.1:1/0", password_file=str(secret)))
    assert client.connection_pool.connection_kwargs["password"] == REDIS_PASSWORD
    monkeypatch.setenv("EMPFAST_REDIS_PASSWORD", REDIS_PASSWORD)
    built = cli.REDIS.build(cli.build_parser().parse_args(["serve", "--redis-url", "redis://h:1/0"]))
    assert built.resolved_password() == REDIS_PASSWORD
    with pytest.raises(ValueError, match="give the Redis password once"):
        RedisOptions(url="redis://:other@h:1/0", password=REDIS_PASSWORD)


@pytest.mark.real_redis
def test_the_redis_password_is_in_no_log_or_error_of_a_failed_start(
        redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis that wants another password, then no Redis at all: the hub cannot start."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(cli, "setup_logging", lambda settings: None)
    secret = tmp_path / "redis-password"
    secret.write_text(REDIS_PASSWORD)
    with redis.Redis(port=redis_server.port) as admin:
        admin.config_set("requirepass", "the-right-one")
    try:
        for url in (redis_server.url, "redis://127.0.0.1:1/0"):
            proc = run_in_process("serve", "--redis-url", url, "--redis-password-file", str(secret),
                                  "--redis-retries", "0", "--port", "0")
            assert proc.returncode == 2 and "cannot reach Redis" in proc.stderr, proc.stderr
            assert REDIS_PASSWORD not in proc.stderr
        monkeypatch.setenv("EMPFAST_REDIS_PASSWORD", REDIS_PASSWORD)
        proc = run_in_process("serve", "--redis-url", redis_server.url, "--redis-retries", "0", "--port", "0")
        assert proc.returncode == 2, proc.stderr
    finally:
        with redis.Redis(port=redis_server.port, password="the-right-one") as admin:
            admin.config_set("requirepass", "")
    assert REDIS_PASSWORD not in proc.stderr + caplog.text


async def test_the_command_line_reads_its_token_from_a_file(make_hub: HubFactory, tmp_path: Path) -> None:
    hub = await make_hub(client_tokens=SDK_TOKEN)
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text(SDK_TOKEN + "\n")
    bad.write_text("not-it\n")
    for token_file, code in ((good, 0), (bad, 2)):
        proc = await asyncio.to_thread(run_in_process, "status", "--url", ws_url(hub), "--token-file",
                                       str(token_file))
        assert proc.returncode == code, proc.stderr
    # one line, saying what to do, never the token
    assert proc.stderr.count("\n") == 1 and "refused the token" in proc.stderr
    assert "--token-file" in proc.stderr
    assert "not-it" not in proc.stderr
    missing = await asyncio.to_thread(run_in_process, "status", "--url", ws_url(hub), "--token-file",
                                      str(tmp_path / "missing"))
    assert missing.returncode == 2 and "token_file: cannot read" in missing.stderr


# ---- client scope ----------------------------------------------------------------------------------

SCOPED = {"client_tokens": "alice,bob,acme-1=acme,acme-2=acme", "admin_tokens": "root",
          "client_scope": "own"}


async def answer(peer: WSPeer, message: dict[str, Any]) -> dict[str, Any]:
    """The reply (or error) to one request."""
    peer.send({**message, "req": message["type"]})
    return await peer.until_any(("job_status", "subscribed", "job_accepted", "error"))


async def test_with_scope_own_another_client_gets_not_found_and_the_submitter_can_act(
        make_hub: HubFactory) -> None:
    hub = await make_hub(**SCOPED)
    alice = await connect(hub, "/ws/client?token=alice")
    bob = await connect(hub, "/ws/client?token=bob")
    job_id = await submit(alice, "render", {"for": "alice"}, job_id="alices-job", delay_s=60)
    missing = await answer(bob, {"type": "get_job_status", "job_id": "never-added"})
    requests = [{"type": "get_job_status", "job_id": job_id}, {"type": "subscribe_job", "job_id": job_id},
                {"type": "cancel_job", "job_id": job_id}, {"type": "retry_job", "job_id": job_id}]
    for request in requests:
        error = await answer(bob, request)
        assert error["type"] == "error" and error["code"] == "not_found", (request, error)
        # the same answer as for a job that does not exist: nothing tells that it does
        assert error["error"] == missing["error"].replace("never-added", job_id)

    assert (await answer(alice, requests[0]))["status"] == "scheduled"
    assert (await answer(alice, requests[1]))["type"] == "subscribed"
    assert (await answer(alice, requests[2]))["status"] == "cancelled"
    assert (await answer(alice, requests[3]))["retried"] is True
    root = await connect(hub, "/ws/client?token=root")
    assert (await answer(root, requests[0]))["job_id"] == job_id
    monitor = await connect(hub, "/ws/monitor?token=root")
    assert (await answer(monitor, requests[0]))["job_id"] == job_id


async def test_with_scope_own_a_taken_job_id_is_refused_and_its_events_never_reach_another(
        make_hub: HubFactory) -> None:
    hub = await make_hub(**SCOPED)
    alice = await connect(hub, "/ws/client?token=alice")
    bob = await connect(hub, "/ws/client?token=bob")
    job_id = await submit(alice, "render", {"for": "alice"}, job_id="alices-job", delay_s=60)
    refused_submit = await answer(bob, {"type": "submit_job", "job_type": "render", "job_id": job_id})
    assert refused_submit["code"] == "forbidden" and refused_submit["field"] == "job_id"
    bob.send({"type": "submit_jobs", "req": "batch", "jobs": [{"job_type": "a"}, {"job_type": "a",
                                                                                  "job_id": job_id}]})
    batch = await bob.until("error", req="batch")
    assert batch["code"] == "forbidden" and batch["field"] == "jobs[1].job_id"
    alice.send({"type": "cancel_job", "job_id": job_id})
    # one fan-out sends an event to every subscriber at once: bob's copy would come before his pong
    await alice.until("job_cancelled", job_id=job_id)
    bob.send({"type": "ping", "req": "after"})
    while (frame := await bob.next())["type"] != "pong":
        assert frame.get("job_id") != job_id, frame


async def test_with_scope_own_clients_of_one_tenant_share_their_jobs(make_hub: HubFactory) -> None:
    hub = await make_hub(**SCOPED)
    first = await connect(hub, "/ws/client?token=acme-1")
    second = await connect(hub, "/ws/client?token=acme-2")
    job_id = await submit(first, "render", delay_s=60)
    assert (await answer(second, {"type": "get_job_status", "job_id": job_id}))["status"] == "scheduled"
    alice = await connect(hub, "/ws/client?token=alice")
    assert (await answer(alice, {"type": "get_job_status", "job_id": job_id}))["code"] == "not_found"


async def test_the_sdk_submitter_sees_its_own_job_through_to_its_result(make_hub: HubFactory) -> None:
    hub = await make_hub(**SCOPED, worker_tokens="w")
    worker = await connect(hub, "/ws/worker/w1?token=w")
    worker.send({"type": "register_worker", "job_types": ["echo"]})
    await worker.until("worker_registered")
    async with Client(ws_url(hub), token="alice") as client:
        handle = await client.submit("echo", {"n": 1})
        assigned = await worker.until("job_assigned")
        worker.send({"type": "complete_job", "job_id": handle.job_id, "attempt": assigned["attempt"],
                     "result": {"n": 2}})
        assert await handle.result(timeout=5) == {"n": 2}
        assert (await client.status(handle.job_id))["status"] == "completed"


async def test_the_store_keeps_a_jobs_owner_and_says_when_an_id_is_anothers(store: Store) -> None:
    (added,) = await store.add_jobs([NewJob("a", job_id="j1")], owner="owner-1")
    assert added.created and not added.foreign
    assert (await store.get_job("j1") or {})["owner"] == "owner-1"
    assert (await store.add_jobs([NewJob("a", job_id="j1")], owner="owner-1"))[0].foreign is False
    (again,) = await store.add_jobs([NewJob("a", job_id="j1")], owner="owner-2")
    assert again == Added("j1", "pending", created=False, foreign=True)
    (unowned,) = await store.add_jobs([NewJob("a", job_id="j1")])  # the hub without auth
    assert unowned.created is False and unowned.foreign is False
    assert (await store.get_job("j1") or {})["owner"] == "owner-1"


async def test_with_scope_own_a_job_may_depend_only_on_its_submitters_jobs(make_hub: HubFactory) -> None:
    hub = await make_hub(**SCOPED)
    alice = await connect(hub, "/ws/client?token=alice")
    bob = await connect(hub, "/ws/client?token=bob")
    await submit(alice, "render", job_id="alices-job", subscribe=False)
    missing = await answer(bob, {"type": "submit_job", "job_type": "a", "depends_on": ["never-added"]})
    foreign = await answer(bob, {"type": "submit_job", "job_type": "a", "depends_on": ["alices-job"]})
    # the same answer as for a job that does not exist: nothing tells that it does
    assert foreign["code"] == "bad_message" and foreign["error"] == missing["error"].replace(
        "never-added", "alices-job")
    bob.send({"type": "submit_jobs", "req": "pipeline", "jobs": [
        {"job_type": "a", "job_id": "bobs-1"}, {"job_type": "a", "depends_on": ["bobs-1"]}]})
    assert (await bob.until("jobs_accepted", req="pipeline"))["statuses"] == ["pending", "waiting"]
    mine = await answer(alice, {"type": "submit_job", "job_type": "a", "depends_on": ["alices-job"]})
    assert mine["status"] == "waiting"
    assert await hub.store.redis.smembers(hub.store.keys.children("alices-job")) == {
        mine["job_id"].encode()}
