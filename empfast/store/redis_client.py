"""The redis-py client the store runs on, made from RedisOptions: timeouts, pool, keepalive,
retries on connection errors, TLS for rediss:// URLs, the password kept out of the URL, and the
master found through Redis Sentinels when the options name them."""

from __future__ import annotations

from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from empfast.config import RedisOptions, SentinelTarget


def redis_from_options(options: RedisOptions) -> aioredis.Redis:
    """A redis-py asyncio client (hiredis parser when installed) that reconnects on its own."""
    common: dict[str, Any] = dict(
        socket_timeout=options.socket_timeout_s,
        socket_connect_timeout=options.connect_timeout_s,
        socket_keepalive=options.keepalive,
        health_check_interval=options.health_check_interval_s,
        max_connections=options.max_connections,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), options.retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        decode_responses=False,
    )
    target = options.sentinel_target()
    if target is not None:
        return _through_sentinels(options, target, common)
    password = options.resolved_password()
    if password is not None:  # kept out of the URL, which is shown in logs and errors
        common["password"] = password
    if options.url.startswith("rediss://"):
        common.update(ssl_ca_certs=options.ssl_ca_certs, ssl_certfile=options.ssl_certfile,
                      ssl_keyfile=options.ssl_keyfile)
    if options.cluster:
        # the cluster client: it finds every node from this one and follows MOVED; the store only
        # runs single-slot commands on it (each queue is one hash tag), and its pipelined
        # connections go to the master of their queue's slot (store/pipelined.py)
        return RedisCluster.from_url(options.url, **common)  # type: ignore[return-value]
    return aioredis.Redis.from_url(options.url, **common)


def _through_sentinels(options: RedisOptions, target: SentinelTarget,
                       common: dict[str, Any]) -> aioredis.Redis:
    """A client of the master the Sentinels name: each new connection asks them where it is, so after
    a failover the client reconnects to the new master by itself (redis-py's SentinelConnectionPool;
    store/pipelined.py does the same for its connections, through this client's pool)."""
    tls: dict[str, Any] = {}
    if target.tls:  # rediss+sentinel:// or a rediss:// URL: TLS to the Sentinels and to the master
        tls = dict(ssl=True, ssl_ca_certs=options.ssl_ca_certs, ssl_certfile=options.ssl_certfile,
                   ssl_keyfile=options.ssl_keyfile)
    sentinel_kwargs: dict[str, Any] = dict(socket_timeout=options.socket_timeout_s,
                                           socket_connect_timeout=options.connect_timeout_s,
                                           socket_keepalive=options.keepalive, **tls)
    if options.sentinel_password is not None:
        sentinel_kwargs["password"] = options.sentinel_password
    password = target.password if target.password is not None else options.resolved_password()
    sentinels = _Sentinels(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)
    return sentinels.master_for(target.master_name, redis_class=aioredis.Redis, db=target.db,
                                username=target.username, password=password, **common, **tls)


class _Sentinels(Sentinel):
    """redis-py's Sentinel, with a short error when no master is found: its own message holds the
    repr of every Sentinel's client (a screenful), and it reaches the start-up error and the log
    line of every request refused during a failover."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        try:
            return await super().discover_master(service_name)  # type: ignore[no-any-return]
        except MasterNotFoundError:
            addresses = ", ".join(f"{s.connection_pool.connection_kwargs['host']}:"
                                  f"{s.connection_pool.connection_kwargs['port']}" for s in self.sentinels)
            raise MasterNotFoundError(
                f"the Sentinels at {addresses} name no master {service_name!r} that is up (they are "
                "unreachable, the name is not theirs, or a failover is under way)") from None
