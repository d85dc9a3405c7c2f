//! Proxy ARP for the service block and remote VN addresses, and the LAN's MAC->IP index
//! (RFC 826; RFC 1027 proxy ARP; RFC 5227 probes and announcements; RFC 903 RARP; IPOP SC09 §4.1;
//! DESIGN.md "arp").
//!
//! What it answers, with the router MAC:
//! - requests for the service addresses `.1` and `.2`, including an RFC 5227 probe for them (a host that
//!   wants our address: answering defends it);
//! - requests for remote VN addresses that the route table maps (P2: [`RemoteRoutes`]). IPOP answered when
//!   the address is a VN address, not local, and mapped in the DHT; the lookups that mapping needs are
//!   bounded here by a negative cache, a token bucket per requester and a cap on lookups in flight, so a
//!   scan of the /16 cannot become 65,000 DHT lookups.
//!
//! What it never answers: a probe (sender IP 0.0.0.0) or a gratuitous ARP (sender IP == target IP) for
//! anything but the service block — those are claim and migration signals, and answering them from a
//! cache makes dhcpcd and Windows decline good addresses; requests for hosts it has seen on this LAN
//! (they answer themselves); anything at all while another station claims `.1` or `.2`.
//!
//! A station other than the router using `.1` or `.2` as its ARP sender address is a service conflict:
//! [`Event::ServiceConflict`], [`ArpProxy::serving`] turns false (the node stops DHCP, DNS and ICMP), and
//! the station is re-checked by unicast ARP every [`CONFLICT_CHECK_INTERVAL`]; after
//! [`CONFLICT_CLEAR_AFTER`] unanswered checks, [`Event::ServiceConflictCleared`] and serving resumes.

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress, Ipv4Address};

use crate::config::Site;
use crate::event::Event;
use crate::queue::Cx;
use crate::wire;

/// How long a host stays in the MAC->IP index without being seen (ARP, DHCP, IP traffic or RARP).
pub const HOST_TTL: Duration = Duration::from_secs(30 * 60);
/// How long an address that no route maps stays in the negative cache.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(20);
/// How long a remote lookup may run before it counts as a miss (and is negative-cached).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Lookups a requester may start at once (its bucket's depth).
pub const REQUESTER_BURST: u32 = 8;
/// One more lookup per requester every this long (4 per second).
pub const REQUESTER_REFILL: Duration = Duration::from_millis(250);
/// Interval between unicast checks of a station that claims a service address.
pub const CONFLICT_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered checks after which a service conflict counts as cleared.
pub const CONFLICT_CLEAR_AFTER: u8 = 3;
/// Delay between the two gratuitous ARPs of an announcement (RFC 5227 ANNOUNCE_INTERVAL; ANNOUNCE_NUM = 2).
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(2);

/// RARP "request reverse" (RFC 903), what QEMU broadcasts for a guest after a live migration.
const RARP_REQUEST_REVERSE: u16 = 3;

/// What the node must know after an ARP packet was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOutcome {
    /// Nothing further.
    Done,
    /// A station showed it holds `ip` at `mac` (a reply, an announcement, or a request with `ip` as its
    /// sender address): the DHCP server's pre-offer check must hear about it.
    Seen {
        /// The address in use.
        ip: Ipv4Address,
        /// Who uses it.
        mac: EthernetAddress,
    },
}

/// What the route table knows about a remote VN address, without any network work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteRoute {
    /// Mapped to another node: answer with the router MAC.
    Remote,
    /// Not in the cache: a lookup is needed.
    Unknown,
    /// A lookup for it is already running.
    Pending,
}

/// The route table as proxy ARP sees it (P2 implements it over the DHT-backed route cache).
/// A lookup started with [`RemoteRoutes::begin_lookup`] reports back through [`ArpProxy::lookup_done`].
pub trait RemoteRoutes {
    /// What is known about `ip` now.
    fn route(&self, now: Instant, ip: Ipv4Address) -> RemoteRoute;
    /// Start resolving `ip`; `false` when no lookup could be started (the address is then negative-cached).
    fn begin_lookup(&mut self, now: Instant, ip: Ipv4Address) -> bool;
}

/// No remote routes (P1): every remote address is unknown and no lookup can start.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRoutes;

impl RemoteRoutes for NoRoutes {
    fn route(&self, _now: Instant, _ip: Ipv4Address) -> RemoteRoute {
        RemoteRoute::Unknown
    }
    fn begin_lookup(&mut self, _now: Instant, _ip: Ipv4Address) -> bool {
        false
    }
}

/// A token bucket: `burst` tokens, one more every `refill`, never more than `burst`. Integer time only.
/// Also limits ICMP errors in [`crate::encap`] (RFC 1812 §4.3.2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    tokens: u32,
    last: Instant,
    burst: u32,
    refill: Duration,
}

impl TokenBucket {
    /// A full bucket.
    pub const fn new(now: Instant, burst: u32, refill: Duration) -> Self {
        Self { tokens: burst, last: now, burst, refill }
    }

    fn refilled(&self, now: Instant) -> (u32, Instant) {
        if now <= self.last || self.tokens >= self.burst {
            return (self.tokens, if self.tokens >= self.burst { now.max(self.last) } else { self.last });
        }
        let step = self.refill.total_micros().max(1);
        let n = (now - self.last).total_micros() / step;
        let tokens = u64::from(self.tokens).saturating_add(n).min(u64::from(self.burst)) as u32;
        if tokens >= self.burst {
            (tokens, now)
        } else {
            (tokens, self.last + Duration::from_micros(n * step))
        }
    }

    /// Take one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let (tokens, last) = self.refilled(now);
        self.last = last;
        self.tokens = tokens;
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Whether the bucket has refilled completely (its owner has been idle).
    pub fn is_full(&self, now: Instant) -> bool {
        self.refilled(now).0 >= self.burst
    }
}

/// One local host in the MAC->IP index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Host {
    mac: EthernetAddress,
    ip: Ipv4Address,
    last_seen: Instant,
}

/// A remote lookup in flight, with the requester to answer when it completes.
#[derive(Debug, Clone, Copy)]
struct Lookup {
    ip: Ipv4Address,
    requester_mac: EthernetAddress,
    requester_ip: Ipv4Address,
    deadline: Instant,
}

/// A station claiming a service address.
#[derive(Debug, Clone, Copy)]
struct Conflict {
    mac: EthernetAddress,
    /// Checks sent since it was last heard.
    misses: u8,
    next_check: Instant,
}

/// Proxy ARP state: `HOSTS` entries in the MAC->IP index (full: the least recently seen is evicted),
/// `REQUESTERS` token buckets (full: an idle requester's bucket is reused, else the new requester is
/// rate-limited), `NEGATIVE` negative-cache entries (full: the one expiring first is replaced) and
/// `LOOKUPS` remote lookups in flight (full: new lookups are refused and counted as rate-limited).
pub struct ArpProxy<
    const HOSTS: usize,
    const REQUESTERS: usize = 16,
    const NEGATIVE: usize = 64,
    const LOOKUPS: usize = 8,
> {
    hosts: heapless::Vec<Host, HOSTS>,
    buckets: heapless::Vec<(EthernetAddress, TokenBucket), REQUESTERS>,
    negative: heapless::Vec<(Ipv4Address, Instant), NEGATIVE>,
    lookups: heapless::Vec<Lookup, LOOKUPS>,
    /// Conflicts on `.1` (index 0) and `.2` (index 1).
    conflicts: [Option<Conflict>; 2],
    /// When the second gratuitous ARP of an announcement is due.
    announce_again: Option<Instant>,
}

/// 256 local hosts, 16 requesters, 64 negative entries, 8 lookups in flight.
pub type DefaultArpProxy = ArpProxy<256>;

impl<const HOSTS: usize, const REQUESTERS: usize, const NEGATIVE: usize, const LOOKUPS: usize> Default
    for ArpProxy<HOSTS, REQUESTERS, NEGATIVE, LOOKUPS>
{
    fn default() -> Self {
        Self::new()
    }
}

/// A MAC a host may use: unicast and not all zeros.
fn host_mac(mac: EthernetAddress) -> bool {
    mac.is_unicast() && mac != EthernetAddress([0; 6])
}

impl<const HOSTS: usize, const REQUESTERS: usize, const NEGATIVE: usize, const LOOKUPS: usize>
    ArpProxy<HOSTS, REQUESTERS, NEGATIVE, LOOKUPS>
{
    /// Empty state.
    pub fn new() -> Self {
        Self {
            hosts: heapless::Vec::new(),
            buckets: heapless::Vec::new(),
            negative: heapless::Vec::new(),
            lookups: heapless::Vec::new(),
            conflicts: [None, None],
            announce_again: None,
        }
    }

    /// Handle an ARP packet from the LAN (Ethernet source `eth_src`), with no remote routes (P1).
    pub fn handle_arp(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        eth_src: EthernetAddress,
        arp: &ArpRepr,
    ) -> ArpOutcome {
        self.handle_arp_with(cx, site, &mut NoRoutes, eth_src, arp)
    }

    /// Handle an ARP packet from the LAN, answering remote addresses that `routes` maps.
    pub fn handle_arp_with(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        routes: &mut dyn RemoteRoutes,
        _eth_src: EthernetAddress,
        arp: &ArpRepr,
    ) -> ArpOutcome {
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_protocol_addr: tpa,
            ..
        } = *arp
        else {
            cx.stats.other_dropped += 1;
            return ArpOutcome::Done;
        };
        if !matches!(operation, ArpOperation::Request | ArpOperation::Reply) {
            cx.stats.other_dropped += 1;
            return ArpOutcome::Done;
        }
        if !host_mac(sha) || sha == site.router_mac {
            // A forged multicast sender, or our own MAC (another router of the namespace: P2's LAN hello).
            cx.stats.other_dropped += 1;
            return ArpOutcome::Done;
        }
        if site.params.is_service_addr(spa) {
            self.service_claimed(cx, site, spa, sha);
            return ArpOutcome::Done;
        }
        let mut outcome = ArpOutcome::Done;
        if site.params.is_vn_host(spa) {
            self.learn(cx.now, site, sha, spa);
            outcome = ArpOutcome::Seen { ip: spa, mac: sha };
        }
        if operation != ArpOperation::Request || !self.serving() {
            return outcome;
        }
        if site.params.is_service_addr(tpa) {
            // Also a probe for .1/.2: a host that wants our address; the reply defends it.
            self.reply(cx, site, tpa, sha, spa);
            return outcome;
        }
        if spa.is_unspecified() || spa == tpa {
            // A probe or an announcement: a claim or migration signal, never answered from a cache.
            return outcome;
        }
        if !site.params.is_vn_host(spa) || !site.params.is_vn_host(tpa) || self.mac_of(tpa).is_some() {
            // Not a VN member asking, not a VN address, or a host on this LAN that answers for itself.
            return outcome;
        }
        self.remote(cx, site, routes, sha, spa, tpa);
        outcome
    }

    /// The remote-address path: negative cache, route cache, then a bounded, rate-limited lookup.
    fn remote(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        routes: &mut dyn RemoteRoutes,
        sha: EthernetAddress,
        spa: Ipv4Address,
        tpa: Ipv4Address,
    ) {
        let now = cx.now;
        if self.negative.iter().any(|&(ip, until)| ip == tpa && now < until) {
            return;
        }
        match routes.route(now, tpa) {
            RemoteRoute::Remote => {
                self.reply(cx, site, tpa, sha, spa);
                return;
            }
            RemoteRoute::Pending => return,
            RemoteRoute::Unknown => {}
        }
        if let Some(l) = self.lookups.iter_mut().find(|l| l.ip == tpa) {
            // Already asked: answer the latest requester when the lookup completes.
            l.requester_mac = sha;
            l.requester_ip = spa;
            return;
        }
        if self.lookups.is_full() || !self.take_token(now, sha) {
            debug!("arp: lookup for {} from {} rate-limited", tpa, spa);
            cx.stats.arp_rate_limited += 1;
            return;
        }
        let lookup =
            Lookup { ip: tpa, requester_mac: sha, requester_ip: spa, deadline: now + LOOKUP_TIMEOUT };
        if routes.begin_lookup(now, tpa) {
            // Cannot fail: checked not full above.
            let _ = self.lookups.push(lookup);
        } else {
            self.add_negative(now, tpa);
        }
    }

    /// Take a token from `mac`'s bucket, creating it (or reusing an idle requester's) if needed.
    fn take_token(&mut self, now: Instant, mac: EthernetAddress) -> bool {
        if let Some((_, b)) = self.buckets.iter_mut().find(|(m, _)| *m == mac) {
            return b.take(now);
        }
        let fresh = TokenBucket::new(now, REQUESTER_BURST, REQUESTER_REFILL);
        if self.buckets.push((mac, fresh)).is_err() {
            // Full: reuse the slot of a requester whose bucket refilled (idle); if every requester is
            // active, the newcomer waits (a flood from rotating MACs gets no fresh buckets).
            let Some(slot) = self.buckets.iter_mut().find(|(_, b)| b.is_full(now)) else {
                return false;
            };
            *slot = (mac, fresh);
        }
        self.buckets.iter_mut().find(|(m, _)| *m == mac).is_some_and(|(_, b)| b.take(now))
    }

    fn add_negative(&mut self, now: Instant, ip: Ipv4Address) {
        let until = now + NEGATIVE_TTL;
        if let Some(e) = self.negative.iter_mut().find(|(a, _)| *a == ip) {
            e.1 = until;
        } else if self.negative.push((ip, until)).is_err() {
            if let Some(e) = self.negative.iter_mut().min_by_key(|(_, t)| *t) {
                *e = (ip, until);
            }
        }
    }

    /// A remote lookup started through [`RemoteRoutes::begin_lookup`] finished: `found` means `ip` is
    /// mapped to another node. The waiting requester gets its answer; a miss is negative-cached.
    pub fn lookup_done(&mut self, cx: &mut Cx<'_>, site: &Site, ip: Ipv4Address, found: bool) {
        let Some(i) = self.lookups.iter().position(|l| l.ip == ip) else {
            return;
        };
        let l = self.lookups.swap_remove(i);
        if !found {
            self.add_negative(cx.now, ip);
        } else if self.serving() && self.mac_of(ip).is_none() {
            self.reply(cx, site, ip, l.requester_mac, l.requester_ip);
        }
    }

    /// Queue an ARP reply: `ip` is at the router MAC, to `to_mac`/`to_ip`.
    fn reply(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        ip: Ipv4Address,
        to_mac: EthernetAddress,
        to_ip: Ipv4Address,
    ) {
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: site.router_mac,
            source_protocol_addr: ip,
            target_hardware_addr: to_mac,
            target_protocol_addr: to_ip,
        };
        if send(cx, site, to_mac, &repr) {
            cx.stats.arp_replies += 1;
        }
    }

    /// Someone other than the router uses service address `ip` as its ARP sender address.
    fn service_claimed(&mut self, cx: &mut Cx<'_>, site: &Site, ip: Ipv4Address, mac: EthernetAddress) {
        let idx = usize::from(ip != site.dns_addr);
        let next_check = cx.now + CONFLICT_CHECK_INTERVAL;
        match &mut self.conflicts[idx] {
            Some(c) if c.mac == mac => c.misses = 0,
            slot => {
                warn!("arp: {} claims service address {}: serving stopped", mac, ip);
                *slot = Some(Conflict { mac, misses: 0, next_check });
                cx.event(Event::ServiceConflict { ip, mac });
            }
        }
    }

    /// Handle a RARP frame payload from the LAN. A "request reverse" whose sender is the frame's source
    /// (as QEMU announces a guest after live migration) refreshes that MAC's entry; returns the IP the
    /// index holds for it (the migration trigger of P2), `None` if the MAC is unknown.
    pub fn handle_rarp(
        &mut self,
        cx: &mut Cx<'_>,
        _site: &Site,
        eth_src: EthernetAddress,
        payload: &[u8],
    ) -> Option<Ipv4Address> {
        let parsed = ArpPacket::new_checked(payload).and_then(|p| ArpRepr::parse(&p));
        let Ok(ArpRepr::EthernetIpv4 { operation, source_hardware_addr: sha, .. }) = parsed else {
            cx.stats.malformed += 1;
            return None;
        };
        if operation != ArpOperation::Unknown(RARP_REQUEST_REVERSE) || sha != eth_src {
            cx.stats.other_dropped += 1;
            return None;
        }
        let now = cx.now;
        let host = self.hosts.iter_mut().find(|h| h.mac == sha)?;
        host.last_seen = now;
        Some(host.ip)
    }

    /// Learn that `mac` uses `ip` on the LAN (from ARP, DHCP or IP traffic). Only VN host addresses and
    /// host MACs are kept; one IP per MAC and one MAC per IP, the latest wins.
    // HOT PATH (every IPv4 frame from the LAN)
    pub fn learn(&mut self, now: Instant, site: &Site, mac: EthernetAddress, ip: Ipv4Address) {
        if let Some(h) = self.hosts.iter_mut().find(|h| h.mac == mac) {
            if h.ip == ip {
                h.last_seen = now;
                return;
            }
        }
        if !site.params.is_vn_host(ip) || !host_mac(mac) || mac == site.router_mac {
            return;
        }
        // The address moved to another MAC (or the MAC changed address): drop the stale pairings.
        self.hosts.retain(|h| h.ip != ip && h.mac != mac);
        let host = Host { mac, ip, last_seen: now };
        if let Err(host) = self.hosts.push(host) {
            if let Some(oldest) = self.hosts.iter_mut().min_by_key(|h| h.last_seen) {
                *oldest = host;
            }
        }
    }

    /// The MAC last seen using `ip` on the LAN.
    pub fn mac_of(&self, ip: Ipv4Address) -> Option<EthernetAddress> {
        self.hosts.iter().find(|h| h.ip == ip).map(|h| h.mac)
    }

    /// The IP last seen used by `mac` on the LAN.
    pub fn ip_of(&self, mac: EthernetAddress) -> Option<Ipv4Address> {
        self.hosts.iter().find(|h| h.mac == mac).map(|h| h.ip)
    }

    /// When `mac` was last seen on the LAN (ARP, DHCP, IP traffic or RARP).
    pub fn last_seen(&self, mac: EthernetAddress) -> Option<Instant> {
        self.hosts.iter().find(|h| h.mac == mac).map(|h| h.last_seen)
    }

    /// Number of hosts in the index.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Whether DHCP, DNS and ARP may serve (false while another MAC claims .1 or .2).
    pub fn serving(&self) -> bool {
        self.conflicts.iter().all(Option::is_none)
    }

    /// The router's own LAN check of `ip` (before a DHCP offer, the absence check of a migration): an ARP
    /// request from a service address with the router MAC, unicast to the last known MAC of `ip` when
    /// there is one, broadcast otherwise; never in probe format. `false` if not queued.
    pub fn check(&mut self, cx: &mut Cx<'_>, site: &Site, ip: Ipv4Address) -> bool {
        let dst = self.mac_of(ip);
        self.check_at(cx, site, ip, dst)
    }

    /// [`ArpProxy::check`] unicast to `mac` (or broadcast when `None`).
    pub fn check_at(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        ip: Ipv4Address,
        mac: Option<EthernetAddress>,
    ) -> bool {
        if !site.params.is_vn_host(ip) && !site.params.is_service_addr(ip) {
            return false;
        }
        // Sender .1; checking .1 itself is asked from .2 so the request is never a gratuitous ARP.
        let sender = if ip == site.dns_addr { site.gateway_addr } else { site.dns_addr };
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: site.router_mac,
            source_protocol_addr: sender,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ip,
        };
        let dst = mac.filter(|m| host_mac(*m)).unwrap_or(EthernetAddress::BROADCAST);
        send(cx, site, dst, &repr)
    }

    /// Send gratuitous ARP (RFC 5227 announcements) for the service addresses not in conflict; a second
    /// one follows after [`ANNOUNCE_INTERVAL`]. The node calls it once at start.
    pub fn announce(&mut self, cx: &mut Cx<'_>, site: &Site) {
        self.announce_once(cx, site);
        self.announce_again = Some(cx.now + ANNOUNCE_INTERVAL);
    }

    fn announce_once(&mut self, cx: &mut Cx<'_>, site: &Site) {
        for (i, ip) in [site.dns_addr, site.gateway_addr].into_iter().enumerate() {
            if self.conflicts[i].is_some() {
                continue;
            }
            let repr = ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr: site.router_mac,
                source_protocol_addr: ip,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: ip,
            };
            send(cx, site, EthernetAddress::BROADCAST, &repr);
        }
    }

    /// Next deadline.
    pub fn poll_at(&self) -> Option<Instant> {
        let conflicts = self.conflicts.iter().flatten().map(|c| c.next_check);
        let lookups = self.lookups.iter().map(|l| l.deadline);
        let hosts = self.hosts.iter().map(|h| h.last_seen + HOST_TTL).min();
        self.announce_again.into_iter().chain(conflicts).chain(lookups).chain(hosts).min()
    }

    /// Timers: the second announcement, conflict re-checks, lookup timeouts, host aging. Safe to call
    /// at any time.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>, site: &Site) {
        let now = cx.now;
        if self.announce_again.is_some_and(|t| t <= now) {
            self.announce_again = None;
            self.announce_once(cx, site);
        }
        let was_serving = self.serving();
        for (i, ip) in [site.dns_addr, site.gateway_addr].into_iter().enumerate() {
            let Some(c) = &mut self.conflicts[i] else { continue };
            if c.next_check > now {
                continue;
            }
            if c.misses >= CONFLICT_CLEAR_AFTER {
                info!("arp: {} silent after {} checks: conflict on {} cleared", c.mac, c.misses, ip);
                self.conflicts[i] = None;
                continue;
            }
            c.next_check = now + CONFLICT_CHECK_INTERVAL;
            let mac = c.mac;
            // Only a check that left counts as unanswered: a full queue never clears a conflict.
            if self.check_at(cx, site, ip, Some(mac)) {
                if let Some(c) = &mut self.conflicts[i] {
                    c.misses += 1;
                }
            }
        }
        if !was_serving && self.serving() {
            cx.event(Event::ServiceConflictCleared);
            // Hosts may have cached the other station's MAC for .1/.2: correct them now.
            self.announce(cx, site);
        }
        let mut i = 0;
        while i < self.lookups.len() {
            if self.lookups[i].deadline <= now {
                let l = self.lookups.swap_remove(i);
                self.add_negative(now, l.ip);
            } else {
                i += 1;
            }
        }
        self.negative.retain(|&(_, until)| now < until);
        self.hosts.retain(|h| now < h.last_seen + HOST_TTL);
    }
}

/// Queue an ARP frame from the router MAC to `dst`.
fn send(cx: &mut Cx<'_>, site: &Site, dst: EthernetAddress, repr: &ArpRepr) -> bool {
    let src = site.router_mac;
    cx.lan(&mut |buf| wire::emit_arp_frame(buf, src, dst, repr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamespaceParams;
    use crate::queue::{Outbox, Transmit};
    use crate::rand::Rng;
    use crate::stats::Stats;
    use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Cidr};

    // Captured with tcpdump in two network namespaces by ci/fixtures/capture-arp.sh: host A is
    // 10.250.0.10 at 02:00:00:00:00:0a, host B 10.250.0.20 at 02:00:00:00:00:14 (Linux 6.x kernel).
    /// The kernel of A resolving B (before a ping).
    static LINUX_REQUEST: &[u8] = include_bytes!("../tests/fixtures/arp/linux_request.bin");
    /// The kernel of A resolving the service address 10.250.0.1.
    static LINUX_REQUEST_SERVICE: &[u8] = include_bytes!("../tests/fixtures/arp/linux_request_service.bin");
    /// The kernel of B answering A.
    static LINUX_REPLY: &[u8] = include_bytes!("../tests/fixtures/arp/linux_reply.bin");
    /// busybox 1.35 `arping -D 10.250.0.7`: an RFC 5227 probe (sender IP 0.0.0.0).
    static BUSYBOX_PROBE: &[u8] = include_bytes!("../tests/fixtures/arp/busybox_probe.bin");
    /// busybox 1.35 `arping -D 10.250.0.1`: a probe for our service address.
    static BUSYBOX_PROBE_SERVICE: &[u8] = include_bytes!("../tests/fixtures/arp/busybox_probe_service.bin");
    /// iputils 20221126 `arping -U 10.250.0.10`: A's gratuitous ARP (sender IP == target IP).
    static IPUTILS_GRATUITOUS: &[u8] = include_bytes!("../tests/fixtures/arp/iputils_gratuitous.bin");
    /// iputils `arping -U -s 10.250.0.1 10.250.0.1` from A configured with .1: a service conflict.
    static IPUTILS_GRATUITOUS_SERVICE: &[u8] =
        include_bytes!("../tests/fixtures/arp/iputils_gratuitous_service.bin");

    const MAC_A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x0a]);
    const MAC_B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x14]);

    fn ip(d: u8) -> Ipv4Address {
        Ipv4Address::new(10, 250, 0, d)
    }

    /// QEMU's self-announcement after a live migration, built from the RFC 903 layout (no QEMU here to
    /// capture one): broadcast, EtherType 0x8035, Ethernet/IPv4 sizes, opcode 3 "request reverse",
    /// sender and target hardware = the guest MAC, both protocol addresses 0, padded to 60 bytes.
    fn rarp_frame(mac: EthernetAddress) -> [u8; 60] {
        let mut f = [0u8; 60];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&mac.0);
        f[12..14].copy_from_slice(&[0x80, 0x35]);
        f[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 3]);
        f[22..28].copy_from_slice(&mac.0);
        f[32..38].copy_from_slice(&mac.0);
        f
    }

    /// A route table for tests: a fixed answer, counting lookups.
    struct MockRoutes {
        answer: RemoteRoute,
        start: bool,
        begun: std::vec::Vec<Ipv4Address>,
    }

    impl MockRoutes {
        fn new(answer: RemoteRoute, start: bool) -> Self {
            Self { answer, start, begun: std::vec::Vec::new() }
        }
    }

    impl RemoteRoutes for MockRoutes {
        fn route(&self, _now: Instant, _ip: Ipv4Address) -> RemoteRoute {
            self.answer
        }
        fn begin_lookup(&mut self, _now: Instant, ip: Ipv4Address) -> bool {
            self.begun.push(ip);
            self.start
        }
    }

    struct Harness<const H: usize = 16, const R: usize = 16, const N: usize = 64, const L: usize = 8> {
        site: Site,
        rng: Rng,
        stats: Stats,
        out: Outbox<64, 16>,
        arp: ArpProxy<H, R, N, L>,
        now: Instant,
    }

    impl<const H: usize, const R: usize, const N: usize, const L: usize> Harness<H, R, N, L> {
        fn new() -> Self {
            let p = NamespaceParams::new([7; 16], "demo", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16))
                .unwrap();
            Self {
                site: Site::new(p).unwrap(),
                rng: Rng::new(1),
                stats: Stats::default(),
                out: Outbox::default(),
                arp: ArpProxy::new(),
                now: Instant::from_secs(100),
            }
        }

        fn with<T>(&mut self, f: impl FnOnce(&mut ArpProxy<H, R, N, L>, &mut Cx<'_>, &Site) -> T) -> T {
            let mut cx = Cx { now: self.now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
            f(&mut self.arp, &mut cx, &self.site)
        }

        fn frame_with(&mut self, frame: &[u8], routes: &mut dyn RemoteRoutes) -> ArpOutcome {
            let eth = EthernetFrame::new_checked(frame).unwrap();
            let src = eth.src_addr();
            match eth.ethertype() {
                EthernetProtocol::Arp => {
                    let repr = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
                    self.with(|arp, cx, site| arp.handle_arp_with(cx, site, routes, src, &repr))
                }
                _ => {
                    self.with(|arp, cx, site| arp.handle_rarp(cx, site, src, eth.payload()));
                    ArpOutcome::Done
                }
            }
        }

        fn frame(&mut self, frame: &[u8]) -> ArpOutcome {
            self.frame_with(frame, &mut NoRoutes)
        }

        fn timeout(&mut self) {
            self.with(|arp, cx, site| arp.handle_timeout(cx, site));
        }

        fn sent(&mut self) -> std::vec::Vec<std::vec::Vec<u8>> {
            let mut v = std::vec::Vec::new();
            let mut buf = [0xa5u8; 1600];
            while let Some(Transmit::Lan(n)) = self.out.pop(&mut self.stats, &mut buf) {
                v.push(buf[..n].to_vec());
            }
            v
        }

        fn events(&mut self) -> std::vec::Vec<Event> {
            core::iter::from_fn(|| self.out.events.pop_front()).collect()
        }
    }

    /// A request from `mac`/`spa` for `tpa`, as an Ethernet frame.
    fn request(mac: EthernetAddress, spa: Ipv4Address, tpa: Ipv4Address) -> [u8; 60] {
        let mut f = [0u8; 60];
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: mac,
            source_protocol_addr: spa,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: tpa,
        };
        wire::emit_arp_frame(&mut f, mac, EthernetAddress::BROADCAST, &repr).unwrap();
        f
    }

    /// The exact ARP frame the router must send (60 bytes, zero padding).
    fn expected(
        router: EthernetAddress,
        dst: EthernetAddress,
        op: u8,
        spa: Ipv4Address,
        tha: EthernetAddress,
        tpa: Ipv4Address,
    ) -> std::vec::Vec<u8> {
        let mut v = std::vec::Vec::new();
        v.extend_from_slice(&dst.0);
        v.extend_from_slice(&router.0);
        v.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op]);
        v.extend_from_slice(&router.0);
        v.extend_from_slice(&spa.octets());
        v.extend_from_slice(&tha.0);
        v.extend_from_slice(&tpa.octets());
        v.resize(60, 0);
        v
    }

    #[test]
    fn answers_a_linux_request_for_the_service_address_with_exact_bytes() {
        let mut h: Harness = Harness::new();
        let out = h.frame(LINUX_REQUEST_SERVICE);
        assert_eq!(out, ArpOutcome::Seen { ip: ip(10), mac: MAC_A });
        let r = h.site.router_mac;
        assert_eq!(h.sent(), [expected(r, MAC_A, 2, ip(1), MAC_A, ip(10))]);
        assert_eq!(h.stats.arp_replies, 1);
        // .2 too.
        h.frame(&request(MAC_A, ip(10), ip(2)));
        assert_eq!(h.sent(), [expected(r, MAC_A, 2, ip(2), MAC_A, ip(10))]);
        assert_eq!(h.stats.arp_replies, 2);
    }

    #[test]
    fn learns_from_a_linux_request_and_reply_without_answering_for_hosts() {
        let mut h: Harness = Harness::new();
        assert_eq!(h.frame(LINUX_REQUEST), ArpOutcome::Seen { ip: ip(10), mac: MAC_A });
        assert_eq!(h.frame(LINUX_REPLY), ArpOutcome::Seen { ip: ip(20), mac: MAC_B });
        assert!(h.sent().is_empty(), "P1 has no remote routes: hosts answer for themselves");
        assert_eq!(h.arp.mac_of(ip(10)), Some(MAC_A));
        assert_eq!(h.arp.ip_of(MAC_B), Some(ip(20)));
        assert_eq!(h.stats.arp_replies, 0);
    }

    #[test]
    fn defends_the_service_address_against_a_busybox_probe() {
        let mut h: Harness = Harness::new();
        assert_eq!(h.frame(BUSYBOX_PROBE_SERVICE), ArpOutcome::Done);
        let r = h.site.router_mac;
        assert_eq!(h.sent(), [expected(r, MAC_A, 2, ip(1), MAC_A, Ipv4Address::UNSPECIFIED)]);
        assert!(h.arp.serving(), "a probe does not claim the address");
    }

    #[test]
    fn never_answers_a_probe_or_a_gratuitous_arp_even_for_a_mapped_remote_address() {
        let mut h: Harness = Harness::new();
        let mut routes = MockRoutes::new(RemoteRoute::Remote, true);
        assert_eq!(h.frame_with(BUSYBOX_PROBE, &mut routes), ArpOutcome::Done);
        assert_eq!(
            h.frame_with(IPUTILS_GRATUITOUS, &mut routes),
            ArpOutcome::Seen { ip: ip(10), mac: MAC_A }
        );
        assert!(h.sent().is_empty());
        assert!(routes.begun.is_empty());
        assert_eq!(h.arp.mac_of(ip(10)), Some(MAC_A), "the announcement is learned");
        assert_eq!(h.arp.mac_of(ip(7)), None, "a probe teaches nothing");
        // The same route table does answer an ordinary request for that remote address.
        h.frame_with(&request(MAC_B, ip(20), ip(7)), &mut routes);
        let r = h.site.router_mac;
        assert_eq!(h.sent(), [expected(r, MAC_B, 2, ip(7), MAC_B, ip(20))]);
    }

    #[test]
    fn does_not_proxy_for_a_host_on_this_lan() {
        let mut h: Harness = Harness::new();
        let mut routes = MockRoutes::new(RemoteRoute::Remote, true);
        h.frame(LINUX_REPLY); // B (.20) is local
        h.frame_with(LINUX_REQUEST, &mut routes); // A asks for .20
        assert!(h.sent().is_empty());
    }

    #[test]
    fn service_conflict_stops_serving_and_clears_after_silent_checks() {
        let mut h: Harness = Harness::new();
        assert_eq!(h.frame(IPUTILS_GRATUITOUS_SERVICE), ArpOutcome::Done);
        assert_eq!(h.events(), [Event::ServiceConflict { ip: ip(1), mac: MAC_A }]);
        assert!(!h.arp.serving());
        // Not serving: the request for .1 goes unanswered, even from another host.
        h.frame(&request(MAC_B, ip(20), ip(1)));
        assert!(h.sent().is_empty());
        // The same claim again is no new event.
        h.frame(IPUTILS_GRATUITOUS_SERVICE);
        assert!(h.events().is_empty());
        let r = h.site.router_mac;
        let check = expected(r, MAC_A, 1, ip(2), EthernetAddress([0; 6]), ip(1));
        for _ in 0..CONFLICT_CLEAR_AFTER {
            h.now = h.arp.poll_at().unwrap();
            h.timeout();
            assert_eq!(h.sent(), std::slice::from_ref(&check), "unicast check of .1 from .2, never a probe");
            assert!(!h.arp.serving());
        }
        h.now = h.arp.poll_at().unwrap();
        h.timeout();
        assert_eq!(h.events(), [Event::ServiceConflictCleared]);
        assert!(h.arp.serving());
        let sent = h.sent();
        assert_eq!(sent.len(), 2, "re-announces .1 and .2");
        h.frame(LINUX_REQUEST_SERVICE);
        assert_eq!(h.sent().len(), 1, "answers again");
    }

    #[test]
    fn a_conflicting_station_that_answers_its_checks_stays_a_conflict() {
        let mut h: Harness = Harness::new();
        h.frame(IPUTILS_GRATUITOUS_SERVICE);
        h.events();
        let mut answer = [0u8; 60];
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: MAC_A,
            source_protocol_addr: ip(1),
            target_hardware_addr: h.site.router_mac,
            target_protocol_addr: ip(2),
        };
        wire::emit_arp_frame(&mut answer, MAC_A, h.site.router_mac, &repr).unwrap();
        for _ in 0..10 {
            h.now = h.arp.poll_at().unwrap();
            h.timeout();
            h.frame(&answer);
        }
        assert!(!h.arp.serving());
        assert!(h.events().is_empty());
        // Another MAC claiming .2 is its own conflict.
        h.frame(&request(MAC_B, ip(2), ip(20)));
        assert_eq!(h.events(), [Event::ServiceConflict { ip: ip(2), mac: MAC_B }]);
    }

    #[test]
    fn a_check_that_could_not_leave_never_clears_a_conflict() {
        let mut h: Harness = Harness::new();
        h.frame(IPUTILS_GRATUITOUS_SERVICE);
        let mut st = Stats::default();
        while crate::queue::Out::push(&mut h.out, &mut st, crate::queue::Dest::Lan, false, &mut |_| Some(1)) {
        }
        for _ in 0..2 * CONFLICT_CLEAR_AFTER {
            h.now = h.arp.poll_at().unwrap();
            h.timeout();
        }
        assert!(!h.arp.serving());
        assert_eq!(h.events(), [Event::ServiceConflict { ip: ip(1), mac: MAC_A }]);
    }

    #[test]
    fn the_node_announces_at_start_then_answers_arp_for_the_service_address() {
        let mut node: crate::Node = crate::Node::new(Harness::<16>::new().site, 1);
        let now = Instant::from_secs(1);
        node.handle_lan(now, LINUX_REQUEST_SERVICE);
        let mut buf = [0u8; crate::queue::FRAME_CAP];
        let mut frames = std::vec::Vec::new();
        while let Some(Transmit::Lan(n)) = node.poll_transmit(now, &mut buf) {
            frames.push(buf[..n].to_vec());
        }
        let r = node.site().router_mac;
        let z = EthernetAddress([0; 6]);
        assert_eq!(
            frames,
            [
                expected(r, EthernetAddress::BROADCAST, 1, ip(1), z, ip(1)),
                expected(r, EthernetAddress::BROADCAST, 1, ip(2), z, ip(2)),
                expected(r, MAC_A, 2, ip(1), MAC_A, ip(10)),
            ]
        );
        assert_eq!(node.stats().arp_replies, 1);
        // A conflict on .1 stops the node's answers.
        node.handle_lan(now, IPUTILS_GRATUITOUS_SERVICE);
        assert_eq!(node.poll_event(), Some(Event::ServiceConflict { ip: ip(1), mac: MAC_A }));
        node.handle_lan(now, &request(MAC_B, ip(20), ip(2)));
        assert_eq!(node.poll_transmit(now, &mut buf), None);
    }

    #[test]
    fn announce_sends_gratuitous_arp_for_both_service_addresses_twice() {
        let mut h: Harness = Harness::new();
        h.with(|arp, cx, site| arp.announce(cx, site));
        let r = h.site.router_mac;
        let z = EthernetAddress([0; 6]);
        let want = [
            expected(r, EthernetAddress::BROADCAST, 1, ip(1), z, ip(1)),
            expected(r, EthernetAddress::BROADCAST, 1, ip(2), z, ip(2)),
        ];
        assert_eq!(h.sent(), want);
        assert_eq!(h.arp.poll_at(), Some(h.now + ANNOUNCE_INTERVAL));
        h.timeout();
        assert!(h.sent().is_empty(), "not before its time");
        h.now += ANNOUNCE_INTERVAL;
        h.timeout();
        assert_eq!(h.sent(), want);
        assert_eq!(h.arp.poll_at(), None);
    }

    #[test]
    fn check_is_unicast_to_the_known_mac_else_broadcast_and_never_a_probe() {
        let mut h: Harness = Harness::new();
        let r = h.site.router_mac;
        let z = EthernetAddress([0; 6]);
        assert!(h.with(|arp, cx, site| arp.check(cx, site, ip(20))));
        assert_eq!(h.sent(), [expected(r, EthernetAddress::BROADCAST, 1, ip(1), z, ip(20))]);
        h.frame(LINUX_REPLY);
        assert!(h.with(|arp, cx, site| arp.check(cx, site, ip(20))));
        assert_eq!(h.sent(), [expected(r, MAC_B, 1, ip(1), z, ip(20))]);
        assert!(!h.with(|arp, cx, site| arp.check(cx, site, Ipv4Address::new(192, 168, 1, 1))));
    }

    #[test]
    fn rarp_refreshes_last_seen_of_a_known_mac_only() {
        let mut h: Harness = Harness::new();
        h.frame(LINUX_REQUEST);
        let learned = h.now;
        h.now += Duration::from_secs(600);
        let rarp = rarp_frame(MAC_A);
        assert!(h.with(|arp, cx, site| arp.handle_rarp(cx, site, MAC_A, &rarp[14..])) == Some(ip(10)));
        assert_eq!(h.arp.last_seen(MAC_A), Some(h.now));
        // Without the refresh the entry would have aged out here.
        h.now = learned + HOST_TTL;
        h.timeout();
        assert_eq!(h.arp.mac_of(ip(10)), Some(MAC_A));
        // Unknown MAC: nothing learned; spoofed sender: ignored.
        assert_eq!(h.with(|arp, cx, site| arp.handle_rarp(cx, site, MAC_B, &rarp_frame(MAC_B)[14..])), None);
        assert_eq!(h.arp.host_count(), 1);
        let before = h.arp.last_seen(MAC_A);
        h.now += Duration::from_secs(1);
        assert_eq!(h.with(|arp, cx, site| arp.handle_rarp(cx, site, MAC_B, &rarp[14..])), None);
        assert_eq!(h.arp.last_seen(MAC_A), before);
        // Truncated: malformed.
        h.with(|arp, cx, site| arp.handle_rarp(cx, site, MAC_A, &rarp[14..30]));
        assert_eq!(h.stats.malformed, 1);
    }

    #[test]
    fn index_is_bounded_evicts_least_recently_seen_and_ages_out() {
        let mut h: Harness<4> = Harness::new();
        let site = h.site.clone();
        for i in 0..4u8 {
            h.arp.learn(
                h.now + Duration::from_secs(u64::from(i)),
                &site,
                EthernetAddress([2, 0, 0, 0, 1, i]),
                ip(30 + i),
            );
        }
        // Host 0 is refreshed, so host 1 is now the least recently seen.
        h.arp.learn(h.now + Duration::from_secs(10), &site, EthernetAddress([2, 0, 0, 0, 1, 0]), ip(30));
        h.arp.learn(h.now + Duration::from_secs(11), &site, EthernetAddress([2, 0, 0, 0, 1, 9]), ip(39));
        assert_eq!(h.arp.host_count(), 4);
        assert_eq!(h.arp.mac_of(ip(31)), None);
        assert!(h.arp.mac_of(ip(30)).is_some() && h.arp.mac_of(ip(39)).is_some());
        // Aging: host 2 (seen at +2 s) expires first.
        assert_eq!(h.arp.poll_at(), Some(h.now + Duration::from_secs(2) + HOST_TTL));
        h.now = h.now + Duration::from_secs(2) + HOST_TTL;
        h.timeout();
        assert_eq!(h.arp.mac_of(ip(32)), None);
        assert_eq!(h.arp.host_count(), 3);
    }

    #[test]
    fn learn_keeps_one_pairing_and_only_vn_hosts() {
        let mut h: Harness = Harness::new();
        let site = h.site.clone();
        let now = h.now;
        h.arp.learn(now, &site, MAC_A, ip(10));
        h.arp.learn(now, &site, MAC_B, ip(10)); // the address moved to B
        assert_eq!(h.arp.mac_of(ip(10)), Some(MAC_B));
        assert_eq!(h.arp.ip_of(MAC_A), None);
        h.arp.learn(now, &site, MAC_B, ip(11)); // B changed address
        assert_eq!(h.arp.mac_of(ip(10)), None);
        assert_eq!(h.arp.host_count(), 1);
        for bad in
            [ip(1), ip(2), ip(0), Ipv4Address::new(10, 250, 255, 255), Ipv4Address::new(192, 168, 0, 5)]
        {
            h.arp.learn(now, &site, MAC_A, bad);
        }
        h.arp.learn(now, &site, site.router_mac, ip(12));
        h.arp.learn(now, &site, EthernetAddress::BROADCAST, ip(13));
        h.arp.learn(now, &site, EthernetAddress([0; 6]), ip(14));
        assert_eq!(h.arp.host_count(), 1);
    }

    #[test]
    fn remote_lookup_answers_the_waiting_requester_and_negative_caches_misses() {
        let mut h: Harness = Harness::new();
        let mut routes = MockRoutes::new(RemoteRoute::Unknown, true);
        h.frame_with(&request(MAC_B, ip(20), ip(50)), &mut routes);
        h.frame_with(&request(MAC_B, ip(20), ip(50)), &mut routes); // retransmission: no second lookup
        assert_eq!(routes.begun, [ip(50)]);
        assert!(h.sent().is_empty());
        h.with(|arp, cx, site| arp.lookup_done(cx, site, ip(50), true));
        let r = h.site.router_mac;
        assert_eq!(h.sent(), [expected(r, MAC_B, 2, ip(50), MAC_B, ip(20))]);
        // A miss is negative-cached: the next request starts no lookup until NEGATIVE_TTL passes.
        h.frame_with(&request(MAC_B, ip(20), ip(51)), &mut routes);
        h.with(|arp, cx, site| arp.lookup_done(cx, site, ip(51), false));
        h.frame_with(&request(MAC_B, ip(20), ip(51)), &mut routes);
        assert_eq!(routes.begun, [ip(50), ip(51)]);
        h.now += NEGATIVE_TTL;
        h.frame_with(&request(MAC_B, ip(20), ip(51)), &mut routes);
        assert_eq!(routes.begun, [ip(50), ip(51), ip(51)]);
        assert!(h.sent().is_empty());
    }

    #[test]
    fn a_scan_from_one_requester_is_rate_limited_by_its_token_bucket() {
        let mut h: Harness = Harness::new();
        // P1-like: no lookup can start, so each new address costs a token and is negative-cached.
        let mut routes = MockRoutes::new(RemoteRoute::Unknown, false);
        for i in 0..100u8 {
            h.frame_with(&request(MAC_A, ip(10), Ipv4Address::new(10, 250, 1, i)), &mut routes);
        }
        assert_eq!(routes.begun.len(), REQUESTER_BURST as usize);
        assert_eq!(h.stats.arp_rate_limited, 100 - u64::from(REQUESTER_BURST));
        // Another requester has its own bucket.
        h.frame_with(&request(MAC_B, ip(20), Ipv4Address::new(10, 250, 2, 1)), &mut routes);
        assert_eq!(routes.begun.len(), REQUESTER_BURST as usize + 1);
        // One refill interval later, one more lookup for A.
        h.now += REQUESTER_REFILL;
        for i in 100..110u8 {
            h.frame_with(&request(MAC_A, ip(10), Ipv4Address::new(10, 250, 1, i)), &mut routes);
        }
        assert_eq!(routes.begun.len(), REQUESTER_BURST as usize + 2);
    }

    #[test]
    fn lookups_in_flight_are_capped_and_time_out_into_the_negative_cache() {
        let mut h: Harness<16, 16, 64, 4> = Harness::new();
        let mut routes = MockRoutes::new(RemoteRoute::Unknown, true);
        for i in 0..6u8 {
            let mac = EthernetAddress([2, 0, 0, 0, 2, i]);
            h.frame_with(&request(mac, ip(100 + i), ip(200 + i)), &mut routes);
        }
        assert_eq!(routes.begun.len(), 4);
        assert_eq!(h.stats.arp_rate_limited, 2);
        assert_eq!(h.arp.poll_at(), Some(h.now + LOOKUP_TIMEOUT));
        h.now += LOOKUP_TIMEOUT;
        h.timeout();
        // Timed out: the table has room again, and the timed-out addresses are negative-cached.
        let mac = EthernetAddress([2, 0, 0, 0, 2, 0]);
        h.frame_with(&request(mac, ip(100), ip(200)), &mut routes);
        assert_eq!(routes.begun.len(), 4);
        h.frame_with(&request(mac, ip(100), ip(210)), &mut routes);
        assert_eq!(routes.begun.len(), 5);
    }

    #[test]
    fn full_requester_table_reuses_idle_buckets_and_refuses_while_all_are_busy() {
        let mut h: Harness<16, 2> = Harness::new();
        let mut routes = MockRoutes::new(RemoteRoute::Unknown, false);
        let (a, b, c) = (MAC_A, MAC_B, EthernetAddress([2, 0, 0, 0, 0, 0x1e]));
        h.frame_with(&request(a, ip(10), ip(50)), &mut routes);
        h.frame_with(&request(b, ip(20), ip(51)), &mut routes);
        h.frame_with(&request(c, ip(30), ip(52)), &mut routes);
        assert_eq!(routes.begun, [ip(50), ip(51)], "both buckets in use: the newcomer waits");
        assert_eq!(h.stats.arp_rate_limited, 1);
        h.now += REQUESTER_REFILL; // both refilled: idle, so reusable
        h.frame_with(&request(c, ip(30), ip(52)), &mut routes);
        assert_eq!(routes.begun, [ip(50), ip(51), ip(52)]);
    }

    #[test]
    fn negative_cache_is_bounded_and_replaces_the_entry_expiring_first() {
        let mut h: Harness<16, 16, 2> = Harness::new();
        let mut routes = MockRoutes::new(RemoteRoute::Unknown, false);
        for (i, t) in [(50, 0), (51, 1), (52, 2)] {
            h.now = Instant::from_secs(100 + t);
            h.frame_with(&request(MAC_A, ip(10), ip(i)), &mut routes);
        }
        // .50 was replaced by .52, .51 is still cached.
        h.frame_with(&request(MAC_A, ip(10), ip(51)), &mut routes);
        h.frame_with(&request(MAC_A, ip(10), ip(50)), &mut routes);
        assert_eq!(routes.begun, [ip(50), ip(51), ip(52), ip(50)]);
    }

    #[test]
    fn nothing_is_answered_while_not_serving_nor_for_non_members() {
        let mut h: Harness = Harness::new();
        let mut routes = MockRoutes::new(RemoteRoute::Remote, true);
        // A requester outside the VN gets no proxy answer for a VN address.
        h.frame_with(&request(MAC_A, Ipv4Address::new(192, 168, 1, 5), ip(50)), &mut routes);
        assert!(h.sent().is_empty());
        h.frame(IPUTILS_GRATUITOUS_SERVICE);
        h.frame_with(&request(MAC_B, ip(20), ip(50)), &mut routes);
        h.frame_with(&request(MAC_B, ip(20), ip(2)), &mut routes);
        assert!(h.sent().is_empty());
        assert_eq!(h.stats.arp_replies, 0);
    }

    #[test]
    fn token_bucket_refills_one_per_interval_up_to_burst() {
        let t0 = Instant::from_secs(5);
        let mut b = TokenBucket::new(t0, 3, Duration::from_millis(100));
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(!b.take(t0 + Duration::from_millis(99)));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(150)));
        assert!(b.take(t0 + Duration::from_millis(200)), "the remainder of the interval is kept");
        assert!(!b.is_full(t0 + Duration::from_millis(400)));
        assert!(b.is_full(t0 + Duration::from_secs(10)));
        // Time going backwards never adds tokens nor panics.
        let mut c = TokenBucket::new(t0, 1, Duration::from_secs(1));
        assert!(c.take(t0));
        assert!(!c.take(Instant::from_secs(1)));
    }
}
