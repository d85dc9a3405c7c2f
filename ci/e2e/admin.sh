#!/usr/bin/env bash
# End-to-end test of hostctl over the overlay (DESIGN.md "hostctl"), in network namespaces:
#
#   WAN: namespace "wan" with a bridge; router ra (bridge + TAP + vngate, router,dht) and two standalone
#        storage daemons s1, s2, all certified by the test namespace's CA (vt_provision / vt_certify).
#   lap: an admin's laptop on the WAN, no daemon: hostctl --via joins the overlay as a client.
#
# The laptop's keys and admin certificate come from `hostctl admin init` (keys in the namespace directory);
# a second key pair (vngate keygen) is signed with the host role only.
# Checks: with the admin certificate, `dht get node:<ra's id>` finds the record ra claimed (JSON and text),
# `reserve` on ra succeeds and `status` on ra lists the reservation among its owned addresses, with the same
# JSON keys as ra's control socket; with the host certificate every verb is refused and ra counts it
# (admin_refused); with a CA ra does not know, no session (a clear error after 5 s).
# Prints PASS/FAIL per step and ends with "<n> passed, <m> failed"; exits non-zero on any failure.
# Needs root. Env: VNGATE / HOSTCTL (prebuilt binaries), VT_KEEP=1 (leave it up).
set -uo pipefail

# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"

if [ "${1:-}" = --cleanup ]; then
    vt_remove_namespaces
    exit 0
fi

vt_init
vt_build
VT_ROUTERS=(ra)
VT_STORAGE=(s1 s2)
VT_WAN_IP[lap]=10.99.0.31
vt_provision

vt_wan_add
vt_router_add ra vn0
vt_no_ipv6 ra
vt_wan_attach ra
for s in s1 s2; do
    vt_ns_add "$s"
    vt_no_ipv6 "$s"
    vt_wan_attach "$s"
done
vt_ns_add lap
vt_no_ipv6 lap
vt_wan_attach lap

for n in ra s1 s2; do
    vt_node_start "$n" "$(vt_node_config "$n")"
done
RA=${VT_WAN_IP[ra]}:$VT_WAN_PORT
RA_ID=$(sed -n 's/^node-id //p' "$VT_WORK/state-ra/node.pub")
[ -n "$RA_ID" ] || vt_die "no node id in $VT_WORK/state-ra/node.pub"

# The laptop's credentials: `hostctl admin init` makes keys in the namespace directory and an admin
# certificate for them; a second key pair (vngate keygen) is signed with the host role only.
"$HOSTCTL" admin init admin --dir "$VT_ADMIN" --passphrase-file "$VT_WORK/ca.pass" >"$VT_WORK/init.out" 2>&1 ||
    vt_die "hostctl admin init: $(cat "$VT_WORK/init.out")"
ADM=$VT_ADMIN/keys/admin
VIEW=$VT_ADMIN/keys/viewer
"$VNGATE" keygen --state-dir "$VIEW" >"$VT_WORK/keygen-viewer.out" 2>&1 || vt_die "keygen viewer"
"$HOSTCTL" node sign viewer --pub "$VIEW/node.pub" --role host --dir "$VT_ADMIN" \
    --passphrase-file "$VT_WORK/ca.pass" >"$VT_WORK/sign-viewer.out" 2>&1 ||
    vt_die "hostctl node sign viewer: $(cat "$VT_WORK/sign-viewer.out")"
[ "$(stat -c %a "$ADM/noise.key")" = 600 ] && [ "$(stat -c %a "$ADM/node.key")" = 600 ] &&
    [ ! -e "$VT_ADMIN/bundles/admin/noise.key" ] &&
    vt_pass "admin init: keys 0600 in the namespace dir, not in the bundle" ||
    vt_fail "admin keys: $(ls -l "$ADM" "$VT_ADMIN/bundles/admin")"

# lap_ctl CERT KEYDIR ARGS...: hostctl in the laptop's namespace over the overlay to ra.
lap_ctl() {
    local cert=$1 keys=$2
    shift 2
    ip netns exec "$(vt_ns lap)" "$HOSTCTL" --via "$RA" --cert-dir "$cert" --key-dir "$keys" "$@"
}
# The admin's keys are found from the bundle (NS/bundles/admin -> NS/keys/admin): no --key-dir.
admin_ctl() { ip netns exec "$(vt_ns lap)" "$HOSTCTL" --via "$RA" --cert-dir "$VT_ADMIN/bundles/admin" "$@"; }
viewer_ctl() { lap_ctl "$VT_ADMIN/bundles/viewer" "$VIEW" "$@"; }

t0=$(date +%s)
# ra's node record exists once the DHT has its quorum: read it through ra, as the admin.
found_node() { admin_ctl dht get "node:$RA_ID" --json >"$VT_WORK/get.json" 2>"$VT_WORK/get.err" &&
    grep -q '"found":true' "$VT_WORK/get.json"; }
if vt_wait_for 30 found_node; then
    vt_pass "admin: dht get node:<ra> over the overlay finds ra's record ($(($(date +%s) - t0)) s)"
else
    vt_fail "admin: dht get node:<ra>: $(cat "$VT_WORK/get.json" "$VT_WORK/get.err" 2>/dev/null | head -c 600)"
fi
if admin_ctl dht get "node:$RA_ID" >"$VT_WORK/get.txt" 2>&1 && grep -qi "$RA_ID\|gen" "$VT_WORK/get.txt"; then
    vt_pass "admin: dht get prints the record as text"
else
    vt_fail "admin: dht get text: $(head -c 400 "$VT_WORK/get.txt")"
fi

RES=10.250.7.77
if admin_ctl reserve "$RES" --pin --json >"$VT_WORK/res.json" 2>&1 && grep -q "\"$RES\"" "$VT_WORK/res.json" &&
    ! grep -q '"error"' "$VT_WORK/res.json"; then
    vt_pass "admin: reserve $RES on ra over the overlay ($(head -c 200 "$VT_WORK/res.json"))"
else
    vt_fail "admin: reserve: $(head -c 600 "$VT_WORK/res.json")"
fi

if admin_ctl status --json >"$VT_WORK/status.json" 2>"$VT_WORK/status.err"; then
    local_keys=$(ip netns exec "$(vt_ns ra)" "$HOSTCTL" status --socket "$VT_WORK/state-ra/control.sock" --json |
        python3 -c 'import json,sys; print(sorted(json.load(sys.stdin)))')
    remote_keys=$(python3 -c 'import json,sys; print(sorted(json.load(sys.stdin)))' <"$VT_WORK/status.json")
    if [ "$local_keys" = "$remote_keys" ] && grep -q "$RA_ID" "$VT_WORK/status.json" &&
        python3 -c 'import json,sys; d=json.load(sys.stdin); o=d["overlay"]; assert "'"$RES"'" in o["owned"], o["owned"]; assert any(p["rtt_ms"] is not None for p in o["peers"]), o["peers"]' <"$VT_WORK/status.json" 2>"$VT_WORK/status.py"; then
        vt_pass "admin: status of ra over the overlay: its id, peers with RTT, $RES owned, same keys as the socket"
    else
        vt_fail "admin: status: keys $remote_keys vs $local_keys; $(cat "$VT_WORK/status.py")"
    fi
else
    vt_fail "admin: status: $(cat "$VT_WORK/status.err")"
fi
if admin_ctl status >"$VT_WORK/status.txt" 2>&1 && grep -q "$RA_ID" "$VT_WORK/status.txt"; then
    vt_pass "admin: status prints as through the socket"
else
    vt_fail "admin: status text: $(head -c 400 "$VT_WORK/status.txt")"
fi

if ip netns exec "$(vt_ns lap)" env VNGATE_VIA="$RA" VNGATE_CERT_DIR="$VT_ADMIN/bundles/admin" "$HOSTCTL" metrics \
    >"$VT_WORK/metrics.txt" 2>&1 && grep -q '^vngate_admin_refused_total' "$VT_WORK/metrics.txt"; then
    vt_pass "admin: metrics with VNGATE_VIA / VNGATE_CERT_DIR instead of flags"
else
    vt_fail "admin: metrics via the environment: $(head -c 300 "$VT_WORK/metrics.txt")"
fi

# A certified member without the admin role is refused, and counted.
for verb in "dht get node:$RA_ID" "reserve 10.250.7.78" "status"; do
    # shellcheck disable=SC2086
    if viewer_ctl $verb >"$VT_WORK/view.out" 2>&1; then
        vt_fail "host certificate: $verb succeeded: $(head -c 300 "$VT_WORK/view.out")"
    elif grep -q "refused the request.*no admin role" "$VT_WORK/view.out"; then
        vt_pass "host certificate: $verb refused"
    else
        vt_fail "host certificate: $verb: $(head -c 300 "$VT_WORK/view.out")"
    fi
done
refused=$(ip netns exec "$(vt_ns ra)" "$HOSTCTL" status --socket "$VT_WORK/state-ra/control.sock" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["admin_refused"])')
[ "$refused" = 3 ] && vt_pass "ra counted 3 refused admin requests" || vt_fail "admin_refused = $refused"

# Credentials of another namespace's CA: no session, a clear error.
OTHER=$VT_WORK/other
"$HOSTCTL" ns create other --subnet 10.250.0.0/16 --dir "$OTHER" --passphrase-file "$VT_WORK/ca.pass" >/dev/null 2>&1
"$HOSTCTL" node sign admin --pub "$ADM/node.pub" --role admin --dir "$OTHER" --passphrase-file "$VT_WORK/ca.pass" \
    >/dev/null 2>&1 || vt_die "sign in the other namespace"
if lap_ctl "$OTHER/bundles/admin" "$ADM" status >"$VT_WORK/other.out" 2>&1; then
    vt_fail "another CA's admin: status succeeded"
elif grep -q "no session with $RA after 5 s" "$VT_WORK/other.out"; then
    vt_pass "another CA's admin: $(head -c 200 "$VT_WORK/other.out")"
else
    vt_fail "another CA's admin: $(head -c 300 "$VT_WORK/other.out")"
fi

vt_summary
