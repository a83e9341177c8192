#!/usr/bin/env bash
# Build the empfast image: docker/build.sh [--stand-ins] [TAG]   (TAG default: empfast:local)
#
# Idempotent, so CI and tests/test_docker.py both call it:
#   1. a Docker daemon: used if one answers; else dockerd is started (root only), logging to
#      $EMPFAST_DOCKERD_LOG (default /tmp/empfast-dockerd.log);
#   2. a base image with Python 3.11+: $EMPFAST_BASE_IMAGE when set; else the Dockerfile's default
#      (python:3.11-slim) when present or pullable; else a local Debian bookworm base made with
#      debootstrap (about five minutes, once: it is kept as empfast-base:bookworm);
#   3. docker build --network host of the project's Dockerfile on that base.
#   4. with --stand-ins, also empfast-redis:local and empfast-haproxy:local from the same base
#      (docker/stand-ins/), which docker-compose.yml runs on where redis and haproxy cannot be pulled.
# Machines without the public registry (such as the development machines here) take step 2's last
# branch; any machine may skip it with EMPFAST_BASE_IMAGE=an-image-of-yours.
set -euo pipefail
cd "$(dirname "$0")/.."

STAND_INS=0
if [ "${1:-}" = --stand-ins ]; then STAND_INS=1; shift; fi
TAG="${1:-empfast:local}"
OFFICIAL_BASE="python:3.11-slim"
LOCAL_BASE="${EMPFAST_LOCAL_BASE:-empfast-base:bookworm}"
DOCKERD_LOG="${EMPFAST_DOCKERD_LOG:-/tmp/empfast-dockerd.log}"
# the host's trust store: where the network passes through a TLS-inspecting proxy, pip inside the
# build trusts exactly what the host's pip trusts
HOST_CA_BUNDLE="${EMPFAST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

say() { echo "docker/build.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

ensure_daemon() {
  if docker info >/dev/null 2>&1; then return; fi
  command -v dockerd >/dev/null 2>&1 || die "no Docker daemon answers and there is no dockerd to start: \
install one (Debian: apt-get install docker.io) or start yours"
  [ "$(id -u)" = 0 ] || die "no Docker daemon answers; starting dockerd needs root (sudo dockerd &)"
  local pidfile=/var/run/docker.pid pid
  # a daemon that was killed (-9, or with the machine's session) leaves its pid file, and a new
  # one then refuses to start; it is stale when no dockerd runs with that pid
  if [ -f "$pidfile" ]; then
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]; then
      say "removing the stale $pidfile (pid ${pid:-none} is no dockerd)"
      rm -f "$pidfile"
    else
      die "dockerd runs (pid $pid) but does not answer on its socket; see its log, or stop it"
    fi
  fi
  say "no Docker daemon answers; starting dockerd (log: $DOCKERD_LOG)"
  # setsid: the daemon outlives this script and the test that called it, as a system service would
  setsid dockerd >"$DOCKERD_LOG" 2>&1 < /dev/null &
  pid=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && { say "dockerd is up"; return; }
    kill -0 "$pid" 2>/dev/null || die "dockerd exited at start: $(tail -n 3 "$DOCKERD_LOG")"
    sleep 0.5
  done
  die "dockerd did not answer within 60 s; see the end of $DOCKERD_LOG"
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

make_local_base() {
  command -v debootstrap >/dev/null 2>&1 || die "the public registry is unreachable and there is no \
debootstrap to make a local base: apt-get install debootstrap, or set EMPFAST_BASE_IMAGE"
  [ -r "$HOST_CA_BUNDLE" ] || die "no CA bundle at $HOST_CA_BUNDLE (set EMPFAST_CA_BUNDLE)"
  local dir started
  dir="$(mktemp -d /tmp/empfast-base.XXXXXX)"
  BASE_DIR="$dir"
  # the chroot's /proc and the tree itself go, whatever happens (its log stays on failure)
  trap 'umount "$BASE_DIR/proc" 2>/dev/null || true; rm -rf "$BASE_DIR"' EXIT
  started=$SECONDS
  say "making the local base $LOCAL_BASE: debootstrap of Debian bookworm into $dir (about a minute)"
  debootstrap --variant=minbase bookworm "$dir" >"$dir.log" 2>&1 \
    || die "debootstrap failed; its log: $dir.log (is the Debian mirror reachable?)"
  say "installing python3 and python3-venv into the base"
  mount -t proc proc "$dir/proc"
  chroot "$dir" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    'apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates \
     && apt-get clean && rm -rf /var/lib/apt/lists/*' >>"$dir.log" 2>&1 \
    || die "apt-get inside the base failed; its log: $dir.log"
  umount "$dir/proc"
  # over the bundle ca-certificates made from Debian's list alone
  mkdir -p "$dir/etc/ssl/certs"
  cp "$HOST_CA_BUNDLE" "$dir/etc/ssl/certs/ca-certificates.crt"
  tar -C "$dir" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' - "$LOCAL_BASE" >/dev/null
  rm -f "$dir.log"
  say "made $LOCAL_BASE in $((SECONDS - started)) s"
}

choose_base() {
  if [ -n "${EMPFAST_BASE_IMAGE:-}" ]; then
    have_image "$EMPFAST_BASE_IMAGE" || docker pull "$EMPFAST_BASE_IMAGE" >&2 \
      || die "EMPFAST_BASE_IMAGE=$EMPFAST_BASE_IMAGE is neither here nor pullable"
    BASE="$EMPFAST_BASE_IMAGE"
  elif have_image "$OFFICIAL_BASE" || docker pull -q "$OFFICIAL_BASE" >/dev/null 2>&1; then
    BASE="$OFFICIAL_BASE"
  else
    say "$OFFICIAL_BASE is not here and cannot be pulled (no registry): using the local base $LOCAL_BASE"
    have_image "$LOCAL_BASE" || make_local_base
    BASE="$LOCAL_BASE"
  fi
}

# pip's index, when the host names one: the build reaches the same index as the host's pip
index_args() {
  local index extra
  index="${PIP_INDEX_URL:-$(pip config get global.index-url 2>/dev/null || true)}"
  extra="${PIP_EXTRA_INDEX_URL:-$(pip config get global.extra-index-url 2>/dev/null || true)}"
  # file:// indexes are on the host's disk, not in the build: leave them out
  extra="$(tr ' ' '\n' <<<"$extra" | grep -E '^https?://' | tr '\n' ' ' || true)"
  [ -n "$index" ] && INDEX_ARGS+=(--build-arg "PIP_INDEX_URL=$index")
  [ -n "${extra// /}" ] && INDEX_ARGS+=(--build-arg "PIP_EXTRA_INDEX_URL=${extra% }")
  return 0
}

command -v docker >/dev/null 2>&1 || die "no docker command: install Docker (Debian: apt-get install docker.io)"
ensure_daemon
choose_base
INDEX_ARGS=()
index_args
say "building $TAG on $BASE"
started=$SECONDS
previous="$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)"
# --force-rm: a failed step leaves no stopped container behind
docker build --force-rm --network host --build-arg "BASE_IMAGE=$BASE" "${INDEX_ARGS[@]}" -t "$TAG" . >&2 \
  || die "docker build failed (its output is above)"
# the image this build replaced, now untagged: removed, or every change of the code would leave
# one more behind (kept when a container still uses it; the layers the new image shares stay)
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$TAG")" ]; then
  docker rmi "$previous" >/dev/null 2>&1 || true
fi
say "built $TAG in $((SECONDS - started)) s: $(docker image inspect -f '{{.Size}}' "$TAG") bytes"

if [ "$STAND_INS" = 1 ]; then
  for name in redis haproxy; do
    say "building the stand-in empfast-$name:local on $BASE"
    # the folder as context: nothing of the project goes into these images
    docker build --force-rm --network host --build-arg "BASE_IMAGE=$BASE" -t "empfast-$name:local" \
      -f "docker/stand-ins/$name.Dockerfile" docker/stand-ins >&2 \
      || die "docker build of the $name stand-in failed (its output is above; apt-get inside needs the Debian mirror)"
  done
fi
