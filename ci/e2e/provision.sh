#!/usr/bin/env bash
# End-to-end test of provisioning with the real binaries, files only (no namespaces, no root needed):
# hostctl ns create, vngate keygen on a "device" directory, hostctl node sign, vngate check-config on the
# bundle as it is, a standalone DHT node started from its bundle, node revoke bumping the list version,
# refusals without --force, a wrong passphrase, and a tampered certificate that stops the daemon.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${HOSTCTL:-}" ] || [ -z "${VNGATE:-}" ]; then
    (cd "$ROOT" && cargo build --quiet -p vngate -p hostctl) || { echo "FATAL: cargo build failed" >&2; exit 2; }
fi
HOSTCTL=${HOSTCTL:-$target/debug/hostctl}
VNGATE=${VNGATE:-$target/debug/vngate}

W=$(mktemp -d "/tmp/prov$$.XXXXXX")
DAEMON=
cleanup() {
    [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
passed=0; failed=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
# check NAME CMD...: CMD succeeds.
check() { local n=$1; shift; if "$@" >"$W/out" 2>&1; then pass "$n"; else fail "$n: $(cat "$W/out")"; fi; }
# refuses NAME NEEDLE CMD...: CMD fails and says NEEDLE.
refuses() {
    local n=$1 needle=$2; shift 2
    if "$@" >"$W/out" 2>&1; then fail "$n: succeeded: $(cat "$W/out")"
    elif grep -q -- "$needle" "$W/out"; then pass "$n ($(grep -m1 -- "$needle" "$W/out" | cut -c1-200))"
    else fail "$n: no \"$needle\" in: $(cat "$W/out")"; fi
}

NS=$W/admin/demo
echo 'correct horse battery staple' >"$W/pass"
echo 'wrong horse battery staple' >"$W/wrong"
export XDG_CONFIG_HOME=$W/xdg
unset VNGATE_CA_PASSPHRASE

refuses "ns create without a passphrase" "passphrase" \
    "$HOSTCTL" ns create demo --subnet 10.250.0.0/16 --dir "$NS"
check "ns create" "$HOSTCTL" ns create demo --subnet 10.250.0.0/16 --egress --dir "$NS" --passphrase-file "$W/pass"
[ "$(stat -c %a "$NS/ca.key")" = 600 ] && ! grep -q 'correct horse' "$NS/ca.key" \
    && pass "ca.key is 0600 and sealed" || fail "ca.key mode $(stat -c %a "$NS/ca.key")"
head -1 "$NS/ca.pub" | grep -qx 'vngate-ca-pub 1' && [ -s "$NS/namespace.doc" ] \
    && pass "ca.pub and namespace.doc written" || fail "ca.pub or namespace.doc missing"
cp "$NS/ca.key" "$W/ca.key.before"
refuses "ns create again without --force" "already exists" \
    "$HOSTCTL" ns create demo --subnet 10.250.0.0/16 --dir "$NS" --passphrase-file "$W/pass"
cmp -s "$NS/ca.key" "$W/ca.key.before" && pass "the CA key is untouched" || fail "the CA key changed"
# The default directory: $XDG_CONFIG_HOME/vngate/<name>, found again without --dir.
check "ns create in the default directory" \
    env VNGATE_CA_PASSPHRASE='another long passphrase' "$HOSTCTL" ns create other --subnet 10.77.0.0/24 --json
[ -f "$XDG_CONFIG_HOME/vngate/other/ns.json" ] && pass "default dir \$XDG_CONFIG_HOME/vngate/other" \
    || fail "no $XDG_CONFIG_HOME/vngate/other/ns.json"

# Keys are made on the device; only node.pub leaves it.
DEV=$W/device-alpha
check "vngate keygen" "$VNGATE" keygen --state-dir "$DEV"
[ "$(stat -c %a "$DEV/node.key")" = 600 ] && [ "$(stat -c %a "$DEV/noise.key")" = 600 ] \
    && pass "node.key and noise.key are 0600" || fail "key modes"
"$VNGATE" keygen --state-dir "$DEV" --json >"$W/kg.json" 2>&1
grep -q '"node_key":"existing"' "$W/kg.json" && cmp -s <(sed -n 1,4p "$DEV/node.pub") <("$VNGATE" keygen --state-dir "$DEV" 2>/dev/null) \
    && pass "keygen again keeps the keys" || fail "keygen again: $(cat "$W/kg.json")"
DEV2=$W/device-beta
"$VNGATE" keygen --state-dir "$DEV2" >/dev/null 2>&1

refuses "node sign with a wrong passphrase" "passphrase does not open" \
    "$HOSTCTL" node sign alpha --pub "$DEV/node.pub" --role router,dht --endpoint 127.0.0.1:4789 --dir "$NS" --passphrase-file "$W/wrong"
refuses "node sign with an unknown role" "is not a role" \
    "$HOSTCTL" node sign alpha --pub "$DEV/node.pub" --role router,boss --dir "$NS" --passphrase-file "$W/pass"
check "node sign alpha (router,dht, founding)" \
    "$HOSTCTL" node sign alpha --pub "$DEV/node.pub" --role router,dht --founding --endpoint 127.0.0.1:4789 \
    --state-dir "$DEV" --dir "$NS" --passphrase-file "$W/pass"
B=$NS/bundles/alpha
for f in vngate.toml node.cert ca.pub namespace.doc; do
    [ -s "$B/$f" ] || fail "bundle lacks $f"
done
check "check-config accepts the bundle as it is" "$VNGATE" check-config "$B/vngate.toml"
grep -q "certificate serial 1 .*matches this node's keys" "$W/out" && pass "check-config: serial 1, keys match" \
    || fail "check-config said: $(cat "$W/out")"
refuses "node sign alpha again without --force" "pass --force" \
    "$HOSTCTL" node sign alpha --pub "$DEV/node.pub" --role router --dir "$NS" --passphrase-file "$W/pass"

# A standalone DHT node (no TAP: no root) started from its bundle runs with its certificate.
PORT=$((20000 + $$ % 20000))
check "node sign store1 (dht only)" \
    env VNGATE_CA_PASSPHRASE='correct horse battery staple' "$HOSTCTL" node sign store1 --pub "$DEV2/node.pub" \
    --role dht --founding --endpoint "127.0.0.1:$PORT" --state-dir "$DEV2" --dir "$NS" --json
grep -q '"serial":2' "$W/out" && pass "serials count up (2)" || fail "serial: $(cat "$W/out")"
"$VNGATE" --config "$NS/bundles/store1/vngate.toml" >"$W/store1.log" 2>&1 &
DAEMON=$!
for _ in $(seq 50); do grep -q 'control socket' "$W/store1.log" && break; sleep 0.1; done
if grep -q 'certificate serial 2 (dht)' "$W/store1.log" && kill -0 "$DAEMON" 2>/dev/null; then
    pass "the daemon starts with its certificate"
else
    fail "daemon: $(cat "$W/store1.log")"
fi
kill "$DAEMON" 2>/dev/null; wait "$DAEMON" 2>/dev/null; DAEMON=

# A tampered certificate (one byte of the name changed) stops the daemon before it serves.
cp -r "$NS/bundles/store1" "$W/tampered"
python3 - "$W/tampered/node.cert" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
i = b.find(b'store1')
b[i] ^= 0x20
open(p, 'wb').write(bytes(b))
EOF
refuses "the daemon refuses a tampered certificate" "signature does not verify" \
    timeout 10 "$VNGATE" --config "$W/tampered/vngate.toml"
refuses "check-config refuses it too" "node.cert" "$VNGATE" check-config "$W/tampered/vngate.toml"
# Another node's certificate with this node's keys.
cp "$NS/bundles/alpha/node.cert" "$W/tampered/node.cert"
refuses "the daemon refuses another node's certificate" "another node's keys" \
    timeout 10 "$VNGATE" --config "$W/tampered/vngate.toml"
# A configuration that disagrees with the signed namespace document.
cp "$NS/bundles/store1/node.cert" "$W/tampered/node.cert"
sed -i 's/^egress = true/egress = false/' "$W/tampered/vngate.toml"
refuses "check-config refuses a [namespace] that differs from the signed document" "egress" \
    "$VNGATE" check-config "$W/tampered/vngate.toml"

# Revocation: each revoke signs the next list version; a revoked node no longer starts.
check "node revoke store1" "$HOSTCTL" node revoke store1 --dir "$NS" --passphrase-file "$W/pass" --json
grep -q '"list_version":1' "$W/out" && pass "revocation list version 1" || fail "revoke: $(cat "$W/out")"
check "node revoke alpha" "$HOSTCTL" node revoke alpha --dir "$NS" --passphrase-file "$W/pass" --json
grep -q '"list_version":2' "$W/out" && grep -q '"serials":\[1,2\]' "$W/out" \
    && pass "revocation list version 2 holds serials 1 and 2" || fail "revoke: $(cat "$W/out")"
refuses "revoking it again" "no unrevoked certificate" \
    "$HOSTCTL" node revoke alpha --dir "$NS" --passphrase-file "$W/pass"
cp "$NS/revoked" "$NS/bundles/store1/revoked"
refuses "the daemon refuses a revoked certificate" "was revoked" \
    timeout 10 "$VNGATE" --config "$NS/bundles/store1/vngate.toml"
"$HOSTCTL" node list --dir "$NS" >"$W/list" 2>&1
grep -q 'revocation list version 2' "$W/list" && [ "$(grep -c ' revoked$' "$W/list")" = 2 ] \
    && pass "node list shows both revoked" || fail "node list: $(cat "$W/list")"
"$HOSTCTL" node list --dir "$NS" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert [n["serial"] for n in d["nodes"]]==[1,2]' \
    && pass "node list --json" || fail "node list --json"

# A bundle for a node with no certificate: the daemon runs unsigned only while require = false.
sed -i 's/^require = true/require = false/' "$W/tampered/vngate.toml"
sed -i 's/^egress = false/egress = true/' "$W/tampered/vngate.toml"
rm "$W/tampered/node.cert"
check "without a certificate and require = false, check-config passes" "$VNGATE" check-config "$W/tampered/vngate.toml"
grep -q 'runs unsigned' "$W/out" && pass "...and says it runs unsigned" || fail "$(cat "$W/out")"
sed -i 's/^require = false/require = true/' "$W/tampered/vngate.toml"
refuses "without a certificate and require = true, it refuses" "no certificate at" \
    "$VNGATE" check-config "$W/tampered/vngate.toml"

# --force replaces a namespace: a new CA (the old key kept aside), its old bundles gone.
old_ca=$(cat "$NS/ca.pub")
check "ns create --force" "$HOSTCTL" ns create demo --subnet 10.250.0.0/16 --dir "$NS" --passphrase-file "$W/pass" --force
[ "$(cat "$NS/ca.pub")" != "$old_ca" ] && [ -f "$NS/ca.key.old" ] && [ ! -d "$NS/bundles" ] \
    && pass "a new CA, the old key in ca.key.old, no old bundles" || fail "after --force: $(ls "$NS")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
