#!/usr/bin/env bash
# Install edge-server (on a board) or the TVM tracker (on the tuning host) as
# a systemd service: a virtual environment with this checkout pip-installed,
# the unit, the settings file, then `systemctl enable --now`.
#
#   sudo deploy/install.sh --tracker 10.0.0.5:9190 --key rk3399     # board, from PyPI
#   sudo deploy/install.sh --tracker 10.0.0.5:9190 --key rk3399 --wheelhouse DIR  # offline
#   sudo deploy/install.sh                        # upgrade: keeps /etc/default/edge-server
#   sudo deploy/install.sh ... --lock-clocks max  # also the rules for edge-server --lock-clocks
#   sudo deploy/install.sh --role tracker         # host: tvm-tracker.service
#   sudo deploy/install.sh --uninstall            # stop, disable, remove (keeps settings)
#   deploy/install.sh --dry-run ...               # print every action, change nothing
#   DESTDIR=/tmp/img deploy/install.sh ...        # stage under /tmp/img, no systemctl
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
WHEELHOUSE=
UNINSTALL=0
PURGE=0
LOCK_CLOCKS=
ENV_FILE=/etc/default/edge-server
# What --lock-clocks adds (docs/verdicts.md): source under deploy/ -> where it goes.
CLOCK_FILES=(
    "tmpfiles.d/edge-server-clocks.conf:/etc/tmpfiles.d/edge-server-clocks.conf"
    "sysusers.d/edge-server-clocks.conf:/etc/sysusers.d/edge-server-clocks.conf"
    "edge-server.service.d/lock-clocks.conf:/etc/systemd/system/edge-server.service.d/lock-clocks.conf"
)

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
  --tracker HOST:PORT   TRACKER= in a newly written settings file ([v6addr]:PORT
                        for IPv6); required on a first install
  --key KEY             KEY= in a newly written settings file; required on a
                        first install. An upgrade reads both from the existing
                        $ENV_FILE
  --wheelhouse DIR      install offline from DIR (made by "make wheelhouse
                        ARCH=..." on any machine): no network, no compiler; the
                        systemd module comes from the Debian package in DIR
  --pip-arg ARG         pass ARG to pip install (repeatable), e.g. --pip-arg=--pre
  --lock-clocks max|KHZ also install what edge-server --lock-clocks needs without
                        root: group edge-clocks (sysusers.d), group write to each
                        cpufreq policy's governor and limits (tmpfiles.d), and the
                        unit drop-in; a new settings file gets --lock-clocks=VALUE
                        in EXTRA_ARGS (an existing one is left for you to edit)
  --uninstall           stop and disable the service, remove its unit and the
                        environment at --prefix; the settings file stays
  --purge               with --uninstall: remove $ENV_FILE too
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
            --wheelhouse) WHEELHOUSE=${2:?--wheelhouse needs a directory}; shift ;;
            --wheelhouse=*) WHEELHOUSE=${1#*=} ;;
            --uninstall) UNINSTALL=1 ;;
            --purge) PURGE=1 ;;
            --lock-clocks) LOCK_CLOCKS=${2:?--lock-clocks needs max or a frequency in kHz}; shift ;;
            --lock-clocks=*) LOCK_CLOCKS=${1#--lock-clocks=} ;;
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
    if [ -n "$KEY" ] && [[ $KEY =~ [[:space:]] ]]; then
        die "--key '$KEY' contains whitespace, which the RPC handshake splits on; e.g. ${KEY//[[:space:]]/-}"
    fi
    if [ -n "$KEY" ] && ! [[ $KEY =~ ^[A-Za-z0-9._-]+$ ]]; then
        note "warning: --key '$KEY': stock TVM takes it, but MetaSchedule's RPCConfig.count_num_servers will not count this board (it parses the tracker summary on ':'); letters, digits, '.', '_' and '-' work everywhere"
    fi
    if [ -n "$TRACKER" ] && ! valid_tracker "$TRACKER"; then
        die "--tracker '$TRACKER' is not HOST:PORT (e.g. 10.0.0.5:9190, tracker.lan:9190 or [fd00::5]:9190)"
    fi
    if [ -n "$LOCK_CLOCKS" ] && ! [[ $LOCK_CLOCKS =~ ^(max|[1-9][0-9]*)$ ]]; then
        die "--lock-clocks '$LOCK_CLOCKS': use max (performance governor at the top clock) or a frequency in kHz such as 1416000"
    fi
    if [ -n "$LOCK_CLOCKS" ] && { [ "$ROLE" = tracker ] || [ "$UNINSTALL" = 1 ]; }; then
        die "--lock-clocks goes with a board install (--uninstall removes its files anyway)"
    fi
    if [ "$ROLE" = tracker ] && { [ -n "$KEY" ] || [ -n "$TRACKER" ]; }; then
        die "--tracker and --key configure a board; the tracker role has no settings file"
    fi
    if [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ]; then
        die "--purge goes with --uninstall"
    fi
    if [ "$UNINSTALL" = 1 ] && [ -n "$TRACKER$KEY$WHEELHOUSE" ]; then
        die "--uninstall takes no --tracker, --key or --wheelhouse"
    fi
    if [ -n "$WHEELHOUSE" ]; then
        case $WHEELHOUSE in /*) ;; *) WHEELHOUSE=$(pwd)/$WHEELHOUSE ;; esac
        [ -f "$WHEELHOUSE/wheelhouse.txt" ] \
            || die "--wheelhouse $WHEELHOUSE has no wheelhouse.txt; build one with: make wheelhouse ARCH=$(uname -m)"
    fi
}

# HOST:PORT with a name or IPv4 host, or [IPv6]:PORT, port 1-65535.
valid_tracker() {
    local port
    if [[ $1 =~ ^\[[0-9A-Fa-f:.]+\]:([0-9]+)$ ]] || [[ $1 =~ ^[^][[:space:]:]+:([0-9]+)$ ]]; then
        port=${BASH_REMATCH[1]}
        [ "${#port}" -le 5 ] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ]
    else
        return 1
    fi
}

# A value from the existing settings file (NAME=value, optionally quoted).
env_value() {
    sed -n "s/^$1=[\"']\{0,1\}\([^\"']*\)[\"']\{0,1\}[[:space:]]*\$/\1/p" "$2" | tail -n 1
}

# A first install must say where the tracker is and which key to use; an
# upgrade takes both from the settings file it keeps.
check_settings() {
    [ "$ROLE" = board ] && [ "$UNINSTALL" = 0 ] || return 0
    local env=$DESTDIR$ENV_FILE
    if [ -f "$env" ]; then
        local t k
        t=$(env_value TRACKER "$env")
        k=$(env_value KEY "$env")
        if [ -z "$t" ] || [ -z "$k" ]; then
            die "$env has no TRACKER= or KEY= value; edit it (e.g. TRACKER=10.0.0.5:9190, KEY=rk3399) and rerun"
        fi
        note "settings from $env: TRACKER=$t KEY=$k"
        return 0
    fi
    if [ -z "$TRACKER" ] || [ -z "$KEY" ]; then
        die "a first install needs --tracker HOST:PORT and --key KEY, e.g. $PROG --tracker 10.0.0.5:9190 --key rk3399 (no $env to read them from)"
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
    if [ -n "$WHEELHOUSE" ]; then
        # every wheel is prebuilt; the systemd module is unpacked from a .deb
        command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
    elif [ "$ROLE" = board ]; then
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
    [ -n "$WHEELHOUSE" ] || check_source
    if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ -n "$(ls -A "$venv" 2>/dev/null)" ]; then
        die "$venv exists and is not a virtual environment; remove it or choose another --prefix"
    fi
    if [ -f "$venv/pyvenv.cfg" ]; then
        note "updating the existing environment $venv"
    else
        run "$PYTHON" -m venv "$venv"
    fi
    if [ -n "$WHEELHOUSE" ]; then
        install_from_wheelhouse "$venv"
        finish_venv "$venv"
        return 0
    fi
    if [ "$DRY_RUN" = 1 ]; then
        build="\$TMPDIR/edge-server-src.XXXXXX"
    else
        build=$(mktemp -d "${TMPDIR:-/tmp}/edge-server-src.XXXXXX")
        # shellcheck disable=SC2064  # expand now: the trap runs after locals are gone
        trap "rm -rf '$build'" EXIT
    fi
    copy_source "$build"
    # -I: pip must not see the working directory (a checkout's egg-info there reads
    # as "already installed") nor PYTHONPATH.
    run "$venv/bin/python" -I -m pip install --disable-pip-version-check \
        ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} "${build}[$extra]"
    finish_venv "$venv"
}

finish_venv() {
    local venv=$1
    if [ -n "$DESTDIR" ]; then
        unstage_paths "$venv"
    fi
}

# The value of NAME in the wheelhouse's wheelhouse.txt.
wheelhouse_field() {
    sed -n "s/^$1=//p" "$WHEELHOUSE/wheelhouse.txt" | head -n 1
}

# Offline: pip never leaves DIR (--no-index), and the systemd module is Debian's
# python3-systemd unpacked into the environment, so nothing is compiled here.
install_from_wheelhouse() {
    local venv=$1 arch pyver have version deb site
    arch=$(wheelhouse_field arch)
    pyver=$(wheelhouse_field python)
    version=$(wheelhouse_field version)
    have=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [ "$arch" = "$(uname -m)" ] \
        || die "--wheelhouse $WHEELHOUSE is for $arch, this machine is $(uname -m); build one with: make wheelhouse ARCH=$(uname -m) PYTHON_VERSION=$have"
    [ "$pyver" = "$have" ] \
        || die "--wheelhouse $WHEELHOUSE is for Python $pyver, $PYTHON is $have; build one with: make wheelhouse ARCH=$arch PYTHON_VERSION=$have"
    local extra=""
    [ "$ROLE" = tracker ] && extra="[host]"
    run "$venv/bin/python" -I -m pip install --disable-pip-version-check --no-index \
        --find-links "$WHEELHOUSE" ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} "tvm-edge-rpc$extra==$version"
    [ "$ROLE" = board ] || return 0
    deb=$(find "$WHEELHOUSE" -maxdepth 1 -name 'python3-systemd_*.deb' | head -n 1)
    [ -n "$deb" ] || die "--wheelhouse $WHEELHOUSE has no python3-systemd_*.deb (journald and sd_notify need it); rebuild it with make wheelhouse"
    if [ "$DRY_RUN" = 1 ]; then
        site="$venv/lib/python$have/site-packages"
    else
        site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    fi
    echo "+ unpack $(basename "$deb"): systemd/ into $site"
    [ "$DRY_RUN" = 1 ] && return 0
    local tmp
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/edge-server-deb.XXXXXX")
    dpkg-deb -x "$deb" "$tmp"
    rm -rf "$site/systemd"
    cp -a "$tmp/usr/lib/python3/dist-packages/systemd" "$site/systemd"
    rm -rf "$tmp"
    "$venv/bin/python" -c 'import systemd.daemon, systemd.journal' \
        || die "the systemd module from $(basename "$deb") does not load with $PYTHON ($have); use a wheelhouse built for this board's Debian release"
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
        if [ -n "$LOCK_CLOCKS" ] && ! grep -q -- '^EXTRA_ARGS=.*--lock-clocks' "$dest"; then
            note "to lock clocks: add --lock-clocks=$LOCK_CLOCKS to EXTRA_ARGS in $dest, then systemctl restart edge-server"
        fi
        return 0
    fi
    run install -d -m 0755 "$DESTDIR/etc/default"
    local edits=()
    [ -n "$TRACKER" ] && edits+=("TRACKER=$TRACKER")
    [ -n "$KEY" ] && edits+=("KEY=$KEY")
    [ -n "$LOCK_CLOCKS" ] && edits+=("EXTRA_ARGS+=--lock-clocks=$LOCK_CLOCKS")
    echo "+ install -m 0644 $HERE/edge-server.env $dest${edits[*]+ (with ${edits[*]})}"
    [ "$DRY_RUN" = 1 ] && return 0
    local tmp
    tmp=$(mktemp "$dest.XXXXXX")
    sed -e "${TRACKER:+s|^TRACKER=.*|TRACKER=$TRACKER|}" \
        -e "${KEY:+s|^KEY=.*|KEY=$KEY|}" \
        -e "${LOCK_CLOCKS:+s|^EXTRA_ARGS=\"\(.*\)\"\$|EXTRA_ARGS=\"\1 --lock-clocks=$LOCK_CLOCKS\"|}" \
        "$HERE/edge-server.env" > "$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$dest"
}

# --lock-clocks: the group, the tmpfiles rule and the drop-in. The drop-in's
# ExecStartPre applies the rule at each start (a cpufreq module may load
# after boot); the group is made now where systemd runs, else at next boot.
install_clock_rules() {
    local entry src dest
    for entry in "${CLOCK_FILES[@]}"; do
        src=$HERE/${entry%%:*}
        dest=$DESTDIR${entry#*:}
        run install -d -m 0755 "$(dirname "$dest")"
        run install -m 0644 "$src" "$dest"
    done
    if [ "$SYSTEMCTL" = 1 ] && { [ "$DRY_RUN" = 1 ] || [ -d /run/systemd/system ]; }; then
        run systemd-sysusers edge-server-clocks.conf
    else
        note "group edge-clocks: created by systemd-sysusers at the board's next boot"
    fi
}

remove_clock_rules() {
    local entry dest
    for entry in "${CLOCK_FILES[@]}"; do
        dest=$DESTDIR${entry#*:}
        if [ -e "$dest" ]; then
            run rm -f "$dest"
        fi
    done
    if [ -d "$DESTDIR/etc/systemd/system/edge-server.service.d" ]; then
        run rmdir --ignore-fail-on-non-empty "$DESTDIR/etc/systemd/system/edge-server.service.d"
    fi
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

# --uninstall: the reverse of an install, for the role's unit. The settings
# file stays (a reinstall picks it up) unless --purge.
uninstall() {
    local unit=edge-server.service venv=$DESTDIR$PREFIX
    [ "$ROLE" = tracker ] && unit=tvm-tracker.service
    if [ "$SYSTEMCTL" = 1 ] && { [ "$DRY_RUN" = 1 ] || [ -d /run/systemd/system ]; }; then
        run systemctl disable --now "$unit"
    fi
    if [ -e "$DESTDIR/etc/systemd/system/$unit" ] || [ "$DRY_RUN" = 1 ]; then
        run rm -f "$DESTDIR/etc/systemd/system/$unit"
    fi
    [ "$ROLE" = board ] && remove_clock_rules
    if [ "$SYSTEMCTL" = 1 ] && { [ "$DRY_RUN" = 1 ] || [ -d /run/systemd/system ]; }; then
        run systemctl daemon-reload
    fi
    if [ -f "$venv/pyvenv.cfg" ]; then
        run rm -rf "$venv"
    elif [ -e "$venv" ]; then
        note "warning: $venv is not a virtual environment; left as it is"
    fi
    if [ "$ROLE" = board ] && [ -e "$DESTDIR$ENV_FILE" ]; then
        if [ "$PURGE" = 1 ]; then
            run rm -f "$DESTDIR$ENV_FILE"
        else
            note "kept $DESTDIR$ENV_FILE (--purge removes it)"
        fi
    fi
    if [ "$DRY_RUN" = 1 ]; then note "dry run: nothing was changed"; else note "uninstalled $unit"; fi
}

main() {
    parse_args "$@"
    validate_args
    local mode="real"
    [ "$DRY_RUN" = 1 ] && mode="dry run: nothing is changed"
    note "role $ROLE, prefix $PREFIX, root ${DESTDIR:-/} ($mode)"
    check_root "$@"
    if [ "$UNINSTALL" = 1 ]; then
        uninstall
        return 0
    fi
    check_settings
    pick_python
    check_packages
    make_venv
    if [ "$ROLE" = board ]; then
        install_unit edge-server.service
        [ -n "$LOCK_CLOCKS" ] && install_clock_rules
        install_env
        start_service edge-server.service
    else
        install_unit tvm-tracker.service
        start_service tvm-tracker.service
    fi
    next_steps
}

main "$@"
