#!/usr/bin/env bash
# Negative end-to-end tests of P3 (issue 4, "Tests"), in network namespaces, with real daemons and real
# packets (no mocks):
#
#   WAN bridge 10.99.0.0/24: routers ra (.1, host alpha) and rb (.2, host charlie), storage s1 s2 s3 (.11-.13),
#   all certified by the VN's CA (hostctl ns create / vngate keygen / hostctl node sign, as two-site.sh);
#   intruders x1..x4 (.31-.34), each a real vngate router+storage daemon that lists the five as its
#   bootstrap peers:
#     x1 no certificate (runs unsigned: plaintext P2 control)
#     x2 a certificate from another namespace's CA (a second `hostctl ns create`)
#     x3 an expired certificate: signed by the VN's CA with `hostctl node sign --days 1` run with its wall
#        clock moved back by a day and a half hour (ci/tools/attack/clockshift.c, an LD_PRELOAD shim), so it
#        expired 30 min ago; x3's daemon runs with its clock 45 min back, where the certificate is still
#        valid to itself (and the VN's certificates, backdated 1 h by hostctl, too) but expired to the VN
#     x4 a revoked certificate (`hostctl node revoke x4`; the VN's nodes get the new `revoked` file before
#        they start)
#   and an attacker namespace x (.40-.43) that sends raw datagrams (ci/tools/attack/overlay_attack.py).
#
# Checks, each with the counters that prove it (hostctl metrics on the VN's nodes and on the intruders):
#   intruders: each daemon runs (a precondition); the VN counts what it refused (x1 secure_plaintext_dropped,
#     x2 overlay_wrong_namespace, x4 then x3 handshake_rejected, one phase each so every count is theirs);
#     no VN node logs a PeerUp for an intruder's address and no intruder establishes a session; an
#     intruder's DHT has no member but itself, it cannot read alpha's record that ra reads, and an address it
#     reserves is absent from the VN's DHT.
#   packets: a sealed data packet captured on the WAN (an echo request alpha -> charlie of a size nothing
#     else has) replayed to rb -> transport_replayed; with a ciphertext bit or a high counter bit flipped ->
#     transport_auth_failed; no replayed or forged frame reaches charlie's port (a capture there), and a
#     legitimate echo request after them does (the control of that capture, and the proof that the forged
#     counter did not move the replay window); a handshake initiation captured at start replayed to its
#     responder -> handshake_replayed, no new session; a flood of initiations with a valid mac1 (4 source
#     addresses) at rb -> handshake_rate_limited and handshake_cookies_sent, while pings alpha -> charlie go
#     on and s3, restarted during the flood, completes a new handshake with rb (through the cookie).
#   the VN keeps working: pings alpha -> charlie throughout, leases renewed at the end.
# Every check can fail: VT_SEC_BREAK (below) breaks the VN or the attacks on purpose; see the end of this file.
#
#   sudo ci/e2e/security.sh          (ci/test.sh runs it); VT_KEEP=1 leaves it up.
set -uo pipefail

# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"

if [ "${1:-}" = --cleanup ]; then
    vt_remove_namespaces
    exit 0
fi

vt_init
vt_build
vt_clockshift_build
command -v python3 >/dev/null || vt_die "missing tool: python3"
ATTACK="python3 $VT_ROOT/ci/tools/attack/overlay_attack.py"
T0=$SECONDS

VN=(ra rb s1 s2 s3)
INTRUDERS=(x1 x2 x3 x4)
VT_WAN_IP+=([x1]=10.99.0.31 [x2]=10.99.0.32 [x3]=10.99.0.33 [x4]=10.99.0.34 [x]=10.99.0.40)
ATTACKER_IPS=(10.99.0.40 10.99.0.41 10.99.0.42 10.99.0.43)
# x3's clocks: hostctl signs 1 day + 30 min in the past (so --days 1 ends 30 min ago); the daemon runs 45 min
# in the past (its certificate is valid there, and the VN's, which hostctl backdates by 1 h, too).
X3_SIGN_OFFSET=-88200
X3_RUN_OFFSET=-2700
declare -A IP FIG
# VT_SEC_BREAK (comma-separated) weakens the VN or the attacks on purpose, to see the checks fail:
#   revoked   the VN's nodes do not get the revocation list (x4 is then a member)
#   expired   x3's certificate is signed and run on the machine's clock (valid: x3 is then a member)
#   noattack  the packet attacks and the flood go to port 4790, where nothing listens
VT_SEC_BREAK=${VT_SEC_BREAK:-}
broken() { [[ ",$VT_SEC_BREAK," == *",$1,"* ]]; }
broken expired && X3_SIGN_OFFSET= X3_RUN_OFFSET=
ATTACK_PORT=$VT_WAN_PORT
broken noattack && ATTACK_PORT=4790
[ -n "$VT_SEC_BREAK" ] && vt_log "VT_SEC_BREAK=$VT_SEC_BREAK: checks are meant to FAIL"

# ---- helpers -----------------------------------------------------------------------------------------------
m() { vt_metric "$@"; }
msum() { vt_metric_sum "$1" "${VN[@]}"; }
# grew DESC BEFORE AFTER: PASS when AFTER > BEFORE.
grew() {
    if [ "${3:-0}" -gt "${2:-0}" ]; then vt_pass "$1 ($2 -> $3)"; else vt_fail "$1: $2 -> $3, want it to grow"; fi
}
same() {
    if [ "${2:-x}" = "${3:-y}" ]; then vt_pass "$1 (stays $2)"; else vt_fail "$1: $2 -> $3, want no change"; fi
}
sock() { printf '%s/state-%s/control.sock' "$VT_WORK" "$1"; }
xexec() { ip netns exec "$(vt_ns x)" "$@"; }

# sign SHORT STATE ROLES ADMIN [CLOCK_OFFSET [DAYS]]: keys made in STATE by `vngate keygen`, a certificate from
# ADMIN's CA (hostctl with its clock moved by CLOCK_OFFSET s), the bundle's files copied into STATE.
sign() {
    local short=$1 state=$2 roles=$3 admin=$4 off=${5:-} days=${6:-365} pre=()
    [ -n "$off" ] && pre=(env "LD_PRELOAD=$VT_CLOCKSHIFT" "VT_CLOCK_OFFSET=$off")
    "$VNGATE" keygen --state-dir "$state" >"$VT_WORK/keygen-$short.out" 2>&1 || vt_die "keygen $short"
    "${pre[@]}" "$HOSTCTL" node sign "$short" --pub "$state/node.pub" --role "$roles" --dir "$admin" \
        --days "$days" --endpoint "${VT_WAN_IP[$short]}:$VT_WAN_PORT" --passphrase-file "$VT_WORK/ca.pass" \
        --force >"$VT_WORK/sign-$short.out" 2>&1 || vt_die "hostctl node sign $short: $(cat "$VT_WORK/sign-$short.out")"
    cp "$admin/bundles/$short/node.cert" "$admin/bundles/$short/ca.pub" "$admin/bundles/$short/namespace.doc" \
        "$state/" || vt_die "bundle of $short"
}

# intruder_config SHORT: a router + founding storage node with TAP vn0, the five VN nodes as its peers.
intruder_config() {
    local n peers=()
    for n in "${VN[@]}"; do peers+=("${VT_WAN_IP[$n]}:$VT_WAN_PORT"); done
    vt_write_node_config "$VT_WORK/$1.toml" vn0 "$VT_WORK/state-$1" "0.0.0.0:$VT_WAN_PORT" \
        "${VT_WAN_IP[$1]}:$VT_WAN_PORT" true true "${peers[@]}"
}

# intruder_start SHORT [CLOCK_OFFSET]
intruder_start() {
    local pre=()
    [ -n "${2:-}" ] && pre=("LD_PRELOAD=$VT_CLOCKSHIFT" "VT_CLOCK_OFFSET=$2")
    vt_bg ip netns exec "$(vt_ns "$1")" env "${pre[@]}" RUST_LOG=debug "$VNGATE" --config "$VT_WORK/$1.toml" \
        </dev/null >>"$VT_WORK/vngate-$1.log" 2>&1
    VT_NODE_PID[$1]=$VT_LAST_PID
}

# peerup_from IP: how many PeerUp events for endpoint IP the VN's nodes logged.
peerup_from() {
    local n c=0
    for n in "${VN[@]}"; do
        c=$((c + $(grep -c "PeerUp id=[^ ]* endpoint=$1:" "$VT_WORK/vngate-$n.log" 2>/dev/null || true)))
    done
    echo "$c"
}

# dht_found SOCKET KEY: prints true/false/error for a `hostctl dht get`.
dht_found() {
    local out
    out=$(timeout 15 "$HOSTCTL" dht get "$2" --json --socket "$1" 2>&1)
    if printf '%s' "$out" | grep -q '"found":true'; then
        echo true
    elif printf '%s' "$out" | grep -q '"found":false'; then
        echo false
    else
        echo "error: $(printf '%s' "$out" | head -n 1)"
    fi
}

ra_reads_charlie() { [ "$(dht_found "$(sock ra)" host:charlie)" = true ]; }

# status_members SHORT: the DHT members node SHORT counts (hostctl status --json), empty if none answered.
status_members() {
    "$HOSTCTL" status --json --socket "$(sock "$1")" 2>/dev/null | grep -o '"dht_members": *[0-9]*' | grep -o '[0-9]*$'
}

# ---- topology ----------------------------------------------------------------------------------------------
topology() {
    local n
    vt_two_site_topology
    VT_HOSTS=(a1 b1)
    VT_CLIENT[b1]=udhcpc
    vt_provision
    vt_wan_add
    for n in "${VT_STORAGE[@]}" "${INTRUDERS[@]}" x; do
        vt_ns_add "$n"
        vt_no_ipv6 "$n"
        vt_wan_attach "$n"
    done
    for n in "${ATTACKER_IPS[@]:1}"; do ip -n "$(vt_ns x)" addr add "$n/24" dev wan0; done
    vt_router_add ra vn0
    vt_router_add rb vn0
    vt_wan_attach ra
    vt_wan_attach rb
    vt_host_add a1 ra alpha "${VT_MAC[a1]}"
    vt_host_add b1 rb charlie "${VT_MAC[b1]}"
    for n in "${INTRUDERS[@]}"; do ip -n "$(vt_ns "$n")" tuntap add dev vn0 mode tap || vt_die "tap in $n"; done
    for n in "${VN[@]}"; do vt_node_config "$n" >/dev/null; done
    # x1: no certificate, [security] require = false (the default): the daemon runs unsigned.
    intruder_config x1
    # x2: a second CA ("another namespace"), its own namespace document and id.
    "$HOSTCTL" ns create demo --subnet 10.250.0.0/16 --dir "$VT_WORK/admin2" --passphrase-file "$VT_WORK/ca.pass" \
        --json >"$VT_WORK/ns2.json" 2>&1 || vt_die "second hostctl ns create: $(cat "$VT_WORK/ns2.json")"
    NS2=$(sed -n 's/.*"id": *"\([0-9a-f]\{32\}\)".*/\1/p' "$VT_WORK/ns2.json")
    sign x2 "$VT_WORK/state-x2" router,dht "$VT_WORK/admin2"
    VT_NS_ID=$NS2 intruder_config x2
    # x3: expired (see X3_SIGN_OFFSET).
    sign x3 "$VT_WORK/state-x3" router,dht "$VT_ADMIN" "$X3_SIGN_OFFSET" 1
    intruder_config x3
    # x4: signed, then revoked; the VN's nodes get the list, x4 does not.
    sign x4 "$VT_WORK/state-x4" router,dht "$VT_ADMIN"
    intruder_config x4
    "$HOSTCTL" node revoke x4 --dir "$VT_ADMIN" --passphrase-file "$VT_WORK/ca.pass" >"$VT_WORK/revoke.out" 2>&1 ||
        vt_die "hostctl node revoke x4: $(cat "$VT_WORK/revoke.out")"
    broken revoked ||
        for n in "${VN[@]}"; do cp "$VT_ADMIN/revoked" "$VT_WORK/state-$n/revoked" || vt_die "no revoked file"; done
    # Every overlay datagram on the WAN from the first start on (handshake initiations to replay).
    vt_bg ip netns exec "$(vt_ns wan)" timeout 120 tcpdump --immediate-mode -i wbr -nn -U -w "$VT_WORK/wan-start.pcap" \
        "udp port $VT_WAN_PORT" >/dev/null 2>&1
    CAP_START=$VT_LAST_PID
    sleep 0.5
    for n in "${VT_STORAGE[@]}"; do vt_node_start "$n" "$VT_WORK/$n.toml"; done
    for n in "${VT_STORAGE[@]}"; do vt_wait_for 10 vt_udp_listening "$n" "$VT_WAN_PORT" || return 1; done
    for n in ra rb; do vt_node_start "$n" "$VT_WORK/$n.toml"; done
    for n in ra rb; do vt_wait_for 10 vt_tap_ready "$n" vn0 || return 1; done
}

echo "== bringing up: WAN, ra + alpha, rb + charlie, s1 s2 s3 (certified, x4 revoked), intruder namespaces"
if ! topology; then
    vt_fail "topology did not come up"
    tail -n 5 "$VT_WORK"/vngate-*.log | sed 's/^/    | /'
    vt_summary
    exit
fi
for n in "${VN[@]}"; do
    vt_check "$n runs secured with the revocation list (version 1)" \
        sh -c "grep -q 'the overlay is secured' '$VT_WORK/vngate-$n.log' && grep -q 'revocation list version 1' '$VT_WORK/vngate-$n.log'"
done
vt_overlay_settle 15
vt_check "every VN node sees its four peers up" vt_all_peers_up
kill -INT "$CAP_START" 2>/dev/null

echo "== leases and pings"
vt_clients_up
for h in a1 b1; do
    IP[$h]=$(vt_lease "$h" udhcpc ip)
    vt_check "${VT_HOSTNAME[$h]} has a lease (${IP[$h]})" vt_usable_lease "${IP[$h]}"
done
vt_check "alpha pings charlie across the VN" vt_host_exec a1 ping -c 3 -i 0.2 -W 3 "${IP[b1]}"
vt_check "ra reads charlie's record host:charlie" ra_reads_charlie

# Pings alpha -> charlie for the rest of the run (the VN keeps working throughout): 5 per second.
vt_bg vt_host_exec a1 sh -c 'echo $$ >/run/ping-throughout.pid; exec timeout -s INT 200 ping -i 0.2 -W 2 "$1"' _ \
    "${IP[b1]}" >"$VT_WORK/ping-throughout.log" 2>&1

# ---- intruders ---------------------------------------------------------------------------------------------
echo "== intruders"
# intruder_checks SHORT: no session on either side, no DHT beyond itself, no record read, no claim reaches the VN.
intruder_checks() {
    local x=$1 ip=${VT_WAN_IP[$1]} k v
    vt_check "$x's daemon still runs" kill -0 "${VT_NODE_PID[$x]}"
    vt_expect "no VN node logged a PeerUp for $x ($ip)" "$(peerup_from "$ip")" 0
    vt_expect "$x established no session (its sessions_established)" "$(m "$x" sessions_established)" 0
    k=$(status_members "$x")
    if [ -n "$k" ] && [ "$k" -le 1 ]; then vt_pass "$x's DHT has no member but itself ($k)"; else vt_fail "$x's DHT members: '$k'"; fi
    v=$(dht_found "$(sock "$x")" host:alpha)
    if [ "$v" != true ]; then vt_pass "$x cannot read host:alpha ($v) while ra can"; else vt_fail "$x read host:alpha"; fi
    v=$(dht_found "$(sock ra)" "host:evil-$x")
    vt_expect "the name $x reserved (evil-$x) is absent from the VN's DHT (read at ra)" "$v" false
    v=$(dht_found "$(sock ra)" "ip:${RES_IP[$x]}")
    vt_expect "the address $x reserved (${RES_IP[$x]}) is absent from the VN's DHT (read at ra)" "$v" false
}
declare -A RES_IP=([x1]=10.250.77.1 [x2]=10.250.77.2 [x3]=10.250.77.3 [x4]=10.250.77.4)
# reserve_try SHORT: the intruder tries to claim an address and a name (its answer is logged, not checked: the
# check is that the VN never sees the claim).
reserve_try() {
    timeout 15 "$HOSTCTL" reserve "${RES_IP[$1]}" --name "evil-$1" --socket "$(sock "$1")" \
        >"$VT_WORK/reserve-$1.out" 2>&1
}

# Phase 1: x1 (unsigned), x2 (other CA), x4 (revoked) together; each leaves its own kind of count.
# What a plaintext P2 datagram can be counted as on a secured node: a control or data message (0xC1, 0xC0)
# goes to the session layer, which finds no session for its index (transport_no_session), cannot parse it
# (malformed) or cannot authenticate it (transport_auth_failed); anything else is secure_plaintext_dropped.
PLAIN_COUNTERS=(transport_no_session malformed transport_auth_failed secure_plaintext_dropped)
plain_sum() {
    local c s=0
    for c in "${PLAIN_COUNTERS[@]}"; do s=$((s + $(msum "$c"))); done
    echo "$s"
}
plain_each() {
    local c
    for c in "${PLAIN_COUNTERS[@]}"; do printf '%s %s, ' "$c" "$(msum "$c")"; done
}
b_plain=$(plain_sum)
b_plain_each=$(plain_each)
b_ns=$(msum overlay_wrong_namespace)
b_rej=$(msum handshake_rejected)
b_est=$(msum sessions_established)
for x in x1 x2 x4; do intruder_start "$x"; done
for x in x1 x2 x4; do vt_wait_for 10 test -S "$(sock "$x")"; done
vt_check "x1 runs unsigned (no certificate)" grep -q 'running unsigned' "$VT_WORK/vngate-x1.log"
vt_check "x2 runs secured with the other CA's certificate" grep -q 'the overlay is secured' "$VT_WORK/vngate-x2.log"
vt_check "x4 runs secured with its (revoked) certificate" grep -q 'the overlay is secured' "$VT_WORK/vngate-x4.log"
RPIDS=()
for x in x1 x2 x4; do
    reserve_try "$x" &
    RPIDS+=($!)
done
# an introduction is retried every 1 s, 5 times; handshakes every 5 s
sleep 6
wait "${RPIDS[@]}"
grew "x1's plaintext P2 datagrams are dropped by the VN (${PLAIN_COUNTERS[*]})" "$b_plain" "$(plain_sum)"
FIG[plain]="before: ${b_plain_each%, }; after: $(plain_each)"
FIG[plain]=${FIG[plain]%, }
grew "x2's introductions for another namespace are refused (overlay_wrong_namespace)" "$b_ns" "$(msum overlay_wrong_namespace)"
a_rej=$(msum handshake_rejected)
grew "x4's handshakes with a revoked certificate are rejected (handshake_rejected)" "$b_rej" "$a_rej"
FIG[x4_rejected]=$((a_rej - b_rej))
for x in x1 x2 x4; do intruder_checks "$x"; done

# Phase 2: x3 (expired to the VN, valid to its own shifted clock).
b_rej=$(msum handshake_rejected)
intruder_start x3 "$X3_RUN_OFFSET"
vt_wait_for 10 test -S "$(sock x3)"
vt_check "x3 runs secured with its certificate (valid to its clock 45 min back)" \
    grep -q 'the overlay is secured' "$VT_WORK/vngate-x3.log"
vt_check "hostctl lists x3's certificate as expired (control: it is expired now)" \
    sh -c "'$HOSTCTL' node list --dir '$VT_ADMIN' | grep -E '^ +[0-9]+ x3 ' | grep -q expired"
reserve_try x3 &
RPIDS=($!)
sleep 6
wait "${RPIDS[@]}"
a_rej=$(msum handshake_rejected)
grew "x3's handshakes with an expired certificate are rejected (handshake_rejected)" "$b_rej" "$a_rej"
FIG[x3_rejected]=$((a_rej - b_rej))
intruder_checks x3
same "the VN established no session during the intruders' phases (sessions_established)" "$b_est" "$(msum sessions_established)"
FIG[wrongns]=$(msum overlay_wrong_namespace)
for x in "${INTRUDERS[@]}"; do
    vt_node_stop "$x" TERM 3 >/dev/null 2>&1
done

# ---- packet attacks ----------------------------------------------------------------------------------------
echo "== packet attacks"
# A sealed echo request alpha -> charlie of a size nothing else has (-s 333: 375-byte frame, 407-byte datagram).
cap=$VT_WORK/wan-data.pcap
vt_bg ip netns exec "$(vt_ns wan)" timeout 10 tcpdump --immediate-mode -i wbr -nn -U -w "$cap" \
    "udp port $VT_WAN_PORT" >/dev/null 2>&1
p=$VT_LAST_PID
sleep 0.7
vt_host_exec a1 ping -c 3 -i 0.2 -W 2 -s 333 "${IP[b1]}" >/dev/null 2>&1
sleep 0.3
kill -INT "$p" 2>/dev/null
wait "$p" 2>/dev/null
DATA=$($ATTACK pick "$cap" --src "${VT_WAN_IP[ra]}" --dst "${VT_WAN_IP[rb]}" --type c0 --len 407)
vt_check "a sealed data packet ra -> rb (407 bytes) was captured on the WAN" test -n "$DATA"

# charlie's bridge port: echo requests of that size reaching charlie.
lan=$VT_WORK/charlie-port.pcap
vt_bg ip netns exec "$(vt_ns rb)" timeout 15 tcpdump --immediate-mode -i p-b1 -nn -U -w "$lan" \
    'icmp[icmptype] == icmp-echo and greater 370' >/dev/null 2>&1
p=$VT_LAST_PID
sleep 0.7
b_rep=$(m rb transport_replayed)
b_auth=$(m rb transport_auth_failed)
rb_to=${VT_WAN_IP[rb]}:$ATTACK_PORT
if [ -n "$DATA" ]; then
    xexec $ATTACK send --bind 10.99.0.40 --to "$rb_to" --hex "$DATA" --times 3 >/dev/null
    sleep 0.3
    a_rep=$(m rb transport_replayed)
    grew "the captured data packet replayed 3 times to rb is dropped as replayed (transport_replayed)" "$b_rep" "$a_rep"
    FIG[replayed]=$((a_rep - b_rep))
    # A bit of the ciphertext flipped: its counter is one rb has seen, so it may be refused as replayed
    # before its tag is checked; either way it is dropped (and "only the legitimate one" below shows it
    # did not reach charlie).
    xexec $ATTACK send --bind 10.99.0.40 --to "$rb_to" --hex "$DATA" --flip 100:0 >/dev/null
    sleep 0.3
    a_auth=$(m rb transport_auth_failed)
    a_rep2=$(m rb transport_replayed)
    grew "the packet with a ciphertext bit flipped is dropped (transport_auth_failed + transport_replayed)" \
        $((b_auth + a_rep)) $((a_auth + a_rep2))
    # A counter bit flipped (2^62 ahead, never seen): the tag is checked, fails, and the window stays.
    xexec $ATTACK send --bind 10.99.0.40 --to "$rb_to" --hex "$DATA" --flip 8:6 >/dev/null
    sleep 0.3
    a2=$(m rb transport_auth_failed)
    grew "the packet with counter bit 62 flipped (a far-future counter) fails authentication" "$a_auth" "$a2"
    FIG[auth_failed]=$((a2 - b_auth))
    same "rb's replay counter did not move on the far-future counter" "$a_rep2" "$(m rb transport_replayed)"
fi
# The control: one legitimate echo request of that size after the forgeries reaches charlie (the capture sees
# a delivered frame, and the counter far in the future did not advance the replay window).
vt_check "alpha still pings charlie after the forgeries" vt_host_exec a1 ping -c 1 -W 3 -s 333 "${IP[b1]}"
sleep 0.3
kill -INT "$p" 2>/dev/null
wait "$p" 2>/dev/null
vt_expect "echo requests of that size at charlie's port: only the legitimate one" \
    "$(tcpdump -r "$lan" -nn 2>/dev/null | grep -c 'echo request')" 1

# A handshake initiation captured at start, replayed from the attacker to its responder.
HS= HS_TO=
for pair in "ra s1" "ra s2" "rb s1" "s1 s2" "s2 s3" "ra rb"; do
    read -r from to <<<"$pair"
    HS=$($ATTACK pick "$VT_WORK/wan-start.pcap" --src "${VT_WAN_IP[$from]}" --dst "${VT_WAN_IP[$to]}" --type c2 2>/dev/null)
    [ -n "$HS" ] && HS_TO=$to && break
done
vt_check "a handshake initiation was captured at start ($from -> ${HS_TO:-none})" test -n "$HS"
if [ -n "$HS" ]; then
    b_hr=$(m "$HS_TO" handshake_replayed)
    b_est=$(m "$HS_TO" sessions_established)
    xexec $ATTACK send --bind 10.99.0.40 --to "${VT_WAN_IP[$HS_TO]}:$ATTACK_PORT" --hex "$HS" --times 2 >/dev/null
    sleep 0.5
    a_hr=$(m "$HS_TO" handshake_replayed)
    grew "the replayed initiation is dropped by $HS_TO as replayed (handshake_replayed)" "$b_hr" "$a_hr"
    FIG[hs_replayed]=$((a_hr - b_hr))
    same "$HS_TO established no new session from it (sessions_established)" "$b_est" "$(m "$HS_TO" sessions_established)"
fi

# A flood of initiations with a valid mac1 at rb from 4 addresses (100/s each for 5 s), while s3 restarts and
# must handshake with rb again and alpha pings charlie.
echo "== handshake flood at rb"
b_lim=$(m rb handshake_rate_limited)
b_cookie=$(m rb handshake_cookies_sent)
b_failed=$(m rb handshake_failed)
b_up=$(grep -c "PeerUp id=[^ ]* endpoint=${VT_WAN_IP[rb]}:" "$VT_WORK/vngate-s3.log")
vt_bg xexec $ATTACK flood --to "$rb_to" --pub "$VT_WORK/state-rb/node.pub" \
    --sources "$(IFS=,; echo "${ATTACKER_IPS[*]}")" --count 500 --secs 5 >"$VT_WORK/flood.out" 2>&1
FLOOD=$VT_LAST_PID
sleep 1
vt_node_stop s3 TERM 3 >/dev/null 2>&1
vt_node_start s3 "$VT_WORK/s3.toml"
fping=$(vt_host_exec a1 ping -c 10 -i 0.2 -W 2 "${IP[b1]}" 2>&1 | grep -o '[0-9]* received' | cut -d' ' -f1)
vt_check "s3, restarted during the flood, completes a handshake with rb (PeerUp)" \
    vt_wait_for 8 sh -c "[ \$(grep -c 'PeerUp id=[^ ]* endpoint=${VT_WAN_IP[rb]}:' '$VT_WORK/vngate-s3.log') -gt $b_up ]"
wait "$FLOOD"
sed 's/^/    | /' "$VT_WORK/flood.out"
if [ "${fping:-0}" -ge 8 ]; then vt_pass "alpha pings charlie during the flood ($fping/10)"; else vt_fail "alpha -> charlie during the flood: ${fping:-0}/10"; fi
a_lim=$(m rb handshake_rate_limited)
a_cookie=$(m rb handshake_cookies_sent)
grew "rb rate-limits the flood per source (handshake_rate_limited)" "$b_lim" "$a_lim"
grew "rb answers the flood with cookies under load (handshake_cookies_sent)" "$b_cookie" "$a_cookie"
FIG[flood]="rate_limited +$((a_lim - b_lim)), cookies_sent +$((a_cookie - b_cookie)), failed (DH done) +$(($(m rb handshake_failed) - b_failed))"

# ---- the VN after it all -----------------------------------------------------------------------------------
echo "== the VN afterwards"
for h in a1 b1; do
    n=$(vt_host_exec "$h" cat /run/udhcpc/events | wc -l)
    vt_host_exec "$h" sh -c 'kill -USR1 "$(cat /run/udhcpc.pid)"'
    vt_check "${VT_HOSTNAME[$h]} renews its lease" vt_wait_for 10 vt_udhcpc_renewed "$h" "$n"
    vt_expect "${VT_HOSTNAME[$h]} keeps its address" "$(vt_lease "$h" udhcpc ip)" "${IP[$h]}"
done
vt_check "ra still reads host:charlie" ra_reads_charlie
vt_host_exec a1 sh -c 'kill -INT "$(cat /run/ping-throughout.pid)"' 2>/dev/null  # timeout passes it on to ping
sleep 0.5
pt=$(grep -o '[0-9]* packets transmitted, [0-9]* received' "$VT_WORK/ping-throughout.log")
tx=${pt%% *}
rx=$(printf '%s' "$pt" | sed 's/.*, \([0-9]*\) received/\1/')
if [ -n "$tx" ] && [ "$tx" -ge 20 ] && [ $((rx * 100)) -ge $((tx * 95)) ]; then
    vt_pass "pings alpha -> charlie throughout: $rx of $tx answered"
else
    vt_fail "pings alpha -> charlie throughout: '$pt' (want >= 95 %)"
fi
for n in "${VN[@]}"; do vt_check "vngate on $n still runs" kill -0 "${VT_NODE_PID[$n]}"; done

echo "== figures: x4 rejected ${FIG[x4_rejected]:-?}, x3 rejected ${FIG[x3_rejected]:-?}, x1's datagrams (${FIG[plain]:-?})," \
    "wrong namespace ${FIG[wrongns]:-?}, data replayed ${FIG[replayed]:-?}, auth failed ${FIG[auth_failed]:-?}," \
    "handshake replayed ${FIG[hs_replayed]:-?}, flood: ${FIG[flood]:-?}; ping throughout $rx/$tx; $((SECONDS - T0)) s"
vt_summary

# How each check can fail (VT_SEC_BREAK=revoked,expired,noattack, run while writing this suite: 46 passed,
# 27 failed, every failure one that the break should cause):
# - revoked / expired: x4 / x3 become members: their handshake_rejected checks, "no PeerUp" (5 each), "no
#   session" (8, 10), "DHT has no member but itself" (6, 7), "cannot read host:alpha", "the name and address
#   it reserved are absent" and "the VN established no session" all FAIL; so do "runs with the revocation
#   list" and "hostctl lists x3's certificate as expired" (the preconditions);
# - noattack: every counter of the packet attacks and of the flood stays put and its "grew" FAILs;
# - "only the legitimate one" counts every echo request of that size at charlie's port: a delivered replay
#   makes it 2 or more, a capture that sees nothing 0 (not broken on purpose: that needs a broken daemon);
# - the pings throughout count replies against requests sent, over the whole run.
