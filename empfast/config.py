"""Settings: plain frozen dataclasses with defaults, shared by every layer. Imports only limits."""

from __future__ import annotations

import re
from dataclasses import dataclass

from empfast.limits import DEFAULT_MAX_FRAME_BYTES

QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def check_queue_name(name: str) -> str:
    """Queue names go inside a Redis Cluster hash tag, so they may never contain a brace."""
    if not QUEUE_NAME_RE.match(name):
        raise ValueError(
            f"queue name {name!r} is not valid: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    return name


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How to reach Redis. TLS comes from a rediss:// URL plus the ssl_* options."""

    url: str = "redis://127.0.0.1:6379/0"
    socket_timeout_s: float = 5.0
    connect_timeout_s: float = 5.0
    max_connections: int = 64
    keepalive: bool = True
    health_check_interval_s: float = 15.0
    retries: int = 5
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """The queue's timing and retention. Retention and event-stream length are written into the
    queue's meta hash at start-up, where the scripts read them."""

    name: str = "default"
    lease_ms: int = 30_000
    liveness_ms: int = 30_000
    backoff_base_ms: int = 1_000
    backoff_cap_ms: int = 300_000
    events_maxlen: int = 10_000
    keep_completed_ms: int = 86_400_000
    keep_completed_max: int = 10_000
    keep_failed_ms: int = 604_800_000
    keep_failed_max: int = 10_000
    sweep_limit: int = 500

    def __post_init__(self) -> None:
        check_queue_name(self.name)
        for field in ("lease_ms", "liveness_ms", "events_maxlen", "keep_completed_ms",
                      "keep_completed_max", "keep_failed_ms", "keep_failed_max", "sweep_limit"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
        if self.backoff_base_ms < 0 or self.backoff_cap_ms < self.backoff_base_ms:
            raise ValueError("backoff_base_ms must be >= 0 and backoff_cap_ms >= backoff_base_ms")


@dataclass(frozen=True, slots=True)
class HubConfig:
    """The hub process: where it listens and how often it does its background work."""

    host: str = "127.0.0.1"
    port: int = 8765
    hub_id: str = ""
    token: str | None = None
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_outbound_bytes: int = 16 << 20  # queued for one peer that does not read: then close 4002
    heartbeat_interval_s: float = 10.0
    sweep_interval_s: float = 1.0
    stats_interval_s: float = 1.0
    events_block_ms: int = 1000
