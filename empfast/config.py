"""Settings: plain frozen dataclasses with defaults, shared by every layer. Imports only leaves (limits,
redis_urls).

Each field is declared with `setting(default, help)`: its help text and unit live here, once, and
the command line derives its flags and EMPFAST_* variables from the fields (empfast/settings_cli.py).
So a unit belongs in the field's name (`_ms`, `_s`, `_bytes`)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from empfast.limits import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_JOB_TYPES,
    FRAME_HEADROOM_BYTES,
    MAX_JOB_TYPE_BYTES,
    MAX_TIMEOUT_S,
)
from empfast.redis_urls import (
    SENTINEL_SCHEMES,
    SentinelTarget,
    check_redis_url,
    parse_sentinel_url,
    parse_sentinels,
)

QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def setting(default: Any, help: str, *, secret: bool = False) -> Any:
    """A dataclass field with its help text, for the command line and the docs. A secret (a token,
    a password) is left out of the dataclass's repr, so a logged settings object never shows it."""
    return field(default=default, metadata={"help": help}, repr=not secret)


def check_queue_name(name: str) -> str:
    """Queue names go inside a Redis Cluster hash tag, so they may never contain a brace."""
    if not QUEUE_NAME_RE.match(name):
        raise ValueError(
            f"queue name {name!r} is not valid: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    return name


def read_secret_file(path: str, setting_name: str) -> str:
    """A token or password kept in a file (a Docker or Kubernetes secret): its first line. Raises
    ValueError naming the setting and the file, never its content."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"{setting_name}: cannot read {path!r} ({exc.strerror or exc})") from None
    if not lines or not lines[0].strip():
        raise ValueError(f"{setting_name}: {path!r} is empty; its first line is the secret")
    return lines[0].strip()


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How to reach Redis. TLS comes from a rediss:// URL plus the ssl_* options."""

    url: str = setting("redis://127.0.0.1:6379/0",
                       "Redis URL, redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS), or "
                       "redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]")
    sentinels: str | None = setting(None, "find the master through these Redis Sentinels, HOST:PORT,"
                                          "... (with master_name), following failovers; the URL then "
                                          "gives only the password, the db and TLS (rediss://)")
    master_name: str | None = setting(None, "the name the Sentinels know the master by (with sentinels)")
    sentinel_password: str | None = setting(None, "the Sentinels' own password (their requirepass), "
                                                  "when they have one", secret=True)
    cluster: bool = setting(False, "Redis is a Redis Cluster: the URL names one of its nodes, the others "
                                   "are found; each queue's keys are in one slot (its hash tag)")
    socket_timeout_s: float = setting(5.0, "a Redis command that takes longer fails and is retried")
    connect_timeout_s: float = setting(5.0, "how long connecting to Redis may take")
    max_connections: int = setting(64, "the size of the Redis connection pool")
    keepalive: bool = setting(True, "TCP keepalive on Redis connections")
    health_check_interval_s: float = setting(
        15.0, "a Redis connection idle for this long is checked with PING before use")
    retries: int = setting(5, "how often a Redis command is retried after a connection error or "
                              "timeout, with backoff from 50 ms up to 1 s")
    ssl_ca_certs: str | None = setting(None, "CA bundle to check the Redis server's certificate "
                                             "(rediss:// only); unset: the system's")
    ssl_certfile: str | None = setting(None, "client certificate for Redis (rediss:// only)")
    ssl_keyfile: str | None = setting(None, "the client certificate's key (rediss:// only)")
    password: str | None = setting(None, "the Redis password, used with a URL that has none (a flag "
                                         "shows in `ps`: prefer the variable or password_file)",
                                   secret=True)
    password_file: str | None = setting(None, "read the Redis password from this file (its first "
                                              "line), for a URL that has none")

    def __post_init__(self) -> None:
        for name in ("socket_timeout_s", "connect_timeout_s", "max_connections"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("health_check_interval_s", "retries"):  # 0: no health checks, no retries
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        check_redis_url(self.url)
        self._check_sentinels()
        if self.cluster:
            self._check_cluster()
        if (self.password is not None) + (self.password_file is not None) + (
                urlsplit(self.url).password is not None) > 1:
            raise ValueError("give the Redis password once: in the URL, as password, or as password_file")

    def _check_sentinels(self) -> None:
        in_url = self.url.startswith(tuple(f"{scheme}://" for scheme in SENTINEL_SCHEMES))
        if (self.sentinels is None) != (self.master_name is None):
            raise ValueError("give sentinels and master_name together (the Sentinels' addresses and "
                             "their name for the master), or a redis+sentinel:// URL")
        if self.sentinels is not None:
            if in_url:
                raise ValueError("give the Sentinels once: in the redis+sentinel:// URL, or as "
                                 "sentinels with master_name")
            if self.url.startswith("unix://"):
                raise ValueError("sentinels find a master on TCP: give a redis:// or rediss:// URL (for "
                                 "the password and the db), not a unix:// one")
            try:
                parse_sentinels(self.sentinels)
            except ValueError as exc:
                raise ValueError(f"sentinels: {exc}; give HOST:PORT[,HOST:PORT...]") from None
            if not self.master_name:
                raise ValueError("master_name is empty: give the name the Sentinels know the master by")
        elif self.sentinel_password is not None and not in_url:
            raise ValueError("sentinel_password has no effect without Sentinels: give sentinels and "
                             "master_name, or a redis+sentinel:// URL")

    def _check_cluster(self) -> None:
        if self.sentinel_target() is not None:
            raise ValueError("a Redis Cluster fails over by itself: give cluster or Sentinels, not both")
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            raise ValueError("a Redis Cluster is reached on TCP: give redis://HOST:PORT of one of its nodes")
        if parts.path not in ("", "/", "/0"):
            raise ValueError(f"a Redis Cluster has only database 0, not {parts.path[1:]}: drop it from the "
                             "URL")

    def sentinel_target(self) -> SentinelTarget | None:
        """The Sentinels and the master's name, of the URL or of sentinels and master_name (the URL
        then gives the password, the db and TLS); None when Redis is reached directly."""
        if self.url.startswith(tuple(f"{scheme}://" for scheme in SENTINEL_SCHEMES)):
            return parse_sentinel_url(self.url)
        if self.sentinels is None or self.master_name is None:
            return None
        parts = urlsplit(self.url)
        return SentinelTarget(parse_sentinels(self.sentinels), self.master_name,
                              int(parts.path[1:] or 0), unquote(parts.username or "") or None,
                              unquote(parts.password) if parts.password is not None else None,
                              tls=parts.scheme == "rediss")

    def resolved_password(self) -> str | None:
        """The password of `password` or `password_file`, merged into the URL's at connect time;
        None when the URL has its own (or there is none)."""
        return self.password if self.password_file is None else read_secret_file(self.password_file,
                                                                                   "password_file")

    def masked_url(self) -> str:
        """The URL with its password replaced, fit for a log line or an error message; with
        sentinels and master_name, the redis+sentinel:// URL they and the URL make."""
        target = self.sentinel_target()
        if target is not None and self.sentinels is not None:
            user_info = f"{target.username or ''}:***@" if target.password is not None else ""
            hosts = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                             for host, port in target.sentinels)
            return (f"{'rediss' if target.tls else 'redis'}+sentinel://{user_info}{hosts}/"
                    f"{target.master_name}/{target.db}")
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """The queue's timing and retention. Retention and event-stream length are written into the
    queue's meta hash at start-up, where the scripts read them."""

    name: str = setting("default", "the queue this hub serves; its Redis keys share the hash tag "
                                   "{NAME}")
    lease_ms: int = setting(30_000, "a job's lease: without a heartbeat or progress for this long "
                                    "it runs again")
    liveness_ms: int = setting(30_000, "a worker silent for this long is gone and its jobs are taken "
                                       "back")
    backoff_base_ms: int = setting(1_000, "the first retry's delay, doubling each attempt, with "
                                          "jitter")
    backoff_cap_ms: int = setting(300_000, "the longest retry delay")
    events_maxlen: int = setting(10_000, "about how many job events the queue's stream keeps, for "
                                         "subscribers that reconnect")
    keep_completed_ms: int = setting(86_400_000, "a completed job is removed after this long")
    keep_completed_max: int = setting(10_000, "at most this many completed jobs are kept, the "
                                              "oldest removed first")
    keep_failed_ms: int = setting(604_800_000, "a job failed for good (or cancelled) is removed "
                                               "after this long")
    keep_failed_max: int = setting(10_000, "at most this many failed or cancelled jobs are kept")
    sweep_limit: int = setting(500, "at most this many expired leases or due delayed jobs are "
                                    "handled per sweep")
    max_job_types: int = setting(DEFAULT_MAX_JOB_TYPES, "distinct job types the queue takes; a job of "
                                                        "a new type past it is refused (types are never "
                                                        "forgotten)")
    job_timeout_s: float = setting(0.0, "a job that gives no timeout_s and whose type has none in "
                                        "type_timeouts may run this long per attempt, then fails "
                                        "`timeout` (0: no limit)")
    type_timeouts: str = setting("", "default timeouts per job type, TYPE=SECONDS comma-separated "
                                     "(resize=60,render=600); over job_timeout_s")

    def __post_init__(self) -> None:
        check_queue_name(self.name)
        if not 0 <= self.job_timeout_s <= MAX_TIMEOUT_S:
            raise ValueError(f"job_timeout_s must be 0 (none) to {MAX_TIMEOUT_S} s, got {self.job_timeout_s}")
        self.type_timeout_ms()
        for name in ("lease_ms", "liveness_ms", "events_maxlen", "keep_completed_ms",
                     "keep_completed_max", "keep_failed_ms", "keep_failed_max", "sweep_limit",
                     "max_job_types"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.backoff_base_ms < 0 or self.backoff_cap_ms < self.backoff_base_ms:
            raise ValueError("backoff_base_ms must be >= 0 and backoff_cap_ms >= backoff_base_ms")

    def type_timeout_ms(self) -> dict[str, int]:
        """type_timeouts as job type -> ms (what the meta hash holds for addJobs); ValueError
        naming the bad item."""
        timeouts: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in self.type_timeouts.split(","))):
            job_type, _, seconds = item.rpartition("=")
            try:
                value = float(seconds)
            except ValueError:
                value = -1.0
            if not job_type or len(job_type.encode()) > MAX_JOB_TYPE_BYTES or \
                    not 0 < value <= MAX_TIMEOUT_S or job_type in timeouts:
                raise ValueError(f"type_timeouts: {item!r} must be TYPE=SECONDS, each type once, seconds "
                                 f"above 0 and at most {MAX_TIMEOUT_S}")
            timeouts[job_type] = max(1, round(value * 1000))
        return timeouts


@dataclass(frozen=True, slots=True)
class HubConfig:
    """The hub process: where it listens and how often it does its background work."""

    host: str = setting("127.0.0.1", "the address to listen on (0.0.0.0 for every interface)")
    port: int = setting(8765, "the port to listen on (0 picks a free one)")
    hub_id: str = setting("", "this hub's id among the hubs of a queue; unset: hub-PID-RANDOM")
    http_port: int = setting(8766, "the HTTP side's port (REST, SSE, /livez, /readyz, /metrics, "
                                   "docs/management.md 4); 0 turns it off")
    http_host: str | None = setting(None, "the HTTP side's address; unset: the hub's host")
    tls_certfile: str | None = setting(None, "serve wss:// (and https:// on the HTTP side) with this "
                                             "certificate chain (PEM); unset: plain ws:// and http://")
    tls_keyfile: str | None = setting(None, "the key of tls_certfile (PEM)")
    token: str | None = setting(None, "require this token on every connection, for every role; "
                                      "unset (and no *_tokens): none", secret=True)
    max_frame_bytes: int = setting(DEFAULT_MAX_FRAME_BYTES,
                                   "the largest frame either way; payloads get 4 KiB less")
    max_outbound_bytes: int = setting(16 << 20, "a peer that does not read while this much is "
                                                "queued for it is closed (4002)")
    heartbeat_interval_s: float = setting(10.0, "the heartbeat interval told to workers, at most a "
                                                "third of lease and liveness")
    sweep_interval_s: float = setting(1.0, "how often expired leases, due delayed jobs and gone "
                                           "workers are swept")
    stats_interval_s: float = setting(1.0, "how often subscribed monitors may get fresh stats")
    events_block_ms: int = setting(1000, "how long one read of the events stream waits for news")
    # many queues (docs/deployment.md 2): the default queue is the queue settings' name
    queues: str = setting("", "more queues to serve from the start, comma-separated (a connection "
                              "picks one with ?queue=NAME; without, the default queue)")
    queues_allowed: str = setting("", "queues opened on a connection's first use, as shell patterns, "
                                      "comma-separated ('*': any name); unset: only those served")
    max_queues: int = setting(64, "queues one hub serves at most (each costs a Redis connection for "
                                  "its scripts and one for its events)")
    # auth (docs/security.md): each *_tokens is a list separated by commas; a *_file holds more, one
    # or more a line; a flag shows in `ps`, so prefer the variables or the files
    token_file: str | None = setting(None, "read tokens for every role from this file")
    client_tokens: str | None = setting(None, "tokens that open the client role, TOKEN or "
                                              "TOKEN=TENANT, comma-separated", secret=True)
    client_tokens_file: str | None = setting(None, "read more client tokens from this file")
    worker_tokens: str | None = setting(None, "tokens that open the worker role, TOKEN or TOKEN=ID|"
                                              "PREFIX*|... (the worker ids it may register)", secret=True)
    worker_tokens_file: str | None = setting(None, "read more worker tokens from this file")
    monitor_tokens: str | None = setting(None, "tokens that open the monitor role, comma-separated",
                                         secret=True)
    monitor_tokens_file: str | None = setting(None, "read more monitor tokens from this file")
    admin_tokens: str | None = setting(None, "tokens that open every role and every job, "
                                             "comma-separated", secret=True)
    admin_tokens_file: str | None = setting(None, "read more admin tokens from this file")
    client_scope: Literal["all", "own"] = setting("all", "which jobs a client may see, follow, cancel "
                                                         "and retry: all, or only its own token's "
                                                         "(or tenant's)")
    max_inbound_bytes: int = setting(16 << 20, "a connection with this many bytes received but not yet "
                                               "handled is not read from until the hub catches up")
    max_inbound_total_bytes: int = setting(256 << 20, "the same over all connections: past it, each "
                                                      "connection that sends waits until the hub "
                                                      "catches up")
    max_connections: int = setting(10_000, "connections at once; more are refused with HTTP 503 (fewer "
                                           "when the process's descriptor limit is lower)")
    ping_interval_s: float = setting(20.0, "a connection silent for this long is pinged, and closed "
                                           "(1001) when no pong comes within as long again")
    max_subscriptions: int = setting(100_000, "job subscriptions of one connection; more: "
                                              "limit_exceeded")
    max_frames_per_s: float = setting(20_000.0, "frames one connection may send per second, on average; "
                                                "a frame over it is refused (limit_exceeded), not handled")
    max_frame_burst: int = setting(20_000, "frames one connection may send at once beyond "
                                           "max_frames_per_s")
    socket_receive_bytes: int = setting(256 << 10, "each connection's kernel receive buffer (the kernel "
                                                   "doubles it): what the hub reads at once, and how far "
                                                   "a connection can go over max_inbound_bytes")

    def __post_init__(self) -> None:
        for name in ("port", "http_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name} must be 0 to 65535, got {getattr(self, name)}")
        if self.max_frame_bytes <= FRAME_HEADROOM_BYTES:  # no room would be left for a payload
            raise ValueError(f"max_frame_bytes must be more than {FRAME_HEADROOM_BYTES}, got "
                             f"{self.max_frame_bytes}")
        # a sleep or an XREAD BLOCK of 0 or less would spin (or, for XREAD, block for ever); a limit of
        # 0 would refuse every connection or frame
        for name in ("max_outbound_bytes", "heartbeat_interval_s", "sweep_interval_s", "stats_interval_s",
                     "events_block_ms", "max_inbound_bytes", "max_inbound_total_bytes", "max_connections",
                     "ping_interval_s", "max_subscriptions", "max_frames_per_s", "max_frame_burst",
                     "socket_receive_bytes", "max_queues"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("give tls_certfile and tls_keyfile together (the certificate and its key)")
        if self.client_scope not in ("all", "own"):
            raise ValueError(f"client_scope must be all or own, got {self.client_scope!r}")
        self.queue_names()  # each name checked at start, not at a connection's first use
        if self.max_inbound_total_bytes < self.max_inbound_bytes:
            # else one busy connection would stop the hub reading from every other
            raise ValueError(f"max_inbound_total_bytes ({self.max_inbound_total_bytes}) must be at least "
                             f"max_inbound_bytes ({self.max_inbound_bytes}): raise it, or lower the other")


    def queue_names(self) -> list[str]:
        """The queues named in `queues` (checked), in order, without repeats."""
        names = [check_queue_name(name.strip()) for name in self.queues.split(",") if name.strip()]
        return list(dict.fromkeys(names))

    def allows_queue(self, name: str) -> bool:
        """Whether a queue not served yet may be opened on first use (queues_allowed)."""
        return any(fnmatch.fnmatchcase(name, pattern.strip())
                   for pattern in self.queues_allowed.split(",") if pattern.strip())


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """An `empfast worker` process; the Worker constructor's keyword arguments plus where to
    import the handlers from."""

    worker_id: str | None = setting(None, "a stable id; a restarted worker with the same id gets "
                                          "its jobs back; unset: HOST-PID-RANDOM")
    concurrency: int = setting(1, "jobs at once")
    grace_s: float = setting(30.0, "on SIGTERM, running jobs get this long to finish; the rest are "
                                   "failed as retryable")
    app_dir: str = setting(".", "where to import HANDLERS' module from")
    heartbeat_interval_s: float | None = setting(
        None, "send a heartbeat at least this often; unset: as often as the hub asks")
    progress_interval_s: float = setting(0.1, "at most one progress frame per job per this long")
    ack_timeout_s: float = setting(10.0, "an outcome the hub has not acknowledged after this long "
                                         "is sent again")
    reconnect_base_s: float = setting(0.1, "the first wait before reconnecting to the hub, doubling "
                                           "each try")
    reconnect_cap_s: float = setting(10.0, "the longest wait before reconnecting to the hub")


@dataclass(frozen=True, slots=True)
class HubAddress:
    """Where the client-side commands (worker, submit, status, retry, bench) find the hub."""

    url: str = setting("ws://127.0.0.1:8765", "the hub, ws://HOST:PORT")
    queue: str | None = setting(None, "the queue on the hub (it must serve it, or allow it); unset: "
                                      "the hub's default queue")
    token: str | None = setting(None, "the hub's token (a flag shows in `ps`: prefer the variable or "
                                      "token_file)", secret=True)
    token_file: str | None = setting(None, "read the hub's token from this file")

    def __post_init__(self) -> None:
        if self.token is not None and self.token_file is not None:
            raise ValueError("give the hub's token once: token or token_file")
        if self.queue is not None:
            check_queue_name(self.queue)
        if not self.url.startswith(("ws://", "wss://")):
            scheme, sep, rest = self.url.partition("://")
            suggestion = f"{'wss' if scheme == 'https' else 'ws'}://{rest if sep else self.url}"
            raise ValueError(f"the hub's url must be a WebSocket URL, ws://HOST:PORT (or wss://), not "
                             f"{self.url!r}: try --url {suggestion}")

    def resolved_token(self) -> str | None:
        """The token to send: `token`, or the first line of `token_file`."""
        return self.token if self.token_file is None else read_secret_file(self.token_file, "token_file")


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """Logging of the long-running commands, serve and worker."""

    log_level: Literal["debug", "info", "warning", "error"] = setting("info", "the least severe "
                                                                              "level logged")
    json_logs: bool = setting(False, "one JSON object per log line")
