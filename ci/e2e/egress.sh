#!/usr/bin/env bash
# Internet egress (P4, DESIGN.md "vn-core: the node"): a host on the VN reaches a "public" server through its
# router, and only with egress on. Real parts: vngate routers on TAPs with an egress TUN, busybox udhcpc, the
# kernel routing the TUN to the WAN and nftables masquerading it, ping and tcpdump.
#
#   site A (egress = true):  host a1 -- br0/vn0 [vngate ra, TUN vnout] -- kernel + nft masquerade -- wan0 --+
#   site B (egress = false): host b1 -- br0/vn0 [vngate rb, no TUN]    -- wan0 ----------------------------+-- pub
#   pub: 198.51.100.10 ("the Internet"), ra's WAN 198.51.100.1, rb's WAN 198.51.100.2, on the bridge of pub.
# Two independent one-site VNs (no overlay): egress is a router's business, not the overlay's.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
vt_init
vt_build
command -v nft >/dev/null || vt_die "missing tool: nft"

PUB=198.51.100.10
declare -A VT_HOSTNAME=([a1]=alpha [b1]=bravo)
declare -A VT_MAC=([a1]=02:00:00:e1:00:01 [b1]=02:00:00:e2:00:02)

# The public side: a bridge in namespace pub with the server's address; each router gets wan0 on it.
vt_ns_add pub
ip -n "$(vt_ns pub)" link add wbr type bridge
ip -n "$(vt_ns pub)" link set wbr up
ip -n "$(vt_ns pub)" addr add "$PUB/24" dev wbr
for r in ra rb; do
    vt_router_add "$r" vn0
    n=$([ $r = ra ] && echo 1 || echo 2)
    ip -n "$(vt_ns "$r")" link add wan0 type veth peer name "w-$r" netns "$(vt_ns pub)"
    ip -n "$(vt_ns pub)" link set "w-$r" master wbr up
    ip -n "$(vt_ns "$r")" addr add "198.51.100.$n/24" dev wan0
    ip -n "$(vt_ns "$r")" link set wan0 up
done
vt_host_add a1 ra alpha "${VT_MAC[a1]}"
vt_host_add b1 rb bravo "${VT_MAC[b1]}"

# ra: egress on, the TUN routed and masqueraded by the kernel; rb: egress off.
vt_write_config "$VT_WORK/ra.toml" vn0 "$VT_WORK/state-ra" 'egress = true'
echo 'egress_tun = "vnout"' >>"$VT_WORK/ra.toml"
vt_write_config "$VT_WORK/rb.toml" vn0 "$VT_WORK/state-rb"
vt_daemon_start ra "$VT_WORK/ra.toml" "$VT_WORK/vngate-ra.log"
vt_daemon_start rb "$VT_WORK/rb.toml" "$VT_WORK/vngate-rb.log"
vt_check "ra opened its TAP" vt_wait_for 10 vt_tap_ready ra vn0
vt_check "rb opened its TAP" vt_wait_for 10 vt_tap_ready rb vn0
vt_check "ra opened its egress TUN vnout" vt_wait_for 10 ip -n "$(vt_ns ra)" link show vnout up
vt_router_exec ra ip route add 10.250.0.0/16 dev vnout
vt_router_exec ra sysctl -qw net.ipv4.ip_forward=1
# With br_netfilter loaded (as on this machine) the bridge would show the LAN frame to conntrack first,
# and its entry (made without NAT) would then match the same packet coming out of the TUN: no masquerade.
vt_router_exec ra sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
vt_router_exec ra nft -f - <<'NFT' || vt_die "nft masquerade in ra"
table ip vtnat {
    chain post { type nat hook postrouting priority 100; oifname "wan0" counter masquerade; }
}
NFT
VT_UDHCPC_SCRIPT=$VT_ROOT/ci/e2e/udhcpc.script
vt_start_udhcpc a1 alpha
vt_start_udhcpc b1 bravo
lease_of() { vt_host_exec "$1" cat /run/udhcpc/bound.env 2>/dev/null | sed -n "s/^$2=//p"; }
vt_check "alpha got a lease" vt_wait_for 15 sh -c "[ -n \"\$(nsenter -t $(cat "$(vt_host_dir a1)/holder.pid") --net --mount cat /run/udhcpc/bound.env 2>/dev/null)\" ]"
vt_check "bravo got a lease" vt_wait_for 15 sh -c "[ -n \"\$(nsenter -t $(cat "$(vt_host_dir b1)/holder.pid") --net --mount cat /run/udhcpc/bound.env 2>/dev/null)\" ]"
vt_expect "alpha's lease names the gateway .2 (egress on)" "$(lease_of a1 router)" "10.250.0.2"
vt_expect "bravo's lease has no router (egress off)" "$(lease_of b1 router)" ""
vt_check "alpha has a default route via .2" sh -c "nsenter -t $(cat "$(vt_host_dir a1)/holder.pid") --net ip route | grep -q '^default via 10.250.0.2'"

# alpha pings the public server; a capture at the server shows ra's WAN address, never the VN address.
cap=$VT_WORK/pub.pcap
vt_bg ip netns exec "$(vt_ns pub)" timeout 10 tcpdump --immediate-mode -i wbr -nn -U -w "$cap" icmp >/dev/null 2>&1
cap_pid=$VT_LAST_PID
sleep 1
vt_check "alpha pings $PUB (outside the VN) through ra's egress" vt_host_exec a1 ping -c 3 -i 0.3 -W 2 "$PUB"
sleep 0.5
kill -INT "$cap_pid" 2>/dev/null
wait "$cap_pid" 2>/dev/null
vt_check "the server saw the requests from ra's WAN address (masqueraded)" \
    sh -c "tcpdump -r '$cap' -nn 2>/dev/null | grep -q '198.51.100.1 > $PUB: ICMP echo request'"
if tcpdump -r "$cap" -nn 2>/dev/null | grep -q '10\.250\.'; then
    vt_fail "a VN address reached the public side unmasqueraded"
else
    vt_pass "no VN address on the public side"
fi
HOSTCTL_BIN=${HOSTCTL:-$(dirname "$VNGATE")/hostctl}
[ -x "$HOSTCTL_BIN" ] || (cd "$VT_ROOT" && cargo build --quiet -p hostctl) || vt_die "cargo build -p hostctl"
# metric ROUTER NAME: a counter of the router's daemon (hostctl metrics through its control socket).
metric() {
    "$HOSTCTL_BIN" metrics --socket "$VT_WORK/state-$1/control.sock" 2>/dev/null |
        sed -n "s/^vngate_$2_total{[^}]*} //p"
}
vt_expect "ra counted the packets out (egress_tx)" "$(metric ra egress_tx)" 3
vt_expect "ra counted the answers back (egress_rx)" "$(metric ra egress_rx)" 3

# Egress off: even with a default route forced on bravo, rb sends nothing out and counts it.
vt_host_exec b1 ip route add default via 10.250.0.2 dev eth0 2>/dev/null
if vt_host_exec b1 ping -c 2 -i 0.3 -W 1 "$PUB" >/dev/null 2>&1; then
    vt_fail "bravo reached $PUB through rb, whose namespace has no egress"
else
    vt_pass "bravo cannot reach $PUB: rb's namespace has no egress"
fi
vt_expect "rb counted the refused packets (no_route)" "$(metric rb no_route)" 2
sed 's/^egress = true$//' "$VT_WORK/ra.toml" >"$VT_WORK/bad.toml"
if out=$("$VNGATE" check-config "$VT_WORK/bad.toml" 2>&1); then
    vt_fail "a config with egress_tun but without egress = true was accepted"
else
    vt_expect "a config with egress_tun but without egress = true is refused, naming the line" \
        "$(echo "$out" | grep -c 'egress = true.*\|line')" 1
fi
vt_summary
