#!/usr/bin/env bash
# Builds Memoria's container image and checks that it serves a health check inside, with Docker
# when a Docker daemon answers, else with podman + buildah and no daemon at all (chroot isolation:
# what works on machines without a container engine; apt-get install podman buildah).
#   scripts/container.sh            build (if needed), run, wait for healthy, stop; exit 0 iff healthy
#   scripts/container.sh build      only build the image
# Steps, each skipped when already done (idempotent):
#   1. Base image $BASE_IMAGE (default memoria-base:bookworm): there is no registry access, so it
#      is made locally with `debootstrap --variant=minbase bookworm` from $DEBIAN_MIRROR and
#      `docker import`ed (needs root and debootstrap; the rootfs is removed afterwards).
#   2. `docker build` (or `podman build --isolation=chroot --format docker`, which keeps the
#      HEALTHCHECK) of the Dockerfile into $IMAGE (default memoria:latest); the layer cache makes a
#      rebuild with unchanged sources quick.
#   3. Runs the image with the shared data ($MEMORIA_SHARED_DIR, default <repo>/../shared) mounted
#      read-only at /shared (the entrypoint converts stories260K once inside; nothing is
#      downloaded), waits up to $TIMEOUT_S (default 180) seconds for the image's HEALTHCHECK
#      (curl /readyz) to pass, checks /readyz answers 200 from inside, prints the result, and
#      removes the container. Docker runs the container and its health checks itself; with
#      podman, `buildah run --isolation=chroot` starts the entrypoint inside the image's root file
#      system (host network: the ports are moved to free ones) and runs the image's own
#      HEALTHCHECK command there until it passes, then sends SIGTERM and expects exit 0.
# Settings (environment): ENGINE (docker | podman; default: docker when its daemon answers),
# IMAGE, BASE_IMAGE, DEBIAN_MIRROR (default http://deb.debian.org/debian),
# MEMORIA_SHARED_DIR, TIMEOUT_S, NETWORK (docker network for the build and the run; default host
# for the build, which needs apt, and none for the run: the health check is inside the container).
# Needs a running Docker daemon (dockerd); on a daemon without a bridge network start it with
# `dockerd --iptables=false --bridge=none`.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-memoria:latest}
BASE_IMAGE=${BASE_IMAGE:-memoria-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SHARED=${MEMORIA_SHARED_DIR:-$(cd .. && pwd)/shared}
TIMEOUT_S=${TIMEOUT_S:-180}
BUILD_NETWORK=${NETWORK:-host}
RUN_NETWORK=${NETWORK:-none}
NAME=memoria-healthcheck-$$

if [ -z "${ENGINE:-}" ]; then
  if docker info >/dev/null 2>&1; then
    ENGINE=docker
  elif command -v podman >/dev/null && command -v buildah >/dev/null; then
    ENGINE=podman
  else
    echo "container: no Docker daemon answers and no podman + buildah (apt-get install podman buildah)" >&2
    exit 1
  fi
fi
echo "container: using $ENGINE"

# 1. Base image.
if ! $ENGINE image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { echo "container: $BASE_IMAGE missing and no debootstrap (apt-get install debootstrap)" >&2; exit 1; }
  [ "$(id -u)" -eq 0 ] || { echo "container: debootstrap needs root" >&2; exit 1; }
  ROOTFS=$(mktemp -d /tmp/memoria-rootfs.XXXXXX)
  trap 'rm -rf "$ROOTFS" "$ROOTFS.log"' EXIT
  echo "container: debootstrap bookworm (minbase) from $DEBIAN_MIRROR"
  nice -n 10 debootstrap --variant=minbase bookworm "$ROOTFS" "$DEBIAN_MIRROR" >"$ROOTFS.log" 2>&1 \
    || { tail -20 "$ROOTFS.log" >&2; exit 1; }
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  tar -C "$ROOTFS" -c . | $ENGINE import - "$BASE_IMAGE" >/dev/null
  rm -rf "$ROOTFS" "$ROOTFS.log"
  trap - EXIT
  echo "container: created $BASE_IMAGE"
fi

# 2. Image (docker: the legacy builder or BuildKit, whichever the CLI uses).
start=$(date +%s)
if [ "$ENGINE" = podman ]; then
  nice -n 10 podman build --isolation=chroot --format docker --network "$BUILD_NETWORK" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" .
else
  nice -n 10 docker build --network "$BUILD_NETWORK" --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" .
fi
echo "container: built $IMAGE in $(( $(date +%s) - start ))s," \
  "$($ENGINE image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
[ "${1:-}" = build ] && exit 0

# 3. Run, wait for healthy, stop.
[ -f "$SHARED/models/stories260K/stories260K.bin" ] \
  || { echo "container: no $SHARED/models/stories260K/stories260K.bin (set MEMORIA_SHARED_DIR)" >&2; exit 1; }
if [ "$ENGINE" = podman ]; then
  # The image's own HEALTHCHECK command ("CMD-SHELL <command>"), run inside until it passes.
  check=$(buildah inspect --type image \
    --format '{{if .Docker.Config.Healthcheck}}{{range .Docker.Config.Healthcheck.Test}}{{.}} {{end}}{{end}}' "$IMAGE")
  case "$check" in
    "CMD-SHELL "*) check=${check#CMD-SHELL }; check=${check% } ;;
    *) echo "container: $IMAGE has no shell HEALTHCHECK (got '$check')" >&2; exit 1 ;;
  esac
  CTR=$(buildah from --pull-never --name "$NAME" "$IMAGE")
  trap 'buildah rm "$CTR" >/dev/null 2>&1 || true' EXIT
  # Host network under chroot isolation: free ports instead of 50051/8080.
  http_port=$(( 20000 + $$ % 20000 ))
  start=$(date +%s)
  set +e
  buildah run --isolation=chroot -v "$SHARED:/shared:ro" -e MEMORIA_HTTP_PORT="$http_port" \
      -e CHECK="$check" -e TIMEOUT_S="$TIMEOUT_S" "$CTR" -- sh -c '
    memoria-entrypoint --port 0 > /tmp/memoria.log 2>&1 &
    pid=$!
    status=starting
    waited=0
    while [ "$waited" -lt "$TIMEOUT_S" ]; do
      if sh -c "$CHECK" 2>/dev/null; then status=healthy; break; fi
      kill -0 "$pid" 2>/dev/null || { status=exited; break; }
      sleep 2
      waited=$((waited + 2))
    done
    echo "container: health status $status after ${waited}s (HEALTHCHECK: $CHECK)"
    code=$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$MEMORIA_HTTP_PORT/readyz" || echo none)
    echo "container: /readyz inside the container answers HTTP $code"
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    exit_code=$?
    echo "container: --- container log ---"
    tail -15 /tmp/memoria.log
    echo "container: stopped (exit code $exit_code)"
    [ "$status" = healthy ] && [ "$code" = 200 ] && [ "$exit_code" = 0 ]'
  rc=$?
  set -e
  echo "container: checked in $(( $(date +%s) - start ))s"
  exit $rc
fi
docker rm -f "$NAME" >/dev/null 2>&1 || true
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
docker run -d --name "$NAME" --network "$RUN_NETWORK" -v "$SHARED:/shared:ro" "$IMAGE" >/dev/null
start=$(date +%s)
status=starting
while [ $(( $(date +%s) - start )) -lt "$TIMEOUT_S" ]; do
  status=$(docker inspect -f '{{if .State.Running}}{{.State.Health.Status}}{{else}}exited{{end}}' "$NAME")
  [ "$status" = healthy ] || [ "$status" = unhealthy ] || [ "$status" = exited ] && break
  sleep 2
done
echo "container: health status '$status' after $(( $(date +%s) - start ))s"
code=$(docker exec "$NAME" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/readyz 2>/dev/null || echo none)
echo "container: /readyz inside the container answers HTTP $code"
echo "container: --- container log ---"
docker logs "$NAME" 2>&1 | tail -15
docker stop -t 35 "$NAME" >/dev/null
echo "container: stopped (exit code $(docker inspect -f '{{.State.ExitCode}}' "$NAME"))"
[ "$status" = healthy ] && [ "$code" = 200 ]
