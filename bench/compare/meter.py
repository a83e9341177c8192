"""What a workload cost, measured from outside the peers: Redis's own statistics (CONFIG RESETSTAT
before, INFO commandstats and INFO cpu after) and the CPU time of the hub and load processes
(/proc/PID/stat). The same code measures every peer, so their figures compare."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

SCRIPT_COMMANDS = ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro")
# the meter's own calls, left out of the counts
METER_COMMANDS = ("info", "config")


@dataclass
class Usage:
    """One workload's cost: wall time, every Redis command called (scripts' inner `redis.call`s
    included: Redis counts those too), Redis's CPU, and each watched process's CPU."""

    wall_s: float
    commands: dict[str, int]
    redis_cpu_s: float
    # wall time Redis spent inside scripts (commandstats usec of EVALSHA and kin, their inner calls
    # included); wall, not CPU: on a busy machine it counts the time Redis was not scheduled, so
    # it is in the JSON only, not in the table
    script_s: float
    process_cpu_s: dict[str, float | None] = field(default_factory=dict)

    @property
    def total_commands(self) -> int:
        return sum(self.commands.values())

    @property
    def script_calls(self) -> int:
        return sum(self.commands.get(name, 0) for name in SCRIPT_COMMANDS)


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (None where /proc is not there)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name in parentheses may hold spaces; utime and stime are fields 14 and 15
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Brackets a workload: `start()` right before it, `stop()` right after."""

    def __init__(self, redis_port: int, pids: dict[str, int]) -> None:
        self.client = redis.Redis(port=redis_port)
        self.pids = pids
        self._began = 0.0
        self._redis_cpu = 0.0
        self._process_cpu: dict[str, float | None] = {}

    def _redis_cpu_s(self) -> float:
        cpu = self.client.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def start(self) -> None:
        self.client.config_resetstat()
        self._redis_cpu = self._redis_cpu_s()
        self._process_cpu = {name: process_cpu_s(pid) for name, pid in self.pids.items()}
        self._began = time.perf_counter()

    def stop(self) -> Usage:
        wall_s = time.perf_counter() - self._began
        redis_cpu_s = self._redis_cpu_s() - self._redis_cpu
        stats = self.client.info("commandstats")
        commands = {}
        script_us = 0
        for key, value in stats.items():
            name = key.removeprefix("cmdstat_")
            if not name.startswith(METER_COMMANDS):
                commands[name] = int(value["calls"])
            if name in SCRIPT_COMMANDS:
                script_us += int(value["usec"])
        cpu: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            now, before = process_cpu_s(pid), self._process_cpu.get(name)
            cpu[name] = None if now is None or before is None else now - before
        return Usage(wall_s, commands, redis_cpu_s, script_us / 1e6, cpu)

    def close(self) -> None:
        self.client.close()
