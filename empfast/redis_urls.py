"""The Redis URLs empfast takes, read and checked before anything connects: redis://, rediss://,
unix:// and the Sentinel form redis+sentinel:// (docs/deployment.md sections 3 and 4). A leaf, like
config.py, which uses it: a URL of no supported form is refused in one line that hides its
password and names the form to use."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

USER_INFO = re.compile(r"[^/@]*@")  # what comes before a URL's @: the user and the password
SENTINEL_URL_FORM = "redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]"
REDIS_URL_FORMS = (f"redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS), unix:///PATH[?db=DB] or "
                   f"{SENTINEL_URL_FORM} (rediss+sentinel:// for TLS)")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
# one Sentinel's address: HOST, HOST:PORT, [IPV6] or [IPV6]:PORT
SENTINEL_ADDRESS = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+))(?::([0-9]{1,5}))?$")


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """A master found through Redis Sentinels: where the Sentinels are, the name they know the
    master by, and how to talk to the master once found."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """HOST[:PORT],... (the port 26379 when left out) as (host, port) pairs; ValueError naming the
    item that is not an address."""
    found = []
    for item in (item.strip() for item in text.split(",")):
        match = SENTINEL_ADDRESS.match(item)
        port = int(match[3]) if match and match[3] else DEFAULT_SENTINEL_PORT
        if not match or not 0 < port < 65536:
            raise ValueError(f"{item!r} is not a Sentinel's address (HOST:PORT, the port 1 to 65535)")
        found.append((match[1] or match[2], port))
    return tuple(found)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """A redis+sentinel:// (or rediss+sentinel://) URL's parts; ValueError in one line, without the
    password, when it is not of the form."""
    scheme, _, rest = url.partition("://")
    hosts_part, _, path = rest.partition("/")
    user_info, at, hosts = hosts_part.rpartition("@")
    shown = f"{scheme}://{'***@' if at else ''}{hosts}/{path}"
    segments = path.rstrip("/").split("/") if path.rstrip("/") else []
    problem = None
    if "?" in rest or "#" in rest:
        problem = "it has a query or a fragment, which this form does not take"
    elif not hosts:
        problem = "it names no Sentinel"
    elif not segments or not segments[0]:
        problem = "it names no master: the Sentinels' name for it comes after the first /"
    elif len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        problem = f"what follows the master's name, {'/'.join(segments[1:])!r}, is not a database number"
    if problem is None:
        try:
            sentinels = parse_sentinels(hosts)
        except ValueError as exc:
            problem = str(exc)
    if problem is not None:
        raise ValueError(f"the Redis URL {shown!r} is not one empfast takes: {problem}; use "
                         f"{SENTINEL_URL_FORM}")
    username, _, password = user_info.partition(":")
    return SentinelTarget(sentinels, unquote(segments[0]), int(segments[1]) if len(segments) == 2 else 0,
                          unquote(username) or None, unquote(password) if at and ":" in user_info else None,
                          tls=scheme == "rediss+sentinel")


def check_redis_url(url: str) -> None:
    """Refuse a Redis URL that is not one of the supported forms, before anything connects: a URL
    such as redis:/127.0.0.1:6379/14 (a slash missing) would otherwise be read as db 0 of localhost.
    The message shows the URL without its password."""
    parts = urlsplit(url)
    # a malformed URL is not split into its parts: hide all that precedes its @
    shown = USER_INFO.sub("***@", url, count=1)
    problem = None
    if parts.scheme in SENTINEL_SCHEMES and url.startswith(f"{parts.scheme}://"):
        parse_sentinel_url(url)
    elif parts.scheme not in ("redis", "rediss", "unix") or not url.startswith(f"{parts.scheme}://"):
        problem = "it does not start with redis://, rediss://, unix:// or redis+sentinel://"
        if parts.scheme in ("redis", "rediss", *SENTINEL_SCHEMES) and shown.startswith(f"{parts.scheme}:"):
            problem += f" (did you mean {parts.scheme}://{shown[len(parts.scheme) + 1:].lstrip('/')}?)"
    elif parts.scheme == "unix":
        if parts.netloc or not parts.path or parts.path == "/":
            problem = "a unix:// URL is unix:///PATH/TO/redis.sock (three slashes, then the socket's path)"
    else:
        try:
            port = parts.port
        except ValueError:
            port = -1
        if not parts.hostname:
            problem = "it names no host"
        elif port is not None and not 0 < port < 65536:
            problem = "its port is not a number from 1 to 65535"
        elif parts.path not in ("", "/") and not parts.path[1:].isdigit():
            problem = f"its path {parts.path!r} is not a database number such as /0"
    if problem is not None:
        raise ValueError(f"the Redis URL {shown!r} is not one empfast takes: {problem}; use "
                         f"{REDIS_URL_FORMS}")
