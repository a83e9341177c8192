"""The image's HEALTHCHECK: exit 0 when the hub in this container answers GET /livez on its HTTP side.

The image runs workers too, and a worker has no HTTP side: a container whose main process is not
`empfast serve` is healthy while it runs (Docker already watches the process). The HTTP port and
address, port and TLS are read from the EMPFAST_* variables the hub reads, and from the command
line's flags.
Standard library only: the venv's Python runs it, with no curl in the image."""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request
from pathlib import Path


def main_command() -> list[str]:
    """The container's main process's arguments (PID 1; with --init, its child)."""
    try:
        return Path("/proc/1/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def setting(args: list[str], flag: str, variable: str, default: str | None) -> str | None:
    """A flag's value (--flag V or --flag=V) beats its variable, as in the hub's own CLI."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return os.environ.get(variable, default)


def main() -> int:
    args = main_command()
    if args and "serve" not in args:
        return 0
    port = setting(args, "--http-port", "EMPFAST_HTTP_PORT", "8766")
    if port in (None, "", "0"):  # the HTTP side is off: nothing to ask
        return 0
    tls = setting(args, "--tls-certfile", "EMPFAST_TLS_CERTFILE", None)
    # the probe asks its own container: the certificate is for the service's name, not this one
    context = ssl._create_unverified_context() if tls else None
    host = setting(args, "--http-host", "EMPFAST_HTTP_HOST", None) or setting(
        args, "--host", "EMPFAST_HOST", "127.0.0.1")
    if host in (None, "", "0.0.0.0", "::"):  # every interface: loopback is one of them
        host = "127.0.0.1"
    url = f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in str(host) else host}:{port}/livez"
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
