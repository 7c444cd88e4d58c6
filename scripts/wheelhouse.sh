#!/usr/bin/env bash
# Build a wheelhouse: one directory with everything a board needs to install
# edge-server offline, with no compiler (deploy/install.sh --wheelhouse DIR).
#
#   scripts/wheelhouse.sh --arch aarch64 [--python 3.11] [--systemd-deb FILE] [--out DIR]
#   make wheelhouse ARCH=aarch64            # the same, into wheelhouse/aarch64-py3.11
#
# DIR holds: the project's wheel; every dependency as a binary wheel for that
# architecture and Python (pip download --only-binary=:all: --platform ...);
# Debian's python3-systemd .deb for that architecture (install.sh unpacks its
# `systemd` module into the environment: journald and sd_notify without building
# systemd-python on the board); deploy/ (install.sh, the units, the settings
# template, the clock-lock rules); wheelhouse.txt (what it was built for) and SHA256SUMS.
#
# Copy DIR to the board and run: sudo DIR/deploy/install.sh --wheelhouse DIR ...
set -euo pipefail

PROG=wheelhouse.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(dirname "$HERE")
PY=${PY:-python3}
ARCH=
PYVER=3.11          # Debian 12 / Raspberry Pi OS Bookworm / Armbian bookworm
OUT=
SYSTEMD_DEB=
# python3-systemd of Debian 12 (bookworm), built for its python3 3.11; for another
# release pass --systemd-deb (apt-get download python3-systemd on such a board)
BOOKWORM_SYSTEMD=235-1+b2
BOOKWORM_PYTHON=3.11
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# manylinux glibc levels a Debian 12 board (glibc 2.36) accepts
GLIBC_MINORS=$(seq 17 36)

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --arch ARCH       aarch64, armv7l or x86_64 (the board's uname -m); required
  --python X.Y      the board's python3 version (default $PYVER; >= 3.10)
  --systemd-deb F   Debian's python3-systemd .deb for the board's release and
                    arch (default: bookworm's, downloaded; needs --python 3.11)
  --out DIR         where to put it (default wheelhouse/ARCH-pyX.Y); must be
                    new or empty
  -h, --help        this text
EOF
}

die() { echo "$PROG: error: $*" >&2; exit 1; }
bad_usage() { echo "$PROG: $*" >&2; echo "see $PROG --help" >&2; exit 2; }
say() { echo "$PROG: $*"; }

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --arch) ARCH=${2:-}; shift ;;
            --arch=*) ARCH=${1#*=} ;;
            --python) PYVER=${2:-}; shift ;;
            --python=*) PYVER=${1#*=} ;;
            --systemd-deb) SYSTEMD_DEB=${2:-}; shift ;;
            --systemd-deb=*) SYSTEMD_DEB=${1#*=} ;;
            --out) OUT=${2:-}; shift ;;
            --out=*) OUT=${1#*=} ;;
            -h|--help) usage; exit 0 ;;
            *) bad_usage "unknown argument '$1'" ;;
        esac
        shift
    done
    case $ARCH in
        aarch64) DEBARCH=arm64 ;;
        armv7l) DEBARCH=armhf ;;
        x86_64) DEBARCH=amd64 ;;
        "") bad_usage "--arch is required: aarch64, armv7l or x86_64 (what uname -m says on the board)" ;;
        *) bad_usage "--arch '$ARCH' is not one of aarch64, armv7l, x86_64" ;;
    esac
    if ! [[ $PYVER =~ ^3\.([0-9]+)$ ]] || [ "${BASH_REMATCH[1]}" -lt 10 ]; then
        bad_usage "--python '$PYVER' is not 3.10 or newer (the pinned apache-tvm 0.27 needs >= 3.10)"
    fi
    if [ -n "$SYSTEMD_DEB" ]; then
        if ! [ -f "$SYSTEMD_DEB" ] || [[ $SYSTEMD_DEB != *python3-systemd_*_"$DEBARCH".deb ]]; then
            bad_usage "--systemd-deb '$SYSTEMD_DEB' is not a python3-systemd_*_$DEBARCH.deb file"
        fi
    elif [ "$PYVER" != "$BOOKWORM_PYTHON" ]; then
        bad_usage "Python $PYVER is not Debian 12's $BOOKWORM_PYTHON, so its python3-systemd would not load; pass that release's package: --systemd-deb python3-systemd_VERSION_$DEBARCH.deb (apt-get download python3-systemd on such a board)"
    fi
    OUT=${OUT:-$SRC/wheelhouse/$ARCH-py$PYVER}
    if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
        die "$OUT exists and is not empty; remove it or pass another --out"
    fi
}

# install_requires of setup.cfg, one requirement a line (the one source of pins).
requirements() {
    sed -n '/^install_requires/,/^[^ ]/p' "$SRC/setup.cfg" | grep -E '^\s+[A-Za-z]' | sed 's/^\s*//'
}

project_version() {
    sed -n 's/^version = //p' "$SRC/setup.cfg" | head -n 1
}

platform_args() {
    local minor
    for minor in $GLIBC_MINORS; do
        echo "--platform=manylinux_2_${minor}_$ARCH"
    done
    echo "--platform=manylinux2014_$ARCH"
}

download_wheels() {
    local abi=cp${PYVER/./} reqs=() line
    while IFS= read -r line; do reqs+=("$line"); done < <(requirements)
    say "downloading ${#reqs[@]} requirements and their dependencies for $ARCH, Python $PYVER"
    # shellcheck disable=SC2046  # one --platform per word
    if ! "$PY" -m pip download --disable-pip-version-check --quiet --only-binary=:all: \
            $(platform_args) --implementation cp --python-version "$PYVER" --abi "$abi" \
            --abi abi3 --abi none -d "$OUT" "${reqs[@]}"; then
        if [ "$ARCH" = armv7l ]; then
            die "no binary wheels for armv7l: apache-tvm publishes x86_64 and aarch64 wheels only; on a 32-bit board build TVM 0.27 from source (runtime only) or run a 64-bit OS"
        fi
        die "pip download failed for $ARCH / Python $PYVER (see above); is the network up and PyPI reachable?"
    fi
}

build_project_wheel() {
    local tmp
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/wheelhouse-src.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./tests --exclude=./bench \
        --exclude=./build --exclude=./dist --exclude=./wheelhouse --exclude='*.egg-info' \
        --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis -cf - . \
        | tar -C "$tmp" -xf -
    say "building the tvm-edge-rpc $(project_version) wheel"
    "$PY" -m pip wheel --disable-pip-version-check --quiet --no-deps -w "$OUT" "$tmp"
}

download_systemd_deb() {
    local name url
    if [ -n "$SYSTEMD_DEB" ]; then
        cp "$SYSTEMD_DEB" "$OUT/"
        return 0
    fi
    name="python3-systemd_${BOOKWORM_SYSTEMD}_$DEBARCH.deb"
    url="$MIRROR/pool/main/p/python-systemd/${name/+/%2B}"
    say "downloading $name (Debian 12)"
    curl -fsSL --retry 3 -o "$OUT/$name" "$url" \
        || die "cannot download $url; on a board of that kind run 'apt-get download python3-systemd' and put the .deb into $OUT"
}

copy_deploy() {
    # everything install.sh installs from its own deploy/ dir, the rules that
    # --lock-clocks adds included (sysusers.d, tmpfiles.d, the unit drop-in)
    mkdir -p "$OUT/deploy"
    cp "$SRC/deploy/install.sh" "$SRC/deploy/edge-server.service" "$SRC/deploy/edge-server.env" \
        "$SRC/deploy/tvm-tracker.service" "$OUT/deploy/"
    cp -R "$SRC/deploy/sysusers.d" "$SRC/deploy/tmpfiles.d" "$SRC/deploy/edge-server.service.d" \
        "$OUT/deploy/"
}

write_manifest() {
    {
        echo "# made by scripts/wheelhouse.sh on $(uname -m) $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "version=$(project_version)"
        echo "arch=$ARCH"
        echo "python=$PYVER"
    } > "$OUT/wheelhouse.txt"
    local sums
    sums=$(cd "$OUT" && find . -type f | sort | xargs sha256sum)
    echo "$sums" > "$OUT/SHA256SUMS"
}

main() {
    parse_args "$@"
    mkdir -p "$OUT"
    download_wheels
    build_project_wheel
    download_systemd_deb
    copy_deploy
    write_manifest
    say "done: $OUT ($(du -sh "$OUT" | cut -f1), $(find "$OUT" -maxdepth 1 -name '*.whl' | wc -l) wheels)"
    say "on the board: sudo $(basename "$OUT")/deploy/install.sh --wheelhouse $(basename "$OUT") --tracker HOST:PORT --key KEY"
}

main "$@"
