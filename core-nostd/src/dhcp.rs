//! DHCPv4 server (RFC 2131/2132; DESIGN.md "dhcp").
//!
//! One table of `LEASES` entries holds checks in progress, offers, bindings and quarantined addresses.
//! Three chained hash indexes over the same fixed arrays find an entry by client key (option 61 as
//! received, else chaddr), by address and by hostname in O(1), so a flood of handshakes (ISC perfdhcp at
//! thousands per second against a table of 4096) never scans the table per packet. Only timer expiry
//! scans, and its deadline is coarsened to [`TIMER_SLACK`] so that happens at most about once a second.
//!
//! Rules kept (RFC 2131 unless said): retransmissions are recognised by client key, not xid; the
//! address offered is the client's binding, else its requested address (option 50), else the hash of
//! its key, else any free address from a hashed start; an address is checked with ARP on the LAN before
//! it is offered (§3.1; relayed clients are not on our LAN and are not checked); a full pool or table is
//! silence plus one [`Event::PoolExhausted`] per episode; NAK only answers a REQUEST, and only on
//! positive knowledge; INIT-REBOOT for an unknown address is silence (§4.3.2); DECLINE quarantines;
//! RELEASE frees; replies are addressed per §4.1 (relay, ciaddr, broadcast bit, unicast); options 61
//! (RFC 6842) and 82 (RFC 3046) are echoed; the reply fits option 57 or 576 bytes.

use heapless::{String, Vec};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpRepr, DhcpMessageType, DhcpOpCode, DhcpPacket, EthernetAddress, Ipv4Address,
};

use crate::config::{is_hostname_label, Site};
use crate::event::Event;
use crate::queue::{Cx, FRAME_CAP};
pub use crate::wire::dhcp::MAX_CLIENT_ID;
use crate::wire::dhcp::{fqdn_flags, opt, DhcpRepr, Fqdn, DEFAULT_MAX_MESSAGE, FLAG_BROADCAST};
use crate::wire::{emit_arp_frame, UdpFrame, UdpMeta};

/// Longest hostname kept (one DNS label).
pub const MAX_HOSTNAME: usize = 63;
/// How long an offered address stays reserved for its client.
pub const OFFER_HOLD: Duration = Duration::from_secs(30);
/// How long a declined address (or one found in use) is not handed out.
pub const QUARANTINE: Duration = Duration::from_secs(600);
/// How long the server waits for an answer to its ARP check before it offers (RFC 2131 §3.1).
pub const CHECK_WAIT: Duration = Duration::from_millis(500);
/// Address checks in flight at once; when all are busy a DISCOVER is dropped and counted
/// ([`crate::stats::Stats::dhcp_checks_full`]): the client retransmits.
pub const MAX_CHECKS: usize = 4;
/// Lease and offer expiry run up to this late, so that a flood of offers costs one table scan a second.
pub const TIMER_SLACK: Duration = Duration::from_secs(1);

const NIL: u32 = u32::MAX;
const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;
const IP_UDP_HEADERS: usize = 28;

/// A binding as persisted by the runtime (remaining duration, never wall-clock time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The bound address.
    pub ip: Ipv4Address,
    /// Client hardware address.
    pub mac: EthernetAddress,
    /// Option 61 as received (empty if none).
    pub client_id: Vec<u8, MAX_CLIENT_ID>,
    /// Hostname registered in DNS (empty if none).
    pub hostname: String<MAX_HOSTNAME>,
    /// Lease time remaining when written.
    pub remaining: Duration,
}

/// Which addresses this site may hand out, and which one to pick for a client (DESIGN.md: the local
/// pool now; in P2 the DHT-backed pool of addresses this site has already claimed).
pub trait Allocator {
    /// Whether this site may hand out `ip` now.
    fn owns(&self, ip: Ipv4Address) -> bool;
    /// How many candidate addresses there are.
    fn candidates(&self) -> u32;
    /// The `i`th candidate (`i < candidates()`).
    fn candidate(&self, i: u32) -> Option<Ipv4Address>;
    /// A DISCOVER found no address to offer: an allocator that claims on demand starts a claim and
    /// says true (the client's retransmission gets the OFFER; the pool is not exhausted). The local
    /// pool has nothing to claim.
    fn short(&mut self) -> bool {
        false
    }
    /// Pick an address for a client whose key hashes to `hash`: the candidate at the hash if
    /// `is_free` says so, else the next free one after it (a hashed start, never lowest-first, or every
    /// site would race for the same address). Tries at most `limit` candidates.
    fn pick(
        &self,
        hash: u32,
        limit: u32,
        is_free: &mut dyn FnMut(Ipv4Address) -> bool,
    ) -> Option<Ipv4Address> {
        let n = self.candidates();
        if n == 0 {
            return None;
        }
        let start = hash % n;
        (0..n.min(limit)).find_map(|k| {
            let ip = self.candidate(((u64::from(start) + u64::from(k)) % u64::from(n)) as u32)?;
            (self.owns(ip) && is_free(ip)).then_some(ip)
        })
    }
}

/// Hostname lookups the DNS responder needs.
pub trait NameTable {
    /// The address registered under hostname `label` (lowercase).
    fn lookup(&self, label: &str) -> Option<Ipv4Address>;
    /// The hostname registered for `ip`.
    fn name_of(&self, ip: Ipv4Address) -> Option<&str>;
}

/// A local-pool allocator over the namespace's pool range.
pub struct LocalPool {
    range: crate::config::AddrRange,
}

impl LocalPool {
    /// The whole pool of `site`.
    pub fn new(site: &Site) -> Self {
        Self { range: site.params.pool }
    }
}

impl Allocator for LocalPool {
    fn owns(&self, ip: Ipv4Address) -> bool {
        self.range.contains(ip)
    }
    fn candidates(&self) -> u32 {
        self.range.len()
    }
    fn candidate(&self, i: u32) -> Option<Ipv4Address> {
        self.range.nth(i)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    /// ARP check in flight (see `checks`).
    Checking,
    Offered,
    Bound,
    /// Declined or found in use: kept out of the pool until `expires`. Not keyed to a client.
    Quarantined,
}

struct Entry {
    state: State,
    ip: Ipv4Address,
    mac: EthernetAddress,
    client_id: Vec<u8, MAX_CLIENT_ID>,
    hostname: String<MAX_HOSTNAME>,
    key_hash: u32,
    expires: Instant,
    next_key: u32,
    next_ip: u32,
    next_name: u32,
}

impl Entry {
    const EMPTY: Entry = Entry {
        state: State::Free,
        ip: Ipv4Address::UNSPECIFIED,
        mac: EthernetAddress([0; 6]),
        client_id: Vec::new(),
        hostname: String::new(),
        key_hash: 0,
        expires: Instant::ZERO,
        next_key: NIL,
        next_ip: NIL,
        next_name: NIL,
    };
    fn keyed(&self) -> bool {
        matches!(self.state, State::Checking | State::Offered | State::Bound)
    }
}

/// An ARP check before an OFFER: the DISCOVER it answers and when to give up waiting.
struct Check {
    slot: u32,
    deadline: Instant,
    request: DhcpRepr,
    meta: UdpMeta,
}

#[derive(Clone, Copy)]
enum Chain {
    Key,
    Ip,
    Name,
}

/// What a REQUEST is, per RFC 2131 §4.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Answering an OFFER: server identifier and requested address present, ciaddr zero.
    Selecting {
        /// Option 54.
        server: Ipv4Address,
        /// Option 50 (absent is a client error).
        requested: Option<Ipv4Address>,
    },
    /// Verifying a remembered address after a reboot: option 50, no server identifier, ciaddr zero.
    InitReboot(Ipv4Address),
    /// Extending a lease, unicast to this server: ciaddr set, no options 50/54.
    Renewing(Ipv4Address),
    /// Extending a lease by broadcast after T2: ciaddr set, no options 50/54.
    Rebinding(Ipv4Address),
    /// None of the above (no ciaddr and no option 50).
    Invalid,
}

impl RequestKind {
    /// Tell the four REQUEST states apart (§4.3.2): option 54 means SELECTING; otherwise option 50 with
    /// ciaddr zero is INIT-REBOOT; otherwise ciaddr set is RENEWING when sent unicast to us and
    /// REBINDING when broadcast.
    pub fn of(req: &DhcpRepr, meta: &UdpMeta) -> Self {
        if let Some(server) = req.server_id {
            return Self::Selecting { server, requested: req.requested_ip };
        }
        if req.ciaddr.is_unspecified() {
            return match req.requested_ip {
                Some(ip) => Self::InitReboot(ip),
                None => Self::Invalid,
            };
        }
        if meta.dst_ip == Ipv4Address::BROADCAST || meta.dst_mac.is_broadcast() {
            Self::Rebinding(req.ciaddr)
        } else {
            Self::Renewing(req.ciaddr)
        }
    }
}

/// The DHCP server with room for `LEASES` entries (checks, offers, bindings and quarantined
/// addresses together). When the table is full, a new client gets silence and
/// [`Event::PoolExhausted`]; existing clients are served as before.
pub struct DhcpServer<const LEASES: usize> {
    entries: [Entry; LEASES],
    key_heads: [u32; LEASES],
    ip_heads: [u32; LEASES],
    name_heads: [u32; LEASES],
    free_head: u32,
    used: usize,
    checks: Vec<Check, MAX_CHECKS>,
    lease_deadline: Option<Instant>,
    exhausted: bool,
}

/// 64 leases.
pub type DefaultDhcpServer = DhcpServer<64>;

impl<const LEASES: usize> Default for DhcpServer<LEASES> {
    fn default() -> Self {
        Self::new()
    }
}

/// FNV-1a, then the murmur3 finaliser so that nearby addresses and keys spread over the buckets.
fn hash_bytes(seed: u32, data: &[u8]) -> u32 {
    let mut h = 0x811c_9dc5u32 ^ seed;
    for b in data {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    fmix(h)
}

fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The hash of a client's key: its client identifier if it sent one, else its hardware address.
/// The same at every site, so a client gets the same address wherever it asks first.
fn key_hash(client_id: &[u8], mac: EthernetAddress) -> u32 {
    if client_id.is_empty() {
        hash_bytes(1, mac.as_bytes())
    } else {
        hash_bytes(2, client_id)
    }
}

/// The hostname a client asks for: the first label of option 81, else of option 12, lowercased; `None`
/// unless it is an RFC 1123 label.
fn desired_name(req: &DhcpRepr) -> Option<String<MAX_HOSTNAME>> {
    let raw = match (&req.fqdn, &req.hostname) {
        (Some(q), _) if q.first_label().is_some() => q.first_label()?,
        (_, Some(h)) => h.split(|c| *c == b'.').next()?,
        _ => return None,
    };
    let mut s = String::new();
    for c in raw {
        s.push(char::from(c.to_ascii_lowercase())).ok()?;
    }
    is_hostname_label(&s).then_some(s)
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.secs()).unwrap_or(u32::MAX)
}

impl<const LEASES: usize> DhcpServer<LEASES> {
    /// Empty server.
    pub fn new() -> Self {
        let mut s = Self {
            entries: [Entry::EMPTY; LEASES],
            key_heads: [NIL; LEASES],
            ip_heads: [NIL; LEASES],
            name_heads: [NIL; LEASES],
            free_head: if LEASES == 0 { NIL } else { 0 },
            used: 0,
            checks: Vec::new(),
            lease_deadline: None,
            exhausted: false,
        };
        for (i, e) in s.entries.iter_mut().enumerate() {
            e.next_key = if i + 1 < LEASES { (i + 1) as u32 } else { NIL };
        }
        s
    }

    // ---- the indexes -------------------------------------------------------------------------------

    fn bucket(h: u32) -> usize {
        h as usize % LEASES.max(1)
    }

    fn ip_bucket(ip: Ipv4Address) -> usize {
        Self::bucket(fmix(u32::from(ip)))
    }

    fn name_bucket(name: &str) -> usize {
        Self::bucket(hash_bytes(3, name.as_bytes()))
    }

    fn link(e: &mut Entry, c: Chain) -> &mut u32 {
        match c {
            Chain::Key => &mut e.next_key,
            Chain::Ip => &mut e.next_ip,
            Chain::Name => &mut e.next_name,
        }
    }

    fn chain_bucket(&self, i: u32, c: Chain) -> usize {
        let e = &self.entries[i as usize];
        match c {
            Chain::Key => Self::bucket(e.key_hash),
            Chain::Ip => Self::ip_bucket(e.ip),
            Chain::Name => Self::name_bucket(&e.hostname),
        }
    }

    fn heads(&mut self, c: Chain) -> &mut [u32; LEASES] {
        match c {
            Chain::Key => &mut self.key_heads,
            Chain::Ip => &mut self.ip_heads,
            Chain::Name => &mut self.name_heads,
        }
    }

    fn insert(&mut self, i: u32, c: Chain) {
        let b = self.chain_bucket(i, c);
        let head = self.heads(c)[b];
        *Self::link(&mut self.entries[i as usize], c) = head;
        self.heads(c)[b] = i;
    }

    fn unlink(&mut self, i: u32, c: Chain) {
        let b = self.chain_bucket(i, c);
        let next = *Self::link(&mut self.entries[i as usize], c);
        if self.heads(c)[b] == i {
            self.heads(c)[b] = next;
            return;
        }
        let mut cur = self.heads(c)[b];
        while cur != NIL {
            let n = *Self::link(&mut self.entries[cur as usize], c);
            if n == i {
                *Self::link(&mut self.entries[cur as usize], c) = next;
                return;
            }
            cur = n;
        }
    }

    // HOT PATH
    fn find_client(&self, client_id: &[u8], mac: EthernetAddress) -> Option<u32> {
        if LEASES == 0 {
            return None;
        }
        let mut cur = self.key_heads[Self::bucket(key_hash(client_id, mac))];
        while cur != NIL {
            let e = &self.entries[cur as usize];
            let same = if client_id.is_empty() {
                e.client_id.is_empty() && e.mac == mac
            } else {
                e.client_id.as_slice() == client_id
            };
            if e.keyed() && same {
                return Some(cur);
            }
            cur = e.next_key;
        }
        None
    }

    /// Whether `ip` is bound to a client now (an egress source check).
    // HOT PATH
    pub fn is_bound(&self, ip: Ipv4Address) -> bool {
        self.find_ip(ip).is_some_and(|i| self.entries[i as usize].state == State::Bound)
    }

    // HOT PATH
    fn find_ip(&self, ip: Ipv4Address) -> Option<u32> {
        if LEASES == 0 {
            return None;
        }
        let mut cur = self.ip_heads[Self::ip_bucket(ip)];
        while cur != NIL {
            let e = &self.entries[cur as usize];
            if e.ip == ip {
                return Some(cur);
            }
            cur = e.next_ip;
        }
        None
    }

    fn find_name(&self, name: &str) -> Option<u32> {
        if LEASES == 0 {
            return None;
        }
        let mut cur = self.name_heads[Self::name_bucket(name)];
        while cur != NIL {
            let e = &self.entries[cur as usize];
            if e.hostname.as_str() == name {
                return Some(cur);
            }
            cur = e.next_name;
        }
        None
    }

    /// Take a free entry for `ip` keyed to the client (or to nobody, for a quarantine).
    fn create(
        &mut self,
        state: State,
        ip: Ipv4Address,
        mac: EthernetAddress,
        client_id: &[u8],
    ) -> Option<u32> {
        let i = self.free_head;
        if i == NIL {
            return None;
        }
        let e = &mut self.entries[i as usize];
        self.free_head = e.next_key;
        e.state = state;
        e.ip = ip;
        e.mac = mac;
        e.client_id.clear();
        // Callers checked the length: option 61 is bounded by MAX_CLIENT_ID at parse.
        let _ = e.client_id.extend_from_slice(client_id);
        e.hostname.clear();
        e.key_hash = key_hash(client_id, mac);
        self.used += 1;
        self.insert(i, Chain::Ip);
        if self.entries[i as usize].keyed() {
            self.insert(i, Chain::Key);
        }
        Some(i)
    }

    fn remove(&mut self, i: u32) {
        if self.entries[i as usize].state == State::Free {
            return;
        }
        self.drop_name(i);
        if self.entries[i as usize].keyed() {
            self.unlink(i, Chain::Key);
        }
        self.unlink(i, Chain::Ip);
        let e = &mut self.entries[i as usize];
        e.state = State::Free;
        e.next_key = self.free_head;
        self.free_head = i;
        self.used -= 1;
        self.exhausted = false;
    }

    fn drop_name(&mut self, i: u32) {
        if !self.entries[i as usize].hostname.is_empty() {
            self.unlink(i, Chain::Name);
            self.entries[i as usize].hostname.clear();
        }
    }

    /// Turn entry `i` into a quarantined address, no longer anybody's.
    fn quarantine(&mut self, now: Instant, i: u32, mac: EthernetAddress) {
        self.drop_name(i);
        if self.entries[i as usize].keyed() {
            self.unlink(i, Chain::Key);
        }
        let e = &mut self.entries[i as usize];
        e.state = State::Quarantined;
        e.mac = mac;
        e.client_id.clear();
        self.set_expiry(i, now + QUARANTINE);
    }

    fn set_expiry(&mut self, i: u32, at: Instant) {
        self.entries[i as usize].expires = at;
        let due = at + TIMER_SLACK;
        if self.lease_deadline.is_none_or(|d| due < d) {
            self.lease_deadline = Some(due);
        }
    }

    /// Register `name` for entry `i` unless another client holds it (first registration wins).
    /// Returns whether the entry's hostname changed.
    fn register_name(&mut self, i: u32, name: Option<String<MAX_HOSTNAME>>) -> bool {
        let Some(name) = name else { return false };
        if self.entries[i as usize].hostname == name {
            return false;
        }
        if self.find_name(&name).is_some() {
            return false;
        }
        self.drop_name(i);
        self.entries[i as usize].hostname = name;
        self.insert(i, Chain::Name);
        true
    }

    fn in_service(&self, site: &Site, alloc: &dyn Allocator, ip: Ipv4Address) -> bool {
        site.params.is_vn_host(ip) && alloc.owns(ip)
    }

    /// Whether `ip` can be given to the client whose entry is `mine` (if any).
    fn free_for(&self, ip: Ipv4Address, mine: Option<u32>) -> bool {
        match self.find_ip(ip) {
            None => true,
            Some(j) => Some(j) == mine,
        }
    }

    fn note_exhausted(&mut self, cx: &mut Cx<'_>) {
        cx.stats.dhcp_ignored += 1;
        if !self.exhausted {
            self.exhausted = true;
            warn!("dhcp: pool exhausted, DISCOVERs go unanswered");
            cx.event(Event::PoolExhausted);
        }
    }

    // ---- input -------------------------------------------------------------------------------------

    /// A DHCP message (UDP payload) from the LAN or a relay.
    // HOT PATH
    pub fn handle(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        alloc: &mut dyn Allocator,
        meta: &UdpMeta,
        payload: &[u8],
    ) {
        let Ok(req) = DhcpPacket::new_checked(payload)
            .and_then(|p| DhcpRepr::parse(&p).map_err(|_| smoltcp::wire::Error))
        else {
            cx.stats.malformed += 1;
            return;
        };
        if req.op != DhcpOpCode::Request || LEASES == 0 {
            cx.stats.dhcp_ignored += 1;
            return;
        }
        // Relayed requests are served from the same pool only when the relay sits inside the VN subnet.
        if !req.giaddr.is_unspecified() && !site.params.subnet.contains_addr(&req.giaddr) {
            cx.stats.dhcp_ignored += 1;
            return;
        }
        match req.message_type {
            DhcpMessageType::Discover => self.discover(cx, site, alloc, meta, req),
            DhcpMessageType::Request => self.request(cx, site, alloc, meta, &req),
            DhcpMessageType::Decline => self.decline(cx, site, &req),
            DhcpMessageType::Release => self.release(cx, site, &req),
            DhcpMessageType::Inform => self.inform(cx, site, meta, &req),
            _ => cx.stats.dhcp_ignored += 1,
        }
    }

    fn discover(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        alloc: &mut dyn Allocator,
        meta: &UdpMeta,
        req: DhcpRepr,
    ) {
        let id = req.client_id.clone().unwrap_or_default();
        let mut mine = self.find_client(&id, req.chaddr);
        if let Some(i) = mine {
            let e = &self.entries[i as usize];
            match e.state {
                State::Checking => {
                    // A retransmission while the address is checked: answer its latest xid.
                    if let Some(c) = self.checks.iter_mut().find(|c| c.slot == i) {
                        c.request = req;
                        c.meta = *meta;
                    }
                    return;
                }
                State::Offered | State::Bound if self.in_service(site, alloc, e.ip) => {
                    self.entries[i as usize].mac = req.chaddr;
                    if self.entries[i as usize].state == State::Offered {
                        self.set_expiry(i, cx.now + OFFER_HOLD);
                    }
                    self.send_offer(cx, site, i, &req, meta);
                    return;
                }
                State::Offered => {
                    self.remove(i);
                    mine = None;
                }
                _ => {}
            }
        }
        let relayed = !req.giaddr.is_unspecified();
        if !relayed && self.checks.is_full() {
            cx.stats.dhcp_checks_full += 1;
            return;
        }
        // 1. the requested address, 2. the hash of the key, 3. any free address from there on.
        let requested =
            req.requested_ip.filter(|ip| self.in_service(site, alloc, *ip) && self.free_for(*ip, mine));
        let ip = requested.or_else(|| {
            let limit = u32::try_from(LEASES).unwrap_or(u32::MAX).saturating_add(MAX_CHECKS as u32 + 1);
            let this = &*self;
            alloc.pick(key_hash(&id, req.chaddr), limit, &mut |ip| {
                site.params.is_vn_host(ip) && this.free_for(ip, mine)
            })
        });
        let slot = match (ip, mine) {
            (Some(ip), Some(i)) => {
                // A bound client whose address is no longer ours moves to a new one.
                self.drop_name(i);
                self.unlink(i, Chain::Ip);
                self.entries[i as usize].ip = ip;
                self.entries[i as usize].state = State::Checking;
                self.insert(i, Chain::Ip);
                Some(i)
            }
            (Some(ip), None) => self.create(State::Checking, ip, req.chaddr, &id),
            (None, _) => None,
        };
        let Some(slot) = slot else {
            if !alloc.short() {
                self.note_exhausted(cx);
            }
            return;
        };
        if relayed {
            self.entries[slot as usize].state = State::Offered;
            self.set_expiry(slot, cx.now + OFFER_HOLD);
            self.send_offer(cx, site, slot, &req, meta);
            return;
        }
        let ip = self.entries[slot as usize].ip;
        // The client itself may still use the address it asks for: ask it directly (its MAC is the
        // last one known for that address); otherwise broadcast. Never probe format: sender is `.1`.
        let dst = if req.requested_ip == Some(ip) { req.chaddr } else { EthernetAddress::BROADCAST };
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: site.router_mac,
            source_protocol_addr: site.dns_addr,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ip,
        };
        let router_mac = site.router_mac;
        cx.lan(&mut |buf| emit_arp_frame(buf, router_mac, dst, &arp));
        let deadline = cx.now + CHECK_WAIT;
        let _ = self.checks.push(Check { slot, deadline, request: req, meta: *meta });
        debug!("dhcp: checking {} before offering it", ip);
    }

    fn request(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        alloc: &mut dyn Allocator,
        meta: &UdpMeta,
        req: &DhcpRepr,
    ) {
        let id = req.client_id.clone().unwrap_or_default();
        let mine = self.find_client(&id, req.chaddr);
        let state_of = |s: &Self, i: u32| s.entries[i as usize].state;
        let ip_of = |s: &Self, i: u32| s.entries[i as usize].ip;
        match RequestKind::of(req, meta) {
            RequestKind::Selecting { server, requested } => {
                if server != site.dns_addr {
                    // The client took another server's offer: ours is free again.
                    if let Some(i) = mine.filter(|i| state_of(self, *i) == State::Offered) {
                        self.remove(i);
                    }
                    cx.stats.dhcp_ignored += 1;
                    return;
                }
                let Some(ip) = requested else {
                    cx.stats.dhcp_ignored += 1;
                    return;
                };
                if !site.params.is_vn_host(ip) {
                    return self.send_nak(cx, site, req, meta);
                }
                match mine {
                    Some(i)
                        if ip_of(self, i) == ip
                            && matches!(state_of(self, i), State::Offered | State::Bound) =>
                    {
                        self.bind(cx, site, i, req, meta)
                    }
                    Some(i) if state_of(self, i) == State::Checking => cx.stats.dhcp_ignored += 1,
                    _ => match self.find_ip(ip) {
                        Some(_) => self.send_nak(cx, site, req, meta),
                        // Our offer was forgotten (it expired, or we restarted): the address is free
                        // and ours, so the client may have it.
                        None if alloc.owns(ip) => {
                            if let Some(i) = mine {
                                self.remove(i);
                            }
                            match self.create(State::Offered, ip, req.chaddr, &id) {
                                Some(i) => self.bind(cx, site, i, req, meta),
                                None => self.note_exhausted(cx),
                            }
                        }
                        None => self.send_nak(cx, site, req, meta),
                    },
                }
            }
            RequestKind::InitReboot(ip) => {
                if !site.params.is_vn_host(ip) {
                    return self.send_nak(cx, site, req, meta);
                }
                match mine {
                    Some(i)
                        if ip_of(self, i) == ip
                            && matches!(state_of(self, i), State::Offered | State::Bound) =>
                    {
                        self.bind(cx, site, i, req, meta)
                    }
                    // Positive knowledge: this client's binding is another address.
                    Some(i) if state_of(self, i) == State::Bound => self.send_nak(cx, site, req, meta),
                    _ => match self.find_ip(ip) {
                        Some(_) => self.send_nak(cx, site, req, meta),
                        // Unknown address: silence, another server may know it (§4.3.2).
                        None => cx.stats.dhcp_ignored += 1,
                    },
                }
            }
            RequestKind::Renewing(ip) | RequestKind::Rebinding(ip) => {
                if !site.params.is_vn_host(ip) {
                    return self.send_nak(cx, site, req, meta);
                }
                match mine {
                    Some(i) if ip_of(self, i) == ip && state_of(self, i) == State::Bound => {
                        self.bind(cx, site, i, req, meta)
                    }
                    _ => match self.find_ip(ip) {
                        Some(_) => self.send_nak(cx, site, req, meta),
                        None => cx.stats.dhcp_ignored += 1,
                    },
                }
            }
            RequestKind::Invalid => cx.stats.dhcp_ignored += 1,
        }
    }

    /// Make entry `i` a binding for one lease and ACK. A new or changed binding is persisted before
    /// the ACK leaves (held, with [`Event::BindingsChanged`]); a plain renewal is neither.
    fn bind(&mut self, cx: &mut Cx<'_>, site: &Site, i: u32, req: &DhcpRepr, meta: &UdpMeta) {
        let was_bound = self.entries[i as usize].state == State::Bound;
        let new_mac = self.entries[i as usize].mac != req.chaddr;
        self.entries[i as usize].mac = req.chaddr;
        let new_name = self.register_name(i, desired_name(req));
        self.entries[i as usize].state = State::Bound;
        self.set_expiry(i, cx.now + site.params.lease_time);
        let changed = !was_bound || new_mac || new_name;
        let e = &self.entries[i as usize];
        let mut r = reply(site, req, DhcpMessageType::Ack);
        r.yiaddr = e.ip;
        r.ciaddr = req.ciaddr;
        add_config(site, req, &mut r, Some(site.params.lease_time));
        add_names(site, req, &mut r, &e.hostname);
        let (ip, mac) = (e.ip, e.mac);
        let sent = send(cx, site, &r, req, meta, changed);
        if changed {
            info!("dhcp: bound {}", ip);
            cx.event(Event::BindingsChanged);
            cx.event(Event::LeaseGranted { ip, mac, lease: site.params.lease_time });
        }
        let _ = sent;
    }

    fn decline(&mut self, cx: &mut Cx<'_>, site: &Site, req: &DhcpRepr) {
        let id = req.client_id.clone().unwrap_or_default();
        let (Some(ip), true) = (req.requested_ip, req.server_id.is_none_or(|s| s == site.dns_addr)) else {
            cx.stats.dhcp_ignored += 1;
            return;
        };
        let Some(i) = self.find_client(&id, req.chaddr).filter(|i| self.entries[*i as usize].ip == ip) else {
            cx.stats.dhcp_ignored += 1;
            return;
        };
        let was_bound = self.entries[i as usize].state == State::Bound;
        // The claim stays with this site; the address is only kept out of the pool for a while.
        self.quarantine(cx.now, i, req.chaddr);
        warn!("dhcp: {} declined, quarantined", ip);
        cx.event(Event::AddressDeclined { ip, mac: req.chaddr });
        if was_bound {
            cx.event(Event::BindingsChanged);
        }
    }

    fn release(&mut self, cx: &mut Cx<'_>, site: &Site, req: &DhcpRepr) {
        let id = req.client_id.clone().unwrap_or_default();
        if req.server_id.is_some_and(|s| s != site.dns_addr) {
            cx.stats.dhcp_ignored += 1;
            return;
        }
        let Some(i) = self.find_client(&id, req.chaddr).filter(|i| {
            let e = &self.entries[*i as usize];
            e.ip == req.ciaddr && e.state == State::Bound
        }) else {
            cx.stats.dhcp_ignored += 1;
            return;
        };
        let mac = self.entries[i as usize].mac;
        self.remove(i);
        cx.event(Event::LeaseEnded { ip: req.ciaddr, mac });
        cx.event(Event::BindingsChanged);
    }

    fn inform(&mut self, cx: &mut Cx<'_>, site: &Site, meta: &UdpMeta, req: &DhcpRepr) {
        let ci = if req.ciaddr.is_unspecified() { meta.src_ip } else { req.ciaddr };
        if !site.params.subnet.contains_addr(&ci) {
            cx.stats.dhcp_ignored += 1;
            return;
        }
        // §4.3.5: no lease time, no yiaddr; the answer goes to the address the client configured.
        let mut r = reply(site, req, DhcpMessageType::Ack);
        r.ciaddr = req.ciaddr;
        add_config(site, req, &mut r, None);
        let mut req = req.clone();
        req.ciaddr = ci;
        send(cx, site, &r, &req, meta, false);
    }

    fn send_offer(&mut self, cx: &mut Cx<'_>, site: &Site, i: u32, req: &DhcpRepr, meta: &UdpMeta) {
        let e = &self.entries[i as usize];
        let mut r = reply(site, req, DhcpMessageType::Offer);
        r.yiaddr = e.ip;
        add_config(site, req, &mut r, Some(site.params.lease_time));
        // The name the client would get: its own, or the one it asks for if nobody holds it.
        let mut name = e.hostname.clone();
        if let Some(n) = desired_name(req) {
            if self.find_name(&n).is_none_or(|j| j == i) {
                name = n;
            }
        }
        add_names(site, req, &mut r, &name);
        send(cx, site, &r, req, meta, false);
    }

    fn send_nak(&mut self, cx: &mut Cx<'_>, site: &Site, req: &DhcpRepr, meta: &UdpMeta) {
        let mut r = DhcpRepr::new(DhcpOpCode::Reply, DhcpMessageType::Nak, req.xid, req.chaddr);
        r.giaddr = req.giaddr;
        r.server_id = Some(site.dns_addr);
        r.client_id = req.client_id.clone();
        r.relay_agent_info = req.relay_agent_info.clone();
        // §4.3.2: a NAK through a relay asks it to broadcast.
        r.flags = if req.giaddr.is_unspecified() { req.flags } else { req.flags | FLAG_BROADCAST };
        debug!("dhcp: NAK to {}", req.chaddr);
        send(cx, site, &r, req, meta, false);
    }

    /// A station showed it holds `ip` (ARP reply or announcement).
    pub fn on_address_seen(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        alloc: &mut dyn Allocator,
        ip: Ipv4Address,
        mac: EthernetAddress,
    ) {
        let Some(pos) = self.checks.iter().position(|c| self.entries[c.slot as usize].ip == ip) else {
            return;
        };
        let slot = self.checks[pos].slot;
        if self.entries[slot as usize].mac == mac {
            return; // the client itself still uses the address it asked for
        }
        let check = self.checks.swap_remove(pos);
        warn!("dhcp: {} is in use by {}, not offered", ip, mac);
        cx.event(Event::AddressInUse { ip, mac });
        self.quarantine(cx.now, slot, mac);
        // Pick another address for the same DISCOVER.
        self.discover(cx, site, alloc, &check.meta, check.request);
    }

    /// Next deadline.
    pub fn poll_at(&self) -> Option<Instant> {
        let checks = self.checks.iter().map(|c| c.deadline).min();
        [checks, self.lease_deadline].into_iter().flatten().min()
    }

    /// Timers: offers after their address check, expiry of offers, leases and quarantines.
    /// Safe to call at any time.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>, site: &Site, _alloc: &mut dyn Allocator) {
        let now = cx.now;
        let mut k = 0;
        while k < self.checks.len() {
            if self.checks[k].deadline > now {
                k += 1;
                continue;
            }
            let c = self.checks.swap_remove(k);
            self.entries[c.slot as usize].state = State::Offered;
            self.set_expiry(c.slot, now + OFFER_HOLD);
            self.send_offer(cx, site, c.slot, &c.request, &c.meta);
        }
        if self.lease_deadline.is_some_and(|d| d <= now) {
            self.lease_deadline = None;
            for i in 0..LEASES as u32 {
                let e = &self.entries[i as usize];
                if matches!(e.state, State::Free | State::Checking) {
                    continue;
                }
                if e.expires > now {
                    let due = e.expires + TIMER_SLACK;
                    if self.lease_deadline.is_none_or(|d| due < d) {
                        self.lease_deadline = Some(due);
                    }
                    continue;
                }
                if e.state == State::Bound {
                    let (ip, mac) = (e.ip, e.mac);
                    cx.event(Event::LeaseEnded { ip, mac });
                }
                self.remove(i);
            }
        }
    }

    /// The current bindings, for persistence.
    pub fn bindings(&self, now: Instant) -> impl Iterator<Item = Binding> + '_ {
        self.entries.iter().filter(move |e| e.state == State::Bound && e.expires > now).map(move |e| {
            Binding {
                ip: e.ip,
                mac: e.mac,
                client_id: e.client_id.clone(),
                hostname: e.hostname.clone(),
                remaining: e.expires - now,
            }
        })
    }

    /// Reload a persisted binding at start: valid for one full lease from `now`. False when the address
    /// is outside the pool, taken, the client already bound, or the table full.
    pub fn restore(&mut self, now: Instant, site: &Site, binding: &Binding) -> bool {
        if !site.params.pool.contains(binding.ip)
            || !site.params.is_vn_host(binding.ip)
            || self.find_ip(binding.ip).is_some()
            || self.find_client(&binding.client_id, binding.mac).is_some()
        {
            return false;
        }
        let Some(i) = self.create(State::Bound, binding.ip, binding.mac, &binding.client_id) else {
            return false;
        };
        self.set_expiry(i, now + site.params.lease_time);
        let name = Some(binding.hostname.clone()).filter(|n| is_hostname_label(n));
        self.register_name(i, name);
        true
    }

    /// Entries in use (checks, offers, bindings, quarantines).
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }
}

impl<const LEASES: usize> NameTable for DhcpServer<LEASES> {
    fn lookup(&self, label: &str) -> Option<Ipv4Address> {
        let i = self.find_name(label)?;
        let e = &self.entries[i as usize];
        (e.state == State::Bound).then_some(e.ip)
    }
    fn name_of(&self, ip: Ipv4Address) -> Option<&str> {
        let e = &self.entries[self.find_ip(ip)? as usize];
        (e.state == State::Bound && !e.hostname.is_empty()).then_some(e.hostname.as_str())
    }
}

// ---- replies -----------------------------------------------------------------------------------------

/// The common part of a reply: header fields copied from the request, server identifier `.1`, and the
/// echoed options 61 (RFC 6842) and 82 (RFC 3046).
fn reply(site: &Site, req: &DhcpRepr, message_type: DhcpMessageType) -> DhcpRepr {
    let mut r = DhcpRepr::new(DhcpOpCode::Reply, message_type, req.xid, req.chaddr);
    r.flags = req.flags;
    r.giaddr = req.giaddr;
    r.server_id = Some(site.dns_addr);
    r.client_id = req.client_id.clone();
    r.relay_agent_info = req.relay_agent_info.clone();
    r
}

/// Options 1, 3/121 (by egress policy and node role), 6, 15, 26, 28 and the lease times 51/58/59.
fn add_config(site: &Site, req: &DhcpRepr, r: &mut DhcpRepr, lease: Option<Duration>) {
    let p = &site.params;
    r.subnet_mask = Some(p.netmask());
    if site.default_route() {
        r.router = Some(site.gateway_addr);
        // RFC 3442: a client that takes 121 ignores 3, so the default route goes in 121 too.
        if req.requested(opt::CLASSLESS_ROUTES) {
            let g = site.gateway_addr.octets();
            r.classless_routes = Vec::from_slice(&[0, g[0], g[1], g[2], g[3]]).ok();
        }
    }
    r.dns_server = Some(site.dns_addr);
    r.domain_name = Vec::from_slice(p.domain.as_bytes()).ok();
    r.interface_mtu = Some(p.mtu);
    r.broadcast_addr = Some(p.broadcast());
    if let Some(l) = lease {
        let s = secs(l);
        r.lease_time = Some(s);
        r.renewal_time = Some(s / 2);
        r.rebinding_time = Some((u64::from(s) * 7 / 8) as u32);
    }
}

/// Options 12 (when asked for) and 81 (RFC 4702 §4) for the registered `name` (empty: none).
fn add_names(site: &Site, req: &DhcpRepr, r: &mut DhcpRepr, name: &str) {
    if !name.is_empty() && req.requested(opt::HOST_NAME) {
        r.hostname = Vec::from_slice(name.as_bytes()).ok();
    }
    let Some(q) = &req.fqdn else { return };
    let e = q.flags & fqdn_flags::E;
    let mut out = Fqdn { flags: e, rcode1: 255, rcode2: 255, name: Vec::new() };
    if name.is_empty() {
        // No name registered for this client: the server updates nothing.
        out.flags |= fqdn_flags::N;
        out.name = q.name.clone();
    } else {
        // The server registers the name (S); if the client wanted to do it itself, say we overrode it.
        out.flags |= fqdn_flags::S;
        if q.flags & fqdn_flags::S == 0 {
            out.flags |= fqdn_flags::O;
        }
        let domain = site.params.domain.as_bytes();
        let ok = if e != 0 {
            let mut v: Vec<u8, 252> = Vec::new();
            let mut ok = v.push(name.len() as u8).is_ok() && v.extend_from_slice(name.as_bytes()).is_ok();
            for label in domain.split(|c| *c == b'.') {
                ok &= v.push(label.len() as u8).is_ok() && v.extend_from_slice(label).is_ok();
            }
            ok &= v.push(0).is_ok();
            out.name = v;
            ok
        } else {
            out.name.extend_from_slice(name.as_bytes()).is_ok()
                && out.name.push(b'.').is_ok()
                && out.name.extend_from_slice(domain).is_ok()
        };
        if !ok {
            out.name.clear();
        }
    }
    r.fqdn = Some(out);
}

/// Drop optional options until the reply fits what the client accepts.
fn fit(r: &mut DhcpRepr, budget: usize) -> bool {
    let mut step = 0;
    while r.buffer_len() > budget {
        match step {
            0 => r.hostname = None,
            1 => r.fqdn = None,
            2 => r.domain_name = None,
            3 => r.broadcast_addr = None,
            4 => r.classless_routes = None,
            5 => r.interface_mtu = None,
            _ => return false,
        }
        step += 1;
    }
    true
}

/// Address the reply per RFC 2131 §4.1 and queue it (held until the bindings are persisted if `held`).
fn send(cx: &mut Cx<'_>, site: &Site, r: &DhcpRepr, req: &DhcpRepr, meta: &UdpMeta, held: bool) -> bool {
    let nak = r.message_type == DhcpMessageType::Nak;
    let (dst_mac, dst_ip, dst_port) = if !req.giaddr.is_unspecified() {
        // Relayed: back to the relay's server port; on Ethernet to whoever handed us the frame.
        (meta.src_mac, req.giaddr, SERVER_PORT)
    } else if nak {
        (EthernetAddress::BROADCAST, Ipv4Address::BROADCAST, CLIENT_PORT)
    } else if !req.ciaddr.is_unspecified() {
        (meta.src_mac, req.ciaddr, CLIENT_PORT)
    } else if req.broadcast_flag() {
        (EthernetAddress::BROADCAST, Ipv4Address::BROADCAST, CLIENT_PORT)
    } else {
        (req.chaddr, r.yiaddr, CLIENT_PORT)
    };
    let frame = UdpFrame {
        src_mac: site.router_mac,
        dst_mac,
        src_ip: site.dns_addr,
        dst_ip,
        src_port: SERVER_PORT,
        dst_port,
    };
    // Option 57 counts the whole IP datagram; never below the 576 every client takes.
    let max_ip = req.max_message_size.map_or(DEFAULT_MAX_MESSAGE + IP_UDP_HEADERS, usize::from);
    let budget = (max_ip.max(DEFAULT_MAX_MESSAGE + IP_UDP_HEADERS) - IP_UDP_HEADERS)
        .min(FRAME_CAP - UdpFrame::PAYLOAD_OFFSET);
    let mut r = r.clone();
    if !fit(&mut r, budget) {
        cx.stats.dhcp_ignored += 1;
        return false;
    }
    let mut build = |buf: &mut [u8]| frame.emit(buf, budget, |p| r.emit(p).ok());
    if held {
        cx.lan_held(&mut build)
    } else {
        cx.lan(&mut build)
    }
}

#[cfg(test)]
mod tests;
