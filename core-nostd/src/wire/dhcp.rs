//! The DHCP server's own view of a DHCPv4 message (RFC 2131 §2, options of RFC 2132, 3046, 3442,
//! 4702, 6842, 2563).
//!
//! smoltcp's `DhcpRepr` is written for a client: it drops DUID client identifiers and ignores the host
//! name options. This Repr is read from smoltcp's [`DhcpPacket`] header accessors and its
//! `options()` iterator, keeps every option a server needs as received (bounded), and emits replies.
//! Option overload (52) is refused as malformed: no client we serve uses `sname`/`file` for options.

use heapless::Vec;
use smoltcp::wire::{DhcpMessageType, DhcpOpCode, DhcpPacket, EthernetAddress, Ipv4Address};

use super::{Error, Result};

/// Longest client identifier kept (option 61); a longer one makes the message malformed.
pub const MAX_CLIENT_ID: usize = 64;
/// Length of the fixed BOOTP header plus the magic cookie.
pub const HEADER_LEN: usize = 240;
/// Shortest message emitted: the BOOTP size (RFC 951), which some clients still expect.
pub const MIN_EMIT_LEN: usize = 300;
/// The DHCP message size every client accepts when it sends no option 57 (576-byte IP datagram, RFC 2131 §2).
pub const DEFAULT_MAX_MESSAGE: usize = 576 - 28;

/// Option codes used here.
pub mod opt {
    #![allow(missing_docs)]
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS_SERVER: u8 = 6;
    pub const HOST_NAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const INTERFACE_MTU: u8 = 26;
    pub const BROADCAST: u8 = 28;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_LIST: u8 = 55;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const CLIENT_FQDN: u8 = 81;
    pub const RELAY_AGENT_INFO: u8 = 82;
    pub const AUTO_CONFIGURE: u8 = 116;
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const END: u8 = 255;
}

/// Flags of the client FQDN option (RFC 4702 §2.1).
pub mod fqdn_flags {
    /// The server should perform the A RR update.
    pub const S: u8 = 0x01;
    /// The server overrode the client's S bit.
    pub const O: u8 = 0x02;
    /// The name is in canonical wire format.
    pub const E: u8 = 0x04;
    /// The server should perform no DNS update.
    pub const N: u8 = 0x08;
}

/// The client FQDN option (81, RFC 4702).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fqdn {
    /// Flags (S, O, E, N).
    pub flags: u8,
    /// RCODE1, deprecated (255 from servers).
    pub rcode1: u8,
    /// RCODE2, deprecated (255 from servers).
    pub rcode2: u8,
    /// The domain name as carried: wire format when flag E is set, ASCII otherwise.
    pub name: Vec<u8, 252>,
}

impl Fqdn {
    /// The first label of the name, if it has one (decoding wire format when flag E is set).
    pub fn first_label(&self) -> Option<&[u8]> {
        if self.flags & fqdn_flags::E != 0 {
            let len = usize::from(*self.name.first()?);
            self.name.get(1..1 + len).filter(|l| !l.is_empty())
        } else {
            self.name.split(|c| *c == b'.').next().filter(|l| !l.is_empty())
        }
    }
}

/// A DHCP message as the server reads and writes it. Options absent from the message are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRepr {
    /// BOOTREQUEST or BOOTREPLY.
    pub op: DhcpOpCode,
    /// Option 53.
    pub message_type: DhcpMessageType,
    /// Transaction id chosen by the client.
    pub xid: u32,
    /// Seconds since the client began (as sent).
    pub secs: u16,
    /// The flags field (bit 15: broadcast).
    pub flags: u16,
    /// Relay hops.
    pub hops: u8,
    /// Client's address (BOUND, RENEWING, REBINDING, INFORM).
    pub ciaddr: Ipv4Address,
    /// Address offered or bound (replies).
    pub yiaddr: Ipv4Address,
    /// Next server (bootstrap).
    pub siaddr: Ipv4Address,
    /// Relay agent address.
    pub giaddr: Ipv4Address,
    /// Client hardware address (Ethernet only).
    pub chaddr: EthernetAddress,
    /// Option 50.
    pub requested_ip: Option<Ipv4Address>,
    /// Option 51, seconds.
    pub lease_time: Option<u32>,
    /// Option 54.
    pub server_id: Option<Ipv4Address>,
    /// Option 55 as received.
    pub parameters: Option<Vec<u8, 255>>,
    /// Option 57.
    pub max_message_size: Option<u16>,
    /// Option 61 as received.
    pub client_id: Option<Vec<u8, MAX_CLIENT_ID>>,
    /// Option 12 as received.
    pub hostname: Option<Vec<u8, 255>>,
    /// Option 81.
    pub fqdn: Option<Fqdn>,
    /// Option 60 as received.
    pub vendor_class: Option<Vec<u8, 255>>,
    /// Option 82 as received (echoed in replies, RFC 3046 §2.2).
    pub relay_agent_info: Option<Vec<u8, 255>>,
    /// Option 116 (RFC 2563).
    pub auto_configure: Option<u8>,
    /// Option 1.
    pub subnet_mask: Option<Ipv4Address>,
    /// Option 3 (one router).
    pub router: Option<Ipv4Address>,
    /// Option 6 (one server).
    pub dns_server: Option<Ipv4Address>,
    /// Option 15.
    pub domain_name: Option<Vec<u8, 255>>,
    /// Option 26.
    pub interface_mtu: Option<u16>,
    /// Option 28.
    pub broadcast_addr: Option<Ipv4Address>,
    /// Option 58, seconds.
    pub renewal_time: Option<u32>,
    /// Option 59, seconds.
    pub rebinding_time: Option<u32>,
    /// Option 121 (RFC 3442) as encoded.
    pub classless_routes: Option<Vec<u8, 255>>,
}

/// The broadcast bit of the flags field.
pub const FLAG_BROADCAST: u16 = 0x8000;
const MAGIC: u32 = 0x6382_5363;

fn addr(data: &[u8]) -> Result<Ipv4Address> {
    let b: [u8; 4] = data.try_into().map_err(|_| Error)?;
    Ok(Ipv4Address::from(b))
}

fn u32_of(data: &[u8]) -> Result<u32> {
    let b: [u8; 4] = data.try_into().map_err(|_| Error)?;
    Ok(u32::from_be_bytes(b))
}

fn u16_of(data: &[u8]) -> Result<u16> {
    let b: [u8; 2] = data.try_into().map_err(|_| Error)?;
    Ok(u16::from_be_bytes(b))
}

fn bytes<const N: usize>(data: &[u8]) -> Result<Vec<u8, N>> {
    Vec::from_slice(data).map_err(|_| Error)
}

impl DhcpRepr {
    /// An empty message of `message_type` (all addresses zero, no options).
    pub fn new(op: DhcpOpCode, message_type: DhcpMessageType, xid: u32, chaddr: EthernetAddress) -> Self {
        Self {
            op,
            message_type,
            xid,
            secs: 0,
            flags: 0,
            hops: 0,
            ciaddr: Ipv4Address::UNSPECIFIED,
            yiaddr: Ipv4Address::UNSPECIFIED,
            siaddr: Ipv4Address::UNSPECIFIED,
            giaddr: Ipv4Address::UNSPECIFIED,
            chaddr,
            requested_ip: None,
            lease_time: None,
            server_id: None,
            parameters: None,
            max_message_size: None,
            client_id: None,
            hostname: None,
            fqdn: None,
            vendor_class: None,
            relay_agent_info: None,
            auto_configure: None,
            subnet_mask: None,
            router: None,
            dns_server: None,
            domain_name: None,
            interface_mtu: None,
            broadcast_addr: None,
            renewal_time: None,
            rebinding_time: None,
            classless_routes: None,
        }
    }

    /// Whether the client asked for option `code` in its parameter request list (55).
    pub fn requested(&self, code: u8) -> bool {
        self.parameters.as_ref().is_some_and(|p| p.contains(&code))
    }

    /// Whether the broadcast flag is set.
    pub fn broadcast_flag(&self) -> bool {
        self.flags & FLAG_BROADCAST != 0
    }

    /// Read a message. Refused: a short buffer, a wrong magic cookie, a non-Ethernet hardware address,
    /// no option 53, an option of the wrong length, option 52, a client identifier over
    /// [`MAX_CLIENT_ID`]. The first instance of a repeated option wins.
    pub fn parse(packet: &DhcpPacket<&[u8]>) -> Result<Self> {
        packet.check_len()?;
        if packet.magic_number() != MAGIC
            || packet.hardware_len() != 6
            || packet.hardware_type() != smoltcp::wire::ArpHardware::Ethernet
        {
            return Err(Error);
        }
        let raw: &[u8] = packet.into_inner();
        let flags = u16::from_be_bytes([raw[10], raw[11]]);
        let mut r = Self::new(
            packet.opcode(),
            DhcpMessageType::Unknown(0),
            packet.transaction_id(),
            packet.client_hardware_address(),
        );
        r.secs = packet.secs();
        r.flags = flags;
        r.hops = packet.hops();
        r.ciaddr = packet.client_ip();
        r.yiaddr = packet.your_ip();
        r.siaddr = packet.server_ip();
        r.giaddr = packet.relay_agent_ip();
        let mut have_type = false;
        let mut seen = [0u32; 8];
        for o in packet.options() {
            let bit = 1u32 << (o.kind % 32);
            let word = usize::from(o.kind / 32);
            if seen[word] & bit != 0 {
                continue;
            }
            seen[word] |= bit;
            let d = o.data;
            match o.kind {
                opt::MESSAGE_TYPE => {
                    let [t] = d else { return Err(Error) };
                    r.message_type = DhcpMessageType::from(*t);
                    have_type = true;
                }
                opt::OVERLOAD => return Err(Error),
                opt::REQUESTED_IP => r.requested_ip = Some(addr(d)?),
                opt::LEASE_TIME => r.lease_time = Some(u32_of(d)?),
                opt::SERVER_ID => r.server_id = Some(addr(d)?),
                opt::PARAMETER_LIST => r.parameters = Some(bytes(d)?),
                opt::MAX_MESSAGE_SIZE => r.max_message_size = Some(u16_of(d)?),
                opt::CLIENT_ID => r.client_id = Some(bytes(d)?),
                opt::HOST_NAME => r.hostname = Some(bytes(d)?),
                opt::CLIENT_FQDN => {
                    let [flags, rcode1, rcode2, name @ ..] = d else { return Err(Error) };
                    r.fqdn =
                        Some(Fqdn { flags: *flags, rcode1: *rcode1, rcode2: *rcode2, name: bytes(name)? });
                }
                opt::VENDOR_CLASS => r.vendor_class = Some(bytes(d)?),
                opt::RELAY_AGENT_INFO => r.relay_agent_info = Some(bytes(d)?),
                opt::AUTO_CONFIGURE => {
                    let [v] = d else { return Err(Error) };
                    r.auto_configure = Some(*v);
                }
                opt::SUBNET_MASK => r.subnet_mask = Some(addr(d)?),
                opt::ROUTER => r.router = Some(addr(d.get(..4).ok_or(Error)?)?),
                opt::DNS_SERVER => r.dns_server = Some(addr(d.get(..4).ok_or(Error)?)?),
                opt::DOMAIN_NAME => r.domain_name = Some(bytes(d)?),
                opt::INTERFACE_MTU => r.interface_mtu = Some(u16_of(d)?),
                opt::BROADCAST => r.broadcast_addr = Some(addr(d)?),
                opt::RENEWAL_TIME => r.renewal_time = Some(u32_of(d)?),
                opt::REBINDING_TIME => r.rebinding_time = Some(u32_of(d)?),
                opt::CLASSLESS_ROUTES => r.classless_routes = Some(bytes(d)?),
                _ => {}
            }
        }
        if !have_type {
            return Err(Error);
        }
        Ok(r)
    }

    /// Every option this Repr carries, in the order they are emitted: `(code, data)`.
    fn for_each_option(&self, mut f: impl FnMut(u8, &[u8])) {
        let mt = [u8::from(self.message_type)];
        f(opt::MESSAGE_TYPE, &mt);
        if let Some(a) = self.server_id {
            f(opt::SERVER_ID, &a.octets());
        }
        if let Some(v) = self.lease_time {
            f(opt::LEASE_TIME, &v.to_be_bytes());
        }
        if let Some(v) = self.renewal_time {
            f(opt::RENEWAL_TIME, &v.to_be_bytes());
        }
        if let Some(v) = self.rebinding_time {
            f(opt::REBINDING_TIME, &v.to_be_bytes());
        }
        if let Some(a) = self.subnet_mask {
            f(opt::SUBNET_MASK, &a.octets());
        }
        if let Some(a) = self.router {
            f(opt::ROUTER, &a.octets());
        }
        if let Some(v) = &self.classless_routes {
            f(opt::CLASSLESS_ROUTES, v);
        }
        if let Some(a) = self.dns_server {
            f(opt::DNS_SERVER, &a.octets());
        }
        if let Some(v) = &self.domain_name {
            f(opt::DOMAIN_NAME, v);
        }
        if let Some(v) = self.interface_mtu {
            f(opt::INTERFACE_MTU, &v.to_be_bytes());
        }
        if let Some(a) = self.broadcast_addr {
            f(opt::BROADCAST, &a.octets());
        }
        if let Some(a) = self.requested_ip {
            f(opt::REQUESTED_IP, &a.octets());
        }
        if let Some(v) = &self.parameters {
            f(opt::PARAMETER_LIST, v);
        }
        if let Some(v) = self.max_message_size {
            f(opt::MAX_MESSAGE_SIZE, &v.to_be_bytes());
        }
        if let Some(v) = &self.vendor_class {
            f(opt::VENDOR_CLASS, v);
        }
        if let Some(v) = &self.client_id {
            f(opt::CLIENT_ID, v);
        }
        if let Some(v) = &self.hostname {
            f(opt::HOST_NAME, v);
        }
        if let Some(q) = &self.fqdn {
            let mut b = [0u8; 255];
            b[0] = q.flags;
            b[1] = q.rcode1;
            b[2] = q.rcode2;
            b[3..3 + q.name.len()].copy_from_slice(&q.name);
            f(opt::CLIENT_FQDN, &b[..3 + q.name.len()]);
        }
        if let Some(v) = self.auto_configure {
            f(opt::AUTO_CONFIGURE, &[v]);
        }
        // RFC 3046 §2.2: the relay agent information option comes last, just before END.
        if let Some(v) = &self.relay_agent_info {
            f(opt::RELAY_AGENT_INFO, v);
        }
    }

    /// Bytes of the emitted message: header, options, END, padded to [`MIN_EMIT_LEN`].
    pub fn buffer_len(&self) -> usize {
        let mut n = HEADER_LEN + 1;
        self.for_each_option(|_, d| n += 2 + d.len());
        n.max(MIN_EMIT_LEN)
    }

    /// Write the message into the first [`DhcpRepr::buffer_len`] bytes of `buf` and return that length
    /// (`Err` when `buf` is shorter; nothing panics). Bytes after END are zero padding.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        if buf.len() < len {
            return Err(Error);
        }
        buf[..len].fill(0);
        buf[0] = u8::from(self.op);
        buf[1] = 1; // Ethernet
        buf[2] = 6;
        buf[3] = self.hops;
        buf[4..8].copy_from_slice(&self.xid.to_be_bytes());
        buf[8..10].copy_from_slice(&self.secs.to_be_bytes());
        buf[10..12].copy_from_slice(&self.flags.to_be_bytes());
        buf[12..16].copy_from_slice(&self.ciaddr.octets());
        buf[16..20].copy_from_slice(&self.yiaddr.octets());
        buf[20..24].copy_from_slice(&self.siaddr.octets());
        buf[24..28].copy_from_slice(&self.giaddr.octets());
        buf[28..34].copy_from_slice(self.chaddr.as_bytes());
        buf[236..240].copy_from_slice(&MAGIC.to_be_bytes());
        let mut at = HEADER_LEN;
        self.for_each_option(|code, d| {
            buf[at] = code;
            buf[at + 1] = d.len() as u8;
            buf[at + 2..at + 2 + d.len()].copy_from_slice(d);
            at += 2 + d.len();
        });
        buf[at] = opt::END;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Captured with ci/fixtures/capture-dhcp.sh: tcpdump in a netns, each client against a throwaway
    // dnsmasq 2.90 on a veth pair; the UDP payloads of the client's first message of each type.
    /// busybox udhcpc 1.35.0 DISCOVER (`-x hostname:bbhost`).
    pub(crate) static UDHCPC_DISCOVER: &[u8] =
        include_bytes!("../../tests/fixtures/dhcp/udhcpc-discover.bin");
    /// busybox udhcpc 1.35.0 REQUEST (SELECTING).
    pub(crate) static UDHCPC_REQUEST: &[u8] = include_bytes!("../../tests/fixtures/dhcp/udhcpc-request.bin");
    /// ISC dhclient 4.4.3-P1 DISCOVER (`send host-name "iscclient"`).
    pub(crate) static DHCLIENT_DISCOVER: &[u8] =
        include_bytes!("../../tests/fixtures/dhcp/dhclient-discover.bin");
    /// ISC dhclient 4.4.3-P1 REQUEST (SELECTING).
    pub(crate) static DHCLIENT_REQUEST: &[u8] =
        include_bytes!("../../tests/fixtures/dhcp/dhclient-request.bin");
    /// ISC dhclient 4.4.3-P1 RELEASE (`dhclient -r`).
    pub(crate) static DHCLIENT_RELEASE: &[u8] =
        include_bytes!("../../tests/fixtures/dhcp/dhclient-release.bin");
    /// dhcpcd 9.4.1 DISCOVER (DUID client-id, `-h dhcpcdhost`).
    pub(crate) static DHCPCD_DISCOVER: &[u8] =
        include_bytes!("../../tests/fixtures/dhcp/dhcpcd-discover.bin");
    /// dhcpcd 9.4.1 REQUEST (SELECTING).
    pub(crate) static DHCPCD_REQUEST: &[u8] = include_bytes!("../../tests/fixtures/dhcp/dhcpcd-request.bin");
    /// dhcpcd 9.4.1 RELEASE (`dhcpcd -k`).
    pub(crate) static DHCPCD_RELEASE: &[u8] = include_bytes!("../../tests/fixtures/dhcp/dhcpcd-release.bin");
    /// dhcpcd 9.4.1 INFORM (`dhcpcd -s 10.250.0.77/16`).
    pub(crate) static DHCPCD_INFORM: &[u8] = include_bytes!("../../tests/fixtures/dhcp/dhcpcd-inform.bin");

    fn parse(b: &[u8]) -> Result<DhcpRepr> {
        DhcpRepr::parse(&DhcpPacket::new_checked(b)?)
    }

    const MAC_C1: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xc1]);

    #[test]
    fn parses_udhcpc_discover() {
        let r = parse(UDHCPC_DISCOVER).unwrap();
        assert_eq!(r.op, DhcpOpCode::Request);
        assert_eq!(r.message_type, DhcpMessageType::Discover);
        assert_eq!(r.chaddr, MAC_C1);
        assert_eq!(r.max_message_size, Some(576));
        assert_eq!(r.parameters.as_deref(), Some(&[1, 3, 6, 12, 15, 28, 42][..]));
        assert_eq!(r.hostname.as_deref(), Some(&b"bbhost"[..]));
        assert_eq!(r.vendor_class.as_deref(), Some(&b"udhcp 1.35.0"[..]));
        assert_eq!(r.client_id.as_deref(), Some(&[1, 2, 0, 0, 0, 0, 0xc1][..]));
        assert!(!r.broadcast_flag());
    }

    #[test]
    fn parses_requests_of_each_client() {
        for b in [UDHCPC_REQUEST, DHCLIENT_REQUEST, DHCPCD_REQUEST] {
            let r = parse(b).unwrap();
            assert_eq!(r.message_type, DhcpMessageType::Request);
            assert_eq!(r.requested_ip, Some(Ipv4Address::new(10, 250, 0, 50)));
            assert_eq!(r.server_id, Some(Ipv4Address::new(10, 250, 0, 1)));
            assert_eq!(r.ciaddr, Ipv4Address::UNSPECIFIED);
        }
        let d = parse(DHCLIENT_DISCOVER).unwrap();
        assert_eq!(d.client_id, None, "dhclient keys on chaddr");
        assert_eq!(d.hostname.as_deref(), Some(&b"iscclient"[..]));
        assert!(d.requested(121) || d.requested(26));
    }

    #[test]
    fn parses_dhcpcd_duid_client_id_and_release_and_inform() {
        let r = parse(DHCPCD_DISCOVER).unwrap();
        let id = r.client_id.clone().unwrap();
        assert_eq!(id.len(), 19, "RFC 4361 client id: type 255, IAID, DUID-LLT");
        assert_eq!(id[0], 255);
        assert_eq!(r.max_message_size, Some(1472));
        assert!(r.requested(121));
        let rel = parse(DHCPCD_RELEASE).unwrap();
        assert_eq!(rel.message_type, DhcpMessageType::Release);
        assert_eq!(rel.ciaddr, Ipv4Address::new(10, 250, 0, 50));
        let rel = parse(DHCLIENT_RELEASE).unwrap();
        assert_eq!(rel.message_type, DhcpMessageType::Release);
        let inf = parse(DHCPCD_INFORM).unwrap();
        assert_eq!(inf.message_type, DhcpMessageType::Inform);
        assert_eq!(inf.ciaddr, Ipv4Address::new(10, 250, 0, 77));
    }

    #[test]
    fn refuses_malformed() {
        let mut b = UDHCPC_DISCOVER.to_vec();
        b[236] ^= 1; // magic cookie
        assert_eq!(parse(&b), Err(Error));
        let mut b = UDHCPC_DISCOVER.to_vec();
        b[2] = 16; // hlen
        assert_eq!(parse(&b), Err(Error));
        assert_eq!(parse(&UDHCPC_DISCOVER[..239]), Err(Error));
        // Option overload (52) is refused.
        let mut b = UDHCPC_DISCOVER[..HEADER_LEN].to_vec();
        b.extend_from_slice(&[53, 1, 1, 52, 1, 3, 255]);
        assert_eq!(parse(&b), Err(Error));
        // Requested address of the wrong length.
        let mut b = UDHCPC_DISCOVER[..HEADER_LEN].to_vec();
        b.extend_from_slice(&[53, 1, 1, 50, 3, 10, 0, 0, 255]);
        assert_eq!(parse(&b), Err(Error));
        // No message type: BOOTP, not served.
        let mut b = UDHCPC_DISCOVER[..HEADER_LEN].to_vec();
        b.extend_from_slice(&[255]);
        assert_eq!(parse(&b), Err(Error));
    }

    #[test]
    fn fqdn_first_label_in_both_encodings() {
        let q = Fqdn {
            flags: fqdn_flags::E,
            rcode1: 0,
            rcode2: 0,
            name: Vec::from_slice(b"\x04host\x03lan\x00").unwrap(),
        };
        assert_eq!(q.first_label(), Some(&b"host"[..]));
        let q = Fqdn { flags: 0, rcode1: 0, rcode2: 0, name: Vec::from_slice(b"Host.lan").unwrap() };
        assert_eq!(q.first_label(), Some(&b"Host"[..]));
        let q =
            Fqdn { flags: fqdn_flags::E, rcode1: 0, rcode2: 0, name: Vec::from_slice(b"\x09ab").unwrap() };
        assert_eq!(q.first_label(), None);
    }

    #[test]
    fn captured_messages_round_trip_through_emit() {
        for b in [UDHCPC_DISCOVER, DHCLIENT_REQUEST, DHCPCD_DISCOVER, DHCPCD_REQUEST, DHCPCD_INFORM] {
            let r = parse(b).unwrap();
            let mut out = [0xa5u8; 600];
            let n = r.buffer_len();
            r.emit(&mut out[..n]).unwrap();
            assert_eq!(parse(&out[..n]).unwrap(), r);
            assert!(out[n..].iter().all(|b| *b == 0xa5), "wrote past buffer_len");
        }
    }

    #[test]
    fn emit_into_short_buffer_is_an_error() {
        let r = parse(DHCPCD_REQUEST).unwrap();
        let mut out = [0u8; 300];
        assert_eq!(r.emit(&mut out[..]), Err(Error));
    }

    fn vec_of<const N: usize>(max: usize) -> impl Strategy<Value = Vec<u8, N>> {
        proptest::collection::vec(any::<u8>(), 0..=max).prop_map(|v| Vec::from_slice(&v).unwrap())
    }

    fn ip() -> impl Strategy<Value = Ipv4Address> {
        any::<[u8; 4]>().prop_map(Ipv4Address::from)
    }

    prop_compose! {
        fn repr()(
            head in (any::<bool>(), 1u8..=8, any::<u32>(), any::<u16>(), any::<u16>(), any::<u8>(),
                     ip(), ip(), ip(), ip(), any::<[u8; 6]>()),
            a in (proptest::option::of(ip()), proptest::option::of(any::<u32>()), proptest::option::of(ip()),
                  proptest::option::of(vec_of::<255>(255)), proptest::option::of(any::<u16>()),
                  proptest::option::of(vec_of::<MAX_CLIENT_ID>(MAX_CLIENT_ID)),
                  proptest::option::of(vec_of::<255>(255)), proptest::option::of(vec_of::<255>(255)),
                  proptest::option::of(vec_of::<255>(255)), proptest::option::of(any::<u8>())),
            f in proptest::option::of((any::<u8>(), any::<u8>(), any::<u8>(), vec_of::<252>(252))),
            b in (proptest::option::of(ip()), proptest::option::of(ip()), proptest::option::of(ip()),
                  proptest::option::of(vec_of::<255>(255)), proptest::option::of(any::<u16>()),
                  proptest::option::of(ip()), proptest::option::of(any::<u32>()),
                  proptest::option::of(any::<u32>()), proptest::option::of(vec_of::<255>(255))),
        ) -> DhcpRepr {
            let op = if head.0 { DhcpOpCode::Reply } else { DhcpOpCode::Request };
            let mut r = DhcpRepr::new(op, DhcpMessageType::from(head.1), head.2, EthernetAddress(head.10));
            (r.secs, r.flags, r.hops, r.ciaddr, r.yiaddr, r.siaddr, r.giaddr) =
                (head.3, head.4, head.5, head.6, head.7, head.8, head.9);
            (r.requested_ip, r.lease_time, r.server_id, r.parameters, r.max_message_size, r.client_id,
             r.hostname, r.vendor_class, r.relay_agent_info, r.auto_configure) = a;
            r.fqdn = f.map(|(flags, rcode1, rcode2, name)| Fqdn { flags, rcode1, rcode2, name });
            (r.subnet_mask, r.router, r.dns_server, r.domain_name, r.interface_mtu, r.broadcast_addr,
             r.renewal_time, r.rebinding_time, r.classless_routes) = b;
            r
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x0d1c), ..ProptestConfig::default() })]
        #[test]
        fn repr_round_trips(r in repr()) {
            let n = r.buffer_len();
            let mut out = [0xa5u8; 4096];
            r.emit(&mut out[..n]).unwrap();
            prop_assert_eq!(parse(&out[..n]).unwrap(), r);
        }
    }
}
