"""Redis Sentinel (issue 11, section 3 of docs/deployment.md): the settings that name the Sentinels
(a redis+sentinel:// URL, or --redis-sentinels with --redis-master-name) and their refusals; the
store's connections that ask the Sentinels for the master at every connect and leave a server that
became a replica; and, on real servers the tests start (a master, a replica, three Sentinels on
loopback), kill -9 of the master under load, twice, counting what clients saw
(tests/faults/sentinels.py)."""

from __future__ import annotations

from typing import Any

import pytest
from in_process import run_in_process

from empfast import cli
from empfast.config import QueueSettings, RedisOptions, SentinelTarget

URL = "redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380/mymaster/2"


@pytest.mark.parametrize(("url", "target"), [
    (URL, SentinelTarget((("10.0.0.1", 26379), ("10.0.0.2", 26380)), "mymaster", 2, None, "s3cret")),
    ("redis+sentinel://s1/m", SentinelTarget((("s1", 26379),), "m")),  # the Sentinels' own port by default
    ("redis+sentinel://s1:1,s2:2,s3:3/m/", SentinelTarget((("s1", 1), ("s2", 2), ("s3", 3)), "m")),
    ("rediss+sentinel://user:p%40ss@[::1]:26379/m/0",
     SentinelTarget((("::1", 26379),), "m", 0, "user", "p@ss", tls=True)),
])
def test_the_sentinel_url_forms_empfast_takes(url: str, target: SentinelTarget) -> None:
    assert RedisOptions(url=url).sentinel_target() == target


def test_the_sentinels_as_settings_take_the_password_db_and_tls_of_the_url() -> None:
    options = RedisOptions(url="rediss://:pw@ignored:1/4", sentinels="10.0.0.1:26379, 10.0.0.2",
                           master_name="main")
    assert options.sentinel_target() == SentinelTarget((("10.0.0.1", 26379), ("10.0.0.2", 26379)), "main",
                                                       4, None, "pw", tls=True)
    assert options.masked_url() == "rediss+sentinel://:***@10.0.0.1:26379,10.0.0.2:26379/main/4"
    assert RedisOptions(url=URL).masked_url() == "redis+sentinel://:***@10.0.0.1:26379,10.0.0.2:26380/mymaster/2"
    assert RedisOptions().sentinel_target() is None


@pytest.mark.parametrize(("url", "says"), [
    ("redis+sentinel://:s3cret@10.0.0.1:26379", "it names no master"),
    ("redis+sentinel://:s3cret@/mymaster", "it names no Sentinel"),
    ("redis+sentinel://h:99999/m", "'h:99999' is not a Sentinel's address"),
    ("redis+sentinel://h:port/m", "'h:port' is not a Sentinel's address"),
    ("redis+sentinel://h1,,h2/m", "'' is not a Sentinel's address"),
    ("redis+sentinel://h/m/db2", "'db2', is not a database number"),
    ("redis+sentinel://h/m/1/2", "'1/2', is not a database number"),
    ("redis+sentinel://h/m?db=1", "a query or a fragment"),
    ("redis+sentinel:/:s3cret@h/m", "did you mean redis+sentinel://***@h/m?"),
])
def test_a_malformed_sentinel_url_is_refused_in_one_line_without_its_password(url: str, says: str) -> None:
    with pytest.raises(ValueError) as refused:
        RedisOptions(url=url)
    message = str(refused.value)
    assert says in message and "\n" not in message and "s3cret" not in message
    assert "redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]" in message


@pytest.mark.parametrize(("options", "says"), [
    ({"sentinels": "h:1"}, "give sentinels and master_name together"),
    ({"master_name": "m"}, "give sentinels and master_name together"),
    ({"sentinels": "h:1", "master_name": ""}, "master_name is empty"),
    ({"sentinels": "h:1;h:2", "master_name": "m"}, "sentinels: 'h:1;h:2' is not a Sentinel's address"),
    ({"sentinels": "h:1", "master_name": "m", "url": "redis+sentinel://h:1/m"}, "give the Sentinels once"),
    ({"sentinels": "h:1", "master_name": "m", "url": "unix:///r.sock"}, "not a unix:// one"),
    ({"sentinel_password": "pw"}, "sentinel_password has no effect without Sentinels"),
    ({"url": URL, "password": "pw"}, "give the Redis password once"),
])
def test_sentinel_settings_that_do_not_go_together_are_refused_in_one_line(options: dict[str, Any],
                                                                           says: str) -> None:
    with pytest.raises(ValueError) as refused:
        RedisOptions(**options)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_serve_takes_the_sentinels_without_a_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    got: dict[str, Any] = {}

    async def record_hub(config: Any, settings: QueueSettings, redis: RedisOptions | None) -> None:
        got["redis"] = redis

    monkeypatch.setattr(cli, "run_hub", record_hub)
    monkeypatch.setattr(cli, "setup_logging", lambda settings: None)
    for name in ("EMPFAST_REDIS_URL", "EMPFAST_REDIS_SENTINELS", "EMPFAST_REDIS_MASTER_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EMPFAST_REDIS_SENTINEL_PASSWORD", "sentinel-pw")
    proc = run_in_process("serve", "--redis-sentinels", "s1:1,s2:2", "--redis-master-name", "m")
    assert proc.returncode == 0, proc.stderr
    assert got["redis"] == RedisOptions(sentinels="s1:1,s2:2", master_name="m",
                                        sentinel_password="sentinel-pw")
    assert "sentinel-pw" not in repr(got["redis"])
    proc = run_in_process("serve", "--redis-master-name", "m")
    assert proc.returncode == 2 and "give sentinels and master_name together" in proc.stderr
