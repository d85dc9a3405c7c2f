#!/usr/bin/env bash
# The vngate demo: one VN site in network namespaces. A router namespace runs vngate on a TAP in a bridge;
# three hosts (alpha, bravo, charlie) run three different real DHCP clients (busybox udhcpc, ISC dhclient,
# dhcpcd), get leases, resolve each other's names at 10.250.0.1 and ping across. Then it tears everything down.
#
#   sudo ci/demo.sh            run the demo and remove it
#   sudo ci/demo.sh --keep     leave it running to explore (prints how to enter the hosts)
#   sudo ci/demo.sh --cleanup  remove a demo left by --keep
set -uo pipefail
export VT_PREFIX=${VT_PREFIX:-vtdemo}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

keep=0
case "${1:-}" in
--keep) keep=1 ;;
--cleanup)
    vt_remove_namespaces
    rm -rf /tmp/"$VT_PREFIX".*
    echo "demo removed"
    exit 0
    ;;
"") ;;
*)
    sed -n '2,9s/^# \{0,1\}//p' "$0"
    exit 2
    ;;
esac

if ip netns list | grep -q "^${VT_PREFIX}-"; then
    echo "a demo is already up (namespaces ${VT_PREFIX}-*): remove it with 'sudo $0 --cleanup'" >&2
    exit 1
fi

"$VT_ROOT/ci/setup.sh" || vt_die "ci/setup.sh failed"
vt_init
vt_build
[ "$keep" = 1 ] && VT_KEEP=1

echo "== bringing up the site: router + vngate, hosts alpha (udhcpc), bravo (dhclient), charlie (dhcpcd)"
if ! vt_site_up; then
    tail -n 20 "$VT_DLOG" >&2
    vt_die "vngate did not open its TAP"
fi
vt_clients_up

echo
echo "== leases, as each client recorded them"
printf '%-8s %-9s %-16s %-12s %-11s %-5s %s\n' host client address mask dns mtu domain
declare -A IP
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
