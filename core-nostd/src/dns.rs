//! The VN's DNS responder at `.1` (IPOP SC09 §4.3; DESIGN.md "dns").
//!
//! Authoritative for two zones, answered locally and never forwarded:
//! - the VN domain (`site.params.domain`): the IP-derived name of every VN host address (IPOP's scheme,
//!   10.250.5.5 <-> `C250005005`: `C` and the last three octets, three digits each), the hostnames of the
//!   [`NameTable`] (`<host>.<domain>`), `ns.<domain>` for `.1`, and SOA and NS at the apex;
//! - the VN's reverse zone (RFC 6303): the `in-addr.arpa` names of `site.params.subnet`, from its
//!   octet-aligned enclosing zone down (a /16 or a /20 at 10.250 both give `250.10.in-addr.arpa`).
//!
//! A PTR names the registered hostname when there is one, and the IP-derived name otherwise: a single
//! PTR per address (RFC 1912 §2.1), because `getnameinfo` and most tools take only the first, and the
//! IP-derived name still resolves forward. Unknown names get NXDOMAIN, other types of existing names
//! NODATA, both with a synthesized SOA in the authority section (RFC 2308) whose negative TTL is short,
//! as are all TTLs here: names move with leases.
//!
//! **Hostnames of other sites** ([`DnsServer::handle_query_with`], a node in an overlay): a name
//! `<label>.<domain>` that is neither `ns`, an IP-derived name nor a local hostname is `host:<label>`
//! in the DHT. The query is parked (at most `PENDING` at once; beyond that SERVFAIL) and a read starts
//! through [`HostLookup`]; its outcome comes back by [`DnsServer::host_done`]: found -> the A record
//! (NODATA for other types), a read quorum said absent -> NXDOMAIN with the SOA, anything else (no
//! quorum, no storage node, a record that is no VN address) or no outcome within [`HOST_TIMEOUT`]
//! -> SERVFAIL, so a resolver never caches a negative answer the VN did not give. A local hostname that
//! another node holds in the DHT ([`HostLookup::shadowed`]: it registered the name first) is not
//! answered locally, forward or reverse, so every site gives the same answer. The PTR of another
//! site's address is its IP-derived name (no reverse record in the DHT yet). Without an overlay
//! ([`DnsServer::handle_query`]) such names are NXDOMAIN.
//!
//! Everything else is forwarded to `site.params.upstream_dns` (REFUSED when there is none) from a random
//! source port with a random id (RFC 5452); the answer must come from the upstream's address and port 53,
//! to that port, with that id and the same question, or it is dropped and counted. The table of
//! forwarded queries holds `PENDING` entries; when full, or when the upstream is silent for
//! [`UPSTREAM_TIMEOUT`], the client gets SERVFAIL. EDNS0 (RFC 6891): the client's OPT sets the size our
//! answer is truncated at (512 without it, at most [`EDNS_UDP_SIZE`]); we answer with an OPT of our own
//! when the client sent one, and BADVERS to versions above 0. Cookies (RFC 7873) are ignored.

use core::net::{SocketAddr, SocketAddrV4};

use heapless::{String, Vec};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::Ipv4Address;

use crate::config::{is_hostname_label, Site};
use crate::dhcp::{NameTable, MAX_HOSTNAME};
use crate::queue::Cx;
use crate::wire::dns::{
    Class, Flags, Name, Opcode, Opt, Packet, Question, RData, Rcode, Record, Repr, Soa, Type, HEADER_LEN,
};
use crate::wire::{UdpFrame, UdpMeta};

/// DNS port, at `.1` and at the upstream.
pub const DNS_PORT: u16 = 53;
/// How long a forwarded query waits for the upstream before the client gets SERVFAIL.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// The UDP payload size we advertise and the most we send (RFC 6891 §6.2.5; the 2020 flag day's 1232).
pub const EDNS_UDP_SIZE: u16 = 1232;
/// Largest answer to a client without EDNS (RFC 1035 §4.2.1).
pub const PLAIN_UDP_SIZE: u16 = 512;
/// TTL of our positive answers, seconds: short, since names follow leases.
pub const TTL: u32 = 60;
/// TTL of negative answers and of the SOA that carries it (RFC 2308 §5), seconds.
pub const NEGATIVE_TTL: u32 = 10;
/// Label of the name server (`.1`) under the VN domain.
const NS_LABEL: &[u8] = b"ns";
/// Label of the SOA's responsible mailbox.
const HOSTMASTER_LABEL: &[u8] = b"hostmaster";

/// How long a query waits for its DHT read before the client gets SERVFAIL: below the 5 s after which
/// glibc and dig retry, above a read's usual round trips (the DHT retransmits every 300 ms).
pub const HOST_TIMEOUT: Duration = Duration::from_secs(2);

/// Records per section of the messages handled here: a query's OPT is apart, so this is plenty.
const SECTION: usize = 2;

/// A query forwarded upstream, waiting for its answer.
#[derive(Debug, Clone)]
struct Pending {
    /// Our source port towards the upstream.
    local_port: u16,
    /// Our transaction id towards the upstream.
    id: u16,
    /// Where it went.
    server: SocketAddrV4,
    /// The client's datagram, to answer it.
    client: UdpMeta,
    /// The client's id.
    client_id: u16,
    /// The client's flags (RD, CD are echoed).
    client_flags: Flags,
    /// The client's EDNS UDP size (clamped), when it sent OPT.
    client_edns: Option<u16>,
    /// The question, as the client wrote it.
    question: Question,
    /// When the client gets SERVFAIL.
    deadline: Instant,
}

/// A query waiting for a DHT read of `host:<label>`.
struct Parked {
    /// The hostname label, lowercase.
    label: String<MAX_HOSTNAME>,
    /// The client's datagram, to answer it.
    client: UdpMeta,
    /// The query.
    query: Query,
    /// When the client gets SERVFAIL.
    deadline: Instant,
}

/// What a DHT read of `host:<label>` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAnswer {
    /// The live record's address.
    Found(Ipv4Address),
    /// A read quorum holds no live record.
    Absent,
    /// No quorum answered, no storage node is known, or the record was malformed.
    Failed,
}

/// The overlay's side of hostname resolution (implemented by [`crate::overlay::Overlay`]).
pub trait HostLookup {
    /// Whether the local hostname `label` (lowercase) is held by another node in the DHT: then this
    /// site does not answer it from its own table.
    fn shadowed(&self, label: &str) -> bool;
    /// Starts a read of `host:<label>` (or joins one in flight); false when none could start. Its
    /// outcome is handed to [`DnsServer::host_done`].
    fn begin_host_lookup(&mut self, now: Instant, label: &str) -> bool;
}

/// The local name table with what another node holds in the DHT hidden.
struct Visible<'a> {
    names: &'a dyn NameTable,
    hosts: Option<&'a dyn HostLookup>,
}

impl NameTable for Visible<'_> {
    fn lookup(&self, label: &str) -> Option<Ipv4Address> {
        self.names.lookup(label).filter(|_| self.hosts.is_none_or(|h| !h.shadowed(label)))
    }
    fn name_of(&self, ip: Ipv4Address) -> Option<&str> {
        self.names.name_of(ip).filter(|n| self.hosts.is_none_or(|h| !h.shadowed(n)))
    }
}

/// What a parsed query carries that the answer needs.
struct Query {
    id: u16,
    flags: Flags,
    question: Question,
    /// The client's OPT udp size (clamped to what we send) and DO bit, when it sent OPT.
    edns: Option<(u16, bool)>,
}

impl Query {
    /// Size the answer must fit in.
    fn limit(&self) -> usize {
        usize::from(self.edns.map_or(PLAIN_UDP_SIZE, |(s, _)| s))
    }
}

/// The DNS responder with room for `PENDING` forwarded queries and as many queries waiting for the
/// DHT (when either table is full, new ones get SERVFAIL).
pub struct DnsServer<const PENDING: usize> {
    pending: Vec<Pending, PENDING>,
    parked: Vec<Parked, PENDING>,
}

/// 32 forwarded queries in flight.
pub type DefaultDnsServer = DnsServer<32>;

impl<const PENDING: usize> Default for DnsServer<PENDING> {
    fn default() -> Self {
        Self::new()
    }
}

/// Answer flags for `q`: a response, authoritative or not, recursion available when there is an upstream.
fn answer_flags(site: &Site, q: &Flags, authoritative: bool, rcode: Rcode) -> Flags {
    Flags {
        response: true,
        opcode: q.opcode,
        authoritative,
        recursion_desired: q.recursion_desired,
        recursion_available: site.params.upstream_dns.is_some(),
        checking_disabled: q.checking_disabled,
        rcode: (u16::from(rcode) & 0xf) as u8,
        ..Flags::default()
    }
}

/// Our OPT record (no options).
fn our_opt(ext_rcode: u8) -> Opt<'static> {
    Opt { udp_size: EDNS_UDP_SIZE, ext_rcode, version: 0, flags: 0, options: &[] }
}

/// Queue `repr` for the client of `meta`; when it does not fit in `limit`, its sections are dropped and
/// TC set (RFC 2181 §9), keeping the question and OPT.
fn send_to_client(cx: &mut Cx<'_>, site: &Site, meta: &UdpMeta, limit: usize, repr: &Repr<'_, SECTION>) {
    let frame = UdpFrame::reply_to(meta, site.router_mac, site.dns_addr);
    let max_payload = usize::from(site.params.mtu).saturating_sub(28).min(limit);
    cx.lan(&mut |buf| {
        frame.emit(buf, max_payload, |p| {
            repr.emit(p).ok().or_else(|| {
                let mut t = repr.clone();
                t.answers.clear();
                t.authority.clear();
                t.additional.clear();
                t.flags.truncated = true;
                t.emit(p).ok()
            })
        })
    });
}

/// The labels in front of `suffix` in `name`, if `name` is `suffix` or below it.
fn labels_under<'n>(name: &'n Name, suffix: &Name) -> Option<Vec<&'n [u8], 4>> {
    let k = name.prefix_labels_of(suffix)?;
    // More than 4 labels in front: deeper than anything we hold.
    let mut v = Vec::new();
    for l in name.labels().take(k) {
        v.push(l).ok()?;
    }
    Some(v).filter(|v| v.len() == k)
}

/// Parse an `in-addr.arpa` octet label: decimal, no leading zero, at most 255.
fn octet(label: &[u8]) -> Option<u8> {
    if label.is_empty() || label.len() > 3 || (label.len() > 1 && label[0] == b'0') {
        return None;
    }
    label
        .iter()
        .try_fold(0u16, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u16::from(c - b'0')))
        .and_then(|v| u8::try_from(v).ok())
}

/// The IP-derived name's label for `ip`: `C` and the last three octets, three digits each.
pub fn ip_label(ip: Ipv4Address) -> [u8; 10] {
    let o = ip.octets();
    let mut l = [b'C'; 10];
    for (i, v) in o[1..].iter().enumerate() {
        l[1 + 3 * i] = b'0' + v / 100;
        l[2 + 3 * i] = b'0' + v / 10 % 10;
        l[3 + 3 * i] = b'0' + v % 10;
    }
    l
}

/// The address an IP-derived label names (any case), if it is a VN host address. The first octet is the
/// subnet's: the scheme names 2^24 addresses, so a subnet wider than a /8 has names only for its first /8.
pub fn ip_of_label(site: &Site, label: &[u8]) -> Option<Ipv4Address> {
    let (first, digits) = label.split_first()?;
    if !first.eq_ignore_ascii_case(&b'c') || digits.len() != 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut o = [site.params.subnet.address().octets()[0], 0, 0, 0];
    for i in 0..3 {
        let d = &digits[3 * i..3 * i + 3];
        let v = u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0');
        o[i + 1] = u8::try_from(v).ok()?;
    }
    let ip = Ipv4Address::from(o);
    site.params.is_vn_host(ip).then_some(ip)
}

/// What the local zones say about a question.
#[allow(clippy::large_enum_variant)] // short-lived, on the stack; no allocator to box in
enum Local {
    /// Not ours: forward.
    NotOurs,
    /// Ours; the name exists. The records of the asked type (none: NODATA).
    Exists(Vec<RData<'static>, SECTION>),
    /// Ours; no such name.
    NxDomain,
    /// Ours; a hostname this site does not hold: `host:<label>` in the DHT, NXDOMAIN without one.
    Remote(String<MAX_HOSTNAME>),
}

impl<const PENDING: usize> DnsServer<PENDING> {
    /// Empty responder.
    pub fn new() -> Self {
        Self { pending: Vec::new(), parked: Vec::new() }
    }

    /// The VN domain as a name (validated by the config, so it parses; the root otherwise).
    fn domain(site: &Site) -> Name {
        Name::from_dotted(&site.params.domain).unwrap_or_default()
    }

    fn under_domain(site: &Site, label: &[u8]) -> Name {
        let mut n = Name::root();
        let _ = n.push_label(label);
        let _ = n.append(&Self::domain(site));
        n
    }

    /// The apex of the VN's reverse zone: the subnet's octet-aligned enclosing zone (at least one octet).
    fn reverse_apex(site: &Site) -> (Name, usize) {
        let octets = usize::from(site.params.subnet.prefix_len() / 8).max(1);
        let a = site.params.subnet.address().octets();
        let mut n = Name::root();
        for o in a[..octets].iter().rev() {
            let mut buf = [0u8; 3];
            let len = fmt_u8(*o, &mut buf);
            let _ = n.push_label(&buf[..len]);
        }
        let _ = n.push_label(b"in-addr");
        let _ = n.push_label(b"arpa");
        (n, octets)
    }

    fn soa(site: &Site) -> Record<'static> {
        let domain = Self::domain(site);
        Record { name: domain, class: Class::In, ttl: NEGATIVE_TTL, data: RData::Soa(Self::soa_data(site)) }
    }

    fn soa_data(site: &Site) -> Soa {
        Soa {
            mname: Self::under_domain(site, NS_LABEL),
            rname: Self::under_domain(site, HOSTMASTER_LABEL),
            // No zone transfers: the serial never needs to move.
            serial: 1,
            refresh: 3600,
            retry: 600,
            expire: 86400,
            minimum: NEGATIVE_TTL,
        }
    }

    /// The PTR target of a VN host address.
    fn ptr_of(site: &Site, names: &dyn NameTable, ip: Ipv4Address) -> Name {
        if let Some(host) = names.name_of(ip) {
            let n = Self::under_domain(site, host.as_bytes());
            if n.label_count() > 0 {
                return n;
            }
        }
        Self::under_domain(site, &ip_label(ip))
    }

    /// The answer to `q` for a name that holds address `ip`.
    fn address(q: &Question, ip: Ipv4Address) -> Local {
        let mut v = Vec::new();
        if q.qtype == Type::A || q.qtype == Type::Any {
            let _ = v.push(RData::A(ip));
        }
        Local::Exists(v)
    }

    /// The apex of one of our zones (the VN domain or its reverse zone): its SOA and NS, as asked.
    fn apex(site: &Site, want: &dyn Fn(Type) -> bool) -> Local {
        let mut v = Vec::new();
        if want(Type::Soa) {
            let _ = v.push(RData::Soa(Self::soa_data(site)));
        }
        if want(Type::Ns) {
            let _ = v.push(RData::Ns(Self::under_domain(site, NS_LABEL)));
        }
        Local::Exists(v)
    }

    /// Answer `q` from the local zones. Returns the zone apex too (the SOA owner).
    fn lookup(site: &Site, names: &dyn NameTable, q: &Question) -> (Local, Option<Name>) {
        let want = |t: Type| q.qtype == t || q.qtype == Type::Any;
        let one = |d: RData<'static>| {
            let mut v = Vec::new();
            let _ = v.push(d);
            v
        };
        let domain = Self::domain(site);
        if q.name.prefix_labels_of(&domain).is_some() {
            let local = match labels_under(&q.name, &domain).as_deref() {
                Some([]) => Self::apex(site, &want),
                Some([label]) => {
                    let mut lower: String<MAX_HOSTNAME> = String::new();
                    let ip = if label.eq_ignore_ascii_case(NS_LABEL) {
                        Some(site.dns_addr)
                    } else if let Some(ip) = ip_of_label(site, label) {
                        Some(ip)
                    } else {
                        label
                            .iter()
                            .all(|c| lower.push(char::from(c.to_ascii_lowercase())).is_ok() && c.is_ascii())
                            .then(|| names.lookup(&lower))
                            .flatten()
                    };
                    match ip {
                        Some(ip) => Self::address(q, ip),
                        None if is_hostname_label(&lower) => Local::Remote(lower),
                        None => Local::NxDomain,
                    }
                }
                _ => Local::NxDomain,
            };
            return (local, Some(domain));
        }
        let (apex, apex_octets) = Self::reverse_apex(site);
        if q.name.prefix_labels_of(&apex).is_none() {
            return (Local::NotOurs, None);
        }
        let soa_owner = Some(apex.clone());
        let Some(labels) = labels_under(&q.name, &apex) else {
            return (Local::NxDomain, soa_owner);
        };
        // Octets, most significant first: the apex's, then the labels right to left.
        let mut o = [0u8; 4];
        let a = site.params.subnet.address().octets();
        o[..apex_octets].copy_from_slice(&a[..apex_octets]);
        let total = apex_octets + labels.len();
        if total > 4 {
            return (Local::NxDomain, soa_owner);
        }
        for (i, l) in labels.iter().rev().enumerate() {
            let Some(v) = octet(l) else {
                return (Local::NxDomain, soa_owner);
            };
            o[apex_octets + i] = v;
        }
        let ip = Ipv4Address::from(o);
        let local = if total < 4 {
            // An empty non-terminal when some address of the subnet lies below it, or the apex.
            let plen = (8 * total as u8).min(site.params.subnet.prefix_len());
            let mask = if plen == 0 { 0 } else { u32::MAX << (32 - u32::from(plen)) };
            let net = u32::from(site.params.subnet.address());
            if u32::from(ip) & mask != net & mask {
                Local::NxDomain
            } else if labels.is_empty() {
                Self::apex(site, &want)
            } else {
                Local::Exists(Vec::new())
            }
        } else if ip == site.dns_addr {
            if want(Type::Ptr) {
                Local::Exists(one(RData::Ptr(Self::under_domain(site, NS_LABEL))))
            } else {
                Local::Exists(Vec::new())
            }
        } else if site.params.is_vn_host(ip) {
            if want(Type::Ptr) {
                Local::Exists(one(RData::Ptr(Self::ptr_of(site, names, ip))))
            } else {
                Local::Exists(Vec::new())
            }
        } else {
            Local::NxDomain
        };
        (local, soa_owner)
    }

    /// A query (UDP payload) to `.1:53` from the LAN, on a node without an overlay: hostnames not in
    /// `names` are NXDOMAIN.
    pub fn handle_query(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        names: &dyn NameTable,
        meta: &UdpMeta,
        payload: &[u8],
    ) {
        self.query(cx, site, names, None, meta, payload)
    }

    /// A query (UDP payload) to `.1:53` from the LAN, on a node in an overlay: hostnames not in
    /// `names` are looked up in the DHT through `hosts` (module doc); the caller then moves the
    /// overlay along and hands the read's outcome to [`DnsServer::host_done`].
    pub fn handle_query_with(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        names: &dyn NameTable,
        hosts: &mut dyn HostLookup,
        meta: &UdpMeta,
        payload: &[u8],
    ) {
        self.query(cx, site, names, Some(hosts), meta, payload)
    }

    fn query(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        names: &dyn NameTable,
        hosts: Option<&mut dyn HostLookup>,
        meta: &UdpMeta,
        payload: &[u8],
    ) {
        let Ok(packet) = Packet::new_checked(payload) else {
            cx.stats.dns_dropped += 1;
            return;
        };
        let qflags = packet.flags();
        if qflags.response {
            // Never answer an answer: two responders could loop.
            cx.stats.dns_dropped += 1;
            return;
        }
        let id = packet.id();
        let header_only = |rcode: Rcode| {
            let mut r: Repr<'_, SECTION> = Repr::new(id, answer_flags(site, &qflags, false, rcode));
            r.flags.opcode = qflags.opcode;
            r
        };
        let parsed = Repr::<SECTION>::parse(&packet);
        if qflags.opcode() != Opcode::Query {
            let mut r = header_only(Rcode::NotImp);
            if let Ok(p) = &parsed {
                r.question = p.question.clone();
            }
            send_to_client(cx, site, meta, usize::from(PLAIN_UDP_SIZE), &r);
            return;
        }
        let parsed = match parsed {
            Ok(p) if packet.qdcount() == 1 => p,
            _ => {
                debug!("dns: FORMERR to {}", meta.src_ip);
                send_to_client(cx, site, meta, usize::from(PLAIN_UDP_SIZE), &header_only(Rcode::FormErr));
                return;
            }
        };
        let Some(question) = parsed.question else {
            return;
        };
        let edns = parsed.opt.map(|o| (o.udp_size.clamp(PLAIN_UDP_SIZE, EDNS_UDP_SIZE), o.dnssec_ok()));
        let query = Query { id, flags: qflags, question, edns };
        if let Some(opt) = parsed.opt {
            if opt.version > 0 {
                let mut r = self.reply(site, &query, false, Rcode::NoError);
                r.set_rcode(Rcode::BadVers);
                send_to_client(cx, site, meta, query.limit(), &r);
                return;
            }
        }
        if query.question.qclass != Class::In && query.question.qclass != Class::Any {
            let r = self.reply(site, &query, false, Rcode::Refused);
            send_to_client(cx, site, meta, query.limit(), &r);
            return;
        }
        let visible = Visible { names, hosts: hosts.as_deref().map(|h| h as &dyn HostLookup) };
        let (local, apex) = Self::lookup(site, &visible, &query.question);
        match local {
            Local::NotOurs => self.forward(cx, site, meta, query),
            Local::Remote(label) => match hosts {
                Some(h) => self.park(cx, site, h, meta, query, label),
                None => self.send_local(cx, site, meta, &query, Local::NxDomain, apex),
            },
            local => self.send_local(cx, site, meta, &query, local, apex),
        }
    }

    /// Parks `q` until the DHT read of `host:<label>` ends; SERVFAIL when it cannot wait.
    fn park(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        hosts: &mut dyn HostLookup,
        meta: &UdpMeta,
        q: Query,
        label: String<MAX_HOSTNAME>,
    ) {
        if self.parked.is_full() {
            cx.stats.dns_dropped += 1;
            let r = self.reply(site, &q, false, Rcode::ServFail);
            send_to_client(cx, site, meta, q.limit(), &r);
            return;
        }
        if !hosts.begin_host_lookup(cx.now, &label) {
            cx.stats.dns_dht_failures += 1;
            let r = self.reply(site, &q, false, Rcode::ServFail);
            send_to_client(cx, site, meta, q.limit(), &r);
            return;
        }
        cx.stats.dns_dht_lookups += 1;
        // Not full: checked above.
        let _ = self.parked.push(Parked { label, client: *meta, query: q, deadline: cx.now + HOST_TIMEOUT });
    }

    /// The DHT read of `host:<label>` (lowercase) ended: answers every query parked on it.
    pub fn host_done(&mut self, cx: &mut Cx<'_>, site: &Site, label: &str, answer: HostAnswer) {
        while let Some(i) = self.parked.iter().position(|p| p.label.as_str() == label) {
            let p = self.parked.swap_remove(i);
            let local = match answer {
                HostAnswer::Found(ip) if site.params.is_vn_host(ip) => Self::address(&p.query.question, ip),
                HostAnswer::Absent => Local::NxDomain,
                HostAnswer::Found(_) | HostAnswer::Failed => {
                    cx.stats.dns_dht_failures += 1;
                    let r = self.reply(site, &p.query, false, Rcode::ServFail);
                    send_to_client(cx, site, &p.client, p.query.limit(), &r);
                    continue;
                }
            };
            self.send_local(cx, site, &p.client, &p.query, local, Some(Self::domain(site)));
        }
    }

    /// Sends the authoritative answer `local` (Exists or NxDomain) to `query`.
    fn send_local(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        meta: &UdpMeta,
        query: &Query,
        local: Local,
        apex: Option<Name>,
    ) {
        match local {
            Local::Exists(data) => {
                let mut r = self.reply(site, query, true, Rcode::NoError);
                for d in data {
                    let _ = r.answers.push(Record {
                        name: query.question.name.clone(),
                        class: Class::In,
                        ttl: TTL,
                        data: d,
                    });
                }
                if r.answers.is_empty() {
                    let _ = r.authority.push(Self::soa_at(site, apex));
                }
                send_to_client(cx, site, meta, query.limit(), &r);
            }
            _ => {
                let mut r = self.reply(site, query, true, Rcode::NxDomain);
                let _ = r.authority.push(Self::soa_at(site, apex));
                send_to_client(cx, site, meta, query.limit(), &r);
            }
        }
    }

    /// The SOA of the zone with apex `apex` (the VN domain when `None`).
    fn soa_at(site: &Site, apex: Option<Name>) -> Record<'static> {
        let mut soa = Self::soa(site);
        if let Some(a) = apex {
            soa.name = a;
        }
        soa
    }

    /// An empty answer to `q` with its question and, if the client sent OPT, ours.
    fn reply(&self, site: &Site, q: &Query, authoritative: bool, rcode: Rcode) -> Repr<'static, SECTION> {
        let mut r = Repr::new(q.id, answer_flags(site, &q.flags, authoritative, rcode));
        r.question = Some(q.question.clone());
        if q.edns.is_some() {
            r.opt = Some(our_opt(0));
        }
        r
    }

    fn forward(&mut self, cx: &mut Cx<'_>, site: &Site, meta: &UdpMeta, q: Query) {
        let Some(upstream) = site.params.upstream_dns else {
            let r = self.reply(site, &q, false, Rcode::Refused);
            send_to_client(cx, site, meta, q.limit(), &r);
            return;
        };
        if self.pending.is_full() {
            cx.stats.dns_dropped += 1;
            let r = self.reply(site, &q, false, Rcode::ServFail);
            send_to_client(cx, site, meta, q.limit(), &r);
            return;
        }
        // A port not already waiting: a few tries are plenty among 16384 ports.
        let mut local_port = cx.rng.ephemeral_port();
        for _ in 0..8 {
            if !self.pending.iter().any(|p| p.local_port == local_port) {
                break;
            }
            local_port = cx.rng.ephemeral_port();
        }
        let id = cx.rng.next_u32() as u16;
        let server = SocketAddrV4::new(upstream, DNS_PORT);
        let mut out: Repr<'_, SECTION> = Repr::new(
            id,
            Flags {
                recursion_desired: q.flags.recursion_desired,
                checking_disabled: q.flags.checking_disabled,
                ..Flags::default()
            },
        );
        out.question = Some(q.question.clone());
        out.opt =
            q.edns.map(|(_, dnssec_ok)| Opt { flags: if dnssec_ok { 0x8000 } else { 0 }, ..our_opt(0) });
        let sent = cx.upstream(SocketAddr::V4(server), local_port, &mut |buf| out.emit(buf).ok());
        if !sent {
            cx.stats.dns_dropped += 1;
            return;
        }
        cx.stats.dns_forwarded += 1;
        let p = Pending {
            local_port,
            id,
            server,
            client: *meta,
            client_id: q.id,
            client_flags: q.flags,
            client_edns: q.edns.map(|(s, _)| s),
            question: q.question,
            deadline: cx.now + UPSTREAM_TIMEOUT,
        };
        // Not full: checked above.
        let _ = self.pending.push(p);
    }

    /// An answer from the upstream resolver to our `local_port`.
    pub fn handle_upstream(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        from: SocketAddr,
        local_port: u16,
        payload: &[u8],
    ) {
        let Some(i) = self.pending.iter().position(|p| {
            p.local_port == local_port && from == SocketAddr::V4(p.server) && matches(p, payload)
        }) else {
            cx.stats.dns_upstream_dropped += 1;
            return;
        };
        let p = self.pending.swap_remove(i);
        let limit = usize::from(p.client_edns.unwrap_or(PLAIN_UDP_SIZE));
        let frame = UdpFrame::reply_to(&p.client, site.router_mac, site.dns_addr);
        let max_payload = usize::from(site.params.mtu).saturating_sub(28).min(limit);
        let upstream_flags = Packet::new_unchecked(payload).flags();
        cx.lan(&mut |buf| {
            frame.emit(buf, max_payload, |out| {
                if let Some(dst) = out.get_mut(..payload.len()) {
                    dst.copy_from_slice(payload);
                    Packet::new_unchecked(&mut *dst).set_id(p.client_id);
                    return Some(payload.len());
                }
                // Too big for the client: the question alone, with TC, so it retries over TCP.
                let mut t: Repr<'_, SECTION> = Repr::new(p.client_id, upstream_flags);
                t.flags.truncated = true;
                t.question = Some(p.question.clone());
                t.opt = p.client_edns.map(|_| our_opt(0));
                t.emit(out).ok()
            })
        });
    }

    /// Next deadline: the oldest forwarded or parked query's timeout.
    pub fn poll_at(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).chain(self.parked.iter().map(|p| p.deadline)).min()
    }

    /// Queries waiting for the DHT.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Timers: forwarded queries the upstream left unanswered, and parked queries the DHT left
    /// unanswered, get SERVFAIL.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>, site: &Site) {
        while let Some(i) = self.parked.iter().position(|p| p.deadline <= cx.now) {
            let p = self.parked.swap_remove(i);
            cx.stats.dns_dht_failures += 1;
            let r = self.reply(site, &p.query, false, Rcode::ServFail);
            send_to_client(cx, site, &p.client, p.query.limit(), &r);
        }
        while let Some(i) = self.pending.iter().position(|p| p.deadline <= cx.now) {
            let p = self.pending.swap_remove(i);
            cx.stats.dns_upstream_timeouts += 1;
            let q = Query {
                id: p.client_id,
                flags: p.client_flags,
                question: p.question,
                edns: p.client_edns.map(|s| (s, false)),
            };
            let r = self.reply(site, &q, false, Rcode::ServFail);
            send_to_client(cx, site, &p.client, q.limit(), &r);
        }
    }
}

/// Whether `payload` answers `p`: a response with its id and its question (case aside).
fn matches(p: &Pending, payload: &[u8]) -> bool {
    let Ok(packet) = Packet::new_checked(payload) else {
        return false;
    };
    if !packet.flags().response || packet.id() != p.id || packet.qdcount() != 1 {
        return false;
    }
    let Ok((name, after)) = crate::wire::dns::parse_name(payload, HEADER_LEN) else {
        return false;
    };
    let Some(tc) = payload.get(after..after + 4) else {
        return false;
    };
    name.eq_ignore_case(&p.question.name)
        && Type::from(u16::from_be_bytes([tc[0], tc[1]])) == p.question.qtype
        && Class::from(u16::from_be_bytes([tc[2], tc[3]])) == p.question.qclass
}

/// Write `v` in decimal into `buf`; returns the length.
fn fmt_u8(v: u8, buf: &mut [u8; 3]) -> usize {
    let digits = [v / 100, v / 10 % 10, v % 10];
    let skip = if v >= 100 {
        0
    } else if v >= 10 {
        1
    } else {
        2
    };
    for (i, d) in digits[skip..].iter().enumerate() {
        buf[i] = b'0' + d;
    }
    3 - skip
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamespaceParams;
    use crate::queue::{Outbox, Transmit};
    use crate::rand::Rng;
    use crate::stats::Stats;
    use crate::wire::dns::Packet as DnsPacket;
    use crate::wire::{EthernetAddress, EthernetFrame, Ipv4Cidr, Ipv4Packet};
    use std::vec::Vec as StdVec;

    // Fixtures: see crate::wire::dns tests (dig 9.18 captured by ci/fixtures/capture-dns.sh).
    static Q_EDNS_COOKIE: &[u8] = include_bytes!("../tests/fixtures/dns/query-edns-cookie.bin");
    static Q_NOEDNS: &[u8] = include_bytes!("../tests/fixtures/dns/query-noedns.bin");
    static Q_NORECURSE: &[u8] = include_bytes!("../tests/fixtures/dns/query-norecurse-nocookie.bin");
    static Q_PTR: &[u8] = include_bytes!("../tests/fixtures/dns/query-ptr.bin");
    static Q_MIXED: &[u8] = include_bytes!("../tests/fixtures/dns/query-mixed-case.bin");
    static Q_UPSTREAM: &[u8] = include_bytes!("../tests/fixtures/dns/query-upstream-a.bin");
    static A_UPSTREAM: &[u8] = include_bytes!("../tests/fixtures/dns/answer-upstream-a.bin");

    const CLIENT: Ipv4Address = Ipv4Address::new(10, 250, 5, 5);
    const UPSTREAM: Ipv4Address = Ipv4Address::new(192, 0, 2, 53);

    struct Names(&'static [(&'static str, Ipv4Address)]);

    impl NameTable for Names {
        fn lookup(&self, label: &str) -> Option<Ipv4Address> {
            assert_eq!(label, label.to_ascii_lowercase(), "the table is asked in lowercase");
            self.0.iter().find(|(n, _)| *n == label).map(|(_, ip)| *ip)
        }
        fn name_of(&self, ip: Ipv4Address) -> Option<&str> {
            self.0.iter().find(|(_, i)| *i == ip).map(|(n, _)| *n)
        }
    }

    static NONE: Names = Names(&[]);
    static LAPTOP: Names = Names(&[("laptop", CLIENT), ("printer", Ipv4Address::new(10, 250, 9, 9))]);

    struct T {
        site: Site,
        dns: DnsServer<2>,
        out: Outbox<8, 4>,
        stats: Stats,
        rng: Rng,
        now: Instant,
    }

    /// What came out: LAN payloads to the client, upstream datagrams.
    #[derive(Debug)]
    enum Out {
        Client(StdVec<u8>),
        Upstream { to: SocketAddr, local_port: u16, data: StdVec<u8> },
    }

    fn meta() -> UdpMeta {
        UdpMeta {
            src_mac: EthernetAddress([2, 0, 0, 0, 5, 5]),
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            src_ip: CLIENT,
            dst_ip: Ipv4Address::new(10, 250, 0, 1),
            src_port: 40000,
            dst_port: 53,
        }
    }

    impl T {
        fn new(upstream: bool) -> Self {
            let mut p =
                NamespaceParams::new([7; 16], "demo", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16))
                    .unwrap();
            p.upstream_dns = upstream.then_some(UPSTREAM);
            Self {
                site: Site::new(p).unwrap(),
                dns: DnsServer::new(),
                out: Outbox::default(),
                stats: Stats::default(),
                rng: Rng::new(42),
                now: Instant::from_secs(100),
            }
        }

        fn query(&mut self, names: &dyn NameTable, payload: &[u8]) -> StdVec<Out> {
            let mut cx = Cx { now: self.now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
            self.dns.handle_query(&mut cx, &self.site, names, &meta(), payload);
            self.drain()
        }

        fn upstream(&mut self, from: SocketAddr, local_port: u16, payload: &[u8]) -> StdVec<Out> {
            let mut cx = Cx { now: self.now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
            self.dns.handle_upstream(&mut cx, &self.site, from, local_port, payload);
            self.drain()
        }

        fn timeout(&mut self) -> StdVec<Out> {
            let mut cx = Cx { now: self.now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
            self.dns.handle_timeout(&mut cx, &self.site);
            self.drain()
        }

        fn drain(&mut self) -> StdVec<Out> {
            let mut v = StdVec::new();
            let mut buf = [0u8; 2048];
            while let Some(t) = self.out.pop(&mut self.stats, &mut buf) {
                match t {
                    Transmit::Lan(n) => {
                        let eth = EthernetFrame::new_checked(&buf[..n]).unwrap();
                        assert_eq!(eth.src_addr(), self.site.router_mac);
                        assert_eq!(eth.dst_addr(), meta().src_mac);
                        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                        assert!(ip.verify_checksum());
                        assert_eq!((ip.src_addr(), ip.dst_addr()), (self.site.dns_addr, CLIENT));
                        let (sp, dp, payload) =
                            crate::wire::parse_udp(ip.src_addr(), ip.dst_addr(), ip.payload()).unwrap();
                        assert_eq!((sp, dp), (53, 40000));
                        v.push(Out::Client(payload.to_vec()));
                    }
                    Transmit::Upstream { to, local_port, len } => {
                        v.push(Out::Upstream { to, local_port, data: buf[..len].to_vec() })
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            v
        }
    }

    /// The one answer to the client.
    fn answer(out: StdVec<Out>) -> StdVec<u8> {
        match <[Out; 1]>::try_from(out) {
            Ok([Out::Client(p)]) => p,
            other => panic!("expected one answer to the client, got {other:?}"),
        }
    }

    fn parse(p: &[u8]) -> Repr<'_, 4> {
        Repr::parse(&DnsPacket::new_checked(p).unwrap()).unwrap()
    }

    fn name(s: &str) -> Name {
        Name::from_dotted(s).unwrap()
    }

    /// A query built with our own Repr.
    fn q(id: u16, qname: &str, qtype: Type, edns: Option<u8>) -> StdVec<u8> {
        let mut r: Repr<'_, 1> = Repr::new(id, Flags { recursion_desired: true, ..Flags::default() });
        r.question = Some(Question { name: name(qname), qtype, qclass: Class::In });
        r.opt = edns.map(|version| Opt { udp_size: 4096, ext_rcode: 0, version, flags: 0, options: &[] });
        let mut buf = [0xa5u8; 512];
        let n = r.emit(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    fn only_a(r: &Repr<'_, 4>) -> Ipv4Address {
        assert_eq!(r.answers.len(), 1, "{r:?}");
        match r.answers[0].data {
            RData::A(a) => a,
            ref d => panic!("{d:?}"),
        }
    }

    fn assert_soa_authority(r: &Repr<'_, 4>, owner: &str) {
        assert_eq!(r.authority.len(), 1, "{r:?}");
        let soa = &r.authority[0];
        assert_eq!(soa.name, name(owner));
        assert_eq!(soa.ttl, NEGATIVE_TTL);
        match &soa.data {
            RData::Soa(s) => {
                assert_eq!(s.minimum, NEGATIVE_TTL);
                assert_eq!(s.mname, name("ns.demo.home.arpa"));
                assert_eq!(s.rname, name("hostmaster.demo.home.arpa"));
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn ip_derived_names_both_ways() {
        let t = T::new(false);
        assert_eq!(&ip_label(CLIENT), b"C250005005");
        assert_eq!(ip_of_label(&t.site, b"C250005005"), Some(CLIENT));
        assert_eq!(ip_of_label(&t.site, b"c250005005"), Some(CLIENT));
        for ip in [
            Ipv4Address::new(10, 250, 0, 3),
            Ipv4Address::new(10, 250, 255, 254),
            Ipv4Address::new(10, 250, 1, 0),
        ] {
            assert_eq!(ip_of_label(&t.site, &ip_label(ip)), Some(ip));
        }
        // Not VN hosts: network, service block, broadcast, bad digits, octet over 255.
        for l in [
            &b"C250000000"[..],
            b"C250000001",
            b"C250000002",
            b"C250255255",
            b"C25000500x",
            b"C250005256",
            b"C25000505",
            b"D250005005",
        ] {
            assert_eq!(ip_of_label(&t.site, l), None, "{}", core::str::from_utf8(l).unwrap());
        }
    }

    #[test]
    fn dig_query_with_cookie_gets_an_authoritative_a_and_our_opt() {
        let mut t = T::new(true);
        let a = answer(t.query(&NONE, Q_EDNS_COOKIE));
        let r = parse(&a);
        assert_eq!(r.id, 0x7737);
        assert!(r.flags.response && r.flags.authoritative && r.flags.recursion_desired && !r.flags.truncated);
        assert!(r.flags.recursion_available, "an upstream is configured");
        assert_eq!(r.rcode(), Rcode::NoError);
        assert_eq!(r.question.as_ref().unwrap().name, name("c250005005.demo.home.arpa"));
        assert_eq!(only_a(&r), CLIENT);
        assert_eq!(r.answers[0].ttl, TTL);
        let opt = r.opt.unwrap();
        assert_eq!((opt.udp_size, opt.version, opt.options), (EDNS_UDP_SIZE, 0, &[][..]));
        // hickory agrees.
        let m = hickory_proto::op::Message::from_vec(&a).unwrap();
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers[0].data, hickory_proto::rr::RData::A(CLIENT.into()));
        assert_eq!(t.stats.dns_forwarded, 0);
    }

    #[test]
    fn plain_query_gets_no_opt_and_norecurse_is_echoed() {
        let mut t = T::new(false);
        let r = answer(t.query(&NONE, Q_NOEDNS));
        let r = parse(&r);
        assert!(r.opt.is_none());
        assert!(!r.flags.recursion_available, "no upstream");
        assert_eq!(only_a(&r), CLIENT);
        let r = answer(t.query(&NONE, Q_NORECURSE));
        let r = parse(&r);
        assert!(!r.flags.recursion_desired);
        assert_eq!(only_a(&r), CLIENT);
    }

    #[test]
    fn mixed_case_query_is_answered_with_its_case_kept() {
        let mut t = T::new(false);
        let a = answer(t.query(&NONE, Q_MIXED));
        let r = parse(&a);
        assert_eq!(r.question.as_ref().unwrap().name.as_wire(), name("C250005005.Demo.HOME.arpa").as_wire());
        assert_eq!(r.answers[0].name.as_wire(), name("C250005005.Demo.HOME.arpa").as_wire());
        assert_eq!(only_a(&r), CLIENT);
    }

    #[test]
    fn ptr_names_the_hostname_or_the_ip_derived_name() {
        let mut t = T::new(true);
        let a = answer(t.query(&NONE, Q_PTR));
        let r = parse(&a);
        assert!(r.flags.authoritative);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].data, RData::Ptr(name("C250005005.demo.home.arpa")));
        let a = answer(t.query(&LAPTOP, Q_PTR));
        let r = parse(&a);
        // One PTR only: the registered hostname.
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].data, RData::Ptr(name("laptop.demo.home.arpa")));
        // .1 is ns.
        let r = answer(t.query(&NONE, &q(1, "1.0.250.10.in-addr.arpa", Type::Ptr, None)));
        assert_eq!(parse(&r).answers[0].data, RData::Ptr(name("ns.demo.home.arpa")));
        assert_eq!(t.stats.dns_forwarded, 0);
    }

    #[test]
    fn hostnames_resolve_case_insensitively() {
        let mut t = T::new(false);
        for n in ["laptop.demo.home.arpa", "LapTop.DEMO.home.arpa"] {
            let r = answer(t.query(&LAPTOP, &q(2, n, Type::A, None)));
            assert_eq!(only_a(&parse(&r)), CLIENT);
        }
        let r = answer(t.query(&LAPTOP, &q(2, "printer.demo.home.arpa", Type::Any, None)));
        assert_eq!(only_a(&parse(&r)), Ipv4Address::new(10, 250, 9, 9));
        let r = answer(t.query(&LAPTOP, &q(2, "ns.demo.home.arpa", Type::A, None)));
        assert_eq!(only_a(&parse(&r)), Ipv4Address::new(10, 250, 0, 1));
    }

    #[test]
    fn unknown_names_in_the_domain_are_nxdomain_with_soa() {
        let mut t = T::new(true);
        for n in [
            "nope.demo.home.arpa",
            "C250255255.demo.home.arpa",
            "C250005256.demo.home.arpa",
            "a.laptop.demo.home.arpa",
            "a.b.c.d.e.f.demo.home.arpa",
        ] {
            let a = answer(t.query(&LAPTOP, &q(3, n, Type::A, None)));
            let r = parse(&a);
            assert_eq!(r.rcode(), Rcode::NxDomain, "{n}");
            assert!(r.flags.authoritative);
            assert!(r.answers.is_empty());
            assert_soa_authority(&r, "demo.home.arpa");
        }
        assert_eq!(t.stats.dns_forwarded, 0);
        // hickory reads the negative answer.
        let a = answer(t.query(&LAPTOP, &q(3, "nope.demo.home.arpa", Type::A, Some(0))));
        let m = hickory_proto::op::Message::from_vec(&a).unwrap();
        assert_eq!(m.metadata.response_code, hickory_proto::op::ResponseCode::NXDomain);
        assert_eq!(m.authorities.len(), 1);
    }

    #[test]
    fn other_types_of_existing_names_are_nodata_with_soa() {
        let mut t = T::new(true);
        for (n, ty) in [
            ("c250005005.demo.home.arpa", Type::Aaaa),
            ("laptop.demo.home.arpa", Type::Mx),
            ("demo.home.arpa", Type::A),
            ("5.5.250.10.in-addr.arpa", Type::A),
            ("5.250.10.in-addr.arpa", Type::Ptr),
        ] {
            let a = answer(t.query(&LAPTOP, &q(4, n, ty, None)));
            let r = parse(&a);
            assert_eq!(r.rcode(), Rcode::NoError, "{n}");
            assert!(r.answers.is_empty() && r.flags.authoritative, "{n}");
            let owner = if n.ends_with("arpa") && n.contains("in-addr") {
                "250.10.in-addr.arpa"
            } else {
                "demo.home.arpa"
            };
            assert_soa_authority(&r, owner);
        }
    }

    #[test]
    fn apex_answers_soa_and_ns() {
        let mut t = T::new(false);
        for apex in ["demo.home.arpa", "250.10.in-addr.arpa"] {
            let r = answer(t.query(&NONE, &q(5, apex, Type::Soa, None)));
            let r = parse(&r);
            assert_eq!(r.answers.len(), 1, "{apex}");
            assert!(matches!(&r.answers[0].data, RData::Soa(s) if s.mname == name("ns.demo.home.arpa")));
            assert!(r.authority.is_empty());
            let r = answer(t.query(&NONE, &q(5, apex, Type::Ns, None)));
            assert_eq!(parse(&r).answers[0].data, RData::Ns(name("ns.demo.home.arpa")));
        }
    }

    #[test]
    fn reverse_zone_is_answered_locally_never_forwarded() {
        let mut t = T::new(true);
        for n in [
            "255.255.250.10.in-addr.arpa",
            "0.0.250.10.in-addr.arpa",
            "05.5.250.10.in-addr.arpa",
            "x.5.5.250.10.in-addr.arpa",
            "256.5.250.10.in-addr.arpa",
        ] {
            let a = answer(t.query(&NONE, &q(6, n, Type::Ptr, Some(0))));
            let r = parse(&a);
            assert_eq!(r.rcode(), Rcode::NxDomain, "{n}");
            assert_soa_authority(&r, "250.10.in-addr.arpa");
        }
        assert_eq!(t.stats.dns_forwarded, 0);
        // Outside the VN's zone: forwarded.
        let out = t.query(&NONE, &q(6, "5.0.251.10.in-addr.arpa", Type::Ptr, None));
        assert!(matches!(&out[..], [Out::Upstream { .. }]));
    }

    #[test]
    fn other_names_are_forwarded_with_random_port_and_id_and_the_answer_relayed() {
        let mut t = T::new(true);
        let out = t.query(&NONE, Q_UPSTREAM);
        let [Out::Upstream { to, local_port, data }] = &out[..] else { panic!("{out:?}") };
        assert_eq!(*to, SocketAddr::V4(SocketAddrV4::new(UPSTREAM, 53)));
        assert!(*local_port >= 49152);
        let fwd = parse(data);
        let client = parse(Q_UPSTREAM);
        assert_ne!(fwd.id, client.id);
        assert_eq!(fwd.question, client.question);
        assert!(fwd.flags.recursion_desired && !fwd.flags.response);
        assert_eq!(fwd.opt.unwrap().udp_size, EDNS_UDP_SIZE);
        assert!(fwd.opt.unwrap().options.is_empty(), "the client's cookie stays between it and us");
        assert_eq!(t.stats.dns_forwarded, 1);
        assert_eq!(t.dns.poll_at(), Some(t.now + UPSTREAM_TIMEOUT));
        // A second query goes out from another port with another id.
        let out2 = t.query(&NONE, Q_UPSTREAM);
        let [Out::Upstream { local_port: port2, data: data2, .. }] = &out2[..] else { panic!() };
        assert_ne!(port2, local_port);
        assert_ne!(parse(data2).id, fwd.id);
        // dnsmasq's captured answer, re-addressed to our id: relayed with the client's id.
        let mut up = A_UPSTREAM.to_vec();
        up[..2].copy_from_slice(&fwd.id.to_be_bytes());
        let a = answer(t.upstream(*to, *local_port, &up));
        assert_eq!(&a[..2], &client.id.to_be_bytes());
        assert_eq!(&a[2..], &A_UPSTREAM[2..]);
        // Answered once: the same answer again is dropped.
        assert!(t.upstream(*to, *local_port, &up).is_empty());
        assert_eq!(t.stats.dns_upstream_dropped, 1);
    }

    #[test]
    fn wrong_upstream_answers_are_dropped_and_counted() {
        let mut t = T::new(true);
        let out = t.query(&NONE, Q_UPSTREAM);
        let [Out::Upstream { to, local_port, data }] = &out[..] else { panic!() };
        let id = parse(data).id;
        let mut good = A_UPSTREAM.to_vec();
        good[..2].copy_from_slice(&id.to_be_bytes());
        let other_ip = SocketAddr::V4(SocketAddrV4::new(Ipv4Address::new(192, 0, 2, 54), 53));
        let other_port = SocketAddr::V4(SocketAddrV4::new(UPSTREAM, 5353));
        let mut bad_id = good.clone();
        bad_id[1] ^= 1;
        let mut bad_q = good.clone();
        bad_q[13] = b'x'; // www -> xww
        let mut not_response = good.clone();
        not_response[2] &= 0x7f;
        let cases: [(SocketAddr, u16, &[u8]); 7] = [
            (other_ip, *local_port, &good),
            (other_port, *local_port, &good),
            (*to, local_port.wrapping_add(1), &good),
            (*to, *local_port, &bad_id),
            (*to, *local_port, &bad_q),
            (*to, *local_port, &not_response),
            (*to, *local_port, &good[..11]),
        ];
        for (i, (from, port, p)) in cases.into_iter().enumerate() {
            assert!(t.upstream(from, port, p).is_empty(), "case {i}");
            assert_eq!(t.stats.dns_upstream_dropped, i as u64 + 1);
        }
        // The query still waits, and the right answer still gets through.
        let a = answer(t.upstream(*to, *local_port, &good));
        assert_eq!(parse(&a).answers.len(), 1);
    }

    #[test]
    fn upstream_timeout_answers_servfail() {
        let mut t = T::new(true);
        let out = t.query(&NONE, &q(7, "example.org", Type::A, Some(0)));
        assert_eq!(out.len(), 1);
        t.now += Duration::from_millis(2999);
        assert!(t.timeout().is_empty());
        t.now += Duration::from_millis(1);
        let a = answer(t.timeout());
        let r = parse(&a);
        assert_eq!((r.id, r.rcode()), (7, Rcode::ServFail));
        assert!(r.opt.is_some(), "the client sent OPT");
        assert_eq!(r.question.unwrap().name, name("example.org"));
        assert_eq!(t.stats.dns_upstream_timeouts, 1);
        assert_eq!(t.dns.poll_at(), None);
    }

    #[test]
    fn full_pending_table_answers_servfail() {
        let mut t = T::new(true);
        for id in 0..2 {
            assert!(matches!(
                &t.query(&NONE, &q(id, "example.org", Type::A, None))[..],
                [Out::Upstream { .. }]
            ));
        }
        let a = answer(t.query(&NONE, &q(9, "example.org", Type::A, None)));
        assert_eq!(parse(&a).rcode(), Rcode::ServFail);
        assert_eq!(t.stats.dns_dropped, 1);
        assert_eq!(t.stats.dns_forwarded, 2);
    }

    #[test]
    fn no_upstream_answers_refused() {
        let mut t = T::new(false);
        let a = answer(t.query(&NONE, Q_UPSTREAM));
        let r = parse(&a);
        assert_eq!(r.rcode(), Rcode::Refused);
        assert!(!r.flags.authoritative && r.opt.is_some());
        assert_eq!(t.stats.dns_forwarded, 0);
    }

    #[test]
    fn edns_version_above_zero_gets_badvers() {
        let mut t = T::new(false);
        let a = answer(t.query(&NONE, &q(8, "c250005005.demo.home.arpa", Type::A, Some(1))));
        let r = parse(&a);
        assert_eq!(r.rcode(), Rcode::BadVers);
        assert_eq!(r.opt.unwrap().version, 0);
        assert!(r.answers.is_empty());
        let a = answer(t.query(&NONE, &q(8, "c250005005.demo.home.arpa", Type::A, Some(0))));
        assert_eq!(parse(&a).rcode(), Rcode::NoError);
    }

    #[test]
    fn relayed_answers_are_truncated_at_the_clients_size() {
        for (edns, limit) in [(None, 512usize), (Some(0), usize::from(EDNS_UDP_SIZE))] {
            let mut t = T::new(true);
            let out = t.query(&NONE, &q(10, "big.example.org", Type::Txt, edns));
            let [Out::Upstream { to, local_port, data }] = &out[..] else { panic!() };
            let fwd = parse(data);
            let pad = [7u8; 1500];
            // An upstream answer one byte over the limit: a TXT record padding it out.
            let mut r: Repr<'_, 4> =
                Repr::new(fwd.id, Flags { response: true, recursion_available: true, ..fwd.flags });
            r.question = fwd.question.clone();
            let base = r.buffer_len() + 2 + 10;
            let txt = &pad[..limit + 1 - base];
            r.answers
                .push(Record {
                    name: name("big.example.org"),
                    class: Class::In,
                    ttl: 5,
                    data: RData::Other(Type::Txt, txt),
                })
                .unwrap();
            let mut buf = vec![0u8; 2000];
            let n = r.emit(&mut buf).unwrap();
            assert_eq!(n, limit + 1);
            let a = answer(t.upstream(*to, *local_port, &buf[..n]));
            let got = parse(&a);
            assert!(got.flags.truncated && got.answers.is_empty());
            assert_eq!((got.id, got.question.as_ref().unwrap().qtype), (10, Type::Txt));
            assert_eq!(got.opt.is_some(), edns.is_some());
            // One byte less fits and is relayed whole.
            let out = t.query(&NONE, &q(11, "big.example.org", Type::Txt, edns));
            let [Out::Upstream { to, local_port, data }] = &out[..] else { panic!() };
            let fwd = parse(data);
            r.id = fwd.id;
            r.answers[0].data = RData::Other(Type::Txt, &txt[1..]);
            let n = r.emit(&mut buf).unwrap();
            let a = answer(t.upstream(*to, *local_port, &buf[..n]));
            assert_eq!(a.len(), limit);
            assert!(!parse(&a).flags.truncated);
        }
    }

    #[test]
    fn local_answers_too_big_are_truncated_to_the_question() {
        let mut t = T::new(false);
        let mut r: Repr<'_, SECTION> = Repr::new(1, Flags { response: true, ..Flags::default() });
        r.question =
            Some(Question { name: name("c250005005.demo.home.arpa"), qtype: Type::A, qclass: Class::In });
        let full_q = r.buffer_len();
        r.answers
            .push(Record {
                name: name("c250005005.demo.home.arpa"),
                class: Class::In,
                ttl: 1,
                data: RData::A(CLIENT),
            })
            .unwrap();
        let mut cx = Cx { now: t.now, rng: &mut t.rng, stats: &mut t.stats, out: &mut t.out };
        send_to_client(&mut cx, &t.site, &meta(), full_q + 5, &r);
        let a = answer(t.drain());
        let got = parse(&a);
        assert!(got.flags.truncated && got.answers.is_empty() && got.question.is_some());
    }

    #[test]
    fn short_payloads_and_responses_are_dropped_and_counted() {
        let mut t = T::new(true);
        for n in 0..HEADER_LEN {
            assert!(t.query(&NONE, &Q_NOEDNS[..n]).is_empty());
        }
        assert_eq!(t.stats.dns_dropped, HEADER_LEN as u64);
        let mut resp = Q_NOEDNS.to_vec();
        resp[2] |= 0x80;
        assert!(t.query(&NONE, &resp).is_empty());
        assert_eq!(t.stats.dns_dropped, HEADER_LEN as u64 + 1);
    }

    #[test]
    fn other_opcodes_get_notimp() {
        let mut t = T::new(true);
        for opcode in [1u8, 2, 4, 5, 15] {
            let mut m = Q_NOEDNS.to_vec();
            m[2] = (m[2] & 0x87) | (opcode << 3);
            let a = answer(t.query(&NONE, &m));
            let r = parse(&a);
            assert_eq!(r.rcode(), Rcode::NotImp);
            assert_eq!(r.flags.opcode, opcode);
            assert!(r.flags.response && r.answers.is_empty());
        }
        assert_eq!(t.stats.dns_forwarded, 0);
    }

    #[test]
    fn bad_question_or_count_gets_formerr() {
        let mut t = T::new(true);
        let mut zero = Q_NOEDNS.to_vec();
        zero[5] = 0;
        zero.truncate(HEADER_LEN);
        let mut two = Q_NOEDNS.to_vec();
        two[5] = 2;
        two.extend_from_slice(&Q_NOEDNS[HEADER_LEN..]);
        let mut cut = Q_NOEDNS.to_vec();
        cut.truncate(20);
        let mut looped = Q_NOEDNS[..HEADER_LEN].to_vec();
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let mut two_opts = Q_NORECURSE.to_vec();
        two_opts[11] = 2;
        two_opts.extend_from_slice(&Q_NORECURSE[Q_NORECURSE.len() - 11..]);
        for (i, m) in [zero, two, cut, looped, two_opts].iter().enumerate() {
            let a = answer(t.query(&NONE, m));
            let r = parse(&a);
            assert_eq!(r.rcode(), Rcode::FormErr, "case {i}");
            assert_eq!(r.id, u16::from_be_bytes([m[0], m[1]]));
            assert!(r.question.is_none());
        }
        assert_eq!(t.stats.dns_forwarded, 0);
    }

    #[test]
    fn other_classes_are_refused() {
        let mut t = T::new(true);
        let mut m = q(12, "version.bind", Type::Txt, None);
        let n = m.len();
        m[n - 2..].copy_from_slice(&3u16.to_be_bytes());
        let a = answer(t.query(&NONE, &m));
        assert_eq!(parse(&a).rcode(), Rcode::Refused);
        assert_eq!(t.stats.dns_forwarded, 0);
    }

    /// The overlay's side, faked: which names another node holds, which reads started.
    struct Hosts {
        shadow: &'static [&'static str],
        can_start: bool,
        begun: StdVec<std::string::String>,
    }

    impl Hosts {
        fn new() -> Self {
            Hosts { shadow: &[], can_start: true, begun: StdVec::new() }
        }
    }

    impl HostLookup for Hosts {
        fn shadowed(&self, label: &str) -> bool {
            self.shadow.contains(&label)
        }
        fn begin_host_lookup(&mut self, _now: Instant, label: &str) -> bool {
            self.begun.push(label.into());
            self.can_start
        }
    }

    impl T {
        fn query_with(&mut self, names: &dyn NameTable, hosts: &mut Hosts, payload: &[u8]) -> StdVec<Out> {
            let mut cx = Cx { now: self.now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
            self.dns.handle_query_with(&mut cx, &self.site, names, hosts, &meta(), payload);
            self.drain()
        }

        fn done(&mut self, label: &str, a: HostAnswer) -> StdVec<Out> {
            let mut cx = Cx { now: self.now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
            self.dns.host_done(&mut cx, &self.site, label, a);
            self.drain()
        }
    }

    #[test]
    fn other_sites_hostnames_are_parked_and_answered_from_the_dht() {
        let mut t = T::new(true);
        let mut h = Hosts::new();
        let far = Ipv4Address::new(10, 250, 44, 4);
        // Two clients ask (one in another case, one for AAAA): one read each, both parked, no answer yet.
        assert!(t.query_with(&LAPTOP, &mut h, &q(20, "NAS.demo.home.arpa", Type::A, Some(0))).is_empty());
        assert!(t.query_with(&LAPTOP, &mut h, &q(21, "nas.demo.home.arpa", Type::Aaaa, None)).is_empty());
        assert_eq!(h.begun, ["nas", "nas"], "asked in lowercase");
        assert_eq!(t.dns.parked(), 2);
        assert!(t.dns.poll_at().is_some_and(|d| d == t.now + HOST_TIMEOUT));
        // Local names, C-names and ns never go to the DHT.
        for n in ["laptop.demo.home.arpa", "C250005005.demo.home.arpa", "ns.demo.home.arpa"] {
            assert_eq!(
                parse(&answer(t.query_with(&LAPTOP, &mut h, &q(22, n, Type::A, None)))).rcode(),
                Rcode::NoError
            );
        }
        assert_eq!(h.begun.len(), 2);
        // Another name's outcome answers nobody.
        assert!(t.done("other", HostAnswer::Absent).is_empty());
        let out = t.done("nas", HostAnswer::Found(far));
        assert_eq!(out.len(), 2);
        let mut by_id = out
            .into_iter()
            .map(|o| match o {
                Out::Client(p) => p,
                o => panic!("{o:?}"),
            })
            .collect::<StdVec<_>>();
        by_id.sort_by_key(|p| u16::from_be_bytes([p[0], p[1]]));
        let a = parse(&by_id[0]);
        assert_eq!((a.id, a.rcode()), (20, Rcode::NoError));
        assert!(a.flags.authoritative);
        assert_eq!(only_a(&a), far);
        assert_eq!(a.answers[0].name.as_wire(), name("NAS.demo.home.arpa").as_wire(), "the client's case");
        assert!(a.opt.is_some(), "the client sent OPT");
        // AAAA of an existing name: NODATA with the SOA.
        let aaaa = parse(&by_id[1]);
        assert_eq!((aaaa.id, aaaa.rcode()), (21, Rcode::NoError));
        assert!(aaaa.answers.is_empty());
        assert_soa_authority(&aaaa, "demo.home.arpa");
        assert_eq!(t.dns.parked(), 0);
        assert_eq!((t.stats.dns_dht_lookups, t.stats.dns_dht_failures, t.stats.dns_forwarded), (2, 0, 0));
        // A late duplicate outcome finds nobody.
        assert!(t.done("nas", HostAnswer::Found(far)).is_empty());
    }

    #[test]
    fn a_quorums_absence_is_nxdomain_and_a_failed_read_servfail() {
        let mut t = T::new(false);
        let mut h = Hosts::new();
        assert!(t.query_with(&NONE, &mut h, &q(30, "ghost.demo.home.arpa", Type::A, None)).is_empty());
        let a = answer(t.done("ghost", HostAnswer::Absent));
        let r = parse(&a);
        assert_eq!(r.rcode(), Rcode::NxDomain);
        assert!(r.flags.authoritative && r.answers.is_empty());
        assert_soa_authority(&r, "demo.home.arpa");

        assert!(t.query_with(&NONE, &mut h, &q(31, "ghost.demo.home.arpa", Type::A, None)).is_empty());
        let a = answer(t.done("ghost", HostAnswer::Failed));
        let r = parse(&a);
        assert_eq!(r.rcode(), Rcode::ServFail);
        assert!(!r.flags.authoritative && r.authority.is_empty());
        // A record whose value is no VN host address is not passed on.
        assert!(t.query_with(&NONE, &mut h, &q(32, "ghost.demo.home.arpa", Type::A, None)).is_empty());
        let a = answer(t.done("ghost", HostAnswer::Found(Ipv4Address::new(192, 0, 2, 1))));
        let r = parse(&a);
        assert_eq!(r.rcode(), Rcode::ServFail);
        assert_eq!(t.stats.dns_dht_failures, 2);
    }

    #[test]
    fn a_silent_dht_answers_servfail_at_the_deadline() {
        let mut t = T::new(false);
        let mut h = Hosts::new();
        assert!(t.query_with(&NONE, &mut h, &q(40, "slow.demo.home.arpa", Type::A, None)).is_empty());
        t.now += HOST_TIMEOUT - Duration::from_millis(1);
        assert!(t.timeout().is_empty());
        t.now += Duration::from_millis(1);
        let a = answer(t.timeout());
        let r = parse(&a);
        assert_eq!((r.id, r.rcode()), (40, Rcode::ServFail));
        assert_eq!(t.dns.poll_at(), None);
        assert_eq!(t.stats.dns_dht_failures, 1);
        // The read's late outcome is dropped.
        assert!(t.done("slow", HostAnswer::Found(CLIENT)).is_empty());
    }

    #[test]
    fn a_full_table_or_a_read_that_cannot_start_answers_servfail() {
        let mut t = T::new(false);
        let mut h = Hosts::new();
        for id in 0..2 {
            assert!(t.query_with(&NONE, &mut h, &q(id, "a.demo.home.arpa", Type::A, None)).is_empty());
        }
        let a = answer(t.query_with(&NONE, &mut h, &q(2, "b.demo.home.arpa", Type::A, None)));
        let r = parse(&a);
        assert_eq!(r.rcode(), Rcode::ServFail);
        assert_eq!(t.stats.dns_dropped, 1);
        assert_eq!(h.begun.len(), 2, "no read for a query that cannot wait");

        let mut t = T::new(false);
        let mut h = Hosts { can_start: false, ..Hosts::new() };
        let a = answer(t.query_with(&NONE, &mut h, &q(3, "a.demo.home.arpa", Type::A, None)));
        let r = parse(&a);
        assert_eq!(r.rcode(), Rcode::ServFail);
        assert_eq!((t.dns.parked(), t.stats.dns_dht_failures), (0, 1));
    }

    #[test]
    fn a_name_another_node_holds_is_not_answered_locally() {
        let mut t = T::new(false);
        let mut h = Hosts { shadow: &["laptop"], ..Hosts::new() };
        // Forward: the DHT answers, not the local table.
        assert!(t.query_with(&LAPTOP, &mut h, &q(50, "laptop.demo.home.arpa", Type::A, None)).is_empty());
        assert_eq!(h.begun, ["laptop"]);
        let winner = Ipv4Address::new(10, 250, 60, 6);
        assert_eq!(only_a(&parse(&answer(t.done("laptop", HostAnswer::Found(winner))))), winner);
        // Reverse: the loser's address has its IP-derived name.
        let a = answer(t.query_with(&LAPTOP, &mut h, Q_PTR));
        let r = parse(&a);
        assert_eq!(r.answers[0].data, RData::Ptr(name("C250005005.demo.home.arpa")));
        // Names nobody shadows still answer locally.
        let a = answer(t.query_with(&LAPTOP, &mut h, &q(51, "printer.demo.home.arpa", Type::A, None)));
        assert_eq!(only_a(&parse(&a)), Ipv4Address::new(10, 250, 9, 9));
    }

    #[test]
    fn without_an_overlay_unknown_hostnames_stay_nxdomain() {
        let mut t = T::new(false);
        let a = answer(t.query(&NONE, &q(60, "nas.demo.home.arpa", Type::A, None)));
        let r = parse(&a);
        assert_eq!(r.rcode(), Rcode::NxDomain);
        assert_eq!((t.dns.parked(), t.stats.dns_dht_lookups), (0, 0));
        // Labels that are no hostname are NXDOMAIN even with an overlay, without a read.
        let mut h = Hosts::new();
        let a = answer(t.query_with(&NONE, &mut h, &q(61, "_x.demo.home.arpa", Type::A, None)));
        let r = parse(&a);
        assert_eq!(r.rcode(), Rcode::NxDomain);
        assert!(h.begun.is_empty());
    }
}
