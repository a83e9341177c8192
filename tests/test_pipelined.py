"""The store's script connection (empfast/store/pipelined.py) on a real redis-server: batching,
replies in order, errors that stay with their call, AUTH and SELECT, a restart, a frozen server."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest
import redis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from support import RedisServer

from empfast.config import RedisOptions
from empfast.store import redis_from_options
from empfast.store.pipelined import PipelinedConnection, command

pytestmark = pytest.mark.real_redis


@pytest.fixture
async def connection(redis_server: RedisServer) -> AsyncIterator[PipelinedConnection]:
    redis_server.flush()
    made = PipelinedConnection(host="127.0.0.1", port=redis_server.port, command_timeout_s=2.0)
    yield made
    await made.close()


async def test_the_calls_of_one_loop_turn_go_out_in_one_write_and_each_gets_its_own_reply(
        connection: PipelinedConnection) -> None:
    await connection.call(command("PING"))  # connected
    writes = connection.writes
    replies = await asyncio.gather(*(connection.call(command("ECHO", f"call-{i}")) for i in range(500)))
    assert replies == [f"call-{i}".encode() for i in range(500)]
    assert connection.writes == writes + 1


async def test_an_error_reply_fails_its_own_call_only(connection: PipelinedConnection) -> None:
    calls = [connection.call(command("ECHO", "before")), connection.call(command("NOSUCHCOMMAND")),
             connection.call(command("EVALSHA", "0" * 40, 0)), connection.call(command("ECHO", "after"))]
    before, unknown, noscript, after = await asyncio.gather(*calls, return_exceptions=True)
    assert (before, after) == (b"before", b"after")
    assert isinstance(unknown, ResponseError) and "unknown command" in str(unknown)
    assert isinstance(noscript, NoScriptError)


async def test_values_come_back_byte_exact(connection: PipelinedConnection) -> None:
    blob = bytes(range(256)) * 4096 + b"\r\n$3\r\n"  # 1 MiB with RESP's own delimiters in it
    assert await connection.call(command("SET", "blob", blob)) == b"OK"
    assert await connection.call(command("GET", "blob")) == blob
    assert await connection.call(command("INCRBY", "n", 7)) == 7
    assert await connection.call(command("SET", "f", 0.5)) == b"OK"
    assert await connection.call(command("GET", "f")) == b"0.5"


async def test_the_url_s_password_and_database_are_used(redis_server: RedisServer) -> None:
    admin = redis.Redis(port=redis_server.port)
    admin.config_set("requirepass", "s3cret")
    try:
        client = redis_from_options(RedisOptions(url=f"redis://:s3cret@127.0.0.1:{redis_server.port}/5"))
        connection = PipelinedConnection.like(client)
        assert connection is not None
        await asyncio.gather(connection.call(command("SET", "where", "db5")),
                             connection.call(command("SET", "also", "db5")))
        assert await client.get("where") == b"db5"  # redis-py on db 5
        await connection.close()
        await client.aclose()
        wrong = PipelinedConnection(host="127.0.0.1", port=redis_server.port, password="wrong")
        with pytest.raises(ResponseError, match=r"WRONGPASS|invalid"):
            await wrong.call(command("PING"))
        await wrong.close()
    finally:
        redis.Redis(port=redis_server.port, password="s3cret").config_set("requirepass", "")
        admin.close()


async def test_a_call_in_flight_when_redis_dies_fails_and_the_next_one_connects_again(
        redis_server: RedisServer) -> None:
    connection = PipelinedConnection(host="127.0.0.1", port=redis_server.port)  # no retries
    await connection.call(command("PING"))
    blocked = asyncio.ensure_future(connection.call(command("BLPOP", "nothing", 0)))
    await asyncio.sleep(0.1)
    redis_server.stop()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(blocked, 5)
    redis_server.start()
    assert await connection.call(command("PING")) == b"PONG"
    await connection.close()


async def test_with_retries_a_restart_between_calls_is_not_seen(redis_server: RedisServer) -> None:
    connection = PipelinedConnection(host="127.0.0.1", port=redis_server.port,
                                     retry=Retry(ConstantBackoff(0.05), 5))
    await connection.call(command("PING"))
    redis_server.stop()
    redis_server.start()  # the old socket is dead; the call finds out only when it writes
    assert await connection.call(command("ECHO", "again")) == b"again"
    await connection.close()


async def test_a_frozen_server_times_the_calls_out_and_a_thawed_one_answers_again(
        redis_server: RedisServer) -> None:
    connection = PipelinedConnection(host="127.0.0.1", port=redis_server.port, command_timeout_s=0.3)
    await connection.call(command("PING"))
    assert redis_server.process is not None
    pid = redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(connection.call(command("PING")), 5)
        assert asyncio.get_running_loop().time() - started < 2.0
    finally:
        os.kill(pid, signal.SIGCONT)
    assert await connection.call(command("PING")) == b"PONG"
    await connection.close()


def test_the_embedded_store_has_no_script_connection() -> None:
    import fakeredis

    assert PipelinedConnection.like(fakeredis.FakeAsyncRedis()) is None


def test_it_runs_on_uvloop_as_the_hub_does(redis_server: RedisServer) -> None:
    """`empfast serve` runs on uvloop, whose transports are not asyncio's classes."""
    import uvloop

    async def exchange() -> list[bytes]:
        connection = PipelinedConnection(host="127.0.0.1", port=redis_server.port)
        try:
            return await asyncio.gather(*(connection.call(command("ECHO", str(i))) for i in range(50)))
        finally:
            await connection.close()

    assert uvloop.run(exchange()) == [str(i).encode() for i in range(50)]
