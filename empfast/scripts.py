"""Assembles the Lua scripts in lua/: inlines includes, checks each header against the key count in
the file name, and computes the SHA that EVALSHA uses. Talks to no Redis (the store loads them).

A script is `lua/<verbNoun>-<N>.lua`, N being the number of KEYS. Includes live in `lua/includes/`
(no `-N` suffix), are pulled in with `--- @include "path"` (relative to the including file, `.lua`
optional) and are inlined once per script, in dependency order.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from empfast.errors import ScriptError

INCLUDE_RE = re.compile(r'^---?\s*@include\s+"([^"]+)"\s*$')
NAME_RE = re.compile(r"^(?P<name>[A-Za-z]+)-(?P<keys>\d+)\.lua$")
HEADER_KEY_RE = re.compile(r"^\s*KEYS\[(\d+)\]")
HEADER_SECTIONS = ("Input:", "Output:", "Events:")


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    num_keys: int
    source: str
    sha: str


def lua_root() -> Traversable:
    """The lua/ folder. An installed wheel ships it as the package empfast.lua (pyproject maps the
    top-level lua/ there); a source checkout run from its root finds it beside the package."""
    try:
        return resources.files("empfast.lua")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "lua"


def _open(root: Traversable, rel: PurePosixPath) -> str:
    node = root
    for part in rel.parts:
        node = node.joinpath(part)
    if not node.is_file():
        raise ScriptError(f"include {str(rel)!r} not found under lua/")
    return node.read_text(encoding="utf-8")


def _resolve(root: Traversable, rel: PurePosixPath, done: dict[PurePosixPath, str],
             stack: list[PurePosixPath]) -> str:
    """Returns the body of `rel` without include lines; adds its includes to `done` first."""
    if rel in stack:
        chain = " -> ".join(str(p) for p in [*stack, rel])
        raise ScriptError(f"circular include: {chain}")
    stack.append(rel)
    body: list[str] = []
    seen_here: set[PurePosixPath] = set()
    for number, line in enumerate(_open(root, rel).splitlines(), 1):
        match = INCLUDE_RE.match(line.strip())
        if not match:
            body.append(line)
            continue
        target = match.group(1)
        if not target.endswith(".lua"):
            target += ".lua"
        inc = PurePosixPath(*(rel.parent / target).parts)
        if inc in seen_here:
            raise ScriptError(f"{rel}:{number}: {inc} is included twice")
        seen_here.add(inc)
        if inc not in done:
            text = _resolve(root, inc, done, stack)
            done.setdefault(inc, text)
    stack.pop()
    return "\n".join(body)


def assemble(root: Traversable, filename: str) -> str:
    """The script with every include inlined once, each before the first code that needs it."""
    done: dict[PurePosixPath, str] = {}
    main = _resolve(root, PurePosixPath(filename), done, [])
    header_end = main.find("]]") + 2 if main.lstrip().startswith("--[[") else 0
    header, code = main[:header_end], main[header_end:]
    # `local rcall = redis.call` must precede the includes, which rely on it
    prelude, sep, rest = code.partition("local rcall = redis.call")
    if not sep:
        raise ScriptError(f"{filename}: a script must define `local rcall = redis.call`")
    included = "\n".join(f"-- included: {path}\n{text.strip()}" for path, text in done.items())
    return f"{header}{prelude}{sep}\n{included}\n{rest.lstrip()}".strip() + "\n"


def check_header(filename: str, source: str, num_keys: int) -> None:
    if not source.lstrip().startswith("--[["):
        raise ScriptError(f"{filename}: the script must open with a --[[ ... ]] header")
    header = source[: source.find("]]")]
    for section in HEADER_SECTIONS:
        if section not in header:
            raise ScriptError(f"{filename}: the header lacks its {section} section")
    listed = sorted(int(m.group(1)) for line in header.splitlines() if (m := HEADER_KEY_RE.match(line)))
    if listed != list(range(1, num_keys + 1)):
        raise ScriptError(
            f"{filename}: the name says {num_keys} KEYS but the header lists KEYS {listed}"
        )


def load_scripts(root: Traversable | None = None) -> dict[str, Script]:
    """Every script in lua/ by name (e.g. "claimJobs"), assembled and checked."""
    root = root or lua_root()
    scripts: dict[str, Script] = {}
    for node in sorted(root.iterdir(), key=lambda n: n.name):
        if not node.is_file() or not node.name.endswith(".lua"):
            continue
        match = NAME_RE.match(node.name)
        if not match:
            raise ScriptError(f"{node.name}: a script's file name must be <verbNoun>-<number of KEYS>.lua")
        num_keys = int(match.group("keys"))
        check_header(node.name, node.read_text(encoding="utf-8"), num_keys)
        source = assemble(root, node.name)
        sha = hashlib.sha1(source.encode()).hexdigest()
        scripts[match.group("name")] = Script(match.group("name"), num_keys, source, sha)
    if not scripts:
        raise ScriptError("no scripts found in lua/: is the package installed with its Lua files?")
    return scripts


def scripts_version(scripts: dict[str, Script]) -> str:
    """One digest of the whole script set, recorded in the queue's meta hash."""
    digest = hashlib.sha1("".join(s.sha for s in scripts.values()).encode())
    return digest.hexdigest()[:12]
