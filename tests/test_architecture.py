"""docs/architecture.md names files and functions at each step of a job's path: each must exist, so
the page cannot drift from the code unnoticed. And the import rules it states hold."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"
# the classes the page names, by their names in backticks
CLASSES = {
    "Client": "empfast.client.client", "Watch": "empfast.client.jobs", "JobHandle": "empfast.client.jobs",
    "Connection": "empfast.connection", "Peer": "empfast.hub.conn", "WorkerSlots": "empfast.hub.conn",
    "Hub": "empfast.hub.server", "QueueRoom": "empfast.hub.room", "ClientHandlers": "empfast.hub.clients",
    "WorkerHandlers": "empfast.hub.workers", "MonitorHandlers": "empfast.hub.monitors",
    "Dispatcher": "empfast.hub.dispatch", "Store": "empfast.store.store", "Worker": "empfast.worker.worker",
    "Job": "empfast.worker.job", "Outbox": "empfast.worker.outbox", "Outcome": "empfast.worker.job",
    "ProgressReports": "empfast.worker.progress",
}
# the store talks to Redis; the hub and the CLI only name its errors, to answer `unavailable` and to
# say that Redis cannot be reached
REDIS_IMPORTERS = {"empfast.store.store", "empfast.store.events", "empfast.store.redis_client",
                   "empfast.store.pipelined", "empfast.store.bulk", "empfast.store.workers",
                   "empfast.store.schedules",
                   "empfast.hub.conn", "empfast.cli"}
MODULES = {"protocol": "empfast.protocol", "messages": "empfast.messages", "decoding": "empfast.decoding",
           "msgspec": "msgspec",
           "frames": "empfast.hub.frames", "worker/job": "empfast.worker.job"}


def names_in_page() -> list[str]:
    return re.findall(r"`([^`\s]+)`", PAGE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted({n for n in names_in_page() if n.endswith((".py", ".lua"))}))
def test_every_file_the_page_names_exists(path: str) -> None:
    found = [hit for base in (ROOT, ROOT / "empfast", ROOT / "lua") for hit in base.glob(path)]
    assert found, f"docs/architecture.md names {path}, which does not exist"


def dotted_names() -> list[str]:
    return sorted({n for n in names_in_page()
                   if re.fullmatch(r"[\w/]+\.\w+", n) and not n.endswith((".py", ".lua", ".md"))})


@pytest.mark.parametrize("dotted", dotted_names())
def test_every_function_the_page_names_exists(dotted: str) -> None:
    owner, attribute = dotted.rsplit(".", 1)
    if owner in CLASSES:
        target = getattr(importlib.import_module(CLASSES[owner]), owner)
    elif owner in MODULES:
        target = importlib.import_module(MODULES[owner])
    else:
        pytest.fail(f"docs/architecture.md names {dotted!r}: add its owner to this test's tables")
    assert hasattr(target, attribute), f"docs/architecture.md names {dotted}, which does not exist"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_imports_flow_one_way() -> None:
    """Only the store talks to Redis; the SDKs never import the hub or the store; the store and the
    protocol never import upward; the leaves import no other room."""
    leaves = {"empfast.limits", "empfast.errors", "empfast.ids", "empfast.config", "empfast.redis_urls",
              "empfast.keys", "empfast.schedules"}
    for path in (ROOT / "empfast").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        ours = {m for m in _imports(path) if m.startswith("empfast")}
        if module.startswith(("empfast.worker", "empfast.client")) or module == "empfast.connection":
            assert not {m for m in ours if m.startswith(("empfast.hub", "empfast.store"))}, module
            assert "redis" not in {m.split(".")[0] for m in _imports(path)}, module
        if module.startswith("empfast.store") or module in ("empfast.protocol", "empfast.scripts"):
            assert not {m for m in ours if m.startswith(("empfast.hub", "empfast.worker", "empfast.client",
                                                          "empfast.cli"))}, module
        if module.startswith("empfast.store"):
            assert "empfast.protocol" not in ours
        if module in leaves:
            assert ours <= leaves, f"{module} imports {sorted(ours - leaves)}"
        if "redis" in {m.split(".")[0] for m in _imports(path)}:
            assert module in REDIS_IMPORTERS, f"{module} imports redis: only the store talks to Redis"


def test_every_script_the_docs_name_exists() -> None:
    """Scripts are named `verbNoun-<number of KEYS>`; a doc that names an old count is out of date."""
    shipped = {path.stem for path in (ROOT / "lua").glob("*.lua")}
    stale = {}
    for page in [*(ROOT / "docs").glob("*.md"), ROOT / "README.md", ROOT / "bench" / "README.md"]:
        named = set(re.findall(r"\b[a-z]+[A-Z][A-Za-z]*-\d+\b", page.read_text(encoding="utf-8")))
        if named - shipped:
            stale[page.name] = sorted(named - shipped)
    assert not stale, f"docs name scripts that do not exist: {stale}"
