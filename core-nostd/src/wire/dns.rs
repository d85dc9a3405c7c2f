//! DNS messages (RFC 1035 §4, EDNS0 RFC 6891): a [`Packet`] view over the fixed header and a [`Repr`] of a
//! whole message with bounded sections. smoltcp's own `dns` module is crate-private and client-only, so
//! the responder has this one.
//!
//! Names are decompressed on parse (pointers must point backwards, at most [`MAX_POINTERS`] of them, the
//! result at most [`MAX_NAME_LEN`] bytes: a loop or a bomb is an error, never a hang) and compressed on
//! emit against the names already written (exact byte match, so a round trip is exact). Records whose
//! data holds names (NS, CNAME, PTR, MX, SOA) are decoded so that re-emitting them never carries a stale
//! pointer; A is decoded; every other type is kept as opaque bytes.

use heapless::Vec;
use smoltcp::wire::Ipv4Address;

use super::{Error, Result};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire, root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 63;
/// Most compression pointers followed in one name.
pub const MAX_POINTERS: usize = 32;
/// Names remembered for compression while emitting; later names are written in full.
const MAX_MARKS: usize = 32;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const ID: Field = 0..2;
    pub const FLAGS: Field = 2..4;
    pub const QDCOUNT: Field = 4..6;
    pub const ANCOUNT: Field = 6..8;
    pub const NSCOUNT: Field = 8..10;
    pub const ARCOUNT: Field = 10..12;
}

mod flag {
    pub const QR: u16 = 0x8000;
    pub const OPCODE_SHIFT: u16 = 11;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const Z: u16 = 0x0040;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
}

macro_rules! enum_with_unknown {
    ($(#[$m:meta])* pub enum $name:ident($ty:ty) { $($(#[$vm:meta])* $var:ident = $val:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vm])* $var,)+
            /// Any other value.
            Unknown($ty),
        }
        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                match v {
                    $($val => Self::$var,)+
                    other => Self::Unknown(other),
                }
            }
        }
        impl From<$name> for $ty {
            fn from(v: $name) -> Self {
                match v {
                    $($name::$var => $val,)+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

enum_with_unknown! {
    /// Header opcode (4 bits).
    pub enum Opcode(u8) {
        /// Standard query.
        Query = 0,
        /// Server status (obsolete).
        Status = 2,
        /// NOTIFY (RFC 1996).
        Notify = 4,
        /// UPDATE (RFC 2136).
        Update = 5,
    }
}

enum_with_unknown! {
    /// Response code: 4 bits in the header, 12 with the OPT record's extension.
    pub enum Rcode(u16) {
        /// No error.
        NoError = 0,
        /// The query could not be interpreted.
        FormErr = 1,
        /// The server failed (or the upstream did not answer).
        ServFail = 2,
        /// The name does not exist.
        NxDomain = 3,
        /// The kind of query is not implemented.
        NotImp = 4,
        /// Refused by policy.
        Refused = 5,
        /// Unsupported EDNS version (RFC 6891; needs OPT).
        BadVers = 16,
    }
}

enum_with_unknown! {
    /// Resource record type.
    pub enum Type(u16) {
        /// IPv4 address.
        A = 1,
        /// Name server.
        Ns = 2,
        /// Canonical name.
        Cname = 5,
        /// Start of authority.
        Soa = 6,
        /// Pointer (reverse names).
        Ptr = 12,
        /// Mail exchange.
        Mx = 15,
        /// Text.
        Txt = 16,
        /// IPv6 address.
        Aaaa = 28,
        /// Service locator.
        Srv = 33,
        /// EDNS0 pseudo-record.
        Opt = 41,
        /// Any type (query only).
        Any = 255,
    }
}

enum_with_unknown! {
    /// Record class.
    pub enum Class(u16) {
        /// Internet.
        In = 1,
        /// Chaos.
        Ch = 3,
        /// Any class (query only).
        Any = 255,
    }
}

/// A read-only or read-write view of a DNS message's fixed header.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking the length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap, checking that the header fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Whether the header fits.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error);
        }
        Ok(())
    }

    /// The whole buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, f: field::Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Transaction id.
    pub fn id(&self) -> u16 {
        self.u16_at(field::ID)
    }
    /// The flags word.
    pub fn flags(&self) -> Flags {
        Flags::from_bits(self.u16_at(field::FLAGS))
    }
    /// Number of questions.
    pub fn qdcount(&self) -> u16 {
        self.u16_at(field::QDCOUNT)
    }
    /// Number of answer records.
    pub fn ancount(&self) -> u16 {
        self.u16_at(field::ANCOUNT)
    }
    /// Number of authority records.
    pub fn nscount(&self) -> u16 {
        self.u16_at(field::NSCOUNT)
    }
    /// Number of additional records.
    pub fn arcount(&self) -> u16 {
        self.u16_at(field::ARCOUNT)
    }
    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_u16_at(&mut self, f: field::Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }
    /// Set the transaction id.
    pub fn set_id(&mut self, v: u16) {
        self.set_u16_at(field::ID, v)
    }
    /// Set the flags word.
    pub fn set_flags(&mut self, v: Flags) {
        self.set_u16_at(field::FLAGS, v.to_bits())
    }
    /// Set the question count.
    pub fn set_qdcount(&mut self, v: u16) {
        self.set_u16_at(field::QDCOUNT, v)
    }
    /// Set the answer count.
    pub fn set_ancount(&mut self, v: u16) {
        self.set_u16_at(field::ANCOUNT, v)
    }
    /// Set the authority count.
    pub fn set_nscount(&mut self, v: u16) {
        self.set_u16_at(field::NSCOUNT, v)
    }
    /// Set the additional count.
    pub fn set_arcount(&mut self, v: u16) {
        self.set_u16_at(field::ARCOUNT, v)
    }
}

/// The header flags word, unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// A response.
    pub response: bool,
    /// Kind of query.
    pub opcode: u8,
    /// Authoritative answer.
    pub authoritative: bool,
    /// Truncated.
    pub truncated: bool,
    /// Recursion desired.
    pub recursion_desired: bool,
    /// Recursion available.
    pub recursion_available: bool,
    /// The reserved Z bit (must be zero; kept so a round trip is exact).
    pub z: bool,
    /// Authentic data (DNSSEC).
    pub authentic_data: bool,
    /// Checking disabled (DNSSEC).
    pub checking_disabled: bool,
    /// The low 4 bits of the response code.
    pub rcode: u8,
}

impl Flags {
    /// Unpack a flags word.
    pub fn from_bits(v: u16) -> Self {
        Self {
            response: v & flag::QR != 0,
            opcode: ((v >> flag::OPCODE_SHIFT) & 0xf) as u8,
            authoritative: v & flag::AA != 0,
            truncated: v & flag::TC != 0,
            recursion_desired: v & flag::RD != 0,
            recursion_available: v & flag::RA != 0,
            z: v & flag::Z != 0,
            authentic_data: v & flag::AD != 0,
            checking_disabled: v & flag::CD != 0,
            rcode: (v & 0xf) as u8,
        }
    }

    /// Pack into a flags word.
    pub fn to_bits(self) -> u16 {
        let b = |on: bool, f: u16| if on { f } else { 0 };
        b(self.response, flag::QR)
            | (u16::from(self.opcode & 0xf) << flag::OPCODE_SHIFT)
            | b(self.authoritative, flag::AA)
            | b(self.truncated, flag::TC)
            | b(self.recursion_desired, flag::RD)
            | b(self.recursion_available, flag::RA)
            | b(self.z, flag::Z)
            | b(self.authentic_data, flag::AD)
            | b(self.checking_disabled, flag::CD)
            | u16::from(self.rcode & 0xf)
    }

    /// The opcode as an enum.
    pub fn opcode(&self) -> Opcode {
        Opcode::from(self.opcode)
    }
}

/// A domain name in uncompressed wire form (length-prefixed labels ending with the root label), at most
/// [`MAX_NAME_LEN`] bytes. Case is kept as received; [`Name::eq_ignore_case`] compares as DNS does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    wire: Vec<u8, MAX_NAME_LEN>,
}

impl Default for Name {
    fn default() -> Self {
        Self::root()
    }
}

impl Name {
    /// The root name (`.`).
    pub fn root() -> Self {
        let mut wire = Vec::new();
        let _ = wire.push(0);
        Self { wire }
    }

    /// A name from dotted text (`host.example`, a trailing dot allowed). Labels are taken as bytes,
    /// 1 to 63 of them; no escapes.
    pub fn from_dotted(text: &str) -> Result<Self> {
        let mut n = Self::root();
        let text = text.strip_suffix('.').unwrap_or(text);
        if text.is_empty() {
            return Ok(n);
        }
        for label in text.split('.') {
            n.push_label(label.as_bytes())?;
        }
        Ok(n)
    }

    /// Append a label before the root (`a.b.` + `c` = `a.b.c.`).
    pub fn push_label(&mut self, label: &[u8]) -> Result<()> {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(Error);
        }
        if self.wire.len() + 1 + label.len() > MAX_NAME_LEN {
            return Err(Error);
        }
        self.wire.pop();
        // Fits: checked just above.
        let _ = self.wire.push(label.len() as u8);
        let _ = self.wire.extend_from_slice(label);
        let _ = self.wire.push(0);
        Ok(())
    }

    /// Append every label of `other` (`a.` + `b.c.` = `a.b.c.`).
    pub fn append(&mut self, other: &Name) -> Result<()> {
        for l in other.labels() {
            self.push_label(l)?;
        }
        Ok(())
    }

    /// The uncompressed wire form.
    pub fn as_wire(&self) -> &[u8] {
        &self.wire
    }

    /// The labels, leftmost first, without the root.
    pub fn labels(&self) -> Labels<'_> {
        Labels { rest: &self.wire }
    }

    /// Number of labels, without the root.
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// Compare ignoring ASCII case (RFC 4343).
    pub fn eq_ignore_case(&self, other: &Name) -> bool {
        self.wire.eq_ignore_ascii_case(&other.wire)
    }

    /// If `self` is `suffix` or below it (ignoring case), the number of labels in front of it.
    pub fn prefix_labels_of(&self, suffix: &Name) -> Option<usize> {
        let (n, s) = (self.label_count(), suffix.label_count());
        let k = n.checked_sub(s)?;
        let mut tail = self.labels().skip(k);
        suffix.labels().all(|l| tail.next().is_some_and(|t| t.eq_ignore_ascii_case(l))).then_some(k)
    }
}

/// Iterator over a [`Name`]'s labels.
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, tail) = self.rest.split_first()?;
        if len == 0 {
            return None;
        }
        let label = tail.get(..usize::from(len))?;
        self.rest = tail.get(usize::from(len)..)?;
        Some(label)
    }
}

/// Read the name at `pos` of `msg`, following compression pointers. Returns the name and the offset just
/// past it at `pos` (past the first pointer, if any).
pub fn parse_name(msg: &[u8], mut pos: usize) -> Result<(Name, usize)> {
    let mut wire: Vec<u8, MAX_NAME_LEN> = Vec::new();
    let mut end = None;
    let mut hops = 0;
    loop {
        let len = *msg.get(pos).ok_or(Error)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                wire.push(0).map_err(|_| Error)?;
                return Ok((Name { wire }, end.unwrap_or(pos + 1)));
            }
            0x00 => {
                let label = msg.get(pos + 1..pos + 1 + usize::from(len)).ok_or(Error)?;
                // Leave room for the root label.
                if wire.len() + 1 + label.len() >= MAX_NAME_LEN {
                    return Err(Error);
                }
                wire.push(len).map_err(|_| Error)?;
                wire.extend_from_slice(label).map_err(|_| Error)?;
                pos += 1 + label.len();
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(Error)?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                // Only backwards: a chain of pointers then always ends.
                hops += 1;
                if target >= pos || hops > MAX_POINTERS {
                    return Err(Error);
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            // 0x40 and 0x80: extended label types (RFC 6891 §5), unused.
            _ => return Err(Error),
        }
    }
}

/// One question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name asked about.
    pub name: Name,
    /// Record type asked for.
    pub qtype: Type,
    /// Class asked for.
    pub qclass: Class,
}

impl Question {
    fn parse(msg: &[u8], pos: usize) -> Result<(Self, usize)> {
        let (name, pos) = parse_name(msg, pos)?;
        let b = msg.get(pos..pos + 4).ok_or(Error)?;
        let qtype = Type::from(u16::from_be_bytes([b[0], b[1]]));
        let qclass = Class::from(u16::from_be_bytes([b[2], b[3]]));
        Ok((Self { name, qtype, qclass }, pos + 4))
    }
}

/// SOA record data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    /// Primary name server.
    pub mname: Name,
    /// Mailbox of the person responsible, as a name.
    pub rname: Name,
    /// Zone serial.
    pub serial: u32,
    /// Secondary refresh interval, seconds.
    pub refresh: u32,
    /// Retry interval, seconds.
    pub retry: u32,
    /// Expiry, seconds.
    pub expire: u32,
    /// TTL of negative answers (RFC 2308), seconds.
    pub minimum: u32,
}

/// Record data.
// SOA's two names make it the large variant; without an allocator there is nothing to box it in.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData<'a> {
    /// An IPv4 address.
    A(Ipv4Address),
    /// A name server.
    Ns(Name),
    /// A canonical name.
    Cname(Name),
    /// A reverse pointer.
    Ptr(Name),
    /// A mail exchange: preference and host.
    Mx(u16, Name),
    /// Start of authority.
    Soa(Soa),
    /// Any other type, kept as bytes.
    Other(Type, &'a [u8]),
}

impl RData<'_> {
    /// The record type.
    pub fn rtype(&self) -> Type {
        match self {
            RData::A(_) => Type::A,
            RData::Ns(_) => Type::Ns,
            RData::Cname(_) => Type::Cname,
            RData::Ptr(_) => Type::Ptr,
            RData::Mx(..) => Type::Mx,
            RData::Soa(_) => Type::Soa,
            RData::Other(t, _) => *t,
        }
    }
}

/// One resource record (OPT excepted: see [`Opt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Owner name.
    pub name: Name,
    /// Class.
    pub class: Class,
    /// Time to live, seconds.
    pub ttl: u32,
    /// Type and data.
    pub data: RData<'a>,
}

/// The EDNS0 OPT pseudo-record (RFC 6891 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt<'a> {
    /// Largest UDP payload the sender can receive.
    pub udp_size: u16,
    /// Upper 8 bits of the 12-bit response code.
    pub ext_rcode: u8,
    /// EDNS version.
    pub version: u8,
    /// The flags (DO is 0x8000).
    pub flags: u16,
    /// The options, as bytes (each well formed: code, length, data).
    pub options: &'a [u8],
}

impl Opt<'_> {
    /// The DNSSEC OK bit.
    pub fn dnssec_ok(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    fn wire_len(&self) -> usize {
        11 + self.options.len()
    }
}

/// Read a record at `pos`: `Ok(Err(opt))` for an OPT record (any section; the caller decides).
fn parse_record<'a>(msg: &'a [u8], pos: usize) -> Result<(core::result::Result<Record<'a>, Opt<'a>>, usize)> {
    let (name, pos) = parse_name(msg, pos)?;
    let h = msg.get(pos..pos + 10).ok_or(Error)?;
    let rtype = Type::from(u16::from_be_bytes([h[0], h[1]]));
    let class = u16::from_be_bytes([h[2], h[3]]);
    let ttl = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let rdlen = usize::from(u16::from_be_bytes([h[8], h[9]]));
    let start = pos + 10;
    let end = start + rdlen;
    let rdata = msg.get(start..end).ok_or(Error)?;
    if rtype == Type::Opt {
        if name.label_count() != 0 {
            return Err(Error);
        }
        // Each option: code, length, data, exactly filling the record.
        let mut rest = rdata;
        while !rest.is_empty() {
            let olen =
                usize::from(u16::from_be_bytes([*rest.get(2).ok_or(Error)?, *rest.get(3).ok_or(Error)?]));
            rest = rest.get(4 + olen..).ok_or(Error)?;
        }
        let [ext_rcode, version, f0, f1] = ttl.to_be_bytes();
        let opt =
            Opt { udp_size: class, ext_rcode, version, flags: u16::from_be_bytes([f0, f1]), options: rdata };
        return Ok((Err(opt), end));
    }
    // A name inside the data must end exactly at the record's end.
    let name_in = |at: usize| -> Result<Name> {
        let (n, after) = parse_name(msg, at)?;
        if after != end {
            return Err(Error);
        }
        Ok(n)
    };
    let data = match rtype {
        Type::A => {
            let b: [u8; 4] = rdata.try_into().map_err(|_| Error)?;
            RData::A(Ipv4Address::from(b))
        }
        Type::Ns => RData::Ns(name_in(start)?),
        Type::Cname => RData::Cname(name_in(start)?),
        Type::Ptr => RData::Ptr(name_in(start)?),
        Type::Mx => {
            let pref = u16::from_be_bytes([*rdata.first().ok_or(Error)?, *rdata.get(1).ok_or(Error)?]);
            RData::Mx(pref, name_in(start + 2)?)
        }
        Type::Soa => {
            let (mname, p) = parse_name(msg, start)?;
            let (rname, p) = parse_name(msg, p)?;
            if p + 20 != end {
                return Err(Error);
            }
            let n = |i: usize| -> u32 {
                let b = &msg[p + 4 * i..p + 4 * i + 4];
                u32::from_be_bytes([b[0], b[1], b[2], b[3]])
            };
            RData::Soa(Soa {
                mname,
                rname,
                serial: n(0),
                refresh: n(1),
                retry: n(2),
                expire: n(3),
                minimum: n(4),
            })
        }
        other => RData::Other(other, rdata),
    };
    Ok((Ok(Record { name, class: Class::from(class), ttl, data }), end))
}

/// A whole message: header, at most one question, at most `N` records in each section, and the OPT
/// record pulled out of the additional section. Parsing a message with more records than that fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr<'a, const N: usize = 4> {
    /// Transaction id.
    pub id: u16,
    /// Header flags.
    pub flags: Flags,
    /// The question, if any.
    pub question: Option<Question>,
    /// Answer section.
    pub answers: Vec<Record<'a>, N>,
    /// Authority section.
    pub authority: Vec<Record<'a>, N>,
    /// Additional section, without OPT.
    pub additional: Vec<Record<'a>, N>,
    /// The OPT record (emitted last in the additional section).
    pub opt: Option<Opt<'a>>,
}

impl<'a, const N: usize> Repr<'a, N> {
    /// An empty message.
    pub fn new(id: u16, flags: Flags) -> Self {
        Self {
            id,
            flags,
            question: None,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            opt: None,
        }
    }

    /// Parse a message. More than one question, more than one OPT, more than `N` records in a section,
    /// bytes left over or anything out of bounds is an error.
    pub fn parse(packet: &Packet<&'a [u8]>) -> Result<Self> {
        packet.check_len()?;
        let msg: &'a [u8] = packet.buffer;
        let mut r = Self::new(packet.id(), packet.flags());
        let mut pos = HEADER_LEN;
        match packet.qdcount() {
            0 => {}
            1 => {
                let (q, p) = Question::parse(msg, pos)?;
                r.question = Some(q);
                pos = p;
            }
            _ => return Err(Error),
        }
        let counts = [packet.ancount(), packet.nscount(), packet.arcount()];
        for (section, count) in counts.into_iter().enumerate() {
            for _ in 0..count {
                let (rec, p) = parse_record(msg, pos)?;
                pos = p;
                match (rec, section) {
                    (Err(opt), 2) if r.opt.is_none() => r.opt = Some(opt),
                    (Err(_), _) => return Err(Error),
                    (Ok(rec), 0) => r.answers.push(rec).map_err(|_| Error)?,
                    (Ok(rec), 1) => r.authority.push(rec).map_err(|_| Error)?,
                    (Ok(rec), _) => r.additional.push(rec).map_err(|_| Error)?,
                }
            }
        }
        if pos != msg.len() {
            return Err(Error);
        }
        Ok(r)
    }

    /// The full response code, with the OPT extension.
    pub fn rcode(&self) -> Rcode {
        let ext = self.opt.map_or(0, |o| u16::from(o.ext_rcode));
        Rcode::from((ext << 4) | u16::from(self.flags.rcode))
    }

    /// Set the response code, in the header and (for codes above 15) the OPT record, which must then exist.
    pub fn set_rcode(&mut self, rcode: Rcode) {
        let v = u16::from(rcode);
        self.flags.rcode = (v & 0xf) as u8;
        if let Some(o) = &mut self.opt {
            o.ext_rcode = (v >> 4) as u8;
        }
    }

    /// Length with every name written in full: [`Repr::emit`] never needs more.
    pub fn buffer_len(&self) -> usize {
        let rec = |r: &Record<'_>| {
            r.name.wire.len()
                + 10
                + match &r.data {
                    RData::A(_) => 4,
                    RData::Ns(n) | RData::Cname(n) | RData::Ptr(n) => n.wire.len(),
                    RData::Mx(_, n) => 2 + n.wire.len(),
                    RData::Soa(s) => s.mname.wire.len() + s.rname.wire.len() + 20,
                    RData::Other(_, d) => d.len(),
                }
        };
        HEADER_LEN
            + self.question.as_ref().map_or(0, |q| q.name.wire.len() + 4)
            + self.answers.iter().chain(&self.authority).chain(&self.additional).map(rec).sum::<usize>()
            + self.opt.map_or(0, |o| o.wire_len())
    }

    /// Write the message into `buf`, compressing names; returns its length. An error when it does not
    /// fit (nothing else can fail).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let mut w = Writer { buf, len: HEADER_LEN, marks: Vec::new() };
        if w.buf.len() < HEADER_LEN {
            return Err(Error);
        }
        if let Some(q) = &self.question {
            w.name(&q.name)?;
            w.put(&u16::from(q.qtype).to_be_bytes())?;
            w.put(&u16::from(q.qclass).to_be_bytes())?;
        }
        for r in self.answers.iter().chain(&self.authority).chain(&self.additional) {
            w.record(r)?;
        }
        if let Some(o) = &self.opt {
            w.put(&[0])?;
            w.put(&u16::from(Type::Opt).to_be_bytes())?;
            w.put(&o.udp_size.to_be_bytes())?;
            let [f0, f1] = o.flags.to_be_bytes();
            w.put(&[o.ext_rcode, o.version, f0, f1])?;
            w.put(&(o.options.len() as u16).to_be_bytes())?;
            w.put(o.options)?;
        }
        let len = w.len;
        let mut p = Packet::new_unchecked(&mut buf[..len]);
        p.set_id(self.id);
        p.set_flags(self.flags);
        p.set_qdcount(u16::from(self.question.is_some()));
        p.set_ancount(self.answers.len() as u16);
        p.set_nscount(self.authority.len() as u16);
        p.set_arcount((self.additional.len() + usize::from(self.opt.is_some())) as u16);
        Ok(len)
    }
}

/// Emits into a buffer, remembering where names start for compression.
struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
    marks: Vec<u16, MAX_MARKS>,
}

impl Writer<'_> {
    fn put(&mut self, data: &[u8]) -> Result<()> {
        let dst = self.buf.get_mut(self.len..self.len + data.len()).ok_or(Error)?;
        dst.copy_from_slice(data);
        self.len += data.len();
        Ok(())
    }

    /// Write `name`: its longest suffix already written (byte for byte) becomes a pointer.
    fn name(&mut self, name: &Name) -> Result<()> {
        let wire = name.as_wire();
        let mut at = 0;
        while wire.get(at).is_some_and(|&l| l != 0) {
            let suffix = &wire[at..];
            let found = self.marks.iter().copied().find(|&m| {
                parse_name(&self.buf[..self.len], usize::from(m)).is_ok_and(|(n, _)| n.as_wire() == suffix)
            });
            if let Some(m) = found {
                return self.put(&(0xc000 | m).to_be_bytes());
            }
            if self.len < 0x4000 {
                let _ = self.marks.push(self.len as u16);
            }
            let l = usize::from(wire[at]);
            self.put(&wire[at..at + 1 + l])?;
            at += 1 + l;
        }
        self.put(&[0])
    }

    fn record(&mut self, r: &Record<'_>) -> Result<()> {
        self.name(&r.name)?;
        self.put(&u16::from(r.data.rtype()).to_be_bytes())?;
        self.put(&u16::from(r.class).to_be_bytes())?;
        self.put(&r.ttl.to_be_bytes())?;
        let len_at = self.len;
        self.put(&[0, 0])?;
        match &r.data {
            RData::A(a) => self.put(&a.octets())?,
            RData::Ns(n) | RData::Cname(n) | RData::Ptr(n) => self.name(n)?,
            RData::Mx(pref, n) => {
                self.put(&pref.to_be_bytes())?;
                self.name(n)?;
            }
            RData::Soa(s) => {
                self.name(&s.mname)?;
                self.name(&s.rname)?;
                for v in [s.serial, s.refresh, s.retry, s.expire, s.minimum] {
                    self.put(&v.to_be_bytes())?;
                }
            }
            RData::Other(_, d) => self.put(d)?,
        }
        let rdlen = u16::try_from(self.len - len_at - 2).map_err(|_| Error)?;
        self.buf[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Captured by ci/fixtures/capture-dns.sh: dig 9.18 queries to dnsmasq 2.89 on the loopback of a netns,
    // tcpdump, one UDP payload per file.
    /// `dig c250005005.demo.home.arpa A`: RD, EDNS0 (1232) with a client cookie.
    static Q_EDNS_COOKIE: &[u8] = include_bytes!("../../tests/fixtures/dns/query-edns-cookie.bin");
    /// `dig +noedns c250005005.demo.home.arpa A`.
    static Q_NOEDNS: &[u8] = include_bytes!("../../tests/fixtures/dns/query-noedns.bin");
    /// `dig +nocookie +norecurse c250005005.demo.home.arpa`: EDNS0 without options, RD clear.
    static Q_NORECURSE: &[u8] = include_bytes!("../../tests/fixtures/dns/query-norecurse-nocookie.bin");
    /// `dig -x 10.250.5.5`.
    static Q_PTR: &[u8] = include_bytes!("../../tests/fixtures/dns/query-ptr.bin");
    /// `dig C250005005.Demo.HOME.arpa A`.
    static Q_MIXED: &[u8] = include_bytes!("../../tests/fixtures/dns/query-mixed-case.bin");
    /// dnsmasq's answer to `dig www.example.test A` (`--address=/www.example.test/192.0.2.7`): a
    /// compressed owner name, TTL 0, EDNS0.
    static A_UPSTREAM: &[u8] = include_bytes!("../../tests/fixtures/dns/answer-upstream-a.bin");
    /// dnsmasq's NXDOMAIN to `dig +noedns nope.example.test A` (`--local=/example.test/`).
    static A_NX: &[u8] = include_bytes!("../../tests/fixtures/dns/answer-upstream-nxdomain.bin");

    fn parse(b: &[u8]) -> Result<Repr<'_, 4>> {
        Repr::parse(&Packet::new_checked(b)?)
    }

    fn name(s: &str) -> Name {
        Name::from_dotted(s).unwrap()
    }

    fn reemit(r: &Repr<'_, 4>) -> std::vec::Vec<u8> {
        let mut buf = [0xa5u8; 1500];
        let n = r.emit(&mut buf).unwrap();
        assert!(n <= r.buffer_len());
        buf[..n].to_vec()
    }

    #[test]
    fn dig_default_query_with_cookie() {
        let r = parse(Q_EDNS_COOKIE).unwrap();
        assert_eq!(r.id, 0x7737);
        assert!(!r.flags.response && r.flags.recursion_desired && r.flags.authentic_data);
        assert_eq!(r.flags.opcode(), Opcode::Query);
        let q = r.question.as_ref().unwrap();
        assert_eq!(q.name, name("c250005005.demo.home.arpa"));
        assert_eq!((q.qtype, q.qclass), (Type::A, Class::In));
        let opt = r.opt.unwrap();
        assert_eq!((opt.udp_size, opt.version, opt.ext_rcode, opt.dnssec_ok()), (1232, 0, 0, false));
        // One option: COOKIE (10) with the 8-byte client cookie.
        assert_eq!(&opt.options[..4], &[0, 10, 0, 8]);
        assert_eq!(opt.options.len(), 12);
        assert_eq!(reemit(&r), Q_EDNS_COOKIE);
    }

    #[test]
    fn dig_plain_and_norecurse_queries() {
        let r = parse(Q_NOEDNS).unwrap();
        assert!(r.opt.is_none() && r.flags.recursion_desired);
        assert_eq!(reemit(&r), Q_NOEDNS);
        let r = parse(Q_NORECURSE).unwrap();
        assert!(!r.flags.recursion_desired);
        assert_eq!(r.opt.unwrap().options, &[] as &[u8]);
        assert_eq!(reemit(&r), Q_NORECURSE);
    }

    #[test]
    fn dig_ptr_and_mixed_case_queries() {
        let r = parse(Q_PTR).unwrap();
        let q = r.question.as_ref().unwrap();
        assert_eq!(q.name, name("5.5.250.10.in-addr.arpa"));
        assert_eq!(q.qtype, Type::Ptr);
        assert_eq!(reemit(&r), Q_PTR);
        let r = parse(Q_MIXED).unwrap();
        let q = r.question.as_ref().unwrap();
        // Case kept as sent, compared without it.
        assert_eq!(q.name, name("C250005005.Demo.HOME.arpa"));
        assert_ne!(q.name, name("c250005005.demo.home.arpa"));
        assert!(q.name.eq_ignore_case(&name("c250005005.demo.home.arpa")));
        assert_eq!(q.name.prefix_labels_of(&name("demo.home.ARPA")), Some(1));
        assert_eq!(reemit(&r), Q_MIXED);
    }

    #[test]
    fn dnsmasq_answers_parse_and_reemit_identically() {
        let r = parse(A_UPSTREAM).unwrap();
        assert!(r.flags.response && r.flags.authoritative);
        assert_eq!(r.rcode(), Rcode::NoError);
        assert_eq!(r.answers.len(), 1);
        let a = &r.answers[0];
        assert_eq!(a.name, name("www.example.test"));
        assert_eq!((a.class, a.ttl), (Class::In, 0));
        assert_eq!(a.data, RData::A(Ipv4Address::new(192, 0, 2, 7)));
        // Our compression finds the same pointer (to the question at offset 12).
        assert_eq!(reemit(&r), A_UPSTREAM);
        let r = parse(A_NX).unwrap();
        assert_eq!(r.rcode(), Rcode::NxDomain);
        assert_eq!(reemit(&r), A_NX);
    }

    #[test]
    fn every_truncation_of_every_fixture_is_an_error() {
        for f in [Q_EDNS_COOKIE, Q_NOEDNS, Q_NORECURSE, Q_PTR, Q_MIXED, A_UPSTREAM, A_NX] {
            for n in 0..f.len() {
                assert!(parse(&f[..n]).is_err(), "{n} of {}", f.len());
            }
            let mut long = f.to_vec();
            long.push(0);
            assert!(parse(&long).is_err(), "trailing byte");
        }
    }

    fn header(qd: u16, an: u16, ar: u16) -> std::vec::Vec<u8> {
        let mut v = vec![0x12, 0x34, 0x01, 0x00];
        for c in [qd, an, 0, ar] {
            v.extend_from_slice(&c.to_be_bytes());
        }
        v
    }

    #[test]
    fn compression_loops_and_forward_pointers_are_refused() {
        // A pointer to itself.
        let mut m = header(1, 0, 0);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert!(parse(&m).is_err());
        // A pointer forward (to a valid name further on).
        let mut m = header(1, 0, 0);
        m.extend_from_slice(&[0xc0, 18, 0, 1, 0, 1, 1, b'a', 0]);
        assert!(parse_name(&m, 12).is_err());
        // Two names pointing at each other: the second one is a forward pointer somewhere.
        let mut m = header(0, 0, 0);
        m.extend_from_slice(&[1, b'a', 0xc0, 16, 1, b'b', 0xc0, 12]);
        assert!(parse_name(&m, 12).is_err() && parse_name(&m, 16).is_err());
        // Extended label types.
        let mut m = header(1, 0, 0);
        m.extend_from_slice(&[0x41, 0, 0, 1, 0, 1]);
        assert!(parse(&m).is_err());
    }

    #[test]
    fn names_longer_than_255_are_refused_even_through_pointers() {
        // 4 x 63-byte labels = 256 bytes with the root: one too many.
        let mut m = header(1, 0, 0);
        for _ in 0..4 {
            m.push(63);
            m.extend_from_slice(&[b'x'; 63]);
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(parse(&m).is_err());
        // 3 labels of 63 plus one of 61 = 253 + root = 255: the longest allowed.
        let mut m = header(1, 0, 0);
        for l in [63, 63, 63, 61] {
            m.push(l);
            m.extend(std::iter::repeat_n(b'y', usize::from(l)));
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse(&m).unwrap().question.unwrap().name.as_wire().len(), 255);
        // A chain of pointers, each hop adding a 40-byte label: 6 hops fit (247 bytes), 7 do not.
        let chain = |hops: usize| {
            let mut m = header(0, 0, 0);
            m.push(0);
            let mut prev = 12u16;
            for _ in 0..hops {
                let at = m.len() as u16;
                m.push(40);
                m.extend_from_slice(&[b'z'; 40]);
                m.extend_from_slice(&(0xc000 | prev).to_be_bytes());
                prev = at;
            }
            (m, usize::from(prev))
        };
        let (m, at) = chain(6);
        assert_eq!(parse_name(&m, at).unwrap().0.as_wire().len(), 6 * 41 + 1);
        let (m, at) = chain(7);
        assert!(parse_name(&m, at).is_err());
    }

    #[test]
    fn two_questions_two_opts_and_misplaced_opt_are_errors() {
        let q = [1, b'a', 0, 0, 1, 0, 1];
        let opt = [0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0];
        let mut m = header(2, 0, 0);
        m.extend_from_slice(&q);
        m.extend_from_slice(&q);
        assert!(parse(&m).is_err());
        let mut m = header(1, 0, 2);
        m.extend_from_slice(&q);
        m.extend_from_slice(&opt);
        m.extend_from_slice(&opt);
        assert!(parse(&m).is_err());
        let mut m = header(1, 1, 0);
        m.extend_from_slice(&q);
        m.extend_from_slice(&opt);
        assert!(parse(&m).is_err());
        // A malformed option list (length past the end).
        let mut m = header(1, 0, 1);
        m.extend_from_slice(&q);
        m.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 8]);
        assert!(parse(&m).is_err());
        let mut m = header(1, 0, 1);
        m.extend_from_slice(&q);
        m.extend_from_slice(&opt);
        assert_eq!(parse(&m).unwrap().opt.unwrap().udp_size, 1232);
    }

    #[test]
    fn more_records_than_the_bound_is_an_error() {
        let mut m = header(0, 3, 0);
        for _ in 0..3 {
            m.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        }
        assert!(Repr::<2>::parse(&Packet::new_checked(&m[..]).unwrap()).is_err());
        assert_eq!(Repr::<3>::parse(&Packet::new_checked(&m[..]).unwrap()).unwrap().answers.len(), 3);
    }

    #[test]
    fn emit_compresses_and_refuses_a_short_buffer() {
        let mut r: Repr<'_, 4> = Repr::new(1, Flags { response: true, ..Flags::default() });
        r.question = Some(Question { name: name("h.demo.home.arpa"), qtype: Type::Ptr, qclass: Class::In });
        r.answers
            .push(Record {
                name: name("h.demo.home.arpa"),
                class: Class::In,
                ttl: 5,
                data: RData::Ptr(name("x.demo.home.arpa")),
            })
            .unwrap();
        let out = reemit(&r);
        // Question 12 + 18 + 4; answer: pointer 2 + 10 + "x" 2 + pointer 2.
        assert_eq!(out.len(), 34 + 16);
        assert_eq!(&out[34..36], &[0xc0, 12]);
        assert_eq!(&out[out.len() - 2..], &[0xc0, 14]);
        for n in 0..out.len() {
            let mut buf = vec![0xa5; n];
            assert_eq!(r.emit(&mut buf), Err(Error));
        }
    }

    #[test]
    fn flags_and_rcode_round_trip() {
        for bits in [0u16, 0xffff, 0x8180, 0x0120, 0x7800] {
            assert_eq!(Flags::from_bits(bits).to_bits(), bits);
        }
        let mut r: Repr<'_, 1> = Repr::new(0, Flags::default());
        r.opt = Some(Opt { udp_size: 1232, ext_rcode: 0, version: 0, flags: 0, options: &[] });
        r.set_rcode(Rcode::BadVers);
        assert_eq!((r.flags.rcode, r.opt.unwrap().ext_rcode), (0, 1));
        assert_eq!(r.rcode(), Rcode::BadVers);
    }

    #[test]
    fn hickory_reads_what_we_emit() {
        use hickory_proto::op::Message;
        use hickory_proto::rr::RData as H;
        let mut r: Repr<'_, 4> =
            Repr::new(0xbeef, Flags { response: true, authoritative: true, ..Flags::default() });
        r.question =
            Some(Question { name: name("C250005005.Demo.home.arpa"), qtype: Type::A, qclass: Class::In });
        r.answers
            .push(Record {
                name: name("C250005005.Demo.home.arpa"),
                class: Class::In,
                ttl: 60,
                data: RData::A(Ipv4Address::new(10, 250, 5, 5)),
            })
            .unwrap();
        r.authority
            .push(Record {
                name: name("demo.home.arpa"),
                class: Class::In,
                ttl: 10,
                data: RData::Soa(Soa {
                    mname: name("ns.demo.home.arpa"),
                    rname: name("hostmaster.demo.home.arpa"),
                    serial: 1,
                    refresh: 2,
                    retry: 3,
                    expire: 4,
                    minimum: 10,
                }),
            })
            .unwrap();
        r.opt = Some(Opt { udp_size: 1232, ext_rcode: 0, version: 0, flags: 0, options: &[] });
        let m = Message::from_vec(&reemit(&r)).unwrap();
        assert_eq!(m.metadata.id, 0xbeef);
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].data, H::A(Ipv4Address::new(10, 250, 5, 5).into()));
        match &m.authorities[0].data {
            H::SOA(s) => {
                assert_eq!(s.mname.to_ascii(), "ns.demo.home.arpa.");
                assert_eq!(s.minimum, 10);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.edns.as_ref().unwrap().max_payload(), 1232);
    }

    fn arb_name() -> impl Strategy<Value = Name> {
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..8), 0..5).prop_map(|labels| {
            let mut n = Name::root();
            for l in labels {
                n.push_label(&l).unwrap();
            }
            n
        })
    }

    fn arb_record() -> impl Strategy<Value = Record<'static>> {
        static OPAQUE: [u8; 16] = *b"0123456789abcdef";
        let data = prop_oneof![
            any::<[u8; 4]>().prop_map(|a| RData::A(Ipv4Address::from(a))),
            arb_name().prop_map(RData::Ns),
            arb_name().prop_map(RData::Cname),
            arb_name().prop_map(RData::Ptr),
            (any::<u16>(), arb_name()).prop_map(|(p, n)| RData::Mx(p, n)),
            (arb_name(), arb_name(), any::<[u32; 5]>()).prop_map(|(mname, rname, v)| RData::Soa(Soa {
                mname,
                rname,
                serial: v[0],
                refresh: v[1],
                retry: v[2],
                expire: v[3],
                minimum: v[4],
            })),
            (prop_oneof![Just(Type::Txt), Just(Type::Aaaa), Just(Type::Unknown(999))], 0..16usize)
                .prop_map(|(t, n)| RData::Other(t, &OPAQUE[..n])),
        ];
        (arb_name(), any::<u16>(), any::<u32>(), data).prop_map(|(name, class, ttl, data)| Record {
            name,
            class: Class::from(class),
            ttl,
            data,
        })
    }

    fn arb_repr() -> impl Strategy<Value = Repr<'static, 4>> {
        static OPTS: [u8; 12] = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let section = || proptest::collection::vec(arb_record(), 0..4);
        (
            any::<u16>(),
            any::<u16>(),
            proptest::option::of((arb_name(), any::<u16>(), any::<u16>())),
            (section(), section(), section()),
            proptest::option::of((any::<u16>(), any::<u8>(), any::<u8>(), any::<u16>(), any::<bool>())),
        )
            .prop_map(|(id, flags, q, (an, ns, ar), opt)| {
                let mut r = Repr::new(id, Flags::from_bits(flags));
                r.question = q.map(|(name, t, c)| Question {
                    name,
                    qtype: match Type::from(t) {
                        Type::Opt => Type::A,
                        t => t,
                    },
                    qclass: Class::from(c),
                });
                r.answers.extend(an);
                r.authority.extend(ns);
                r.additional.extend(ar);
                r.opt = opt.map(|(udp_size, ext_rcode, version, flags, with)| Opt {
                    udp_size,
                    ext_rcode,
                    version,
                    flags,
                    options: if with { &OPTS } else { &[] },
                });
                r
            })
    }

    proptest! {
        #[test]
        fn repr_round_trips(r in arb_repr()) {
            let mut buf = [0xa5u8; 4096];
            let n = r.emit(&mut buf).unwrap();
            prop_assert!(n <= r.buffer_len());
            let p = Packet::new_checked(&buf[..n]).unwrap();
            prop_assert_eq!(Repr::<4>::parse(&p).unwrap(), r);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::<4>::parse(&p);
            }
        }
    }
}
