"""The options of `empfast serve` and `empfast worker`, derived from the settings dataclasses: each
field is a flag and an EMPFAST_* variable, a flag beats its variable, a bad value is refused in one
line. All in this process: run_hub and the worker are replaced by recorders, so nothing listens."""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest
from in_process import run_in_process

from empfast import cli
from empfast.config import (
    HubAddress,
    HubConfig,
    LoggingSettings,
    QueueSettings,
    RedisOptions,
    WorkerSettings,
)
from empfast.worker import Worker

SETTINGS_OF_COMMAND: dict[str, tuple[type[Any], ...]] = {
    "serve": (HubConfig, QueueSettings, RedisOptions, LoggingSettings),
    "worker": (WorkerSettings, HubAddress, LoggingSettings),
}
REDIS_URL = "redis://127.0.0.1:1/0"  # nothing connects to it: run_hub is a recorder


def option_name(settings: type[Any], field_name: str) -> str:
    """The documented naming: the field's name, Redis options prefixed, the queue's name --queue."""
    if settings is RedisOptions:
        return f"redis_{field_name}"
    if settings is QueueSettings and field_name == "name":
        return "queue"
    return field_name


def flag(settings: type[Any], field_name: str) -> str:
    return "--" + option_name(settings, field_name).replace("_", "-")


def variable(settings: type[Any], field_name: str) -> str:
    return "EMPFAST_" + option_name(settings, field_name).upper()


def value_other_than_default(field: dataclasses.Field[Any], hint: Any,
                             owner: type[Any] | None = None) -> Any:
    default = field.default
    if field.name == "url":  # the hub's address must be a WebSocket URL, Redis's a Redis URL
        return "redis://other-host:1/2" if owner is RedisOptions else "ws://other-host:1"
    if field.name == "type_timeouts":  # TYPE=SECONDS items, checked at start
        return "resize=60,render=600"
    if get_origin(hint) is not Literal and type(None) in get_args(hint):
        (hint,) = [arg for arg in get_args(hint) if arg is not type(None)]
    if get_origin(hint) is Literal:
        return next(choice for choice in get_args(hint) if choice != default)
    if hint is bool:
        return not default
    if hint is int:
        return default + 1
    if hint is float:
        return (default or 0.0) + 0.5
    return "other-value"


def as_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.fixture(autouse=True)
def _a_clean_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EMPFAST_ variable of the developer's shell; serve and worker in process must not replace
    pytest's log handlers, and the worker puts --app-dir on sys.path."""
    for name in [name for name in os.environ if name.startswith("EMPFAST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(cli, "setup_logging", lambda settings: None)
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> dict[type[Any], Any]:
    """The settings objects serve or worker was started with, by class (None: RedisOptions absent)."""
    got: dict[type[Any], Any] = {}

    async def record_hub(config: HubConfig, settings: QueueSettings, redis: RedisOptions | None) -> None:
        got.update({HubConfig: config, QueueSettings: settings, RedisOptions: redis})

    async def record_worker(hub: HubAddress, settings: WorkerSettings, handlers: Mapping[str, Any]) -> None:
        got.update({HubAddress: hub, WorkerSettings: settings})

    monkeypatch.setattr(cli, "run_hub", record_hub)
    monkeypatch.setattr(cli, "run_worker_command", record_worker)
    monkeypatch.setattr(cli, "setup_logging", lambda settings: got.update({LoggingSettings: settings}))
    return got


def start(command: str, *args: str) -> None:
    """Run the command with these arguments; serve on a Redis URL unless one is given, so that
    every Redis option applies."""
    url_given = "--redis-url" in args or os.environ.get("EMPFAST_REDIS_URL")
    extra = ("--redis-url", REDIS_URL) if command == "serve" and not url_given else ()
    proc = run_in_process(command, *extra, *args)
    assert proc.returncode == 0, proc.stderr


# settings that are only valid together: each is given with its companion's flag
COMPANIONS = {"tls_certfile": ("--tls-keyfile", "key.pem"), "tls_keyfile": ("--tls-certfile", "cert.pem"),
              "sentinels": ("--redis-master-name", "m"), "master_name": ("--redis-sentinels", "h:1"),
              "sentinel_password": ("--redis-sentinels", "h:1", "--redis-master-name", "m")}


@pytest.mark.parametrize("command", SETTINGS_OF_COMMAND)
def test_every_setting_has_a_flag_and_a_variable(command: str, received: dict[type[Any], Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for settings in SETTINGS_OF_COMMAND[command]:
        for field, hint in ((f, get_type_hints(settings)[f.name]) for f in dataclasses.fields(settings)):
            value = value_other_than_default(field, hint, settings)
            companion = COMPANIONS.get(field.name, ())
            if hint is bool:
                start(command, flag(settings, field.name).replace("--", "--" if value else "--no-", 1))
            else:
                start(command, flag(settings, field.name), as_text(value), *companion)
            assert getattr(received[settings], field.name) == value, flag(settings, field.name)

            received.clear()
            with monkeypatch.context() as env:
                env.setenv(variable(settings, field.name), as_text(value))
                start(command, *companion)
            assert getattr(received[settings], field.name) == value, variable(settings, field.name)


def test_a_flag_beats_its_variable_which_beats_the_default(received: dict[type[Any], Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    start("serve")
    assert received[HubConfig].port == HubConfig().port
    monkeypatch.setenv("EMPFAST_PORT", "1111")
    monkeypatch.setenv("EMPFAST_REDIS_KEEPALIVE", "false")
    start("serve")
    assert received[HubConfig].port == 1111 and received[RedisOptions].keepalive is False
    start("serve", "--port", "2222", "--redis-keepalive")
    assert received[HubConfig].port == 2222 and received[RedisOptions].keepalive is True
    monkeypatch.setenv("EMPFAST_PORT", "")  # as `docker run -e EMPFAST_PORT=` leaves it: unset
    start("serve")
    assert received[HubConfig].port == HubConfig().port


def test_serve_without_a_redis_url_uses_the_embedded_store(received: dict[type[Any], Any]) -> None:
    start("serve", "--redis-url", "")
    assert received[RedisOptions] is None
    start("serve", "--redis-url", "rediss://:secret@redis.example:6380/2", "--redis-ssl-ca-certs", "ca.pem")
    assert received[RedisOptions] == RedisOptions(url="rediss://:secret@redis.example:6380/2",
                                                  ssl_ca_certs="ca.pem")


def test_the_older_flags_and_variables_still_work(received: dict[type[Any], Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    start("serve", "--lease-s", "2", "--liveness-s", "3.5", "--heartbeat-s", "4", "--retry-backoff-s", "0.5",
          "--retry-backoff-cap-s", "60")
    assert dataclasses.astuple(received[QueueSettings])[1:5] == (2000, 3500, 500, 60_000)
    assert received[HubConfig].heartbeat_interval_s == 4.0
    monkeypatch.setenv("EMPFAST_LEASE_S", "7")
    start("serve")
    assert received[QueueSettings].lease_ms == 7000
    monkeypatch.setenv("EMPFAST_LEASE_MS", "9000")  # the field's own variable wins
    start("serve")
    assert received[QueueSettings].lease_ms == 9000
    assert "--lease-s SECONDS" in run_in_process("serve", "--help").stdout


@pytest.mark.parametrize(("args", "env", "says"), [
    (["serve", "--port", "abc"], {}, "argument --port: invalid int value: 'abc' (expected a whole number)"),
    (["serve"], {"EMPFAST_PORT": "abc"}, "EMPFAST_PORT: invalid int value: 'abc' (expected a whole number)"),
    (["serve", "--redis-retries", "x"], {}, "argument --redis-retries: invalid int value: 'x'"),
    (["serve", "--redis-url", REDIS_URL], {"EMPFAST_REDIS_KEEPALIVE": "maybe"},
     "EMPFAST_REDIS_KEEPALIVE: invalid bool value: 'maybe'"),
    (["serve", "--lease-ms", "0"], {}, "lease_ms must be positive, got 0"),
    (["serve"], {"EMPFAST_QUEUE": "a{b"}, "queue name 'a{b' is not valid"),
    (["serve", "--port", "70000"], {}, "port must be 0 to 65535, got 70000"),
    (["serve", "--sweep-interval-s", "-1"], {}, "sweep_interval_s must be positive, got -1.0"),
    (["serve", "--redis-url", REDIS_URL, "--redis-max-connections", "0"], {},
     "max_connections must be positive, got 0"),
    (["serve", "--log-level", "loud"], {}, "invalid choice: 'loud' (expected one of debug, info"),
    (["serve", "--redis-retries", "3"], {}, "--redis-retries: no effect without --redis-url"),
    (["worker", "--grace-s", "soon"], {}, "argument --grace-s: invalid float value: 'soon'"),
    (["worker"], {"EMPFAST_CONCURRENCY": "many"}, "EMPFAST_CONCURRENCY: invalid int value: 'many'"),
    (["worker", "--concurrency", "0"], {}, "concurrency must be 1 to 10000, got 0"),
])
def test_a_bad_value_is_refused_in_one_line(args: list[str], env: dict[str, str], says: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    proc = run_in_process(*args)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and says in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"empfast {args[0]}: ")


def test_every_worker_setting_reaches_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict[str, Any] = {}

    class RecordingWorker:
        def __init__(self, url: str, handlers: Mapping[str, Any], **options: Any) -> None:
            built.update(options, url=url)

        async def run(self) -> None:
            pass

    monkeypatch.setattr(cli, "Worker", RecordingWorker)
    settings = WorkerSettings(worker_id="w-1", concurrency=3, grace_s=1.5, heartbeat_interval_s=2.0,
                              progress_interval_s=0.2, ack_timeout_s=4.0, reconnect_base_s=0.3,
                              reconnect_cap_s=5.0)
    args = [arg for field in dataclasses.fields(settings) if field.name != "app_dir"
            for arg in (flag(WorkerSettings, field.name), str(getattr(settings, field.name)))]
    hub = ["--url", "ws://hub:1", "--queue", "q1", "--token", "t"]
    assert run_in_process("worker", *args, *hub).returncode == 0
    options = {name: value for name, value in dataclasses.asdict(settings).items() if name != "app_dir"}
    assert built == {**options, "url": "ws://hub:1", "queue": "q1", "token": "t"}


def test_worker_settings_default_as_the_worker_does() -> None:
    """WorkerSettings restates the Worker's keyword defaults; they must not drift apart."""
    worker_defaults = {name: parameter.default
                       for name, parameter in inspect.signature(Worker).parameters.items()}
    for field in dataclasses.fields(WorkerSettings):
        if field.name != "app_dir":
            assert field.default == worker_defaults[field.name], field.name


def test_a_redis_password_is_masked_where_the_hub_names_redis(caplog: pytest.LogCaptureFixture) -> None:
    """The start-up log line and the cannot-reach error name Redis by the same masked URL."""
    proc = run_in_process("serve", "--redis-url", "redis://user:hunter2@127.0.0.1:1/0", "--redis-retries",
                          "0", "--port", "0")
    assert proc.returncode == 2 and "cannot reach Redis at redis://user:***@127.0.0.1:1/0" in proc.stderr
    assert "hunter2" not in proc.stderr + caplog.text


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "redis://h", "redis://h:1/2", "redis://h/",
                                 "rediss://:pw@h:6380/0", "redis://user:pw@h:6379", "unix:///tmp/r.sock",
                                 "unix:///tmp/r.sock?db=3"])
def test_the_redis_url_forms_empfast_takes(url: str) -> None:
    assert RedisOptions(url=url).url == url


@pytest.mark.parametrize(("url", "says"), [
    ("redis:/127.0.0.1:6379/14", "did you mean redis://127.0.0.1:6379/14?"),  # ran on db 0 of localhost
    ("redis:/:s3cret@h:6379/1", "did you mean redis://***@h:6379/1?"),
    ("http://h:6379", "does not start with redis://"),
    ("redis://", "names no host"),
    ("redis://h:port", "port is not a number"),
    ("redis://h:99999", "port is not a number"),
    ("redis://h/abc", "is not a database number"),
    ("unix://", "three slashes"),
    ("unix:/tmp/r.sock", "does not start with"),
])
def test_a_redis_url_of_no_supported_form_is_refused_in_one_line(url: str, says: str) -> None:
    with pytest.raises(ValueError) as refused:
        RedisOptions(url=url)
    message = str(refused.value)
    assert says in message and "\n" not in message and "s3cret" not in message
    assert "redis://[:PASSWORD@]HOST[:PORT][/DB]" in message


def test_serve_refuses_a_malformed_redis_url_before_anything_is_written() -> None:
    proc = run_in_process("serve", "--redis-url", "redis:/127.0.0.1:6379/14", "--port", "0")
    assert proc.returncode == 2 and "did you mean redis://127.0.0.1:6379/14?" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
