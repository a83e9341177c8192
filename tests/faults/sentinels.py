"""A fault-test cluster behind Redis Sentinels: two redis-servers (a master and its replica) and
three Sentinels (quorum 2) on loopback free ports, hubs that find the master through them, and the
waits a failover test needs (the master the Sentinels agree on, a replica in sync and known to them).

The Sentinels run as `redis-sentinel CONF` when that command exists, else as `redis-server CONF
--sentinel` (the same binary). Every process is a harness.Proc, killed by Cluster.close()."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
from support import REDIS_BINARY, free_port

from .harness import Cluster, Proc, _wait_for

SENTINEL_BINARY = shutil.which("redis-sentinel")
MASTER_NAME = "empfast"
# a master silent this long is down for a Sentinel (then 2 agree: failover). Not 1000: on this busy
# 2-core VM, a Sentinel once found a master down 1 s after its promotion (the first ping answered
# late) and failed it over to the replica just restarted, not yet in sync (1 run of 16 failovers)
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 2000  # also how soon a Sentinel may try again after a failed attempt


def _ask(port: int, *args: Any) -> Any:
    with redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=0.5, decode_responses=True) as r:
        return r.execute_command(*args)


class SentinelCluster(Cluster):
    """Redis nodes watched by Sentinels; the hubs get --redis-sentinels and --redis-master-name."""

    def __init__(self, workdir: Path, **settings: Any) -> None:
        super().__init__(workdir, **settings)
        self.node_ports = [free_port(), free_port()]
        self.nodes: dict[int, Proc] = {}
        self.sentinel_ports = [free_port() for _ in range(3)]

    @property
    def sentinels(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def hub_redis_args(self) -> list[str]:
        return ["--redis-sentinels", self.sentinels, "--redis-master-name", MASTER_NAME]

    def redis_client(self) -> redis.Redis:
        """A client of the master the Sentinels name now (the tally reads the final state there)."""
        return redis.Redis(port=self.master_port(), socket_timeout=5, decode_responses=True)

    # ---- the Redis nodes --------------------------------------------------------------------------

    def start_node(self, port: int, replica_of: int | None = None) -> None:
        """A redis-server on `port` without persistence (what a replica has not received, a kill
        loses), a replica of `replica_of` when given; returns once it answers. Each start gets an
        empty folder: a replica writes the RDB of its full sync there, which a restart would load
        (stale data, until it syncs again). A full sync starts at once (no 5 s diskless delay)."""
        assert REDIS_BINARY
        folder = self.workdir / f"node-{port}-{len(self._all)}"
        folder.mkdir()
        args = [REDIS_BINARY, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(folder), "--repl-diskless-sync-delay", "0"]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.nodes[port] = self._spawn(f"redis-{port}-{len(self._all)}", args)

        def answers() -> bool:
            try:
                return bool(_ask(port, "PING"))
            except redis.RedisError:
                return False

        _wait_for(f"redis-server on {port}", answers, 20, self.nodes[port].popen)

    def kill_node(self, port: int) -> None:
        self.nodes[port].kill()
        self.killed["redis"] += 1

    def wait_replica_in_sync(self, port: int, timeout_s: float = 30) -> None:
        """The replica on `port` has its link to the master up, and every Sentinel lists it as a
        replica in good standing (a replica they do not know, or think down, is never promoted)."""
        def ready() -> bool:
            try:
                if _ask(port, "INFO", "replication").get("master_link_status") != "up":
                    return False
                for sentinel in self.sentinel_ports:
                    replicas = _ask(sentinel, "SENTINEL", "REPLICAS", MASTER_NAME)
                    flags = {_field(r, "port"): _field(r, "flags") for r in replicas}
                    if flags.get(str(port)) != "slave":
                        return False
                return True
            except redis.RedisError:
                return False

        _wait_for(f"the replica on {port} in sync and known to the Sentinels", ready, timeout_s)

    # ---- the Sentinels ----------------------------------------------------------------------------

    def start_sentinels(self, master_port: int, timeout_s: float = 30) -> None:
        """Three Sentinels on the master at `master_port`, quorum 2; returns once each knows the
        other two and the replica (a Sentinel alone can neither reach the quorum nor be elected)."""
        assert REDIS_BINARY
        for port in self.sentinel_ports:
            conf = self.workdir / f"sentinel-{port}.conf"  # a Sentinel rewrites its configuration
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
                            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                            f"sentinel parallel-syncs {MASTER_NAME} 1\n")
            command = [SENTINEL_BINARY, str(conf)] if SENTINEL_BINARY else [REDIS_BINARY, str(conf),
                                                                            "--sentinel"]
            self._spawn(f"sentinel-{port}", command)

        def acquainted() -> bool:
            try:
                for port in self.sentinel_ports:
                    state = _ask(port, "SENTINEL", "MASTER", MASTER_NAME)
                    if int(_field(state, "num-other-sentinels")) < 2 or int(_field(state, "num-slaves")) < 1:
                        return False
                return True
            except redis.RedisError:
                return False

        _wait_for("three Sentinels that know each other and the replica", acquainted, timeout_s)

    def master_port(self) -> int:
        """The master's port as most Sentinels name it (during a failover they may disagree)."""
        named: Counter[int] = Counter()
        for port in self.sentinel_ports:
            try:
                named[int(_ask(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)[1])] += 1
            except (redis.RedisError, TypeError):
                continue
        port, votes = (named.most_common(1) or [(0, 0)])[0]
        if votes < 2:
            raise RuntimeError(f"the Sentinels do not agree on a master: {dict(named)}")
        return port

    def wait_promoted(self, old_port: int, timeout_s: float = 30) -> tuple[int, float]:
        """Wait until the Sentinels name another master than `old_port` and it says it is one; that
        master's port and how long the wait took."""
        started = time.monotonic()
        found: list[int] = []

        def promoted() -> bool:
            try:
                port = self.master_port()
                if port != old_port and _ask(port, "ROLE")[0] == "master":
                    found.append(port)
                    return True
            except (redis.RedisError, RuntimeError):
                pass
            return False

        _wait_for(f"a new master instead of {old_port}", promoted, timeout_s)
        return found[-1], time.monotonic() - started


def _field(flat: Any, name: str) -> str:
    """A field of a Sentinel's reply: a dict (RESP3, or redis-py's parsing) or a flat list."""
    if isinstance(flat, dict):
        return str(flat[name])
    return str(flat[flat.index(name) + 1])
