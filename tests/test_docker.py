"""The Docker image, built by docker/build.sh as CI and users build it, and run for real: a hub
container and a worker container on a redis-server of the test's own, a job from the host through
the client SDK, the image's health check, a clean stop on SIGTERM; and the compose file.

Containers use the host's network (loopback only), so nothing leaves this machine. Skipped when
Docker is missing, unless EMPFAST_REQUIRE_DOCKER is set (CI sets it): then that is a failure.
The figures (build seconds, image bytes) go to $EMPFAST_ARTIFACTS/docker.json when it is set."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker_support import (
    build,
    containers,
    docker,
    docker_missing,
    image_size,
    inspect,
    json_lines,
    require_docker,
    wait_until,
)
from support import RedisServer, free_port, listening

from empfast.client import Client

IMAGE = "empfast:test"
COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
FIGURES: dict[str, float] = {}


def record(**figures: float) -> None:
    """Keep a figure: printed, and written with the others to the CI artefacts when they are kept."""
    FIGURES.update(figures)
    print(", ".join(f"{name} {value:g}" for name, value in figures.items()))
    if folder := os.environ.get("EMPFAST_ARTIFACTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "docker.json").write_text(json.dumps(FIGURES, indent=1) + "\n")


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The project's image, built once for this module (kept afterwards: its layers cache the
    next build)."""
    require_docker()
    seconds = build(IMAGE)
    record(image_build_s=round(seconds, 1), image_mb=round(image_size(IMAGE) / 1e6, 1))
    yield IMAGE


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


async def run_one_job(url: str) -> object:
    async with Client(url) as client:
        job = await client.submit("echo", {"from": "the host"})
        return await job.result(timeout=30)


def test_the_image_holds_a_venv_and_no_compiler_and_runs_as_a_user(image: str) -> None:
    assert inspect(image, "{{.Config.User}}") == "empfast"
    assert inspect(image, "{{json .Config.Entrypoint}}") == '["empfast"]'
    assert inspect(image, "{{json .Config.Cmd}}") == '["serve"]'
    found = docker("run", "--rm", "--entrypoint", "/bin/sh", image, "-c",
                   "command -v gcc cc || true; command -v empfast; id -u", timeout=60).stdout.split()
    assert found == ["/opt/empfast/bin/empfast", "10001"], found


def test_a_hub_and_a_worker_in_containers_run_a_job_on_redis(image: str, redis_server: RedisServer) -> None:
    """The hub and worker containers on the test's redis-server; the job comes from the host."""
    port, http_port = free_port(), free_port()
    # on the host's network the hub listens on loopback only, not on every interface of the machine
    network = ["--network", "host", "-e", "EMPFAST_HOST=127.0.0.1"]
    started = time.monotonic()
    with containers() as made:
        hub = made.run("hub", *network, "--health-interval", "1s", "-e", f"EMPFAST_PORT={port}",
                       "-e", f"EMPFAST_HTTP_PORT={http_port}", "-e", f"EMPFAST_REDIS_URL={redis_server.url}",
                       image, "serve", "--queue", "docker-test")
        wait_until(lambda: listening(port), 30, "the hub container listens", made.all_logs)
        worker = made.run("worker", *network, "--health-interval", "1s",
                          "-e", f"EMPFAST_URL=ws://127.0.0.1:{port}", image, "worker", "--concurrency", "2")

        assert asyncio.run(run_one_job(f"ws://127.0.0.1:{port}")) == {"from": "the host"}

        status, page = http_get(f"http://127.0.0.1:{http_port}/")  # the dashboard, from the package data
        assert status == 200 and "<title>empfast</title>" in page
        assert http_get(f"http://127.0.0.1:{http_port}/readyz")[0] == 200  # Redis and the Lua scripts
        for name in (hub, worker):
            wait_until(lambda name=name: inspect(name, "{{.State.Health.Status}}") == "healthy", 30,
                       f"{name} is healthy", lambda name=name: inspect(name, "{{json .State.Health}}"))
        assert docker("exec", hub, "id", "-un").stdout.strip() == "empfast"

        stopping = time.monotonic()
        docker("stop", "--time", "10", hub, timeout=30)  # SIGTERM, then SIGKILL after 10 s
        stop_s = time.monotonic() - stopping
        assert inspect(hub, "{{.State.ExitCode}}") == "0", made.logs(hub)
        assert stop_s < 5, f"the hub took {stop_s:.1f} s to stop on SIGTERM"
        messages = [line.get("msg") for line in json_lines(made.logs(hub))]
        assert "stopping" in messages and messages[-1] == "stopped", messages
    record(container_run_s=round(time.monotonic() - started, 1), hub_stop_s=round(stop_s, 2))


def compose(project: str, env: dict[str, str], *args: str, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """docker-compose (Debian's 1.29, as CI installs it) on the project's file, bounded in time."""
    done = subprocess.run(["docker-compose", "-f", str(COMPOSE_FILE), "-p", project, *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})
    if check and done.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)} failed: {done.stderr.strip()[-3000:]}")
    return done


def require_compose() -> None:
    if not shutil.which("docker-compose"):
        docker_missing("no docker-compose command")


def test_the_compose_file_is_valid_as_written() -> None:
    """As a user runs it, with the official images' names; and every service's image is a variable."""
    require_compose()
    defaults = compose("empfast", {}, "config")
    assert "image: redis:7" in defaults.stdout and "appendonly" in defaults.stdout
    chosen = compose("empfast", {"EMPFAST_IMAGE": "mine:1", "EMPFAST_REDIS_IMAGE": "r:1",
                                 "EMPFAST_HAPROXY_IMAGE": "h:1"}, "config", "--services")
    assert set(chosen.stdout.split()) == {"redis", "hub1", "hub2", "lb", "worker"}
    images = compose("empfast", {"EMPFAST_IMAGE": "mine:1", "EMPFAST_REDIS_IMAGE": "r:1",
                                 "EMPFAST_HAPROXY_IMAGE": "h:1"}, "config").stdout
    assert {line.split()[-1] for line in images.splitlines() if "image:" in line} == {"mine:1", "r:1", "h:1"}


def workers_behind(http_url: str) -> list[dict[str, object]]:
    """The workers that the hubs behind the balancer know (they share them through Redis)."""
    try:
        return json.loads(http_get(f"{http_url}/api/workers")[1])["workers"]
    except OSError:
        return []


def hub_id(project: str, env: dict[str, str], service: str) -> str:
    """A compose hub's id, from its first log line (`empfast hub ID on ws://...`)."""
    for line in json_lines(compose(project, env, "logs", "--no-color", "--no-log-prefix", service).stdout):
        words = str(line.get("msg", "")).split()
        if words[:2] == ["empfast", "hub"]:
            return words[2]
    raise AssertionError(f"no hub id in the log of {service}")


def test_the_compose_stack_runs_a_job_through_the_balancer(image: str) -> None:
    """Redis (AOF), two hubs, HAProxy and two workers, on stand-ins of the redis and haproxy images
    (docker/build.sh --stand-ins) where those cannot be pulled; a job from the host through HAProxy,
    and another once a hub is killed."""
    require_compose()
    build(image, "--stand-ins")
    port, http_port = free_port(), free_port()
    project = f"empfast-test-{os.getpid()}"
    env = {"EMPFAST_IMAGE": image, "EMPFAST_REDIS_IMAGE": "empfast-redis:local",
           "EMPFAST_HAPROXY_IMAGE": "empfast-haproxy:local", "EMPFAST_LB_ADDRESS": "127.0.0.1",
           "EMPFAST_LB_PORT": str(port), "EMPFAST_LB_HTTP_PORT": str(http_port)}
    started = time.monotonic()
    try:
        compose(project, env, "up", "-d", "--no-build")

        def ready() -> bool:
            try:
                return http_get(f"http://127.0.0.1:{http_port}/readyz")[0] == 200
            except OSError:
                return False

        logs = lambda: compose(project, env, "logs", "--tail", "20", check=False).stdout  # noqa: E731
        wait_until(ready, 60, "a hub is ready behind the balancer", logs)
        http_url = f"http://127.0.0.1:{http_port}"
        wait_until(lambda: len(workers_behind(http_url)) == 2, 60, "both workers registered", logs)
        assert asyncio.run(run_one_job(f"ws://127.0.0.1:{port}")) == {"from": "the host"}
        aof = compose(project, env, "exec", "-T", "redis", "redis-cli", "config", "get", "appendonly")
        assert aof.stdout.split() == ["appendonly", "yes"]
        hubs = {worker["hub"] for worker in workers_behind(http_url)}
        record(compose_up_to_result_s=round(time.monotonic() - started, 1),
               compose_hubs_with_workers=len(hubs))

        # a hub that holds a worker killed: HAProxy sends new connections to the other, the
        # workers that were on the dead one reconnect through it, and a job still runs
        victim = next(service for service in ("hub1", "hub2") if hub_id(project, env, service) in hubs)
        survivor = hub_id(project, env, "hub2" if victim == "hub1" else "hub1")
        compose(project, env, "kill", "-s", "SIGKILL", victim)
        killed = time.monotonic()
        assert asyncio.run(run_one_job(f"ws://127.0.0.1:{port}")) == {"from": "the host"}
        wait_until(lambda: [w["hub"] for w in workers_behind(http_url)] == [survivor] * 2, 30,
                   f"both workers back on the surviving hub {survivor}", logs)
        record(compose_workers_moved_after_hub_killed_s=round(time.monotonic() - killed, 1))
    except BaseException:
        print(compose(project, env, "logs", "--tail", "50", check=False).stdout)
        raise
    finally:
        stopping = time.monotonic()
        compose(project, env, "down", "-v", "--timeout", "10", check=False)
        print(f"compose down in {time.monotonic() - stopping:.1f} s")
