"""The script loader: includes, headers, and the Lua files shipping inside the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from empfast.errors import ScriptError
from empfast.scripts import assemble, load_scripts

ROOT = Path(__file__).resolve().parent.parent

HEADER = '--[[\n  t\n  Input:\n{keys}\n  Output:\n    x\n  Events:\n    none\n]]\nlocal rcall = redis.call\n'


def write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def script(num_keys: int, body: str) -> str:
    """A script whose header lists `num_keys` KEYS and whose code uses each of them."""
    keys = "\n".join(f"    KEYS[{i}] k" for i in range(1, num_keys + 1))
    uses = "".join(f"rcall('EXISTS', KEYS[{i}])\n" for i in range(1, num_keys + 1))
    return HEADER.format(keys=keys) + uses + body


def test_every_shipped_script_loads_with_a_header_that_matches_its_key_count() -> None:
    """Loading runs every check: the header, the keys used, the includes called."""
    scripts = load_scripts()
    assert {"addJobs", "claimJobs", "claimJobById", "progressJob", "completeJobs", "failJob", "retryJob",
            "cancelJob", "heartbeat", "registerWorker", "deregisterWorker", "setWorkerStatus",
            "sweep", "getStats"} <= set(scripts)
    for s in scripts.values():
        assert "@include" not in s.source


def test_includes_are_inlined_once_in_dependency_order(tmp_path: Path) -> None:
    write(tmp_path, "includes/base.lua", "local function base() return 1 end\n")
    write(tmp_path, "includes/mid.lua", '--- @include "base"\nlocal function mid() return base() end\n')
    body = '--- @include "includes/base"\n--- @include "includes/mid"\nreturn mid()\n'
    write(tmp_path, "doIt-1.lua", script(1, body))
    source = assemble(tmp_path, "doIt-1.lua")
    assert source.count("local function base") == 1
    position = [source.index(s) for s in ("local function base", "local function mid", "return mid()")]
    assert position == sorted(position)
    assert source.index("local rcall") < source.index("local function base")


def test_missing_include_fails_clearly(tmp_path: Path) -> None:
    write(tmp_path, "doIt-1.lua", script(1, '--- @include "includes/nothere"\n'))
    with pytest.raises(ScriptError, match=r"nothere\.lua' not found"):
        load_scripts(tmp_path)


def test_circular_include_fails_clearly(tmp_path: Path) -> None:
    write(tmp_path, "includes/a.lua", '--- @include "b"\n')
    write(tmp_path, "includes/b.lua", '--- @include "a"\n')
    write(tmp_path, "doIt-1.lua", script(1, '--- @include "includes/a"\n'))
    with pytest.raises(ScriptError, match="circular include"):
        load_scripts(tmp_path)


def test_header_must_list_as_many_keys_as_the_name_says(tmp_path: Path) -> None:
    write(tmp_path, "doIt-2.lua", script(1, "return 1\n"))
    with pytest.raises(ScriptError, match="the name says 2 KEYS"):
        load_scripts(tmp_path)


def test_header_sections_are_mandatory(tmp_path: Path) -> None:
    write(tmp_path, "doIt-1.lua", script(1, "return 1\n").replace("Events:", "Notes:"))
    with pytest.raises(ScriptError, match="Events:"):
        load_scripts(tmp_path)


def test_a_declared_key_the_code_never_uses_is_refused(tmp_path: Path) -> None:
    body = "return rcall('GET', KEYS[1])\n"
    write(tmp_path, "doIt-2.lua", HEADER.format(keys="    KEYS[1] k\n    KEYS[2] k") + body)
    with pytest.raises(ScriptError, match=r"doIt-2\.lua: KEYS\[2\] is declared but the script never uses it"):
        load_scripts(tmp_path)


def test_a_key_bound_to_a_local_that_is_never_read_counts_as_unused(tmp_path: Path) -> None:
    body = "local aKey, bKey = KEYS[1], KEYS[2]\nreturn rcall('GET', aKey)\n"
    write(tmp_path, "doIt-2.lua", HEADER.format(keys="    KEYS[1] k\n    KEYS[2] k") + body)
    with pytest.raises(ScriptError, match=r"KEYS\[2\] is declared but the script never uses it"):
        load_scripts(tmp_path)


def test_a_key_beyond_the_declared_count_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "doIt-1.lua", script(1, "return rcall('GET', KEYS[2])\n"))
    with pytest.raises(ScriptError, match=r"uses KEYS\[2\] but the name says 1 KEYS"):
        load_scripts(tmp_path)


def test_a_script_calling_an_include_it_does_not_include_itself_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "includes/base.lua", "local function base() return 1 end\n")
    write(tmp_path, "includes/mid.lua", '--- @include "base"\nlocal function mid() return base() end\n')
    write(tmp_path, "doIt-1.lua", script(1, '--- @include "includes/mid"\nreturn mid() + base()\n'))
    with pytest.raises(ScriptError, match=r'doIt-1\.lua: calls base\(\) without --- @include "base"'):
        load_scripts(tmp_path)


def test_an_include_calling_an_include_it_does_not_include_itself_is_refused(tmp_path: Path) -> None:
    """As releaseJob once called emitEvent, which only another include of its pulled in."""
    write(tmp_path, "includes/base.lua", "local function base() return 1 end\n")
    write(tmp_path, "includes/mid.lua", "local function mid() return base() end\n")
    body = '--- @include "includes/base"\n--- @include "includes/mid"\nreturn mid()\n'
    write(tmp_path, "doIt-1.lua", script(1, body))
    with pytest.raises(ScriptError, match=r"includes/mid\.lua: calls base\(\)"):
        load_scripts(tmp_path)


def test_a_name_in_a_comment_is_not_a_call(tmp_path: Path) -> None:
    write(tmp_path, "includes/base.lua", "local function base() return 1 end\n")
    write(tmp_path, "doIt-1.lua", script(1, "-- unlike base(), this needs no include\nreturn 1\n"))
    assert set(load_scripts(tmp_path)) == {"doIt"}


def test_the_wheel_ships_the_lua_scripts_and_loads_them_from_anywhere(tmp_path: Path) -> None:
    """Build the wheel, install it into a folder of its own, and load the scripts from a
    directory that is not the project, with the installed copy first on the path."""
    # from a clean copy: an in-tree build would reuse a stale build/ folder of the checkout
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".benchmarks"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True)
    (wheel,) = (tmp_path / "dist").glob("empfast-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "empfast/lua/claimJobs-8.lua" in names and "empfast/lua/includes/activateJob.lua" in names
    modules = {str(path.relative_to(ROOT)) for path in (ROOT / "empfast").rglob("*.py")}
    assert modules <= set(names), f"modules missing from the wheel: {sorted(modules - set(names))}"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True)
    probe = ("import empfast.cli, empfast.scripts as s; root = s.lua_root(); "
             "n = len(s.load_scripts()); print(n, root)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(target)}, check=True).stdout.split(maxsplit=1)
    assert int(out[0]) == len(load_scripts())
    assert str(target / "empfast" / "lua") in out[1] and str(ROOT) not in out[1]


def test_two_files_of_one_script_are_refused(tmp_path: Path) -> None:
    """A stale `addJobs-9.lua` beside `addJobs-11.lua` (an older build's leftover) must not be
    loaded in its place."""
    for name in ("addJobs-1.lua", "addJobs-2.lua"):
        keys = "\n".join(f"    KEYS[{i}] a key" for i in range(1, int(name[-5]) + 1))
        uses = " ".join(f"KEYS[{i}]" for i in range(1, int(name[-5]) + 1))
        (tmp_path / name).write_text(f"--[[\n  Input:\n{keys}\n  Output:\n    1\n  Events:\n    none\n]]\n"
                                     f"local rcall = redis.call\nreturn {{{uses.replace(' ', ', ')}}}\n")
    with pytest.raises(ScriptError, match="a second script named 'addJobs'"):
        load_scripts(tmp_path)
