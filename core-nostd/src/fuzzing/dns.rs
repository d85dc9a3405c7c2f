use core::net::{SocketAddr, SocketAddrV4};

use smoltcp::time::{Duration, Instant};

use crate::config::{NamespaceParams, Site};
use crate::dhcp::NameTable;
use crate::dns::{DnsServer, HostAnswer, HostLookup};
use crate::queue::{Cx, Outbox, Transmit};
use crate::rand::Rng;
use crate::stats::Stats;
use crate::wire::dns::{Packet, Repr};
use crate::wire::{EthernetAddress, EthernetFrame, Ipv4Address, Ipv4Cidr, Ipv4Packet, UdpMeta};

/// Room for any message re-emitted from a fuzz input (names decompressed).
const EMIT_CAP: usize = 1 << 15;

struct Names;

impl NameTable for Names {
    fn lookup(&self, label: &str) -> Option<Ipv4Address> {
        (label == "host").then_some(Ipv4Address::new(10, 250, 5, 5))
    }
    fn name_of(&self, ip: Ipv4Address) -> Option<&str> {
        (ip == Ipv4Address::new(10, 250, 5, 5)).then_some("host")
    }
}

/// The overlay's side: every read starts; `host` is shadowed when `shadow`.
struct Hosts {
    shadow: bool,
    begun: Option<heapless::String<63>>,
}

impl HostLookup for Hosts {
    fn shadowed(&self, label: &str) -> bool {
        self.shadow && label == "host"
    }
    fn begin_host_lookup(&mut self, _now: Instant, label: &str) -> bool {
        self.begun = heapless::String::try_from(label).ok();
        true
    }
}

/// The query again on a node in an overlay: a hostname read is parked, then answered by an outcome
/// chosen from `data` (or by the deadline). Every answer parses and carries the query's id.
fn with_overlay(site: &Site, meta: &UdpMeta, data: &[u8]) {
    let mut server = DnsServer::<2>::new();
    let mut out = Outbox::<4, 1>::default();
    let mut stats = Stats::default();
    let mut rng = Rng::new(7);
    let last = data.last().copied().unwrap_or(0);
    let mut hosts = Hosts { shadow: last & 1 == 1, begun: None };
    let now = Instant::from_secs(1);
    let mut cx = Cx { now, rng: &mut rng, stats: &mut stats, out: &mut out };
    server.handle_query_with(&mut cx, site, &Names, &mut hosts, meta, data);
    if let Some(label) = hosts.begun {
        let answer = match last >> 1 & 3 {
            0 => Some(HostAnswer::Found(Ipv4Address::new(10, 250, 7, 7))),
            1 => Some(HostAnswer::Absent),
            2 => Some(HostAnswer::Failed),
            _ => None,
        };
        match answer {
            Some(a) => server.host_done(&mut cx, site, &label, a),
            None => {
                cx.now = now + Duration::from_secs(10);
                server.handle_timeout(&mut cx, site);
            }
        }
        assert_eq!(server.parked(), 0);
    }
    let mut buf = [0u8; crate::queue::FRAME_CAP];
    while let Some(t) = out.pop(&mut stats, &mut buf) {
        let Transmit::Lan(n) = t else { continue };
        let payload = lan_payload(&buf[..n]);
        let r = Packet::new_checked(payload).and_then(|p| Repr::<8>::parse(&p));
        let r = r.expect("our answers parse");
        assert_eq!(Some(r.id), data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])));
    }
}

/// Parse -> emit -> re-parse must give the same message.
fn round_trip(data: &[u8]) {
    let Ok(p) = Packet::new_checked(data) else { return };
    let Ok(r) = Repr::<8>::parse(&p) else { return };
    if r.buffer_len() > EMIT_CAP {
        return;
    }
    let mut buf = [0u8; EMIT_CAP];
    let n = r.emit(&mut buf).expect("a parsed message emits into buffer_len bytes");
    assert!(n <= r.buffer_len());
    let again = Packet::new_checked(&buf[..n]).and_then(|p| Repr::<8>::parse(&p));
    assert_eq!(again.as_ref(), Ok(&r));
}

/// The DNS payload of a LAN frame the server queued.
fn lan_payload(frame: &[u8]) -> &[u8] {
    let eth = EthernetFrame::new_checked(frame).expect("our frame");
    let ip = Ipv4Packet::new_checked(eth.payload()).expect("our packet");
    let (_, _, payload) =
        crate::wire::parse_udp(ip.src_addr(), ip.dst_addr(), ip.payload()).expect("our datagram");
    payload
}

/// Fuzz entry point (see the module doc): the message round trip, then the responder fed `data` as a
/// query and, with the id it chose, as the upstream's answer. Every answer we build must parse.
pub fn dns(data: &[u8]) {
    round_trip(data);

    let Ok(mut params) =
        NamespaceParams::new([1; 16], "fuzz", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16))
    else {
        return;
    };
    params.upstream_dns = Some(Ipv4Address::new(192, 0, 2, 53));
    let Ok(site) = Site::new(params) else { return };
    let mut server = DnsServer::<2>::new();
    let mut out = Outbox::<4, 1>::default();
    let mut stats = Stats::default();
    let mut rng = Rng::new(7);
    let meta = UdpMeta {
        src_mac: EthernetAddress([2, 0, 0, 0, 0, 9]),
        dst_mac: site.router_mac,
        src_ip: Ipv4Address::new(10, 250, 5, 5),
        dst_ip: site.dns_addr,
        src_port: 40000,
        dst_port: 53,
    };
    with_overlay(&site, &meta, data);
    let now = Instant::from_secs(1);
    let mut cx = Cx { now, rng: &mut rng, stats: &mut stats, out: &mut out };
    server.handle_query(&mut cx, &site, &Names, &meta, data);
    let mut buf = [0u8; crate::queue::FRAME_CAP];
    let mut forwarded = None;
    while let Some(t) = out.pop(&mut stats, &mut buf) {
        match t {
            Transmit::Lan(n) => {
                let payload = lan_payload(&buf[..n]);
                let r = Packet::new_checked(payload).and_then(|p| Repr::<8>::parse(&p));
                let r = r.expect("our answers parse");
                assert!(r.flags.response);
                assert_eq!(Some(r.id), data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])));
            }
            Transmit::Upstream { to, local_port, len } => {
                let r = Packet::new_checked(&buf[..len]).and_then(|p| Repr::<8>::parse(&p));
                let id = r.expect("our forwarded queries parse").id;
                forwarded = Some((to, local_port, id));
            }
            _ => panic!("the DNS server only talks to the LAN and the upstream"),
        }
    }
    if let Some((to, local_port, id)) = forwarded {
        let mut answer = [0u8; 2048];
        let n = data.len().min(answer.len());
        answer[..n].copy_from_slice(&data[..n]);
        if n >= 3 {
            answer[..2].copy_from_slice(&id.to_be_bytes());
            answer[2] |= 0x80;
        }
        let wrong = SocketAddr::V4(SocketAddrV4::new(Ipv4Address::new(192, 0, 2, 54), 53));
        let mut cx = Cx { now, rng: &mut rng, stats: &mut stats, out: &mut out };
        server.handle_upstream(&mut cx, &site, wrong, local_port, &answer[..n]);
        server.handle_upstream(&mut cx, &site, to, local_port, &answer[..n]);
        cx.now = now + Duration::from_secs(10);
        server.handle_timeout(&mut cx, &site);
        assert_eq!(server.poll_at(), None);
        while let Some(t) = out.pop(&mut stats, &mut buf) {
            assert!(matches!(t, Transmit::Lan(_)));
        }
    }
}
