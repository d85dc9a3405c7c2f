#!/usr/bin/env bash
# The vngate demo, in network namespaces, torn down at the end.
#
# Two sites, one VN (the default): two router namespaces each run vngate on a TAP in a bridge, joined over a WAN
# namespace with three standalone DHT storage daemons; site A has alpha (busybox udhcpc) and bravo (ISC dhclient),
# site B charlie (dhcpcd) and delta (udhcpc). Every host gets a lease from the one subnet, resolves the others'
# names at 10.250.0.1 and pings across the sites. WAN_DELAY=50ms WAN_LOSS=1% puts a WAN on site B's link.
# One site (--one-site): one router, alpha, bravo and charlie on one LAN.
#
#   sudo ci/demo.sh [--one-site]            run the demo and remove it
#   sudo ci/demo.sh [--one-site] --keep     leave it running to explore (prints how to enter the hosts)
#   sudo ci/demo.sh --cleanup               remove a demo left by --keep
set -uo pipefail
export VT_PREFIX=${VT_PREFIX:-vtdemo}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

keep=0
mode=two
for arg in "$@"; do
    case $arg in
    --keep) keep=1 ;;
    --one-site) mode=one ;;
    --cleanup)
        vt_remove_namespaces
        rm -rf /tmp/"$VT_PREFIX".*
        echo "demo removed"
        exit 0
        ;;
    *)
        sed -n '2,13s/^# \{0,1\}//p' "$0"
        exit 2
        ;;
    esac
done

if ip netns list | grep -q "^${VT_PREFIX}-"; then
    echo "a demo is already up (namespaces ${VT_PREFIX}-*): remove it with 'sudo $0 --cleanup'" >&2
    exit 1
fi

# The one-site demo: three hosts on one router.
demo_one_site() {
    echo "== bringing up the site: router + vngate, hosts alpha (udhcpc), bravo (dhclient), charlie (dhcpcd)"
    if ! vt_site_up; then
        tail -n 20 "$VT_DLOG" >&2
        vt_die "vngate did not open its TAP"
    fi
    vt_clients_up

    echo
    echo "== leases, as each client recorded them"
    printf '%-8s %-9s %-16s %-12s %-11s %-5s %s\n' host client address mask dns mtu domain
    ok=1
    for h in "${VT_HOSTS[@]}"; do
        c=${VT_CLIENT[$h]}
        IP[$h]=$(vt_lease "$h" "$c" ip)
        [ -n "${IP[$h]}" ] || ok=0
        printf '%-8s %-9s %-16s %-12s %-11s %-5s %s\n' "${VT_HOSTNAME[$h]}" "$c" "${IP[$h]:--}" \
            "$(vt_lease "$h" "$c" mask)" "$(vt_lease "$h" "$c" dns)" "$(vt_lease "$h" "$c" mtu)" \
            "$(vt_lease "$h" "$c" domain)"
    done

    if [ "$ok" = 1 ]; then
        cname=$(vt_cname "${IP[c]}").$VT_DOMAIN
        echo
        echo "== names, asked from alpha at 10.250.0.1"
        echo "\$ dig @10.250.0.1 +short bravo.$VT_DOMAIN"
        vt_dig a "bravo.$VT_DOMAIN"
        echo "\$ dig @10.250.0.1 +short $cname"
        vt_dig a "$cname"
        echo "\$ dig @10.250.0.1 +short -x ${IP[c]}"
        vt_dig a -x "${IP[c]}"
        echo
        echo "== alpha pings bravo at the address DNS gave"
        vt_host_exec a ping -c 2 -i 0.3 -W 2 "$(vt_dig a "bravo.$VT_DOMAIN" | head -n 1)" | sed -n '1p;/packets/p'
    fi

    echo
    echo "== vngate's log"
    grep -E 'serving|LeaseGranted' "$VT_DLOG" | sed 's/^[^ ]* *//' | cut -c1-150

    if [ "$keep" = 1 ]; then
        cat <<EOF

The demo is still up (work dir $VT_WORK, daemon log $VT_DLOG). Enter a host — its own network, hostname,
/run, lease files and resolv.conf:
    sudo nsenter -t \$(cat $VT_WORK/host-a/holder.pid) -n -u -m bash      # alpha; host-b bravo, host-c charlie
    sudo ip netns exec ${VT_PREFIX}-r bash                                  # the router namespace
Remove it with: sudo $0 --cleanup
EOF
    fi
    [ "$ok" = 1 ]
}

# The two-site demo: the host table, names and a ping across the sites.
demo_two_site() {
    echo "== bringing up the WAN (3 storage nodes; site B's link: ${WAN_DELAY:-0} delay, ${WAN_LOSS:-0%} loss),"
    echo "   site A (router + vngate, alpha: udhcpc, bravo: dhclient), site B (charlie: dhcpcd, delta: udhcpc)"
    if ! vt_two_sites_up; then
        tail -n 20 "$VT_WORK"/vngate-*.log >&2
        vt_die "$VT_UP_ERR"
    fi
    if [ "$VT_OVERLAY" != 1 ]; then
        echo "this vngate cannot join an overlay yet ($VT_NO_OVERLAY): showing the one-site demo instead"
        echo
        VT_KEEP=0
        vt_cleanup
        # shellcheck disable=SC2046
        exec bash "$0" --one-site $([ "$keep" = 1 ] && echo --keep)
    fi
    vt_overlay_settle "${VT_SETTLE:-15}" || vt_log "not every node sees all its peers yet; going on"
    vt_clients_up

    echo
    echo "== leases, as each client recorded them"
    printf '%-5s %-8s %-9s %-16s %-11s %s\n' site host client address dns domain
    local h c r ok=1
    for h in "${VT_HOSTS[@]}"; do
        c=${VT_CLIENT[$h]}
        IP[$h]=$(vt_lease "$h" "$c" ip)
        [ -n "${IP[$h]}" ] || ok=0
        printf '%-5s %-8s %-9s %-16s %-11s %s\n' "${VT_SITE[$h]#r}" "${VT_HOSTNAME[$h]}" "$c" "${IP[$h]:--}" \
            "$(vt_lease "$h" "$c" dns)" "$(vt_lease "$h" "$c" domain)"
    done

    if [ "$ok" = 1 ]; then
        echo
        echo "== names across the sites, asked at 10.250.0.1"
        echo "alpha (site A)\$ dig @10.250.0.1 +short charlie.$VT_DOMAIN"
        vt_dig a1 "charlie.$VT_DOMAIN"
        echo "alpha (site A)\$ dig @10.250.0.1 +short $(vt_cname "${IP[b2]}").$VT_DOMAIN"
        vt_dig a1 "$(vt_cname "${IP[b2]}").$VT_DOMAIN"
        echo "delta (site B)\$ dig @10.250.0.1 +short bravo.$VT_DOMAIN"
        vt_dig b2 "bravo.$VT_DOMAIN"
        echo
        local to
        to=$(vt_dig a1 "charlie.$VT_DOMAIN" | head -n 1)
        if [ -n "$to" ]; then
            echo "== alpha (site A) pings charlie (site B) at the address DNS gave"
        else
            to=${IP[b1]}
            echo "== alpha (site A) pings charlie (site B) at its lease's address (the name did not resolve)"
        fi
        vt_host_exec a1 ping -c 3 -i 0.3 -W 3 "$to" | sed -n '1p;/packets/p;/rtt/p'
    fi

    local hostctl=${CARGO_TARGET_DIR:-$VT_ROOT/target}/${VT_PROFILE:-debug}/hostctl
    if [ -x "$hostctl" ]; then
        echo
        echo "== router A's view of the overlay: hostctl status"
        "$hostctl" status --socket "$VT_WORK/state-ra/control.sock" | sed -n '/^overlay/,$p' | grep -v '^counters'
    fi

    echo
    echo "== the routers' logs"
    for r in ra rb; do
        grep -E 'serving|overlay|LeaseGranted' "$VT_WORK/vngate-$r.log" | sed "s/^[^ ]* */$r: /" | cut -c1-150 |
            head -n 8
    done

    if [ "$keep" = 1 ]; then
        cat <<EOF

The demo is still up (work dir $VT_WORK, daemon logs $VT_WORK/vngate-*.log). Enter a host — its own network,
hostname, /run, lease files and resolv.conf:
    sudo nsenter -t \$(cat $VT_WORK/host-a1/holder.pid) -n -u -m bash   # alpha; host-a2 bravo, host-b1 charlie, host-b2 delta
    sudo ip netns exec ${VT_PREFIX}-ra bash                               # router A (rb: router B, wan: the WAN switch)
    sudo target/debug/hostctl status --socket $VT_WORK/state-ra/control.sock   # router A's peers, DHT, bindings
Remove it with: sudo $0 --cleanup
EOF
    fi
    [ "$ok" = 1 ]
}

"$VT_ROOT/ci/setup.sh" || vt_die "ci/setup.sh failed"
vt_init
vt_build
[ "$keep" = 1 ] && VT_KEEP=1
declare -A IP
if [ "$mode" = one ]; then
    demo_one_site
else
    vt_build_wanem
    (cd "$VT_ROOT" && cargo build --quiet -p hostctl) || vt_log "hostctl did not build; the demo goes on without it"
    demo_two_site
fi
