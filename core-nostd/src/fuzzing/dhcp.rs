//! DHCP fuzz entry point: parse -> emit -> re-parse must agree, and the server must take any message
//! (as a LAN broadcast and as a relayed unicast) without panicking.

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{DhcpPacket, EthernetAddress, Ipv4Address, Ipv4Cidr};

use crate::config::{NamespaceParams, Site};
use crate::dhcp::{DhcpServer, LocalPool};
use crate::queue::{Cx, Outbox};
use crate::rand::Rng;
use crate::stats::Stats;
use crate::wire::dhcp::DhcpRepr;
use crate::wire::UdpMeta;

/// Fuzz entry point (see the module doc).
pub fn dhcp(data: &[u8]) {
    if let Ok(repr) =
        DhcpPacket::new_checked(data).map_err(|_| ()).and_then(|p| DhcpRepr::parse(&p).map_err(|_| ()))
    {
        let mut buf = [0u8; 2048];
        let n = repr.emit(&mut buf).expect("buffer_len fits 2048");
        assert_eq!(n, repr.buffer_len());
        let again =
            DhcpRepr::parse(&DhcpPacket::new_checked(&buf[..n]).expect("emitted header")).expect("re-parse");
        assert_eq!(again, repr);
    }
    let Ok(params) =
        NamespaceParams::new([1; 16], "fuzz", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16))
    else {
        return;
    };
    let Ok(site) = Site::new(params) else { return };
    let mut srv = DhcpServer::<8>::new();
    let mut pool = LocalPool::new(&site);
    let mut rng = Rng::new(1);
    let mut stats = Stats::default();
    let mut out = Outbox::<8, 8>::default();
    let client = EthernetAddress([2, 0, 0, 0, 0, 1]);
    let lan = UdpMeta {
        src_mac: client,
        dst_mac: EthernetAddress::BROADCAST,
        src_ip: Ipv4Address::UNSPECIFIED,
        dst_ip: Ipv4Address::BROADCAST,
        src_port: 68,
        dst_port: 67,
    };
    let relay =
        UdpMeta { src_ip: Ipv4Address::new(10, 250, 0, 254), dst_ip: site.dns_addr, src_port: 67, ..lan };
    let mut now = Instant::from_secs(1);
    for meta in [lan, relay, lan] {
        let mut cx = Cx { now, rng: &mut rng, stats: &mut stats, out: &mut out };
        srv.handle(&mut cx, &site, &mut pool, &meta, data);
        srv.on_address_seen(&mut cx, &site, &mut pool, Ipv4Address::new(10, 250, 0, 9), client);
        now += Duration::from_secs(1);
        let mut cx = Cx { now, rng: &mut rng, stats: &mut stats, out: &mut out };
        srv.handle_timeout(&mut cx, &site, &mut pool);
        let mut frame = [0u8; crate::queue::FRAME_CAP];
        while out.pop(&mut stats, &mut frame).is_some() {}
        out.release(out.checkpoint());
        while out.pop(&mut stats, &mut frame).is_some() {}
        while out.events.pop_front().is_some() {}
    }
    let _ = srv.bindings(now).count();
}
