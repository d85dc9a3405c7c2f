//! Stateful fuzz entry point for a whole [`crate::Node`] on its LAN side, through its public API only
//! (so it keeps working as the components behind it change).
//!
//! The input is a sequence of operations. Each starts with a byte `op`: the clock advances by
//! `(op >> 2) * 100 ms` (or one hour when `op >> 2 == 63`, to reach the long timers), then
//! `op & 3` selects: 0 and 1, a LAN frame (two length bytes, big-endian, then that many bytes, cut short
//! at the end of the input); 2, `handle_timeout`; 3, `bindings_persisted`. After each operation every
//! output is drained and checked: frames the node writes parse, carry the router MAC, and have valid
//! IPv4, UDP and ICMP checksums; ARP it sends is never in probe format; after `handle_timeout` the next
//! deadline is not in the past.

use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Address,
    Ipv4Cidr, Ipv4Packet, UdpPacket,
};

use crate::config::{NamespaceParams, Site};
use crate::queue::{Transmit, FRAME_CAP};
use crate::{Duration, Instant, Node};

/// Small capacities, so the full-table paths are reached.
type FuzzNode = Node<4, 8, 4, 8, 8>;

fn check_frame(site: &Site, frame: &[u8]) {
    let eth = EthernetFrame::new_checked(frame).expect("the node writes whole Ethernet frames");
    assert_eq!(eth.src_addr(), site.router_mac);
    match eth.ethertype() {
        EthernetProtocol::Arp => {
            let p = ArpPacket::new_checked(eth.payload()).expect("arp");
            let Ok(ArpRepr::EthernetIpv4 { source_hardware_addr, source_protocol_addr, .. }) =
                ArpRepr::parse(&p)
            else {
                panic!("the node writes Ethernet/IPv4 ARP");
            };
            assert_eq!(source_hardware_addr, site.router_mac);
            assert!(!source_protocol_addr.is_unspecified(), "never in probe format");
        }
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
            assert!(ip.verify_checksum());
            let (s, d) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
            match ip.next_header() {
                IpProtocol::Udp => {
                    let udp = UdpPacket::new_checked(ip.payload()).expect("udp");
                    assert!(udp.checksum() == 0 || udp.verify_checksum(&s, &d));
                }
                IpProtocol::Icmp => {
                    assert!(Icmpv4Packet::new_checked(ip.payload()).expect("icmp").verify_checksum());
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// Fuzz entry point (see the module doc).
pub fn node_lan(data: &[u8]) {
    let Ok(params) =
        NamespaceParams::new([7; 16], "fuzz", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16))
    else {
        return;
    };
    let Ok(site) = Site::new(params) else {
        return;
    };
    let mut node = FuzzNode::new(site.clone(), 1);
    let mut now = Instant::from_secs(1);
    let mut buf = [0u8; FRAME_CAP];
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        now += match op >> 2 {
            63 => Duration::from_secs(3600),
            n => Duration::from_millis(u64::from(n) * 100),
        };
        match op & 3 {
            0 | 1 => {
                let (len, tail) = match rest {
                    [a, b, tail @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), tail),
                    _ => (0, &[][..]),
                };
                let (frame, tail) = tail.split_at(len.min(tail.len()));
                rest = tail;
                node.handle_lan(now, frame);
            }
            2 => {
                node.handle_timeout(now);
                if let Some(at) = node.poll_at() {
                    assert!(at > now, "a deadline left in the past after handle_timeout");
                }
            }
            _ => {
                let token = node.persist_checkpoint();
                node.bindings_persisted(token);
            }
        }
        while let Some(t) = node.poll_transmit(now, &mut buf) {
            if let Transmit::Lan(n) = t {
                check_frame(&site, &buf[..n]);
            }
        }
        while node.poll_event().is_some() {}
        let _ = node.bindings(now).count();
    }
}
