"""Fixtures of the fault tests: a Cluster factory whose processes are all killed at the end, even
when the test failed (then their logs' last lines are printed), and the figures every scenario
counted, printed at the end of the run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from figures import SUMMARY
from support import require_redis_binary

from .harness import Cluster

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


@pytest.fixture
def make_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Cluster]]:
    """Cluster(workdir, **settings) factory; every process of every cluster is killed at teardown."""
    require_redis_binary("the fault tests need one")
    made: list[Cluster] = []

    def make(**settings: Any) -> Cluster:
        workdir = tmp_path / f"cluster-{len(made)}"
        workdir.mkdir()
        cluster = Cluster(workdir, **settings)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.close()
        if request.node.stash.get(_FAILED, False):
            for cluster in made:
                print(cluster.logs())


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUMMARY:
        terminalreporter.section("fault and fuzz tests: what clients saw")
        for line in SUMMARY:
            terminalreporter.line(line)
