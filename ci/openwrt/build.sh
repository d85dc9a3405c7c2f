#!/usr/bin/env bash
# Build a static `vngate` (musl, rust-lld, release profile) per architecture and pack each into an .ipk
# for opkg, without the OpenWrt SDK: the same files firmware/openwrt/vngate/Makefile installs.
#
#   ci/openwrt/build.sh [x86_64] [aarch64]        (default: both)
#
# Output in $OUT (default target/openwrt/): vngate_<version>_<pkgarch>.ipk and the binary per arch.
# Env: OPT_LEVEL (default s: the release profile at opt-level "s", as OpenWrt's rust-package.mk builds),
#      AARCH64_PKGARCH (default aarch64_generic; e.g. aarch64_cortex-a53 for most ARM routers: opkg
#      installs a package only if its Architecture is listed in /etc/opkg.conf),
#      SOURCE_DATE_EPOCH (default: the last commit's time; the archives are reproducible).
# Not part of ci/test.sh (the cross builds take minutes); ci/openwrt/check.sh verifies the result.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
OUT=${OUT:-$root/target/openwrt}
OPT_LEVEL=${OPT_LEVEL:-s}
AARCH64_PKGARCH=${AARCH64_PKGARCH:-aarch64_generic}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
files=$root/firmware/openwrt/vngate/files
pkg_version=$(sed -n 's/^PKG_VERSION:=//p' firmware/openwrt/vngate/Makefile)
pkg_release=$(sed -n 's/^PKG_RELEASE:=//p' firmware/openwrt/vngate/Makefile)
version=$pkg_version-$pkg_release
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 aarch64)

# The builds get their own target dir: another opt-level in the shared one would rebuild everything.
export CARGO_TARGET_DIR=$root/target/openwrt-cargo
export CARGO_PROFILE_RELEASE_OPT_LEVEL=$OPT_LEVEL

triple_of() { echo "$1-unknown-linux-musl"; }
pkgarch_of() {
    case $1 in
        x86_64) echo x86_64 ;;
        aarch64) echo "$AARCH64_PKGARCH" ;;
        *) echo "unknown architecture $1" >&2; return 1 ;;
    esac
}

build() {
    local arch=$1 triple
    triple=$(triple_of "$arch")
    if ! rustup target list --installed | grep -qx "$triple"; then
        rustup target add "$triple"
    fi
    local var
    var=CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_LINKER
    # musl targets link statically by default; rust-lld needs no cross C toolchain.
    env "$var=rust-lld" cargo build --locked --release -p vngate --target "$triple"
    mkdir -p "$OUT/$arch"
    cp "$CARGO_TARGET_DIR/$triple/release/vngate" "$OUT/$arch/vngate"
}

# A reproducible gzip'd tar of directory $1's contents (entries named ./...), as opkg's tools make them.
tgz() {
    (cd "$1" && tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name \
        --mtime="@$SOURCE_DATE_EPOCH" -cf - "${@:3}") | gzip -9n >"$2"
}

pack() {
    local arch=$1 pkgarch work data ctrl
    pkgarch=$(pkgarch_of "$arch")
    work=$(mktemp -d)
    data=$work/data ctrl=$work/control
    install -D -m 0755 "$OUT/$arch/vngate" "$data/usr/bin/vngate"
    install -D -m 0755 "$files/vngate.init" "$data/etc/init.d/vngate"
    install -D -m 0600 "$files/vngate.config" "$data/etc/config/vngate"
    install -D -m 0755 "$files/vngate.defaults" "$data/etc/uci-defaults/90-vngate"
    install -D -m 0644 "$files/vngate.keep" "$data/lib/upgrade/keep.d/vngate"
    install -D -m 0644 "$files/vngate.hotplug-iface" "$data/etc/hotplug.d/iface/90-vngate"
    install -D -m 0644 "$files/vngate.hotplug-net" "$data/etc/hotplug.d/net/90-vngate"
    install -d -m 0700 "$data/etc/vngate"
    tgz "$data" "$work/data.tar.gz" .

    mkdir -p "$ctrl"
    # Installed-Size: the unpacked data tar's size, as OpenWrt's ipkg-build counts it.
    cat >"$ctrl/control" <<CONTROL
Package: vngate
Version: $version
Depends: kmod-tun
Source: firmware/openwrt/vngate
SourceName: vngate
License: MIT OR Apache-2.0
Section: net
SourceDateEpoch: $SOURCE_DATE_EPOCH
Maintainer: vngate developers
Architecture: $pkgarch
Installed-Size: $(gzip -dc "$work/data.tar.gz" | wc -c)
Description: Self-configuring virtual network gateway (DHCP, DNS and proxy ARP on a
 dedicated bridge, br-vn; sites joined by a UDP overlay). Static musl build.
CONTROL
    # Only files are conffiles: /etc/vngate/ holds keys made on the router, kept by keep.d instead.
    printf '/etc/config/vngate\n' >"$ctrl/conffiles"
    # OpenWrt's package hooks: uci-defaults of this package run and the init script enabled on a live
    # system (not when building an image, IPKG_INSTROOT set: first boot runs them there).
    cat >"$ctrl/postinst" <<'HOOK'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = 1 ] && exit 0
[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
. "${IPKG_INSTROOT}/lib/functions.sh"
default_postinst "$0" "$@"
HOOK
    cat >"$ctrl/prerm" <<'HOOK'
#!/bin/sh
[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
. "${IPKG_INSTROOT}/lib/functions.sh"
default_prerm "$0" "$@"
HOOK
    chmod 0755 "$ctrl/postinst" "$ctrl/prerm"
    chmod 0644 "$ctrl/control" "$ctrl/conffiles"
    tgz "$ctrl" "$work/control.tar.gz" .

    echo 2.0 >"$work/debian-binary"
    local ipk=$OUT/vngate_${version}_${pkgarch}.ipk
    # The outer archive: a gzip'd tar (what OpenWrt's ipkg-build makes; opkg also reads the ar form).
    tgz "$work" "$ipk" ./debian-binary ./data.tar.gz ./control.tar.gz
    rm -rf "$work"
    echo "packed $ipk"
}

mkdir -p "$OUT"
for a in "${arches[@]}"; do
    t0=$SECONDS
    build "$a"
    pack "$a"
    echo "$a: built and packed in $((SECONDS - t0)) s; binary $(stat -c %s "$OUT/$a/vngate") bytes (stripped)"
done
