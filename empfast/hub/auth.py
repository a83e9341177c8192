"""Who may connect as what (docs/security.md): the tokens of each role, read once from the hub's
settings and files, checked at the WebSocket upgrade in constant time; the identity a token gives
its connection (the roles it opens, admin rights, the worker ids it may register, and the stable
owner hash stored with the jobs it submits). No token is ever logged or stored: only its hash.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from empfast.config import HubConfig
from empfast.messages import ROLE_TYPES
from empfast.protocol import WORKER_ID_RE, WORKER_ID_RULE

ROLES = tuple(ROLE_TYPES)  # client, worker, monitor
OWNER_HASH_CHARS = 16  # 64 bits of SHA-256: no collision between the tokens of one deployment
FORBIDDEN_IN_TOKEN = frozenset(",=|*") | frozenset(" \t\r\n")


@dataclass(frozen=True, slots=True)
class WorkerIds:
    """The worker ids a bound worker token may register: exact ids and prefixes (`gpu-*`)."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    def allows(self, worker_id: str) -> bool:
        return worker_id in self.exact or worker_id.startswith(self.prefixes)

    def __str__(self) -> str:
        return "|".join(sorted(self.exact) + [prefix + "*" for prefix in self.prefixes])


@dataclass(frozen=True, slots=True)
class Identity:
    """What a connection's token gives it. `owner` is "" when auth is off."""

    roles: frozenset[str]
    admin: bool
    owner: str
    worker_ids: WorkerIds | None = None  # None: any worker id

    def may_register(self, worker_id: str) -> bool:
        return self.worker_ids is None or self.worker_ids.allows(worker_id)


# auth off: every connection may do everything, as one anonymous owner
OPEN = Identity(frozenset(ROLES), admin=True, owner="")
# a refused connection (closed at once with 1008): nothing
NOBODY = Identity(frozenset(), admin=False, owner="", worker_ids=WorkerIds(frozenset(), ()))


def owner_of(token: str) -> str:
    """A stable short hash of a token: stored with a job as its submitter, never the token."""
    return hashlib.sha256(b"empfast-owner\0" + token.encode()).hexdigest()[:OWNER_HASH_CHARS]


class Auth:
    """The hub's tokens. `identify` answers the token a connection presented for a role."""

    def __init__(self, entries: list[tuple[bytes, Identity]]) -> None:
        # (SHA-256 of the token, its identity): equal-length digests compare in constant time
        self.entries = entries

    @classmethod
    def from_config(cls, config: HubConfig) -> Auth:
        """Read every token setting and file. Raises ValueError naming the setting (never a token)
        for a token that cannot be one, a missing file, or `client_scope` own without client tokens."""
        roles_of: dict[str, set[str]] = {}
        bindings: dict[str, WorkerIds | None] = {}  # worker token -> the ids it may register
        tenants: dict[str, str] = {}  # client token -> its tenant's name
        every_role = {*ROLES, "admin"}  # the older single token: one token for every role
        sources = [("token", config.token, config.token_file, every_role),
                   ("client_tokens", config.client_tokens, config.client_tokens_file, {"client"}),
                   ("worker_tokens", config.worker_tokens, config.worker_tokens_file, {"worker"}),
                   ("monitor_tokens", config.monitor_tokens, config.monitor_tokens_file, {"monitor"}),
                   ("admin_tokens", config.admin_tokens, config.admin_tokens_file, every_role)]
        for name, listed, file, roles in sources:
            for item in token_items(name, listed, file):
                token, _, bound_to = item.partition("=")
                check_token(name, token, bound_to, may_bind=name in ("client_tokens", "worker_tokens"))
                roles_of.setdefault(token, set()).update(roles)
                if name == "worker_tokens":
                    binding = worker_ids(name, bound_to) if bound_to else None
                    bindings[token] = merge(bindings[token], binding) if token in bindings else binding
                elif bound_to:
                    tenants[token] = tenant_name(name, bound_to, tenants.get(token))
        if config.client_scope == "own" and not any("client" in roles and "admin" not in roles
                                                    for roles in roles_of.values()):
            # admin tokens (and the single token) see every job: own would restrict nobody
            raise ValueError("client_scope own needs client_tokens: it tells clients apart by the "
                             "token they present")
        entries = []
        for token, roles in roles_of.items():
            admin = "admin" in roles
            owner = owner_of("tenant\0" + tenants[token]) if token in tenants else owner_of(token)
            identity = Identity(frozenset(roles - {"admin"}), admin, owner,
                                None if admin else bindings.get(token))
            entries.append((hashlib.sha256(token.encode()).digest(), identity))
        return cls(entries)

    def identify(self, presented: str, role: str) -> Identity | None:
        """The identity of a presented token if it opens `role`; None if it does not (or is no
        token of ours). Every configured token is compared, so the time taken tells nothing."""
        if not self.entries:
            return OPEN
        digest = hashlib.sha256(presented.encode()).digest()
        found: Identity | None = None
        for expected, identity in self.entries:
            if hmac.compare_digest(digest, expected):
                found = identity
        return found if found is not None and role in found.roles else None


def token_items(name: str, listed: str | None, file: str | None) -> list[str]:
    """The items of a setting and of its file: separated by commas, spaces or new lines; in a file,
    a line starting with # is a comment."""
    text = listed or ""
    if file:
        try:
            content = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{name}_file: cannot read {file!r} ({exc.strerror or exc})") from None
        text += "\n" + "\n".join(line for line in content.splitlines() if not line.lstrip().startswith("#"))
    return text.replace(",", " ").split()


def check_token(name: str, token: str, bound_to: str, *, may_bind: bool) -> None:
    if not token or FORBIDDEN_IN_TOKEN & set(token):
        raise ValueError(f"{name}: a token may not be empty nor contain ',', '=', '|', '*' or spaces")
    if bound_to and not may_bind:
        raise ValueError(f"{name}: only worker tokens (TOKEN=ids) and client tokens (TOKEN=tenant) "
                         "take a binding")


def worker_ids(name: str, binding: str) -> WorkerIds:
    """`id1|id2|prefix*`: the worker ids a bound worker token may register."""
    exact, prefixes = set(), []
    for choice in binding.split("|"):
        plain = choice.removesuffix("*")
        if not WORKER_ID_RE.match(plain):
            raise ValueError(f"{name}: a binding is worker ids or prefixes ending in '*', separated by "
                             f"'|', of [A-Za-z0-9._:@-], e.g. TOKEN=gpu-*|cpu-1; got {binding!r}")
        if choice.endswith("*"):
            prefixes.append(plain)
        else:
            exact.add(plain)
    return WorkerIds(frozenset(exact), tuple(prefixes))


def tenant_name(name: str, tenant: str, earlier: str | None) -> str:
    """`TOKEN=tenant`: clients of one tenant own its jobs together, across token rotations."""
    if not WORKER_ID_RE.match(tenant):
        raise ValueError(f"{name}: a tenant is {WORKER_ID_RULE}; got {tenant!r}")
    if earlier is not None and earlier != tenant:
        raise ValueError(f"{name}: one token is given two tenants, {earlier!r} and {tenant!r}")
    return tenant


def merge(first: WorkerIds | None, second: WorkerIds | None) -> WorkerIds | None:
    """A token listed twice may register what either listing allows; unbound once is unbound."""
    if first is None or second is None:
        return None
    return WorkerIds(first.exact | second.exact, first.prefixes + second.prefixes)
