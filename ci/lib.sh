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
    local short=$1 router=$2 hn=$3 mac=$4 h r dir
    h=$(vt_ns "$short")
    r=$(vt_ns "$router")
    vt_ns_add "$short"
    ip -n "$r" link add "p-$short" type veth peer name eth0 netns "$h" || vt_die "veth for $short"
    ip -n "$r" link set "p-$short" master br0
    ip -n "$r" link set "p-$short" up
    ip -n "$h" link set eth0 address "$mac"
    ip -n "$h" link set eth0 up
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

# vt_write_config FILE TAP STATE_DIR [EXTRA namespace lines...]: a daemon config for the test namespace.
vt_write_config() {
    local file=$1 tap=$2 state=$3
    shift 3
    mkdir -p "$state"
    {
        echo '[namespace]'
        echo 'id = "00112233445566778899aabbccddeeff"'
        echo 'name = "demo"'
        echo 'subnet = "10.250.0.0/16"'
        echo 'lease_time = 3600'
        echo 'mtu = 1380'
        local l
        for l in "$@"; do echo "$l"; done
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

# vt_start_udhcpc HOST HOSTNAME: busybox udhcpc in the background; its script records each event's environment
# in /run/udhcpc/<event>.env and the event sequence in /run/udhcpc/events (inside the host).
vt_start_udhcpc() {
    vt_host_exec "$1" timeout 20 busybox udhcpc -i eth0 -b -t 5 -T 2 -A 3 -p /run/udhcpc.pid -s "$VT_UDHCPC_SCRIPT" \
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
