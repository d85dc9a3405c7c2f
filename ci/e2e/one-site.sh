#!/usr/bin/env bash
# End-to-end test of one vngate site in network namespaces, with real DHCP clients.
#
#   router namespace: bridge br0 + TAP vn0, vngate on the TAP
#   hosts a, b, c (hostnames alpha, bravo, charlie): busybox udhcpc, ISC dhclient, dhcpcd
#   router r2 + host p: a second daemon with a 3-address pool, driven by dhcp-probe (DECLINE, exhaustion, RELEASE)
#
# Prints PASS/FAIL per step and ends with "<n> passed, <m> failed"; exits non-zero on any failure.
# Needs root. Env: VNGATE / DHCP_PROBE (prebuilt binaries; else cargo build --release), VT_KEEP=1 (leave it up).
# `one-site.sh --cleanup` with VT_PREFIX set removes a kept run.
set -uo pipefail
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"

if [ "${1:-}" = --cleanup ]; then
    vt_remove_namespaces
    exit 0
fi

vt_init
vt_build
[ -n "${VT_STANDIN:-}" ] && . "$VT_STANDIN"

DNS=10.250.0.1
declare -A IP

# ---- config check ------------------------------------------------------------------------------------------
step_check_config() {
    local good=$VT_WORK/good.toml bad1=$VT_WORK/bad-syntax.toml bad2=$VT_WORK/bad-subnet.toml out rc
    vt_write_config "$good" vn0 "$VT_WORK/unused-state"
    vt_check "check-config accepts a valid config" "$VNGATE" check-config "$good"

    # line 4: unterminated string
    sed '4s/.*/subnet = "10.250.0.0\/16/' "$good" >"$bad1"
    out=$("$VNGATE" check-config "$bad1" 2>&1)
    rc=$?
    if [ "$rc" != 0 ] && printf '%s' "$out" | grep -Eiq '(line[^0-9]{0,3}4([^0-9]|$)|:4:)'; then
        vt_pass "check-config refuses a TOML syntax error on line 4 (exit $rc)"
    else
        vt_fail "check-config on a syntax error at line 4: exit $rc, output: $(printf '%s' "$out" | head -n 3)"
    fi

    # line 4: a /33 subnet (a value error, not a syntax error)
    sed '4s/.*/subnet = "10.250.0.0\/33"/' "$good" >"$bad2"
    out=$("$VNGATE" check-config "$bad2" 2>&1)
    rc=$?
    if [ "$rc" != 0 ] && printf '%s' "$out" | grep -Eiq '(line[^0-9]{0,3}4([^0-9]|$)|:4:)'; then
        vt_pass "check-config refuses subnet /33 on line 4 (exit $rc)"
    else
        vt_fail "check-config on subnet /33 at line 4: exit $rc, output: $(printf '%s' "$out" | head -n 3)"
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
            vt_pass "$c on ${VT_HOSTNAME[$h]} got a lease in the subnet ($ip)"
        else
            vt_fail "$c on ${VT_HOSTNAME[$h]} got no usable lease (ip '$ip')"
            sed 's/^/    | /' "$(vt_host_dir "$h")/$c.log" 2>/dev/null | tail -n 8
            continue
        fi
        all+=("$ip")
        vt_expect "$c lease: subnet mask" "$(vt_lease "$h" "$c" mask)" 255.255.0.0
        vt_expect "$c lease: DNS server" "$(vt_lease "$h" "$c" dns)" "$DNS"
        vt_expect "$c lease: option 26 (interface MTU)" "$(vt_lease "$h" "$c" mtu)" 1380
        vt_expect "$c lease: domain" "$(vt_lease "$h" "$c" domain)" "$VT_DOMAIN"
        vt_check "$c configured $ip/16 on eth0" vt_has_addr "$h" "$ip/16"
        vt_check "$c wrote nameserver $DNS into the host's own resolv.conf" \
            grep -q "^nameserver $DNS" "$(vt_host_dir "$h")/resolv.conf"
    done
    local uniq
    uniq=$(printf '%s\n' "${all[@]}" | sort -u | wc -l)
    vt_expect "three different addresses" "$uniq" 3
}

# ---- DNS ---------------------------------------------------------------------------------------------------
step_dns() {
    local x y cname got
    for x in "${VT_HOSTS[@]}"; do
        for y in "${VT_HOSTS[@]}"; do
            [ "$x" = "$y" ] && continue
            [ -n "${IP[$y]:-}" ] || continue
            cname=$(vt_cname "${IP[$y]}").$VT_DOMAIN
            got=$(vt_dig "$x" "$cname" A | tr '\n' ' ' | sed 's/ *$//')
            vt_expect "${VT_HOSTNAME[$x]}: A $cname" "$got" "${IP[$y]}"
            got=$(vt_dig "$x" "${VT_HOSTNAME[$y]}.$VT_DOMAIN" A | tr '\n' ' ' | sed 's/ *$//')
            vt_expect "${VT_HOSTNAME[$x]}: A ${VT_HOSTNAME[$y]}.$VT_DOMAIN" "$got" "${IP[$y]}"
            # PTR: the IP-derived name or the host name, and nothing else
            got=$(vt_dig "$x" -x "${IP[$y]}" | sort)
            if [ -n "$got" ] && ! printf '%s\n' "$got" |
                grep -viqx -e "$cname\." -e "${VT_HOSTNAME[$y]}\.$VT_DOMAIN\."; then
                vt_pass "${VT_HOSTNAME[$x]}: PTR ${IP[$y]} -> $(printf '%s' "$got" | tr '\n' ' ')"
            else
                vt_fail "${VT_HOSTNAME[$x]}: PTR ${IP[$y]}: got '$(printf '%s' "$got" | tr '\n' ' ')'," \
                    "want $cname. or ${VT_HOSTNAME[$y]}.$VT_DOMAIN."
            fi
        done
    done
}

# ---- reachability ------------------------------------------------------------------------------------------
step_ping() {
    local x y
    for x in "${VT_HOSTS[@]}"; do
        vt_check "${VT_HOSTNAME[$x]} pings $DNS" vt_host_exec "$x" ping -c 2 -i 0.2 -W 2 "$DNS"
        for y in "${VT_HOSTS[@]}"; do
            [ "$x" = "$y" ] || [ -z "${IP[$y]:-}" ] && continue
            vt_check "${VT_HOSTNAME[$x]} pings ${VT_HOSTNAME[$y]} (${IP[$y]})" \
                vt_host_exec "$x" ping -c 2 -i 0.2 -W 2 "${IP[$y]}"
        done
    done
    vt_check "${VT_HOSTNAME[a]} pings 10.250.0.2" vt_host_exec a ping -c 2 -i 0.2 -W 2 10.250.0.2
}

# hostctl reads the daemon's status and metrics through its control socket.
step_status() {
    local out x
    if ! out=$("$HOSTCTL" status --socket "$VT_STATE/control.sock" --json 2>&1); then
        vt_fail "hostctl status: $out"
        return
    fi
    for x in "${VT_HOSTS[@]}"; do
        if printf '%s' "$out" | grep -q "\"ip\":\"${IP[$x]}\""; then
            vt_pass "hostctl status lists ${VT_HOSTNAME[$x]}'s binding ${IP[$x]}"
        else
            vt_fail "hostctl status does not list ${IP[$x]}: $out"
        fi
    done
    out=$("$HOSTCTL" status --socket "$VT_STATE/control.sock" 2>&1)
    vt_check "hostctl status (text) names the namespace and 3 bindings" \
        sh -c "printf '%s' \"\$1\" | grep -q '^bindings   3' && printf '%s' \"\$1\" | grep -q '^namespace  demo'" _ "$out"
    out=$("$HOSTCTL" metrics --socket "$VT_STATE/control.sock" 2>&1)
    vt_check "hostctl metrics counts DHCP messages and bindings" \
        sh -c "printf '%s' \"\$1\" | grep -Eq '^vngate_dhcp_rx_total\{namespace=\"demo\"\} [1-9]' && printf '%s' \"\$1\" | grep -q '^vngate_bindings{namespace=\"demo\"} 3'" _ "$out"
}

# The router MAC as the hosts learned it for .1; the same on every host, unicast and locally administered.
step_router_mac() {
    local h m
    ROUTER_MAC=
    for h in "${VT_HOSTS[@]}"; do
        m=$(vt_host_exec "$h" ip neigh show 10.250.0.1 dev eth0 | awk '/lladdr/ {print $3}')
        if [ -z "$ROUTER_MAC" ]; then ROUTER_MAC=$m; fi
        vt_expect "${VT_HOSTNAME[$h]} resolved .1 to the router MAC" "$m" "$ROUTER_MAC"
    done
    local first=0
    [[ "$ROUTER_MAC" =~ ^[0-9a-f]{2}(:[0-9a-f]{2}){5}$ ]] && first=$((16#${ROUTER_MAC%%:*}))
    if [ $((first & 3)) = 2 ]; then
        vt_pass "router MAC $ROUTER_MAC is unicast and locally administered"
    else
        vt_fail "router MAC '$ROUTER_MAC' is not a locally administered unicast address"
    fi
}

# dad FROM TARGET: an RFC 5227 probe (arping -D) from host FROM, replies captured on FROM's eth0.
# Prints "<arping exit> <sender MACs of replies for TARGET...>"; fails if the capture did not see the probe.
dad() {
    local from=$1 target=$2 cap err rc pid
    cap=$VT_WORK/dad-$from-$target.txt
    err=$VT_WORK/dad-$from-$target.err
    vt_bg nsenter -t "$(cat "$(vt_host_dir "$from")/holder.pid")" --net -- \
        timeout 10 tcpdump --immediate-mode -i eth0 -nn -l -e arp >"$cap" 2>"$err"
    pid=$VT_LAST_PID
    vt_wait_for 3 grep -q 'listening on' "$err"
    vt_host_exec "$from" timeout 6 arping -D -q -I eth0 -c 2 -w 3 "$target"
    rc=$?
    sleep 0.5
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    grep -q "Request who-has $target" "$cap" || return 1
    printf '%s' "$rc"
    awk -v t="$target" '$0 ~ ("Reply " t " is-at ") { for (i = 1; i <= NF; i++) if ($i == "is-at") { m = $(i + 1); sub(/,$/, "", m); print " " m } }' "$cap" |
        tr -d '\n'
    echo
}

step_dad() {
    local x y out macs
    for x in "${VT_HOSTS[@]}"; do
        # probe the next host's address
        case $x in a) y=b ;; b) y=c ;; c) y=a ;; esac
        [ -n "${IP[$y]:-}" ] || continue
        if ! out=$(dad "$x" "${IP[$y]}"); then
            vt_fail "DAD probe for ${IP[$y]}: the capture did not see the probe"
            continue
        fi
        macs=${out#* }
        [ "$macs" = "$out" ] && macs=
        if [ -n "$ROUTER_MAC" ] && ! printf '%s' "$macs" | grep -qi "$ROUTER_MAC"; then
            vt_pass "DAD probe from ${VT_HOSTNAME[$x]} for ${IP[$y]} not answered by the router (answered by:${macs:- nobody})"
        else
            vt_fail "DAD probe for leased ${IP[$y]} answered by the router MAC $ROUTER_MAC (replies:$macs)"
        fi
    done
    if out=$(dad a 10.250.0.1); then
        macs=${out#* }
        [ "$macs" = "$out" ] && macs=
        if [ -n "$ROUTER_MAC" ] && printf '%s' "$macs" | grep -qi "$ROUTER_MAC"; then
            vt_pass "DAD probe for 10.250.0.1 answered by the router MAC (arping exit ${out%% *})"
        else
            vt_fail "DAD probe for 10.250.0.1 not answered by the router MAC $ROUTER_MAC (replies:$macs)"
        fi
    else
        vt_fail "DAD probe for 10.250.0.1: the capture did not see the probe"
    fi
}

# ---- restart: bindings survive SIGKILL ---------------------------------------------------------------------
# DHCP messages captured on the router's bridge: "<src mac> <chaddr> <type> <yiaddr>" per line.
cap_start() {
    CAP=$VT_WORK/renew-$1.pcap
    vt_bg ip netns exec "$(vt_ns r)" timeout 40 tcpdump --immediate-mode -i br0 -nn -U -w "$CAP" 'udp port 67 or udp port 68' \
        2>"$CAP.err"
    CAP_PID=$VT_LAST_PID
    vt_wait_for 3 grep -q 'listening on' "$CAP.err"
}
cap_stop() {
    sleep 0.3
    kill "$CAP_PID" 2>/dev/null
    wait "$CAP_PID" 2>/dev/null
    cap_parse "$CAP"
}
# cap_parse PCAP: "<eth src> <chaddr> <message type number> <yiaddr> <udp checksum ok|bad>" per DHCP message
# (a client's own frames may show "bad" from checksum offload on its veth; only the router's must be ok).
cap_parse() {
    tcpdump -r "$1" -nn -e -vv 2>/dev/null | awk '
        function flush() { if (src != "") print src, ch, t, yi, sum; src = ""; ch = "-"; t = 0; yi = "0.0.0.0"; sum = "ok" }
        BEGIN { split("Discover Offer Request Decline ACK NACK Release Inform", names, " ")
                for (i in names) num[names[i]] = i }
        /^[0-9][0-9]:[0-9][0-9]:/ { flush(); src = $2 }
        /bad udp cksum/ { sum = "bad" }
        /Client-Ethernet-Address/ { ch = tolower($2) }
        /Your-IP/ { yi = $2 }
        /DHCP-Message \(53\)/ { t = num[$NF] + 0 }
        END { flush() }'
}
# ACKs to HOST's MAC seen so far in the running capture
cap_peek() { cap_parse "$CAP" | awk -v m="${VT_MAC[$1]}" '$2 == m && $3 == 5' | wc -l; }

# renew_check HOST TRIGGER_FN WAIT_FN: capture, trigger a renewal, wait for the client, check the exchange.
renew_check() {
    local h=$1 c=${VT_CLIENT[$1]} mac=${VT_MAC[$1]} msgs acks naks offers ip
    cap_start "$h"
    "$2" "$h"
    vt_wait_for 20 "$3" "$h"
    msgs=$(cap_stop | awk -v m="$mac" '$2 == m')
    acks=$(printf '%s\n' "$msgs" | awk -v ip="${IP[$h]}" '$3 == 5 && $4 == ip' | wc -l)
    naks=$(printf '%s\n' "$msgs" | awk '$3 == 6 || ($5 == "bad" && $1 != $2)' | wc -l)
    offers=$(printf '%s\n' "$msgs" | awk '$3 == 2' | wc -l)
    ip=$(vt_lease "$h" "$c" ip)
    if [ "$acks" -ge 1 ] && [ "$naks" = 0 ] && [ "$offers" = 0 ] && [ "$ip" = "${IP[$h]}" ]; then
        vt_pass "$c renewal after restart: ACK for ${IP[$h]}, no NAK, no new DISCOVER/OFFER, checksums ok"
    else
        vt_fail "$c renewal after restart: $acks ACK, $naks NAK or bad checksum, $offers OFFER; address '${IP[$h]}' -> '$ip'"
        printf '%s\n' "$msgs" | sed 's/^/    | /'
    fi
}

udhcpc_renew() {
    UDHCPC_EVENTS=$(vt_host_exec "$1" cat /run/udhcpc/events | wc -l)
    vt_host_exec "$1" sh -c 'kill -USR1 "$(cat /run/udhcpc.pid)"'
}
udhcpc_renewed() {
    [ "$(vt_host_exec "$1" cat /run/udhcpc/events | wc -l)" -gt "$UDHCPC_EVENTS" ] &&
        vt_host_exec "$1" tail -n 1 /run/udhcpc/events | grep -q '^renew '
}
# dhclient has no renew signal: stop it with SIGTERM (no RELEASE; `dhclient -x` would itself broadcast a DISCOVER
# first) and start it again, which re-requests the address from its lease file (INIT-REBOOT, RFC 2131 §3.2).
dhclient_renew() {
    vt_host_exec "$1" sh -c 'p=$(cat /run/dhclient.pid) && kill -TERM "$p" &&
        for i in $(seq 50); do kill -0 "$p" 2>/dev/null || exit 0; sleep 0.1; done; exit 1'
    vt_start_dhclient "$1" "${VT_HOSTNAME[$1]}"
}
dhclient_renewed() { vt_has_addr "$1" "${IP[$1]}/16"; }
dhcpcd_renew() { vt_host_exec "$1" timeout 10 dhcpcd -4 -n eth0 >>"$(vt_host_dir "$1")/dhcpcd.log" 2>&1; }
dhcpcd_renewed() { [ "$(cap_peek "$1")" -ge 1 ]; }

step_restart() {
    vt_daemon_stop KILL 5
    vt_check "the state directory holds the bindings after SIGKILL" \
        sh -c "[ -n \"\$(ls -A '$VT_STATE')\" ]"
    vt_daemon_start r "$VT_CONF" "$VT_DLOG"
    if ! vt_wait_for 10 vt_tap_ready r vn0; then
        vt_fail "vngate did not come back after SIGKILL"
        return
    fi
    vt_pass "vngate restarted after SIGKILL"
    vt_wait_for 10 sh -c "ip netns exec $(vt_ns a) dig @$DNS +short +time=1 +tries=1 \
        $(vt_cname "${IP[a]:-10.250.0.3}").$VT_DOMAIN | grep -q ." || true
    # The restarted daemon knows the bindings: a new client asking for a bound address is offered another one,
    # and the hostnames still resolve.
    local out got h
    out=$(vt_host_exec a "$DHCP_PROBE" -i eth0 discover --mac 02:00:00:f0:00:01 --requested "${IP[b]}")
    got=$(printf '%s' "$out" | sed -n 's/.*"ip":"\([^"]*\)".*/\1/p')
    if [ -n "$got" ] && [ "$got" != "${IP[a]}" ] && [ "$got" != "${IP[b]}" ] && [ "$got" != "${IP[c]}" ]; then
        vt_pass "after restart a new client asking for bravo's ${IP[b]} is offered $got instead"
    else
        vt_fail "after restart a new client asking for ${IP[b]}: '$out'"
    fi
    for h in "${VT_HOSTS[@]}"; do
        got=$(vt_dig a "${VT_HOSTNAME[$h]}.$VT_DOMAIN" A | tr '\n' ' ' | sed 's/ *$//')
        vt_expect "after restart ${VT_HOSTNAME[$h]}.$VT_DOMAIN still resolves" "$got" "${IP[$h]}"
    done
    renew_check a udhcpc_renew udhcpc_renewed
    renew_check b dhclient_renew dhclient_renewed
    renew_check c dhcpcd_renew dhcpcd_renewed
}

# ---- DECLINE, pool exhaustion, RELEASE with dhcp-probe -----------------------------------------------------
probe() { vt_host_exec p "$DHCP_PROBE" -i eth0 "$@"; }
json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
in_small_pool() { case $1 in 10.250.9.10 | 10.250.9.11 | 10.250.9.12) return 0 ;; esac; return 1; }

step_pool() {
    local conf=$VT_WORK/small.toml log=$VT_WORK/vngate-small.log out rc ip1 ipd ip3
    vt_router_add r2 vn1
    vt_host_add p r2 probe 02:00:00:0d:00:01
    vt_write_config "$conf" vn1 "$VT_WORK/state-small" 'pool = "10.250.9.10-10.250.9.12"'
    vt_daemon_start r2 "$conf" "$log"
    if ! vt_wait_for 10 vt_tap_ready r2 vn1; then
        vt_fail "vngate with the small pool did not start"
        return
    fi

    out=$(probe dora --mac 02:00:00:e0:00:01 --hostname echo1)
    rc=$?
    ip1=$(printf '%s' "$out" | json_field ip)
    if [ "$rc" = 0 ] && in_small_pool "$ip1"; then
        vt_pass "dhcp-probe DORA: $ip1 from the 3-address pool"
    else
        vt_fail "dhcp-probe DORA: exit $rc, '$out'"
    fi
    vt_expect "dhcp-probe lease: option 26" "$(printf '%s' "$out" | sed -n 's/.*"mtu":\([0-9]*\).*/\1/p')" 1380

    out=$(probe decline --mac 02:00:00:e0:00:02)
    rc=$?
    ipd=$(printf '%s' "$out" | json_field ip)
    if [ "$rc" = 0 ] && in_small_pool "$ipd" && [ "$ipd" != "$ip1" ]; then
        vt_pass "dhcp-probe DORA then DECLINE of $ipd"
    else
        vt_fail "dhcp-probe DECLINE: exit $rc, '$out'"
    fi
    vt_check "the log reports the DECLINE" vt_wait_for 3 grep -Eiq 'declin' "$log"

    out=$(probe dora --mac 02:00:00:e0:00:03)
    rc=$?
    ip3=$(printf '%s' "$out" | json_field ip)
    if [ "$rc" = 0 ] && in_small_pool "$ip3" && [ "$ip3" != "$ipd" ] && [ "$ip3" != "$ip1" ]; then
        vt_pass "the next client gets $ip3, not the declined $ipd"
    else
        vt_fail "the next client after a DECLINE of '$ipd': exit $rc, got '$ip3'"
    fi

    if [ -z "$ip1" ] || [ -z "$ipd" ] || [ -z "$ip3" ]; then
        vt_fail "the 3-address pool was not filled; skipping exhaustion and RELEASE"
        vt_daemon_stop TERM 5
        return
    fi
    out=$(probe --timeout 6 discover --mac 02:00:00:e0:00:04)
    rc=$?
    if [ "$rc" = 2 ] && [ "$out" = "no offer" ]; then
        vt_pass "DISCOVER to a full pool gets no OFFER (dhcp-probe exit 2)"
    else
        vt_fail "DISCOVER to a full pool: exit $rc, '$out'"
    fi
    vt_check "the log shows PoolExhausted" vt_wait_for 3 grep -q 'PoolExhausted' "$log"

    out=$(probe release --mac 02:00:00:e0:00:01 --ip "$ip1" --server "$DNS")
    rc=$?
    if [ "$rc" = 0 ]; then vt_pass "dhcp-probe RELEASE of $ip1"; else vt_fail "dhcp-probe RELEASE: exit $rc, '$out'"; fi
    out=$(probe discover --mac 02:00:00:e0:00:04)
    rc=$?
    vt_expect "after the RELEASE the waiting client is offered the released address" \
        "$rc $(printf '%s' "$out" | json_field ip)" "0 $ip1"

    vt_daemon_stop TERM 5
    vt_expect "vngate exits 0 on SIGTERM" "$?" 0
}

# ---- run ---------------------------------------------------------------------------------------------------
echo "== config"
step_check_config
echo "== site up"
if vt_site_up; then
    vt_pass "vngate opened and set up the TAP"
    vt_clients_up
    echo "== leases"
    step_leases
    echo "== DNS"
    step_dns
    echo "== ping"
    step_ping
    echo "== status"
    step_status
    echo "== ARP"
    step_router_mac
    step_dad
    echo "== restart"
    step_restart
    vt_daemon_stop TERM 5
else
    vt_fail "vngate did not open the TAP within 10 s"
    tail -n 20 "$VT_DLOG" | sed 's/^/    | /'
fi
echo "== DECLINE, pool exhaustion, RELEASE"
step_pool
vt_summary
