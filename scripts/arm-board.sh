#!/usr/bin/env bash
# An emulated arm64 Debian 12 board on an x86_64 host, for `make test-arm`.
#
# The board is a debootstrap minbase rootfs run under qemu-user: through
# binfmt_misc + chroot where the kernel lets us register qemu, through
# `proot -q qemu-aarch64-static` otherwise. It has python3 and a virtual
# environment at /opt/edge-server with the project pip-installed the way a board
# user installs it (TVM's aarch64 wheels, cloudpickle, ...) and NO compiler: that
# is the board most users have, and the one TVM's `.tar` route fails on.
#
# Building takes minutes (the second debootstrap stage and pip run emulated), so
# the result is cached OUTSIDE the checkout, keyed on what went into it:
#   $TVM_EDGE_CACHE (default ~/.cache/tvm-edge-rpc)/arm64-bookworm-<key>/rootfs
#
#   scripts/arm-board.sh deps           host packages (apt) this needs, installed when missing
#   scripts/arm-board.sh build          build or reuse the cached board; prints its rootfs
#   scripts/arm-board.sh install        (re)install this checkout into the board's venv
#   scripts/arm-board.sh run [-C DIR] CMD...
#                                       run CMD inside the board (in DIR, default /; it
#                                       shares the host's network, PIDs and CPUs)
#   scripts/arm-board.sh test [PYTEST ARGS]
#                                       the board-side test modules, run on the board
#   scripts/arm-board.sh runner         print how CMDs run: binfmt or proot
#   scripts/arm-board.sh path           print the rootfs path (built or not)
#
# ARM_BOARD_RUNNER=proot forces the proot route even where binfmt works.
set -euo pipefail

PROG=arm-board.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(dirname "$HERE")
SUITE=bookworm
ARCH=arm64
QEMU=qemu-aarch64-static
MIRROR=${ARM_BOARD_MIRROR:-http://deb.debian.org/debian}
# What the image holds besides minbase. No gcc/g++/binutils: see the header.
BOARD_DEBS=python3,python3-venv,ca-certificates
HOST_DEBS="qemu-user-static binfmt-support debootstrap proot g++-aarch64-linux-gnu g++-arm-linux-gnueabihf"
# Board-side tests run inside the image too; these (and `wheel`, so the per-run
# reinstall of the checkout needs no network) are not what a user installs.
BOARD_TEST_PIP="pytest>=7 hypothesis>=6"
# The board-side modules `test` runs on this compiler-less board by default: the
# probe (arch from the ELF header, uarch, ISA), the pure mode/cpulist code, the
# probe CLI, the session's mode reports and linker refusal. Left out, and run
# natively by `make test`: modules that link kernels on the board (it has no
# compiler) or start trackers/daemons by the dozen (minutes each under qemu).
# The capture-vs-live probe test compares /proc/cpuinfo (the host's, under
# qemu-user) with the ELF arch (aarch64): true on silicon, false in emulation.
# The linker announcement is checked on this board from the host (tests/arm).
# The tracker runs on the host (tornado is a host extra), so the wire test that
# talks to a real one is the host's too.
BOARD_TESTS=${ARM_BOARD_TESTS:-"tests/edge_common tests/edge_server/board tests/edge_server/cli
    tests/edge_server/session/test_ipc.py tests/edge_server/session/test_toolchain.py
    --deselect tests/edge_server/cli/test_probe.py::test_capture_script_output_probes_like_the_live_machine
    --deselect tests/edge_server/session/test_toolchain.py::test_daemon_announces_its_linker_on_the_tracker
    --deselect tests/edge_common/test_wire.py::test_greet_and_call_against_a_real_tracker"}
CACHE=${TVM_EDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tvm-edge-rpc}
RECIPE_VERSION=1   # bump when the build steps below change meaning

say() { echo "$PROG: $*" >&2; }
die() { echo "$PROG: error: $*" >&2; exit 1; }

# The project's runtime requirements as setup.cfg pins them: part of the cache key.
requirements() {
    sed -n '/^install_requires/,/^[^ ]/p' "$SRC/setup.cfg" | grep -E '^\s+[A-Za-z]' | sed 's/^\s*//'
}

cache_key() {
    { echo "recipe=$RECIPE_VERSION suite=$SUITE arch=$ARCH debs=$BOARD_DEBS test=$BOARD_TEST_PIP"
      requirements; } | sha256sum | cut -c1-16
}

board_dir() { echo "$CACHE/$ARCH-$SUITE-$(cache_key)"; }

# apt-get with retries: other jobs on this machine may hold the dpkg lock.
apt_retry() {
    local i
    for i in $(seq 1 30); do
        if DEBIAN_FRONTEND=noninteractive apt-get "$@"; then return 0; fi
        say "apt-get $1 failed (dpkg lock held by another job?); retry $i/30 in 10 s"
        sleep 10
    done
    die "apt-get $* kept failing; run it by hand to see why"
}

cmd_deps() {
    local missing="" p
    for p in $HOST_DEBS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    [ "$(id -u)" = 0 ] || die "missing host packages:$missing; run: sudo apt-get install -y$missing"
    say "installing host packages:$missing"
    apt_retry update -qq
    # shellcheck disable=SC2086
    apt_retry install -y -qq --no-install-recommends $missing >/dev/null
}

# binfmt_misc: mount it and enable qemu-aarch64 (with the F flag qemu-user-static
# registers, the kernel opens the interpreter at registration, so a chroot needs
# no copy of qemu inside). Returns non-zero where the kernel does not allow it.
binfmt_ready() {
    local bm=/proc/sys/fs/binfmt_misc
    [ -e "$bm/register" ] || mount -t binfmt_misc binfmt_misc "$bm" 2>/dev/null || return 1
    if ! grep -qs '^enabled' "$bm/qemu-aarch64"; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || return 1
    fi
    grep -qs '^enabled' "$bm/status" && grep -qs '^enabled' "$bm/qemu-aarch64" \
        && grep -qs '^flags:.*F' "$bm/qemu-aarch64"
}

runner() {
    if [ "${ARM_BOARD_RUNNER:-}" = proot ]; then echo proot; return; fi
    if [ "$(id -u)" = 0 ] && binfmt_ready; then echo binfmt; else echo proot; fi
}

# Run "$@" inside ROOTFS, in directory $BOARD_CWD (default /). binfmt: a private mount namespace (the binds vanish
# with the process, nothing leaks on the host) + chroot; the command keeps the
# PID the caller started, so signals reach it. proot: user-space, no root needed.
in_board() {
    local rootfs=$1; shift
    local envs=(env -i HOME=/root LANG=C.UTF-8 PATH=/opt/edge-server/bin:/usr/local/bin:/usr/bin:/bin
                TMPDIR=/tmp "${ARM_BOARD_ENV[@]}")
    case $(runner) in
        binfmt)
            # shellcheck disable=SC2016  # the inner scripts expand their own arguments
            exec unshare --mount --propagation private -- /bin/sh -c '
                r=$1; shift
                for d in proc sys dev; do mount --rbind "/$d" "$r/$d"; done
                exec chroot "$r" /bin/sh -c '\''cd "$0" && exec "$@"'\'' "$@"' \
                sh "$rootfs" "${BOARD_CWD:-/}" "${envs[@]}" "$@" ;;
        proot)
            exec proot -0 -q "$QEMU" -r "$rootfs" -b /proc -b /sys -b /dev -w "${BOARD_CWD:-/}" \
                "${envs[@]}" "$@" ;;
    esac
}

ARM_BOARD_ENV=()

# The board trusts what the host trusts (a host behind a TLS-inspecting proxy has
# its CA in this bundle; pip on the board needs it as much as pip here does).
trust_host_cas() {
    local rootfs=$1 bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
    if [ -f "$bundle" ]; then
        mkdir -p "$rootfs/etc/ssl/certs"
        cp "$bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    fi
}

build_rootfs() {
    local dir=$1 rootfs=$1/rootfs.partial
    if [ -f "$rootfs/.edge-rootfs-done" ]; then
        say "reusing the debootstrapped rootfs of an interrupted build: $rootfs"
        return 0
    fi
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    say "debootstrap --foreign $SUITE $ARCH minbase (+ $BOARD_DEBS) into $rootfs"
    debootstrap --foreign --arch="$ARCH" --variant=minbase --include="$BOARD_DEBS" \
        "$SUITE" "$rootfs" "$MIRROR" >"$dir/debootstrap.log" 2>&1 \
        || die "debootstrap first stage failed; see $dir/debootstrap.log"
    say "second stage, emulated ($(runner)); takes minutes"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    ( in_board "$rootfs" /debootstrap/debootstrap --second-stage ) >>"$dir/debootstrap.log" 2>&1 \
        || die "debootstrap second stage failed; see $dir/debootstrap.log (tail: $(tail -3 "$dir/debootstrap.log" | tr '\n' ' '))"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    for tool in gcc g++ cc c++ clang ld; do
        if ( in_board "$rootfs" /bin/sh -c "command -v $tool" ) >/dev/null 2>&1; then
            die "the board image has $tool; it must have no compiler"
        fi
    done
    touch "$rootfs/.edge-rootfs-done"
}

# The README's board install: a venv and `pip install` of the project, which pulls
# the pinned TVM pair (aarch64 wheels) and cloudpickle. The project itself is
# reinstalled from the checkout by `install` on every run.
build_venv() {
    local rootfs=$1 log=$2
    say "board venv: pip install of the project and its pinned requirements (emulated)"
    copy_sources "$rootfs"
    trust_host_cas "$rootfs"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    ( in_board "$rootfs" /usr/bin/python3 -m venv /opt/edge-server ) >>"$log" 2>&1 || die "venv failed; see $log"
    # shellcheck disable=SC2086
    ( in_board "$rootfs" /opt/edge-server/bin/python -m pip install --disable-pip-version-check \
        /tmp/edge-src wheel $BOARD_TEST_PIP ) >>"$log" 2>&1 || die "pip install on the board failed; see $log"
}

copy_sources() {
    local rootfs=$1
    rm -rf "$rootfs/tmp/edge-src"
    mkdir -p "$rootfs/tmp/edge-src"
    # Sources only, as deploy/install.sh copies them (tests ride along: they run on the board).
    tar -C "$SRC" --exclude=.git --exclude=.venv --exclude='*.egg-info' --exclude=build \
        --exclude=__pycache__ --exclude=.pytest_cache --exclude=bench/out -cf - . \
        | tar -C "$rootfs/tmp/edge-src" -xf -
}

cmd_build() {
    cmd_deps
    local dir; dir=$(board_dir)
    mkdir -p "$dir"
    exec 9>"$dir/lock"
    flock 9
    if [ -f "$dir/ready" ]; then
        echo "$dir/rootfs"
        return 0
    fi
    local t0=$SECONDS
    build_rootfs "$dir"
    build_venv "$dir/rootfs.partial" "$dir/pip.log"
    rm -rf "$dir/rootfs"
    rm -f "$dir/rootfs.partial/.edge-rootfs-done"
    mv "$dir/rootfs.partial" "$dir/rootfs"
    { echo "built $(date -u +%FT%TZ) in $((SECONDS - t0)) s"; echo "key $(cache_key)"; requirements; } >"$dir/ready"
    say "board ready in $((SECONDS - t0)) s: $dir/rootfs"
    echo "$dir/rootfs"
}

cmd_install() {
    local rootfs; rootfs=$(cmd_build | tail -1)
    exec 9>"$(dirname "$rootfs")/lock"
    flock 9
    copy_sources "$rootfs"
    say "pip install of this checkout into the board's /opt/edge-server (deps already there)"
    ( in_board "$rootfs" /opt/edge-server/bin/python -m pip install --disable-pip-version-check \
        --no-deps --force-reinstall --no-build-isolation -q /tmp/edge-src ) >&2 \
        || die "pip install of the checkout on the board failed"
    echo "$rootfs"
}

cmd_run() {
    if [ "${1:-}" = -C ]; then BOARD_CWD=$2; shift 2; fi
    local rootfs; rootfs="$(board_dir)/rootfs"
    [ -f "$(board_dir)/ready" ] || die "no board built at $rootfs; run: $0 build"
    # Pass through the variables the tests set for the board (EDGE_*, TVM_*, PYTHON*).
    local v
    while IFS= read -r v; do ARM_BOARD_ENV+=("$v"); done < <(env | grep -E '^(EDGE_|TVM_|PYTHONUNBUFFERED|PYTHONHASHSEED|HYPOTHESIS_)' || true)
    in_board "$rootfs" "$@"
}

case ${1:-} in
    deps) cmd_deps ;;
    build) cmd_build ;;
    install) cmd_install ;;
    run) shift; cmd_run "$@" ;;
    test) shift   # pytest options; ARM_BOARD_TESTS overrides which modules run
          # shellcheck disable=SC2086
          cmd_run -C /tmp/edge-src /opt/edge-server/bin/python -m pytest -p no:cacheprovider \
              "$@" $BOARD_TESTS ;;
    runner) runner ;;
    path) echo "$(board_dir)/rootfs" ;;
    *) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
