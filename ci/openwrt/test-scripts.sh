#!/usr/bin/env bash
# The package's shell scripts, run on this (non-OpenWrt) machine against stand-ins: a `uci` that keeps
# its values in a flat file, and the rc.common/procd/functions.sh calls the init script makes recorded
# instead of done. Checks what the scripts ask of OpenWrt, not that OpenWrt does it (procd, netifd,
# fw4 and dnsmasq are not here).
#
#   ci/openwrt/test-scripts.sh VNGATE_BINARY      (a vngate built for this machine)
set -uo pipefail
cd "$(dirname "$0")/../.."
VNGATE=$(realpath "${1:?usage: test-scripts.sh VNGATE_BINARY}")
files=$PWD/firmware/openwrt/vngate/files
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "PASS $*"; }
ko() { fail=$((fail + 1)); echo "FAIL $*"; }

# The stand-in uci: `get`, `set K=V`, `add_list K=V`, `delete K`, `commit P`, `batch` (from stdin).
mkdir -p "$w/bin"
cat >"$w/bin/uci" <<'UCI'
#!/usr/bin/env bash
store=$UCI_STORE
[ "${1:-}" = -q ] && shift
cmd=${1:-}; shift || true
unq() { local v=${1#*=}; v=${v#\'}; echo "${v%\'}"; }
case $cmd in
    get) v=$(grep -m1 "^$1=" "$store") || exit 1; echo "${v#*=}" ;;
    set) sed -i "\|^${1%%=*}=|d" "$store"; echo "${1%%=*}=$(unq "$1")" >>"$store" ;;
    add_list) echo "${1%%=*}=$(unq "$1")" >>"$store" ;;
    delete) grep -q "^$1[.=]" "$store" || exit 1; sed -i "\|^$1[.=]|d" "$store" ;;
    commit) echo "commit ${1:-all}" >>"$UCI_LOG" ;;
    batch) while read -r a b; do [ -n "$a" ] && "$0" "$a" "$b"; done ;;
    *) echo "stand-in uci: $cmd unsupported" >&2; exit 2 ;;
esac
UCI
chmod +x "$w/bin/uci"
export PATH=$w/bin:$PATH UCI_STORE=$w/store UCI_LOG=$w/log
: >"$UCI_STORE"; : >"$UCI_LOG"

# --- uci-defaults: the bridge, dnsmasq, the zone; idempotent --------------------------------------------
echo "vngate.daemon.tap=vn7" >>"$UCI_STORE"
sh "$files/vngate.defaults" && ok "uci-defaults exits 0" || ko "uci-defaults exit status"
want="network.vn_dev=device network.vn_dev.name=br-vn network.vn_dev.type=bridge network.vn_dev.bridge_empty=1
network.vn_dev.ports=vn7 network.vn=interface network.vn.device=br-vn network.vn.proto=none dhcp.vn=dhcp
dhcp.vn.interface=vn dhcp.vn.ignore=1 dhcp.vn.ra=disabled dhcp.vn.dhcpv6=disabled dhcp.vn.ndp=disabled
firewall.vngate_zone=zone firewall.vngate_zone.name=vn firewall.vngate_zone.network=vn
firewall.vngate_zone.input=REJECT firewall.vngate_zone.output=ACCEPT firewall.vngate_zone.forward=REJECT"
missing=$(for kv in $want; do grep -qx "$kv" "$UCI_STORE" || echo "$kv"; done)
[ -z "$missing" ] && ok "uci-defaults: br-vn with the configured TAP, vn interface, dnsmasq ignore, RA off, zone vn" ||
    ko "uci-defaults: missing $missing"
grep -q 'br-lan\|network.lan' "$UCI_STORE" && ko "uci-defaults touched lan" || ok "uci-defaults leaves lan alone"
[ "$(sort "$UCI_LOG" | tr '\n' ' ')" = "commit dhcp commit firewall commit network " ] &&
    ok "uci-defaults commits network, dhcp, firewall" || ko "commits: $(cat "$UCI_LOG")"
before=$(sort "$UCI_STORE")
sh "$files/vngate.defaults"
[ "$(sort "$UCI_STORE")" = "$before" ] && ok "uci-defaults run twice changes nothing" || ko "uci-defaults is not idempotent"

# --- the init script, with rc.common and procd recorded -------------------------------------------------
conf=$w/vngate.conf
run_init() {
    # $1: egress 0/1; $2: daemon.enabled; prints the recorded procd calls.
    sed -e "s/option egress '0'/option egress '$1'/" -e "s/option enabled '0'/option enabled '$2'/" \
        "$files/vngate.config" >"$conf"
    (
        # shellcheck disable=SC1090
        . "$files/vngate.init"
        PROG=$VNGATE UCI_CONF=$conf TOML_CONF=$w/var/etc/vngate.toml
        config_load() { :; }
        opt() { sed -n "/^config [a-z]* '$1'/,/^config/{s/^[[:space:]]*option $2 '\\(.*\\)'.*/\\1/p}" "$conf"; }
        config_get() { local v; v=$(opt "$2" "$3"); eval "$1=\${v:-\${4:-}}"; }
        config_get_bool() { local v; v=$(opt "$2" "$3"); case ${v:-$4} in 1|yes|on|true|enabled) v=1 ;; *) v=0 ;; esac; eval "$1=$v"; }
        procd_open_instance() { echo "open"; }
        procd_set_param() { echo "param $*"; }
        procd_close_instance() { echo "close"; }
        logger() { cat >&2; }
        start_service
        echo "rc=$?"
    )
}
out=$(run_init 0 0 2>&1)
grep -q "disabled" <<<"$out" && ! grep -q open <<<"$out" && ok "init: enabled '0' starts nothing" || ko "init disabled: $out"
out=$(run_init 0 1 2>&1)
grep -q "param command $VNGATE run --config $w/var/etc/vngate.toml" <<<"$out" && grep -q "param respawn" <<<"$out" &&
    grep -q "param env RUST_LOG=info" <<<"$out" && grep -q "param file $conf" <<<"$out" &&
    ok "init: procd instance runs the translated TOML, respawn, RUST_LOG, restart on config change" || ko "init: $out"
"$VNGATE" check-config "$w/var/etc/vngate.toml" >/dev/null 2>&1 && ok "init: the TOML it wrote passes check-config" ||
    ko "init: written TOML does not check"
! grep -q vngate_egress "$UCI_STORE" && ok "init: egress 0 adds no vn -> wan forwarding" || ko "init: forwarding with egress off"
out=$(run_init 1 1 2>&1)
grep -qx firewall.vngate_egress=forwarding "$UCI_STORE" && grep -qx firewall.vngate_egress.src=vn "$UCI_STORE" &&
    grep -qx firewall.vngate_egress.dest=wan "$UCI_STORE" && ok "init: egress 1 adds the vn -> wan forwarding" ||
    ko "init egress on: $(grep egress "$UCI_STORE")"
run_init 0 1 >/dev/null 2>&1
! grep -q vngate_egress "$UCI_STORE" && ok "init: egress back to 0 removes it" || ko "init: forwarding left behind"
cp "$w/var/etc/vngate.toml" "$w/good.toml"
out=$(
    sed -e "s/option enabled '0'/option enabled '1'/" -e "s/option subnet '10.250.0.0\/16'/option subnet 'x'/" \
        "$files/vngate.config" >"$conf.bad"
    . "$files/vngate.init"
    PROG=$VNGATE UCI_CONF=$conf.bad TOML_CONF=$w/var/etc/vngate.toml
    config_load() { :; }; config_get() { eval "$1=info"; }; config_get_bool() { eval "$1=1"; }
    procd_open_instance() { echo open; }; procd_set_param() { :; }; procd_close_instance() { :; }
    logger() { cat; }
    start_service; echo "rc=$?"
)
grep -q "rc=1" <<<"$out" && ! grep -q open <<<"$out" && grep -q "vngate.conf.bad:[0-9]*: " <<<"$out" &&
    cmp -s "$w/good.toml" "$w/var/etc/vngate.toml" &&
    ok "init: a bad UCI fails the start, logs the line, keeps the last good TOML" || ko "init bad config: $out"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
