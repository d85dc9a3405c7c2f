#!/usr/bin/env bash
# Check the .ipk files ci/openwrt/build.sh made: the archive format opkg reads, the control fields,
# conffiles and hooks, the file layout and modes, a static binary of the right architecture, and that
# binary run on the package's own default UCI config (x86_64 natively, aarch64 under qemu-aarch64-static
# when installed: `apt-get install qemu-user-static`).
#
#   ci/openwrt/check.sh [IPK...]        (default: every .ipk in $OUT, default target/openwrt/)
#
# Prints PASS/FAIL per check, ends with "<n> passed, <m> failed", exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/target/openwrt}
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "PASS $*"; }
ko() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else ko "$what"; fi; }

ipks=("$@")
[ ${#ipks[@]} -gt 0 ] || mapfile -t ipks < <(ls "$OUT"/*.ipk 2>/dev/null)
[ ${#ipks[@]} -gt 0 ] || { echo "no .ipk in $OUT: run ci/openwrt/build.sh first" >&2; exit 2; }

field() { sed -n "s/^$1: //p" "$2"; }

check_ipk() {
    local ipk=$1 name w pkgarch machine runner=()
    name=$(basename "$ipk" .ipk)
    pkgarch=${name#vngate_}
    pkgarch=${pkgarch#*_}
    w=$(mktemp -d)
    echo "=== $name"
    # The outer archive: gzip'd tar of exactly these three members, debian-binary first.
    check "$name: outer archive is a gzip'd tar" tar -tzf "$ipk"
    [ "$(tar -tzf "$ipk" | tr '\n' ' ')" = "./debian-binary ./data.tar.gz ./control.tar.gz " ] &&
        ok "$name: members debian-binary, data.tar.gz, control.tar.gz" || ko "$name: members: $(tar -tzf "$ipk" | tr '\n' ' ')"
    tar -xzf "$ipk" -C "$w"
    [ "$(cat "$w/debian-binary")" = 2.0 ] && ok "$name: debian-binary is 2.0" || ko "$name: debian-binary"
    mkdir "$w/control" "$w/data"
    tar -xzf "$w/control.tar.gz" -C "$w/control" && tar -xzf "$w/data.tar.gz" -C "$w/data" ||
        { ko "$name: inner archives unpack"; return; }
    local c=$w/control/control
    [ "$(field Package "$c")" = vngate ] && ok "$name: Package" || ko "$name: Package"
    [ "$(field Architecture "$c")" = "$pkgarch" ] && ok "$name: Architecture $pkgarch matches the file name" ||
        ko "$name: Architecture $(field Architecture "$c") vs file name $pkgarch"
    [[ $name == "vngate_$(field Version "$c")_$pkgarch" ]] && ok "$name: file name is Package_Version_Architecture" ||
        ko "$name: Version $(field Version "$c")"
    field Depends "$c" | grep -qw kmod-tun && ok "$name: Depends on kmod-tun" || ko "$name: Depends"
    [ "$(field Installed-Size "$c")" = "$(gzip -dc "$w/data.tar.gz" | wc -c)" ] &&
        ok "$name: Installed-Size is the data size" || ko "$name: Installed-Size"
    for f in Description License Section Maintainer; do
        [ -n "$(field "$f" "$c")" ] && ok "$name: $f present" || ko "$name: $f missing"
    done
    [ "$(cat "$w/control/conffiles")" = /etc/config/vngate ] && [ -f "$w/data/etc/config/vngate" ] &&
        ok "$name: conffiles names /etc/config/vngate, which is in the package" || ko "$name: conffiles"
    for h in postinst prerm; do
        [ -x "$w/control/$h" ] && head -1 "$w/control/$h" | grep -q '^#!/bin/sh' &&
            ok "$name: $h is an executable sh script" || ko "$name: $h"
    done
    # Layout, modes and owners.
    local want
    want=$(printf '%s\n' \
        "-rwxr-xr-x ./usr/bin/vngate" "-rwxr-xr-x ./etc/init.d/vngate" "-rw------- ./etc/config/vngate" \
        "-rwxr-xr-x ./etc/uci-defaults/90-vngate" "-rw-r--r-- ./lib/upgrade/keep.d/vngate" \
        "-rw-r--r-- ./etc/hotplug.d/iface/90-vngate" "-rw-r--r-- ./etc/hotplug.d/net/90-vngate" \
        "drwx------ ./etc/vngate/" | sort)
    local got
    got=$(tar -tvzf "$w/data.tar.gz" --numeric-owner | awk '$1 !~ /^d/ || $6 == "./etc/vngate/" {print $1, $6}' | sort)
    [ "$got" = "$want" ] && ok "$name: data files and modes" || ko "$name: data layout:"$'\n'"$got"
    tar -tvzf "$w/data.tar.gz" --numeric-owner | awk '$2 != "0/0" {bad=1} END {exit bad}' &&
        ok "$name: every file owned by 0/0" || ko "$name: owners"
    head -1 "$w/data/etc/init.d/vngate" | grep -q '^#!/bin/sh /etc/rc.common' &&
        grep -q '^USE_PROCD=1' "$w/data/etc/init.d/vngate" && grep -q 'procd_set_param respawn' "$w/data/etc/init.d/vngate" &&
        ok "$name: init script is an rc.common procd script with respawn" || ko "$name: init script"
    grep -qx /etc/vngate/ "$w/data/lib/upgrade/keep.d/vngate" && ok "$name: keep.d keeps /etc/vngate/" || ko "$name: keep.d"
    local s
    for s in etc/init.d/vngate etc/uci-defaults/90-vngate etc/hotplug.d/iface/90-vngate etc/hotplug.d/net/90-vngate; do
        check "$name: $s parses (sh -n)" sh -n "$w/data/$s"
        if command -v busybox >/dev/null; then check "$name: $s parses (busybox ash -n)" busybox ash -n "$w/data/$s"; fi
    done
    grep -v '^[[:space:]]*#' "$w/data/etc/uci-defaults/90-vngate" | grep -q br-lan &&
        ko "$name: uci-defaults touches br-lan" || ok "$name: uci-defaults never touches br-lan"
    grep -q "ports='\$tap'" "$w/data/etc/uci-defaults/90-vngate" && grep -q "ignore='1'" "$w/data/etc/uci-defaults/90-vngate" &&
        grep -q "ra='disabled'" "$w/data/etc/uci-defaults/90-vngate" &&
        ok "$name: uci-defaults puts the TAP in br-vn, dnsmasq ignore and RA off there" || ko "$name: uci-defaults content"

    # The binary: static, of the package's architecture.
    local bin=$w/data/usr/bin/vngate
    case $pkgarch in
        x86_64) machine='X86-64' ;;
        aarch64*) machine='AArch64'; runner=(qemu-aarch64-static) ;;
        mipsel*) machine='MIPS'; runner=(qemu-mipsel-static) ;;
        *) machine='?' ;;
    esac
    # (readelf's output in variables: `grep -q` on a pipe under pipefail fails on SIGPIPE.)
    local header prog dyn sections
    header=$(readelf -h "$bin") prog=$(readelf -lW "$bin") dyn=$(readelf -dW "$bin" 2>&1) sections=$(readelf -SW "$bin")
    grep -q "Machine:.*$machine" <<<"$header" && ok "$name: ELF machine $machine" || ko "$name: ELF machine"
    ! grep -q INTERP <<<"$prog" && ! grep -q NEEDED <<<"$dyn" &&
        ok "$name: static (no interpreter, no NEEDED; file: $(file -b "$bin" | cut -d, -f1-2,5-6))" ||
        ko "$name: not static: $(file -b "$bin")"
    grep -q '\.debug_\|\.symtab' <<<"$sections" && ko "$name: not stripped" || ok "$name: stripped ($(stat -c %s "$bin") bytes)"

    # Run it on the package's own default config.
    if [ ${#runner[@]} -gt 0 ] && ! command -v "${runner[0]}" >/dev/null; then
        echo "SKIP $name: running it needs ${runner[0]} (apt-get install qemu-user-static)"
    else
        local v
        v=$("${runner[@]}" "$bin" --version 2>&1) && [[ $v == vngate\ * ]] && ok "$name: --version: $v" || ko "$name: --version: $v"
        local conf=$w/data/etc/config/vngate out
        out=$("${runner[@]}" "$bin" check-config "$conf" 2>&1) && ok "$name: check-config accepts the default UCI" ||
            ko "$name: check-config on the default UCI: $out"
        out=$("${runner[@]}" "$bin" uci-to-toml "$conf" 2>&1) && grep -q '^\[namespace\]' <<<"$out" &&
            ! grep -q '^\[overlay\]' <<<"$out" && ok "$name: uci-to-toml prints the TOML (overlay disabled)" ||
            ko "$name: uci-to-toml: $out"
        sed "s/option subnet '10.250.0.0\/16'/option subnet '10.250.0.0\/33'/" "$conf" >"$w/bad"
        local line
        line=$(grep -n "option subnet" "$w/bad" | cut -d: -f1)
        out=$("${runner[@]}" "$bin" check-config "$w/bad" 2>&1)
        [ $? = 1 ] && grep -q ":$line: " <<<"$out" && ok "$name: check-config refuses a /33 subnet, naming line $line" ||
            ko "$name: bad UCI: $out"
        out=$("${runner[@]}" "$bin" uci-to-toml "$w/bad" 2>/dev/null)
        [ $? = 1 ] && [ -z "$out" ] && ok "$name: uci-to-toml prints nothing for a bad config (the init script keeps the old TOML)" ||
            ko "$name: uci-to-toml on a bad config printed: $out"
    fi
    rm -rf "$w"
}

for ipk in "${ipks[@]}"; do check_ipk "$ipk"; done

# The init script and uci-defaults against stand-ins, with the x86_64 binary when there is one.
if [ -x "$OUT/x86_64/vngate" ]; then
    echo "=== package scripts"
    if ci/openwrt/test-scripts.sh "$OUT/x86_64/vngate"; then ok "package scripts (ci/openwrt/test-scripts.sh)"; else ko "package scripts (ci/openwrt/test-scripts.sh)"; fi
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
