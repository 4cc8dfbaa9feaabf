#!/bin/sh
# Idempotent set-up shared by `make demo` and `make test`: a running Docker engine, the tools the
# tests drive (compose, a registry, the OpenSSH client) and a local base image, since nothing can
# be pulled here. Fast when everything is already in place.
set -eu

BASE_IMAGE=${QIMG_BASE_IMAGE:-debian:bookworm-slim}
SUITE=${QIMG_BASE_SUITE:-bookworm}
MIRROR=${QIMG_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DOCKERD_LOG=${QIMG_DOCKERD_LOG:-/var/log/dockerd.log}
here=$(cd "$(dirname "$0")" && pwd)

say() { printf 'ensure-env: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# command -> Debian package that provides it
missing=""
for pair in dockerd:docker.io docker-compose:docker-compose docker-registry:docker-registry \
            mmdebstrap:mmdebstrap ssh:openssh-client ssh-keygen:openssh-client htpasswd:apache2-utils \
            puttygen:putty-tools podman:podman newuidmap:uidmap slirp4netns:slirp4netns \
            fuse-overlayfs:fuse-overlayfs; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        die "missing:$missing. Install them (Debian/Ubuntu package names) or run this as root on Debian/Ubuntu."
    fi
    say "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    # Debian's docker-registry package starts a registry on :5000 for all addresses; tests run their own.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi
fi

if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null 2>&1 || die "no Docker engine: install docker.io (Debian) or Docker Engine, then start it."
    [ "$(id -u)" = 0 ] || die "the Docker engine is not running: start it (sudo systemctl start docker) or run this as root."
    say "starting dockerd (log: $DOCKERD_LOG)"
    setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    tries=0
    until docker info >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -le 60 ] || die "dockerd did not answer within 30 s: see $DOCKERD_LOG"
        sleep 0.5
    done
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "bootstrapping $BASE_IMAGE with mmdebstrap ($SUITE from $MIRROR)"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # shellcheck disable=SC2016 # mmdebstrap passes the root directory to hooks as $1
    # Trimmed like the official slim images: no docs, man pages or locales, and apt removes its
    # downloaded archives after every install (otherwise they stay in image layers).
    mmdebstrap --quiet --variant=minbase --format=tar \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --customize-hook="copy-in $here/docker-clean /etc/apt/apt.conf.d" \
        --customize-hook='rm -f "$1"/var/cache/apt/*.bin' \
        "$SUITE" "$tmp/rootfs.tar" "$MIRROR"
    docker import --change 'CMD ["bash"]' "$tmp/rootfs.tar" "$BASE_IMAGE" >/dev/null
    say "created $BASE_IMAGE"
fi

# Podman, the second engine the suite runs on: the base image copied into its (rootful) store, since
# it cannot pull either.
if ! podman image exists "$BASE_IMAGE"; then
    say "copying $BASE_IMAGE into Podman's store"
    docker save "$BASE_IMAGE" | podman load --quiet >/dev/null
fi
