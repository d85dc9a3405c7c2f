#!/usr/bin/env bash
# Host-to-host TCP throughput and RTT between a host at site A and a host at site B, three ways over the same
# namespaces and measured in the same run (run by hand, not in CI; root; about 3 minutes, 5 with the WAN delay):
#
#   sudo ci/bench/throughput.sh                     # 0 ms WAN, then 50 ms one-way WAN delay (vn-wanem)
#   sudo BENCH_DELAY=0 ci/bench/throughput.sh       # the 0 ms WAN only
#   sudo BENCH_WG=boringtun ci/bench/throughput.sh  # one userspace WireGuard only (default: each one installed
#                                                   # of wireguard-go and boringtun-cli)
#
# Topology (namespaces tp<pid>-*): a WAN bridge (wan) joins routers ra (10.99.0.1) and rb (10.99.0.2) and three
# vngate storage daemons s1..s3 (10.99.0.11-13). Each router has a LAN bridge br0 holding vngate's TAP (vn0) and a
# veth to its one host (ha, hb). The same host namespaces and interfaces carry all three variants at once, each on
# its own addresses, so the variants alternate run by run under the same load:
#   (1) native:    ha 10.1.0.10/24 -> ra (br0 10.1.0.1) -> plain IP forwarding over the WAN -> rb -> hb 10.2.0.10;
#   (2) vngate:    ha and hb lease 10.250.x.y/16 from their site's vngate (busybox udhcpc) and talk as on one LAN:
#                  proxy ARP, the frames go through the TAP into vngate's overlay (UDP 4789) between ra and rb;
#   (3) wireguard: ha 10.11.0.10/24 -> ra -> a userspace WireGuard interface (wireguard-go, Debian package) whose
#                  UDP (51821) crosses the same WAN to rb -> hb 10.12.0.10; and the same with boringtun-cli
#                  (cargo install --locked boringtun-cli) on 10.21/10.22 and port 51822.
# vngate's data plane is plaintext in P2 (encryption comes in P3): WireGuard encrypts and authenticates every
# packet (ChaCha20-Poly1305), so it does more work per packet than vngate does today.
# The hosts' eth0 MTU is set to vngate's VN MTU (1380) for every variant, so all three carry the same TCP segment
# size and no variant relies on PMTU discovery or MSS clamping; the WireGuard interfaces have MTU 1420.
#
# Pinning (2-core machine): iperf3 and ping (client and server) run on core BENCH_GEN_CPU (0); the data-plane
# processes of the tunnels -- both vngate routers and both WireGuard daemons -- and the vngate storage daemons run on
# core BENCH_SRV_CPU (1), each started as `ip netns exec NS nice -n -10 taskset -c CPU CMD`. Native forwarding has no
# process: the kernel forwards in softirq context on whichever core the packet arrives. All at nice -10 (this
# session's scheduler autogroup too) so that other work on the shared machine disturbs the figures less.
# With BENCH_DELAY set, vn-wanem (release build) sits between ra's WAN port and the WAN bridge for the second part,
# pinned to the generator core, so everything ra sends or receives over the WAN is delayed (both directions). Its
# queue holds 32768 frames (its default 4096 dropped ~74k MTU-sized tunnel frames at 50 ms: a 50 ms link carrying
# 500 Mbit/s already holds ~2,200 of them).
#
# The hosts' TCP buffers may grow to 32 MiB (tcp_rmem/tcp_wmem in their namespaces), so that at 50 ms the window is
# not what limits the flow (with the defaults every variant stopped near 280 Mbit/s).
# Figures: throughput = iperf3 receiver rate over BENCH_SECS (5 s, the first second omitted), BENCH_RUNS (5) runs per
# variant (the variants alternate), median and best; RTT = BENCH_PINGS (100) pings at 20 ms intervals, in
# BENCH_RUNS rounds alternating the variants, each round after 2 warm-up pings: avg, p50, p99 over all of them; cpu% = the two gateway processes' CPU time over the wall time of the iperf3 runs
# (100 = one core). Ratios: vngate/native, wireguard/native, vngate/wireguard (throughput: >1 is better; RTT: <1).
# Output: stdout and ci/bench/results/throughput-<date>.txt (BENCH_OUT=path to change it, BENCH_OUT= for none).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

GEN_CPU=${BENCH_GEN_CPU:-0}
SRV_CPU=${BENCH_SRV_CPU:-1}
NICE=${BENCH_NICE:--10}
RUNS=${BENCH_RUNS:-5}
SECS=${BENCH_SECS:-5}
PINGS=${BENCH_PINGS:-100}
DELAY=${BENCH_DELAY:-50ms}
WGS=${BENCH_WG-}
VNGATE_BIN=${VNGATE_BIN:-$root/target/release/vngate}
HOSTCTL_BIN=${HOSTCTL_BIN:-$root/target/release/hostctl}
# BENCH_PLAIN=1: vngate without certificates (P2's plaintext overlay), for comparison; default: every vngate
# node provisioned by hostctl, so the overlay runs in Noise sessions (ChaCha20-Poly1305 on every frame).
PLAIN=${BENCH_PLAIN:-0}
WANEM_BIN=${WANEM_BIN:-$root/target/release/vn-wanem}
OUT=${BENCH_OUT-$here/results/throughput-$(date -u +%Y%m%d-%H%M).txt}

[ "$(id -u)" = 0 ] || { echo "throughput.sh: run as root (network namespaces)" >&2; exit 1; }
wg_bin() {
  case "$1" in
    wireguard-go) command -v wireguard-go || true ;;
    boringtun) command -v boringtun-cli || echo "${CARGO_HOME:-$HOME/.cargo}/bin/boringtun-cli" ;;
    *) echo "throughput.sh: BENCH_WG lists wireguard-go and/or boringtun" >&2; exit 1 ;;
  esac
}
if [ -z "$WGS" ]; then
  for w in wireguard-go boringtun; do [ -x "$(wg_bin $w)" ] && WGS="$WGS $w"; done
fi
WGS=$(echo $WGS)
[ -n "$WGS" ] || { echo "throughput.sh: no userspace WireGuard (VNGATE_BENCH=1 ci/setup.sh installs wireguard-go;" \
  "boringtun: cargo install --locked boringtun-cli)" >&2; exit 1; }
for w in $WGS; do [ -x "$(wg_bin "$w")" ] || { echo "throughput.sh: $w missing" >&2; exit 1; }; done
for t in ip taskset iperf3 ping wg busybox jq strip; do
  command -v "$t" >/dev/null || { echo "throughput.sh: $t missing (VNGATE_BENCH=1 ci/setup.sh installs it)" >&2; exit 1; }
done
if [ ! -x "$VNGATE_BIN" ] || [ ! -x "$HOSTCTL_BIN" ] || { [ "$DELAY" != 0 ] && [ ! -x "$WANEM_BIN" ]; }; then
  echo "# building: cargo build --release -p vngate -p hostctl -p vn-wanem" >&2
  (cd "$root" && cargo build --release -q -p vngate -p hostctl -p vn-wanem)
fi
if [ "$(nproc)" -lt 2 ]; then GEN_CPU=0; SRV_CPU=0; fi

P="tp$$"
work=$(mktemp -d /dev/shm/vngate-tput.XXXXXX)
pids=()
autogroup_old=
if [ -w /proc/self/autogroup ]; then
  autogroup_old=$(awk '{ print $NF }' /proc/self/autogroup)
  echo "$NICE" >/proc/self/autogroup 2>/dev/null || autogroup_old=
fi

cleanup() {
  local p n
  set +e
  if [ -n "$autogroup_old" ]; then echo "$autogroup_old" >/proc/self/autogroup 2>/dev/null; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for n in $(ip netns list | awk '{ print $1 }' | grep "^$P-"); do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$n" 2>/dev/null
  done
  rm -f /var/run/wireguard/"$P"-wg*.sock
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "# $(date +%H:%M:%S) $*" >&2; }
die() { log "FATAL: $*"; exit 2; }

# bg NS CPU LOG CMD...: run CMD pinned in namespace NS, in the background; sets $bg_pid.
bg() {
  local ns=$1 cpu=$2 out=$3; shift 3
  ip netns exec "$P-$ns" nice -n "$NICE" taskset -c "$cpu" "$@" >"$out" 2>&1 &
  bg_pid=$!
  pids+=("$bg_pid")
}
in_ns() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }
gen() { local ns=$1; shift; ip netns exec "$P-$ns" nice -n "$NICE" taskset -c "$GEN_CPU" "$@"; }

# ---------------------------------------------------------------------------------------------- topology
ns_add() {
  ip netns add "$P-$1"
  ip -n "$P-$1" link set lo up
  in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}
# wan_port NS ADDR: a veth from NS's wan0 (ADDR/24) to the WAN bridge; the bridge side is named $P-wNS.
wan_port() {
  ip link add "$P-w$1" type veth peer name wan0 netns "$P-$1"
  ip link set "$P-w$1" netns "$P-wan"
  ip -n "$P-wan" link set "$P-w$1" master br0 up
  ip -n "$P-$1" addr add "$2/24" dev wan0
  ip -n "$P-$1" link set wan0 up
}

NS_TOML='[namespace]
id = "7470757462656e636874687270757431"
name = "bench"
subnet = "10.250.0.0/16"'
# provision: the bench namespace's CA (hostctl ns create); NS_TOML then carries its id.
provision() {
  [ "$PLAIN" = 1 ] && return 0
  echo "bench passphrase $P" >"$work/pass"
  "$HOSTCTL_BIN" ns create bench --subnet 10.250.0.0/16 --dir "$work/admin" --passphrase-file "$work/pass" \
    --json >"$work/ns.json" || die "hostctl ns create failed"
  local id; id=$(sed -n 's/.*"id": *"\([0-9a-f]\{32\}\)".*/\1/p' "$work/ns.json")
  NS_TOML=$(printf '[namespace]\nid = "%s"\nname = "bench"\nsubnet = "10.250.0.0/16"' "$id")
}
# certify NAME STATE_DIR ROLES ENDPOINT: keys made in STATE_DIR (vngate keygen), signed by the bench CA.
certify() {
  [ "$PLAIN" = 1 ] && return 0
  "$VNGATE_BIN" keygen --state-dir "$2" >/dev/null || die "vngate keygen $1"
  "$HOSTCTL_BIN" node sign "$1" --pub "$2/node.pub" --role "$3" --endpoint "$4" --dir "$work/admin" \
    --passphrase-file "$work/pass" >/dev/null || die "hostctl node sign $1"
  cp "$work/admin/bundles/$1/node.cert" "$work/admin/bundles/$1/ca.pub" "$work/admin/bundles/$1/namespace.doc" "$2/"
}
PEERS='["10.99.0.11:4789", "10.99.0.12:4789", "10.99.0.13:4789"]'
vngate_pids=()

setup() {
  provision
  ns_add wan
  ip -n "$P-wan" link add br0 type bridge
  ip -n "$P-wan" link set br0 up
  local s r n
  for s in 1 2 3; do
    ns_add "s$s"
    wan_port "s$s" "10.99.0.1$s"
    mkdir -p "$work/s$s"
    certify "s$s" "$work/s$s" dht "10.99.0.1$s:4789"
    printf '%s\n[overlay]\nlisten = "10.99.0.1%s:4789"\npeers = %s\nfounding = true\n[daemon]\nstate_dir = "%s"\n' \
      "$NS_TOML" "$s" "$PEERS" "$work/s$s" >"$work/s$s.toml"
    bg "s$s" "$SRV_CPU" "$work/s$s.log" "$VNGATE_BIN" -c "$work/s$s.toml"
  done
  for r in a b; do
    n=$([ $r = a ] && echo 1 || echo 2)
    ns_add "r$r"
    wan_port "r$r" "10.99.0.$n"
    in_ns "r$r" sysctl -qw net.ipv4.ip_forward=1
    ip -n "$P-r$r" link add br0 type bridge
    ip -n "$P-r$r" link set br0 up
    ip -n "$P-r$r" tuntap add dev vn0 mode tap
    ip -n "$P-r$r" link set vn0 master br0
    ip -n "$P-r$r" addr add "10.$n.0.1/24" dev br0   # native gateway
    ip -n "$P-r$r" addr add "10.1$n.0.1/24" dev br0  # wireguard-go gateway
    ip -n "$P-r$r" addr add "10.2$n.0.1/24" dev br0  # boringtun gateway
    ns_add "h$r"
    ip link add "$P-h$r" type veth peer name eth0 netns "$P-h$r"
    ip link set "$P-h$r" netns "$P-r$r"
    ip -n "$P-r$r" link set "$P-h$r" master br0 up
    ip -n "$P-h$r" link set eth0 mtu 1380 up
    # TCP buffers up to 32 MiB: with the defaults (6 MiB receive) one flow tops out near 280 Mbit/s at 100 ms RTT
    in_ns "h$r" sysctl -qw net.ipv4.tcp_rmem="4096 131072 33554432" net.ipv4.tcp_wmem="4096 16384 33554432"
    ip -n "$P-h$r" addr add "10.$n.0.10/24" dev eth0
    ip -n "$P-h$r" addr add "10.1$n.0.10/24" dev eth0
    ip -n "$P-h$r" addr add "10.2$n.0.10/24" dev eth0
    mkdir -p "$work/r$r"
    certify "r$r" "$work/r$r" router,dht "10.99.0.$n:4789"
    printf '%s\n[overlay]\nlisten = "10.99.0.%s:4789"\npeers = %s\nfounding = true\n[daemon]\ntap = "vn0"\nstate_dir = "%s"\n' \
      "$NS_TOML" "$n" "$PEERS" "$work/r$r" >"$work/r$r.toml"
    bg "r$r" "$SRV_CPU" "$work/r$r.log" "$VNGATE_BIN" -c "$work/r$r.toml"
    vngate_pids+=("$bg_pid")
  done
  # native: each site's subnet routed over the WAN
  ip -n "$P-ra" route add 10.2.0.0/24 via 10.99.0.2
  ip -n "$P-rb" route add 10.1.0.0/24 via 10.99.0.1
  ip -n "$P-ha" route add 10.2.0.0/24 via 10.1.0.1
  ip -n "$P-hb" route add 10.1.0.0/24 via 10.2.0.1
  ip -n "$P-ha" route add 10.12.0.0/24 via 10.11.0.1
  ip -n "$P-hb" route add 10.11.0.0/24 via 10.12.0.1
  ip -n "$P-ha" route add 10.22.0.0/24 via 10.21.0.1
  ip -n "$P-hb" route add 10.21.0.0/24 via 10.22.0.1
}

declare -A WG_PIDS
# wg_k IMPL: its index (1 wireguard-go, 2 boringtun): subnets 10.<k>1/10.<k>2, port 5182<k>, interface $P-wg<k><site>
wg_k() { case "$1" in wireguard-go) echo 1 ;; boringtun) echo 2 ;; esac; }
# setup_wireguard IMPL: the two routers' tunnel with that implementation.
setup_wireguard() {
  local impl=$1 k r n o key i ifn bin
  k=$(wg_k "$impl"); bin=$(wg_bin "$impl")
  for r in a b; do
    (umask 077; wg genkey >"$work/wg$k$r.key")
    wg pubkey <"$work/wg$k$r.key" >"$work/wg$k$r.pub"
  done
  mkdir -p /var/run/wireguard
  WG_PIDS[$impl]=""
  for r in a b; do
    n=$([ $r = a ] && echo 1 || echo 2); o=$([ $r = a ] && echo 2 || echo 1); ifn="$P-wg$k$r"
    case "$impl" in
      wireguard-go) bg "r$r" "$SRV_CPU" "$work/wg$k$r.log" env LOG_LEVEL=error "$bin" -f "$ifn" ;;
      boringtun) bg "r$r" "$SRV_CPU" "$work/wg$k$r.log" env WG_LOG_LEVEL=error "$bin" --foreground \
        --disable-drop-privileges "$ifn" ;;
    esac
    WG_PIDS[$impl]="${WG_PIDS[$impl]} $bg_pid"
    for i in $(seq 50); do [ -S "/var/run/wireguard/$ifn.sock" ] && break; sleep 0.1; done
    key=$(cat "$work/wg$k$([ $r = a ] && echo b || echo a).pub")
    in_ns "r$r" wg set "$ifn" private-key "$work/wg$k$r.key" listen-port "5182$k" \
      peer "$key" allowed-ips "10.$k$o.0.0/24" endpoint "10.99.0.$o:5182$k"
    ip -n "$P-r$r" link set "$ifn" mtu 1420 up
    ip -n "$P-r$r" route add "10.$k$o.0.0/24" dev "$ifn"
  done
}

# lease R: the host at site R takes a VN address from its vngate; sets VN_R.
lease() {
  local r=$1 ip="" i
  for i in 1 2 3 4 5; do
    ip=$(in_ns "h$r" busybox udhcpc -i eth0 -q -n -t 5 -T 2 -s /bin/true 2>&1 |
      sed -n 's/.*lease of \([0-9.]*\) obtained.*/\1/p')
    [ -n "$ip" ] && break
    sleep 1
  done
  [ -n "$ip" ] || die "host $r got no lease from vngate (logs: $work/r$r.log)"
  ip -n "$P-h$r" addr add "$ip/16" dev eth0
  eval "VN_$r=$ip"
}

# ------------------------------------------------------------------------------------------------ measure
HZ=$(getconf CLK_TCK)
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat"))); done; echo "$t"; }

# dest VARIANT: host B's address for that variant
dest() { case "$1" in native) echo 10.2.0.10 ;; vngate) echo "$VN_b" ;; *) echo "10.$(wg_k "$1")2.0.10" ;; esac; }
gw_pids() { case "$1" in native) ;; vngate) echo "${vngate_pids[@]}" ;; *) echo "${WG_PIDS[$1]}" ;; esac; }

med() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }
# ping_round VARIANT N FILE: N pings at 20 ms after 2 warm-up pings, the RTTs appended to FILE; the outliers (over
# 1.5 x the round's median + 1 ms) by sequence number to stderr: a cluster is one event.
ping_round() {
  local d m; d=$(dest "$1")
  gen ha ping -c 2 -i 0.2 -W 2 "$d" >/dev/null 2>&1 || true
  gen ha timeout $(($2 / 10 + 30)) ping -c "$2" -i 0.02 -W 2 "$d" >"$work/ping.out" 2>/dev/null || true
  sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' "$work/ping.out" >>"$3"
  m=$(sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' "$work/ping.out" | med)
  sed -n 's/.*icmp_seq=\([0-9]*\).*time=\([0-9.]*\) ms.*/\1 \2/p' "$work/ping.out" |
    awk -v m="$m" -v v="$1" '$2 > 1.5 * m + 1 { o = o " " $1 ":" $2 } END { if (o != "") print "#   " v " slow pings (seq:ms):" o }' >&2
}
# rtt_stats FILE SENT -> "avg p50 p99 loss%"
rtt_stats() {
  sort -n "$1" | awk -v n="$2" '{ v[NR] = $1; s += $1 }
      END { if (NR == 0) { print "n/a n/a n/a 100"; exit }
            i50 = int(NR * 0.50 + 0.999); i99 = int(NR * 0.99 + 0.999)
            printf "%.3f %.3f %.3f %.0f\n", s / NR, v[i50], v[i99], 100 * (n - NR) / n }'
}

# iperf_once VARIANT -> Mbit/s received (0 on failure)
iperf_once() {
  local d; d=$(dest "$1")
  gen ha timeout $((SECS + 20)) iperf3 -c "$d" -t "$SECS" -O 1 -J --connect-timeout 3000 2>/dev/null |
    jq -r '(.end.sum_received.bits_per_second // 0) / 1e6 | floor' 2>/dev/null || echo 0
}

VARIANTS="native vngate $WGS"
# measure PHASE: fills R_<phase>_<variant>_{tput,best,rtt,cpu} and prints progress to stderr.
measure() {
  local ph=$1 v r t0 t1 c0 c1 pl
  declare -gA TP CPU_T CPU_W RTT
  # the pings in RUNS rounds, alternating variants, so that a noisy moment on the machine hits them all alike
  local per=$(((PINGS + RUNS - 1) / RUNS))
  for v in $VARIANTS; do : >"$work/rtt-$ph-$v"; done
  for r in $(seq "$RUNS"); do
    for v in $VARIANTS; do ping_round "$v" "$per" "$work/rtt-$ph-$v"; done
  done
  for v in $VARIANTS; do
    RTT[$ph.$v]=$(rtt_stats "$work/rtt-$ph-$v" $((per * RUNS)))
    log "$ph $v rtt avg/p50/p99/loss%: ${RTT[$ph.$v]}"
  done
  for v in $VARIANTS; do TP[$ph.$v]=""; CPU_T[$ph.$v]=0; CPU_W[$ph.$v]=0; done
  for r in $(seq "$RUNS"); do
    for v in $VARIANTS; do
      pl=$(gw_pids "$v")
      # shellcheck disable=SC2086
      c0=$([ -n "$pl" ] && ticks $pl || echo 0); t0=$(date +%s%N)
      local mb; mb=$(iperf_once "$v")
      # shellcheck disable=SC2086
      c1=$([ -n "$pl" ] && ticks $pl || echo 0); t1=$(date +%s%N)
      TP[$ph.$v]="${TP[$ph.$v]} $mb"
      CPU_T[$ph.$v]=$((CPU_T[$ph.$v] + c1 - c0)); CPU_W[$ph.$v]=$((CPU_W[$ph.$v] + (t1 - t0) / 1000000))
      log "$ph run $r $v: $mb Mbit/s"
    done
  done
}

best() { tr ' ' '\n' | grep . | sort -n | tail -n 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "n/a" || b == "n/a") print "n/a"; else printf "%.2f", a / b }'; }

report() {
  local ph=$1 title=$2 v m b rt cpu
  declare -A M A P50 P99
  echo
  echo "$title"
  printf '%-12s %9s %9s %6s  %9s %9s %9s %5s  %5s\n' variant "Mbit/s" best cpu% "rtt avg" p50 p99 loss% runs
  for v in $VARIANTS; do
    m=$(echo "${TP[$ph.$v]}" | med); b=$(echo "${TP[$ph.$v]}" | best)
    M[$v]=$m
    read -r A[$v] P50[$v] P99[$v] loss <<<"${RTT[$ph.$v]}"
    cpu="-"
    [ "$v" != native ] && cpu=$(awk -v t="${CPU_T[$ph.$v]}" -v w="${CPU_W[$ph.$v]}" -v hz="$HZ" \
      'BEGIN { if (w > 0) printf "%.0f", 100 * t / hz / (w / 1000); else print "n/a" }')
    printf '%-12s %9s %9s %6s  %9s %9s %9s %5s  %s\n' "$v" "$m" "$b" "$cpu" "${A[$v]}" "${P50[$v]}" "${P99[$v]}" \
      "$loss" "$(echo "${TP[$ph.$v]}" | xargs)"
  done
  printf '%-24s %9s %9s %9s %9s\n' ratio "Mbit/s" "rtt avg" p50 p99
  local pair x y
  for pair in vngate/native $(for w in $WGS; do echo "$w/native"; done) $(for w in $WGS; do echo "vngate/$w"; done); do
    x=${pair%/*}; y=${pair#*/}
    printf '%-24s %9s %9s %9s %9s\n' "$pair" "$(ratio "${M[$x]}" "${M[$y]}")" "$(ratio "${A[$x]}" "${A[$y]}")" \
      "$(ratio "${P50[$x]}" "${P50[$y]}")" "$(ratio "${P99[$x]}" "${P99[$y]}")"
  done
}

# wanem_on: put vn-wanem between ra's WAN port and the WAN bridge.
wanem_on() {
  ip -n "$P-wan" link set "$P-wra" nomaster
  ip -n "$P-wan" link add "$P-qa" type veth peer name "$P-qb"
  ip -n "$P-wan" link set "$P-qb" master br0 up
  ip -n "$P-wan" link set "$P-qa" up
  bg wan "$GEN_CPU" "$work/wanem.log" "$WANEM_BIN" --a "$P-wra" --b "$P-qa" --delay "$DELAY" --seed 1 --queue 32768
  wanem_pid=$bg_pid
  local i
  for i in $(seq 50); do grep -q 'vn-wanem: ready' "$work/wanem.log" && return 0; sleep 0.1; done
  die "vn-wanem did not start: $(cat "$work/wanem.log")"
}

# ------------------------------------------------------------------------------------------------ run
[ -x "$VNGATE_BIN" ] || die "no $VNGATE_BIN"
load=$(cut -d' ' -f1-3 /proc/loadavg)
setup
for w in $WGS; do setup_wireguard "$w"; done
bg ha "$GEN_CPU" "$work/iperf-a.log" iperf3 -s
bg hb "$GEN_CPU" "$work/iperf-b.log" iperf3 -s
log "waiting for the overlay to settle, then DHCP"
sleep 4
lease a
lease b
log "vngate leases: A=$VN_a B=$VN_b"
for v in $VARIANTS; do
  gen ha ping -c 2 -W 2 "$(dest "$v")" >/dev/null 2>&1 || die "$v: no ping from A to $(dest "$v")"
done

measure lan
if [ "$DELAY" != 0 ]; then
  wanem_on
  sleep 1
  measure wan
  kill -USR1 "$wanem_pid"
  sleep 0.3
fi

stripped=$(mktemp "$work/vngate.XXXX")
strip -o "$stripped" "$VNGATE_BIN"
size=$(stat -c %s "$stripped")
wgver=$(for w in $WGS; do "$(wg_bin "$w")" --version 2>&1 | head -n 1; done | paste -sd ';' | sed 's/;/; /g')
{
  echo "vngate host-to-host throughput and RTT, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) cores"
  echo "load average before the run: $load (other work on this shared machine skews figures)"
  echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown); iperf3 ${SECS}s (first second omitted) x $RUNS runs per variant, alternating; $PINGS pings at 20 ms in $RUNS alternating rounds"
  echo "pinning: iperf3/ping on core $GEN_CPU; vngate routers + storage daemons and the WireGuard daemons on core $SRV_CPU; nice $NICE"
  echo "wireguard: $wgver (userspace, TUN, both ends on one core; boringtun with its default 4 threads)"
  echo "hosts' MTU 1380 (vngate's VN MTU) in every variant; WireGuard interfaces' MTU 1420"
  echo "vngate release binary, stripped: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }') MiB), $(uname -m)"
  if [ "$PLAIN" = 1 ]; then
    echo "NOTE: BENCH_PLAIN=1: vngate ran without certificates (P2's plaintext overlay); WireGuard encrypts and"
    echo "      authenticates every packet (ChaCha20-Poly1305), so it does more work per packet than vngate here."
  else
    echo "vngate: every node provisioned by hostctl; frames cross in Noise IK sessions (ChaCha20-Poly1305),"
    echo "      as WireGuard's do: $(cat "$work"/r?.log | grep -c 'the overlay is secured') of 2 routers logged a secured overlay"
  fi
  report lan "WAN: direct bridge (0 ms)"
  if [ "$DELAY" != 0 ]; then
    report wan "WAN: $DELAY one-way delay on site A's WAN port (vn-wanem, both directions; RTT +2x$DELAY)"
    echo "  vn-wanem counters over the delayed part (all variants):"
    grep -E '^vn-wanem (exit|stats|counters)|received=' "$work/wanem.log" | tail -n 2 | sed 's/^/    /'
  fi
  echo
  echo "  Mbit/s: median iperf3 receiver rate (A->B), best: the highest run; cpu%: the two gateway processes'"
  echo "  CPU over the iperf3 runs' wall time (100 = one core; native forwarding is in the kernel); rtt in ms."
  echo "  Both ends of each tunnel (ra's and rb's daemon) share core $SRV_CPU, so a tunnel's cpu% near 100 means"
  echo "  that core was the limit (one gateway alone would have had it to itself). ping prints whole ms above 100 ms."
  echo "  ratios: throughput >1 is better than the reference, RTT <1 is better."
} | if [ -n "$OUT" ]; then mkdir -p "$(dirname "$OUT")"; tee "$OUT"; else cat; fi
