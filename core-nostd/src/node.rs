//! One VN endpoint: the single entry point a runtime talks to (DESIGN.md "vn-core: the node").
//!
//! Inputs are `handle_*` calls with the current monotonic time; outputs are drained with
//! [`Node::poll_transmit`] and [`Node::poll_event`]; [`Node::poll_at`] says when to call
//! [`Node::handle_timeout`] (calling it early is harmless). P1 serves one site in router mode:
//! proxy ARP for the service block, DHCP, DNS and ICMP echo at the service addresses.

use core::net::SocketAddr;

use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr,
};

use crate::arp::{ArpOutcome, ArpProxy};
use crate::config::Site;
use crate::dhcp::{Allocator, Binding, DhcpServer, LocalPool, NameTable};
use crate::dns::DnsServer;
use crate::encap::{self, MtuVerdict, PmtuGuard};
use crate::event::Event;
use crate::overlay::{NameSource, Overlay, OverlayConfig};
use crate::queue::{Cx, Dest, Outbox, Transmit};
use crate::rand::Rng;
use crate::secure::{Secure, SecurityConfig, SecurityError, Up};
use crate::stats::Stats;
use crate::wire::{self, UdpMeta, ETHERTYPE_RARP};

pub mod command;

/// DHCP server port.
const DHCP_SERVER_PORT: u16 = 67;
/// DNS port.
const DNS_PORT: u16 = 53;

/// A VN endpoint with its capacities:
/// `LEASES` DHCP bindings, `HOSTS` entries in the LAN's MAC->IP index, `DNSQ` forwarded DNS queries in
/// flight, `TXQ` queued outputs (each [`crate::queue::FRAME_CAP`] bytes), `EVQ` queued events.
pub struct Node<
    const LEASES: usize = 64,
    const HOSTS: usize = 256,
    const DNSQ: usize = 32,
    const TXQ: usize = 8,
    const EVQ: usize = 32,
> {
    site: Site,
    rng: Rng,
    stats: Stats,
    out: Outbox<TXQ, EVQ>,
    arp: ArpProxy<HOSTS>,
    dhcp: DhcpServer<LEASES>,
    pool: LocalPool,
    dns: DnsServer<DNSQ>,
    started: bool,
    overlay: Option<Overlay>,
    pmtu: PmtuGuard,
    admin: command::Admin,
    parked: heapless::Vec<Parked, PARKED>,
    /// Sessions and certificates ([`crate::secure`]); `None`: an unsecured overlay (tests, P2).
    secure: Option<Secure>,
}

/// Data messages held while the owner of their inner source is read from the DHT (the first packet
/// from a new correspondent, which source validation cannot pass yet). When full, the oldest goes.
pub const PARKED: usize = 4;
/// How long a parked data message waits for its source's owner.
pub const PARK_WAIT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(2);
/// Room for one overlay data message.
const PARK_CAP: usize = encap::MAX_FRAME + crate::wire::overlay::OVERHEAD + 32;

/// A data message waiting for the read of its inner source's owner.
struct Parked {
    from: SocketAddr,
    src: Ipv4Address,
    at: Instant,
    len: usize,
    buf: [u8; PARK_CAP],
}

/// The defaults: 64 leases, 256 hosts, 32 DNS queries, 8 + 8 outputs (free and held), 32 events
/// (about 25 KiB of queue).
pub type DefaultNode = Node;

impl<const LEASES: usize, const HOSTS: usize, const DNSQ: usize, const TXQ: usize, const EVQ: usize>
    Node<LEASES, HOSTS, DNSQ, TXQ, EVQ>
{
    /// A node for `site`, with `seed` for protocol randomness (DNS ids and ports; never key material).
    pub fn new(site: Site, seed: u64) -> Self {
        Self {
            pool: LocalPool::new(&site),
            site,
            rng: Rng::new(seed),
            stats: Stats::default(),
            out: Outbox::default(),
            arp: ArpProxy::new(),
            dhcp: DhcpServer::new(),
            dns: DnsServer::new(),
            started: false,
            overlay: None,
            pmtu: PmtuGuard::new(),
            admin: command::Admin::default(),
            parked: heapless::Vec::new(),
            secure: None,
        }
    }

    /// A node for `site` that joins the overlay (P2): membership, the DHT, addresses claimed in the
    /// DHT, routes to other sites (see [`crate::overlay`]). With `overlay.lan` false it is a standalone
    /// storage node: it ignores the LAN side entirely.
    pub fn with_overlay(site: Site, seed: u64, overlay: OverlayConfig) -> Self {
        let mut n = Self::new(site, seed);
        let dht_seed = n.rng.next_u32() as u64 | (u64::from(n.rng.next_u32()) << 32);
        n.overlay = Some(Overlay::new(&n.site, dht_seed, overlay));
        n
    }

    /// A node that joins a secured overlay: every message between nodes goes through a Noise IK
    /// session with a certified peer ([`crate::secure`]). Fails when our own certificate does not
    /// verify for this namespace or names another noise key.
    pub fn with_security(
        site: Site,
        seed: u64,
        overlay: OverlayConfig,
        security: SecurityConfig,
        now: Instant,
    ) -> Result<Self, SecurityError> {
        let secure = Secure::new(&site.params.id, security, now)?;
        let mut n = Self::with_overlay(site, seed, overlay);
        n.secure = Some(secure);
        Ok(n)
    }

    /// SNTP servers for the wall clock that certificates are checked against (secured overlays only;
    /// see [`Secure::set_sntp_servers`]).
    pub fn set_sntp_servers(&mut self, now: Instant, servers: &[SocketAddr]) {
        if let Some(sec) = self.secure.as_mut() {
            sec.set_sntp_servers(now, servers);
        }
    }

    /// Takes a newer revocation list (exact CA-signed bytes, e.g. from `hostctl node revoke`): see
    /// [`Secure::set_revocation_list`]. Returns the version now held; an error when the list does not
    /// verify or the overlay is not secured.
    pub fn set_revocation_list(&mut self, now: Instant, bytes: &[u8]) -> Result<u64, crate::cert::CertError> {
        let Some(sec) = self.secure.as_mut() else { return Err(crate::cert::CertError::Malformed) };
        sec.set_revocation_list(now, &mut self.stats, &mut self.out, bytes, None)
    }

    /// The secured side, when the overlay is secured.
    pub fn secure(&self) -> Option<&Secure> {
        self.secure.as_ref()
    }

    /// The secured side, to reseed its CSPRNG or replace the revocation list.
    pub fn secure_mut(&mut self) -> Option<&mut Secure> {
        self.secure.as_mut()
    }

    /// The overlay state, when the node joined one.
    pub fn overlay(&self) -> Option<&Overlay> {
        self.overlay.as_ref()
    }

    /// Sets how many free addresses the overlay keeps claimed ahead of DHCP
    /// ([`Overlay::set_preclaim`]); no-op without an overlay.
    pub fn set_preclaim(&mut self, n: usize) {
        if let Some(o) = self.overlay.as_mut() {
            o.set_preclaim(n);
        }
    }

    /// Opts in to multicast groups carried to the other sites (none by default; e.g.
    /// [`crate::bcast::MDNS`]). Returns false without an overlay or when some beyond
    /// [`crate::bcast::GROUPS`] were left out.
    pub fn set_bcast_groups(&mut self, groups: &[crate::bcast::Group]) -> bool {
        self.overlay.as_mut().is_some_and(|o| o.bcast_mut().set_groups(groups))
    }

    fn serves_lan(&self) -> bool {
        self.overlay.as_ref().is_none_or(|o| o.lan())
    }

    /// Passes the finished route reads to proxy ARP and the finished hostname reads to DNS.
    fn drain_routes(&mut self, now: Instant) {
        let Some(o) = self.overlay.as_mut() else { return };
        let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        let mut done: heapless::Vec<Ipv4Address, 8> = heapless::Vec::new();
        while let Some((ip, found)) = o.take_route_done() {
            self.arp.lookup_done(&mut cx, &self.site, ip, found);
            // More reads ending at once than tracked here: their parked packets age out instead.
            let _ = done.push(ip);
        }
        while let Some((label, answer)) = o.take_host_done() {
            self.dns.host_done(&mut cx, &self.site, &label, answer);
        }
        self.drain_commands(now);
        self.replay_parked(now, &done);
    }

    /// Deliver (or drop, counted) the parked data messages whose source's owner was just read; drop
    /// those that waited longer than [`PARK_WAIT`].
    fn replay_parked(&mut self, now: Instant, done: &[Ipv4Address]) {
        let mut i = 0;
        while i < self.parked.len() {
            let p = &self.parked[i];
            if done.contains(&p.src) {
                let p = self.parked.swap_remove(i);
                self.deliver_with(now, p.from, &p.buf[..p.len], false);
            } else if now >= p.at + PARK_WAIT {
                self.parked.swap_remove(i);
                self.stats.overlay_src_invalid += 1;
            } else {
                i += 1;
            }
        }
    }

    /// Tells the overlay about leases granted and ended since event `from`.
    fn leases_changed(&mut self, now: Instant, from: usize) {
        let Some(o) = self.overlay.as_mut() else { return };
        // Bounded: a change beyond it (many leases ending at once) leaves the address claimed and
        // bound in the pool until it is granted or ends again; never a double claim.
        // (ip, granted; ended when false, `None` when only its name ends).
        let mut changes: heapless::Vec<(Ipv4Address, Option<bool>), 64> = heapless::Vec::new();
        for ev in self.out.events.iter().skip(from) {
            let _ = match *ev {
                Event::LeaseGranted { ip, .. } => changes.push((ip, Some(true))),
                Event::LeaseEnded { ip, .. } => changes.push((ip, Some(false))),
                // A quarantined binding loses its name; the address stays claimed.
                Event::AddressDeclined { ip, .. } => changes.push((ip, None)),
                _ => Ok(()),
            };
        }
        let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        for (ip, change) in changes {
            // The lease's hostname as the DHCP server registered it (first wins at this site); an
            // address the admin named keeps the admin's name.
            match self.dhcp.name_of(ip).filter(|_| change == Some(true)) {
                _ if self.admin.named(ip) => {}
                Some(name) => o.register_name(&mut cx, name, ip, NameSource::Lease),
                None => o.unregister_ip(&mut cx, ip),
            }
            match change {
                Some(true) => o.lease_granted(&mut cx, ip),
                Some(false) => o.lease_ended(&mut cx, ip),
                None => {}
            }
        }
        o.pump_with(&mut cx, &self.site);
    }

    /// A frame or ARP from `(ip, mac)` on the LAN (`answer`: an ARP reply to the router): for an
    /// address of the static range, check it, or claim it once the check is answered
    /// ([`crate::statics`]). Without an overlay (P1) nothing happens: the range is only validated.
    // HOT PATH (every IPv4 frame from a VN host)
    fn static_seen(&mut self, now: Instant, ip: Ipv4Address, mac: EthernetAddress, answer: bool) {
        if !self.site.params.static_range.is_some_and(|r| r.contains(ip)) {
            return;
        }
        let Some(o) = self.overlay.as_mut() else { return };
        let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        if answer {
            o.static_confirmed(&mut cx, ip, mac);
            o.pump_with(&mut cx, &self.site);
            return;
        }
        let dhcp = &self.dhcp;
        if o.static_seen(&mut cx, ip, mac, &|ip| dhcp.bindings(now).any(|b| b.ip == ip)) {
            self.arp.check_at(&mut cx, &self.site, ip, Some(mac));
        }
    }

    /// The site this node serves.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Reload a persisted binding (at start, before any traffic): valid for one full lease from `now`.
    /// Returns false when the binding no longer fits the namespace (outside the pool) or the table is full.
    pub fn restore_binding(&mut self, now: Instant, binding: &Binding) -> bool {
        let ok = self.dhcp.restore(now, &self.site, binding);
        if ok {
            self.arp.learn(now, &self.site, binding.mac, binding.ip);
            if let Some(o) = self.overlay.as_mut() {
                let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
                o.restore(&mut cx, binding.ip);
                if let Some(name) = self.dhcp.name_of(binding.ip) {
                    o.register_name(&mut cx, name, binding.ip, NameSource::Lease);
                }
            }
        }
        ok
    }

    /// The current bindings with their remaining durations, for the runtime to persist.
    pub fn bindings(&self, now: Instant) -> impl Iterator<Item = Binding> + '_ {
        self.dhcp.bindings(now)
    }

    /// A point to persist at: take it, then write [`Node::bindings`], then pass it to
    /// [`Node::bindings_persisted`]. Held frames (ACKs of new bindings) queued before it may then leave;
    /// later ones wait for the next write. Other outputs never wait.
    pub fn persist_checkpoint(&self) -> crate::queue::PersistToken {
        self.out.checkpoint()
    }

    /// The binding table as of `token` is durable: the ACKs that depend on it may leave.
    pub fn bindings_persisted(&mut self, token: crate::queue::PersistToken) {
        self.out.release(token);
    }

    /// For runtimes without persistent storage (a microcontroller without flash to spare): held
    /// frames leave at once.
    pub fn release_held(&mut self) {
        self.out.release_all();
    }

    fn cx_parts(
        &mut self,
        now: Instant,
    ) -> (Cx<'_>, &Site, &mut ArpProxy<HOSTS>, &mut DhcpServer<LEASES>, &mut LocalPool, &mut DnsServer<DNSQ>)
    {
        (
            Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out },
            &self.site,
            &mut self.arp,
            &mut self.dhcp,
            &mut self.pool,
            &mut self.dns,
        )
    }

    fn ensure_started(&mut self, now: Instant) {
        if !self.started {
            self.started = true;
            let serves_lan = self.serves_lan();
            let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
            if serves_lan {
                self.arp.announce(&mut cx, &self.site);
            }
            if let Some(o) = self.overlay.as_mut() {
                o.start(&mut cx);
            }
        }
    }

    /// A frame from the LAN side. Malformed frames are dropped and counted, never a panic.
    // HOT PATH
    pub fn handle_lan(&mut self, now: Instant, frame: &[u8]) {
        self.ensure_started(now);
        self.stats.lan_rx += 1;
        if !self.serves_lan() {
            self.stats.other_dropped += 1;
            return;
        }
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.stats.malformed += 1;
            return;
        };
        let src_mac = eth.src_addr();
        if src_mac == self.site.router_mac || !src_mac.is_unicast() {
            // Our own MAC from elsewhere (another router on this LAN: P2's LAN hello handles it) or a
            // forged multicast source: never learn from it.
            self.stats.other_dropped += 1;
            return;
        }
        match eth.ethertype() {
            EthernetProtocol::Arp => self.lan_arp(now, src_mac, eth.payload()),
            EthernetProtocol::Ipv4 => self.lan_ipv4(now, src_mac, eth.dst_addr(), eth.payload()),
            EthernetProtocol::Ipv6 => self.stats.ipv6_dropped += 1,
            EthernetProtocol::Unknown(ETHERTYPE_RARP) => {
                let (mut cx, site, arp, ..) = self.cx_parts(now);
                arp.handle_rarp(&mut cx, site, src_mac, eth.payload());
            }
            _ => self.stats.other_dropped += 1,
        }
    }

    fn lan_arp(&mut self, now: Instant, src_mac: EthernetAddress, payload: &[u8]) {
        let repr = match ArpPacket::new_checked(payload).and_then(|p| ArpRepr::parse(&p)) {
            Ok(r) => r,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        let site = &self.site;
        let outcome = match self.overlay.as_mut() {
            Some(o) => {
                let outcome = self.arp.handle_arp_with(&mut cx, site, o, src_mac, &repr);
                o.pump_with(&mut cx, site);
                outcome
            }
            None => self.arp.handle_arp(&mut cx, site, src_mac, &repr),
        };
        if let ArpOutcome::Seen { ip, mac } = outcome {
            let alloc: &mut dyn Allocator = match self.overlay.as_mut() {
                Some(o) => o.allocator(now),
                None => &mut self.pool,
            };
            self.dhcp.on_address_seen(&mut cx, site, alloc, ip, mac);
            // A reply addressed to the router (our check asks from a service address).
            let answer = matches!(repr, ArpRepr::EthernetIpv4 {
                operation: smoltcp::wire::ArpOperation::Reply,
                target_hardware_addr,
                target_protocol_addr,
                ..
            } if target_hardware_addr == site.router_mac && site.params.is_service_addr(target_protocol_addr));
            self.static_seen(now, ip, mac, answer);
        }
        self.drain_routes(now);
    }

    fn lan_ipv4(&mut self, now: Instant, src_mac: EthernetAddress, dst_mac: EthernetAddress, payload: &[u8]) {
        let Ok(ip) = Ipv4Packet::new_checked(payload) else {
            self.stats.malformed += 1;
            return;
        };
        let Ok(repr) = Ipv4Repr::parse(&ip, &smoltcp::phy::ChecksumCapabilities::default()) else {
            self.stats.malformed += 1;
            return;
        };
        let (src, dst) = (repr.src_addr, repr.dst_addr);
        if self.site.params.is_vn_host(src) {
            self.arp.learn(now, &self.site, src_mac, src);
            self.static_seen(now, src, src_mac, false);
        }
        let for_service = self.site.params.is_service_addr(dst);
        let broadcast = dst == Ipv4Address::BROADCAST || dst == self.site.params.broadcast();
        let body = &ip.payload()[..repr.payload_len.min(ip.payload().len())];
        if broadcast || dst.is_multicast() {
            if let Some(o) = self.overlay.as_mut() {
                let len = usize::from(ip.total_len()).min(payload.len());
                let packet = &payload[..len];
                if crate::bcast::allowlist(&self.site, o.bcast().groups(), dst_mac, packet)
                    == crate::bcast::Verdict::Forward
                {
                    if !self.arp.serving() {
                        self.stats.stopped_drops += 1;
                        return;
                    }
                    let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
                    crate::bcast::send(&mut cx, &self.site, o, src_mac, dst_mac, packet);
                    return;
                }
            }
        }
        match repr.next_header {
            IpProtocol::Udp if for_service || broadcast => {
                let Ok((src_port, dst_port, udp_payload)) = wire::parse_udp(src, dst, body) else {
                    self.stats.malformed += 1;
                    return;
                };
                let meta = UdpMeta { src_mac, dst_mac, src_ip: src, dst_ip: dst, src_port, dst_port };
                if !self.arp.serving() {
                    self.stats.stopped_drops += 1;
                    return;
                }
                let events_before = self.out.events.len();
                if dst_port == DHCP_SERVER_PORT {
                    self.refresh_reservations(now);
                }
                let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
                let (site, dhcp, dns) = (&self.site, &mut self.dhcp, &mut self.dns);
                match dst_port {
                    DHCP_SERVER_PORT => {
                        cx.stats.dhcp_rx += 1;
                        let alloc: &mut dyn Allocator = match self.overlay.as_mut() {
                            Some(o) => o.allocator(now),
                            None => &mut self.pool,
                        };
                        let client = command::chaddr(udp_payload).unwrap_or(src_mac);
                        let mut alloc = command::with_reservations(&self.admin, alloc, client);
                        dhcp.handle(&mut cx, site, &mut alloc, &meta, udp_payload);
                        // A lease granted to a host on this LAN teaches the MAC->IP index at once
                        // (before the host sends anything from its new address).
                        for ev in self.out.events.iter().skip(events_before) {
                            if let Event::LeaseGranted { ip, mac, .. } = *ev {
                                if meta.src_mac == mac {
                                    self.arp.learn(now, &self.site, mac, ip);
                                }
                            }
                        }
                        self.leases_changed(now, events_before);
                    }
                    DNS_PORT if dst == site.dns_addr => {
                        cx.stats.dns_rx += 1;
                        match self.overlay.as_mut() {
                            Some(o) => {
                                dns.handle_query_with(&mut cx, site, &*dhcp, o, &meta, udp_payload);
                                o.pump_with(&mut cx, site);
                            }
                            None => dns.handle_query(&mut cx, site, &*dhcp, &meta, udp_payload),
                        }
                        self.drain_routes(now);
                    }
                    _ => cx.stats.other_dropped += 1,
                }
            }
            IpProtocol::Icmp if for_service => self.echo_reply(src_mac, &repr, body),
            _ if broadcast || dst.is_multicast() => self.stats.other_dropped += 1,
            _ if dst_mac == self.site.router_mac
                && self.site.params.is_vn_host(dst)
                && self.overlay.is_some() =>
            {
                let len = usize::from(ip.total_len()).min(payload.len());
                self.tunnel(now, src_mac, src, dst, &payload[..len])
            }
            _ if dst_mac == self.site.router_mac && self.site.default_route() => {
                let len = usize::from(ip.total_len()).min(payload.len());
                self.egress(now, src, dst, &payload[..len]);
            }
            _ if dst_mac == self.site.router_mac => self.stats.no_route += 1,
            _ => self.stats.other_dropped += 1,
        }
    }

    /// A packet from a host on the LAN to a destination outside the VN, through `.2` (a router of a
    /// namespace with egress): it leaves as [`Transmit::Egress`], the IP packet alone, for the runtime's
    /// TUN device (which the OS routes and masquerades to the WAN). Only sources this site serves may
    /// leave: a VN address held here (with an overlay) or leased here (without).
    fn egress(&mut self, now: Instant, src: Ipv4Address, dst: Ipv4Address, packet: &[u8]) {
        let ours = match self.overlay.as_ref() {
            Some(o) => o.holds_ip(now, src),
            None => self.site.params.is_vn_host(src) && self.dhcp.is_bound(src),
        };
        if !ours || self.site.params.subnet.contains_addr(&dst) {
            self.stats.egress_refused += 1;
            return;
        }
        if crate::queue::Out::push_bytes(&mut self.out, &mut self.stats, Dest::Egress, packet) {
            self.stats.egress_tx += 1;
        }
    }

    /// An IPv4 packet from the runtime's egress TUN device (an answer from outside the VN): delivered to
    /// the host on this LAN that holds its destination, from the router MAC. A source inside the VN's
    /// subnet (spoofed from outside) or a destination no host here holds is dropped and counted.
    pub fn handle_egress(&mut self, now: Instant, packet: &[u8]) {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            self.stats.malformed += 1;
            return;
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let len = usize::from(ip.total_len()).min(packet.len());
        let held = self.overlay.as_ref().is_none_or(|o| o.holds_ip(now, dst));
        let mac = self.arp.mac_of(dst);
        let (true, Some(mac), false) = (held, mac, self.site.params.subnet.contains_addr(&src)) else {
            self.stats.egress_refused += 1;
            return;
        };
        let router_mac = self.site.router_mac;
        let ok = crate::queue::Out::push(&mut self.out, &mut self.stats, Dest::Lan, false, &mut |buf| {
            let total = wire::ETHERNET_HEADER_LEN + len;
            let b = buf.get_mut(..total)?;
            let mut eth = EthernetFrame::new_unchecked(&mut b[..]);
            smoltcp::wire::EthernetRepr {
                src_addr: router_mac,
                dst_addr: mac,
                ethertype: EthernetProtocol::Ipv4,
            }
            .emit(&mut eth);
            eth.payload_mut().copy_from_slice(&packet[..len]);
            Some(total)
        });
        if ok {
            self.stats.egress_rx += 1;
        }
    }

    /// Answer ICMP echo to a service address, so hosts can ping their gateway and DNS server.
    fn echo_reply(&mut self, src_mac: EthernetAddress, ip: &Ipv4Repr, body: &[u8]) {
        let caps = smoltcp::phy::ChecksumCapabilities::default();
        let Ok(icmp) = Icmpv4Packet::new_checked(body) else {
            self.stats.malformed += 1;
            return;
        };
        let Ok(Icmpv4Repr::EchoRequest { ident, seq_no, data }) = Icmpv4Repr::parse(&icmp, &caps) else {
            self.stats.other_dropped += 1;
            return;
        };
        if !self.arp.serving() {
            self.stats.stopped_drops += 1;
            return;
        }
        let reply = Icmpv4Repr::EchoReply { ident, seq_no, data };
        let out_ip = Ipv4Repr {
            src_addr: ip.dst_addr,
            dst_addr: ip.src_addr,
            next_header: IpProtocol::Icmp,
            payload_len: reply.buffer_len(),
            hop_limit: 64,
        };
        let router_mac = self.site.router_mac;
        let ok = crate::queue::Out::push(
            &mut self.out,
            &mut self.stats,
            crate::queue::Dest::Lan,
            false,
            &mut |buf| {
                let total = wire::ETHERNET_HEADER_LEN + out_ip.buffer_len() + reply.buffer_len();
                if buf.len() < total {
                    return None;
                }
                let mut eth = EthernetFrame::new_unchecked(&mut buf[..total]);
                smoltcp::wire::EthernetRepr {
                    src_addr: router_mac,
                    dst_addr: src_mac,
                    ethertype: EthernetProtocol::Ipv4,
                }
                .emit(&mut eth);
                let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
                out_ip.emit(&mut ipp, &caps);
                let mut icmp = Icmpv4Packet::new_unchecked(ipp.payload_mut());
                reply.emit(&mut icmp, &caps);
                Some(total)
            },
        );
        if ok {
            self.stats.icmp_echo_replies += 1;
        }
    }

    /// An IPv4 packet from the LAN to the router MAC for VN host `dst`: tunnelled to `dst`'s owner when
    /// `src` is an address this node holds and the route is known; otherwise dropped and counted (an
    /// unknown route starts a read, so a retransmission finds it).
    fn tunnel(
        &mut self,
        now: Instant,
        src_mac: EthernetAddress,
        src: Ipv4Address,
        dst: Ipv4Address,
        packet: &[u8],
    ) {
        let Some(o) = self.overlay.as_mut() else { return };
        let is_static = self.site.params.static_range.is_some_and(|r| r.contains(src));
        if !o.holds_ip(now, src) || (is_static && !o.static_allows(now, src, src_mac)) {
            self.stats.overlay_src_not_owned += 1;
            return;
        }
        let Some((_owner, to)) = o.route(now, dst) else {
            self.stats.no_route += 1;
            o.resolve(now, dst);
            let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
            o.pump_with(&mut cx, &self.site);
            return;
        };
        let mut frame = [0u8; encap::MAX_FRAME];
        let flen = wire::ETHERNET_HEADER_LEN + packet.len();
        let Some(f) = frame.get_mut(..flen) else {
            self.stats.overlay_too_big += 1;
            return;
        };
        {
            let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
            smoltcp::wire::EthernetRepr {
                src_addr: self.site.router_mac,
                dst_addr: self.site.router_mac,
                ethertype: EthernetProtocol::Ipv4,
            }
            .emit(&mut eth);
            eth.payload_mut().copy_from_slice(packet);
        }
        let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        match self.pmtu.check(&mut cx, &self.site, f) {
            MtuVerdict::Fits => {}
            _ => {
                cx.stats.overlay_too_big += 1;
                return;
            }
        }
        let counter = o.next_counter();
        let mtu = self.site.params.mtu;
        let ok = cx.out.push(cx.stats, Dest::Overlay(to), false, &mut |buf| {
            let n = encap::encapsulate(f, 0, counter, buf).ok()?;
            let ip_at = wire::overlay::HEADER_LEN + wire::ETHERNET_HEADER_LEN;
            if let Some(ip) = buf.get_mut(ip_at..ip_at + packet.len()) {
                encap::clamp_mss(ip, mtu);
            }
            Some(n)
        });
        if ok {
            cx.stats.overlay_tx_frames += 1;
        }
    }

    /// A data message from the overlay: delivered to the LAN host that owns the destination, only when
    /// the inner source belongs to the sending node (source validation) and the destination is held
    /// here and known on the LAN.
    fn deliver(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.deliver_with(now, from, datagram, true);
    }

    fn deliver_with(&mut self, now: Instant, from: SocketAddr, datagram: &[u8], may_park: bool) {
        let Some(o) = self.overlay.as_mut() else { return };
        let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        let Some(sender) = o.sender(&mut cx, from) else {
            o.unknown_sender(&mut cx, from);
            return;
        };
        let Ok((header, frame)) = encap::decapsulate(datagram) else {
            cx.stats.malformed += 1;
            return;
        };
        if header.flags.contains(wire::overlay::Flags::BROADCAST) {
            crate::bcast::deliver(&mut cx, &self.site, o, sender, frame);
            return;
        }
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            cx.stats.malformed += 1;
            return;
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            cx.stats.other_dropped += 1;
            return;
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            cx.stats.malformed += 1;
            return;
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        match o.route(now, src) {
            Some((owner, _)) if owner == sender => {}
            Some(_) => {
                cx.stats.overlay_src_invalid += 1;
                return;
            }
            None => {
                // Not known yet: read the source's owner and hold the packet until the answer (so the
                // first packet of a new correspondent is not lost); once only, and never unbounded.
                // Our own address from another node is never valid; nor is anything outside the VN.
                if !self.site.params.is_vn_host(src)
                    || o.holds_ip(now, src)
                    || !may_park
                    || datagram.len() > PARK_CAP
                {
                    cx.stats.overlay_src_invalid += 1;
                    return;
                }
                o.resolve(now, src);
                o.pump_with(&mut cx, &self.site);
                if self.parked.is_full() {
                    self.parked.remove(0);
                    self.stats.overlay_src_invalid += 1;
                }
                let mut p = Parked { from, src, at: now, len: datagram.len(), buf: [0; PARK_CAP] };
                p.buf[..datagram.len()].copy_from_slice(datagram);
                let _ = self.parked.push(p);
                return;
            }
        }
        let host = self.arp.mac_of(dst).filter(|_| o.holds_ip(now, dst));
        let Some(host_mac) = host else {
            cx.stats.overlay_dst_unknown += 1;
            return;
        };
        let router_mac = self.site.router_mac;
        let ok = cx.out.push(cx.stats, Dest::Lan, false, &mut |buf| {
            let out = buf.get_mut(..frame.len())?;
            out.copy_from_slice(frame);
            let mut e = EthernetFrame::new_unchecked(out);
            e.set_dst_addr(host_mac);
            e.set_src_addr(router_mac);
            Some(frame.len())
        });
        if ok {
            cx.stats.overlay_rx_frames += 1;
        }
    }

    /// A datagram from the overlay socket: control messages (hellos, probes, the DHT) and data
    /// messages. Without an overlay every datagram is counted as dropped.
    pub fn handle_overlay(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.ensure_started(now);
        self.stats.overlay_rx += 1;
        if self.secure.is_some() {
            self.handle_overlay_secured(now, from, datagram);
            self.drain_routes(now);
            return;
        }
        use crate::wire::overlay::{classify, Class, MessageType};
        let serves_lan = self.serves_lan();
        match (classify(datagram), self.overlay.as_mut()) {
            (Class::Vngate(MessageType::Control), Some(o)) => {
                let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
                o.handle_control(&mut cx, from, datagram);
                o.pump_with(&mut cx, &self.site);
            }
            (Class::Vngate(MessageType::Data), Some(_)) if serves_lan => self.deliver(now, from, datagram),
            _ => self.stats.other_dropped += 1,
        }
        self.drain_routes(now);
    }

    fn handle_overlay_secured(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        use crate::wire::overlay::{classify, Class, MessageType};
        let (Some(sec), Some(o)) = (self.secure.as_mut(), self.overlay.as_mut()) else { return };
        match classify(datagram) {
            Class::Vngate(MessageType::Data | MessageType::Control) => {}
            Class::Vngate(_) => {
                match sec.handle(now, &mut self.stats, &mut self.out, from, datagram) {
                    Up::Session { endpoint, identity, initiator } => {
                        debug!("secure: session with {} at {}", identity.node_id, endpoint);
                        if !initiator {
                            // The initiator speaks first (its first message confirms our keys).
                            return;
                        }
                        // Say who we are at once (the hello also confirms the responder's keys).
                        let mut cx =
                            Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
                        o.greet(&mut cx, identity.node_id, endpoint);
                        o.pump_with(&mut cx, &self.site);
                    }
                    Up::None => {}
                }
                return;
            }
            _ => {
                self.stats.secure_plaintext_dropped += 1;
                return;
            }
        }
        let n = datagram.len();
        let mut buf = [0u8; crate::queue::FRAME_CAP];
        let Some(copy) = buf.get_mut(..n) else {
            self.stats.malformed += 1;
            return;
        };
        copy.copy_from_slice(datagram);
        let Some(opened) = sec.open(now, &mut self.stats, &mut self.out, from, copy) else { return };
        let id = opened.identity;
        if o.peers().id_at(from).is_some_and(|x| x != id.node_id) {
            self.stats.secure_identity_mismatch += 1;
            return;
        }
        match opened.msg_type {
            MessageType::Control => {
                let Some(inner) = buf.get(opened.payload.clone()) else { return };
                // Revocation lists (control kinds 5 and 6) are the secured side's.
                if matches!(inner.get(2), Some(5 | 6)) {
                    match crate::wire::control::ControlRepr::parse_bytes(inner) {
                        Ok(m) => sec.handle_revocation(now, &mut self.stats, &mut self.out, from, &m),
                        Err(_) => self.stats.malformed += 1,
                    }
                    return;
                }
                let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
                o.handle_control_from(&mut cx, from, Some(id), inner);
                o.pump_with(&mut cx, &self.site);
            }
            // An empty data message is a keepalive (key confirmation): nothing to deliver.
            MessageType::Data if opened.payload.is_empty() => {}
            MessageType::Data if self.serves_lan() => self.deliver(now, from, &buf[..n]),
            _ => self.stats.other_dropped += 1,
        }
    }

    /// An answer to one of the node's own upstream queries (DNS forwarding), received on `local_port`.
    pub fn handle_upstream(&mut self, now: Instant, from: SocketAddr, local_port: u16, datagram: &[u8]) {
        if let Some(sec) = self.secure.as_mut() {
            if sec.handle_upstream(now, &mut self.stats, from, local_port, datagram) {
                return;
            }
        }
        let (mut cx, site, _arp, _dhcp, _pool, dns) = self.cx_parts(now);
        dns.handle_upstream(&mut cx, site, from, local_port, datagram);
    }

    /// Run timers. Safe to call at any time.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ensure_started(now);
        let events_before = self.out.events.len();
        let serves_lan = self.serves_lan();
        let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        let site = &self.site;
        if serves_lan {
            self.arp.handle_timeout(&mut cx, site);
            let alloc: &mut dyn Allocator = match self.overlay.as_mut() {
                Some(o) => o.allocator(now),
                None => &mut self.pool,
            };
            self.dhcp.handle_timeout(&mut cx, site, alloc);
            self.dns.handle_timeout(&mut cx, site);
        }
        if let Some(o) = self.overlay.as_mut() {
            o.handle_timeout(&mut cx, site);
        }
        if let Some(sec) = self.secure.as_mut() {
            sec.handle_timeout(now, &mut self.stats, &mut self.out);
        }
        self.leases_changed(now, events_before);
        self.drain_routes(now);
    }

    /// When [`Node::handle_timeout`] should next run. `Some(Instant::ZERO)`-like past values mean "now".
    pub fn poll_at(&self) -> Option<Instant> {
        if !self.started {
            return Some(Instant::ZERO);
        }
        let lan = if self.serves_lan() {
            [self.arp.poll_at(), self.dhcp.poll_at(), self.dns.poll_at()]
        } else {
            [None; 3]
        };
        let overlay = self.overlay.as_ref().and_then(|o| o.poll_at());
        let secure = self.secure.as_ref().and_then(|s| s.poll_at());
        lan.into_iter().chain([overlay, secure]).flatten().min()
    }

    /// Copy the next output into `buf`. Returns `None` when nothing can leave now (empty, or the head
    /// waits for [`Node::bindings_persisted`]). `buf` should hold [`crate::queue::FRAME_CAP`] bytes.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        loop {
            let t = self.out.pop(&mut self.stats, buf)?;
            match t {
                Transmit::Lan(_) => self.stats.lan_tx += 1,
                // On a secured overlay data and control messages leave only sealed; those without a
                // session wait in the secured side's stash (and the loop goes on to the next output).
                Transmit::Overlay { to, len } => {
                    if let Some(sec) = self.secure.as_mut() {
                        match sec.seal(now, &mut self.stats, &mut self.out, to, buf, len) {
                            Some(len) => return Some(Transmit::Overlay { to, len }),
                            None => continue,
                        }
                    }
                }
                _ => {}
            }
            return Some(t);
        }
    }

    /// Whether outputs wait for the binding table to be persisted.
    pub fn transmit_held(&self) -> bool {
        self.out.has_held()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// The MAC of the host last seen using `ip` on this node's LAN.
    pub fn lan_host(&self, ip: Ipv4Address) -> Option<EthernetAddress> {
        self.arp.mac_of(ip)
    }

    /// The allocator this node hands addresses from: the local pool, or with an overlay the
    /// addresses claimed in the DHT.
    pub fn allocator(&self) -> &dyn Allocator {
        match &self.overlay {
            Some(o) => o.pool(),
            None => &self.pool,
        }
    }
}

#[cfg(test)]
mod tests {
    use smoltcp::time::Duration;
    use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr, Ipv4Cidr};

    use super::*;
    use crate::config::NamespaceParams;
    use crate::queue::FRAME_CAP;
    use crate::wire::UdpFrame;

    const CLIENT: EthernetAddress = EthernetAddress([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);

    fn node() -> DefaultNode {
        let params =
            NamespaceParams::new([9; 16], "demo", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16))
                .unwrap();
        Node::new(Site::new(params).unwrap(), 7)
    }

    fn client_frame(repr: &DhcpRepr<'_>) -> StdVec {
        let mut buf = [0u8; 600];
        let f = UdpFrame {
            src_mac: CLIENT,
            dst_mac: EthernetAddress::BROADCAST,
            src_ip: Ipv4Address::UNSPECIFIED,
            dst_ip: Ipv4Address::BROADCAST,
            src_port: 68,
            dst_port: 67,
        };
        let n = f
            .emit(&mut buf, 560, |p| {
                let mut pkt = DhcpPacket::new_unchecked(&mut p[..repr.buffer_len()]);
                repr.emit(&mut pkt).ok()?;
                Some(repr.buffer_len())
            })
            .unwrap();
        buf[..n].to_vec()
    }

    type StdVec = std::vec::Vec<u8>;

    fn request(kind: DhcpMessageType, requested: Option<Ipv4Address>, server: Option<Ipv4Address>) -> StdVec {
        client_frame(&DhcpRepr {
            message_type: kind,
            transaction_id: 0x1234,
            secs: 0,
            client_hardware_address: CLIENT,
            client_ip: Ipv4Address::UNSPECIFIED,
            your_ip: Ipv4Address::UNSPECIFIED,
            server_ip: Ipv4Address::UNSPECIFIED,
            router: None,
            subnet_mask: None,
            relay_agent_ip: Ipv4Address::UNSPECIFIED,
            broadcast: false,
            requested_ip: requested,
            client_identifier: Some(CLIENT),
            server_identifier: server,
            parameter_request_list: Some(&[1, 3, 6, 15, 26]),
            dns_servers: None,
            max_size: None,
            lease_duration: None,
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        })
    }

    /// The DHCP replies (yiaddr, message type) the node lets out now.
    fn dhcp_replies(n: &mut DefaultNode, now: Instant) -> std::vec::Vec<(Ipv4Address, DhcpMessageType)> {
        let mut out = std::vec::Vec::new();
        let mut buf = [0u8; FRAME_CAP];
        while let Some(t) = n.poll_transmit(now, &mut buf) {
            let Transmit::Lan(len) = t else { continue };
            let eth = EthernetFrame::new_checked(&buf[..len]).unwrap();
            if eth.ethertype() != EthernetProtocol::Ipv4 {
                continue;
            }
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            let (_, dport, payload) = wire::parse_udp(ip.src_addr(), ip.dst_addr(), ip.payload()).unwrap();
            if dport == 68 {
                let p = DhcpPacket::new_checked(payload).unwrap();
                let r = DhcpRepr::parse(&p).unwrap();
                out.push((r.your_ip, r.message_type));
            }
        }
        out
    }

    #[test]
    fn a_lease_teaches_the_lan_index_and_its_ack_waits_for_persistence() {
        let mut n = node();
        let mut now = Instant::from_secs(1);
        n.handle_timeout(now);
        n.handle_lan(now, &request(DhcpMessageType::Discover, None, None));
        assert!(dhcp_replies(&mut n, now).is_empty(), "the offer waits for the ARP check");
        now += Duration::from_millis(600);
        n.handle_timeout(now);
        let offers = dhcp_replies(&mut n, now);
        assert_eq!(offers.len(), 1);
        let (offered, kind) = offers[0];
        assert_eq!(kind, DhcpMessageType::Offer);
        assert_eq!(n.lan_host(offered), None, "an offer is not a binding");

        let dns = n.site().dns_addr;
        n.handle_lan(now, &request(DhcpMessageType::Request, Some(offered), Some(dns)));
        assert!(dhcp_replies(&mut n, now).is_empty(), "the ACK is held until the table is persisted");
        assert!(n.transmit_held());
        assert_eq!(n.lan_host(offered), Some(CLIENT), "the lease taught the MAC->IP index");
        let mut persisted = false;
        while let Some(ev) = n.poll_event() {
            persisted |= ev == Event::BindingsChanged;
        }
        assert!(persisted, "BindingsChanged asks the runtime to persist");
        let token = n.persist_checkpoint();
        assert_eq!(n.bindings(now).count(), 1);
        n.bindings_persisted(token);
        assert_eq!(dhcp_replies(&mut n, now), std::vec![(offered, DhcpMessageType::Ack)]);
    }

    /// An ICMP echo request from CLIENT at `src` to `dst`, to the router MAC.
    fn echo_to(router: EthernetAddress, src: Ipv4Address, dst: Ipv4Address) -> StdVec {
        let caps = smoltcp::phy::ChecksumCapabilities::default();
        let icmp = Icmpv4Repr::EchoRequest { ident: 7, seq_no: 1, data: b"egress" };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = std::vec![0xa5u8; 14 + ip.buffer_len() + icmp.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
        smoltcp::wire::EthernetRepr { src_addr: CLIENT, dst_addr: router, ethertype: EthernetProtocol::Ipv4 }
            .emit(&mut eth);
        let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.emit(&mut ipp, &caps);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(ipp.payload_mut()), &caps);
        buf
    }

    /// DORA for CLIENT on node `n` (persisting at once); the leased address.
    fn lease(n: &mut DefaultNode, now: &mut Instant) -> Ipv4Address {
        n.handle_timeout(*now);
        n.handle_lan(*now, &request(DhcpMessageType::Discover, None, None));
        *now += Duration::from_millis(600);
        n.handle_timeout(*now);
        let (ip, _) = dhcp_replies(n, *now)[0];
        let dns = n.site().dns_addr;
        n.handle_lan(*now, &request(DhcpMessageType::Request, Some(ip), Some(dns)));
        n.bindings_persisted(n.persist_checkpoint());
        let _ = dhcp_replies(n, *now);
        ip
    }

    #[test]
    fn with_egress_a_leased_host_reaches_outside_through_the_egress_and_answers_come_back() {
        let public = Ipv4Address::new(198, 51, 100, 10);
        let mut params =
            NamespaceParams::new([9; 16], "demo", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16))
                .unwrap();
        params.egress = true;
        let mut n: DefaultNode = Node::new(Site::new(params).unwrap(), 7);
        let mut now = Instant::from_secs(1);
        let ip = lease(&mut n, &mut now);
        let router = n.site().router_mac;
        let mut buf = [0u8; FRAME_CAP];

        // Out: the IP packet alone, for the runtime's TUN.
        let frame = echo_to(router, ip, public);
        n.handle_lan(now, &frame);
        let out =
            core::iter::from_fn(|| n.poll_transmit(now, &mut buf)).find(|t| matches!(t, Transmit::Egress(_)));
        let Some(Transmit::Egress(len)) = out else { panic!("no egress packet") };
        assert_eq!(&buf[..len], &frame[14..], "the IP packet, unchanged");
        assert_eq!(n.stats().egress_tx, 1);

        // Back: an answer from outside is delivered to the host's MAC from the router MAC.
        let mut answer = frame[14..].to_vec();
        let mut p = Ipv4Packet::new_unchecked(&mut answer[..]);
        p.set_src_addr(public);
        p.set_dst_addr(ip);
        p.fill_checksum();
        n.handle_egress(now, &answer);
        let out =
            core::iter::from_fn(|| n.poll_transmit(now, &mut buf)).find(|t| matches!(t, Transmit::Lan(_)));
        let Some(Transmit::Lan(len)) = out else { panic!("no LAN frame") };
        let eth = EthernetFrame::new_checked(&buf[..len]).unwrap();
        assert_eq!((eth.dst_addr(), eth.src_addr()), (CLIENT, router));
        assert_eq!(eth.payload(), &answer[..]);
        assert_eq!(n.stats().egress_rx, 1);

        // Refused: a VN source from outside, an answer for an address nobody here holds, and a source
        // this site did not lease.
        let mut spoofed = answer.clone();
        let mut p = Ipv4Packet::new_unchecked(&mut spoofed[..]);
        p.set_src_addr(Ipv4Address::new(10, 250, 9, 9));
        p.fill_checksum();
        n.handle_egress(now, &spoofed);
        let mut stray = answer.clone();
        let mut p = Ipv4Packet::new_unchecked(&mut stray[..]);
        p.set_dst_addr(Ipv4Address::new(10, 250, 9, 9));
        p.fill_checksum();
        n.handle_egress(now, &stray);
        n.handle_lan(now, &echo_to(router, Ipv4Address::new(10, 250, 7, 7), public));
        assert_eq!(n.stats().egress_refused, 3);
        assert!(core::iter::from_fn(|| n.poll_transmit(now, &mut buf)).next().is_none());
    }

    #[test]
    fn without_egress_nothing_leaves_for_outside() {
        let mut n = node();
        let mut now = Instant::from_secs(1);
        let ip = lease(&mut n, &mut now);
        let router = n.site().router_mac;
        n.handle_lan(now, &echo_to(router, ip, Ipv4Address::new(198, 51, 100, 10)));
        let mut buf = [0u8; FRAME_CAP];
        assert!(
            core::iter::from_fn(|| n.poll_transmit(now, &mut buf)).all(|t| !matches!(t, Transmit::Egress(_)))
        );
        assert_eq!((n.stats().egress_tx, n.stats().no_route), (0, 1));
    }
}
