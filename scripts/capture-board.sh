#!/bin/sh
# Capture the files the edge-server topology probe reads from a live board.
#
#   scripts/capture-board.sh DIR          # copy them into DIR/proc/... and DIR/sys/...
#   scripts/capture-board.sh DIR --tar    # ... and pack DIR into DIR.tar.gz
#
# The result has the same layout as the board (DIR/proc/cpuinfo,
# DIR/sys/devices/system/cpu/...), so `edge-server probe --root DIR` reads it
# exactly as it reads the board, and DIR can become a test fixture under
# tests/fixtures/boards/<name>/ once an expected.json is written for it.
#
# Plain POSIX sh and coreutils, so it runs on boards without Python or
# edge-server. It only reads; unreadable files are reported and skipped.
# Nothing secret is copied: CPU and board model names only (the Raspberry Pi
# "Serial" line of /proc/cpuinfo is blanked).
set -u

usage() {
    echo "usage: $0 DIR [--tar]   (DIR must not exist or be empty)"
    echo "  copies what edge-server's topology probe reads (/proc/cpuinfo, the CPU"
    echo "  topology and cpufreq files under /sys, the board model) into DIR;"
    echo "  --tar also packs DIR into DIR.tar.gz. Check it: edge-server probe --root DIR"
}

bad_usage() {
    echo "$0: $1" >&2
    usage >&2
    exit 2
}

case ${1:-} in
    -h|--help) usage; exit 0 ;;
    "") bad_usage "give the directory to capture into" ;;
    -*) bad_usage "unknown option '$1' (the first argument is the output DIR)" ;;
esac
OUT=$1
TAR=no
if [ $# -ge 2 ]; then
    [ "$2" = "--tar" ] || bad_usage "unknown argument '$2' (only --tar may follow DIR)"
    [ $# -eq 2 ] || bad_usage "too many arguments"
    TAR=yes
fi
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
    echo "$0: $OUT exists and is not empty; give a new directory" >&2
    exit 2
fi
mkdir -p "$OUT" || exit 1

CPU=/sys/devices/system/cpu
copied=0
skipped=0

# copy_file /abs/path: the file's content into $OUT/abs/path, if it exists.
copy_file() {
    [ -f "$1" ] || return 0
    dest="$OUT$1"
    mkdir -p "$(dirname "$dest")"
    if cat "$1" > "$dest" 2>/dev/null; then
        copied=$((copied + 1))
    else
        echo "skipped $1 (not readable)" >&2
        rm -f "$dest"
        skipped=$((skipped + 1))
    fi
}

# copy_link /abs/path: recreate a symlink (cpuN/cpufreq -> ../cpufreq/policyM).
copy_link() {
    dest="$OUT$1"
    mkdir -p "$(dirname "$dest")"
    ln -s "$(readlink "$1")" "$dest"
}

copy_freq_dir() {
    for f in cpuinfo_max_freq cpuinfo_min_freq related_cpus affected_cpus scaling_driver; do
        copy_file "$1/$f"
    done
}

if [ -f /proc/cpuinfo ]; then
    mkdir -p "$OUT/proc"
    sed 's/^\(Serial[[:space:]]*:\).*/\1 0000000000000000/' /proc/cpuinfo > "$OUT/proc/cpuinfo"
    copied=$((copied + 1))
fi
copy_file /proc/device-tree/model
copy_file /proc/device-tree/compatible
copy_file /sys/class/dmi/id/sys_vendor
copy_file /sys/class/dmi/id/product_name
for f in possible present online offline isolated kernel_max; do
    copy_file "$CPU/$f"
done
for dir in "$CPU"/cpu[0-9]*; do
    [ -d "$dir" ] || continue
    copy_file "$dir/online"
    copy_file "$dir/cpu_capacity"
    copy_file "$dir/regs/identification/midr_el1"
    copy_file "$dir/regs/identification/revidr_el1"
    for f in core_id physical_package_id cluster_id die_id thread_siblings_list \
             core_siblings_list cluster_cpus_list core_cpus_list package_cpus_list; do
        copy_file "$dir/topology/$f"
    done
    if [ -L "$dir/cpufreq" ]; then
        copy_link "$dir/cpufreq"
    elif [ -d "$dir/cpufreq" ]; then
        copy_freq_dir "$dir/cpufreq"
    fi
done
for dir in "$CPU"/cpufreq/policy[0-9]*; do
    [ -d "$dir" ] && copy_freq_dir "$dir"
done
# Android: only the properties that name the SoC (build.prop holds nothing else we read).
for prop in /system/build.prop /vendor/build.prop; do
    [ -f "$prop" ] || continue
    mkdir -p "$OUT$(dirname "$prop")"
    grep -E '^(ro\.soc\.model|ro\.chipname|ro\.hardware\.chipname|ro\.mediatek\.platform|ro\.board\.platform|ro\.product\.board|ro\.hardware)=' \
        "$prop" > "$OUT$prop" 2>/dev/null
    copied=$((copied + 1))
done
copy_file /sys/devices/cpu_core/cpus
copy_file /sys/devices/cpu_atom/cpus

# Context for whoever turns the capture into a fixture; the probe ignores it.
{
    echo "kernel: $(uname -r 2>/dev/null) $(uname -m 2>/dev/null)"
    echo "captured-by: scripts/capture-board.sh"
} > "$OUT/capture-info"

echo "captured $copied files into $OUT ($skipped unreadable)"
if [ "$TAR" = yes ]; then
    tar -czf "$OUT.tar.gz" -C "$(dirname "$OUT")" "$(basename "$OUT")" || exit 1
    echo "packed $OUT.tar.gz"
fi
echo "check it with: edge-server probe --root $OUT"
