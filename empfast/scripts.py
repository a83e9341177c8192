"""Assembles the Lua scripts in lua/: inlines includes, checks each header against the key count in
the file name, and computes the SHA that EVALSHA uses. Talks to no Redis (the store loads them).

A script is `lua/<verbNoun>-<N>.lua`, N being the number of KEYS. Includes live in `lua/includes/`
(no `-N` suffix), are pulled in with `--- @include "path"` (relative to the including file, `.lua`
optional) and are inlined once per script, in dependency order.

The header is a contract the loader holds each file to: the KEYS it lists are exactly the keys the
code uses (a key bound to a local that is never read counts as unused), and a file that calls an
include's function includes that file itself instead of relying on another include to pull it in.
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
KEY_USE_RE = re.compile(r"\bKEYS\[(\d+)\]")
# `local a, b = KEYS[1], KEYS[2]` on a line of its own: the names that carry keys
KEY_BINDING_RE = re.compile(r"^\s*local\s+([\w\s,]+?)\s*=\s*(KEYS\[\d+\](?:\s*,\s*KEYS\[\d+\])*)\s*$",
                            re.MULTILINE)
CALL_RE = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
DEFINITION_RE = re.compile(r"\blocal\s+function\s+([A-Za-z_]\w*)")
BLOCK_COMMENT_RE = re.compile(r"--\[\[.*?\]\]", re.DOTALL)
LINE_COMMENT_RE = re.compile(r"--.*$", re.MULTILINE)


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


def _code(text: str) -> str:
    """The text without its comments (no string in lua/ holds `--`)."""
    return LINE_COMMENT_RE.sub("", BLOCK_COMMENT_RE.sub("", text))


def _include_names(root: Traversable) -> frozenset[str]:
    """The function names of lua/includes/: each file defines one function named after it."""
    folder = root.joinpath("includes")
    if not folder.is_dir():
        return frozenset()
    return frozenset(n.name.removesuffix(".lua") for n in folder.iterdir() if n.name.endswith(".lua"))


def _check_calls(rel: PurePosixPath, text: str, included: set[PurePosixPath],
                 known: frozenset[str]) -> None:
    """An include's function may only be called by a file that includes it itself: an include
    pulled in by another include disappears from a script when that other include stops needing it."""
    code = _code(text)
    mine = set(DEFINITION_RE.findall(code)) | {p.stem for p in included}
    for name in CALL_RE.findall(code):
        if name in known and name not in mine:
            raise ScriptError(f'{rel}: calls {name}() without --- @include "{name}" of its own')


def _resolve(root: Traversable, rel: PurePosixPath, done: dict[PurePosixPath, str],
             stack: list[PurePosixPath], known: frozenset[str]) -> str:
    """Returns the body of `rel` without include lines; adds its includes to `done` first."""
    if rel in stack:
        chain = " -> ".join(str(p) for p in [*stack, rel])
        raise ScriptError(f"circular include: {chain}")
    stack.append(rel)
    body: list[str] = []
    seen_here: set[PurePosixPath] = set()
    text = _open(root, rel)
    for number, line in enumerate(text.splitlines(), 1):
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
            done.setdefault(inc, _resolve(root, inc, done, stack, known))
    _check_calls(rel, text, seen_here, known)
    stack.pop()
    return "\n".join(body)


def assemble(root: Traversable, filename: str) -> str:
    """The script with every include inlined once, each before the first code that needs it."""
    done: dict[PurePosixPath, str] = {}
    main = _resolve(root, PurePosixPath(filename), done, [], _include_names(root))
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
    code = _code(source)
    used = {int(i) for i in KEY_USE_RE.findall(code)}
    for match in KEY_BINDING_RE.finditer(code):
        names = [n.strip() for n in match.group(1).split(",")]
        for name, key in zip(names, KEY_USE_RE.findall(match.group(2)), strict=False):
            # read only where it is bound, and nowhere else as KEYS[i]: the key is not used
            if len(re.findall(rf"\b{re.escape(name)}\b", code)) < 2 and code.count(f"KEYS[{key}]") < 2:
                used.discard(int(key))
    for i in range(1, num_keys + 1):
        if i not in used:
            raise ScriptError(f"{filename}: KEYS[{i}] is declared but the script never uses it")
    beyond = sorted(i for i in used if i > num_keys)
    if beyond:
        raise ScriptError(f"{filename}: the code uses KEYS[{beyond[0]}] but the name says {num_keys} KEYS")


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
        if match.group("name") in scripts:
            # e.g. a stale addJobs-9.lua beside addJobs-13.lua, left in a build/ folder by an older
            # build: the wrong one would be called with the other's arguments
            raise ScriptError(f"{node.name}: a second script named {match.group('name')!r} (a file of an "
                              "older empfast left over? remove it, or build from a clean tree)")
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
