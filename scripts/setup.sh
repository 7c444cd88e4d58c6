#!/usr/bin/env bash
# Set up a fresh checkout: system packages (when missing and we can), then a
# virtual environment in .venv with the package and all its extras.
# Usage: scripts/setup.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
# systemd-container (systemd-nspawn) and shellcheck: tests/deploy run the unit under a real
# systemd in a container and lint install.sh.
# The cross g++ for aarch64 and armhf boards: the host links what it uploads (host_client.link).
APT_PKGS="libsystemd-dev pkg-config systemd systemd-container shellcheck gcc g++
          g++-aarch64-linux-gnu g++-arm-linux-gnueabihf"

missing=""
for p in $APT_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing system packages:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "setup: missing system packages:$missing" >&2
        echo "setup: run: sudo apt-get install -y$missing" >&2
        echo "setup: continuing without them (systemd extras and unit checks will be unavailable)" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    extras="host,test,fleet"
    if pkg-config --exists libsystemd 2>/dev/null; then extras="$extras,systemd"; fi
    .venv/bin/python -m pip install -q -e ".[$extras]"
    touch "$stamp"
fi
