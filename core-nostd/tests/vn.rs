//! An in-process VN: two router nodes (each with a LAN driven by real frames built with smoltcp:
//! DHCP DORA, ARP, ICMP echo) and three storage-only nodes, their overlay datagrams carried by a
//! seeded lossy network with delay. The routers also store, so the DHT has five members (K = 5,
//! W = 3) and losing two storage-only nodes blocks no claim.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr, EthernetFrame,
    EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
};
use vn_core::queue::FRAME_CAP;
use vn_core::rand::Rng;
use vn_core::wire::{dns, emit_arp_frame, parse_udp, UdpFrame};
use vn_core::{
    Duration, EthernetAddress, Event, Instant, Ipv4Address, Ipv4Cidr, NamespaceParams, Node, NodeId,
    OverlayConfig, Site, Transmit,
};

type VnNode = Node<64, 256, 32, 64, 64>;

const TICK: Duration = Duration::from_millis(5);

struct Net {
    nodes: Vec<Box<VnNode>>,
    addrs: Vec<SocketAddr>,
    alive: Vec<bool>,
    now: Instant,
    rng: Rng,
    loss_permille: u32,
    /// (arrival µs, sequence) -> (to, from, bytes)
    wire: BTreeMap<(i64, u64), (usize, SocketAddr, Vec<u8>)>,
    seq: u64,
    /// Frames each node sent to its LAN.
    lan_out: Vec<Vec<Vec<u8>>>,
    /// Events each node reported.
    events: Vec<Vec<Event>>,
    /// Every overlay datagram sent: (from, to, bytes).
    sniffed: Vec<(usize, usize, Vec<u8>)>,
}

/// Node `i`'s Ed25519 secret key (its seed): the nodes sign their DHT records with it.
fn node_key(i: usize) -> [u8; 32] {
    [i as u8 * 0x31 + 7; 32]
}

/// Node `i`'s id: the id of its public key, as every signed record's owner must be.
fn node_id(i: usize) -> NodeId {
    NodeId::from_public_key(ed25519_dalek::SigningKey::from_bytes(&node_key(i)).verifying_key().as_bytes())
}

fn site() -> Site {
    let params =
        NamespaceParams::new([9; 16], "demo", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16)).unwrap();
    Site::new(params).unwrap()
}

fn addr(i: usize) -> SocketAddr {
    format!("192.0.2.{}:4000", i + 1).parse().unwrap()
}

impl Net {
    /// Nodes 0 and 1 are routers with a LAN; 2, 3, 4 are storage-only. All five store.
    fn new(seed: u64, loss_permille: u32) -> Net {
        Net::with_site(seed, loss_permille, site)
    }

    /// [`Net::new`] with every node serving the namespace `site` returns.
    fn with_site(seed: u64, loss_permille: u32, site: fn() -> Site) -> Net {
        Net::build(seed, loss_permille, 5, |i, cfg| VnNode::with_overlay(site(), seed + i as u64, cfg))
    }

    /// [`Net::new`] on a secured overlay: every node has keys and a certificate of the test CA
    /// ([`Pki`]), and talks to the others only through Noise sessions.
    fn secured(seed: u64, loss_permille: u32) -> Net {
        let pki = Pki::new(1);
        Net::build(seed, loss_permille, 5, |i, cfg| pki.node(i, seed, cfg, NODE_ROLES(i)))
    }

    /// `n` nodes at `addr(i)`: node `i` is `make(i, its default overlay config)` (0 and 1 routers, the
    /// rest storage-only, every node storing and bootstrapping from node 2).
    fn build(
        seed: u64,
        loss_permille: u32,
        n: usize,
        mut make: impl FnMut(usize, OverlayConfig) -> VnNode,
    ) -> Net {
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..n {
            let mut bootstrap = heapless::Vec::new();
            if i != 2 {
                bootstrap.push(addr(2)).unwrap();
            }
            let cfg = OverlayConfig {
                id: node_id(i),
                storage: true,
                fresh: true,
                lan: i < 2,
                advertise: Some(addr(i)),
                bootstrap,
                signing_key: Some(node_key(i)),
            };
            nodes.push(Box::new(make(i, cfg)));
            addrs.push(addr(i));
        }
        Net {
            nodes,
            addrs,
            alive: vec![true; n],
            now: Instant::from_secs(1),
            rng: Rng::new(seed),
            loss_permille,
            wire: BTreeMap::new(),
            seq: 0,
            lan_out: vec![Vec::new(); n],
            events: vec![Vec::new(); n],
            sniffed: Vec::new(),
        }
    }

    fn drain(&mut self, i: usize) {
        let mut buf = [0u8; FRAME_CAP];
        self.nodes[i].release_held();
        while let Some(t) = self.nodes[i].poll_transmit(self.now, &mut buf) {
            match t {
                Transmit::Lan(n) => self.lan_out[i].push(buf[..n].to_vec()),
                Transmit::Overlay { to, len } => {
                    let Some(j) = self.addrs.iter().position(|a| *a == to) else { continue };
                    self.sniffed.push((i, j, buf[..len].to_vec()));
                    if self.rng.next_u32() % 1000 < self.loss_permille {
                        continue;
                    }
                    let delay = 10_000 + i64::from(self.rng.next_u32() % 20_000);
                    self.seq += 1;
                    self.wire.insert(
                        (self.now.total_micros() + delay, self.seq),
                        (j, self.addrs[i], buf[..len].to_vec()),
                    );
                }
                _ => {}
            }
        }
        while let Some(ev) = self.nodes[i].poll_event() {
            self.events[i].push(ev);
        }
    }

    fn step(&mut self) {
        self.now += TICK;
        let now_us = self.now.total_micros();
        while let Some((&k, _)) = self.wire.iter().next() {
            if k.0 > now_us {
                break;
            }
            let (to, from, bytes) = self.wire.remove(&k).unwrap();
            if self.alive[to] && self.alive[self.addrs.iter().position(|a| *a == from).unwrap()] {
                self.nodes[to].handle_overlay(self.now, from, &bytes);
                self.drain(to);
            }
        }
        for i in 0..self.nodes.len() {
            if !self.alive[i] {
                continue;
            }
            if self.nodes[i].poll_at().is_some_and(|t| t <= self.now) {
                self.nodes[i].handle_timeout(self.now);
            }
            self.drain(i);
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// Runs until `pred` holds for a frame node `i` sent to its LAN (consumed), or `d` passes.
    fn run_until_lan(
        &mut self,
        i: usize,
        d: Duration,
        mut pred: impl FnMut(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let end = self.now + d;
        loop {
            if let Some(k) = self.lan_out[i].iter().position(|f| pred(f)) {
                return Some(self.lan_out[i].remove(k));
            }
            if self.now >= end {
                return None;
            }
            self.step();
        }
    }

    fn lan(&mut self, i: usize, frame: &[u8]) {
        self.nodes[i].handle_lan(self.now, frame);
        self.drain(i);
    }
}

fn dhcp_frame(
    mac: EthernetAddress,
    kind: DhcpMessageType,
    requested: Option<Ipv4Address>,
    server: Option<Ipv4Address>,
) -> Vec<u8> {
    dhcp_frame_named(mac, kind, requested, server, None)
}

/// A client's DHCP message, with option 12 (hostname) when `hostname` is given.
fn dhcp_frame_named(
    mac: EthernetAddress,
    kind: DhcpMessageType,
    requested: Option<Ipv4Address>,
    server: Option<Ipv4Address>,
    hostname: Option<&str>,
) -> Vec<u8> {
    let opt12 = hostname.map(|h| DhcpOption { kind: 12, data: h.as_bytes() });
    let additional: &[DhcpOption] = match &opt12 {
        Some(o) => std::slice::from_ref(o),
        None => &[],
    };
    let repr = DhcpRepr {
        message_type: kind,
        transaction_id: 0x1234,
        secs: 0,
        client_hardware_address: mac,
        client_ip: Ipv4Address::UNSPECIFIED,
        your_ip: Ipv4Address::UNSPECIFIED,
        server_ip: Ipv4Address::UNSPECIFIED,
        router: None,
        subnet_mask: None,
        relay_agent_ip: Ipv4Address::UNSPECIFIED,
        broadcast: false,
        requested_ip: requested,
        client_identifier: Some(mac),
        server_identifier: server,
        parameter_request_list: Some(&[1, 3, 6, 15, 26]),
        dns_servers: None,
        max_size: None,
        lease_duration: None,
        renew_duration: None,
        rebind_duration: None,
        additional_options: additional,
    };
    let mut buf = [0u8; 600];
    let f = UdpFrame {
        src_mac: mac,
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

/// The DHCP reply in a LAN frame: (yiaddr, type).
fn dhcp_reply(frame: &[u8], mac: EthernetAddress) -> Option<(Ipv4Address, DhcpMessageType)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let (_, dport, payload) = parse_udp(ip.src_addr(), ip.dst_addr(), ip.payload()).ok()?;
    if dport != 68 {
        return None;
    }
    let p = DhcpPacket::new_checked(payload).ok()?;
    let r = DhcpRepr::parse(&p).ok()?;
    (r.client_hardware_address == mac).then_some((r.your_ip, r.message_type))
}

/// DISCOVER, OFFER, REQUEST, ACK at node `i` for `mac`: the bound address.
fn dora(net: &mut Net, i: usize, mac: EthernetAddress) -> Ipv4Address {
    dora_named(net, i, mac, None)
}

/// [`dora`] for a client that sends its hostname (option 12) in DISCOVER and REQUEST.
fn dora_named(net: &mut Net, i: usize, mac: EthernetAddress, hostname: Option<&str>) -> Ipv4Address {
    net.lan(i, &dhcp_frame_named(mac, DhcpMessageType::Discover, None, None, hostname));
    let offer = net
        .run_until_lan(i, Duration::from_secs(3), |f| {
            dhcp_reply(f, mac).is_some_and(|(_, t)| t == DhcpMessageType::Offer)
        })
        .expect("an OFFER");
    let (ip, _) = dhcp_reply(&offer, mac).unwrap();
    let server = net.nodes[i].site().dns_addr;
    net.lan(i, &dhcp_frame_named(mac, DhcpMessageType::Request, Some(ip), Some(server), hostname));
    let ack = net
        .run_until_lan(i, Duration::from_secs(3), |f| dhcp_reply(f, mac).is_some())
        .expect("an answer to the REQUEST");
    assert_eq!(dhcp_reply(&ack, mac), Some((ip, DhcpMessageType::Ack)));
    ip
}

fn arp_request(mac: EthernetAddress, ip: Ipv4Address, target: Ipv4Address) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let mut buf = [0u8; 64];
    let n = emit_arp_frame(&mut buf, mac, EthernetAddress::BROADCAST, &repr).unwrap();
    buf[..n].to_vec()
}

fn arp_reply_for(frame: &[u8], ip: Ipv4Address) -> Option<EthernetAddress> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    match ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()? {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr,
            source_protocol_addr,
            ..
        } if source_protocol_addr == ip => Some(source_hardware_addr),
        _ => None,
    }
}

fn icmp_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Address,
    dst: Ipv4Address,
    request: bool,
    seq_no: u16,
) -> Vec<u8> {
    let data = b"vngate echo test";
    let icmp = if request {
        Icmpv4Repr::EchoRequest { ident: 0x42, seq_no, data }
    } else {
        Icmpv4Repr::EchoReply { ident: 0x42, seq_no, data }
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let caps = ChecksumCapabilities::default();
    let mut buf = vec![0xa5u8; 14 + ip.buffer_len() + icmp.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr { src_addr: src_mac, dst_addr: dst_mac, ethertype: EthernetProtocol::Ipv4 }.emit(&mut eth);
    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut ipp, &caps);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(ipp.payload_mut()), &caps);
    buf
}

/// The echo (request or reply) in a LAN frame, with all checksums verified: (dst mac, src mac, src, dst, seq).
fn echo_of(
    frame: &[u8],
    request: bool,
) -> Option<(EthernetAddress, EthernetAddress, Ipv4Address, Ipv4Address, u16)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Icmp {
        return None;
    }
    assert!(ip.verify_checksum(), "IPv4 checksum");
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    assert!(icmp.verify_checksum(), "ICMP checksum");
    let seq = match Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).ok()? {
        Icmpv4Repr::EchoRequest { seq_no, .. } if request => seq_no,
        Icmpv4Repr::EchoReply { seq_no, .. } if !request => seq_no,
        _ => return None,
    };
    Some((eth.dst_addr(), eth.src_addr(), ip.src_addr(), ip.dst_addr(), seq))
}

const MAC_A: EthernetAddress = EthernetAddress([0x02, 0xaa, 0, 0, 0, 1]);
const MAC_B: EthernetAddress = EthernetAddress([0x02, 0xbb, 0, 0, 0, 1]);

/// Nodes are large (queues of full frames, the DHT's outbox): run on a big stack.
fn big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(64 << 20).spawn(f).unwrap().join().unwrap();
}

#[test]
fn two_sites_form_one_flat_vn() {
    for seed in [0x5eed, 1, 2, 3] {
        big_stack(move || two_sites(seed));
    }
}

fn two_sites(seed: u64) {
    let mut net = Net::new(seed, 20);
    net.run(Duration::from_secs(15));
    for i in 0..5 {
        let o = net.nodes[i].overlay().unwrap();
        assert_eq!(vn_core::dht::Members::len(o.dht().members()), 5, "node {i} knows every storage member");
        assert!(o.dht().node_lease().is_some(), "node {i} holds its node record");
    }
    for i in 0..2 {
        assert!(net.nodes[i].overlay().unwrap().pool().free_held() >= 2, "router {i} pre-claimed addresses");
    }

    // Both sites' hosts get unique leases, held by their own router.
    let ip_a = dora(&mut net, 0, MAC_A);
    let ip_b = dora(&mut net, 1, MAC_B);
    assert_ne!(ip_a, ip_b);
    assert!(net.nodes[0].overlay().unwrap().holds_ip(net.now, ip_a));
    assert!(net.nodes[1].overlay().unwrap().holds_ip(net.now, ip_b));
    assert!(!net.nodes[0].allocator().owns(ip_b) && !net.nodes[1].allocator().owns(ip_a));

    // ARP at site A for B's host: answered with the router MAC once the DHT read returns.
    let router_mac = net.nodes[0].site().router_mac;
    net.lan(0, &arp_request(MAC_A, ip_a, ip_b));
    let reply = net.run_until_lan(0, Duration::from_secs(3), |f| arp_reply_for(f, ip_b).is_some());
    assert_eq!(reply.and_then(|f| arp_reply_for(&f, ip_b)), Some(router_mac));

    // ICMP echo A -> B: B does not know who owns A's address yet; it holds the packet while it reads
    // the owner, so the very first echo arrives (no retry).
    net.lan(0, &icmp_frame(MAC_A, router_mac, ip_a, ip_b, true, 0));
    let delivered = net.run_until_lan(1, Duration::from_secs(2), |f| echo_of(f, true).is_some());
    let (dst_mac, src_mac, src, dst, seq) =
        echo_of(&delivered.expect("the first echo reached B"), true).unwrap();
    assert_eq!(seq, 0);
    assert_eq!((dst_mac, src_mac, src, dst), (MAC_B, router_mac, ip_a, ip_b));
    // B's host answers; the reply comes back to A's host.
    net.lan(1, &icmp_frame(MAC_B, router_mac, ip_b, ip_a, false, seq));
    let back =
        net.run_until_lan(0, Duration::from_secs(1), |f| echo_of(f, false).is_some()).expect("reply at A");
    assert_eq!(echo_of(&back, false).unwrap(), (MAC_A, router_mac, ip_b, ip_a, seq));
    assert!(net.nodes[0].stats().overlay_tx_frames >= 1 && net.nodes[1].stats().overlay_rx_frames >= 1);

    // A spoofed source at A is not tunnelled.
    let spoofed = Ipv4Address::new(10, 250, 77, 77);
    let before = net.nodes[0].stats().overlay_src_not_owned;
    net.lan(0, &icmp_frame(MAC_A, router_mac, spoofed, ip_b, true, 99));
    assert_eq!(net.nodes[0].stats().overlay_src_not_owned, before + 1);
    // A spoofed inner source arriving from A's endpoint is dropped at B.
    let inner = icmp_frame(router_mac, router_mac, spoofed, ip_b, true, 100);
    let mut dgram = [0u8; FRAME_CAP];
    let n = vn_core::encap::encapsulate(&inner, 0, 1_000, &mut dgram).unwrap();
    let before = net.nodes[1].stats().overlay_src_invalid;
    let from = net.addrs[0];
    net.nodes[1].handle_overlay(net.now, from, &dgram[..n]);
    net.drain(1);
    net.run(Duration::from_secs(1));
    net.nodes[1].handle_overlay(net.now, from, &dgram[..n]);
    net.drain(1);
    net.run(Duration::from_secs(1));
    assert_eq!(net.nodes[1].stats().overlay_src_invalid, before + 2, "each dropped once its owner was read");
    assert!(net
        .run_until_lan(1, Duration::from_millis(200), |f| echo_of(f, true).is_some_and(|e| e.4 == 100))
        .is_none());
    // B's own address claimed by A's endpoint: also refused.
    let inner = icmp_frame(router_mac, router_mac, ip_b, ip_b, true, 101);
    let n = vn_core::encap::encapsulate(&inner, 0, 1_001, &mut dgram).unwrap();
    let before = net.nodes[1].stats().overlay_src_invalid;
    net.nodes[1].handle_overlay(net.now, from, &dgram[..n]);
    assert_eq!(net.nodes[1].stats().overlay_src_invalid, before + 1);

    // Two storage nodes die: claims still reach W = 3 of 5, so more hosts get leases and the pool refills.
    net.alive[3] = false;
    net.alive[4] = false;
    let mut leased = vec![ip_a, ip_b];
    for k in 0..6u8 {
        let mac = EthernetAddress([0x02, 0xcc, 0, 0, 0, k]);
        let ip = dora(&mut net, usize::from(k % 2), mac);
        assert!(!leased.contains(&ip), "unique lease {ip}");
        leased.push(ip);
        net.run(Duration::from_secs(2));
    }
    for i in 0..2 {
        assert!(net.nodes[i].overlay().unwrap().pool().free_held() >= 2, "router {i} refilled its pool");
    }
}

#[test]
fn without_preclaimed_addresses_a_discover_starts_a_claim_and_its_retransmission_gets_the_offer() {
    big_stack(|| {
        let mut net = Net::new(11, 0);
        net.nodes[1].set_preclaim(0);
        net.run(Duration::from_secs(15));
        assert!(
            net.nodes[0].overlay().unwrap().pool().free_held() >= 2,
            "the default keeps addresses claimed"
        );
        assert_eq!(net.nodes[1].overlay().unwrap().pool().free_held(), 0, "nothing claimed ahead");

        let mac = EthernetAddress([2, 0, 0, 0xbb, 0, 9]);
        net.lan(1, &dhcp_frame(mac, DhcpMessageType::Discover, None, None));
        let offer = net.run_until_lan(1, Duration::from_secs(2), |f| dhcp_reply(f, mac).is_some());
        assert!(offer.is_none(), "no OFFER before the DHT claim");
        assert!(
            !net.events[1].iter().any(|e| matches!(e, Event::PoolExhausted)),
            "a miss without pre-claimed addresses is not exhaustion"
        );
        assert_eq!(net.nodes[1].overlay().unwrap().pool().free_held(), 1, "the miss claimed one address");
        // The client retransmits: now the OFFER comes, and the lease completes.
        let ip = dora(&mut net, 1, mac);
        assert!(net.nodes[1].overlay().unwrap().holds_ip(net.now, ip));
    });
}

#[test]
fn a_hello_of_another_namespace_is_dropped_and_counted() {
    big_stack(other_namespace);
}

fn other_namespace() {
    let mut net = Net::new(7, 0);
    let mut other = site().params;
    other.id = [8; 16];
    let mut b = heapless::Vec::new();
    b.push(addr(2)).unwrap();
    let cfg = OverlayConfig {
        id: NodeId([0xee; 32]),
        storage: false,
        fresh: false,
        lan: true,
        advertise: Some(addr(5)),
        bootstrap: b,
        signing_key: None,
    };
    let mut stranger = Box::new(VnNode::with_overlay(Site::new(other).unwrap(), 1, cfg));
    stranger.handle_timeout(net.now);
    let mut buf = [0u8; FRAME_CAP];
    let mut sent = 0;
    while let Some(t) = stranger.poll_transmit(net.now, &mut buf) {
        if let Transmit::Overlay { to, len } = t {
            assert_eq!(to, addr(2));
            net.nodes[2].handle_overlay(net.now, addr(5), &buf[..len]);
            sent += 1;
        }
    }
    assert!(sent >= 1);
    assert_eq!(net.nodes[2].stats().overlay_wrong_namespace, sent);
    assert!(net.nodes[2].overlay().unwrap().peers().get(&NodeId([0xee; 32])).is_none());
}

/// A DNS query for `qname` (type A) from host (`mac`, `ip`) to the router's `.1`, id `id`.
fn dns_query(net: &Net, i: usize, mac: EthernetAddress, ip: Ipv4Address, id: u16, qname: &str) -> Vec<u8> {
    let site = net.nodes[i].site();
    let mut r: dns::Repr<'_, 1> =
        dns::Repr::new(id, dns::Flags { recursion_desired: true, ..Default::default() });
    r.question = Some(dns::Question {
        name: dns::Name::from_dotted(qname).unwrap(),
        qtype: dns::Type::A,
        qclass: dns::Class::In,
    });
    let f = UdpFrame {
        src_mac: mac,
        dst_mac: site.router_mac,
        src_ip: ip,
        dst_ip: site.dns_addr,
        src_port: 40_000 + id,
        dst_port: 53,
    };
    let mut buf = [0xa5u8; 600];
    let n = f.emit(&mut buf, 512, |p| r.emit(p).ok()).unwrap();
    buf[..n].to_vec()
}

/// The DNS answer with id `id` in a LAN frame: (rcode, A records).
fn dns_answer(frame: &[u8], id: u16) -> Option<(dns::Rcode, Vec<Ipv4Address>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let (sport, _, payload) = parse_udp(ip.src_addr(), ip.dst_addr(), ip.payload()).ok()?;
    if sport != 53 {
        return None;
    }
    let r: dns::Repr<'_, 4> = dns::Repr::parse(&dns::Packet::new_checked(payload).ok()?).ok()?;
    if r.id != id {
        return None;
    }
    let a = r
        .answers
        .iter()
        .filter_map(|rec| match rec.data {
            dns::RData::A(a) => Some(a),
            _ => None,
        })
        .collect();
    Some((r.rcode(), a))
}

/// Asks node `i`'s DNS from host (`mac`, `ip`) and waits up to 4 s for the answer.
fn resolve(
    net: &mut Net,
    i: usize,
    mac: EthernetAddress,
    ip: Ipv4Address,
    id: u16,
    qname: &str,
) -> (dns::Rcode, Vec<Ipv4Address>) {
    let q = dns_query(net, i, mac, ip, id, qname);
    net.lan(i, &q);
    let f = net
        .run_until_lan(i, Duration::from_secs(4), |f| dns_answer(f, id).is_some())
        .unwrap_or_else(|| panic!("an answer to {qname} at node {i}"));
    dns_answer(&f, id).unwrap()
}

#[test]
fn hostnames_resolve_across_sites() {
    for seed in [0x5eed, 11] {
        big_stack(move || hostnames(seed));
    }
}

fn hostnames(seed: u64) {
    let mut net = Net::new(seed, 20);
    net.run(Duration::from_secs(15));
    let ip_a = dora_named(&mut net, 0, MAC_A, Some("Alpha"));
    let ip_b = dora_named(&mut net, 1, MAC_B, Some("beta"));
    net.run(Duration::from_secs(2));
    assert!(net.nodes[0].overlay().unwrap().holds_name(net.now, "alpha"), "site A registered alpha");
    assert!(net.nodes[1].overlay().unwrap().holds_name(net.now, "beta"), "site B registered beta");

    // Each site answers the other's name from the DHT, and its own from its table.
    assert_eq!(
        resolve(&mut net, 0, MAC_A, ip_a, 1, "beta.demo.home.arpa"),
        (dns::Rcode::NoError, vec![ip_b])
    );
    assert_eq!(
        resolve(&mut net, 1, MAC_B, ip_b, 2, "ALPHA.demo.home.arpa"),
        (dns::Rcode::NoError, vec![ip_a])
    );
    assert_eq!(
        resolve(&mut net, 0, MAC_A, ip_a, 3, "alpha.demo.home.arpa"),
        (dns::Rcode::NoError, vec![ip_a])
    );
    // A name nobody holds: a read quorum says absent.
    assert_eq!(resolve(&mut net, 0, MAC_A, ip_a, 4, "nobody.demo.home.arpa"), (dns::Rcode::NxDomain, vec![]));

    // A second host at B asks for alpha: it gets its lease, not the name; both sites answer A's host.
    let mac_c = EthernetAddress([0x02, 0xbb, 0, 0, 0, 2]);
    let ip_c = dora_named(&mut net, 1, mac_c, Some("alpha"));
    net.run(Duration::from_secs(2));
    assert!(!net.nodes[1].overlay().unwrap().holds_name(net.now, "alpha"));
    assert!(net.nodes[1].stats().overlay_names_lost >= 1);
    assert!(net.nodes[0].overlay().unwrap().holds_name(net.now, "alpha"), "the first registration stays");
    assert_eq!(
        resolve(&mut net, 1, mac_c, ip_c, 5, "alpha.demo.home.arpa"),
        (dns::Rcode::NoError, vec![ip_a])
    );
    assert_eq!(
        resolve(&mut net, 0, MAC_A, ip_a, 6, "alpha.demo.home.arpa"),
        (dns::Rcode::NoError, vec![ip_a])
    );

    // B's host releases its lease: beta is deleted and becomes NXDOMAIN everywhere.
    let server = net.nodes[1].site().dns_addr;
    let mut release = dhcp_frame(MAC_B, DhcpMessageType::Release, None, Some(server));
    set_ciaddr(&mut release, ip_b);
    net.lan(1, &release);
    net.run(Duration::from_secs(2));
    assert!(!net.nodes[1].overlay().unwrap().holds_name(net.now, "beta"));
    assert_eq!(resolve(&mut net, 0, MAC_A, ip_a, 7, "beta.demo.home.arpa"), (dns::Rcode::NxDomain, vec![]));

    // The storage-only nodes cut off: two of five members left, no read quorum: SERVFAIL, not NXDOMAIN.
    for k in 2..5 {
        net.alive[k] = false;
    }
    let before = net.nodes[0].stats().dns_dht_failures;
    assert_eq!(resolve(&mut net, 0, MAC_A, ip_a, 8, "beta.demo.home.arpa"), (dns::Rcode::ServFail, vec![]));
    assert_eq!(net.nodes[0].stats().dns_dht_failures, before + 1);
    // Local names still answer.
    assert_eq!(
        resolve(&mut net, 0, MAC_A, ip_a, 9, "alpha.demo.home.arpa"),
        (dns::Rcode::NoError, vec![ip_a])
    );
}

#[test]
fn a_dead_routers_hostnames_free_up_with_its_node_record() {
    big_stack(|| {
        let mut net = Net::new(0x5eed, 0);
        net.run(Duration::from_secs(15));
        let ip_a = dora_named(&mut net, 0, MAC_A, Some("alpha"));
        let mac_c = EthernetAddress([0x02, 0xbb, 0, 0, 0, 2]);
        let ip_c = dora_named(&mut net, 1, mac_c, Some("alpha"));
        net.run(Duration::from_secs(2));
        assert!(!net.nodes[1].overlay().unwrap().holds_name(net.now, "alpha"), "A registered alpha first");
        assert_eq!(
            resolve(&mut net, 1, mac_c, ip_c, 1, "alpha.demo.home.arpa"),
            (dns::Rcode::NoError, vec![ip_a])
        );
        // Router A dies without notice. Its `host:alpha` has a 120 s TTL, but it counts as live only
        // while A's node record (30 s) does: B's retry (every 30 s) takes the name well before 120 s.
        net.alive[0] = false;
        net.run(Duration::from_secs(75));
        assert!(net.nodes[1].overlay().unwrap().holds_name(net.now, "alpha"), "B took over the name");
        assert_eq!(
            resolve(&mut net, 1, mac_c, ip_c, 2, "alpha.demo.home.arpa"),
            (dns::Rcode::NoError, vec![ip_c])
        );
    });
}

/// Sets ciaddr of a DHCP message inside an Ethernet/IPv4/UDP frame (RELEASE carries the address
/// there); UDP checksum is recomputed.
fn set_ciaddr(frame: &mut [u8], ip: Ipv4Address) {
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
    let (src, dst) = (ipp.src_addr(), ipp.dst_addr());
    let mut udp = smoltcp::wire::UdpPacket::new_unchecked(ipp.payload_mut());
    DhcpPacket::new_unchecked(udp.payload_mut()).set_client_ip(ip);
    udp.fill_checksum(&src.into(), &dst.into());
}

/// A UDP frame from `mac`/`src` to `dst_mac`/`dst`:9999 carrying `payload`.
fn udp_frame(
    mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Address,
    dst: Ipv4Address,
    payload: &[u8],
) -> Vec<u8> {
    let mut buf = [0u8; 600];
    let f = UdpFrame { src_mac: mac, dst_mac, src_ip: src, dst_ip: dst, src_port: 5000, dst_port: 9999 };
    let n = f
        .emit(&mut buf, 500, |p| {
            p[..payload.len()].copy_from_slice(payload);
            Some(payload.len())
        })
        .unwrap();
    buf[..n].to_vec()
}

/// (dst mac, src mac, src ip, dst ip, dst port, payload) of a UDP frame, checksums verified.
type UdpSeen = (EthernetAddress, EthernetAddress, Ipv4Address, Ipv4Address, u16, Vec<u8>);

fn udp_of(frame: &[u8]) -> Option<UdpSeen> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if !ip.verify_checksum() || ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let (_, dport, payload) = parse_udp(ip.src_addr(), ip.dst_addr(), ip.payload()).ok()?;
    Some((eth.dst_addr(), eth.src_addr(), ip.src_addr(), ip.dst_addr(), dport, payload.to_vec()))
}

/// Frames on node `i`'s LAN so far (consumed) whose UDP payload is `payload`.
fn take_udp(net: &mut Net, i: usize, payload: &[u8]) -> Vec<UdpSeen> {
    let (hit, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut net.lan_out[i])
        .into_iter()
        .partition(|f| udp_of(f).is_some_and(|u| u.5 == payload));
    net.lan_out[i] = rest;
    hit.iter().filter_map(|f| udp_of(f)).collect()
}

#[test]
fn broadcasts_cross_sites_once_through_the_allowlist() {
    for seed in [0xbca5, 1] {
        big_stack(move || broadcasts(seed));
    }
}

fn broadcasts(seed: u64) {
    let mut net = Net::new(seed, 0);
    net.run(Duration::from_secs(15));
    let ip_a = dora(&mut net, 0, MAC_A);
    let _ip_b = dora(&mut net, 1, MAC_B);
    // Both routers appended themselves to `bcast` and read each other back.
    for _ in 0..400 {
        if (0..2).all(|i| !net.nodes[i].overlay().unwrap().bcast().members().is_empty()) {
            break;
        }
        net.run(Duration::from_millis(100));
    }
    for i in 0..2 {
        let members = net.nodes[i].overlay().unwrap().bcast().members();
        let other = net.nodes[1 - i].overlay().unwrap().id();
        assert_eq!(members.iter().map(|m| m.0).collect::<Vec<_>>(), vec![other], "router {i}'s members");
    }
    let router_mac = net.nodes[0].site().router_mac;
    let subnet_bcast = Ipv4Address::new(10, 250, 255, 255);

    // The first may be dropped at B while it reads who owns A's address; retry until one passes.
    let mut crossed = false;
    for k in 0..6u8 {
        let payload = [b'w', k];
        net.lan(0, &udp_frame(MAC_A, EthernetAddress::BROADCAST, ip_a, subnet_bcast, &payload));
        net.run(Duration::from_millis(500));
        if !take_udp(&mut net, 1, &payload).is_empty() {
            crossed = true;
            break;
        }
    }
    assert!(crossed, "a broadcast reached B");

    // A broadcast arrives exactly once, as a broadcast with the router MAC as source, even when the
    // network duplicates its data message.
    let (tx, rx, dup) = {
        let s = (net.nodes[0].stats(), net.nodes[1].stats());
        (s.0.bcast_tx_frames, s.1.bcast_rx_frames, s.1.bcast_duplicates)
    };
    net.lan(0, &udp_frame(MAC_A, EthernetAddress::BROADCAST, ip_a, subnet_bcast, b"hello B"));
    assert_eq!(net.nodes[0].stats().bcast_tx_frames, tx + 1, "one copy: B is the only other member");
    let copies: Vec<_> = net
        .wire
        .iter()
        .filter(|(_, (to, _, b))| *to == 1 && b[1] & 0x02 != 0)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(copies.len(), 1);
    let ((at, _), v) = copies[0].clone();
    net.wire.insert((at + 1000, u64::MAX), v);
    net.run(Duration::from_secs(1));
    let seen = take_udp(&mut net, 1, b"hello B");
    assert_eq!(seen.len(), 1, "delivered once: {seen:?}");
    let (dst_mac, src_mac, src, dst, dport, _) = seen[0].clone();
    assert_eq!(
        (dst_mac, src_mac, src, dst, dport),
        (EthernetAddress::BROADCAST, router_mac, ip_a, subnet_bcast, 9999)
    );
    assert_eq!(net.nodes[1].stats().bcast_rx_frames, rx + 1);
    assert_eq!(net.nodes[1].stats().bcast_duplicates, dup + 1);
    assert!(take_udp(&mut net, 0, b"hello B").is_empty(), "not echoed back to A's LAN");
    // The limited broadcast crosses too.
    net.lan(0, &udp_frame(MAC_A, EthernetAddress::BROADCAST, ip_a, Ipv4Address::BROADCAST, b"limited"));
    net.run(Duration::from_secs(1));
    assert_eq!(take_udp(&mut net, 1, b"limited").len(), 1);

    // A DHCP broadcast and an IPv6 multicast stay at A; so does mDNS, which nobody opted in to.
    let tx = net.nodes[0].stats().bcast_tx_frames;
    let v6 = net.nodes[0].stats().ipv6_dropped;
    let mac_c = EthernetAddress([0x02, 0xcc, 0, 0, 0, 9]);
    net.lan(0, &dhcp_frame(mac_c, DhcpMessageType::Discover, None, None));
    let mut ipv6 = vec![0u8; 14 + 48];
    ipv6[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    ipv6[6..12].copy_from_slice(&MAC_A.0);
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    ipv6[14] = 0x60; // version 6; payload length 8, next header UDP, hop limit 1, ff02::1
    ipv6[18..22].copy_from_slice(&[0, 8, 17, 1]);
    ipv6[38..40].copy_from_slice(&[0xff, 0x02]);
    ipv6[53] = 1;
    net.lan(0, &ipv6);
    let mdns_mac = EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 0xfb]);
    net.lan(0, &udp_frame(MAC_A, mdns_mac, ip_a, Ipv4Address::new(224, 0, 0, 251), b"mdns"));
    net.run(Duration::from_secs(1));
    assert_eq!(net.nodes[0].stats().bcast_tx_frames, tx, "nothing fanned out");
    assert_eq!(net.nodes[0].stats().ipv6_dropped, v6 + 1);
    let dhcp_at_b = net.lan_out[1].iter().filter_map(|f| udp_of(f)).filter(|u| u.4 == 67).count();
    assert_eq!(dhcp_at_b, 0, "no DHCP crossed");
    assert!(take_udp(&mut net, 1, b"mdns").is_empty());

    // A flood from one MAC is cut at the burst; the rest is dropped and counted.
    let limited = net.nodes[0].stats().bcast_rate_limited;
    for k in 0..100u8 {
        net.lan(0, &udp_frame(MAC_A, EthernetAddress::BROADCAST, ip_a, subnet_bcast, &[b'f', k]));
    }
    net.run(Duration::from_secs(1));
    let arrived = (0..100u8).map(|k| take_udp(&mut net, 1, &[b'f', k]).len()).sum::<usize>();
    let cut = net.nodes[0].stats().bcast_rate_limited - limited;
    assert!(arrived <= vn_core::bcast::RATE_BURST as usize && arrived >= 10, "{arrived} arrived");
    assert_eq!(arrived as u64 + cut, 100, "every frame either crossed or was counted");
}

/// Runs until node `i` reports command `id`'s result, at most `d`.
fn command_result(
    net: &mut Net,
    i: usize,
    id: vn_core::node::command::CommandId,
    d: Duration,
) -> Option<vn_core::node::command::CommandResult> {
    let end = net.now + d;
    while net.now < end {
        while let Some((got, r)) = net.nodes[i].poll_command() {
            if got == id {
                return Some(r);
            }
        }
        net.step();
    }
    None
}

#[test]
fn a_reserved_address_goes_to_its_mac_only_and_reads_back_from_the_dht() {
    for seed in [0x5eed, 21] {
        big_stack(move || reservations(seed));
    }
}

fn reservations(seed: u64) {
    use vn_core::dht::Kind;
    use vn_core::node::command::{parse_key, Command, CommandError, CommandOutput, Reservation};
    let mut net = Net::new(seed, 20);
    net.run(Duration::from_secs(15));
    let reserved = Ipv4Address::new(10, 250, 1, 5);
    let mac_r = EthernetAddress([0x02, 0xcc, 0, 0, 0, 1]);

    // Site A reserves 10.250.1.5 for mac_r, named "printer".
    let res =
        Reservation { ip: reserved, pin: true, name: Some("printer".try_into().unwrap()), mac: Some(mac_r) };
    let id = net.nodes[0].command(net.now, Command::Reserve(res.clone())).unwrap();
    let r = command_result(&mut net, 0, id, Duration::from_secs(5)).expect("the reservation's result");
    let Ok(CommandOutput::Reserved { ip, gen: Some(gen) }) = r else { panic!("reserved: {r:?}") };
    assert_eq!(ip, reserved);
    assert!(net.nodes[0].overlay().unwrap().holds_ip(net.now, reserved));
    assert_eq!(net.nodes[0].reservations(net.now).collect::<Vec<_>>(), vec![(&res, true)]);

    // Site B cannot take it: the conflict names A.
    let res_b = Reservation { ip: reserved, pin: false, name: None, mac: None };
    let id = net.nodes[1].command(net.now, Command::Reserve(res_b)).unwrap();
    let r = command_result(&mut net, 1, id, Duration::from_secs(10)).expect("B's result");
    match r {
        Err(CommandError::Dht(vn_core::dht::OpError::Conflict(s))) => {
            assert_eq!((s.owner, s.gen), (node_id(0), gen))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(net.nodes[1].reservations(net.now).count(), 0, "a refused reservation is not kept");

    // Other hosts at A never get it; the reserved MAC gets exactly it, even asking for another one.
    let mut others = Vec::new();
    for k in 0..6u8 {
        let ip = dora(&mut net, 0, EthernetAddress([0x02, 0xdd, 0, 0, 0, k]));
        assert_ne!(ip, reserved, "host {k} was given the reserved address");
        others.push(ip);
    }
    net.lan(0, &dhcp_frame(mac_r, DhcpMessageType::Discover, Some(others[0]), None));
    let offer = net
        .run_until_lan(0, Duration::from_secs(3), |f| dhcp_reply(f, mac_r).is_some())
        .expect("an OFFER to the reserved MAC");
    assert_eq!(dhcp_reply(&offer, mac_r), Some((reserved, DhcpMessageType::Offer)));
    assert_eq!(dora(&mut net, 0, mac_r), reserved);
    // A REQUEST by another host for the reserved address is refused.
    let intruder = EthernetAddress([0x02, 0xee, 0, 0, 0, 1]);
    let server = net.nodes[0].site().dns_addr;
    net.lan(0, &dhcp_frame(intruder, DhcpMessageType::Request, Some(reserved), Some(server)));
    let nak = net.run_until_lan(0, Duration::from_secs(1), |f| dhcp_reply(f, intruder).is_some());
    assert_eq!(nak.and_then(|f| dhcp_reply(&f, intruder)).map(|r| r.1), Some(DhcpMessageType::Nak));

    // dht get from site B: ip:10.250.1.5 is A's at the claim's generation, host:printer holds it.
    let (kind, name) = parse_key("ip:10.250.1.5").unwrap();
    assert_eq!(kind, Kind::Ip);
    let id = net.nodes[1].command(net.now, Command::DhtGet { kind, name }).unwrap();
    match command_result(&mut net, 1, id, Duration::from_secs(5)) {
        Some(Ok(CommandOutput::Record(rec))) => {
            assert_eq!((rec.owner, rec.gen, rec.kind), (node_id(0), gen, Kind::Ip));
            assert_eq!(&rec.value[..], &[4, 192, 0, 2, 1, 0x0f, 0xa0], "A's endpoint 192.0.2.1:4000");
        }
        other => panic!("ip record: {other:?}"),
    }
    let (kind, name) = parse_key("host:Printer").unwrap();
    let id = net.nodes[1].command(net.now, Command::DhtGet { kind, name }).unwrap();
    match command_result(&mut net, 1, id, Duration::from_secs(5)) {
        Some(Ok(CommandOutput::Record(rec))) => {
            assert_eq!((rec.owner, rec.kind), (node_id(0), Kind::Host));
            assert_eq!(&rec.value[..4], &reserved.octets());
        }
        other => panic!("host record: {other:?}"),
    }
    let (kind, name) = parse_key("host:nobody").unwrap();
    let id = net.nodes[1].command(net.now, Command::DhtGet { kind, name }).unwrap();
    assert_eq!(command_result(&mut net, 1, id, Duration::from_secs(5)), Some(Ok(CommandOutput::Absent)));
    // Service addresses and addresses outside the subnet are refused at once.
    let bad = |ip| Command::Reserve(Reservation { ip, pin: false, name: None, mac: None });
    assert_eq!(
        net.nodes[0].command(net.now, bad(Ipv4Address::new(10, 250, 0, 2))),
        Err(CommandError::ServiceAddress)
    );
    assert_eq!(
        net.nodes[0].command(net.now, bad(Ipv4Address::new(10, 9, 0, 9))),
        Err(CommandError::NotInSubnet)
    );
}

/// The namespace of [`site`] with a static range (10.250.200.0/24) carved out of the pool's end.
fn static_site() -> Site {
    let mut params =
        NamespaceParams::new([9; 16], "demo", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16)).unwrap();
    params.pool.last = Ipv4Address::new(10, 250, 199, 255);
    params.static_range = Some(vn_core::config::AddrRange::new(
        Ipv4Address::new(10, 250, 200, 0),
        Ipv4Address::new(10, 250, 200, 255),
    ));
    Site::new(params).unwrap()
}

/// The router's check of `ip` in a LAN frame (a non-probe ARP request for `ip`): (frame dst, sender ip).
fn arp_check_for(frame: &[u8], ip: Ipv4Address) -> Option<(EthernetAddress, Ipv4Address)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    match ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()? {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } if target_protocol_addr == ip && !source_protocol_addr.is_unspecified() => {
            Some((eth.dst_addr(), source_protocol_addr))
        }
        _ => None,
    }
}

/// A host's ARP reply to the router's check.
fn arp_answer(
    mac: EthernetAddress,
    ip: Ipv4Address,
    router_mac: EthernetAddress,
    to: Ipv4Address,
) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: router_mac,
        target_protocol_addr: to,
    };
    let mut buf = [0u8; 64];
    let n = emit_arp_frame(&mut buf, mac, router_mac, &repr).unwrap();
    buf[..n].to_vec()
}

/// A statically configured host at site `i` announces `ip` (gratuitous ARP); when `answer`, it
/// answers the router's check. Returns whether a check came, unicast to `mac`.
fn static_host(net: &mut Net, i: usize, mac: EthernetAddress, ip: Ipv4Address, answer: bool) -> bool {
    net.lan(i, &arp_request(mac, ip, ip));
    let Some(check) = net.run_until_lan(i, Duration::from_secs(1), |f| arp_check_for(f, ip).is_some()) else {
        return false;
    };
    let (dst, from) = arp_check_for(&check, ip).unwrap();
    assert_eq!(dst, mac, "the check is unicast to the host");
    if answer {
        let router_mac = net.nodes[i].site().router_mac;
        net.lan(i, &arp_answer(mac, ip, router_mac, from));
    }
    true
}

#[test]
fn static_addresses_are_claimed_after_an_arp_round_trip() {
    for seed in [0x5eed, 7] {
        big_stack(move || statics(seed));
    }
}

fn statics(seed: u64) {
    let mut net = Net::with_site(seed, 20, static_site);
    net.run(Duration::from_secs(15));
    let router_mac = net.nodes[0].site().router_mac;
    let s_ip = Ipv4Address::new(10, 250, 200, 7);

    // A host at A configured with a static address: checked, then claimed once it answered.
    assert!(static_host(&mut net, 0, MAC_A, s_ip, true));
    net.run(Duration::from_secs(2));
    assert!(net.nodes[0].overlay().unwrap().holds_ip(net.now, s_ip), "A claimed the static address");
    assert!(!net.nodes[0].allocator().owns(s_ip), "a static claim is not DHCP's to offer");

    // B's DHCP host finds it: ARP answered with the router MAC, an echo crosses and comes back.
    let ip_b = dora(&mut net, 1, MAC_B);
    net.lan(1, &arp_request(MAC_B, ip_b, s_ip));
    let reply = net.run_until_lan(1, Duration::from_secs(3), |f| arp_reply_for(f, s_ip).is_some());
    assert_eq!(reply.and_then(|f| arp_reply_for(&f, s_ip)), Some(router_mac));
    net.lan(1, &icmp_frame(MAC_B, router_mac, ip_b, s_ip, true, 1));
    let there = net.run_until_lan(0, Duration::from_secs(2), |f| echo_of(f, true).is_some());
    assert_eq!(echo_of(&there.expect("echo at A"), true).unwrap(), (MAC_A, router_mac, ip_b, s_ip, 1));
    net.lan(0, &icmp_frame(MAC_A, router_mac, s_ip, ip_b, false, 1));
    let back = net.run_until_lan(1, Duration::from_secs(2), |f| echo_of(f, false).is_some());
    assert_eq!(echo_of(&back.expect("reply at B"), false).unwrap(), (MAC_B, router_mac, s_ip, ip_b, 1));

    // A host at B configured with the same address: checked, answered, refused by the DHT.
    let mac_c = EthernetAddress([0x02, 0xcc, 0, 0, 0, 7]);
    assert!(static_host(&mut net, 1, mac_c, s_ip, true));
    net.run(Duration::from_secs(2));
    let conflict = net.events[1].iter().find(|e| matches!(e, Event::StaticConflict { .. })).cloned();
    let owner = net.nodes[0].overlay().unwrap().id();
    assert_eq!(conflict, Some(Event::StaticConflict { ip: s_ip, mac: mac_c, owner: Some(owner) }));
    assert!(conflict.unwrap().to_string().starts_with("StaticConflict "));
    assert!(!net.nodes[1].overlay().unwrap().holds_ip(net.now, s_ip));
    assert!(net.nodes[0].overlay().unwrap().holds_ip(net.now, s_ip), "A keeps it");
    let before = net.nodes[1].stats().overlay_src_not_owned;
    net.lan(1, &icmp_frame(mac_c, router_mac, s_ip, ip_b, true, 2));
    assert_eq!(
        net.nodes[1].stats().overlay_src_not_owned,
        before + 1,
        "the conflicting host is not tunnelled"
    );

    // A host at A that never answers the check is never claimed, nor tunnelled.
    let silent = Ipv4Address::new(10, 250, 200, 9);
    let mac_d = EthernetAddress([0x02, 0xdd, 0, 0, 0, 9]);
    assert!(static_host(&mut net, 0, mac_d, silent, false));
    net.run(Duration::from_secs(3));
    assert!(!net.nodes[0].overlay().unwrap().holds_ip(net.now, silent));
    assert!(net.nodes[0].stats().static_unconfirmed >= 1);
    let before = net.nodes[0].stats().overlay_src_not_owned;
    net.lan(0, &icmp_frame(mac_d, router_mac, silent, ip_b, true, 3));
    assert_eq!(net.nodes[0].stats().overlay_src_not_owned, before + 1);
    net.run(Duration::from_secs(3));
    assert!(!net.nodes[0].overlay().unwrap().holds_ip(net.now, silent), "a frame re-checks, never claims");
}

// ---- the secured overlay (P3) --------------------------------------------------------------------------

use vn_core::cert::{self, CertBody, CERT_MAX_LEN};
use vn_core::clock::UnixTime;
use vn_core::secure::SecurityConfig;

/// The test's wall time (2026-09-21): certificates are checked against it.
const WALL: u64 = 1_790_000_000;
const DAY: u64 = 86_400;

/// The roles of node `i` in [`Net::secured`]: routers 0 and 1 also store.
#[allow(non_snake_case)]
fn NODE_ROLES(i: usize) -> u8 {
    if i < 2 {
        cert::roles::ROUTER | cert::roles::DHT
    } else {
        cert::roles::DHT
    }
}

/// A test CA and the keys of the nodes it certifies (all from fixed seeds: tests only).
struct Pki {
    ca: ed25519_dalek::SigningKey,
}

impl Pki {
    fn new(salt: u8) -> Pki {
        Pki { ca: ed25519_dalek::SigningKey::from_bytes(&[0xca ^ salt; 32]) }
    }

    /// Node `i`'s Ed25519 key and X25519 secret.
    fn keys(i: usize) -> (ed25519_dalek::SigningKey, [u8; 32]) {
        (ed25519_dalek::SigningKey::from_bytes(&[i as u8 + 1; 32]), [0x40 + i as u8; 32])
    }

    /// A certificate for node `i` in namespace `ns`.
    fn cert(&self, ns: [u8; 16], i: usize, roles: u8, not_after: u64) -> heapless::Vec<u8, CERT_MAX_LEN> {
        let (ed, noise) = Pki::keys(i);
        let ed_pub = ed.verifying_key().to_bytes();
        let body = CertBody {
            version: 1,
            namespace: ns,
            name: heapless::String::try_from(format!("node{i}").as_str()).unwrap(),
            node_id: NodeId::from_public_key(&ed_pub).0,
            ed25519: ed_pub,
            x25519: vn_core::session::noise::public_key(&noise),
            roles,
            serial: i as u64 + 1,
            not_before: WALL - DAY,
            not_after,
            issuer: cert::ca_id(&self.ca.verifying_key().to_bytes()),
        };
        let mut buf = [0u8; CERT_MAX_LEN];
        let n = cert::sign_cert(&body, &self.ca, &mut buf).unwrap();
        heapless::Vec::from_slice(&buf[..n]).unwrap()
    }

    /// A revocation list of `serials`, version `version`, signed by this CA (exact bytes).
    fn revocation(
        &self,
        version: u64,
        serials: &[u64],
    ) -> heapless::Vec<u8, { cert::REVOCATION_LIST_MAX_LEN }> {
        let list = cert::RevocationList {
            version: 1,
            namespace: site().params.id,
            list_version: version,
            serials: heapless::Vec::from_slice(serials).unwrap(),
            issued: WALL,
        };
        let mut signed = [0u8; cert::REVOCATION_LIST_MAX_LEN];
        let n = cert::sign_revocation_list(&list, &self.ca, &mut signed).unwrap();
        heapless::Vec::from_slice(&signed[..n]).unwrap()
    }

    fn security(&self, i: usize, cert: heapless::Vec<u8, CERT_MAX_LEN>) -> SecurityConfig {
        SecurityConfig {
            noise_secret: Pki::keys(i).1,
            cert,
            ca: self.ca.verifying_key().to_bytes(),
            revoked: None,
            boot: 1,
            entropy: [i as u8 ^ 0x5a; 32],
            wall: UnixTime(WALL),
            synced: true,
        }
    }

    /// Node `i` of [`Net::secured`], certified with `roles`.
    fn node(&self, i: usize, seed: u64, cfg: OverlayConfig, roles: u8) -> VnNode {
        let ns = site().params.id;
        let (ed, _) = Pki::keys(i);
        let cfg = OverlayConfig {
            id: NodeId::from_public_key(&ed.verifying_key().to_bytes()),
            signing_key: Some(ed.to_bytes()),
            ..cfg
        };
        let sec = self.security(i, self.cert(ns, i, roles, WALL + 365 * DAY));
        VnNode::with_security(site(), seed + i as u64, cfg, sec, Instant::from_secs(0)).unwrap()
    }
}

#[test]
fn a_secured_vn_forms_and_nothing_crosses_in_the_clear() {
    big_stack(|| {
        let mut net = Net::secured(0x5eed, 20);
        net.run(Duration::from_secs(20));
        for i in 0..5 {
            let o = net.nodes[i].overlay().unwrap();
            assert_eq!(
                vn_core::dht::Members::len(o.dht().members()),
                5,
                "node {i} knows every storage member"
            );
            assert!(o.dht().node_lease().is_some(), "node {i} holds its node record");
            assert!(net.nodes[i].stats().sessions_established >= 1, "node {i} has sessions");
        }
        let ip_a = dora(&mut net, 0, MAC_A);
        let ip_b = dora(&mut net, 1, MAC_B);
        assert_ne!(ip_a, ip_b);
        let router_mac = net.nodes[0].site().router_mac;
        net.lan(0, &arp_request(MAC_A, ip_a, ip_b));
        let reply = net.run_until_lan(0, Duration::from_secs(3), |f| arp_reply_for(f, ip_b).is_some());
        assert_eq!(reply.and_then(|f| arp_reply_for(&f, ip_b)), Some(router_mac));
        net.lan(0, &icmp_frame(MAC_A, router_mac, ip_a, ip_b, true, 7));
        let delivered = net.run_until_lan(1, Duration::from_secs(2), |f| echo_of(f, true).is_some());
        assert_eq!(echo_of(&delivered.expect("the echo reached B"), true).unwrap().4, 7);

        // Nothing but handshakes, introductions and sealed transport messages was sent, and the
        // echo's payload never appears on the wire.
        assert!(!net.sniffed.is_empty());
        for (_, _, d) in &net.sniffed {
            assert!((0xC0..=0xC6).contains(&d[0]), "type {:#x}", d[0]);
            assert!(!d.windows(16).any(|w| w == b"vngate echo test"), "plaintext on the wire");
        }

        // A sealed data message replayed, and one with a flipped bit, are dropped and counted.
        let (from, to, sealed) = net
            .sniffed
            .iter()
            .rev()
            .find(|(f, t, d)| *f == 0 && *t == 1 && d[0] == 0xC0 && d.len() > 80)
            .cloned()
            .expect("a data message from A to B");
        let replayed = net.nodes[to].stats().transport_replayed;
        net.nodes[to].handle_overlay(net.now, net.addrs[from], &sealed);
        assert_eq!(net.nodes[to].stats().transport_replayed, replayed + 1);
        // A flipped bit in the counter: a fresh counter, so the tag is what fails.
        let mut flipped = sealed.clone();
        flipped[8] ^= 0x01;
        let auth = net.nodes[to].stats().transport_auth_failed;
        net.nodes[to].handle_overlay(net.now, net.addrs[from], &flipped);
        assert_eq!(net.nodes[to].stats().transport_auth_failed, auth + 1);
        assert!(net.run_until_lan(to, Duration::from_millis(300), |f| echo_of(f, true).is_some()).is_none());
        // A plaintext (P2-style) control message is not taken.
        let plain = net.nodes[to].stats().secure_plaintext_dropped;
        net.nodes[to].handle_overlay(net.now, net.addrs[from], &[0x01, 1, 0, 0]);
        assert_eq!(net.nodes[to].stats().secure_plaintext_dropped, plain + 1);
    });
}

/// Builds [`Net::secured`] plus a sixth node at `addr(5)` (a storage node bootstrapping from node 2)
/// whose certificate `make` chooses; runs 20 s.
fn with_outsider(make: impl Fn(&Pki, [u8; 16]) -> (Pki, heapless::Vec<u8, CERT_MAX_LEN>)) -> Net {
    with_outsider_revoking(&[], make)
}

/// [`with_outsider`] where the five members hold a revocation list of `revoked` serials.
fn with_outsider_revoking(
    revoked: &[u64],
    make: impl Fn(&Pki, [u8; 16]) -> (Pki, heapless::Vec<u8, CERT_MAX_LEN>),
) -> Net {
    let pki = Pki::new(1);
    let list = pki.revocation(1, revoked);
    let mut net = Net::build(0x0dd, 0, 6, |i, cfg| {
        if i < 5 {
            let (ed, _) = Pki::keys(i);
            let cfg = OverlayConfig {
                id: NodeId::from_public_key(&ed.verifying_key().to_bytes()),
                signing_key: Some(ed.to_bytes()),
                ..cfg
            };
            let mut sec = pki.security(i, pki.cert(site().params.id, i, NODE_ROLES(i), WALL + 365 * DAY));
            sec.revoked = (!revoked.is_empty()).then(|| list.clone());
            return VnNode::with_security(site(), 0x0dd + i as u64, cfg, sec, Instant::from_secs(0)).unwrap();
        }
        let (own, cert) = make(&pki, site().params.id);
        let (ed, _) = Pki::keys(i);
        let cfg = OverlayConfig {
            id: NodeId::from_public_key(&ed.verifying_key().to_bytes()),
            signing_key: Some(ed.to_bytes()),
            ..cfg
        };
        // The outsider believes its own CA (its certificate verifies for itself).
        let mut sec = own.security(i, cert);
        // Its clock knows only an old build time, so its own certificate looks valid to it.
        sec.synced = false;
        sec.wall = UnixTime(WALL - 3 * DAY);
        VnNode::with_security(site(), 0x0dd + 5, cfg, sec, Instant::from_secs(0))
            .unwrap_or_else(|e| panic!("the outsider starts: {e}"))
    });
    net.run(Duration::from_secs(20));
    net
}

fn assert_kept_out(net: &Net, what: &str) {
    let outsider = net.nodes[5].overlay().unwrap().id();
    for i in 0..5 {
        let o = net.nodes[i].overlay().unwrap();
        assert_eq!(
            vn_core::dht::Members::len(o.dht().members()),
            5,
            "{what}: node {i} has the five members only"
        );
        assert!(o.peers().get(&outsider).is_none(), "{what}: node {i} never took the outsider as a peer");
    }
    // Refused by whoever checked a certificate first: the outsider (ours is not signed by its CA) or
    // node 2 (the outsider's is not signed by ours, or is expired).
    let rejected = net.nodes[2].stats().handshake_rejected + net.nodes[5].stats().handshake_rejected;
    assert!(rejected >= 1, "{what}: the certificate was refused");
    assert_eq!(net.nodes[5].stats().sessions_established, 0, "{what}: no session");
    let alone = vn_core::dht::Members::len(net.nodes[5].overlay().unwrap().dht().members());
    assert_eq!(alone, 1, "{what}: the outsider stores alone, no member of the VN took it in");
    // The VN itself keeps working.
    assert!(net.nodes[0].overlay().unwrap().dht().node_lease().is_some(), "{what}: the VN works");
}

#[test]
fn a_node_of_another_ca_cannot_join() {
    big_stack(|| {
        let net = with_outsider(|_, ns| {
            let other = Pki::new(2);
            let cert = other.cert(ns, 5, cert::roles::DHT, WALL + 365 * DAY);
            (other, cert)
        });
        assert_kept_out(&net, "another CA");
    });
}

#[test]
fn an_expired_certificate_cannot_join() {
    big_stack(|| {
        let net = with_outsider(|pki, ns| {
            // Expired yesterday; the outsider's own clock does not know it (unsynced build time).
            let cert = pki.cert(ns, 5, cert::roles::DHT, WALL - DAY);
            let mut own = Pki::new(1);
            own.ca = pki.ca.clone();
            (own, cert)
        });
        assert_kept_out(&net, "expired");
    });
}

#[test]
fn a_revoked_certificate_cannot_join() {
    big_stack(|| {
        // Node 5's certificate (serial 6) is from the right CA, but the members hold a list revoking it.
        let net = with_outsider_revoking(&[6], |pki, ns| {
            let cert = pki.cert(ns, 5, cert::roles::DHT, WALL + 365 * DAY);
            let mut own = Pki::new(1);
            own.ca = pki.ca.clone();
            (own, cert)
        });
        assert_kept_out(&net, "revoked");
    });
}

#[test]
fn a_certified_member_joins_where_an_outsider_would_not() {
    // The control for the three tests above: the same sixth node with a good certificate joins.
    big_stack(|| {
        let net = with_outsider(|pki, ns| {
            let cert = pki.cert(ns, 5, cert::roles::DHT, WALL + 365 * DAY);
            let mut own = Pki::new(1);
            own.ca = pki.ca.clone();
            (own, cert)
        });
        let member = net.nodes[5].overlay().unwrap().id();
        assert!(net.nodes[2].overlay().unwrap().peers().get(&member).is_some(), "node 2 took it as a peer");
        assert!(net.nodes[5].stats().sessions_established >= 1);
        assert_eq!(vn_core::dht::Members::len(net.nodes[2].overlay().unwrap().dht().members()), 6);
    });
}

#[test]
fn sntp_answers_set_the_wall_clock_and_forgeries_do_not() {
    big_stack(|| {
        use vn_core::wire::ntp;
        let pki = Pki::new(1);
        let mut net = Net::build(3, 0, 1, |i, cfg| pki.node(i, 3, cfg, NODE_ROLES(i)));
        let server: SocketAddr = "192.0.2.123:123".parse().unwrap();
        let t0 = net.now;
        net.nodes[0].set_sntp_servers(t0, &[server]);
        net.nodes[0].handle_timeout(t0);
        let mut buf = [0u8; FRAME_CAP];
        let mut query = None;
        while let Some(t) = net.nodes[0].poll_transmit(t0, &mut buf) {
            if let Transmit::Upstream { to, local_port, len } = t {
                query = Some((to, local_port, buf[..len].to_vec()));
            }
        }
        let (to, port, q) = query.expect("an SNTP query");
        assert_eq!(to, server);
        let req = ntp::Repr::parse_bytes(&q).unwrap();
        assert_eq!(req.mode, ntp::Mode::Client);
        let answer = |origin: ntp::Timestamp, unix: u64| {
            let r = ntp::Repr {
                mode: ntp::Mode::Server,
                stratum: 2,
                origin_ts: origin,
                transmit_ts: ntp::Timestamp::from_unix(UnixTime(unix)),
                ..req
            };
            let mut b = [0u8; ntp::HEADER_LEN];
            r.emit_into(&mut b).unwrap();
            b
        };
        let later = WALL + 30 * DAY;
        // A forged answer (wrong origin) and one from another address are refused.
        net.nodes[0].handle_upstream(t0, server, port, &answer(ntp::Timestamp(7), later));
        let other: SocketAddr = "192.0.2.66:123".parse().unwrap();
        net.nodes[0].handle_upstream(t0, other, port, &answer(req.transmit_ts, later));
        assert_eq!(net.nodes[0].stats().sntp_refused, 2);
        assert!(net_clock(&net).synced(), "the configured time counts as synced (test PKI)");
        // The real answer sets the clock.
        net.nodes[0].handle_upstream(t0, server, port, &answer(req.transmit_ts, later));
        assert_eq!(net.nodes[0].stats().sntp_answers, 1);
        assert!(net_clock(&net).latest(t0).0 >= later, "the clock moved to the server's time");
    });
}

fn net_clock(net: &Net) -> vn_core::clock::WallClock {
    net.nodes[0].secure().unwrap().clock().clone()
}

#[test]
fn a_revocation_list_spreads_from_one_node_and_cuts_the_revoked_member_off() {
    big_stack(|| {
        let pki = Pki::new(1);
        let mut net = Net::build(21, 0, 5, |i, cfg| pki.node(i, 21, cfg, NODE_ROLES(i)));
        net.run(Duration::from_secs(20));
        let n3 = net.addrs[3];
        assert!(net.nodes[0].secure().unwrap().identity_of(net.now, n3).is_some(), "a session with node 3");
        // A list from another CA is refused and changes nothing.
        let forged = Pki::new(9).revocation(5, &[4]);
        assert!(net.nodes[0].set_revocation_list(net.now, &forged).is_err());
        assert_eq!(net.nodes[0].secure().unwrap().revocation_version(), 0);
        // The admin hands node 0 a list revoking node 3 (serial 4); it spreads to the others.
        let now = net.now;
        assert_eq!(net.nodes[0].set_revocation_list(now, &pki.revocation(1, &[4])), Ok(1));
        net.drain(0);
        net.run(Duration::from_secs(5));
        for i in [0, 1, 2, 4] {
            let sec = net.nodes[i].secure().unwrap();
            assert_eq!(sec.revocation_version(), 1, "node {i} holds the new list");
            assert!(sec.identity_of(net.now, n3).is_none(), "node {i} has no session with node 3");
        }
        // Node 3 keeps trying: every handshake it starts is refused, its DHT membership lapses.
        net.run(Duration::from_secs(40));
        let refused: u64 = [0, 1, 2, 4].iter().map(|&i| net.nodes[i].stats().handshake_rejected).sum();
        assert!(refused >= 1, "node 3's new handshakes are refused");
        for i in [0, 1, 2, 4] {
            assert!(net.nodes[i].secure().unwrap().identity_of(net.now, n3).is_none());
        }
        // The rest of the VN still works.
        let ip = dora(&mut net, 0, MAC_A);
        assert!(net.nodes[0].overlay().unwrap().holds_ip(net.now, ip));
    });
}

/// hostctl over the overlay (crate::overlay::admin): a sixth node of the same CA sends an admin request
/// to node 2 through a real Noise session. With the admin role it reaches node 2's runtime, whose answer
/// comes back; with the host role it is refused (the refusal comes back) and counted.
#[test]
fn admin_requests_over_a_secured_overlay_run_only_for_an_admin_certificate() {
    use vn_core::wire::control::AdminStatus;
    big_stack(|| {
        for (roles, admin) in [(cert::roles::ADMIN, true), (cert::roles::HOST, false)] {
            let mut net = with_outsider(|pki, ns| (Pki::new(1), pki.cert(ns, 5, roles, WALL + 365 * DAY)));
            assert!(net.nodes[5].stats().sessions_established >= 1, "roles {roles:#x}: a session");
            let (to, now) = (net.addrs[2], net.now);
            assert!(net.nodes[5].admin_ask(now, to, 77, br#"{"cmd":"status"}"#));
            net.run(Duration::from_secs(1));
            let call = net.nodes[2].poll_admin_call();
            if admin {
                let call = call.expect("the admin's request reached node 2's runtime");
                assert_eq!(call.peer, net.nodes[5].overlay().unwrap().id());
                assert_eq!((call.id, &call.request[..]), (77, &br#"{"cmd":"status"}"#[..]));
                assert!(net.nodes[2].admin_answer(
                    net.now,
                    call.from,
                    77,
                    AdminStatus::Done,
                    b"{\"ok\":1}",
                    0
                ));
                net.run(Duration::from_secs(1));
                let part = net.nodes[5].poll_admin_part().expect("the answer came back");
                assert_eq!((part.id, part.status, part.parts), (77, AdminStatus::Done, 1));
                assert_eq!(&part.body[..], b"{\"ok\":1}");
                assert_eq!(net.nodes[2].stats().admin_refused, 0);
            } else {
                assert!(call.is_none(), "a host certificate's request never reaches the runtime");
                assert_eq!(net.nodes[2].stats().admin_refused, 1);
                let part = net.nodes[5].poll_admin_part().expect("the refusal came back");
                assert_eq!((part.id, part.status), (77, AdminStatus::Refused));
            }
        }
    });
}
