#!/usr/bin/env bash
# End-to-end test of two vngate sites on one flat VN over the overlay, in network namespaces (the topology is
# drawn in ci/lib.sh, "two sites on one VN"):
#
#   WAN: namespace "wan" with a bridge; router A, router B and three standalone storage daemons (no TAP), so
#        the DHT replica set has five; site B's WAN link runs through vn-wanem (WAN_DELAY / WAN_LOSS).
#   site A: router ra (bridge + TAP + vngate), hosts alpha (udhcpc) and bravo (dhclient), probe host pa
#   site B: router rb (bridge + TAP + vngate), hosts charlie (dhcpcd) and delta (udhcpc), probe host pb
#   india: a host on the WAN in interface mode (vngate on its own TAP, a DHT client; udhcpc on that TAP)
#
# Checks: unique leases in the subnet, every host pings every host across the sites, every host resolves
# every host name and C-name at 10.250.0.1, india gets one VN address without a default route and reaches and
# resolves both sites (and is resolved from them), iperf3 TCP from alpha to charlie (Mbit/s reported, no threshold),
# then two storage daemons SIGKILLed: names still resolve, leases renew, new claims (dhcp-probe) still succeed,
# and the other site finds them (its router answers ARP for them after a DHT read; an unclaimed address: none).
#
#   sudo ci/e2e/two-site.sh                          0 ms, 0 % (what ci/test.sh runs)
#   sudo WAN_DELAY=50ms WAN_LOSS=1% ci/e2e/two-site.sh
#   sudo WAN_BOTH=1 ci/e2e/two-site.sh               both runs, one after the other, one summary
#
# The 50 ms / 1 % run is not in CI by default: ci/test.sh runs every ci/e2e/*.sh once, at 0 ms; WAN_BOTH=1 (or
# the two explicit invocations above) is the full P2 run. The emulator is on site B's link in both runs, so the
# 0 ms run crosses it too. Figures printed on the "== figures" line: RTT and iperf3 TCP between the routers over
# the bare WAN, and between alpha (site A) and charlie (site B) through the VN.
#
# With a daemon that refuses the [overlay] contract (P1: check-config refuses it, or the first storage node
# exits at start), the plumbing runs for real (WAN, emulator, both sites standalone with their hosts and leases,
# intra-site pings and names, renewals, dhcp-probe claims), the storage daemons are not started and every
# cross-site check prints SKIP; that run fails unless VT_ALLOW_P1=1.
# Prints PASS/FAIL per step and ends with "<n> passed, <m> failed"; exits non-zero on any failure.
# Needs root. Env: VNGATE / DHCP_PROBE / VN_WANEM (prebuilt binaries), VT_KEEP=1 (leave it up),
# `two-site.sh --cleanup` with VT_PREFIX set removes a kept run.
set -uo pipefail

if [ "${WAN_BOTH:-0}" = 1 ] && [ "${1:-}" != --cleanup ]; then
    # Two full runs, each with its own namespaces; the summary adds them up.
    p=0 f=0 last=$(mktemp)
    for wan in "0 0%" "50ms 1%"; do
        read -r d l <<<"$wan"
        echo "##### two-site at WAN_DELAY=$d WAN_LOSS=$l"
        WAN_BOTH=0 WAN_DELAY=$d WAN_LOSS=$l bash "$0" 2>&1 | tee "$last"
        # (the run's own summary line; its cleanup may log after it)
        if [[ "$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$last" | tail -n 1)" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]
        then
            p=$((p + BASH_REMATCH[1]))
            f=$((f + BASH_REMATCH[2]))
        else
            f=$((f + 1))
            echo "FAIL the run at $d / $l ended without a summary"
        fi
    done
    rm -f "$last"
    echo "$p passed, $f failed"
    [ "$f" = 0 ]
    exit
fi

# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"

if [ "${1:-}" = --cleanup ]; then
    vt_remove_namespaces
    exit 0
fi

WAN_DELAY=${WAN_DELAY:-0}
WAN_LOSS=${WAN_LOSS:-0%}
vt_init
vt_build
vt_build_wanem
vt_log "WAN on site B's link: delay $WAN_DELAY, loss $WAN_LOSS"

DNS=10.250.0.1
declare -A IP
FIG=()
NEW_IPS=()

# cross X Y: hosts X and Y are on different sites.
cross() { [ "${VT_SITE[$1]}" != "${VT_SITE[$2]}" ]; }
# across DESC CMD...: a cross-site check, run only when the overlay joins the sites.
across() {
    if [ "$VT_OVERLAY" = 1 ]; then vt_check "$@"; else vt_skip "$1 (no overlay in this daemon)"; fi
}
# delay_ms: WAN_DELAY in milliseconds (0, 50ms, 1.5s, 250us).
delay_ms() {
    awk -v d="$WAN_DELAY" 'BEGIN {
        v = d + 0; u = d; sub(/^[0-9.]+/, "", u)
        if (u == "s") v *= 1000; else if (u == "us") v /= 1000
        print v }'
}
# ping_avg FROM_CMD... : the avg RTT (ms) of `ping -c 10 -i 0.2` run by the command prefix, empty if none came back.
ping_avg() {
    "$@" -n -c 10 -i 0.2 -W 3 2>/dev/null | sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p'
}

# ---- WAN plumbing ------------------------------------------------------------------------------------------
step_wan() {
    local n a b avg want
    vt_check "vn-wanem runs on rb's WAN link ($WAN_DELAY, $WAN_LOSS)" grep -q 'vn-wanem: ready' "$VT_WORK/wanem-rb.log"
    for a in ra rb; do
        for n in ra rb s1 s2 s3; do
            [ "$a" = "$n" ] && continue
            [ "$a" = rb ] && [ "$n" = ra ] && continue
            vt_check "WAN: $a reaches $n (${VT_WAN_IP[$n]})" \
                vt_router_exec "$a" ping -c 3 -i 0.2 -W 3 "${VT_WAN_IP[$n]}"
        done
    done
    avg=$(ping_avg vt_router_exec ra ping "${VT_WAN_IP[rb]}")
    want=$(delay_ms)
    if [ -n "$avg" ] && awk -v a="$avg" -v w="$want" 'BEGIN { exit !(a >= 2 * w * 0.95) }'; then
        vt_pass "WAN: router RTT ra -> rb avg $avg ms (2 x $want ms one way)"
    else
        vt_fail "WAN: router RTT ra -> rb '$avg' ms, want at least 2 x $want ms"
    fi
    FIG+=("native WAN RTT ra->rb ${avg:-?} ms")
    # native TCP between the routers over the same WAN link (a baseline for the VN's figure)
    iperf3_run ra "${VT_WAN_IP[rb]}" rb
    if [ -n "$MBIT" ]; then vt_pass "WAN: iperf3 TCP ra -> rb $MBIT Mbit/s"; else vt_fail "WAN: iperf3 ra -> rb did not run"; fi
    FIG+=("native WAN iperf3 ra->rb ${MBIT:-?} Mbit/s")
}

# iperf3_run FROM_NS TO_IP TO_NS [secs]: iperf3 TCP from namespace/host FROM to a one-shot server in TO (router
# namespaces ra/rb or hosts); sets MBIT (receiver side), empty if it did not run.
ns_exec() { case $1 in r?) vt_router_exec "$@" ;; *) vt_host_exec "$@" ;; esac; }
iperf3_run() {
    local from=$1 ip=$2 to=$3 secs=${4:-4} srv out
    MBIT=
    vt_bg ns_exec "$to" timeout $((secs + 25)) iperf3 -s -1 -p 5201 >"$VT_WORK/iperf3-s-$to.log" 2>&1
    srv=$VT_LAST_PID
    vt_wait_for 5 ns_exec "$to" sh -c 'ss -Hltn "sport = :5201" | grep -q .'
    out=$(ns_exec "$from" timeout $((secs + 20)) iperf3 -c "$ip" -p 5201 -t "$secs" -f m 2>&1)
    kill "$srv" 2>/dev/null
    wait "$srv" 2>/dev/null
    MBIT=$(printf '%s\n' "$out" | grep -E ' receiver$' | tail -n 1 | grep -o '[0-9.]* Mbits/sec' | cut -d' ' -f1)
    printf '%s\n' "$out" | grep -E 'sender$|receiver$|error' | sed 's/^/    | /'
}

# ---- configs -----------------------------------------------------------------------------------------------
step_configs() {
    local n
    for n in "${VT_ROUTERS[@]}" "${VT_STORAGE[@]}"; do
        if [ "$VT_OVERLAY" = 1 ]; then
            vt_check "check-config accepts $n's overlay config ($( [ "${n#r}" = "$n" ] && echo 'storage node, no TAP' || echo 'router')" \
                "$VNGATE" check-config "$VT_WORK/$n.toml"
        else
            vt_skip "$n's overlay config: $VT_NO_OVERLAY"
        fi
    done
}

# ---- nodes -------------------------------------------------------------------------------------------------
step_nodes() {
    local n
    if [ "$VT_OVERLAY" = 1 ]; then
        for n in "${VT_STORAGE[@]}"; do
            vt_check "storage node $n listens on ${VT_WAN_IP[$n]}:$VT_WAN_PORT" vt_udp_listening "$n" "$VT_WAN_PORT"
        done
    else
        for n in "${VT_STORAGE[@]}"; do
            vt_skip "storage node $n: would run: ip netns exec $(vt_ns "$n") $VNGATE --config $VT_WORK/$n.toml"
        done
    fi
    for n in "${VT_ROUTERS[@]}"; do
        vt_check "vngate on $n opened and set up its TAP" vt_tap_ready "$n" vn0
    done
    # Every node was provisioned as on a device (keygen, then hostctl node sign) and its daemon accepted the
    # certificate at start (a rejected one stops it).
    if [ -n "${VT_ADMIN:-}" ]; then
        for n in "${VT_ROUTERS[@]}" "${VT_STORAGE[@]}" i1; do
            across "$n started with its certificate (hostctl node sign)" \
                grep -q 'certificate serial' "$VT_WORK/vngate-$n.log"
            across "$n runs a secured overlay (sessions with certified nodes only)" \
                grep -q 'the overlay is secured' "$VT_WORK/vngate-$n.log"
        done
    fi
}

# ---- leases ------------------------------------------------------------------------------------------------
step_leases() {
    local h c ip all=()
    for h in "${VT_HOSTS[@]}"; do
        c=${VT_CLIENT[$h]}
        ip=$(vt_lease "$h" "$c" ip)
        IP[$h]=$ip
        if vt_usable_lease "$ip"; then
            vt_pass "$c on ${VT_HOSTNAME[$h]} (site ${VT_SITE[$h]}) got a lease in the subnet ($ip)"
        else
            vt_fail "$c on ${VT_HOSTNAME[$h]} got no usable lease (ip '$ip')"
            sed 's/^/    | /' "$(vt_host_dir "$h")/$c.log" 2>/dev/null | tail -n 8
            IP[$h]=
            continue
        fi
        all+=("$ip")
        vt_expect "$c on ${VT_HOSTNAME[$h]}: DNS server" "$(vt_lease "$h" "$c" dns)" "$DNS"
        vt_check "$c on ${VT_HOSTNAME[$h]} configured $ip/16 on eth0" vt_has_addr "$h" "$ip/16"
    done
    local uniq
    uniq=$(printf '%s\n' "${all[@]}" | sort -u | wc -l)
    if [ "$VT_OVERLAY" = 1 ]; then
        vt_expect "four different addresses across both sites" "$uniq" 4
    else
        local a=$(printf '%s\n' "${IP[a1]}" "${IP[a2]}" | sort -u | wc -l)
        local b=$(printf '%s\n' "${IP[b1]}" "${IP[b2]}" | sort -u | wc -l)
        vt_expect "two different addresses within each site" "$a $b" "2 2"
        vt_skip "four different addresses across both sites (no overlay: $uniq distinct)"
    fi
}

# no_router_option HOST: the lease udhcpc bound on HOST has an address and no router option.
no_router_option() {
    local env
    env=$(vt_host_exec "$1" cat /run/udhcpc/bound.env) || return 1
    printf '%s\n' "$env" | grep -q '^ip=' && ! printf '%s\n' "$env" | grep -q '^router='
}

# ---- the interface-mode host ------------------------------------------------------------------------------
step_interface() {
    local ip x
    if [ "$VT_OVERLAY" != 1 ]; then
        vt_skip "interface-mode host india (no overlay)"
        return
    fi
    vt_start_udhcpc i1 india vn0
    ip=$(vt_lease i1 udhcpc ip)
    IP[i1]=$ip
    if [[ "$ip" =~ ^10\.250\.[0-9]+\.[0-9]+$ ]] && [[ " ${IP[*]:-} " != *" $ip "*" $ip "* ]]; then
        vt_pass "interface mode: udhcpc on india's own TAP got a lease in the subnet ($ip)"
    else
        vt_fail "interface mode: udhcpc on india got no usable lease (ip '$ip')"
        tail -n 8 "$VT_WORK/vngate-i1.log" | sed 's/^/    | /'
        IP[i1]=
        return
    fi
    vt_check "interface mode: the lease carries no router (option 3)" no_router_option i1
    for x in a1 b1; do
        vt_check "india pings ${VT_HOSTNAME[$x]} (${IP[$x]})" vt_host_exec i1 ping -c 3 -i 0.2 -W 3 "${IP[$x]}"
        vt_check "${VT_HOSTNAME[$x]} resolves india.$VT_DOMAIN" resolves "$x" "india.$VT_DOMAIN" "$ip"
        vt_check "india resolves ${VT_HOSTNAME[$x]}.$VT_DOMAIN" resolves i1 "${VT_HOSTNAME[$x]}.$VT_DOMAIN" "${IP[$x]}"
    done
    vt_check "delta pings india ($ip)" vt_host_exec b2 ping -c 3 -i 0.2 -W 3 "$ip"
}

# ---- reachability ------------------------------------------------------------------------------------------
step_ping() {
    local x y avg
    for x in "${VT_HOSTS[@]}"; do
        [ -n "${IP[$x]:-}" ] || continue
        vt_check "${VT_HOSTNAME[$x]} pings $DNS" vt_host_exec "$x" ping -c 2 -i 0.2 -W 2 "$DNS"
        for y in "${VT_HOSTS[@]}"; do
            [ "$x" = "$y" ] || [ -z "${IP[$y]:-}" ] && continue
            if cross "$x" "$y"; then
                across "${VT_HOSTNAME[$x]} pings ${VT_HOSTNAME[$y]} across the sites (${IP[$y]})" \
                    vt_host_exec "$x" ping -c 3 -i 0.2 -W 3 "${IP[$y]}"
            else
                vt_check "${VT_HOSTNAME[$x]} pings ${VT_HOSTNAME[$y]} (${IP[$y]})" \
                    vt_host_exec "$x" ping -c 2 -i 0.2 -W 2 "${IP[$y]}"
            fi
        done
    done
    [ "$VT_OVERLAY" = 1 ] && [ -n "${VT_ADMIN:-}" ] && [ -n "${IP[a1]:-}" ] && [ -n "${IP[b1]:-}" ] && sealed_on_the_wan
    if [ "$VT_OVERLAY" = 1 ] && [ -n "${IP[a1]:-}" ] && [ -n "${IP[b1]:-}" ]; then
        avg=$(ping_avg vt_host_exec a1 ping "${IP[b1]}")
        if [ -n "$avg" ]; then
            vt_pass "RTT alpha -> charlie across the VN: avg $avg ms (10 pings)"
        else
            vt_fail "RTT alpha -> charlie across the VN: no reply to 10 pings"
        fi
        FIG+=("VN RTT alpha->charlie ${avg:-?} ms")
    fi
}

# sealed_on_the_wan: pings from alpha to charlie carry a marker pattern; a capture on site A's LAN port sees it
# (the control: the check can see plaintext), a capture of the overlay's UDP on the WAN bridge must not (every
# frame crosses inside a Noise session), and it must hold overlay datagrams at all.
sealed_on_the_wan() {
    local lan=$VT_WORK/lan-marker.pcap wan=$VT_WORK/wan-marker.pcap marker=766e676174652d6d61726b6572 p1 p2
    vt_bg ip netns exec "$(vt_ns ra)" timeout 8 tcpdump --immediate-mode -i p-a1 -nn -U -w "$lan" icmp \
        >/dev/null 2>&1
    p1=$VT_LAST_PID
    vt_bg ip netns exec "$(vt_ns wan)" timeout 8 tcpdump --immediate-mode -i wbr -nn -U -w "$wan" \
        "udp port $VT_WAN_PORT" >/dev/null 2>&1
    p2=$VT_LAST_PID
    sleep 1
    vt_host_exec a1 ping -c 5 -i 0.2 -W 2 -p "$marker" "${IP[b1]}" >/dev/null 2>&1
    sleep 0.5
    kill -INT "$p1" "$p2" 2>/dev/null
    wait "$p1" "$p2" 2>/dev/null
    has_marker() { tcpdump -r "$1" -nn -x 2>/dev/null | sed -n 's/^\s*0x[0-9a-f]*:\s*//p' | tr -d ' \n' | grep -q "$marker"; }
    vt_check "the marker pattern is visible on site A's LAN (control)" has_marker "$lan"
    vt_check "overlay datagrams crossed the WAN during the pings" \
        test "$(tcpdump -r "$wan" -nn 2>/dev/null | wc -l)" -ge 10
    if has_marker "$wan"; then
        vt_fail "the marker pattern crossed the WAN in the clear"
    else
        vt_pass "nothing of the pings crossed the WAN in the clear (sealed in Noise sessions)"
    fi
}

# ---- revocation ----------------------------------------------------------------------------------------------
# step_revoke: the admin revokes india's certificate and hands the new list to ra alone; it spreads to every node
# through their sessions, each keeps it in its `revoked` file, sessions with india close and its new handshakes are
# refused (india can no longer reach anyone), and the rest of the VN keeps working.
step_revoke() {
    local n out
    [ "$VT_OVERLAY" = 1 ] && [ -n "${VT_ADMIN:-}" ] && [ -n "${IP[i1]:-}" ] || return 0
    vt_check "before: india pings alpha" vt_host_exec i1 ping -c 2 -i 0.2 -W 2 "${IP[a1]}"
    out=$("$HOSTCTL" node revoke i1 --dir "$VT_ADMIN" --passphrase-file "$VT_WORK/ca.pass" \
        --publish "$VT_WORK/state-ra/control.sock" --json 2>&1)
    vt_check "hostctl node revoke i1 --publish (to ra only): $(echo "$out" | tr -d '\n' | cut -c1-120)" \
        grep -q '"published": *1' <<<"$out"
    for n in rb s1 s2 s3; do
        vt_check "the list reached $n through the sessions (kept in its revoked file)" \
            vt_wait_for 10 test -s "$VT_WORK/state-$n/revoked"
    done
    vt_check "ra closed its session with india" \
        vt_wait_for 10 sh -c "'$HOSTCTL' metrics --socket '$VT_WORK/state-ra/control.sock' | grep -q '^vngate_secure_revoked_closed_total{[^}]*} [1-9]'"
    sleep 2
    if vt_host_exec i1 ping -c 3 -i 0.3 -W 1 "${IP[a1]}" >/dev/null 2>&1; then
        vt_fail "india still reaches alpha after its certificate was revoked"
    else
        vt_pass "india (revoked) no longer reaches alpha"
    fi
    vt_check "after: alpha still pings charlie across the sites" vt_host_exec a1 ping -c 2 -i 0.2 -W 2 "${IP[b1]}"
}

# ---- DNS ---------------------------------------------------------------------------------------------------
# resolves FROM NAME WANT: dig from host FROM gives exactly WANT.
resolves() {
    local got
    got=$(vt_dig "$1" "$2" A | tr '\n' ' ' | sed 's/ *$//')
    [ "$got" = "$3" ] || {
        echo "got '$got', want '$3'"
        return 1
    }
}
step_dns() {
    local x y name cname
    for x in "${VT_HOSTS[@]}"; do
        for y in "${VT_HOSTS[@]}"; do
            [ -n "${IP[$y]:-}" ] || continue
            name=${VT_HOSTNAME[$y]}.$VT_DOMAIN
            cname=$(vt_cname "${IP[$y]}").$VT_DOMAIN
            if cross "$x" "$y"; then
                across "${VT_HOSTNAME[$x]}: A $name -> ${IP[$y]} (other site)" resolves "$x" "$name" "${IP[$y]}"
                across "${VT_HOSTNAME[$x]}: A $cname -> ${IP[$y]} (other site)" resolves "$x" "$cname" "${IP[$y]}"
            else
                vt_check "${VT_HOSTNAME[$x]}: A $name -> ${IP[$y]}" resolves "$x" "$name" "${IP[$y]}"
                vt_check "${VT_HOSTNAME[$x]}: A $cname -> ${IP[$y]}" resolves "$x" "$cname" "${IP[$y]}"
            fi
        done
    done
}

# ---- hostctl against the routers' control sockets ---------------------------------------------------------
step_hostctl() {
    local sa=$VT_WORK/state-ra/control.sock sb=$VT_WORK/state-rb/control.sock out y
    [ "$VT_OVERLAY" = 1 ] || { vt_skip "hostctl overlay checks (no overlay in this daemon)"; return; }
    out=$("$HOSTCTL" status --socket "$sa" 2>&1)
    vt_check "hostctl status at ra lists 5 DHT members and peers up" \
        sh -c 'printf "%s" "$1" | grep -q "^overlay    5 DHT members" && printf "%s" "$1" | grep -q " up "' _ "$out"
    for y in "${VT_HOSTS[@]}"; do
        [ "${VT_SITE[$y]}" = rb ] && [ -n "${IP[$y]:-}" ] || continue
        out=$("$HOSTCTL" dht get "host:${VT_HOSTNAME[$y]}" --json --socket "$sa" 2>&1)
        vt_check "hostctl dht get host:${VT_HOSTNAME[$y]} at site A reads ${IP[$y]}" \
            sh -c 'printf "%s" "$1" | grep -q "\"found\":true" && printf "%s" "$1" | grep -q "\"value\":\"$2\""' _ "$out" "${IP[$y]}"
        break
    done
    out=$("$HOSTCTL" dht get host:nobody-here --json --socket "$sa" 2>&1)
    vt_check "hostctl dht get of an unknown name reads absent" sh -c 'printf "%s" "$1" | grep -q "\"found\":false"' _ "$out"
    out=$("$HOSTCTL" reserve 10.250.9.9 --name printer --pin --socket "$sa" 2>&1)
    vt_check "hostctl reserve 10.250.9.9 --name printer at ra" sh -c 'printf "%s" "$1" | grep -q "^reserved 10.250.9.9"' _ "$out"
    out=$("$HOSTCTL" reserve 10.250.9.9 --socket "$sb" 2>&1)
    vt_check "the same reserve at rb is refused, naming the owner" \
        sh -c '! printf "%s" "$1" | grep -q "^reserved" && printf "%s" "$1" | grep -q "holds the address"' _ "$out"
    for y in "${VT_HOSTS[@]}"; do
        [ "${VT_SITE[$y]}" = rb ] && [ -n "${IP[$y]:-}" ] || continue
        vt_check "${VT_HOSTNAME[$y]} at site B resolves the admin name printer" \
            vt_wait_for 5 resolves "$y" "printer.$VT_DOMAIN" 10.250.9.9
        break
    done
}

# ---- throughput --------------------------------------------------------------------------------------------
step_iperf() {
    if [ "$VT_OVERLAY" != 1 ]; then
        vt_skip "iperf3 TCP alpha -> charlie across the VN (no overlay)"
        return
    fi
    if [ -z "${IP[a1]:-}" ] || [ -z "${IP[b1]:-}" ]; then
        vt_fail "iperf3 alpha -> charlie: a host has no lease"
        return
    fi
    iperf3_run a1 "${IP[b1]}" b1 5
    if [ -n "$MBIT" ]; then
        vt_pass "iperf3 TCP alpha -> charlie across the VN: $MBIT Mbit/s (5 s)"
    else
        vt_fail "iperf3 TCP alpha -> charlie across the VN did not run"
    fi
    FIG+=("VN iperf3 alpha->charlie ${MBIT:-?} Mbit/s")
}

# no_arp_answer HOST IP: an ARP request for IP from HOST goes unanswered (4 s).
no_arp_answer() { ! vt_host_exec "$1" arping -c 3 -w 4 -I eth0 "$2"; }

# ---- two storage daemons die -------------------------------------------------------------------------------
step_storage_loss() {
    local n h c ip rc out r p all w="with s1, s2 dead:"
    if [ "$VT_OVERLAY" = 1 ]; then
        for n in s1 s2; do
            vt_node_stop "$n" KILL 5 2>/dev/null
            rc=$?
            vt_expect "storage node $n killed with SIGKILL" "$rc" 137
        done
    else
        # Without the overlay only the site-local half runs (renewals, claims), on the plumbing.
        vt_skip "SIGKILL s1 and s2 (no storage nodes without the overlay)"
        w="(P1, no storage nodes):"
    fi
    # records: every name from one host per site
    for h in a1 b2; do
        for n in "${VT_HOSTS[@]}"; do
            [ -n "${IP[$n]:-}" ] || continue
            if cross "$h" "$n"; then
                across "$w ${VT_HOSTNAME[$h]} resolves ${VT_HOSTNAME[$n]}.$VT_DOMAIN (other site)" \
                    vt_wait_for 10 resolves "$h" "${VT_HOSTNAME[$n]}.$VT_DOMAIN" "${IP[$n]}"
            else
                vt_check "$w ${VT_HOSTNAME[$h]} resolves ${VT_HOSTNAME[$n]}.$VT_DOMAIN" \
                    vt_wait_for 10 resolves "$h" "${VT_HOSTNAME[$n]}.$VT_DOMAIN" "${IP[$n]}"
            fi
        done
    done
    # bindings renew with the same address
    for h in "${VT_HOSTS[@]}"; do
        [ -n "${IP[$h]:-}" ] || continue
        c=${VT_CLIENT[$h]}
        if vt_renew "$h" "$c" "${VT_HOSTNAME[$h]}"; then
            vt_expect "$w $c on ${VT_HOSTNAME[$h]} renewed its lease" "$(vt_lease "$h" "$c" ip)" "${IP[$h]}"
        else
            vt_fail "$w $c on ${VT_HOSTNAME[$h]} did not renew within 20 s"
        fi
    done
    # claims: a new client on each site gets a fresh address, and its name resolves on the other site
    all=" ${IP[*]} "
    for r in ra rb; do
        p=${VT_PROBE_HOST[$r]}
        out=$(vt_host_exec "$p" "$DHCP_PROBE" -i eth0 --timeout 15 dora --mac "02:00:00:e0:00:0${p#p}" \
            --hostname "echo-$p")
        rc=$?
        ip=$(printf '%s' "$out" | sed -n 's/.*"ip":"\([^"]*\)".*/\1/p')
        if [ "$rc" = 0 ] && [[ "$ip" =~ ^10\.250\. ]] && [[ "$all" != *" $ip "* ]]; then
            vt_pass "$w dhcp-probe DORA on site $r gets a new address ($ip)"
            all="$all$ip "
            NEW_IPS+=("$p:$ip")
        else
            vt_fail "$w dhcp-probe DORA on site $r: exit $rc, '$out'"
        fi
    done
    for p in "${NEW_IPS[@]}"; do
        h=a1
        [ "${VT_SITE[${p%%:*}]}" = ra ] && h=b2
        # The other site's router answers ARP for the new address only once a DHT read (3 of 5 replicas
        # left) has found its record.
        across "$w ${VT_HOSTNAME[$h]}'s ARP for ${p#*:} (claimed on the other site) is answered (record read)" \
            vt_host_exec "$h" arping -c 4 -w 8 -I eth0 "${p#*:}"
        across "$w ${VT_HOSTNAME[$h]} resolves echo-${p%%:*}.$VT_DOMAIN (claimed on the other site)" \
            vt_wait_for 10 resolves "$h" "echo-${p%%:*}.$VT_DOMAIN" "${p#*:}"
    done
    # The negative control of the ARP checks above: an address nobody claimed (10.250.255.77; a pre-claimed
    # pool hit is some 12 in 65 000) gets no answer.
    across "$w alpha's ARP for unclaimed 10.250.255.77 gets no answer" \
        no_arp_answer a1 10.250.255.77
    vt_check "vngate on ra still runs" kill -0 "${VT_NODE_PID[ra]}"
    vt_check "vngate on rb still runs" kill -0 "${VT_NODE_PID[rb]}"
}

# ---- run ---------------------------------------------------------------------------------------------------
echo "== bringing up: WAN ($WAN_DELAY, $WAN_LOSS on site B), 3 storage nodes, 2 routers, 4 hosts"
if ! vt_two_sites_up; then
    vt_fail "topology: $VT_UP_ERR"
    for f in "$VT_WORK"/vngate-*.log "$VT_WORK"/wanem-*.log; do
        [ -f "$f" ] && tail -n 8 "$f" | sed "s|^|    | $(basename "$f"): |"
    done
    vt_summary
    exit
fi
[ "$VT_OVERLAY" = 1 ] && vt_pass "all five nodes up with the [overlay] contract" ||
    vt_log "P1 daemon: cross-site checks will print SKIP"
echo "== WAN"
step_wan
echo "== configs and nodes"
step_configs
step_nodes
if [ "$VT_OVERLAY" = 1 ]; then
    # Let the overlay find its peers before the first DISCOVER (bounded; the clients retry anyway).
    t0=$SECONDS
    vt_overlay_settle "${VT_SETTLE:-15}"
    up=$(for n in "${VT_ROUTERS[@]}" "${VT_STORAGE[@]}"; do printf '%s:%s ' "$n" "$(vt_peers_up "$n")"; done)
    vt_log "peers up after $((SECONDS - t0)) s: $up"
    for n in "${VT_ROUTERS[@]}" "${VT_STORAGE[@]}"; do
        if [ "$(vt_peers_up "$n")" -ge 1 ]; then
            vt_pass "$n sees $(vt_peers_up "$n") of its 4 peers up"
        else
            vt_fail "$n logged no PeerUp within ${VT_SETTLE:-15} s"
        fi
    done
fi
echo "== leases"
vt_clients_up
step_leases
echo "== ping"
step_ping
echo "== DNS"
step_dns
echo "== interface mode"
step_interface
echo "== hostctl"
step_hostctl
echo "== iperf3 across"
step_iperf
echo "== revocation"
step_revoke
echo "== two storage nodes killed"
step_storage_loss

echo "== figures at WAN delay $WAN_DELAY, loss $WAN_LOSS: $(IFS=';'; printf '%s' "${FIG[*]}" | sed 's/;/; /g')"
if [ "$VT_OVERLAY" != 1 ]; then
    echo "$VT_SKIPPED checks skipped: this vngate has no [overlay] support"
    [ "${VT_ALLOW_P1:-0}" = 1 ] || vt_fail "the two-site suite needs the overlay daemon (VT_ALLOW_P1=1 runs the plumbing only)"
fi
vt_summary
