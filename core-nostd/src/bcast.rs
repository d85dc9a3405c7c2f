//! Broadcast and multicast across sites in proxy mode (DESIGN.md "bcast"; IPOP SC09 §4.2 keeps the
//! same member list in its DHT).
//!
//! - **Allowlist** ([`allowlist`]): ARP, RARP and DHCP (UDP ports 67 and 68) terminate locally and
//!   IPv6 is dropped before this module sees anything. Of the rest only UDP crosses: to the limited
//!   broadcast (255.255.255.255) or the VN's subnet-directed broadcast with a broadcast destination
//!   MAC, and to an opt-in multicast group ([`Group`], none by default, at most [`GROUPS`]; e.g.
//!   [`MDNS`]) with a multicast destination MAC. Everything else stays on its LAN.
//! - **Members**: each router with a LAN appends itself (value: its advertised endpoint) to the
//!   namespace's `bcast` key with TTL [`MEMBER_TTL`], renewed every [`REFRESH`] along with a read of
//!   the set; the read is cached and retried every [`REFRESH_EMPTY`] while no other member is known.
//! - **Sending**: a frame goes only when its IPv4 source is an address this node holds (the unicast
//!   rule) and its source MAC has a token in its bucket ([`RATE_BURST`] at once, one more every
//!   [`RATE_REFILL`]; excess dropped and counted in `bcast_rate_limited`). Each copy is a data message
//!   flagged [`Flags::BROADCAST`] with a [`BcastTag`] (our id's prefix, a sequence number). At most
//!   [`FANOUT`] members get a copy, starting at a random member so a cut list is not always cut the
//!   same way; a cut is counted in `bcast_fanout_capped`.
//! - **Receiving**: the tag's origin must be the sender's, the frame must pass the same allowlist
//!   (a group we did not opt in to is not delivered), its source MAC must not be the router MAC (a
//!   router never forwards a router's frame), its IPv4 source must be owned by the sender (as for
//!   unicast; an unknown owner starts a read and the frame is dropped), and its (origin, sequence)
//!   must be new ([`Dedup`]: a 64-wide window per origin). It is then delivered on the LAN as the
//!   broadcast or multicast frame it was, with the router MAC as source; a router never re-forwards
//!   it (frames from the router MAC are dropped at the LAN edge).

use core::net::SocketAddr;

use heapless::Vec;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Address, Ipv4Packet};

use crate::arp::TokenBucket;
use crate::config::Site;
use crate::dht::{MemberView, OpId, OpResult, Outcome, BCAST_MAX};
use crate::encap::EncapError;
use crate::id::NodeId;
use crate::overlay::{decode_endpoint, Overlay};
use crate::queue::{Cx, Dest};
use crate::rand::Rng;
use crate::wire::overlay::{BcastTag, DataRepr, Flags, Packet, BCAST_TAG_LEN, OVERHEAD};
use crate::wire::{self, ETHERNET_HEADER_LEN};

/// Members that get a copy of one broadcast at most; beyond it the rest get none of that frame.
pub const FANOUT: usize = 8;
/// Source MACs with a rate bucket; when full, an idle (full) bucket is replaced, else the new
/// source's frame is dropped as rate-limited.
pub const SOURCES: usize = 32;
/// Origins with a dedup window; when full, the one heard from least recently is replaced.
pub const ORIGINS: usize = 16;
/// Opt-in multicast groups at most; [`Bcast::set_groups`] keeps the first ones.
pub const GROUPS: usize = 4;
/// Frames a source MAC may send in a burst.
pub const RATE_BURST: u32 = 20;
/// One more frame per source MAC every this long (10 per second).
pub const RATE_REFILL: Duration = Duration::from_millis(100);
/// TTL of our member record.
pub const MEMBER_TTL: Duration = Duration::from_secs(90);
/// Interval of the member record's renewal and of the member set's read.
pub const REFRESH: Duration = Duration::from_secs(30);
/// Read interval while no other member is known.
pub const REFRESH_EMPTY: Duration = Duration::from_secs(5);
/// Sequence numbers remembered per origin.
pub const WINDOW: u64 = 64;
/// An origin silent for this long starts a fresh window (it may have restarted its sequence).
pub const ORIGIN_IDLE: Duration = Duration::from_secs(60);
/// A sequence this far behind an origin's highest means the origin restarted: a fresh window.
const RESTART_GAP: u64 = 1 << 20;
/// The longest frame a broadcast data message carries within one queue slot.
pub const MAX_BCAST_FRAME: usize = crate::queue::FRAME_CAP - OVERHEAD - BCAST_TAG_LEN;

/// An opt-in multicast group: UDP to `addr`:`port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// The group address (224.0.0.0/4).
    pub addr: Ipv4Address,
    /// The UDP destination port.
    pub port: u16,
}

/// mDNS (RFC 6762): 224.0.0.251:5353.
pub const MDNS: Group = Group { addr: Ipv4Address::new(224, 0, 0, 251), port: 5353 };

/// What the allowlist says about an IPv4 frame from the LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Fan it out to the `bcast` members.
    Forward,
    /// Not for the other sites: handled (DHCP) or dropped locally.
    Local,
}

/// The allowlist (module doc) for an IPv4 `packet` to `dst_mac`.
pub fn allowlist(site: &Site, groups: &[Group], dst_mac: EthernetAddress, packet: &[u8]) -> Verdict {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else { return Verdict::Local };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if ip.next_header() != IpProtocol::Udp || ip.frag_offset() != 0 || ip.more_frags() {
        return Verdict::Local;
    }
    let body_len = usize::from(ip.total_len()).saturating_sub(usize::from(ip.header_len()));
    let Some(body) = ip.payload().get(..body_len) else { return Verdict::Local };
    let Ok((src_port, dst_port, _)) = wire::parse_udp(src, dst, body) else { return Verdict::Local };
    let broadcast = dst == Ipv4Address::BROADCAST || dst == site.params.broadcast();
    let dhcp = [67, 68].contains(&src_port) || [67, 68].contains(&dst_port);
    if broadcast && dst_mac.is_broadcast() && !dhcp {
        return Verdict::Forward;
    }
    if dst.is_multicast() && dst_mac.is_multicast() && groups.contains(&Group { addr: dst, port: dst_port }) {
        return Verdict::Forward;
    }
    Verdict::Local
}

/// Per-source-MAC token buckets.
pub struct RateLimiter<const N: usize = SOURCES> {
    entries: Vec<(EthernetAddress, TokenBucket), N>,
}

impl<const N: usize> Default for RateLimiter<N> {
    fn default() -> Self {
        Self { entries: Vec::new() }
    }
}

impl<const N: usize> RateLimiter<N> {
    /// Takes a token for `mac`; false when it has none (or no bucket could be found for it).
    pub fn take(&mut self, now: Instant, mac: EthernetAddress) -> bool {
        if let Some((_, b)) = self.entries.iter_mut().find(|(m, _)| *m == mac) {
            return b.take(now);
        }
        let mut bucket = TokenBucket::new(now, RATE_BURST, RATE_REFILL);
        let ok = bucket.take(now);
        if self.entries.push((mac, bucket)).is_err() {
            // Full: replace a source that has been idle long enough to refill, never an active one.
            let Some(slot) = self.entries.iter_mut().find(|(_, b)| b.is_full(now)) else { return false };
            *slot = (mac, bucket);
        }
        ok
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    origin: [u8; 8],
    top: u64,
    /// Bit i: `top - i` was seen.
    seen: u64,
    last: Instant,
}

/// Sequence windows per origin: each (origin, sequence) is accepted once.
pub struct Dedup<const N: usize = ORIGINS> {
    entries: Vec<Window, N>,
}

impl<const N: usize> Default for Dedup<N> {
    fn default() -> Self {
        Self { entries: Vec::new() }
    }
}

impl<const N: usize> Dedup<N> {
    /// Whether (`origin`, `seq`) is new; it is remembered if so. A sequence more than [`WINDOW`]
    /// behind the highest is refused, unless it is so far behind (or the origin so long silent) that
    /// the origin must have restarted.
    pub fn accept(&mut self, now: Instant, origin: [u8; 8], seq: u64) -> bool {
        let fresh = Window { origin, top: seq, seen: 1, last: now };
        let Some(w) = self.entries.iter_mut().find(|w| w.origin == origin) else {
            if self.entries.push(fresh).is_err() {
                if let Some(old) = self.entries.iter_mut().min_by_key(|w| w.last) {
                    *old = fresh;
                }
            }
            return true;
        };
        let idle = now >= w.last + ORIGIN_IDLE;
        w.last = now;
        if idle || w.top.wrapping_sub(seq) >= RESTART_GAP && seq < w.top {
            *w = fresh;
            return true;
        }
        if seq > w.top {
            let shift = seq - w.top;
            w.seen = if shift >= WINDOW { 0 } else { w.seen << shift };
            w.seen |= 1;
            w.top = seq;
            return true;
        }
        let back = w.top - seq;
        if back >= WINDOW || w.seen & (1 << back) != 0 {
            return false;
        }
        w.seen |= 1 << back;
        true
    }
}

/// The broadcast state of a node: groups, buckets, windows, the cached member set.
pub struct Bcast {
    groups: Vec<Group, GROUPS>,
    limiter: RateLimiter,
    dedup: Dedup,
    members: Vec<(NodeId, SocketAddr), BCAST_MAX>,
    seq: u64,
    last_refresh: Option<Instant>,
    ops: Vec<OpId, 2>,
}

impl Bcast {
    /// Empty; `seq` is the first sequence number (random, so a restart rarely reuses recent ones).
    pub fn new(seq: u64) -> Self {
        Bcast {
            groups: Vec::new(),
            limiter: RateLimiter::default(),
            dedup: Dedup::default(),
            members: Vec::new(),
            seq,
            last_refresh: None,
            ops: Vec::new(),
        }
    }

    /// The opt-in multicast groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Sets the opt-in groups; returns false when some beyond [`GROUPS`] were left out.
    pub fn set_groups(&mut self, groups: &[Group]) -> bool {
        self.groups.clear();
        groups.iter().all(|g| self.groups.push(*g).is_ok())
    }

    /// The other members, as last read.
    pub fn members(&self) -> &[(NodeId, SocketAddr)] {
        &self.members
    }

    /// Whether the member record and read are due at `now` (always, before the first).
    pub fn refresh_due(&self, now: Instant) -> bool {
        self.poll_at().is_none_or(|t| t <= now)
    }

    /// The member refresh ran at `now` with these ops (append, read) in flight.
    pub fn refreshed(&mut self, now: Instant, ops: &[OpId]) {
        self.ops.clear();
        for op in ops.iter().take(2) {
            let _ = self.ops.push(*op);
        }
        self.last_refresh = Some(now);
    }

    /// When the next refresh is due (`None` before the first).
    pub fn poll_at(&self) -> Option<Instant> {
        let wait = if self.members.is_empty() { REFRESH_EMPTY } else { REFRESH };
        self.last_refresh.map(|t| t + wait)
    }

    /// Takes a finished DHT op if it is ours: a read replaces the member cache (less ourselves and
    /// values that are no endpoint). True when the result was ours.
    pub fn on_result(&mut self, me: &NodeId, r: &OpResult) -> bool {
        let Some(i) = self.ops.iter().position(|op| *op == r.op) else { return false };
        self.ops.swap_remove(i);
        if let Ok(Outcome::Members(list)) = &r.outcome {
            self.set_members(me, list);
        }
        true
    }

    fn set_members(&mut self, me: &NodeId, list: &[MemberView]) {
        self.members.clear();
        for m in list.iter().filter(|m| m.owner != *me && m.ttl_ms > 0) {
            if let Some(ep) = decode_endpoint(&m.value) {
                let _ = self.members.push((m.owner, ep));
            }
        }
    }

    /// A token for a frame from `mac`.
    pub fn admit(&mut self, now: Instant, mac: EthernetAddress) -> bool {
        self.limiter.take(now, mac)
    }

    /// Whether (`origin`, `seq`) is new.
    pub fn accept(&mut self, now: Instant, origin: [u8; 8], seq: u64) -> bool {
        self.dedup.accept(now, origin, seq)
    }

    /// The next sequence number.
    pub fn next_seq(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Up to [`FANOUT`] members, starting at a random one; true in `.1` when some were cut.
    pub fn targets(&self, rng: &mut Rng) -> (Vec<SocketAddr, FANOUT>, bool) {
        let n = self.members.len();
        let start = if n > FANOUT { rng.next_u32() as usize % n } else { 0 };
        let out = (0..n.min(FANOUT)).filter_map(|k| self.members.get((start + k) % n)).map(|m| m.1).collect();
        (out, n > FANOUT)
    }
}

/// The first 8 bytes of a node id: a broadcast's origin.
pub fn origin_of(id: &NodeId) -> [u8; 8] {
    let mut o = [0u8; 8];
    o.copy_from_slice(&id.0[..8]);
    o
}

/// Puts `frame` behind `tag` in a broadcast data message for session `session`, written into `out`.
pub fn encapsulate(
    tag: &BcastTag,
    frame: &[u8],
    session: u32,
    counter: u64,
    out: &mut [u8],
) -> Result<usize, EncapError> {
    if !(ETHERNET_HEADER_LEN..=MAX_BCAST_FRAME).contains(&frame.len()) {
        return Err(EncapError::BadFrameLength);
    }
    let repr = DataRepr {
        flags: Flags::BROADCAST,
        receiver: session,
        counter,
        payload_len: BCAST_TAG_LEN + frame.len(),
    };
    let buf = out.get_mut(..repr.buffer_len()).ok_or(EncapError::BufferTooSmall)?;
    let mut p = Packet::new_unchecked(buf);
    repr.emit(&mut p);
    let payload = p.payload_mut();
    tag.emit(payload).map_err(|_| EncapError::BufferTooSmall)?;
    payload[BCAST_TAG_LEN..].copy_from_slice(frame);
    p.tag_mut().fill(0);
    Ok(repr.buffer_len())
}

/// A LAN frame the allowlist forwards (IPv4 `packet` from `src_mac` to `dst_mac`): checked against
/// ownership and the rate, then fanned out to the members.
pub fn send(
    cx: &mut Cx<'_>,
    site: &Site,
    o: &mut Overlay,
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    packet: &[u8],
) {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        cx.stats.malformed += 1;
        return;
    };
    if src_mac == site.router_mac {
        cx.stats.other_dropped += 1;
        return;
    }
    if !o.holds_ip(cx.now, ip.src_addr()) {
        cx.stats.overlay_src_not_owned += 1;
        return;
    }
    if !o.bcast_mut().admit(cx.now, src_mac) {
        cx.stats.bcast_rate_limited += 1;
        return;
    }
    let mut frame = [0u8; MAX_BCAST_FRAME];
    let Some(f) = frame.get_mut(..ETHERNET_HEADER_LEN + packet.len()) else {
        cx.stats.overlay_too_big += 1;
        return;
    };
    {
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        eth.set_dst_addr(dst_mac);
        eth.set_src_addr(src_mac);
        eth.set_ethertype(EthernetProtocol::Ipv4);
        eth.payload_mut().copy_from_slice(packet);
    }
    let (targets, capped) = o.bcast().targets(cx.rng);
    if targets.is_empty() {
        cx.stats.bcast_no_members += 1;
        return;
    }
    if capped {
        cx.stats.bcast_fanout_capped += 1;
    }
    let tag = BcastTag { origin: origin_of(&o.id()), seq: o.bcast_mut().next_seq() };
    for to in targets {
        let counter = o.next_counter();
        if cx
            .out
            .push(cx.stats, Dest::Overlay(to), false, &mut |buf| encapsulate(&tag, f, 0, counter, buf).ok())
        {
            cx.stats.bcast_tx_frames += 1;
        }
    }
}

/// The payload (tag and frame) of a broadcast data message from `sender`: checked (module doc) and
/// delivered on the LAN with the router MAC as source.
pub fn deliver(cx: &mut Cx<'_>, site: &Site, o: &mut Overlay, sender: NodeId, payload: &[u8]) {
    let Ok((tag, frame)) = BcastTag::parse(payload) else {
        cx.stats.malformed += 1;
        return;
    };
    if tag.origin != origin_of(&sender) {
        cx.stats.overlay_src_invalid += 1;
        return;
    }
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        cx.stats.malformed += 1;
        return;
    };
    if eth.src_addr() == site.router_mac || eth.ethertype() != EthernetProtocol::Ipv4 {
        cx.stats.other_dropped += 1;
        return;
    }
    if allowlist(site, o.bcast().groups(), eth.dst_addr(), eth.payload()) != Verdict::Forward {
        cx.stats.other_dropped += 1;
        return;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        cx.stats.malformed += 1;
        return;
    };
    let src = ip.src_addr();
    match o.route(cx.now, src) {
        Some((owner, _)) if owner == sender => {}
        Some(_) => {
            cx.stats.overlay_src_invalid += 1;
            return;
        }
        None => {
            cx.stats.overlay_src_invalid += 1;
            if site.params.is_vn_host(src) {
                o.resolve(cx.now, src);
                o.pump_with(cx, site);
            }
            return;
        }
    }
    if !o.bcast_mut().accept(cx.now, tag.origin, tag.seq) {
        cx.stats.bcast_duplicates += 1;
        return;
    }
    let router_mac = site.router_mac;
    let ok = cx.out.push(cx.stats, Dest::Lan, false, &mut |buf| {
        let out = buf.get_mut(..frame.len())?;
        out.copy_from_slice(frame);
        EthernetFrame::new_unchecked(out).set_src_addr(router_mac);
        Some(frame.len())
    });
    if ok {
        cx.stats.bcast_rx_frames += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamespaceParams;
    use crate::wire::UdpFrame;
    use smoltcp::wire::Ipv4Cidr;

    fn site() -> Site {
        let p = NamespaceParams::new([9; 16], "demo", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16))
            .unwrap();
        Site::new(p).unwrap()
    }

    const HOST: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);

    /// An IPv4 UDP packet (no Ethernet header) as `UdpFrame::emit` builds it.
    fn udp(src: Ipv4Address, dst: Ipv4Address, sport: u16, dport: u16) -> std::vec::Vec<u8> {
        let mut buf = [0xa5u8; 200];
        let f = UdpFrame {
            src_mac: HOST,
            dst_mac: EthernetAddress::BROADCAST,
            src_ip: src,
            dst_ip: dst,
            src_port: sport,
            dst_port: dport,
        };
        let n = f
            .emit(&mut buf, 100, |p| {
                p[..5].copy_from_slice(b"hello");
                Some(5)
            })
            .unwrap();
        buf[ETHERNET_HEADER_LEN..n].to_vec()
    }

    #[test]
    fn the_allowlist_forwards_only_non_dhcp_udp_broadcasts_and_opted_in_groups() {
        let s = site();
        let h = Ipv4Address::new(10, 250, 3, 3);
        let b = EthernetAddress::BROADCAST;
        let mdns_mac = EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 0xfb]);
        let sub = s.params.broadcast();
        assert_eq!(allowlist(&s, &[], b, &udp(h, sub, 5000, 9999)), Verdict::Forward);
        assert_eq!(allowlist(&s, &[], b, &udp(h, Ipv4Address::BROADCAST, 5000, 9999)), Verdict::Forward);
        // DHCP either way, a broadcast IP to a unicast MAC, another subnet's broadcast.
        assert_eq!(
            allowlist(&s, &[], b, &udp(Ipv4Address::UNSPECIFIED, Ipv4Address::BROADCAST, 68, 67)),
            Verdict::Local
        );
        assert_eq!(allowlist(&s, &[], b, &udp(h, Ipv4Address::BROADCAST, 67, 68)), Verdict::Local);
        assert_eq!(allowlist(&s, &[], HOST, &udp(h, sub, 5000, 9999)), Verdict::Local);
        assert_eq!(
            allowlist(&s, &[], b, &udp(h, Ipv4Address::new(10, 1, 255, 255), 5000, 9999)),
            Verdict::Local
        );
        // mDNS: off by default, on when opted in, and only its port.
        let m = udp(h, MDNS.addr, 5353, 5353);
        assert_eq!(allowlist(&s, &[], mdns_mac, &m), Verdict::Local);
        assert_eq!(allowlist(&s, &[MDNS], mdns_mac, &m), Verdict::Forward);
        assert_eq!(allowlist(&s, &[MDNS], mdns_mac, &udp(h, MDNS.addr, 5353, 5354)), Verdict::Local);
        // Not UDP (ICMP to the broadcast address), or a broken checksum.
        let mut icmp = udp(h, sub, 5000, 9999);
        icmp[9] = 1;
        assert_eq!(allowlist(&s, &[], b, &icmp), Verdict::Local);
        let mut bad = udp(h, sub, 5000, 9999);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(allowlist(&s, &[], b, &bad), Verdict::Local);
        assert_eq!(allowlist(&s, &[], b, &[0x45, 0, 0]), Verdict::Local);
    }

    #[test]
    fn dedup_accepts_each_sequence_once_within_a_window_per_origin() {
        let mut d: Dedup<2> = Dedup::default();
        let t = Instant::from_secs(1);
        let (a, b, c) = ([1; 8], [2; 8], [3; 8]);
        assert!(d.accept(t, a, 100));
        assert!(!d.accept(t, a, 100), "a duplicate");
        assert!(d.accept(t, a, 98), "late but new");
        assert!(!d.accept(t, a, 98));
        assert!(d.accept(t, b, 100), "another origin has its own window");
        assert!(d.accept(t, a, 163));
        assert!(!d.accept(t, a, 99), "fell out of the window");
        assert!(d.accept(t, a, 162) && !d.accept(t, a, 162), "within the window, once");
        // A restart far behind, or after a silence: a fresh window.
        assert!(d.accept(t, a, 163 + 2 * RESTART_GAP));
        assert!(d.accept(t, a, 5) && !d.accept(t, a, 5));
        assert!(d.accept(t + ORIGIN_IDLE, b, 1));
        // Full (2 origins): the least recently heard (a) is replaced by c; a is new again.
        assert!(d.accept(t + ORIGIN_IDLE, c, 7));
        assert!(d.accept(t + ORIGIN_IDLE, a, 5));
    }

    #[test]
    fn the_rate_limit_cuts_a_flood_per_source_mac() {
        let mut r: RateLimiter<2> = RateLimiter::default();
        let t = Instant::from_secs(1);
        let other = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
        let passed = (0..100).filter(|_| r.take(t, HOST)).count();
        assert_eq!(passed, RATE_BURST as usize);
        assert_eq!(
            (0..RATE_BURST).filter(|_| r.take(t, other)).count(),
            RATE_BURST as usize,
            "its own bucket"
        );
        assert!(r.take(t + RATE_REFILL, HOST) && !r.take(t + RATE_REFILL, HOST), "one token per refill");
        // Full, both active: a third source is refused rather than evicting one.
        let third = EthernetAddress([0x02, 0, 0, 0, 0, 3]);
        assert!(!r.take(t + RATE_REFILL, third));
        // Once a source has refilled (idle), its slot is taken.
        assert!(r.take(t + RATE_REFILL * RATE_BURST, third));
    }

    fn members(n: u8) -> Bcast {
        let mut b = Bcast::new(0);
        let mut list: Vec<MemberView, BCAST_MAX> = Vec::new();
        for i in 0..n {
            let mut out = [0u8; 19];
            let ep: SocketAddr =
                SocketAddr::new(core::net::IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, i)), 4000);
            let len = crate::overlay::encode_endpoint(&ep, &mut out);
            let value = crate::dht::MemberValue::from_slice(&out[..len]).unwrap();
            list.push(MemberView { owner: NodeId([i; 32]), value, ttl_ms: 1000 }).unwrap();
        }
        b.set_members(&NodeId([0; 32]), &list);
        b
    }

    #[test]
    fn fan_out_is_capped_and_never_includes_us() {
        let mut rng = Rng::new(3);
        let b = members(5);
        let (t, capped) = b.targets(&mut rng);
        assert_eq!((t.len(), capped), (4, false), "member 0 is us");
        let b = members(BCAST_MAX as u8);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let (t, capped) = b.targets(&mut rng);
            assert_eq!((t.len(), capped), (FANOUT, true));
            seen.extend(t);
        }
        assert!(seen.len() > FANOUT, "the cut moves from one frame to the next");
        assert!(Bcast::new(0).targets(&mut rng).0.is_empty());
    }

    #[test]
    fn broadcast_messages_round_trip_and_refuse_oversized_frames() {
        let tag = BcastTag { origin: [4; 8], seq: 9 };
        let mut frame = [0u8; 60];
        frame[12] = 0x08;
        let mut out = [0xa5u8; crate::queue::FRAME_CAP];
        let n = encapsulate(&tag, &frame, 0, 1, &mut out).unwrap();
        let (repr, payload) = crate::encap::decapsulate(&out[..n]).unwrap();
        assert!(repr.flags.contains(Flags::BROADCAST));
        assert_eq!(BcastTag::parse(payload).unwrap(), (tag, &frame[..]));
        let big = [0u8; MAX_BCAST_FRAME + 1];
        assert_eq!(encapsulate(&tag, &big, 0, 1, &mut out), Err(EncapError::BadFrameLength));
        let max = [0u8; MAX_BCAST_FRAME];
        assert_eq!(encapsulate(&tag, &max, 0, 1, &mut out), Ok(crate::queue::FRAME_CAP));
    }
}
