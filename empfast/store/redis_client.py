"""The redis-py client the store runs on, made from RedisOptions: timeouts, pool, keepalive,
retries on connection errors, TLS for rediss:// URLs, and the password kept out of the URL."""

from __future__ import annotations

from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from empfast.config import RedisOptions


def redis_from_options(options: RedisOptions) -> aioredis.Redis:
    """A redis-py asyncio client (hiredis parser when installed) that reconnects on its own."""
    extra: dict[str, Any] = {}
    password = options.resolved_password()
    if password is not None:  # kept out of the URL, which is shown in logs and errors
        extra["password"] = password
    if options.url.startswith("rediss://"):
        extra.update(ssl_ca_certs=options.ssl_ca_certs, ssl_certfile=options.ssl_certfile,
                     ssl_keyfile=options.ssl_keyfile)
    return aioredis.Redis.from_url(
        options.url,
        socket_timeout=options.socket_timeout_s,
        socket_connect_timeout=options.connect_timeout_s,
        socket_keepalive=options.keepalive,
        health_check_interval=options.health_check_interval_s,
        max_connections=options.max_connections,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), options.retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        decode_responses=False,
        **extra,
    )
