# shellcheck shell=bash
# Helpers for vngate's network-namespace tests (sourced by ci/e2e/*.sh and ci/demo.sh).
#
# A run owns every namespace whose name starts with $VT_PREFIX (vt<pid> by default) and one work directory;
# vt_cleanup (armed by vt_init as an EXIT trap) kills what the run started and deletes both, on success or failure.
#
# A "host" is a named network namespace plus a long-lived holder process that owns its own UTS and mount
# namespaces: its hostname, a tmpfs /run, its own DHCP lease directories and /etc/resolv.conf (bind mounts made
# inside the mount namespace, so the machine's files are never touched). vt_host_exec enters all three.

VT_PREFIX=${VT_PREFIX:-vt$$}
VT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VT_PASSED=0
VT_FAILED=0
VT_PIDS=()
VT_KEEP=${VT_KEEP:-0}

vt_log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
vt_die() { vt_log "FATAL: $*"; exit 2; }

# vt_init: work directory, cleanup trap, root check.
vt_init() {
    [ "$(id -u)" = 0 ] || vt_die "needs root (network namespaces)"
    for t in ip unshare nsenter timeout tcpdump; do
        command -v "$t" >/dev/null || vt_die "missing tool: $t"
    done
    VT_WORK=$(mktemp -d "/tmp/${VT_PREFIX}.XXXXXX")
    trap vt_cleanup EXIT
    trap 'exit 130' INT TERM
    vt_log "run prefix $VT_PREFIX, work dir $VT_WORK"
}

# vt_bg CMD...: start CMD in the background and remember its pid for cleanup. Sets VT_LAST_PID.
vt_bg() {
    "$@" &
    VT_LAST_PID=$!
    VT_PIDS+=("$VT_LAST_PID")
}

vt_cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ "$VT_KEEP" = 1 ]; then
        vt_log "VT_KEEP=1: leaving namespaces ${VT_PREFIX}-* and $VT_WORK; remove with: VT_PREFIX=$VT_PREFIX $0 --cleanup"
        return "$rc"
    fi
    local p
    for p in "${VT_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    sleep 0.3
    for p in "${VT_PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null
    done
    vt_remove_namespaces
    if [ -n "${VT_WORK:-}" ] && [ -d "$VT_WORK" ]; then
        if [ "$rc" != 0 ] && [ "${VT_KEEP_LOGS:-1}" = 1 ]; then
            vt_log "logs kept in $VT_WORK"
        else
            rm -rf "$VT_WORK"
        fi
    fi
    return "$rc"
}

# vt_remove_namespaces: kill every process inside this run's namespaces, then delete them.
vt_remove_namespaces() {
    local ns pid
    for ns in $(ip netns list | awk '{print $1}' | grep "^${VT_PREFIX}-"); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null
    done
}

vt_ns() { printf '%s-%s' "$VT_PREFIX" "$1"; }

# vt_ns_add SHORT: a fresh network namespace with loopback up.
vt_ns_add() {
    local ns
    ns=$(vt_ns "$1")
    ip netns add "$ns" || vt_die "ip netns add $ns"
    ip -n "$ns" link set lo up
}

# vt_router_add SHORT TAP: a router namespace with bridge br0 holding a persistent TAP device (the daemon opens
# it and sets it up). The bridge is a plain L2 switch: no address, no IGMP snooping, every port flooded.
vt_router_add() {
    local r tap=$2
    r=$(vt_ns "$1")
    vt_ns_add "$1"
    ip -n "$r" link add br0 type bridge mcast_snooping 0 stp_state 0 forward_delay 0 ||
        vt_die "bridge in $r"
    ip -n "$r" link set br0 up
    ip -n "$r" tuntap add dev "$tap" mode tap || vt_die "tap $tap in $r"
    ip -n "$r" link set "$tap" master br0
}

# vt_host_add SHORT ROUTER HOSTNAME MAC: a host namespace whose eth0 (with MAC) is a veth into ROUTER's br0,
# and its holder process with its own hostname, /run, lease dirs and resolv.conf.
vt_host_add() {
    local short=$1 router=$2 hn=$3 mac=$4 h r
    h=$(vt_ns "$short")
    r=$(vt_ns "$router")
    vt_ns_add "$short"
    ip -n "$r" link add "p-$short" type veth peer name eth0 netns "$h" || vt_die "veth for $short"
    ip -n "$r" link set "p-$short" master br0
    ip -n "$r" link set "p-$short" up
    ip -n "$h" link set eth0 address "$mac"
    ip -n "$h" link set eth0 up
    vt_holder_start "$short" "$hn"
}

# vt_holder_start SHORT HOSTNAME: the holder process of host SHORT inside namespace SHORT (made by vt_host_add,
# or any namespace of this run): its own hostname, /run, lease dirs and resolv.conf; vt_host_exec enters it.
vt_holder_start() {
    local short=$1 hn=$2 h dir
    h=$(vt_ns "$short")
    dir=$VT_WORK/host-$short
    mkdir -p "$dir/dhcp" "$dir/dhcpcd" "$dir/udhcpc"
    : >"$dir/resolv.conf"
    # The holder: enter the netns, make private UTS and mount namespaces, set them up, then sleep; its pid
    # (written before exec) is what vt_host_exec enters.
    vt_bg ip netns exec "$h" unshare --uts --mount --propagation private sh -euc '
        dir=$1; hn=$2
        hostname "$hn"
        mount -t tmpfs -o mode=0755 vt-run /run
        mkdir -p /run/lock
        for d in dhcp dhcpcd udhcpc; do
            if [ -d "/var/lib/$d" ]; then mount --bind "$dir/$d" "/var/lib/$d"; fi
        done
        mount --bind "$dir/resolv.conf" /etc/resolv.conf
        echo $$ >"$dir/holder.pid.tmp"
        mv "$dir/holder.pid.tmp" "$dir/holder.pid"
        exec sleep 86400
    ' vt-holder "$dir" "$hn" </dev/null >>"$dir/holder.log" 2>&1
    local i
    for i in $(seq 50); do
        [ -s "$dir/holder.pid" ] && break
        sleep 0.1
    done
    [ -s "$dir/holder.pid" ] || vt_die "holder of $short did not start"
}

vt_host_dir() { printf '%s/host-%s' "$VT_WORK" "$1"; }

# vt_host_exec SHORT CMD...: run CMD inside host SHORT (its network, UTS and mount namespaces).
vt_host_exec() {
    local short=$1 pid
    shift
    pid=$(cat "$(vt_host_dir "$short")/holder.pid") || vt_die "no host $short"
    nsenter -t "$pid" --net --uts --mount -- "$@"
}

# vt_router_exec SHORT CMD...: run CMD in a router namespace.
vt_router_exec() {
    local r
    r=$(vt_ns "$1")
    shift
    ip netns exec "$r" "$@"
}

# ---- results ----------------------------------------------------------------------------------------------

vt_pass() {
    VT_PASSED=$((VT_PASSED + 1))
    printf 'PASS %s\n' "$*"
}

vt_fail() {
    VT_FAILED=$((VT_FAILED + 1))
    printf 'FAIL %s\n' "$*"
}

# vt_check DESC CMD...: PASS if CMD exits 0, FAIL (with its output) otherwise.
vt_check() {
    local desc=$1 out
    shift
    if out=$("$@" 2>&1); then
        vt_pass "$desc"
    else
        vt_fail "$desc"
        printf '%s\n' "$out" | tail -n 15 | sed 's/^/    | /'
    fi
}

# vt_expect DESC GOT WANT: PASS if equal.
vt_expect() {
    if [ "$2" = "$3" ]; then
        vt_pass "$1 ($2)"
    else
        vt_fail "$1: got '$2', want '$3'"
    fi
}

# vt_summary: the final line, and the exit status.
vt_summary() {
    printf '%d passed, %d failed\n' "$VT_PASSED" "$VT_FAILED"
    [ "$VT_FAILED" = 0 ]
}

# vt_wait_for SECONDS CMD...: retry CMD every 0.2 s until it succeeds or SECONDS pass.
vt_wait_for() {
    local secs=$1 end
    shift
    end=$(($(date +%s%N) / 1000000 + secs * 1000))
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ $(($(date +%s%N) / 1000000)) -ge "$end" ] && return 1
        sleep 0.2
    done
}

# vt_usable_lease IP: IP is a host address of the test VN 10.250.0.0/16 (not the network, .1, .2 or broadcast).
vt_usable_lease() {
    [[ "$1" =~ ^10\.250\.[0-9]+\.[0-9]+$ ]] && [ "$1" != 10.250.0.0 ] && [ "$1" != 10.250.0.1 ] &&
        [ "$1" != 10.250.0.2 ] && [ "$1" != 10.250.255.255 ]
}

# vt_has_addr HOST ADDR/PREFIX: the host has that address on its eth0.
vt_has_addr() { vt_host_exec "$1" ip -4 addr show dev eth0 | grep -q "inet $2 "; }

# ---- the vngate daemon -----------------------------------------------------------------------------------

# vt_build: the binaries this test needs (vngate, dhcp-probe), debug profile unless VT_PROFILE=release (the same
# build ci/test.sh has just made, so this is quick there). Sets VNGATE and DHCP_PROBE unless already set.
vt_build() {
    local target=${CARGO_TARGET_DIR:-$VT_ROOT/target} profile=${VT_PROFILE:-debug} flag=
    [ "$profile" = release ] && flag=--release
    if [ -z "${VNGATE:-}" ] || [ -z "${DHCP_PROBE:-}" ]; then
        vt_log "building vngate and dhcp-probe (cargo build $flag)"
        # shellcheck disable=SC2086
        (cd "$VT_ROOT" && cargo build $flag --quiet -p vngate -p hostctl -p vn-citools) || vt_die "cargo build failed"
    fi
    HOSTCTL=${HOSTCTL:-$target/$profile/hostctl}
    VNGATE=${VNGATE:-$target/$profile/vngate}
    DHCP_PROBE=${DHCP_PROBE:-$target/$profile/dhcp-probe}
    [ -x "$VNGATE" ] || vt_die "no vngate binary at $VNGATE"
    [ -x "$DHCP_PROBE" ] || vt_die "no dhcp-probe binary at $DHCP_PROBE"
}

# vt_namespace_toml [EXTRA namespace lines...]: the [namespace] section every node of the test VN shares.
vt_namespace_toml() {
    echo '[namespace]'
    echo "id = \"${VT_NS_ID:-00112233445566778899aabbccddeeff}\""
    echo 'name = "demo"'
    echo 'subnet = "10.250.0.0/16"'
    echo 'lease_time = 3600'
    echo 'mtu = 1380'
    local l
    for l in "$@"; do echo "$l"; done
}

# vt_write_config FILE TAP STATE_DIR [EXTRA namespace lines...]: a daemon config for the test namespace.
vt_write_config() {
    local file=$1 tap=$2 state=$3
    shift 3
    mkdir -p "$state"
    {
        vt_namespace_toml "$@"
        echo
        echo '[daemon]'
        echo "tap = \"$tap\""
        echo "state_dir = \"$state\""
    } >"$file"
}

# vt_daemon_start ROUTER CONFIG LOG: start vngate in ROUTER's namespace; sets VT_DAEMON_PID.
vt_daemon_start() {
    local r
    r=$(vt_ns "$1")
    vt_bg ip netns exec "$r" env RUST_LOG="${RUST_LOG:-info}" "$VNGATE" --config "$2" </dev/null >>"$3" 2>&1
    VT_DAEMON_PID=$VT_LAST_PID
}

# vt_daemon_stop SIGNAL [SECONDS]: signal the daemon and wait (bounded) for it; returns its exit status,
# or 124 if it did not exit in time (then it is killed).
vt_daemon_stop() {
    local sig=$1 secs=${2:-5} i rc
    kill -"$sig" "$VT_DAEMON_PID" 2>/dev/null
    for i in $(seq $((secs * 10))); do
        kill -0 "$VT_DAEMON_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$VT_DAEMON_PID" 2>/dev/null; then
        kill -KILL "$VT_DAEMON_PID" 2>/dev/null
        { wait "$VT_DAEMON_PID"; } 2>/dev/null
        return 124
    fi
    { wait "$VT_DAEMON_PID"; } 2>/dev/null
    rc=$?
    return "$rc"
}

# ---- DHCP clients -----------------------------------------------------------------------------------------

VT_UDHCPC_SCRIPT=$VT_ROOT/ci/e2e/udhcpc.script

# vt_start_udhcpc HOST HOSTNAME [IFACE]: busybox udhcpc (on eth0 unless IFACE) in the background; its script
# records each event's environment in /run/udhcpc/<event>.env and the event sequence in /run/udhcpc/events
# (inside the host).
vt_start_udhcpc() {
    vt_host_exec "$1" timeout 20 busybox udhcpc -i "${3:-eth0}" -b -t 5 -T 2 -A 3 -p /run/udhcpc.pid -s "$VT_UDHCPC_SCRIPT" \
        -x "hostname:$2" -O mtu -O domain -O dns -O subnet \
        >>"$(vt_host_dir "$1")/udhcpc.log" 2>&1
}

# vt_start_dhclient HOST HOSTNAME: ISC dhclient with its own config and lease file.
vt_start_dhclient() {
    local dir
    dir=$(vt_host_dir "$1")
    cat >"$dir/dhclient.conf" <<EOF
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
send host-name "$2";
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, interface-mtu,
        rfc3442-classless-static-routes;
timeout 20;
retry 5;
EOF
    vt_host_exec "$1" timeout 30 dhclient -4 -v -cf "$dir/dhclient.conf" -pf /run/dhclient.pid \
        -lf /var/lib/dhcp/dhclient.eth0.leases eth0 >>"$dir/dhclient.log" 2>&1
}

# vt_start_dhcpcd HOST HOSTNAME: dhcpcd (IPv4 only, its own config) in the background once bound.
vt_start_dhcpcd() {
    local dir
    dir=$(vt_host_dir "$1")
    cat >"$dir/dhcpcd.conf" <<EOF
hostname $2
duid
persistent
option domain_name_servers, domain_name, interface_mtu, subnet_mask
require dhcp_server_identifier
noipv4ll
noipv6rs
ipv4only
nohook hostname, ntp.conf, timesyncd.conf
EOF
    vt_host_exec "$1" timeout 40 dhcpcd -4 -f "$dir/dhcpcd.conf" -t 30 eth0 >>"$dir/dhcpcd.log" 2>&1
}

# ---- leases as each client recorded them ------------------------------------------------------------------
# vt_lease HOST CLIENT FIELD: FIELD (ip, mask, dns, mtu, domain) of the lease that CLIENT (udhcpc, dhclient,
# dhcpcd) stored inside HOST — read from the client's own record, not from the link.
vt_lease() {
    local host=$1 client=$2 field=$3
    case $client in
    udhcpc)
        local ev=bound
        vt_host_exec "$host" test -f /run/udhcpc/renew.env &&
            [ "$(vt_host_exec "$host" tail -n 1 /run/udhcpc/events | cut -d' ' -f1)" = renew ] && ev=renew
        local var
        case $field in ip) var=ip ;; mask) var=subnet ;; dns) var=dns ;; mtu) var=mtu ;; domain) var=domain ;; esac
        vt_host_exec "$host" cat "/run/udhcpc/$ev.env" 2>/dev/null | sed -n "s/^$var=//p" | sed 's/ *$//'
        ;;
    dhclient)
        local opt
        case $field in
        ip) opt='fixed-address' ;; mask) opt='option subnet-mask' ;; dns) opt='option domain-name-servers' ;;
        mtu) opt='option interface-mtu' ;; domain) opt='option domain-name' ;;
        esac
        # the last lease block of the lease file
        vt_host_exec "$host" cat /var/lib/dhcp/dhclient.eth0.leases 2>/dev/null |
            awk -v opt="$opt" '
                /^lease \{/ { val = "" }
                { line = $0; sub(/^[ \t]+/, "", line) }
                index(line, opt " ") == 1 { v = substr(line, length(opt) + 2); sub(/;$/, "", v); gsub(/"/, "", v); val = v }
                /^\}/ { last = val }
                END { print last }'
        ;;
    dhcpcd)
        local var
        case $field in
        ip) var=ip_address ;; mask) var=subnet_mask ;; dns) var=domain_name_servers ;;
        mtu) var=interface_mtu ;; domain) var=domain_name ;;
        esac
        vt_host_exec "$host" dhcpcd -4 -U eth0 2>/dev/null | sed -n "s/^$var=//p" | tr -d "'"
        ;;
    esac
}

# vt_cname IP: the VN's IP-derived name label (10.250.5.5 -> C250005005).
vt_cname() {
    local IFS=.
    # shellcheck disable=SC2086
    set -- $1
    printf 'C%03d%03d%03d' "$2" "$3" "$4"
}

# vt_dig HOST ARGS...: dig at the VN's resolver from HOST, short answers only, bounded.
vt_dig() {
    local host=$1
    shift
    vt_host_exec "$host" dig @10.250.0.1 +short +time=2 +tries=2 "$@" 2>/dev/null
}

# ---- the one-site topology (ci/e2e/one-site.sh and ci/demo.sh) --------------------------------------------
# Router namespace "r" (bridge br0, TAP vn0, vngate), hosts a/b/c with hostnames alpha/bravo/charlie running
# udhcpc, dhclient and dhcpcd.
VT_HOSTS=(a b c)
declare -A VT_HOSTNAME=([a]=alpha [b]=bravo [c]=charlie)
declare -A VT_CLIENT=([a]=udhcpc [b]=dhclient [c]=dhcpcd)
declare -A VT_MAC=([a]=02:00:00:0a:00:01 [b]=02:00:00:0b:00:02 [c]=02:00:00:0c:00:03)
VT_DOMAIN=demo.home.arpa

# vt_tap_ready ROUTER TAP: the daemon holds the TAP open and has set it up.
vt_tap_ready() {
    ip -n "$(vt_ns "$1")" link show "$2" 2>/dev/null | grep -q 'LOWER_UP'
}

# vt_site_up: topology, config, daemon; returns non-zero if the daemon did not come up.
vt_site_up() {
    vt_router_add r vn0
    local h
    for h in "${VT_HOSTS[@]}"; do
        vt_host_add "$h" r "${VT_HOSTNAME[$h]}" "${VT_MAC[$h]}"
    done
    VT_CONF=$VT_WORK/site.toml
    VT_STATE=$VT_WORK/state
    VT_DLOG=$VT_WORK/vngate.log
    vt_write_config "$VT_CONF" vn0 "$VT_STATE"
    vt_daemon_start r "$VT_CONF" "$VT_DLOG"
    vt_wait_for 10 vt_tap_ready r vn0
}

# vt_clients_up: the three clients, started together; waits (bounded) for all of them.
vt_clients_up() {
    local h pids=()
    for h in "${VT_HOSTS[@]}"; do
        "vt_start_${VT_CLIENT[$h]}" "$h" "${VT_HOSTNAME[$h]}" &
        pids+=($!)
    done
    for h in "${pids[@]}"; do wait "$h"; done
}

# ---- results that cannot run yet --------------------------------------------------------------------------

VT_SKIPPED=0
# vt_skip DESC: a check that this run cannot make (printed, counted apart; neither a pass nor a failure).
vt_skip() {
    VT_SKIPPED=$((VT_SKIPPED + 1))
    printf 'SKIP %s\n' "$*"
}

# ---- renewing a lease with each real client ---------------------------------------------------------------
# vt_renew HOST CLIENT HOSTNAME: make CLIENT renew its lease and wait (bounded, 20 s) until the client itself
# recorded a new ACK: udhcpc's script logs a "renew" event (SIGUSR1), dhclient restarted (INIT-REBOOT from its
# lease file, RFC 2131 §3.2; it has no renew signal) appends a lease block, dhcpcd -n rewrites its lease file.
# The caller compares the address (vt_lease) before and after.
vt_renew() {
    local h=$1 c=$2 hn=$3 dir n
    dir=$(vt_host_dir "$h")
    case $c in
    udhcpc)
        n=$(vt_host_exec "$h" cat /run/udhcpc/events | wc -l)
        vt_host_exec "$h" sh -c 'kill -USR1 "$(cat /run/udhcpc.pid)"' || return 1
        vt_wait_for 20 vt_udhcpc_renewed "$h" "$n"
        ;;
    dhclient)
        n=$(grep -c '^lease {' "$dir/dhcp/dhclient.eth0.leases" 2>/dev/null)
        vt_host_exec "$h" sh -c 'p=$(cat /run/dhclient.pid) && kill -TERM "$p" &&
            for i in $(seq 50); do kill -0 "$p" 2>/dev/null || exit 0; sleep 0.1; done; exit 1' || return 1
        vt_start_dhclient "$h" "$hn"
        vt_wait_for 20 sh -c "[ \$(grep -c '^lease {' '$dir/dhcp/dhclient.eth0.leases') -gt ${n:-0} ]"
        ;;
    dhcpcd)
        n=$(cat "$dir"/dhcpcd/*.lease* 2>/dev/null | cksum)
        local t0
        t0=$(date +%s)
        vt_host_exec "$h" timeout 10 dhcpcd -4 -n eth0 >>"$dir/dhcpcd.log" 2>&1
        vt_wait_for 20 sh -c "f=\$(ls -t '$dir'/dhcpcd/*.lease* 2>/dev/null | head -n 1) && [ -n \"\$f\" ] &&
            [ \$(stat -c %Y \"\$f\") -ge $t0 ]"
        ;;
    *) return 1 ;;
    esac
}

vt_udhcpc_renewed() {
    [ "$(vt_host_exec "$1" cat /run/udhcpc/events | wc -l)" -gt "$2" ] &&
        vt_host_exec "$1" tail -n 1 /run/udhcpc/events | grep -q '^renew '
}

# ---- two sites on one VN over the overlay (ci/e2e/two-site.sh and ci/demo.sh) ------------------------------
#
#                  s1 10.99.0.11   s2 .12   s3 .13        three standalone storage daemons (no TAP, no LAN)
#                         \          |        /      i1 india 10.99.0.21: interface mode (vt_interface_host_up)
#   ra 10.99.0.1 ------------ wan: bridge wbr ------------ [em-rb: vn-wanem] ------ rb 10.99.0.2
#   br0 + vn0, vngate                                        delay / loss           br0 + vn0, vngate
#    |- a1 alpha   (udhcpc)                                                          |- b1 charlie (dhcpcd)
#    |- a2 bravo   (dhclient)                                                        |- b2 delta   (udhcpc)
#    `- pa         (dhcp-probe)                                                      `- pb         (dhcp-probe)
#
# Site B's WAN link runs through the emulator, so every frame between site B and the rest (router A and the
# storage nodes) takes WAN_DELAY and WAN_LOSS each way; site A and the storage nodes sit on the same switch.
# Every node lists the other four as bootstrap peers; the replica set is all five (two routers, three storage).

VT_WAN_PORT=4789
VT_ROUTERS=(ra rb)
VT_STORAGE=(s1 s2 s3)
declare -A VT_WAN_IP=([ra]=10.99.0.1 [rb]=10.99.0.2 [s1]=10.99.0.11 [s2]=10.99.0.12 [s3]=10.99.0.13 [i1]=10.99.0.21)
declare -A VT_NODE_PID=()
VT_OVERLAY=0

# vt_two_site_topology: the hosts of both sites (replaces the one-site host tables; vt_clients_up and vt_lease
# then work on them). VT_SITE maps a host to its router, VT_PROBE_HOST a router to its dhcp-probe host.
vt_two_site_topology() {
    VT_HOSTS=(a1 a2 b1 b2)
    VT_HOSTNAME=([a1]=alpha [a2]=bravo [b1]=charlie [b2]=delta)
    VT_CLIENT=([a1]=udhcpc [a2]=dhclient [b1]=dhcpcd [b2]=udhcpc)
    VT_MAC=([a1]=02:00:00:a1:00:01 [a2]=02:00:00:a2:00:02 [b1]=02:00:00:b1:00:03 [b2]=02:00:00:b2:00:04)
    declare -gA VT_SITE=([a1]=ra [a2]=ra [b1]=rb [b2]=rb [pa]=ra [pb]=rb [i1]=i1)
    VT_HOSTNAME[i1]=india
    VT_CLIENT[i1]=udhcpc
    declare -gA VT_PROBE_HOST=([ra]=pa [rb]=pb)
}

# vt_build_wanem: the link emulator binary (VN_WANEM, built unless set).
vt_build_wanem() {
    local target=${CARGO_TARGET_DIR:-$VT_ROOT/target} profile=${VT_PROFILE:-debug} flag=
    [ "$profile" = release ] && flag=--release
    if [ -z "${VN_WANEM:-}" ]; then
        # shellcheck disable=SC2086
        (cd "$VT_ROOT" && cargo build $flag --quiet -p vn-wanem) || vt_die "cargo build -p vn-wanem failed"
    fi
    VN_WANEM=${VN_WANEM:-$target/$profile/vn-wanem}
    [ -x "$VN_WANEM" ] || vt_die "no vn-wanem binary at $VN_WANEM"
}

# vt_no_ipv6 SHORT: IPv6 off in a namespace, so router solicitations and DAD do not cross the WAN.
vt_no_ipv6() {
    ip netns exec "$(vt_ns "$1")" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# vt_wan_add: the "wan" namespace and its bridge wbr (a plain switch, no address).
vt_wan_add() {
    local w
    w=$(vt_ns wan)
    vt_ns_add wan
    vt_no_ipv6 wan
    ip -n "$w" link add wbr type bridge mcast_snooping 0 stp_state 0 forward_delay 0 || vt_die "bridge in $w"
    ip -n "$w" link set wbr up
}

# vt_wan_attach SHORT [emulated]: namespace SHORT gets wan0 (its VT_WAN_IP/24) on the WAN bridge. With
# "emulated", the link runs through namespace em-SHORT, where vt_wanem_start puts vn-wanem between lan
# (SHORT's side) and wan (the bridge's side).
vt_wan_attach() {
    local short=$1 n w e
    n=$(vt_ns "$short")
    w=$(vt_ns wan)
    if [ "${2:-}" = emulated ]; then
        e=$(vt_ns "em-$short")
        vt_ns_add "em-$short"
        vt_no_ipv6 "em-$short"
        ip -n "$n" link add wan0 type veth peer name lan netns "$e" || vt_die "veth $short-em"
        ip -n "$e" link add wan type veth peer name "w-$short" netns "$w" || vt_die "veth em-$short-wan"
        ip -n "$e" link set lan up
        ip -n "$e" link set wan up
    else
        ip -n "$n" link add wan0 type veth peer name "w-$short" netns "$w" || vt_die "veth $short-wan"
    fi
    ip -n "$w" link set "w-$short" master wbr
    ip -n "$w" link set "w-$short" up
    ip -n "$n" addr add "${VT_WAN_IP[$short]}/24" dev wan0
    ip -n "$n" link set wan0 up
}

# vt_wanem_start SHORT DELAY LOSS: vn-wanem on SHORT's emulated WAN link (same delay and loss both ways, fixed
# seed so a run repeats); waits (bounded) for its "ready" line.
vt_wanem_start() {
    local log=$VT_WORK/wanem-$1.log
    vt_bg ip netns exec "$(vt_ns "em-$1")" "$VN_WANEM" --a lan --b wan --delay "$2" --loss "$3" \
        --seed "${WAN_SEED:-7}" </dev/null >>"$log" 2>&1
    vt_wait_for 5 grep -q 'vn-wanem: ready' "$log"
}

# vt_write_node_config FILE TAP STATE_DIR LISTEN ADVERTISE STORAGE FOUNDING PEER...: a P2 daemon config (the
# [namespace] of vt_write_config, an [overlay] section). TAP "" makes a standalone storage node; ADVERTISE ""
# leaves it out; FOUNDING true makes a founding storage node (votes at once on its state's first start).
vt_write_node_config() {
    local file=$1 tap=$2 state=$3 listen=$4 adv=$5 storage=$6 founding=$7 p sep=
    shift 7
    mkdir -p "$state"
    {
        vt_namespace_toml
        echo
        echo '[overlay]'
        echo "listen = \"$listen\""
        [ -n "$adv" ] && echo "advertise = \"$adv\""
        printf 'peers = ['
        for p in "$@"; do
            printf '%s"%s"' "$sep" "$p"
            sep=', '
        done
        echo ']'
        echo "storage = $storage"
        echo "founding = $founding"
        # VT_PRECLAIM: free addresses a router keeps claimed ahead of DHCP (benchmarks; default: the daemon's).
        if [ -n "$tap" ] && [ -n "${VT_PRECLAIM:-}" ]; then echo "preclaim = $VT_PRECLAIM"; fi
        echo
        echo '[daemon]'
        [ -n "$tap" ] && echo "tap = \"$tap\""
        echo "state_dir = \"$state\""
    } >"$file"
}

# vt_node_config SHORT: write SHORT's config to $VT_WORK/SHORT.toml (routers listen on 0.0.0.0 and advertise
# their WAN address; storage nodes listen on it), the other four nodes as peers; all five store records and
# found the namespace. Prints the file name.
vt_node_config() {
    local short=$1 n peers=() file=$VT_WORK/$1.toml
    for n in "${VT_ROUTERS[@]}" "${VT_STORAGE[@]}"; do
        [ "$n" = "$short" ] || peers+=("${VT_WAN_IP[$n]}:$VT_WAN_PORT")
    done
    case $short in
    r*) vt_certify "$short" "$VT_WORK/state-$short" router,dht ;;
    i*) vt_certify "$short" "$VT_WORK/state-$short" host ;;
    *) vt_certify "$short" "$VT_WORK/state-$short" dht ;;
    esac
    case $short in
    r*) vt_write_node_config "$file" vn0 "$VT_WORK/state-$short" "0.0.0.0:$VT_WAN_PORT" \
        "${VT_WAN_IP[$short]}:$VT_WAN_PORT" true true "${peers[@]}" ;;
    i*) vt_write_node_config "$file" vn0 "$VT_WORK/state-$short" "${VT_WAN_IP[$short]}:$VT_WAN_PORT" "" false \
        false "${peers[@]}"
        echo 'mode = "interface"' >>"$file" ;;
    *) vt_write_node_config "$file" "" "$VT_WORK/state-$short" "${VT_WAN_IP[$short]}:$VT_WAN_PORT" "" true true \
        "${peers[@]}" ;;
    esac
    printf '%s' "$file"
}

# vt_provision: the test namespace's CA and signed namespace document, made with the real hostctl in
# $VT_WORK/admin (passphrase in $VT_WORK/ca.pass); sets VT_NS_ID, which vt_namespace_toml then writes. Builds
# hostctl unless HOSTCTL is set.
vt_provision() {
    local target=${CARGO_TARGET_DIR:-$VT_ROOT/target} profile=${VT_PROFILE:-debug} flag=
    [ "$profile" = release ] && flag=--release
    if [ -z "${HOSTCTL:-}" ]; then
        # shellcheck disable=SC2086
        (cd "$VT_ROOT" && cargo build $flag --quiet -p hostctl) || vt_die "cargo build -p hostctl failed"
    fi
    HOSTCTL=${HOSTCTL:-$target/$profile/hostctl}
    VT_ADMIN=$VT_WORK/admin
    printf 'vngate test CA passphrase %s\n' "$VT_PREFIX" >"$VT_WORK/ca.pass"
    "$HOSTCTL" ns create demo --subnet 10.250.0.0/16 --dir "$VT_ADMIN" --passphrase-file "$VT_WORK/ca.pass" \
        --json >"$VT_WORK/ns.json" 2>"$VT_WORK/ns.err" || vt_die "hostctl ns create: $(cat "$VT_WORK/ns.err")"
    VT_NS_ID=$(sed -n 's/.*"id": *"\([0-9a-f]\{32\}\)".*/\1/p' "$VT_WORK/ns.json")
    [ -n "$VT_NS_ID" ] || vt_die "no namespace id in $(cat "$VT_WORK/ns.json")"
}

# vt_certify SHORT STATE_DIR ROLES: keys made in STATE_DIR by `vngate keygen` (as on the device), a certificate
# for them from `hostctl node sign SHORT --role ROLES`, and the certificate, CA key and namespace document copied
# into STATE_DIR where the daemon looks by default. No-op before vt_provision.
vt_certify() {
    local short=$1 state=$2 roles=$3 b
    [ -n "${VT_ADMIN:-}" ] || return 0
    "$VNGATE" keygen --state-dir "$state" >"$VT_WORK/keygen-$short.out" 2>&1 ||
        vt_die "vngate keygen for $short: $(cat "$VT_WORK/keygen-$short.out")"
    "$HOSTCTL" node sign "$short" --pub "$state/node.pub" --role "$roles" --dir "$VT_ADMIN" \
        --endpoint "${VT_WAN_IP[$short]}:$VT_WAN_PORT" --passphrase-file "$VT_WORK/ca.pass" --force >"$VT_WORK/sign-$short.out" 2>&1 ||
        vt_die "hostctl node sign $short: $(cat "$VT_WORK/sign-$short.out")"
    b=$VT_ADMIN/bundles/$short
    cp "$b/node.cert" "$b/ca.pub" "$b/namespace.doc" "$state/" || vt_die "bundle of $short incomplete"
}

# vt_node_start SHORT CONFIG: vngate in SHORT's namespace, logging to $VT_WORK/vngate-SHORT.log; its pid in
# VT_NODE_PID[SHORT].
vt_node_start() {
    vt_daemon_start "$1" "$2" "$VT_WORK/vngate-$1.log"
    VT_NODE_PID[$1]=$VT_DAEMON_PID
}

# vt_node_stop SHORT SIGNAL [SECONDS]: as vt_daemon_stop, for node SHORT.
vt_node_stop() {
    VT_DAEMON_PID=${VT_NODE_PID[$1]}
    vt_daemon_stop "$2" "${3:-5}"
}

# vt_udp_listening SHORT PORT: something in SHORT's namespace has a UDP socket bound to PORT.
vt_udp_listening() {
    ip netns exec "$(vt_ns "$1")" ss -Hlun "sport = :$2" 2>/dev/null | grep -q .
}

# vt_peers_up SHORT: how many distinct endpoints node SHORT has logged "event PeerUp" for.
vt_peers_up() {
    grep -o 'PeerUp id=[^ ]* endpoint=[0-9.:]*' "$VT_WORK/vngate-$1.log" 2>/dev/null | sed 's/.*endpoint=//' |
        sort -u | wc -l
}

# vt_overlay_settle [SECONDS]: wait (bounded, 15 s by default) until every node has logged PeerUp for the
# other four; returns non-zero if some node has not by then.
vt_overlay_settle() {
    vt_wait_for "${1:-15}" vt_all_peers_up
}
vt_all_peers_up() {
    local n
    for n in "${VT_ROUTERS[@]}" "${VT_STORAGE[@]}"; do
        [ "$(vt_peers_up "$n")" -ge 4 ] || return 1
    done
}

# vt_two_sites_up: the whole topology above, WAN_DELAY / WAN_LOSS (default 0 / 0%) on site B's link. Sets
# VT_OVERLAY=1 when the daemon takes the [overlay] contract; with one that does not (P1; VT_NO_OVERLAY says
# why), both routers run standalone (two disjoint sites on one subnet) and the storage nodes are not started,
# their configs written all the same. Logs progress as "PASS/FAIL"-free lines on stderr; returns non-zero when a node did not
# come up (VT_UP_ERR says which).
vt_two_sites_up() {
    local n conf
    VT_UP_ERR=
    vt_two_site_topology
    vt_provision
    vt_wan_add
    for n in "${VT_STORAGE[@]}"; do
        vt_ns_add "$n"
        vt_no_ipv6 "$n"
        vt_wan_attach "$n"
    done
    vt_router_add ra vn0
    vt_router_add rb vn0
    vt_wan_attach ra
    vt_wan_attach rb emulated
    vt_wanem_start rb "${WAN_DELAY:-0}" "${WAN_LOSS:-0%}" || {
        VT_UP_ERR="vn-wanem did not start on rb's WAN link"
        return 1
    }
    for n in "${VT_HOSTS[@]}" pa pb; do
        vt_host_add "$n" "${VT_SITE[$n]}" "${VT_HOSTNAME[$n]:-probe-$n}" "${VT_MAC[$n]:-02:00:00:f0:00:0${n#p}}"
    done
    for n in "${VT_ROUTERS[@]}" "${VT_STORAGE[@]}"; do vt_node_config "$n" >/dev/null; done
    # Does this vngate take the [overlay] contract? Its config check, then a first storage node that stays up
    # (a build may parse the section and still refuse to join at start).
    VT_OVERLAY=0
    if ! "$VNGATE" check-config "$VT_WORK/ra.toml" >"$VT_WORK/check-overlay.txt" 2>&1; then
        VT_NO_OVERLAY="check-config: $(head -n 1 "$VT_WORK/check-overlay.txt")"
    else
        vt_node_start s1 "$VT_WORK/s1.toml"
        if vt_wait_for 10 vt_udp_listening s1 "$VT_WAN_PORT" && sleep 0.5 && kill -0 "${VT_NODE_PID[s1]}" 2>/dev/null
        then
            VT_OVERLAY=1
        else
            vt_node_stop s1 KILL 1
            VT_NO_OVERLAY="start: $(grep -v '^ *$' "$VT_WORK/vngate-s1.log" | tail -n 1)"
        fi
    fi
    if [ "$VT_OVERLAY" = 1 ]; then
        for n in "${VT_STORAGE[@]}"; do
            [ "$n" = s1 ] || vt_node_start "$n" "$VT_WORK/$n.toml"
        done
        for n in "${VT_STORAGE[@]}"; do
            vt_wait_for 10 vt_udp_listening "$n" "$VT_WAN_PORT" || {
                VT_UP_ERR="storage node $n does not listen on UDP $VT_WAN_PORT"
                return 1
            }
        done
        for n in "${VT_ROUTERS[@]}"; do vt_node_start "$n" "$VT_WORK/$n.toml"; done
    else
        vt_log "this vngate does not join an overlay ($VT_NO_OVERLAY): running both sites standalone (P1)"
        for n in "${VT_ROUTERS[@]}"; do
            conf=$VT_WORK/$n-p1.toml
            vt_write_config "$conf" vn0 "$VT_WORK/state-$n"
            vt_node_start "$n" "$conf"
        done
    fi
    for n in "${VT_ROUTERS[@]}"; do
        vt_wait_for 10 vt_tap_ready "$n" vn0 || {
            VT_UP_ERR="vngate on $n did not open its TAP"
            return 1
        }
    done
    [ "$VT_OVERLAY" = 1 ] && vt_interface_host_up
}

# vt_interface_host_up: host i1 (india), a laptop on the WAN (10.99.0.21) joined to the VN in interface mode:
# vngate on its own TAP vn0 (a client of the DHT, not storage), its DHCP client on vn0 (vt_start_udhcpc i1
# india vn0) gets one VN address and no default route.
vt_interface_host_up() {
    local n=i1
    vt_ns_add "$n"
    vt_no_ipv6 "$n"
    vt_wan_attach "$n"
    ip -n "$(vt_ns "$n")" tuntap add dev vn0 mode tap || vt_die "tap in $n"
    vt_holder_start "$n" "${VT_HOSTNAME[$n]}"
    vt_node_config "$n" >/dev/null
    vt_node_start "$n" "$VT_WORK/$n.toml"
    vt_wait_for 10 vt_tap_ready "$n" vn0 || {
        VT_UP_ERR="vngate in interface mode on $n did not open its TAP"
        return 1
    }
}

# ---- counters and the security suite (ci/e2e/security.sh) ------------------------------------------------

# vt_metric SHORT NAME: counter NAME (vngate_NAME_total) of node SHORT, read with `hostctl metrics` from its
# control socket in $VT_WORK/state-SHORT; empty when the daemon does not answer.
vt_metric() {
    "$HOSTCTL" metrics --socket "$VT_WORK/state-$1/control.sock" 2>/dev/null |
        sed -n "s/^vngate_$2_total{[^}]*} \([0-9]*\)$/\1/p"
}

# vt_metric_sum NAME SHORT...: the sum of counter NAME over the nodes (a node that does not answer adds
# nothing).
vt_metric_sum() {
    local name=$1 n s=0 v
    shift
    for n in "$@"; do
        v=$(vt_metric "$n" "$name")
        s=$((s + ${v:-0}))
    done
    echo "$s"
}

# vt_clockshift_build: the LD_PRELOAD shim ci/tools/attack/clockshift.c (a process's wall clock moved by
# VT_CLOCK_OFFSET seconds) built into $VT_WORK; sets VT_CLOCKSHIFT.
vt_clockshift_build() {
    VT_CLOCKSHIFT=$VT_WORK/clockshift.so
    cc -shared -fPIC -O2 -o "$VT_CLOCKSHIFT" "$VT_ROOT/ci/tools/attack/clockshift.c" -ldl ||
        vt_die "cannot build the clock shim (cc)"
}
