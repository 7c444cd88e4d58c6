#!/usr/bin/env bash
# Install edge-server (on a board) or the TVM tracker (on the tuning host) as
# a systemd service: a virtual environment with this checkout pip-installed,
# the unit, the settings file, then `systemctl enable --now`.
#
#   sudo deploy/install.sh                        # board: edge-server.service
#   sudo deploy/install.sh --tracker 10.0.0.5:9190 --key rk3399
#   sudo deploy/install.sh --role tracker         # host: tvm-tracker.service
#   deploy/install.sh --dry-run                   # print every action, change nothing
#   DESTDIR=/tmp/img deploy/install.sh            # stage under /tmp/img, no systemctl
#
# Run `deploy/install.sh --help` for every option.
set -euo pipefail

PROG=install.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(dirname "$HERE")
DEFAULT_PREFIX=/opt/edge-server
MIN_PYTHON=3.10

PREFIX=$DEFAULT_PREFIX
ROLE=board
PYTHON=
DRY_RUN=0
SYSTEMCTL=1
TRACKER=
KEY=
PIP_ARGS=()
DESTDIR=${DESTDIR:-}

usage() {
    cat <<EOF
Usage: $PROG [options]

Installs into a virtual environment and sets up a systemd service.

  --role board|tracker  board (default): edge-server.service and its settings
                        file /etc/default/edge-server; tracker: tvm-tracker.service
                        for the machine that runs the TVM tracker
  --prefix DIR          virtual environment to create or update
                        (default $DEFAULT_PREFIX); the units run DIR/bin/...
  --python PY           interpreter for the environment (default /usr/bin/python3,
                        at least $MIN_PYTHON, outside /home and /root)
  --tracker HOST:PORT   TRACKER= in a newly written settings file
  --key KEY             KEY= in a newly written settings file
  --pip-arg ARG         pass ARG to pip install (repeatable), e.g.
                        --pip-arg=--find-links=/media/wheels --pip-arg=--no-index
  --destdir DIR         stage everything under DIR (same as DESTDIR=DIR): no
                        systemctl, root not needed; scripts in the staged
                        environment point at PREFIX, so DIR can be copied to /
  --no-systemctl        write files but do not run systemctl
  --dry-run             print every action, change nothing
  -h, --help            this text

The settings file is written only when it does not exist yet: your edits
survive reinstalls. Run as root unless staging with DESTDIR.
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

note() {
    echo "$PROG: $*"
}

# Every change goes through here: printed, and run unless --dry-run.
run() {
    echo "+ $*"
    if [ "$DRY_RUN" = 0 ]; then
        "$@"
    fi
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --role) ROLE=${2:?--role needs board or tracker}; shift ;;
            --role=*) ROLE=${1#*=} ;;
            --prefix) PREFIX=${2:?--prefix needs a directory}; shift ;;
            --prefix=*) PREFIX=${1#*=} ;;
            --python) PYTHON=${2:?--python needs an interpreter}; shift ;;
            --python=*) PYTHON=${1#*=} ;;
            --tracker) TRACKER=${2:?--tracker needs HOST:PORT}; shift ;;
            --tracker=*) TRACKER=${1#*=} ;;
            --key) KEY=${2:?--key needs a key}; shift ;;
            --key=*) KEY=${1#*=} ;;
            --pip-arg) PIP_ARGS+=("${2:?--pip-arg needs an argument}"); shift ;;
            --pip-arg=*) PIP_ARGS+=("${1#*=}") ;;
            --destdir) DESTDIR=${2:?--destdir needs a directory}; shift ;;
            --destdir=*) DESTDIR=${1#*=} ;;
            --no-systemctl) SYSTEMCTL=0 ;;
            --dry-run|-n) DRY_RUN=1 ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown option '$1' (see $PROG --help)" ;;
        esac
        shift
    done
}

validate_args() {
    case $ROLE in
        board|tracker) ;;
        *) die "--role must be 'board' or 'tracker', not '$ROLE'" ;;
    esac
    case $PREFIX in
        /*) ;;
        *) die "--prefix must be an absolute path (the unit runs PREFIX/bin/...), not '$PREFIX'" ;;
    esac
    PREFIX=${PREFIX%/}
    [ -n "$PREFIX" ] || die "--prefix / is not a virtual environment directory; use e.g. $DEFAULT_PREFIX"
    if [ -n "$DESTDIR" ]; then
        case $DESTDIR in
            /*) DESTDIR=${DESTDIR%/} ;;
            *) DESTDIR=$(pwd)/$DESTDIR ;;
        esac
        SYSTEMCTL=0
    fi
    if [ -n "$KEY" ] && ! [[ $KEY =~ ^[A-Za-z0-9._-]+$ ]]; then
        die "--key '$KEY' has characters a TVM key cannot carry; use letters, digits, '.', '_' and '-' (e.g. rk3399)"
    fi
    if [ -n "$TRACKER" ] && ! [[ $TRACKER =~ ^[^[:space:]:]+:[0-9]+$ ]]; then
        die "--tracker '$TRACKER' is not HOST:PORT (e.g. 10.0.0.5:9190)"
    fi
    if [ "$ROLE" = tracker ] && { [ -n "$KEY" ] || [ -n "$TRACKER" ]; }; then
        die "--tracker and --key configure a board; the tracker role has no settings file"
    fi
}

check_root() {
    [ -n "$DESTDIR" ] && return 0
    [ "$(id -u)" = 0 ] && return 0
    if [ "$DRY_RUN" = 1 ]; then
        note "note: not root; the real install needs root (sudo $0 ...) or DESTDIR=DIR to stage"
        return 0
    fi
    die "must run as root to write $PREFIX, /etc/systemd/system and run systemctl: sudo $0 $*
  (or stage the files without root: DESTDIR=/tmp/stage $0)"
}

pick_python() {
    if [ -z "$PYTHON" ]; then
        if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
    fi
    command -v "$PYTHON" >/dev/null 2>&1 \
        || die "no Python interpreter '$PYTHON'; install it: apt-get install -y python3 python3-venv"
    "$PYTHON" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$MIN_PYTHON'.split('.'))))" \
        || die "Python '$PYTHON' is $("$PYTHON" -c 'import platform; print(platform.python_version())'); edge-server needs Python >= $MIN_PYTHON (the pinned apache-tvm 0.27 wheels; Debian 12+, Ubuntu 22.04+, Raspberry Pi OS Bookworm+), or pass --python for a newer one"
    local real
    real=$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))')
    case $real in
        /home/*|/root/*|/run/user/*)
            die "Python '$PYTHON' is $real, under a home directory the service cannot see (ProtectHome=yes); use a system Python: --python /usr/bin/python3" ;;
    esac
}

# Missing system packages, by their Debian/Ubuntu names.
missing_packages() {
    local missing=()
    "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    if [ "$ROLE" = board ]; then
        # systemd-python is built from source: headers, libsystemd, pkg-config, a C compiler;
        # sessions link uploaded .tar kernels with g++.
        "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
            || missing+=(python3-dev)
        command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
        if command -v pkg-config >/dev/null 2>&1 && ! pkg-config --exists libsystemd; then
            missing+=(libsystemd-dev)
        fi
        command -v gcc >/dev/null 2>&1 || missing+=(gcc)
        command -v g++ >/dev/null 2>&1 || missing+=(g++)
    fi
    echo "${missing[*]}"
}

check_packages() {
    local missing
    missing=$(missing_packages)
    [ -z "$missing" ] && return 0
    die "missing system packages: $missing
  install them first: sudo apt-get install -y $missing"
}

check_source() {
    if ! grep -qs '^name = tvm-edge-rpc' "$SRC/setup.cfg"; then
        die "$SRC is not a tvm-edge-rpc checkout (no setup.cfg naming tvm-edge-rpc); run the install.sh inside the checkout"
    fi
}

# pip builds a source directory in place (setuptools writes *.egg-info and
# build/ into it), which fails in a checkout we may not write and races with
# a developer's own builds: build from a private copy instead.
copy_source() {
    local dest=$1
    echo "+ copy $SRC to $dest (sources only: no .git, .venv, tests, build output)"
    [ "$DRY_RUN" = 1 ] && return 0
    tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./tests --exclude=./bench \
        --exclude=./build --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ \
        --exclude=.pytest_cache --exclude=.hypothesis -cf - . | tar -C "$dest" -xf -
}

make_venv() {
    local venv=$DESTDIR$PREFIX extra=systemd build
    [ "$ROLE" = tracker ] && extra=host
    check_source
    if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ -n "$(ls -A "$venv" 2>/dev/null)" ]; then
        die "$venv exists and is not a virtual environment; remove it or choose another --prefix"
    fi
    if [ -f "$venv/pyvenv.cfg" ]; then
        note "updating the existing environment $venv"
    else
        run "$PYTHON" -m venv "$venv"
    fi
    if [ "$DRY_RUN" = 1 ]; then
        build="\$TMPDIR/edge-server-src.XXXXXX"
    else
        build=$(mktemp -d "${TMPDIR:-/tmp}/edge-server-src.XXXXXX")
        # shellcheck disable=SC2064  # expand now: the trap runs after locals are gone
        trap "rm -rf '$build'" EXIT
    fi
    copy_source "$build"
    run "$venv/bin/python" -m pip install --disable-pip-version-check \
        ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} "${build}[$extra]"
    if [ -n "$DESTDIR" ]; then
        unstage_paths "$venv"
    fi
}

# Scripts pip writes into a staged environment name DESTDIR/PREFIX/bin/python;
# rewrite them to PREFIX so the staged tree works once copied to the board.
unstage_paths() {
    local venv=$1 f
    echo "+ rewrite $venv -> $PREFIX in $venv/bin/* and $venv/pyvenv.cfg"
    [ "$DRY_RUN" = 1 ] && return 0
    for f in "$venv"/bin/* "$venv/pyvenv.cfg"; do
        if [ -f "$f" ] && [ ! -L "$f" ] && grep -qIF "$venv" "$f"; then
            sed -i "s|$venv|$PREFIX|g" "$f"
        fi
    done
}

install_unit() {
    local name=$1 dest=$DESTDIR/etc/systemd/system/$1
    run install -d -m 0755 "$DESTDIR/etc/systemd/system"
    echo "+ install -m 0644 $HERE/$name $dest (ExecStart=$PREFIX/bin/...)"
    [ "$DRY_RUN" = 1 ] && return 0
    local tmp
    tmp=$(mktemp "$dest.XXXXXX")
    sed "/^Exec/s|$DEFAULT_PREFIX|$PREFIX|g" "$HERE/$name" > "$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$dest"
}

install_env() {
    local dest=$DESTDIR/etc/default/edge-server
    if [ -e "$dest" ]; then
        echo "= keep $dest: it exists (new defaults and docs are in $HERE/edge-server.env)"
        if [ -n "$TRACKER$KEY" ]; then
            note "warning: --tracker/--key ignored because $dest exists; edit it, then systemctl restart edge-server"
        fi
        return 0
    fi
    run install -d -m 0755 "$DESTDIR/etc/default"
    local edits=()
    [ -n "$TRACKER" ] && edits+=("TRACKER=$TRACKER")
    [ -n "$KEY" ] && edits+=("KEY=$KEY")
    echo "+ install -m 0644 $HERE/edge-server.env $dest${edits[*]+ (with ${edits[*]})}"
    [ "$DRY_RUN" = 1 ] && return 0
    local tmp
    tmp=$(mktemp "$dest.XXXXXX")
    sed -e "${TRACKER:+s|^TRACKER=.*|TRACKER=$TRACKER|}" \
        -e "${KEY:+s|^KEY=.*|KEY=$KEY|}" "$HERE/edge-server.env" > "$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$dest"
}

start_service() {
    local unit=$1
    if [ "$SYSTEMCTL" = 0 ]; then
        if [ -n "$DESTDIR" ]; then
            note "skipping systemctl: staged under $DESTDIR"
        else
            note "skipping systemctl (--no-systemctl); run: systemctl daemon-reload && systemctl enable --now $unit"
        fi
        return 0
    fi
    if [ "$DRY_RUN" = 0 ] && [ ! -d /run/systemd/system ]; then
        note "warning: systemd is not running on this machine; files are installed, start $unit where systemd runs"
        return 0
    fi
    run systemctl daemon-reload
    if [ "$DRY_RUN" = 0 ] && systemctl is-active --quiet "$unit"; then
        run systemctl enable "$unit"
        run systemctl restart "$unit"
    else
        run systemctl enable --now "$unit"
    fi
}

next_steps() {
    [ "$DRY_RUN" = 1 ] && { note "dry run: nothing was changed"; return 0; }
    if [ "$ROLE" = board ]; then
        note "done. Settings: ${DESTDIR}/etc/default/edge-server (TRACKER, KEY, EXTRA_ARGS);"
        note "after editing it: systemctl restart edge-server; state: systemctl status edge-server;"
        note "logs: journalctl -u edge-server -f"
    else
        note "done. The tracker listens on port 9190: systemctl status tvm-tracker; journalctl -u tvm-tracker"
    fi
}

main() {
    parse_args "$@"
    validate_args
    local mode="real"
    [ "$DRY_RUN" = 1 ] && mode="dry run: nothing is changed"
    note "role $ROLE, prefix $PREFIX, root ${DESTDIR:-/} ($mode)"
    check_root "$@"
    pick_python
    check_packages
    make_venv
    if [ "$ROLE" = board ]; then
        install_unit edge-server.service
        install_env
        start_service edge-server.service
    else
        install_unit tvm-tracker.service
        start_service tvm-tracker.service
    fi
    next_steps
}

main "$@"
