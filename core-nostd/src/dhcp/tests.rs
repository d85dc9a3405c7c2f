//! Server tests: DhcpServer driven through a Cx with a test Outbox; replies parsed back with smoltcp.

use super::*;
use crate::config::{AddrRange, NamespaceParams};
use crate::queue::Outbox;
use crate::rand::Rng;
use crate::stats::Stats;
use smoltcp::wire::{ArpPacket, EthernetFrame, EthernetProtocol, Ipv4Cidr, Ipv4Packet, UdpPacket};
use std::vec::Vec as StdVec;

// Real client messages, captured by ci/fixtures/capture-dhcp.sh (tcpdump in a netns, each client
// against a throwaway dnsmasq 2.90; MAC 02:00:00:00:00:c1).
/// busybox udhcpc 1.35.0 DISCOVER / REQUEST (SELECTING).
static UDHCPC_DISCOVER: &[u8] = include_bytes!("../../tests/fixtures/dhcp/udhcpc-discover.bin");
static UDHCPC_REQUEST: &[u8] = include_bytes!("../../tests/fixtures/dhcp/udhcpc-request.bin");
/// ISC dhclient 4.4.3-P1 DISCOVER / REQUEST / RELEASE.
static DHCLIENT_DISCOVER: &[u8] = include_bytes!("../../tests/fixtures/dhcp/dhclient-discover.bin");
static DHCLIENT_REQUEST: &[u8] = include_bytes!("../../tests/fixtures/dhcp/dhclient-request.bin");
static DHCLIENT_RELEASE: &[u8] = include_bytes!("../../tests/fixtures/dhcp/dhclient-release.bin");
/// dhcpcd 9.4.1 DISCOVER / REQUEST / RELEASE / INFORM (DUID client id, FQDN-capable).
static DHCPCD_DISCOVER: &[u8] = include_bytes!("../../tests/fixtures/dhcp/dhcpcd-discover.bin");
static DHCPCD_REQUEST: &[u8] = include_bytes!("../../tests/fixtures/dhcp/dhcpcd-request.bin");
static DHCPCD_RELEASE: &[u8] = include_bytes!("../../tests/fixtures/dhcp/dhcpcd-release.bin");
static DHCPCD_INFORM: &[u8] = include_bytes!("../../tests/fixtures/dhcp/dhcpcd-inform.bin");

const C1: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xc1]);

fn ip(a: u8, b: u8) -> Ipv4Address {
    Ipv4Address::new(10, 250, a, b)
}

fn site_with(egress: bool, pool: Option<AddrRange>) -> Site {
    let mut p =
        NamespaceParams::new([9; 16], "demo", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16)).unwrap();
    p.egress = egress;
    if let Some(r) = pool {
        p.pool = r;
    }
    Site::new(p).unwrap()
}

fn parse(b: &[u8]) -> DhcpRepr {
    DhcpRepr::parse(&DhcpPacket::new_checked(b).unwrap()).unwrap()
}

fn bytes(r: &DhcpRepr) -> StdVec<u8> {
    let mut v = vec![0xa5u8; r.buffer_len()];
    r.emit(&mut v).unwrap();
    v
}

/// A fixture with some fields changed (the shape of the real client is kept).
fn edit(fixture: &[u8], f: impl FnOnce(&mut DhcpRepr)) -> StdVec<u8> {
    let mut r = parse(fixture);
    f(&mut r);
    bytes(&r)
}

fn with_mac(fixture: &[u8], mac: EthernetAddress) -> StdVec<u8> {
    edit(fixture, |r| {
        r.chaddr = mac;
        if let Some(id) = &mut r.client_id {
            let n = id.len();
            id[n - 1] ^= mac.0[5] ^ 0xc1;
            id[n - 2] ^= mac.0[4];
        }
    })
}

// DHCP fingerprints of clients that cannot run here, built from their published option lists (the
// Fingerbank / PRADS / Satori signatures for option 55, and captures published with them):
/// Windows 10: 61 = type 1 + MAC, 12, 60 "MSFT 5.0", 55 = 1,3,6,15,31,33,43,44,46,47,119,121,249,252;
/// broadcast flag set (Windows since Vista asks for broadcast replies).
fn windows10(mac: EthernetAddress) -> StdVec<u8> {
    let mut r = DhcpRepr::new(DhcpOpCode::Request, DhcpMessageType::Discover, 0x1d3e_9a01, mac);
    r.flags = FLAG_BROADCAST;
    r.client_id = Vec::from_slice(&[&[1u8][..], mac.as_bytes()].concat()).ok();
    r.hostname = Vec::from_slice(b"DESKTOP-7Q2LKD1").ok();
    r.vendor_class = Vec::from_slice(b"MSFT 5.0").ok();
    r.parameters = Vec::from_slice(&[1, 3, 6, 15, 31, 33, 43, 44, 46, 47, 119, 121, 249, 252]).ok();
    bytes(&r)
}
/// macOS: 55 = 1,121,3,6,15,119,252,95,44,46; 57 = 1500; 61 = type 1 + MAC; 51 = 90 days; 12.
fn macos(mac: EthernetAddress) -> StdVec<u8> {
    let mut r = DhcpRepr::new(DhcpOpCode::Request, DhcpMessageType::Discover, 0x5ac0_0001, mac);
    r.parameters = Vec::from_slice(&[1, 121, 3, 6, 15, 119, 252, 95, 44, 46]).ok();
    r.max_message_size = Some(1500);
    r.client_id = Vec::from_slice(&[&[1u8][..], mac.as_bytes()].concat()).ok();
    r.lease_time = Some(7_776_000);
    r.hostname = Vec::from_slice(b"Annes-MacBook-Air").ok();
    bytes(&r)
}
/// Android 8: 61 = type 1 + MAC, 57 = 1500, 60 "android-dhcp-8.0.0", 55 = 1,3,6,15,26,28,51,58,59,43.
fn android(mac: EthernetAddress) -> StdVec<u8> {
    let mut r = DhcpRepr::new(DhcpOpCode::Request, DhcpMessageType::Discover, 0xa0d0_0008, mac);
    r.client_id = Vec::from_slice(&[&[1u8][..], mac.as_bytes()].concat()).ok();
    r.max_message_size = Some(1500);
    r.vendor_class = Vec::from_slice(b"android-dhcp-8.0.0").ok();
    r.hostname = Vec::from_slice(b"android-5d3f9a1c").ok();
    r.parameters = Vec::from_slice(&[1, 3, 6, 15, 26, 28, 51, 58, 59, 43]).ok();
    bytes(&r)
}

/// The REQUEST (SELECTING) a client sends for an OFFER, in the shape of its DISCOVER.
fn selecting(discover: &[u8], offered: Ipv4Address) -> StdVec<u8> {
    edit(discover, |r| {
        r.message_type = DhcpMessageType::Request;
        r.requested_ip = Some(offered);
        r.server_id = Some(ip(0, 1));
    })
}

#[derive(Debug)]
struct Out {
    eth_dst: EthernetAddress,
    ip_dst: Ipv4Address,
    udp_dst: u16,
    len: usize,
    repr: DhcpRepr,
    held: bool,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Frame {
    Arp { eth_dst: EthernetAddress, repr: ArpRepr },
    Dhcp(Out),
}

struct H<const N: usize> {
    srv: std::boxed::Box<DhcpServer<N>>,
    site: Site,
    pool: LocalPool,
    rng: Rng,
    stats: Stats,
    out: Outbox<16, 64>,
    now: Instant,
}

fn lan_meta(mac: EthernetAddress) -> UdpMeta {
    UdpMeta {
        src_mac: mac,
        dst_mac: EthernetAddress::BROADCAST,
        src_ip: Ipv4Address::UNSPECIFIED,
        dst_ip: Ipv4Address::BROADCAST,
        src_port: 68,
        dst_port: 67,
    }
}

impl<const N: usize> H<N> {
    fn new(site: Site) -> Self {
        Self {
            srv: std::boxed::Box::new(DhcpServer::new()),
            pool: LocalPool::new(&site),
            site,
            rng: Rng::new(7),
            stats: Stats::default(),
            out: Outbox::default(),
            now: Instant::from_secs(1000),
        }
    }
    fn rx_meta(&mut self, meta: UdpMeta, payload: &[u8]) -> StdVec<Frame> {
        let mut cx = Cx { now: self.now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        self.srv.handle(&mut cx, &self.site, &mut self.pool, &meta, payload);
        self.frames()
    }
    fn rx(&mut self, payload: &[u8]) -> StdVec<Frame> {
        let mac = parse(payload).chaddr;
        self.rx_meta(lan_meta(mac), payload)
    }
    fn tick(&mut self, d: Duration) -> StdVec<Frame> {
        self.now += d;
        let mut cx = Cx { now: self.now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        self.srv.handle_timeout(&mut cx, &self.site, &mut self.pool);
        self.frames()
    }
    fn seen(&mut self, ip: Ipv4Address, mac: EthernetAddress) -> StdVec<Frame> {
        let mut cx = Cx { now: self.now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
        self.srv.on_address_seen(&mut cx, &self.site, &mut self.pool, ip, mac);
        self.frames()
    }
    fn frames(&mut self) -> StdVec<Frame> {
        let mut v = StdVec::new();
        while !self.out.is_empty() {
            let mut buf = [0u8; FRAME_CAP];
            let Some((crate::queue::Transmit::Lan(n), held)) =
                self.out.pop_ignoring_holds(&mut self.stats, &mut buf)
            else {
                panic!("not a LAN frame")
            };
            v.push(decode(&buf[..n], held));
        }
        v
    }
    fn events(&mut self) -> StdVec<Event> {
        core::iter::from_fn(|| self.out.events.pop_front()).collect()
    }
    /// DISCOVER -> (ARP check) -> OFFER -> REQUEST -> ACK; returns the ACK.
    fn dora(&mut self, discover: &[u8]) -> Out {
        let relayed = !parse(discover).giaddr.is_unspecified();
        let mut f = self.rx(discover);
        if !relayed {
            assert!(matches!(f.as_slice(), [Frame::Arp { .. }]), "{f:?}");
            f = self.tick(CHECK_WAIT);
        }
        let offer = one_dhcp(f);
        assert_eq!(offer.repr.message_type, DhcpMessageType::Offer);
        let ack = one_dhcp(self.rx(&selecting(discover, offer.repr.yiaddr)));
        assert_eq!(ack.repr.message_type, DhcpMessageType::Ack);
        assert_eq!(ack.repr.yiaddr, offer.repr.yiaddr);
        ack
    }
}

fn decode(frame: &[u8], held: bool) -> Frame {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    if eth.ethertype() == EthernetProtocol::Arp {
        let repr = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        return Frame::Arp { eth_dst: eth.dst_addr(), repr };
    }
    let ipp = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ipp.verify_checksum());
    let udp = UdpPacket::new_checked(ipp.payload()).unwrap();
    assert!(udp.verify_checksum(&ipp.src_addr().into(), &ipp.dst_addr().into()));
    assert_eq!((ipp.src_addr(), udp.src_port()), (Ipv4Address::new(10, 250, 0, 1), 67));
    let payload = udp.payload();
    let pkt = DhcpPacket::new_checked(payload).unwrap();
    // The reply must also be what a client-side parser (smoltcp's own) accepts.
    let client_view = smoltcp::wire::DhcpRepr::parse(&pkt).unwrap();
    let repr = DhcpRepr::parse(&pkt).unwrap();
    assert_eq!(client_view.your_ip, repr.yiaddr);
    Frame::Dhcp(Out {
        eth_dst: eth.dst_addr(),
        ip_dst: ipp.dst_addr(),
        udp_dst: udp.dst_port(),
        len: payload.len(),
        repr,
        held,
    })
}

fn one_dhcp(f: StdVec<Frame>) -> Out {
    let mut f = f;
    assert_eq!(f.len(), 1, "{f:?}");
    match f.pop() {
        Some(Frame::Dhcp(o)) => o,
        other => panic!("expected one DHCP reply, got {other:?}"),
    }
}

fn default_h() -> H<64> {
    H::new(site_with(false, None))
}

fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 1, n])
}

#[test]
fn full_handshake_for_every_client_fixture() {
    let clients: [(&str, StdVec<u8>); 6] = [
        ("udhcpc", UDHCPC_DISCOVER.to_vec()),
        ("dhclient", with_mac(DHCLIENT_DISCOVER, mac(2))),
        ("dhcpcd", with_mac(DHCPCD_DISCOVER, mac(3))),
        ("windows10", windows10(mac(4))),
        ("macos", macos(mac(5))),
        ("android", android(mac(6))),
    ];
    let mut h = default_h();
    let mut seen = StdVec::new();
    for (name, d) in &clients {
        let req = parse(d);
        let ack = h.dora(d);
        let r = &ack.repr;
        assert!(ack.held, "{name}: a new binding's ACK waits for persistence");
        assert!(h.site.params.pool.contains(r.yiaddr), "{name}");
        assert!(!seen.contains(&r.yiaddr), "{name}: address handed out twice");
        seen.push(r.yiaddr);
        assert_eq!(r.server_id, Some(ip(0, 1)), "{name}: 54 = .1");
        assert_eq!(r.subnet_mask, Some(Ipv4Address::new(255, 255, 0, 0)));
        assert_eq!(r.dns_server, Some(ip(0, 1)), "{name}: 6 = .1");
        assert_eq!(r.domain_name.as_deref(), Some(&b"demo.home.arpa"[..]));
        assert_eq!(r.interface_mtu, Some(1380));
        assert_eq!(r.broadcast_addr, Some(ip(255, 255)));
        assert_eq!(r.lease_time, Some(3600));
        assert_eq!((r.renewal_time, r.rebinding_time), (Some(1800), Some(3150)));
        assert_eq!(r.client_id, req.client_id, "{name}: option 61 echoed as received (RFC 6842)");
        assert_eq!(r.router, None, "{name}: no egress, no default route");
        assert_eq!(r.xid, req.xid);
        let ev = h.events();
        assert!(ev.contains(&Event::BindingsChanged), "{name}: {ev:?}");
        if req.broadcast_flag() {
            assert_eq!((ack.eth_dst, ack.ip_dst), (EthernetAddress::BROADCAST, Ipv4Address::BROADCAST));
        } else {
            assert_eq!((ack.eth_dst, ack.ip_dst, ack.udp_dst), (req.chaddr, r.yiaddr, 68), "{name}: unicast");
        }
    }
    assert_eq!(h.srv.bindings(h.now).count(), 6);
}

#[test]
fn offer_waits_for_the_arp_check_from_the_router() {
    let mut h = default_h();
    let f = h.rx(UDHCPC_DISCOVER);
    let [Frame::Arp { eth_dst, repr }] = f.as_slice() else { panic!("{f:?}") };
    let ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr,
        source_protocol_addr,
        target_protocol_addr,
        ..
    } = *repr
    else {
        panic!()
    };
    assert_eq!(operation, ArpOperation::Request);
    assert_eq!(*eth_dst, EthernetAddress::BROADCAST);
    assert_eq!(
        (source_hardware_addr, source_protocol_addr),
        (h.site.router_mac, ip(0, 1)),
        "not probe format"
    );
    assert_eq!(h.srv.poll_at(), Some(h.now + CHECK_WAIT));
    assert!(h.tick(Duration::from_millis(100)).is_empty(), "no OFFER before the wait is over");
    let offer = one_dhcp(h.tick(Duration::from_millis(400)));
    assert_eq!(offer.repr.yiaddr, target_protocol_addr);
}

#[test]
fn address_in_use_is_skipped_and_reported() {
    let mut h = default_h();
    let f = h.rx(UDHCPC_DISCOVER);
    let [Frame::Arp { repr: ArpRepr::EthernetIpv4 { target_protocol_addr: first, .. }, .. }] = f.as_slice()
    else {
        panic!()
    };
    let first = *first;
    // The client itself answering is no conflict.
    assert!(h.seen(first, C1).is_empty());
    let f = h.seen(first, mac(99));
    assert!(h.events().contains(&Event::AddressInUse { ip: first, mac: mac(99) }));
    let [Frame::Arp { repr: ArpRepr::EthernetIpv4 { target_protocol_addr: second, .. }, .. }] = f.as_slice()
    else {
        panic!("{f:?}")
    };
    assert_ne!(*second, first);
    let offer = one_dhcp(h.tick(CHECK_WAIT));
    assert_eq!(offer.repr.yiaddr, *second);
    // The address in use stays out of the pool for others too.
    let other = edit(UDHCPC_DISCOVER, |r| {
        r.chaddr = mac(7);
        r.client_id = None;
        r.requested_ip = Some(first);
    });
    let f = h.rx(&other);
    let [Frame::Arp { repr: ArpRepr::EthernetIpv4 { target_protocol_addr, .. }, .. }] = f.as_slice() else {
        panic!()
    };
    assert_ne!(*target_protocol_addr, first);
}

#[test]
fn requested_address_is_checked_by_unicast_to_the_client() {
    let mut h = default_h();
    let d = edit(UDHCPC_DISCOVER, |r| r.requested_ip = Some(ip(7, 7)));
    let f = h.rx(&d);
    let [Frame::Arp { eth_dst, repr: ArpRepr::EthernetIpv4 { target_protocol_addr, .. } }] = f.as_slice()
    else {
        panic!()
    };
    assert_eq!((*eth_dst, *target_protocol_addr), (C1, ip(7, 7)));
    assert_eq!(one_dhcp(h.tick(CHECK_WAIT)).repr.yiaddr, ip(7, 7));
}

#[test]
fn address_follows_the_hash_of_the_client_key() {
    let mut a = default_h();
    let mut b = default_h();
    b.rng = Rng::new(12345);
    let x = a.dora(DHCPCD_DISCOVER).repr.yiaddr;
    let y = b.dora(DHCPCD_DISCOVER).repr.yiaddr;
    assert_eq!(x, y, "same client, same address at every site");
    let pool = a.site.params.pool;
    let i = key_hash(parse(DHCPCD_DISCOVER).client_id.as_deref().unwrap(), C1) % pool.len();
    assert_eq!(Some(x), pool.nth(i));
    assert_ne!(x, pool.first, "not lowest-first");
}

#[test]
fn retransmission_is_recognised_by_client_key_not_xid() {
    let mut h = default_h();
    let first = one_dhcp({
        h.rx(DHCPCD_DISCOVER);
        h.tick(CHECK_WAIT)
    });
    let again = edit(DHCPCD_DISCOVER, |r| r.xid ^= 0xffff);
    let f = h.rx(&again);
    let offer = one_dhcp(f);
    assert_eq!(offer.repr.yiaddr, first.repr.yiaddr, "same address, no second check");
    assert_eq!(offer.repr.xid, parse(&again).xid);
    assert_eq!(h.srv.len(), 1);
    // A retransmission during the check answers the latest xid.
    let mut h = default_h();
    h.rx(UDHCPC_DISCOVER);
    let again = edit(UDHCPC_DISCOVER, |r| r.xid = 77);
    assert!(h.rx(&again).is_empty());
    assert_eq!(one_dhcp(h.tick(CHECK_WAIT)).repr.xid, 77);
}

#[test]
fn init_reboot_known_unknown_and_foreign() {
    let mut h = default_h();
    let bound = h.dora(UDHCPC_DISCOVER).repr.yiaddr;
    h.events();
    let reboot = |ip: Ipv4Address, m: EthernetAddress| {
        edit(UDHCPC_REQUEST, |r| {
            r.server_id = None;
            r.requested_ip = Some(ip);
            r.chaddr = m;
            if m != C1 {
                r.client_id = None;
            }
        })
    };
    let ack = one_dhcp(h.rx(&reboot(bound, C1)));
    assert_eq!((ack.repr.message_type, ack.repr.yiaddr), (DhcpMessageType::Ack, bound));
    assert!(!ack.held && h.events().is_empty(), "same binding: not held, no event");
    // Unknown address: silence.
    assert!(h.rx(&reboot(ip(9, 9), mac(8))).is_empty());
    // Another client's address: NAK, broadcast.
    let nak = one_dhcp(h.rx(&reboot(bound, mac(8))));
    assert_eq!(nak.repr.message_type, DhcpMessageType::Nak);
    assert_eq!((nak.eth_dst, nak.ip_dst), (EthernetAddress::BROADCAST, Ipv4Address::BROADCAST));
    // A client whose binding is another address: NAK.
    let nak = one_dhcp(h.rx(&reboot(ip(9, 9), C1)));
    assert_eq!(nak.repr.message_type, DhcpMessageType::Nak);
    // Outside the subnet: NAK.
    let nak = one_dhcp(h.rx(&reboot(Ipv4Address::new(192, 168, 1, 5), mac(9))));
    assert_eq!(nak.repr.message_type, DhcpMessageType::Nak);
}

#[test]
fn renewing_and_rebinding_are_told_apart_and_acked_to_ciaddr() {
    let mut h = default_h();
    let bound = h.dora(DHCLIENT_DISCOVER).repr.yiaddr;
    h.events();
    let renew = edit(DHCLIENT_REQUEST, |r| {
        r.server_id = None;
        r.requested_ip = None;
        r.ciaddr = bound;
    });
    let unicast = UdpMeta {
        src_mac: C1,
        dst_mac: h.site.router_mac,
        src_ip: bound,
        dst_ip: ip(0, 1),
        src_port: 68,
        dst_port: 67,
    };
    let bcast = UdpMeta { dst_mac: EthernetAddress::BROADCAST, dst_ip: Ipv4Address::BROADCAST, ..unicast };
    assert_eq!(RequestKind::of(&parse(&renew), &unicast), RequestKind::Renewing(bound));
    assert_eq!(RequestKind::of(&parse(&renew), &bcast), RequestKind::Rebinding(bound));
    assert!(matches!(RequestKind::of(&parse(DHCLIENT_REQUEST), &bcast), RequestKind::Selecting { .. }));
    for meta in [unicast, bcast] {
        h.now += Duration::from_secs(1800);
        let ack = one_dhcp(h.rx_meta(meta, &renew));
        assert_eq!(ack.repr.message_type, DhcpMessageType::Ack);
        assert_eq!((ack.eth_dst, ack.ip_dst, ack.udp_dst), (C1, bound, 68), "unicast to ciaddr");
        assert!(!ack.held, "plain renewal is not held");
        assert!(h.events().is_empty(), "plain renewal queues no event");
        assert_eq!(h.srv.bindings(h.now).next().unwrap().remaining, Duration::from_secs(3600));
    }
    // Renewing an address that is another client's: NAK; unknown: silence.
    let foreign = edit(&renew, |r| r.chaddr = mac(3));
    assert_eq!(one_dhcp(h.rx_meta(unicast, &foreign)).repr.message_type, DhcpMessageType::Nak);
    let unknown = edit(&renew, |r| r.ciaddr = ip(8, 8));
    assert!(h.rx_meta(unicast, &unknown).is_empty());
}

#[test]
fn nak_only_on_positive_knowledge() {
    let mut h = default_h();
    let a = h.dora(UDHCPC_DISCOVER).repr.yiaddr;
    // Another client selecting A (which is bound to C1): NAK.
    let other = edit(&selecting(DHCLIENT_DISCOVER, a), |r| r.chaddr = mac(2));
    assert_eq!(one_dhcp(h.rx(&other)).repr.message_type, DhcpMessageType::Nak);
    // Selecting a free pool address after our offer was forgotten: ACK.
    let free = edit(&selecting(DHCLIENT_DISCOVER, ip(5, 5)), |r| r.chaddr = mac(3));
    assert_eq!(one_dhcp(h.rx(&free)).repr.message_type, DhcpMessageType::Ack);
    // A REQUEST for another server: silence (and a DISCOVER is never NAKed).
    let elsewhere = edit(&selecting(DHCLIENT_DISCOVER, ip(6, 6)), |r| {
        r.chaddr = mac(4);
        r.server_id = Some(Ipv4Address::new(10, 250, 0, 200));
    });
    assert!(h.rx(&elsewhere).is_empty());
    // A service address is never a client's.
    let svc = edit(&selecting(DHCLIENT_DISCOVER, ip(0, 2)), |r| r.chaddr = mac(5));
    assert_eq!(one_dhcp(h.rx(&svc)).repr.message_type, DhcpMessageType::Nak);
}

#[test]
fn selecting_another_server_frees_our_offer() {
    let mut h = default_h();
    h.rx(UDHCPC_DISCOVER);
    h.tick(CHECK_WAIT);
    assert_eq!(h.srv.len(), 1);
    let other = edit(UDHCPC_REQUEST, |r| r.server_id = Some(Ipv4Address::new(192, 168, 1, 1)));
    assert!(h.rx(&other).is_empty());
    assert_eq!(h.srv.len(), 0);
}

#[test]
fn decline_quarantines_the_address() {
    let mut h = default_h();
    let a = h.dora(DHCPCD_DISCOVER).repr.yiaddr;
    h.events();
    let decline = edit(DHCPCD_REQUEST, |r| {
        r.message_type = DhcpMessageType::Decline;
        r.requested_ip = Some(a);
        r.parameters = None;
    });
    assert!(h.rx(&decline).is_empty());
    let ev = h.events();
    assert!(ev.contains(&Event::AddressDeclined { ip: a, mac: C1 }) && ev.contains(&Event::BindingsChanged));
    assert_eq!(h.srv.bindings(h.now).count(), 0);
    // The same client, asking again, gets another address; nobody gets the declined one.
    let b = h.dora(DHCPCD_DISCOVER).repr.yiaddr;
    assert_ne!(a, b);
    let other = edit(UDHCPC_DISCOVER, |r| {
        r.chaddr = mac(2);
        r.client_id = None;
        r.requested_ip = Some(a);
    });
    assert_ne!(h.dora(&other).repr.yiaddr, a);
    // After the quarantine it is free again.
    h.tick(QUARANTINE + TIMER_SLACK);
    let third = edit(UDHCPC_DISCOVER, |r| {
        r.chaddr = mac(3);
        r.client_id = None;
        r.requested_ip = Some(a);
    });
    assert_eq!(h.dora(&third).repr.yiaddr, a);
}

#[test]
fn release_frees_and_is_persisted() {
    let mut h = default_h();
    let a = h.dora(&with_mac(DHCLIENT_DISCOVER, C1)).repr.yiaddr;
    h.events();
    assert_eq!(a, ip(0, 50).max(a)); // any pool address
    let rel = edit(DHCLIENT_RELEASE, |r| r.ciaddr = a);
    assert!(h.rx(&rel).is_empty());
    assert_eq!(h.events(), [Event::LeaseEnded { ip: a, mac: C1 }, Event::BindingsChanged]);
    assert_eq!(h.srv.bindings(h.now).count(), 0);
    assert!(h.srv.is_empty());
    // dhcpcd's RELEASE for an address it does not hold changes nothing.
    assert!(h.rx(DHCPCD_RELEASE).is_empty());
    assert!(h.events().is_empty());
}

#[test]
fn inform_gets_config_without_a_lease() {
    let mut h = H::<8>::new(site_with(true, None));
    let ack = one_dhcp(h.rx(DHCPCD_INFORM));
    let r = &ack.repr;
    assert_eq!(r.message_type, DhcpMessageType::Ack);
    assert_eq!((r.yiaddr, r.lease_time, r.renewal_time), (Ipv4Address::UNSPECIFIED, None, None));
    assert_eq!((ack.ip_dst, ack.udp_dst), (ip(0, 77), 68));
    assert_eq!(r.router, Some(ip(0, 2)));
    assert!(h.srv.is_empty(), "INFORM binds nothing");
}

#[test]
fn exhausted_pool_is_silence_and_one_event() {
    let pool = AddrRange::new(ip(0, 10), ip(0, 11));
    let mut h = H::<8>::new(site_with(false, Some(pool)));
    h.dora(&with_mac(DHCLIENT_DISCOVER, mac(1)));
    h.dora(&with_mac(DHCLIENT_DISCOVER, mac(2)));
    h.events();
    assert!(h.rx(&with_mac(DHCLIENT_DISCOVER, mac(3))).is_empty());
    assert_eq!(h.events(), [Event::PoolExhausted]);
    assert!(h.rx(&with_mac(DHCLIENT_DISCOVER, mac(4))).is_empty());
    assert!(h.events().is_empty(), "once per episode, not per packet");
    // A bound client is still served.
    assert_eq!(
        one_dhcp(h.rx(&with_mac(DHCLIENT_DISCOVER, mac(1)))).repr.message_type,
        DhcpMessageType::Offer
    );
    // A full table is the same: room for 2 entries, a pool of 100.
    let mut h = H::<2>::new(site_with(false, None));
    h.dora(&with_mac(DHCLIENT_DISCOVER, mac(1)));
    h.dora(&with_mac(DHCLIENT_DISCOVER, mac(2)));
    h.events();
    assert!(h.rx(&with_mac(DHCLIENT_DISCOVER, mac(3))).is_empty());
    assert_eq!(h.events(), [Event::PoolExhausted]);
}

#[test]
fn busy_checks_drop_the_discover_and_count() {
    let mut h = default_h();
    for n in 0..MAX_CHECKS as u8 {
        assert_eq!(h.rx(&with_mac(DHCLIENT_DISCOVER, mac(n))).len(), 1);
    }
    assert!(h.rx(&with_mac(DHCLIENT_DISCOVER, mac(50))).is_empty());
    assert_eq!(h.stats.dhcp_checks_full, 1);
    assert!(h.events().is_empty(), "not exhaustion");
}

fn relayed(discover: &[u8], giaddr: Ipv4Address) -> StdVec<u8> {
    edit(discover, |r| {
        r.giaddr = giaddr;
        r.hops = 1;
        r.relay_agent_info = Vec::from_slice(&[1, 4, b'e', b't', b'h', b'0']).ok();
    })
}

#[test]
fn relayed_requests_answer_the_relay() {
    let mut h = default_h();
    let relay_mac = mac(200);
    let d = relayed(UDHCPC_DISCOVER, ip(0, 254));
    let meta = UdpMeta {
        src_mac: relay_mac,
        dst_mac: h.site.router_mac,
        src_ip: ip(0, 254),
        dst_ip: ip(0, 1),
        src_port: 67,
        dst_port: 67,
    };
    let offer = one_dhcp(h.rx_meta(meta, &d));
    assert_eq!(offer.repr.message_type, DhcpMessageType::Offer, "no ARP check for a relayed client");
    assert_eq!((offer.eth_dst, offer.ip_dst, offer.udp_dst), (relay_mac, ip(0, 254), 67));
    assert_eq!(offer.repr.giaddr, ip(0, 254));
    assert_eq!(offer.repr.relay_agent_info, parse(&d).relay_agent_info, "option 82 echoed");
    let ack = one_dhcp(h.rx_meta(meta, &selecting(&d, offer.repr.yiaddr)));
    assert_eq!((ack.repr.message_type, ack.ip_dst, ack.udp_dst), (DhcpMessageType::Ack, ip(0, 254), 67));
    // A NAK through a relay asks it to broadcast.
    let bad = edit(&selecting(&d, ip(0, 2)), |r| r.chaddr = mac(1));
    let nak = one_dhcp(h.rx_meta(meta, &bad));
    assert!(nak.repr.broadcast_flag() && nak.ip_dst == ip(0, 254));
    // A relay outside the VN subnet is not served.
    let outside = relayed(UDHCPC_DISCOVER, Ipv4Address::new(192, 168, 0, 1));
    assert!(h.rx_meta(meta, &outside).is_empty());
}

#[test]
fn egress_policy_decides_routes() {
    // Egress on: 3 = .2, and 121 with 0/0 via .2 when asked for.
    let mut h = H::<8>::new(site_with(true, None));
    let r = h.dora(DHCPCD_DISCOVER).repr;
    assert_eq!(r.router, Some(ip(0, 2)));
    assert_eq!(r.classless_routes.as_deref(), Some(&[0, 10, 250, 0, 2][..]));
    let r = h.dora(&with_mac(UDHCPC_DISCOVER, mac(2))).repr;
    assert_eq!((r.router, r.classless_routes), (Some(ip(0, 2)), None), "121 only when asked");
    // Egress off: neither.
    let mut h = H::<8>::new(site_with(false, None));
    let r = h.dora(DHCPCD_DISCOVER).repr;
    assert_eq!((r.router, r.classless_routes), (None, None));
    // Interface mode never hands out a default route, egress or not.
    let mut iface = site_with(true, None);
    iface.role = crate::config::NodeRole::Interface;
    let mut h = H::<8>::new(iface);
    let r = h.dora(DHCPCD_DISCOVER).repr;
    assert_eq!((r.router, r.classless_routes), (None, None), "interface mode: no option 3, no 0/0 in 121");
}

#[test]
fn reply_fits_option_57_or_576() {
    let mut h = default_h();
    // udhcpc says 576: the whole IP datagram must fit in it.
    let long = edit(UDHCPC_DISCOVER, |r| {
        r.relay_agent_info = None;
        r.fqdn = Some(Fqdn { flags: 0, rcode1: 0, rcode2: 0, name: Vec::from_slice(&[b'a'; 250]).unwrap() });
    });
    h.rx(&long);
    let offer = one_dhcp(h.tick(CHECK_WAIT));
    assert!(offer.len + 28 <= 576, "{}", offer.len);
    assert_eq!(offer.repr.lease_time, Some(3600), "essential options kept");
    // With a larger limit the same reply is not cut.
    let mut h = default_h();
    h.rx(&edit(&long, |r| r.max_message_size = Some(1500)));
    let offer = one_dhcp(h.tick(CHECK_WAIT));
    assert!(offer.repr.fqdn.is_some() && offer.len + 28 > 576, "{} {:?}", offer.len, offer.repr.fqdn);
}

#[test]
fn hostnames_first_wins_and_removed_with_the_lease() {
    let mut h = default_h();
    let a = h.dora(UDHCPC_DISCOVER).repr.yiaddr; // "bbhost"
    assert_eq!(h.srv.lookup("bbhost"), Some(a));
    assert_eq!(h.srv.name_of(a), Some("bbhost"));
    // A second client with the same name (upper case) does not get it.
    let twin = edit(&with_mac(DHCLIENT_DISCOVER, mac(2)), |r| r.hostname = Vec::from_slice(b"BBHost").ok());
    let b = h.dora(&twin).repr.yiaddr;
    assert_eq!(h.srv.lookup("bbhost"), Some(a));
    assert_eq!(h.srv.name_of(b), None);
    // Option 81 wins over 12, first label only, and is answered per RFC 4702.
    let fq = edit(&with_mac(DHCPCD_DISCOVER, mac(3)), |r| {
        r.fqdn = Some(Fqdn {
            flags: fqdn_flags::E,
            rcode1: 0,
            rcode2: 0,
            name: Vec::from_slice(b"\x06Laptop\x03lan\x00").unwrap(),
        });
    });
    let ack = h.dora(&fq);
    let q = ack.repr.fqdn.unwrap();
    assert_eq!(q.flags, fqdn_flags::E | fqdn_flags::S | fqdn_flags::O);
    assert_eq!((q.rcode1, q.rcode2), (255, 255));
    assert_eq!(q.name.as_slice(), b"\x06laptop\x04demo\x04home\x04arpa\x00");
    assert_eq!(h.srv.lookup("laptop"), Some(ack.repr.yiaddr));
    // Invalid labels are not registered.
    let bad = edit(&with_mac(DHCLIENT_DISCOVER, mac(4)), |r| r.hostname = Vec::from_slice(b"-bad_name").ok());
    let c = h.dora(&bad).repr.yiaddr;
    assert_eq!(h.srv.name_of(c), None);
    // Removed when the lease ends (expiry here), and then free for the next client.
    h.events();
    h.tick(h.site.params.lease_time + TIMER_SLACK);
    assert_eq!(h.srv.lookup("bbhost"), None);
    assert!(h.events().contains(&Event::LeaseEnded { ip: a, mac: C1 }));
    let b2 = h.dora(&twin).repr.yiaddr;
    assert_eq!(h.srv.lookup("bbhost"), Some(b2));
}

#[test]
fn hostname_change_is_a_binding_change() {
    let mut h = default_h();
    let a = h.dora(UDHCPC_DISCOVER).repr.yiaddr;
    h.events();
    let renamed = edit(UDHCPC_REQUEST, |r| {
        r.server_id = None;
        r.requested_ip = Some(a);
        r.hostname = Vec::from_slice(b"newname").ok();
    });
    let ack = one_dhcp(h.rx(&renamed));
    assert!(ack.held);
    assert!(h.events().contains(&Event::BindingsChanged));
    assert_eq!((h.srv.lookup("newname"), h.srv.lookup("bbhost")), (Some(a), None));
}

#[test]
fn offers_expire() {
    let mut h = default_h();
    h.rx(UDHCPC_DISCOVER);
    h.tick(CHECK_WAIT);
    assert_eq!(h.srv.len(), 1);
    assert!(h.srv.poll_at().unwrap() <= h.now + OFFER_HOLD + TIMER_SLACK);
    h.tick(OFFER_HOLD + TIMER_SLACK);
    assert_eq!(h.srv.len(), 0);
    assert!(h.events().is_empty(), "an offer ending is no lease ending");
}

#[test]
fn restore_gives_one_full_lease_from_now() {
    let mut h = default_h();
    let a = h.dora(DHCPCD_DISCOVER).repr.yiaddr;
    h.now += Duration::from_secs(3000);
    let saved: StdVec<Binding> = h.srv.bindings(h.now).collect();
    assert_eq!(saved[0].remaining, Duration::from_secs(600));
    assert_eq!(saved[0].hostname.as_str(), "dhcpcdhost");
    let mut r = default_h();
    r.now = Instant::from_secs(5);
    assert!(r.srv.restore(r.now, &r.site, &saved[0]));
    assert!(!r.srv.restore(r.now, &r.site, &saved[0]), "no duplicate");
    let back: StdVec<Binding> = r.srv.bindings(r.now).collect();
    assert_eq!(back[0].remaining, Duration::from_secs(3600));
    assert_eq!((back[0].ip, &back[0].client_id), (a, &saved[0].client_id));
    assert_eq!(r.srv.lookup("dhcpcdhost"), Some(a));
    // The restored client renews as a plain renewal.
    let reboot = edit(DHCPCD_REQUEST, |x| {
        x.server_id = None;
        x.requested_ip = Some(a);
    });
    let ack = one_dhcp(r.rx(&reboot));
    assert_eq!(ack.repr.message_type, DhcpMessageType::Ack);
    assert!(!ack.held && r.events().is_empty());
    // Outside the pool: refused.
    let mut out = saved[0].clone();
    out.ip = ip(0, 2);
    out.mac = mac(9);
    out.client_id.clear();
    assert!(!r.srv.restore(r.now, &r.site, &out));
}

#[test]
fn malformed_and_server_messages_are_dropped_and_counted() {
    let mut h = default_h();
    assert!(h.rx_meta(lan_meta(C1), &UDHCPC_DISCOVER[..100]).is_empty());
    assert_eq!(h.stats.malformed, 1);
    let offer = edit(UDHCPC_DISCOVER, |r| {
        r.op = DhcpOpCode::Reply;
        r.message_type = DhcpMessageType::Offer;
    });
    assert!(h.rx(&offer).is_empty());
    assert_eq!(h.stats.dhcp_ignored, 1);
}

/// The table is indexed: thousands of relayed handshakes (perfdhcp's shape) on a 4096-entry table, then
/// every binding is found again by key, address and name.
#[test]
fn four_thousand_relayed_handshakes() {
    // A 4096-entry server is about a megabyte: built on a thread with room for it (the daemon boxes it).
    std::thread::Builder::new().stack_size(64 << 20).spawn(relayed_flood).unwrap().join().unwrap();
}

fn relayed_flood() {
    let mut h = H::<4096>::new(site_with(false, None));
    let meta = UdpMeta {
        src_mac: mac(200),
        dst_mac: h.site.router_mac,
        src_ip: ip(0, 254),
        dst_ip: ip(0, 1),
        src_port: 67,
        dst_port: 67,
    };
    let start = std::time::Instant::now();
    let mut addrs = std::collections::HashSet::new();
    for n in 0..4096u32 {
        let m = EthernetAddress([2, 1, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
        let d = edit(DHCLIENT_DISCOVER, |r| {
            r.chaddr = m;
            r.giaddr = ip(0, 254);
            r.hostname = None;
        });
        let offer = one_dhcp(h.rx_meta(meta, &d));
        let ack = one_dhcp(h.rx_meta(meta, &selecting(&d, offer.repr.yiaddr)));
        assert_eq!(ack.repr.message_type, DhcpMessageType::Ack);
        assert!(addrs.insert(ack.repr.yiaddr));
        h.events();
    }
    let elapsed = start.elapsed();
    assert_eq!(h.srv.bindings(h.now).count(), 4096);
    // Full table: the next client gets silence.
    let d = edit(DHCLIENT_DISCOVER, |r| {
        r.chaddr = mac(250);
        r.giaddr = ip(0, 254);
    });
    assert!(h.rx_meta(meta, &d).is_empty());
    // Debug build, 8192 messages: generous bound that a linear scan per packet would still blow.
    assert!(elapsed < std::time::Duration::from_secs(20), "{elapsed:?}");
}
