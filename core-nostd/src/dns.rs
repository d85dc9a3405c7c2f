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
//! Everything else is forwarded to `site.params.upstream_dns` (REFUSED when there is none) from a random
//! source port with a random id (RFC 5452); the answer must come from the upstream's address and port 53,
//! to that port, with that id and the same question, or it is dropped and counted. The table of
//! forwarded queries holds `PENDING` entries; when full, or when the upstream is silent for
//! [`UPSTREAM_TIMEOUT`], the client gets SERVFAIL. EDNS0 (RFC 6891): the client's OPT sets the size our
//! answer is truncated at (512 without it, at most [`EDNS_UDP_SIZE`]); we answer with an OPT of our own
//! when the client sent one, and BADVERS to versions above 0. Cookies (RFC 7873) are ignored.

use core::net::{SocketAddr, SocketAddrV4};

use heapless::Vec;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::Ipv4Address;

use crate::config::Site;
use crate::dhcp::NameTable;
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

/// The DNS responder with room for `PENDING` forwarded queries (when full, new ones get SERVFAIL).
pub struct DnsServer<const PENDING: usize> {
    pending: Vec<Pending, PENDING>,
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

/// The address an IP-derived label names (any case), if it is a VN host address.
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
}

impl<const PENDING: usize> DnsServer<PENDING> {
    /// Empty responder.
    pub fn new() -> Self {
        Self { pending: Vec::new() }
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
                Some([]) => {
                    let mut v = Vec::new();
                    if want(Type::Soa) {
                        let _ = v.push(RData::Soa(Self::soa_data(site)));
                    }
                    if want(Type::Ns) {
                        let _ = v.push(RData::Ns(Self::under_domain(site, NS_LABEL)));
                    }
                    Local::Exists(v)
                }
                Some([label]) => {
                    let ip = if label.eq_ignore_ascii_case(NS_LABEL) {
                        Some(site.dns_addr)
                    } else if let Some(ip) = ip_of_label(site, label) {
                        Some(ip)
                    } else {
                        let mut lower: heapless::String<{ crate::dhcp::MAX_HOSTNAME }> =
                            heapless::String::new();
                        label
                            .iter()
                            .all(|c| lower.push(char::from(c.to_ascii_lowercase())).is_ok() && c.is_ascii())
                            .then(|| names.lookup(&lower))
                            .flatten()
                    };
                    match ip {
                        Some(ip) if want(Type::A) => Local::Exists(one(RData::A(ip))),
                        Some(_) => Local::Exists(Vec::new()),
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
                let mut v = Vec::new();
                if want(Type::Soa) {
                    let _ = v.push(RData::Soa(Self::soa_data(site)));
                }
                if want(Type::Ns) {
                    let _ = v.push(RData::Ns(Self::under_domain(site, NS_LABEL)));
                }
                Local::Exists(v)
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

    /// A query (UDP payload) to `.1:53` from the LAN.
    pub fn handle_query(
        &mut self,
        cx: &mut Cx<'_>,
        site: &Site,
        names: &dyn NameTable,
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
        let (local, apex) = Self::lookup(site, names, &query.question);
        match local {
            Local::NotOurs => self.forward(cx, site, meta, query),
            Local::Exists(data) => {
                let mut r = self.reply(site, &query, true, Rcode::NoError);
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
            Local::NxDomain => {
                let mut r = self.reply(site, &query, true, Rcode::NxDomain);
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

    /// Next deadline: the oldest forwarded query's timeout.
    pub fn poll_at(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// Timers: forwarded queries the upstream left unanswered get SERVFAIL.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>, site: &Site) {
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
