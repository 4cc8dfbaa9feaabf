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
            fuse-overlayfs:fuse-overlayfs chromium:chromium node:nodejs npm:npm; do
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

# The Dev Containers CLI, the reference reader of devcontainer.json (tests/unit/test_devcontainer_reference.py),
# from npm at a pinned version: 0.83.0 is the last that runs on Debian 12's Node.js 18.
DEVCONTAINER_CLI=0.83.0
if [ "$(devcontainer --version 2>/dev/null)" != "$DEVCONTAINER_CLI" ]; then
    [ "$(id -u)" = 0 ] || die "the Dev Containers CLI $DEVCONTAINER_CLI is missing: npm install -g @devcontainers/cli@$DEVCONTAINER_CLI"
    say "installing the Dev Containers CLI $DEVCONTAINER_CLI (npm)"
    npm install --global --no-fund --no-audit --loglevel=error "@devcontainers/cli@$DEVCONTAINER_CLI" >/dev/null
    [ "$(devcontainer --version 2>/dev/null)" = "$DEVCONTAINER_CLI" ] ||
        die "npm installed @devcontainers/cli@$DEVCONTAINER_CLI but \`devcontainer --version\` does not say $DEVCONTAINER_CLI: is npm's bin folder on PATH?"
fi

# BuildKit's client, the `docker buildx` plugin, which `qimg build` uses when present. Debian 12 has no
# docker-buildx package: trixie's (it needs only libc6 >= 2.34) is fetched through apt from a source list
# of its own, so that the archive keyring checks its signature and nothing else moves to trixie, then
# installed with dpkg (which refuses it if a dependency is missing) into /usr/libexec/docker/cli-plugins.
if ! docker buildx version >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        die "docker buildx is missing: install the docker-buildx package (Debian 13+, Ubuntu) or Docker's buildx plugin."
    fi
    say "installing docker-buildx from Debian trixie"
    apt_dir=$(mktemp -d)
    mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial" "$apt_dir/cache" "$apt_dir/debs"
    printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' \
        "$MIRROR" /usr/share/keyrings/debian-archive-keyring.gpg >"$apt_dir/sources/trixie.sources"
    # apt fetches as its unprivileged user _apt where it can write.
    chmod 755 "$apt_dir"
    if id -u _apt >/dev/null 2>&1; then chown _apt "$apt_dir/lists/partial" "$apt_dir/debs"; fi
    set -- -qq -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$apt_dir/sources" \
        -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache"
    apt-get "$@" update
    (cd "$apt_dir/debs" && apt-get "$@" download docker-buildx)
    dpkg --install "$apt_dir"/debs/docker-buildx_*.deb >/dev/null
    rm -rf "$apt_dir"
    docker buildx version >/dev/null 2>&1 || die "docker-buildx is installed but \`docker buildx version\` fails"
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

# Where root lacks CAP_SYS_RESOURCE (a restricted VM or a container, as here), rootful Podman cannot give a
# container its default limits (1048576 open files, 4194304 processes) and starts none: the limits Podman
# itself runs with instead (its own process count is 32768).
if ! prlimit --nofile=1048576:1048576 true 2>/dev/null; then
    limits=/etc/containers/containers.conf.d/50-qimg-ulimits.conf
    if [ ! -f "$limits" ]; then
        say "rootful Podman: default_ulimits within this machine's limits ($limits)"
        mkdir -p "$(dirname "$limits")"
        hard=$(prlimit --nofile --output HARD --noheadings | tr -d ' ')
        printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\n' \
            "$hard" "$hard" >"$limits"
    fi
fi

# Rootless Podman, as the suite runs it: an unprivileged user of its own with a range of subordinate ids,
# a runtime directory, the kernel's overlay in its user namespace, cgroupfs and a file event log (no
# systemd session here), and the base image copied into its store.
PODMAN_USER=${QIMG_PODMAN_USER:-qimgpod}
PODMAN_HOME=/var/lib/$PODMAN_USER
as_podman_user() {
    runuser -u "$PODMAN_USER" -- env -i HOME="$PODMAN_HOME" XDG_RUNTIME_DIR="/run/user/$(id -u "$PODMAN_USER")" \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
if ! id -u "$PODMAN_USER" >/dev/null 2>&1 || [ ! -d "/run/user/$(id -u "$PODMAN_USER")" ] \
        || ! as_podman_user podman image exists "$BASE_IMAGE" 2>/dev/null; then
    [ "$(id -u)" = 0 ] || die "rootless Podman is not set up for the tests: run this as root once."
    if ! id -u "$PODMAN_USER" >/dev/null 2>&1; then
        say "creating $PODMAN_USER, the user of rootless Podman"
        useradd --system --create-home --home-dir "$PODMAN_HOME" --shell /usr/sbin/nologin "$PODMAN_USER"
    fi
    # 65536 ids: every uid an image qimg builds may use (below 65536) maps to one of the host.
    grep -q "^$PODMAN_USER:" /etc/subuid 2>/dev/null || usermod --add-subuids 524288-589823 "$PODMAN_USER"
    grep -q "^$PODMAN_USER:" /etc/subgid 2>/dev/null || usermod --add-subgids 524288-589823 "$PODMAN_USER"
    runtime=/run/user/$(id -u "$PODMAN_USER")
    mkdir -p "$runtime" && chown "$PODMAN_USER:" "$runtime" && chmod 700 "$runtime"
    config=$PODMAN_HOME/.config/containers
    mkdir -p "$config"
    printf '[storage]\ndriver = "overlay"\n' >"$config/storage.conf"
    printf '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' >"$config/containers.conf"
    chown -R "$PODMAN_USER:" "$PODMAN_HOME/.config"
    if ! as_podman_user podman image exists "$BASE_IMAGE" 2>/dev/null; then
        say "copying $BASE_IMAGE into $PODMAN_USER's Podman store"
        podman save "$BASE_IMAGE" | as_podman_user podman load --quiet >/dev/null
    fi
fi
# slirp4netns, rootless Podman's network, opens /dev/net/tun as the user: world-writable as udev makes it.
if [ ! -c /dev/net/tun ] || [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
    [ "$(id -u)" = 0 ] || die "/dev/net/tun is not usable by rootless Podman: chmod 666 /dev/net/tun as root."
    [ -c /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200; }
    chmod 666 /dev/net/tun
fi
