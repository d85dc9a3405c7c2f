#!/usr/bin/env bash
# DHCP lease time at a site whose WAN link has 50 ms one-way delay, with and without addresses pre-claimed in the
# DHT, measured in the same run (by hand, not in CI; root; about 2 minutes):
#
#   sudo ci/bench/lease-wan.sh                 # BENCH_DELAY=50ms BENCH_LEASES=20
#
# The two-site topology of ci/e2e/two-site.sh (ci/lib.sh: routers ra and rb, storage daemons s1..s3 on a WAN
# bridge; rb's WAN link runs through vn-wanem with BENCH_DELAY each way, so every DHT round trip from rb costs
# 2 x BENCH_DELAY). It is brought up twice: routers keeping 4 free addresses claimed (the default, `preclaim = 4`)
# and keeping none (`preclaim = 0`: a DISCOVER that finds no free address starts a claim and goes unanswered; the
# client's retransmission gets the OFFER). In each, host b2 behind rb takes BENCH_LEASES leases one after the
# other, each with a new MAC, with busybox udhcpc (-T 1: a retransmission every second, -q: exit on the lease,
# -R: release on exit, so a pre-claimed address returns to the pool and an on-demand one is deleted from the DHT).
# Lease time = udhcpc start to exit (DISCOVER .. ACK; the server's 500 ms ARP check before every OFFER included).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
VT_PREFIX=lw$$
DELAY=${BENCH_DELAY:-50ms}
LEASES=${BENCH_LEASES:-20}
vt_init
vt_build
vt_build_wanem
OUT=$VT_WORK/results.txt

# lease_times N: N leases at host b2, each with a fresh MAC; prints one time in ms per line.
lease_times() {
    local i t0 t1 mac
    for i in $(seq "$1"); do
        mac=$(printf '02:00:00:be:%02x:%02x' $((RANDOM % 256)) "$i")
        vt_host_exec b2 ip link set eth0 address "$mac"
        t0=$(date +%s%N)
        if vt_host_exec b2 timeout 20 busybox udhcpc -i eth0 -f -q -R -n -t 15 -T 1 -A 1 -s /bin/true >/dev/null 2>&1; then
            t1=$(date +%s%N)
            echo $(((t1 - t0) / 1000000))
        else
            echo fail
        fi
        sleep 1.2
    done
}

stats() { # label file
    sort -n "$2" | awk -v l="$1" '$1!="fail"{a[n++]=$1; s+=$1} $1=="fail"{f++}
        END{ if(n==0){printf "%-22s no lease\n", l; exit}
             printf "%-22s n=%d fail=%d mean=%.0f ms p50=%d ms p90=%d ms max=%d ms\n", l, n, f+0, s/n, a[int(n*0.5)], a[int(n*0.9)], a[n-1] }'
}

run() { # preclaim
    VT_PRECLAIM=$1 WAN_DELAY=$DELAY WAN_LOSS=0% vt_two_sites_up || vt_die "topology: $VT_UP_ERR"
    vt_overlay_settle 20 || vt_die "overlay did not settle"
    sleep 8 # node records, pre-claims
    lease_times "$LEASES" >"$VT_WORK/lease-$1.txt"
    [ "${BENCH_KEEP_LOGS:-0}" = 1 ] && cp "$VT_WORK"/vngate-rb.log "/tmp/lease-wan-rb-$1.log"
    vt_remove_namespaces
    local p
    for p in "${VT_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    VT_PIDS=()
    rm -rf "$VT_WORK"/state-* "$VT_WORK"/host-* "$VT_WORK"/admin
}

MODES=${BENCH_MODES:-4 0}
for m in $MODES; do run "$m"; done
[ "$MODES" = "4 0" ] || { tail -n +1 "$VT_WORK"/lease-*.txt; exit 0; }
{
    echo "DHCP lease time at site B, WAN one-way delay $DELAY (DHT round trip $((2 * ${DELAY%ms})) ms), $LEASES leases each, $(date -u +%F)"
    stats "preclaim=4 (default)" "$VT_WORK/lease-4.txt"
    stats "preclaim=0 (on demand)" "$VT_WORK/lease-0.txt"
    m4=$(awk '$1!="fail"{s+=$1;n++} END{print (n? s/n : 0)}' "$VT_WORK/lease-4.txt")
    m0=$(awk '$1!="fail"{s+=$1;n++} END{print (n? s/n : 0)}' "$VT_WORK/lease-0.txt")
    awk -v a="$m0" -v b="$m4" 'BEGIN{ if (b>0) printf "ratio mean(on demand) / mean(pre-claimed) = %.2f\n", a/b }'
} | tee "$OUT"
mkdir -p "$VT_ROOT/ci/bench/results"
cp "$OUT" "$VT_ROOT/ci/bench/results/lease-wan-$(date -u +%Y%m%d).txt"
