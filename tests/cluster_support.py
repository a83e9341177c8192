"""A Redis Cluster of the tests' own: three masters on loopback free ports (redis-server
--cluster-enabled yes, joined by `redis-cli --cluster create`), each with AOF (fsync always) and its
nodes.conf in a folder of its own, so a master killed with -9 comes back with its slots and data.
Also: the queue names whose hash tag lands on each master, and moving one slot between masters the
way `redis-cli --cluster reshard` does (SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.crc import key_slot
from support import REDIS_BINARY, free_port

REDIS_CLI = shutil.which("redis-cli")


def _ask(port: int, *args: object) -> object:
    with redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=1, decode_responses=True) as r:
        return r.execute_command(*args)


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is free too, so at most 55535."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


def queue_slot(queue: str) -> int:
    """The slot of every key of a queue: its keys share the hash tag {queue} (docs/data-model.md)."""
    return key_slot(f"{{{queue}}}:meta".encode())


class ClusterNodes:
    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.workdir = workdir
        self.ports = [free_cluster_port() for _ in range(masters)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """One node's address: the cluster client finds the others."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        assert REDIS_CLI, "redis-cli ships with redis-server"
        subprocess.run([REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ok()

    def start_node(self, port: int) -> None:
        assert REDIS_BINARY
        folder = self.workdir / str(port)
        folder.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [REDIS_BINARY, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", "--dir", str(folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--logfile", str(folder / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait(f"redis-server on {port}", lambda: _ask(port, "PING") is True)

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.kill()
        process.wait(timeout=10)

    def close(self) -> None:
        for port in list(self.processes):
            self.kill(port)

    def wait_ok(self, timeout_s: float = 30) -> None:
        """Every node says the cluster is ok and knows every slot's owner."""
        def ok() -> bool:
            for port in self.ports:
                info = str(_ask(port, "CLUSTER", "INFO"))
                if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                    return False
            return True
        self._wait("the cluster's state ok", ok, timeout_s)

    def owner(self, slot: int) -> int:
        """The port of the master that serves a slot now."""
        for start, end, master, *_ in _ask(self.ports[0], "CLUSTER", "SLOTS"):  # type: ignore[misc]
            if start <= slot <= end:
                return int(master[1])
        raise AssertionError(f"no master serves slot {slot}")

    def queues_on_each_master(self, prefix: str) -> dict[int, str]:
        """A queue name per master (port -> name) whose slot that master serves."""
        found: dict[int, str] = {}
        n = 0
        while len(found) < len(self.ports):
            name = f"{prefix}{n}"
            found.setdefault(self.owner(queue_slot(name)), name)
            n += 1
        return found

    def move_slot(self, slot: int, to_port: int) -> None:
        """Move one slot and its keys to another master, as a resharding does."""
        source = self.owner(slot)
        source_id, target_id = _ask(source, "CLUSTER", "MYID"), _ask(to_port, "CLUSTER", "MYID")
        _ask(to_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        _ask(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := _ask(source, "CLUSTER", "GETKEYSINSLOT", slot, 100):
            _ask(source, "MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)  # type: ignore[misc]
        for port in self.ports:
            _ask(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self._wait(f"slot {slot} on {to_port} for every node", lambda: all(
            self._owner_seen_by(port, slot) == to_port for port in self.ports))

    def _owner_seen_by(self, port: int, slot: int) -> int | None:
        for start, end, master, *_ in _ask(port, "CLUSTER", "SLOTS"):  # type: ignore[misc]
            if start <= slot <= end:
                return int(master[1])
        return None

    @staticmethod
    def _wait(what: str, ready: object, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if ready():  # type: ignore[operator]
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout_s} s for {what}")
            time.sleep(0.05)
