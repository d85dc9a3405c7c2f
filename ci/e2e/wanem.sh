#!/usr/bin/env bash
# End-to-end test of vn-wanem, the userspace WAN link emulator (ci/wanem): two end namespaces on one subnet,
# bridged at L2 by vn-wanem running in a third ("wan") namespace, measured with ping and iperf3:
#   - 0 ms / 0 %: every ping passes with sub-millisecond RTT;
#   - RTT = 2 x one-way delay (also asymmetric), jitter widens it within its band;
#   - loss lands in a binomial band, equals the emulator's own count, and repeats exactly with the same seed;
#   - iperf3 TCP runs through it: with the kernel's segmentation offload (64 KiB super-frames, unfinished
#     checksums carried in the virtio-net header), with MTU-sized frames under a rate limit, and with loss;
#   - a UDP flood into a rate limit fills the bounded queue, which drops and counts.
# Run as root. Namespaces are named wm<pid>-{a,b,w} and deleted on exit. Last line: "<n> passed, <m> failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "wanem.sh needs root (network namespaces)" >&2; exit 2; }
for t in ip ping iperf3 timeout; do command -v $t >/dev/null || { echo "wanem.sh: $t missing" >&2; exit 2; }; done

P=wm$$
A=$P-a B=$P-b W=$P-w
IPA=10.77.0.1 IPB=10.77.0.2
TMP=$(mktemp -d /tmp/wanem.XXXXXX)
BIN=${WANEM_BIN:-target/debug/vn-wanem}
EM=
pass=0 fail=0 failed=()

cleanup() {
  [ -n "$EM" ] && kill -TERM "$EM" 2>/dev/null && wait "$EM" 2>/dev/null
  for n in $A $B $W; do
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill "$pid" 2>/dev/null; done
    ip netns del "$n" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); echo "PASS $*"; }
ko() { fail=$((fail + 1)); failed+=("$1"); echo "FAIL $*"; }
# check NAME DETAIL CONDITION...: the condition is evaluated by awk (floating point), e.g. "x >= 35 && x <= 60".
check() {
  local name=$1 detail=$2; shift 2
  if awk "BEGIN { exit !($*) }" </dev/null; then ok "$name: $detail"; else ko "$name" "$detail (wanted $*)"; fi
}

[ -n "${WANEM_BIN:-}" ] || cargo build -q -p vn-wanem || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

# --- topology: a:ea <-> w:wa [vn-wanem] w:wb <-> b:eb ---------------------------------------------------------
for n in $A $B $W; do
  ip netns add "$n" || { echo "0 passed, 1 failed"; exit 1; }
  ip -n "$n" link set lo up
  # No IPv6: no router solicitations or DAD frames on the link, so the only frames are the test's own.
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add ea netns $A type veth peer name wa netns $W
ip link add eb netns $B type veth peer name wb netns $W
ip -n $A addr add $IPA/24 dev ea
ip -n $B addr add $IPB/24 dev eb
for x in "$A ea" "$B eb" "$W wa" "$W wb"; do set -- $x; ip -n "$1" link set "$2" up; done
# Static neighbours: no ARP through the lossy link, so loss counts only pings and repeats exactly per seed.
MACA=$(ip -n $A -o link show ea | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
MACB=$(ip -n $B -o link show eb | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
ip -n $A neigh replace $IPB lladdr "$MACB" dev ea nud permanent
ip -n $B neigh replace $IPA lladdr "$MACA" dev eb nud permanent

LOG=$TMP/wanem.log
# start ARGS...: runs the emulator in the wan namespace and waits for it to be ready.
start() {
  ip netns exec $W timeout 300 "$BIN" --a wa --b wb "$@" >"$LOG" 2>&1 &
  EM=$!
  for _ in $(seq 50); do grep -q 'vn-wanem: ready' "$LOG" && return 0; sleep 0.1; done
  echo "vn-wanem did not start:"; cat "$LOG"; return 1
}
# stop [SIGNAL]: stops it (TERM by default) and shows its counters.
stop() {
  kill -"${1:-TERM}" "$EM"; wait "$EM"; local rc=$?; EM=
  grep -E '^vn-wanem (exit|:)|^  ' "$LOG" | sed 's/^/    /'
  [ "$rc" = 0 ] || ko emulator-exit "vn-wanem exited with $rc"
}
# counter DIR NAME: a counter from the exit report, DIR is a->b or b->a.
counter() { grep "^vn-wanem exit: $1 " "$LOG" | grep -o " $2=[0-9]*" | cut -d= -f2; }

# ping_stats COUNT INTERVAL: sets TX RX MIN AVG MAX MDEV P90 (ms) from ping A -> B. P90, the 90th percentile of
# the replies' RTTs, bounds the high side: on a busy 2-core machine a single reply can be late by tens of ms
# through no fault of the emulator (seen here under a load average of 5).
ping_stats() {
  local out
  out=$(ip netns exec $A timeout 60 ping -n -c "$1" -i "$2" -W 1 $IPB 2>&1)
  TX=$(echo "$out" | grep -o '[0-9]* packets transmitted' | cut -d' ' -f1)
  RX=$(echo "$out" | grep -o '[0-9]* received' | cut -d' ' -f1)
  read -r MIN AVG MAX MDEV < <(echo "$out" | grep -o '= [0-9./]* ms' | tr '/' ' ' | awk '{print $2, $3, $4, $5}')
  P90=$(echo "$out" | grep -o 'time=[0-9.]*' | cut -d= -f2 | sort -g | awk '{v[NR]=$1} END {i=int(NR*0.9+0.999); if (i<1) i=1; print (NR ? v[i] : -1)}')
  : "${TX:=0}" "${RX:=0}" "${MIN:=-1}" "${AVG:=-1}" "${MAX:=-1}" "${MDEV:=-1}" "${P90:=-1}"
  echo "    ping: $RX/$TX received, rtt min/avg/max/mdev = $MIN/$AVG/$MAX/$MDEV ms, p90 $P90 ms"
}

# iperf3_mbit ARGS...: runs a client A -> B for the given args, prints and sets MBIT (receiver side).
iperf3_mbit() {
  ip netns exec $B timeout 30 iperf3 -s -1 -p 5201 >"$TMP/iperf3-s.log" 2>&1 &
  local srv=$!
  for _ in $(seq 50); do ip netns exec $B ss -ltn 2>/dev/null | grep -q ':5201 ' && break; sleep 0.1; done
  local out
  out=$(ip netns exec $A timeout 30 iperf3 -c $IPB -p 5201 -f m "$@" 2>&1)
  wait "$srv" 2>/dev/null
  MBIT=$(echo "$out" | grep -E ' receiver$' | tail -1 | grep -o '[0-9.]* Mbits/sec' | cut -d' ' -f1)
  : "${MBIT:=0}"
  echo "$out" | grep -E 'sender$|receiver$' | sed 's/^/    /'
}

echo "=== 1. transparent: 0 ms, 0 %"
start --delay 0 --loss 0 --seed 1
ping_stats 200 0.01
# $EM is timeout(1), which would not pass SIGUSR1 on: signal the emulator itself.
for pid in $(ip netns pids $W); do [ "$(cat /proc/$pid/comm 2>/dev/null)" = vn-wanem ] && kill -USR1 "$pid"; done
sleep 0.3
u=$(grep -c '^vn-wanem counters: ' "$LOG")
stop
check counters-on-usr1 "$u counter lines on SIGUSR1" "$u == 2"
check transparent-ping "$RX/$TX received" "$TX == 200 && $RX == 200"
check transparent-rtt "avg ${AVG} ms, p90 ${P90} ms, max ${MAX} ms" "$AVG >= 0 && $AVG < 5 && $P90 < 10"
f=$(counter 'a->b' forwarded); d=$(counter 'a->b' dropped_loss)
check transparent-counters "a->b forwarded=$f dropped_loss=$d" "$f == 200 && $d == 0"

echo "=== 2. delay 20 ms one way"
start --delay 20ms --seed 1
ping_stats 30 0.05
stop
check delay-rtt "rtt min/avg/p90 = $MIN/$AVG/$P90 ms (2 x 20 ms)" "$RX == 30 && $MIN >= 40 && $AVG >= 35 && $AVG <= 60 && $P90 <= 45"

echo "=== 3. asymmetric delay 30 ms a->b, 5 ms b->a"
start --delay 30ms/5ms --seed 1
ping_stats 20 0.05
stop
check asym-rtt "rtt min/avg/p90 = $MIN/$AVG/$P90 ms (30 + 5 ms)" "$RX == 20 && $MIN >= 35 && $AVG <= 50 && $P90 <= 40"

echo "=== 4. delay 20 ms, jitter 5 ms"
start --delay 20ms --jitter 5ms --seed 3
ping_stats 100 0.03
stop
# The sum of two uniform draws on [15, 25] ms: triangular on [30, 50], mean 40, sd 4.1 ms, p90 45.5 ms.
check jitter-rtt "rtt min/avg/p90/max/mdev = $MIN/$AVG/$P90/$MAX/$MDEV ms (30..50 ms)" \
  "$RX == 100 && $MIN >= 30 && $AVG >= 37 && $AVG <= 45 && $P90 <= 50 && $MDEV >= 2.5 && $MDEV <= 8"

echo "=== 5. the design's WAN: 50 ms one way, 5 ms jitter, 1 % loss"
start --delay 50ms --jitter 5ms --loss 1% --seed 5
ping_stats 50 0.02
stop
check wan-50ms "$RX/$TX received, rtt min/avg/p90/max = $MIN/$AVG/$P90/$MAX ms (90..110 ms)" \
  "$RX >= 44 && $MIN >= 90 && $AVG >= 95 && $AVG <= 110 && $P90 <= 115"

echo "=== 6. loss 10 % a->b, 300 pings, seed 42"
start --loss 10%/0 --seed 42
ping_stats 300 0.01
stop SIGINT
lost=$((TX - RX)); el=$(counter 'a->b' dropped_loss); eb=$(counter 'b->a' dropped_loss)
# Binomial(300, 0.1): mean 30, sd 5.2; the band is about +-3.5 sd.
check loss-band "lost $lost of $TX ($(awk "BEGIN{printf \"%.1f\", 100*$lost/$TX}") %)" "$TX == 300 && $lost >= 12 && $lost <= 48"
check loss-counted "emulator a->b dropped_loss=$el b->a dropped_loss=$eb (printed on SIGINT)" "$el == $lost && $eb == 0"
start --loss 10%/0 --seed 42
ping_stats 300 0.01
stop
check loss-seeded "same seed again: lost $((TX - RX)) (first run $lost)" "$((TX - RX)) == $lost"

echo "=== 7. loss 100 %"
start --loss 100% --seed 1
ping_stats 5 0.1
stop
check loss-all "$RX/$TX received" "$TX == 5 && $RX == 0"

echo "=== 8. iperf3 TCP, offloads on (64 KiB super-frames, unfinished checksums), 0 ms"
start --seed 1
iperf3_mbit -t 3
stop
check tcp-offload "${MBIT} Mbit/s" "$MBIT >= 50"
d=$(( $(counter 'a->b' dropped_queue) + $(counter 'a->b' tx_errors) ))
check tcp-offload-clean "a->b dropped_queue + tx_errors = $d" "$d == 0"

# From here on the ends send MTU-sized frames (one segment per GSO frame), so rate and loss act per wire frame.
ip -n $A link set ea gso_max_segs 1
ip -n $B link set eb gso_max_segs 1

echo "=== 9. iperf3 TCP through 10 ms, rate 40 mbit"
start --delay 10ms --rate 40mbit --seed 1
iperf3_mbit -t 4
stop
check tcp-rate "${MBIT} Mbit/s through a 40 mbit link" "$MBIT >= 15 && $MBIT <= 41"

echo "=== 10. iperf3 TCP through 20 ms, 1 % loss"
start --delay 20ms --loss 1% --seed 7
iperf3_mbit -t 3
stop
el=$(counter 'a->b' dropped_loss)
check tcp-loss "${MBIT} Mbit/s, emulator dropped $el frames a->b" "$MBIT >= 1 && $el > 0"

echo "=== 11. UDP flood 100 mbit into 10 mbit with a 64-frame queue"
start --rate 10mbit --queue 64 --seed 1
iperf3_mbit -u -b 100M -l 1400 -t 2
stop
dq=$(counter 'a->b' dropped_queue)
check queue-bound "dropped_queue=$dq, received ${MBIT} Mbit/s" "$dq > 1000 && $MBIT <= 10.5 && $MBIT >= 7"

[ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
