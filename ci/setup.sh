#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmarks need on a fresh Debian 12 machine (root).
# Idempotent and quick when everything is already there.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have tcpdump   || need_apt+=(tcpdump)
have busybox   || need_apt+=(busybox)
have dhclient  || need_apt+=(isc-dhcp-client)
have dhcpcd    || need_apt+=(dhcpcd5)
have dig       || need_apt+=(bind9-dnsutils)
have arping    || need_apt+=(iputils-arping)
have ping      || need_apt+=(iputils-ping)
have iperf3    || need_apt+=(iperf3)
have nft       || need_apt+=(nftables)
have ip        || need_apt+=(iproute2)
have unshare   || need_apt+=(util-linux)
have python3   || need_apt+=(python3)        # ci/tools/attack (security e2e)
have cc        || need_apt+=(gcc libc6-dev)  # ci/tools/attack/clockshift.c (security e2e)
if [ "${VNGATE_BENCH:-0}" = 1 ]; then
  have perfdhcp   || need_apt+=(kea-admin)
  have kea-dhcp4  || need_apt+=(kea-dhcp4-server)
  have dnsperf    || need_apt+=(dnsperf)
  have nsd        || need_apt+=(nsd)
  have dnsmasq    || need_apt+=(dnsmasq-base)
  have wireguard-go || need_apt+=(wireguard-go)   # ci/bench/throughput.sh
  have wg         || need_apt+=(wireguard-tools)
  have jq         || need_apt+=(jq)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! rustup target list --installed 2>/dev/null | grep -qx thumbv7em-none-eabihf; then
  echo "setup: adding the thumbv7em-none-eabihf target (the no_std proof)"
  rustup target add thumbv7em-none-eabihf >/dev/null
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null
