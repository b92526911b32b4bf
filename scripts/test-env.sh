#!/usr/bin/env bash
# Bring up everything the integration tests need on a Debian 12 machine (root):
# Debian packages, a Docker engine with the gVisor (runsc) runtime, the
# locally built test images (no container registry is reachable, so nothing is
# pulled), the Node packages of the dashboard's browser test (tests/browser), and
# the API fuzzer (schemathesis) and an S3 server (moto) in target/test-tools/venv,
# and rootless Podman for an ordinary user (devinst-rootless: their own API
# service and image store, for tests/integration/rootless.rs).
# Optionally (--podman) also rootful Podman's Docker-compatible API.
#
# Idempotent: each step checks first and does nothing when already done, so a
# second run takes a second or two.
#
# Usage: bash scripts/test-env.sh [--podman]
set -euo pipefail

WANT_PODMAN=0
for arg in "$@"; do
    case "$arg" in
        --podman) WANT_PODMAN=1 ;;
        -h | --help)
            sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "test-env: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

PACKAGES=(docker.io busybox-static debootstrap shellcheck zsh fish runsc podman catatonit hyperfine tmux ca-certificates time docker-registry apache2-utils curl python3-pytest python3-venv chromium uidmap slirp4netns)
BUSYBOX_IMAGE=devinst-test/busybox:1
PYTHON_IMAGE=ubuntu:22.04 # really Debian bookworm: the product's default image name, built locally
DAEMON_JSON=/etc/docker/daemon.json
DOCKERD_LOG=/tmp/dockerd.log
DOCKER_PIDFILE=/var/run/docker.pid
PODMAN_SOCK=/run/podman/podman.sock
PODMAN_LOG=/tmp/podman-service.log
CONTAINERS_CONF=/etc/containers/containers.conf
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BROWSER_TESTS=$REPO_ROOT/tests/browser
# The API fuzzer, pinned, in a venv of the project's own (target/ is not tracked).
TEST_VENV=$REPO_ROOT/target/test-tools/venv
PYTHON_TOOLS=(schemathesis==4.32.5 "moto[server]==5.1.21")

export DEBIAN_FRONTEND=noninteractive

log() { printf 'test-env: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# Waits up to 30 s for a service just started: `check` is a command that
# succeeds once it answers. On failure, says so with the tail of `logfile`.
await_service() {
    local what=$1 check=$2 logfile=$3 i
    for ((i = 0; i < 60; i++)); do
        "$check" && return 0
        sleep 0.5
    done
    log "$what did not answer within 30 s; tail of $logfile:"
    tail -n 20 "$logfile" >&2 || true
    return 1
}

if [[ $(id -u) -ne 0 ]]; then
    die "must run as root (installs packages, starts dockerd)"
fi

# A python3 for JSON editing: prefer Debian's own over any shim on PATH.
python_bin() {
    if [[ -x /usr/bin/python3 ]]; then
        echo /usr/bin/python3
    else
        command -v python3 || true
    fi
}

# ---------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------
install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        if ! dpkg -s "$pkg" >/dev/null 2>&1; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "packages: all present"
        return
    fi
    log "packages: installing ${missing[*]}"
    apt-get update -qq </dev/null
    apt-get install -y -qq "${missing[@]}" </dev/null >&2
}

# ---------------------------------------------------------------------------
# 2. Docker engine with the runsc runtime
# ---------------------------------------------------------------------------

# Make sure daemon.json declares the runsc runtime (host network mode: gVisor
# refuses to run in the root network namespace otherwise). Other keys of an
# existing file are kept. Prints "changed" when it rewrote the file.
configure_runsc_runtime() {
    mkdir -p "$(dirname "$DAEMON_JSON")"
    if [[ ! -s $DAEMON_JSON ]]; then
        printf '%s\n' '{"runtimes":{"runsc":{"path":"/usr/bin/runsc","runtimeArgs":["--network=host"]}}}' >"$DAEMON_JSON"
        echo changed
        return
    fi
    local py
    py=$(python_bin)
    [[ -n $py ]] || die "$DAEMON_JSON exists and no python3 is available to merge it"
    "$py" - "$DAEMON_JSON" <<'EOF'
import json, sys
path = sys.argv[1]
with open(path) as f:
    cfg = json.load(f)
want = {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]}
runtimes = cfg.setdefault("runtimes", {})
if runtimes.get("runsc") != want:
    runtimes["runsc"] = want
    with open(path + ".tmp", "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    import os
    os.replace(path + ".tmp", path)
    print("changed")
EOF
}

docker_up() { docker info >/dev/null 2>&1; }

docker_has_runsc() {
    docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'
}

# The pid of the running dockerd, if any (from the pid file, else by name).
dockerd_pid() {
    local pid=""
    if [[ -s $DOCKER_PIDFILE ]]; then
        pid=$(<"$DOCKER_PIDFILE")
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
            echo "$pid"
            return
        fi
    fi
    pgrep -xo dockerd || true
}

start_dockerd() {
    # A pid file whose process is gone blocks a new dockerd ("pid file found").
    if [[ -s $DOCKER_PIDFILE ]]; then
        local old
        old=$(<"$DOCKER_PIDFILE")
        if [[ -z $old ]] || ! kill -0 "$old" 2>/dev/null; then
            log "docker: removing stale pid file ($DOCKER_PIDFILE, pid ${old:-?})"
            rm -f "$DOCKER_PIDFILE"
        fi
    fi
    log "docker: starting dockerd (log: $DOCKERD_LOG)"
    # setsid + nohup: the engine must outlive this script and its job control.
    # Every service starts from `/`: it keeps its working directory, and this
    # checkout may be gone before the service is (Podman's conmon then fails
    # every container with "Failed to get working directory").
    (cd / && exec setsid nohup dockerd) >>"$DOCKERD_LOG" 2>&1 </dev/null &
    disown || true
}

dockerd_fail() {
    log "docker: engine did not come up within 60 s; tail of $DOCKERD_LOG:"
    tail -n 30 "$DOCKERD_LOG" >&2 2>/dev/null || true
    exit 1
}

ensure_docker() {
    local changed
    changed=$(configure_runsc_runtime)
    [[ -n $changed ]] && log "docker: runsc runtime written to $DAEMON_JSON"

    if docker_up; then
        if [[ -n $changed ]] || ! docker_has_runsc; then
            local pid
            pid=$(dockerd_pid)
            [[ -n $pid ]] || die "docker answers but no dockerd process found to reload"
            log "docker: reloading dockerd (pid $pid) for the runsc runtime"
            kill -HUP "$pid"
            local i
            for ((i = 0; i < 40; i++)); do
                docker_has_runsc && break
                sleep 0.25
            done
            docker_has_runsc || die "dockerd reloaded but still has no runsc runtime (see $DOCKERD_LOG)"
        fi
        log "docker: engine up"
        return
    fi

    # Not answering: an engine may be starting up or dying (then its pid file
    # lingers for a moment), or there is none. Wait for the first two, start
    # one otherwise; give up after 60 s.
    local deadline=$((SECONDS + 60)) started=0 pid
    while ((SECONDS < deadline)); do
        if docker_up; then
            break
        fi
        pid=$(dockerd_pid)
        if [[ -z $pid ]]; then
            if ((started >= 3)); then
                dockerd_fail
            fi
            start_dockerd
            started=$((started + 1))
        fi
        sleep 0.5
    done
    docker_up || dockerd_fail
    if ! docker_has_runsc; then
        pid=$(dockerd_pid)
        [[ -n $pid ]] && kill -HUP "$pid"
        sleep 1
        docker_has_runsc || die "dockerd is up but has no runsc runtime (check $DAEMON_JSON, $DOCKERD_LOG)"
    fi
    log "docker: engine up"
}

# ---------------------------------------------------------------------------
# 3. Test images (cached by tag)
# ---------------------------------------------------------------------------
TMPDIRS=()
cleanup() {
    local d
    for d in "${TMPDIRS[@]}"; do
        [[ -n $d && -e $d ]] && rm -rf --one-file-system "$d"
    done
    return 0
}
trap cleanup EXIT

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

build_busybox_image() {
    if image_present "$BUSYBOX_IMAGE"; then
        log "image $BUSYBOX_IMAGE: present"
        return
    fi
    local bb ctx
    for bb in /bin/busybox /usr/bin/busybox; do
        [[ -x $bb ]] && break
    done
    [[ -x $bb ]] || die "no busybox binary (package busybox-static)"
    log "image $BUSYBOX_IMAGE: building"
    ctx=$(mktemp -d /tmp/devinst-busybox.XXXXXX)
    TMPDIRS+=("$ctx")
    cp "$bb" "$ctx/busybox"
    cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["sh"]
EOF
    # The legacy builder: the client may lack the buildx plugin. Its output
    # (including a deprecation note from newer clients) is shown only on failure.
    if ! DOCKER_BUILDKIT=0 docker build -q -t "$BUSYBOX_IMAGE" "$ctx" >"$ctx.log" 2>&1; then
        cat "$ctx.log" >&2
        rm -f "$ctx.log"
        die "docker build of $BUSYBOX_IMAGE failed"
    fi
    rm -f "$ctx.log"
    rm -rf "$ctx"
}

# The Debian mirror this machine's apt uses (never hard-coded in a file).
debian_mirror() {
    local uri=""
    if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
        # First URIs: line that is not the security archive; first URI on it.
        uri=$(awk 'tolower($1) == "uris:" && $2 !~ /security/ { print $2; exit }' \
            /etc/apt/sources.list.d/debian.sources)
    fi
    if [[ -z $uri && -r /etc/apt/sources.list ]]; then
        # deb [options] URI suite components...
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {
                    for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit }
                  }' /etc/apt/sources.list)
    fi
    [[ -n $uri ]] || die "cannot find a Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
    echo "$uri"
}

build_python_image() {
    if image_present "$PYTHON_IMAGE"; then
        log "image $PYTHON_IMAGE: present"
        return
    fi
    local mirror work rootfs
    mirror=$(debian_mirror)
    [[ -r $HOST_CA_BUNDLE ]] || die "no host CA bundle at $HOST_CA_BUNDLE"
    log "image $PYTHON_IMAGE: building Debian bookworm rootfs with debootstrap (about a minute)"
    work=$(mktemp -d /var/tmp/devinst-rootfs.XXXXXX)
    TMPDIRS+=("$work")
    rootfs=$work/rootfs
    if ! debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates,git,bash,procps \
        bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
        log "debootstrap failed; tail of its log:"
        tail -n 30 "$work/debootstrap.log" >&2
        [[ -f $rootfs/debootstrap/debootstrap.log ]] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
        exit 1
    fi
    # HTTPS from these machines may go through a proxy whose CA only the host
    # trusts: hand the host's bundle to the image and point pip at it.
    mkdir -p "$rootfs/etc/ssl/certs"
    cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
    # The copied bundle is lost whenever update-ca-certificates regenerates it
    # (e.g. an apt-get install in the container): also register the host's
    # extra certificates (those the image does not already ship) as local ones.
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    awk -v dir="$rootfs/usr/local/share/ca-certificates" -v host="$HOST_CA_BUNDLE" '
        { sub(/[[:space:]]+$/, "") }
        /-----BEGIN CERTIFICATE-----/ { pem = ""; inpem = 1 }
        inpem { pem = pem $0 "\n" }
        /-----END CERTIFICATE-----/ {
            inpem = 0
            if (FILENAME != host) { known[pem] = 1 }
            else if (!(pem in known)) { n++; f = sprintf("%s/host-extra-%d.crt", dir, n); printf "%s", pem > f; close(f) }
        }
    ' "$rootfs/usr/share/ca-certificates/mozilla/"*.crt "$HOST_CA_BUNDLE"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin
    log "image $PYTHON_IMAGE: importing"
    tar -C "$rootfs" --numeric-owner -c . |
        docker import \
            --change 'CMD ["/bin/bash"]' \
            --change 'LABEL org.devinst.test-image="debian-bookworm"' \
            - "$PYTHON_IMAGE" >/dev/null
    rm -rf --one-file-system "$work"
}

# ---------------------------------------------------------------------------
# 4. Podman's Docker-compatible API (optional)
# ---------------------------------------------------------------------------

# Podman containers fail to start ("error setting rlimit type 7: operation not
# permitted") until the default ulimits are lowered. Prints "changed" when it
# edited the file.
configure_podman_ulimits() {
    local line='default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]'
    mkdir -p "$(dirname "$CONTAINERS_CONF")"
    if [[ ! -s $CONTAINERS_CONF ]]; then
        printf '[containers]\n%s\n' "$line" >"$CONTAINERS_CONF"
        echo changed
        return
    fi
    # An existing (uncommented) default_ulimits setting is the owner's choice.
    if grep -Eq '^[[:space:]]*default_ulimits[[:space:]]*=' "$CONTAINERS_CONF"; then
        grep -Fq "$line" "$CONTAINERS_CONF" ||
            log "podman: keeping the default_ulimits already set in $CONTAINERS_CONF"
        return 0
    fi
    local tmp
    tmp=$(mktemp "$CONTAINERS_CONF.XXXXXX")
    if grep -Eq '^[[:space:]]*\[containers\][[:space:]]*$' "$CONTAINERS_CONF"; then
        # Insert right after the [containers] table header.
        awk -v line="$line" '
            { print }
            !done && $0 ~ /^[[:space:]]*\[containers\][[:space:]]*$/ { print line; done = 1 }
        ' "$CONTAINERS_CONF" >"$tmp"
    else
        { cat "$CONTAINERS_CONF"; printf '\n[containers]\n%s\n' "$line"; } >"$tmp"
    fi
    chmod 644 "$tmp"
    mv "$tmp" "$CONTAINERS_CONF"
    echo changed
}

podman_api_up() {
    if command -v curl >/dev/null; then
        curl -fsS --max-time 3 --unix-socket "$PODMAN_SOCK" http://d/_ping >/dev/null 2>&1
    else
        timeout 5 podman --remote --url "unix://$PODMAN_SOCK" info >/dev/null 2>&1
    fi
}

podman_service_pids() { pgrep -f "podman system service .*${PODMAN_SOCK}" || true; }

# Podman pulls over HTTPS unless told otherwise; the test registries are plain
# HTTP on loopback. Prints each file it wrote (the service caches registry
# settings, so it must then restart).
configure_podman_test_registry() {
    local dir=/etc/containers/registries.conf.d name addr file
    for name in devinst-test-registry:$REGISTRY_ADDR devinst-test-private-registry:$PRIVATE_REGISTRY_ADDR; do
        addr=${name#*:}
        file=$dir/${name%%:*}.conf
        [[ -f $file ]] && continue
        mkdir -p "$dir"
        printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$addr" >"$file"
        echo "$file"
    done
}

ensure_podman() {
    local ulimits registry_conf pid
    ulimits=$(configure_podman_ulimits)
    [[ -n $ulimits ]] && log "podman: default ulimits written to $CONTAINERS_CONF"
    registry_conf=$(configure_podman_test_registry)
    [[ -n $registry_conf ]] && log "podman: test registries marked as plain HTTP in ${registry_conf//$'\n'/, }"

    if [[ -n $ulimits$registry_conf ]] && podman_api_up; then
        # The service reads its configuration at start: restart ours.
        for pid in $(podman_service_pids); do
            log "podman: restarting API service (pid $pid) for the new configuration"
            kill "$pid" 2>/dev/null || true
        done
        sleep 1
    fi
    if ! podman_api_up; then
        log "podman: starting API service on $PODMAN_SOCK (log: $PODMAN_LOG)"
        mkdir -p "$(dirname "$PODMAN_SOCK")"
        rm -f "$PODMAN_SOCK"
        (cd / && exec setsid nohup podman system service --time=0 "unix://$PODMAN_SOCK") >>"$PODMAN_LOG" 2>&1 </dev/null &
        disown || true
        await_service "podman: the API" podman_api_up "$PODMAN_LOG" || return 1
    fi
    log "podman: API up"

    # Podman has its own image store (it names the copies localhost/IMG:TAG and
    # resolves the short names). Copy each test image over when it is missing
    # there or differs from Docker's (rebuilt since the last copy).
    local img want have
    for img in "$BUSYBOX_IMAGE" "$PYTHON_IMAGE"; do
        want=$(docker image inspect -f '{{.Id}}' "$img")
        have=$(podman image inspect -f '{{.Id}}' "localhost/$img" 2>/dev/null || true)
        if [[ ${want#sha256:} == "${have#sha256:}" ]]; then
            log "podman image $img: present"
        else
            log "podman image $img: copying from docker"
            docker save "$img" | podman load -q >/dev/null
        fi
    done

    # Smoke test through the Docker-compatible API (create/start/wait/remove).
    if ! DOCKER_HOST="unix://$PODMAN_SOCK" docker run --rm "localhost/$BUSYBOX_IMAGE" true >/dev/null 2>&1; then
        log "podman: WARNING: a container does not run through the API; try:"
        log "  DOCKER_HOST=unix://$PODMAN_SOCK docker run --rm localhost/$BUSYBOX_IMAGE true"
        return 1
    fi
    log "podman: a container runs through the Docker-compatible API"
}

# ---------------------------------------------------------------------------
# 4a. Rootless Podman: an ordinary user with an API service of their own
# ---------------------------------------------------------------------------
# The user, their runtime directory and socket: tests/integration/rootless.rs
# knows them by these names.
ROOTLESS_USER=devinst-rootless
ROOTLESS_LOG=/tmp/devinst-rootless-podman.log

rootless_uid() { id -u "$ROOTLESS_USER"; }
rootless_home() { getent passwd "$ROOTLESS_USER" | cut -d: -f6; }
rootless_runtime_dir() { echo "/run/user/$(rootless_uid)"; }
rootless_sock() { echo "$(rootless_runtime_dir)/podman/podman.sock"; }

# A command as the rootless user, with the environment rootless Podman needs
# (its HOME for the storage and configuration, XDG_RUNTIME_DIR for the socket
# and its pause process), from a directory they may enter.
as_rootless() {
    (cd "$(rootless_home)" && setpriv --reuid="$ROOTLESS_USER" --regid="$ROOTLESS_USER" --init-groups \
        env -i HOME="$(rootless_home)" USER="$ROOTLESS_USER" LOGNAME="$ROOTLESS_USER" \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin XDG_RUNTIME_DIR="$(rootless_runtime_dir)" "$@")
}

rootless_api_up() {
    curl -fsS --max-time 3 --unix-socket "$(rootless_sock)" http://d/_ping >/dev/null 2>&1
}

ensure_rootless_user() {
    if ! id "$ROOTLESS_USER" >/dev/null 2>&1; then
        log "rootless podman: adding user $ROOTLESS_USER"
        useradd -m -s /bin/bash "$ROOTLESS_USER"
    fi
    # useradd gives a new user subordinate ids (login.defs SUB_UID_*); a user
    # made without them cannot run rootless containers.
    local file
    for file in /etc/subuid /etc/subgid; do
        grep -q "^$ROOTLESS_USER:" "$file" 2>/dev/null ||
            die "rootless podman: $ROOTLESS_USER has no range in $file (usermod --add-subuids/--add-subgids)"
    done
    # slirp4netns (the rootless network) opens /dev/net/tun as the user.
    if [[ -c /dev/net/tun && $(stat -c %a /dev/net/tun) != 666 ]]; then
        chmod 666 /dev/net/tun
    fi
    local home conf
    home=$(rootless_home)
    conf=$home/.config/containers/containers.conf
    if [[ ! -s $conf ]]; then
        # The user may not raise limits: Podman's default ulimits fail every
        # start ("error setting rlimit") until they are dropped.
        install -d -o "$ROOTLESS_USER" -g "$ROOTLESS_USER" "$home/.config" "$home/.config/containers"
        printf '[containers]\ndefault_ulimits = []\n' >"$conf"
        chown "$ROOTLESS_USER:$ROOTLESS_USER" "$conf"
        log "rootless podman: wrote $conf"
    fi
    install -d -o "$ROOTLESS_USER" -g "$ROOTLESS_USER" -m 700 "$(rootless_runtime_dir)" "$(rootless_runtime_dir)/podman"
}

ensure_rootless_podman() {
    ensure_rootless_user
    if ! rootless_api_up; then
        log "rootless podman: starting $ROOTLESS_USER's API service on $(rootless_sock) (log: $ROOTLESS_LOG)"
        rm -f "$(rootless_sock)"
        # setsid + nohup: the service must outlive this script.
        as_rootless setsid nohup podman system service --time=0 "unix://$(rootless_sock)" \
            >>"$ROOTLESS_LOG" 2>&1 </dev/null &
        disown || true
        await_service "rootless podman: the API" rootless_api_up "$ROOTLESS_LOG" || return 1
    fi
    log "rootless podman: API up"

    # The user's own image store: copy each test image over when it is
    # missing there or differs from Docker's. The archive goes through a file
    # the user can read (a pipe from root's docker would do too, but a file
    # keeps podman's error message).
    local img want have archive
    for img in "$BUSYBOX_IMAGE" "$PYTHON_IMAGE"; do
        want=$(docker image inspect -f '{{.Id}}' "$img")
        have=$(as_rootless podman image inspect -f '{{.Id}}' "localhost/$img" 2>/dev/null || true)
        if [[ ${want#sha256:} == "${have#sha256:}" ]]; then
            log "rootless podman image $img: present"
            continue
        fi
        log "rootless podman image $img: copying from docker"
        archive=$(mktemp /var/tmp/devinst-rootless-image.XXXXXX)
        TMPDIRS+=("$archive")
        docker save "$img" -o "$archive"
        chmod 644 "$archive"
        as_rootless podman load -q -i "$archive" >/dev/null
        rm -f "$archive"
    done

    if ! DOCKER_HOST="unix://$(rootless_sock)" docker run --rm "localhost/$BUSYBOX_IMAGE" true >/dev/null 2>&1; then
        log "rootless podman: WARNING: a container does not run through $ROOTLESS_USER's API; try:"
        log "  DOCKER_HOST=unix://$(rootless_sock) docker run --rm localhost/$BUSYBOX_IMAGE true"
        return 1
    fi
    log "rootless podman: a container runs through $ROOTLESS_USER's API"
}

# ---------------------------------------------------------------------------
# 4b. A local registry, so tests can exercise a real pull with progress
# ---------------------------------------------------------------------------
REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_DIR=/tmp/devinst-registry
REGISTRY_IMAGE="$REGISTRY_ADDR/$BUSYBOX_IMAGE"

registry_up() { curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; }

ensure_registry() {
    if ! registry_up; then
        mkdir -p "$REGISTRY_DIR/data"
        # The packaged config demands basic auth; this one serves loopback only.
        cat >"$REGISTRY_DIR/config.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
http:
  addr: $REGISTRY_ADDR
YAML
        log "starting a local registry on $REGISTRY_ADDR"
        (cd / && exec setsid nohup docker-registry serve "$REGISTRY_DIR/config.yml") >"$REGISTRY_DIR/log" 2>&1 </dev/null &
        await_service "the local registry" registry_up "$REGISTRY_DIR/log" ||
            die "the local registry did not start"
    fi
    # Pushed once; the tests pull it after removing their local tag.
    if ! curl -fsS "http://$REGISTRY_ADDR/v2/${BUSYBOX_IMAGE%:*}/manifests/${BUSYBOX_IMAGE##*:}" >/dev/null 2>&1; then
        docker tag "$BUSYBOX_IMAGE" "$REGISTRY_IMAGE"
        docker push "$REGISTRY_IMAGE" >/dev/null
        docker rmi "$REGISTRY_IMAGE" >/dev/null
        log "pushed $BUSYBOX_IMAGE to the local registry"
    fi
}

# ---------------------------------------------------------------------------
# 4b'. A second local registry that demands a login (htpasswd), holding the
#      busybox image under a name of its own, for the registry-login tests
# ---------------------------------------------------------------------------
PRIVATE_REGISTRY_ADDR=127.0.0.1:5001
PRIVATE_REGISTRY_DIR=/tmp/devinst-registry-private
# Test-only credentials of a registry that serves loopback alone; the tests
# log in with them (tests/integration/registry.rs has the same values).
PRIVATE_REGISTRY_USER=devinst-test
PRIVATE_REGISTRY_PASSWORD=devinst-test-password
PRIVATE_IMAGE=devinst-test/private-busybox:1
PRIVATE_REGISTRY_IMAGE="$PRIVATE_REGISTRY_ADDR/$PRIVATE_IMAGE"

# Up, and refusing anonymous requests.
private_registry_up() {
    [[ $(curl -sS -o /dev/null -w '%{http_code}' "http://$PRIVATE_REGISTRY_ADDR/v2/" 2>/dev/null) == 401 ]]
}

private_image_pushed() {
    curl -fsS -o /dev/null -u "$PRIVATE_REGISTRY_USER:$PRIVATE_REGISTRY_PASSWORD" \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$PRIVATE_REGISTRY_ADDR/v2/${PRIVATE_IMAGE%:*}/manifests/${PRIVATE_IMAGE##*:}" 2>/dev/null
}

ensure_private_registry() {
    if ! private_registry_up; then
        mkdir -p "$PRIVATE_REGISTRY_DIR/data"
        htpasswd -Bbn "$PRIVATE_REGISTRY_USER" "$PRIVATE_REGISTRY_PASSWORD" >"$PRIVATE_REGISTRY_DIR/htpasswd"
        cat >"$PRIVATE_REGISTRY_DIR/config.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $PRIVATE_REGISTRY_DIR/data
http:
  addr: $PRIVATE_REGISTRY_ADDR
auth:
  htpasswd:
    realm: devinst-test
    path: $PRIVATE_REGISTRY_DIR/htpasswd
YAML
        log "starting a local registry that demands a login on $PRIVATE_REGISTRY_ADDR"
        (cd / && exec setsid nohup docker-registry serve "$PRIVATE_REGISTRY_DIR/config.yml") >"$PRIVATE_REGISTRY_DIR/log" 2>&1 </dev/null &
        await_service "the registry on $PRIVATE_REGISTRY_ADDR" private_registry_up "$PRIVATE_REGISTRY_DIR/log" ||
            die "the registry on $PRIVATE_REGISTRY_ADDR did not start"
    fi
    if ! private_image_pushed; then
        # Logged in through a config directory of its own: root's own
        # ~/.docker/config.json is never touched.
        local config
        config=$(mktemp -d /tmp/devinst-docker-config.XXXXXX)
        TMPDIRS+=("$config")
        printf '%s' "$PRIVATE_REGISTRY_PASSWORD" |
            DOCKER_CONFIG=$config docker login -u "$PRIVATE_REGISTRY_USER" --password-stdin "$PRIVATE_REGISTRY_ADDR" >/dev/null 2>&1 ||
            die "docker login $PRIVATE_REGISTRY_ADDR failed; see $PRIVATE_REGISTRY_DIR/log"
        docker tag "$BUSYBOX_IMAGE" "$PRIVATE_REGISTRY_IMAGE"
        DOCKER_CONFIG=$config docker push "$PRIVATE_REGISTRY_IMAGE" >/dev/null
        docker rmi "$PRIVATE_REGISTRY_IMAGE" >/dev/null
        rm -rf "$config"
        log "pushed $BUSYBOX_IMAGE to $PRIVATE_REGISTRY_IMAGE"
    fi
}

# ---------------------------------------------------------------------------
# 4c. The dashboard's browser test: its Node packages (playwright-core)
# ---------------------------------------------------------------------------
ensure_browser_test_packages() {
    if [[ -d $BROWSER_TESTS/node_modules/playwright-core ]]; then
        log "browser tests: node packages present"
        return
    fi
    command -v npm >/dev/null ||
        die "browser tests: no npm; install Node.js 20 or newer with npm (tests/browser needs it)"
    local major
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    ((major >= 20)) ||
        die "browser tests: playwright-core needs Node.js 20 or newer, found $(node --version 2>/dev/null || echo none)"
    log "browser tests: npm ci in tests/browser"
    (cd "$BROWSER_TESTS" && npm ci --silent --no-audit --no-fund </dev/null >&2) ||
        die "browser tests: npm ci in tests/browser failed"
}

# ---------------------------------------------------------------------------
# 4d. Python tools from PyPI, in a venv of their own: the API fuzzer
#     (schemathesis) and an S3-protocol server (moto) for snapshot push/pull
# ---------------------------------------------------------------------------
python_tools_present() {
    local wanted=("$@") frozen
    frozen=$("$TEST_VENV/bin/pip" freeze 2>/dev/null) || return 1
    local tool
    for tool in "${wanted[@]}"; do
        grep -qiF "${tool/\[server\]/}" <<<"$frozen" || return 1
    done
}

ensure_python_tools() {
    if python_tools_present "${PYTHON_TOOLS[@]}"; then
        log "python tools: ${PYTHON_TOOLS[*]} present"
        return
    fi
    local py
    py=$(python_bin)
    [[ -n $py ]] || die "python tools: no python3 to make a venv with"
    log "python tools: installing ${PYTHON_TOOLS[*]} into target/test-tools/venv"
    [[ -x $TEST_VENV/bin/pip ]] ||
        "$py" -m venv "$TEST_VENV" || die "python tools: cannot make a venv with $py (python3-venv?)"
    "$TEST_VENV/bin/pip" install --quiet "${PYTHON_TOOLS[@]}" </dev/null >&2 ||
        die "python tools: pip install ${PYTHON_TOOLS[*]} failed"
}

browser_state() {
    local chromium playwright
    chromium=$(chromium --version 2>/dev/null | awk '{ print $1, $2 }' || true)
    playwright=$(node -p 'require(process.argv[1]).version' \
        "$BROWSER_TESTS/node_modules/playwright-core/package.json" 2>/dev/null || true)
    printf '%s, playwright-core %s' "${chromium:-no chromium}" "${playwright:-missing}"
}

# ---------------------------------------------------------------------------
# 5. Summary
# ---------------------------------------------------------------------------
image_state() {
    local ref=$1
    docker image inspect --format '{{slice .Id 7 19}} {{.Size}}' "$ref" 2>/dev/null |
        awk '{ printf "present (%s, %d MB)", $1, $2 / 1000000 }' || true
}

summary() {
    local api runtimes podman_state=""
    api=$(docker version --format 'engine {{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null || echo "not answering")
    runtimes=$(docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null || true)
    printf 'test-env: %-22s %s\n' "docker" "$api" >&2
    printf 'test-env: %-22s %s\n' "runtimes" "${runtimes% }" >&2
    printf 'test-env: %-22s %s\n' "$BUSYBOX_IMAGE" "$(image_state "$BUSYBOX_IMAGE")" >&2
    printf 'test-env: %-22s %s\n' "$PYTHON_IMAGE" "$(image_state "$PYTHON_IMAGE") [Debian bookworm + python3]" >&2
    printf 'test-env: %-22s %s\n' "registry" "$(registry_up && echo "http://$REGISTRY_ADDR" || echo "not answering")" >&2
    printf 'test-env: %-22s %s\n' "registry with login" "$(private_registry_up && echo "http://$PRIVATE_REGISTRY_ADDR" || echo "not answering")" >&2
    printf 'test-env: %-22s %s\n' "browser" "$(browser_state)" >&2
    printf 'test-env: %-22s %s\n' "rootless podman" \
        "$(rootless_api_up && echo "$ROOTLESS_USER's API on unix://$(rootless_sock)" || echo "not answering")${ROOTLESS_FAILED:+ (smoke test FAILED)}" >&2
    if ((WANT_PODMAN)); then
        if podman_api_up; then
            podman_state="API $(DOCKER_HOST="unix://$PODMAN_SOCK" docker version --format '{{.Server.APIVersion}}' 2>/dev/null || echo '?') on unix://$PODMAN_SOCK"
        else
            podman_state="not answering"
        fi
        printf 'test-env: %-22s %s\n' "podman" "$podman_state${PODMAN_FAILED:+ (smoke test FAILED)}" >&2
    fi
}

START=$SECONDS
install_packages
ensure_docker
build_busybox_image
build_python_image
ensure_registry
ensure_private_registry
ensure_browser_test_packages
ensure_python_tools
ROOTLESS_FAILED=""
ensure_rootless_podman || ROOTLESS_FAILED=1
PODMAN_FAILED=""
if ((WANT_PODMAN)); then
    ensure_podman || PODMAN_FAILED=1
fi
summary
log "ready in $((SECONDS - START)) s"
if [[ -n $PODMAN_FAILED$ROOTLESS_FAILED ]]; then
    exit 1
fi
