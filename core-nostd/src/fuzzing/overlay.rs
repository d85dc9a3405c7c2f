//! Fuzz entry point for the overlay socket's input and the encap helpers: RFC 7983 classification,
//! data message parse -> emit -> re-parse (and a broadcast message's tag), decapsulate/encapsulate, MSS clamping and ICMP
//! fragmentation-needed on arbitrary bytes.

use smoltcp::wire::{
    EthernetAddress, EthernetFrame, Icmpv4Packet, IpAddress, Ipv4Address, Ipv4Packet, TcpPacket,
};

use crate::encap::{clamp_mss, decapsulate, encapsulate, frag_needed_frame};
use crate::wire::overlay::{classify, BcastTag, Class, DataRepr, Flags, MessageType, Packet, BCAST_TAG_LEN};

const BUF: usize = 2048;

/// Whether the TCP checksum of the IPv4 packet `ip` verifies (`None` if it does not parse that far).
fn tcp_checksum_ok(ip: &[u8]) -> Option<bool> {
    let p = Ipv4Packet::new_checked(ip).ok()?;
    let tcp = TcpPacket::new_checked(p.payload()).ok()?;
    Some(tcp.verify_checksum(&IpAddress::Ipv4(p.src_addr()), &IpAddress::Ipv4(p.dst_addr())))
}

/// A broadcast message's tag: parse -> emit -> re-parse, and re-encapsulation gives the same bytes
/// (but the reserved bytes and the AEAD tag, written as zero).
fn bcast_round_trip(r: &DataRepr, payload: &[u8], data: &[u8]) {
    let Ok((tag, frame)) = BcastTag::parse(payload) else {
        assert!(payload.len() < BCAST_TAG_LEN);
        return;
    };
    let mut head = [0u8; BCAST_TAG_LEN];
    tag.emit(&mut head).expect("the tag fits its length");
    assert_eq!(&head[..], &payload[..BCAST_TAG_LEN]);
    assert_eq!(BcastTag::parse(&head), Ok((tag, &[][..])));
    let mut buf = [0u8; BUF];
    match crate::bcast::encapsulate(&tag, frame, r.receiver, r.counter, &mut buf) {
        Ok(n) => {
            assert_eq!(n, data.len());
            let (again, p2) = decapsulate(&buf[..n]).expect("our own message decapsulates");
            assert!(again.flags.contains(Flags::BROADCAST));
            assert_eq!(p2, payload);
        }
        Err(_) => assert!(frame.len() < 14 || frame.len() > crate::bcast::MAX_BCAST_FRAME),
    }
}

/// Fuzz entry point (see the module doc).
pub fn overlay(data: &[u8]) {
    let class = classify(data);
    match data.first() {
        Some(&b) if b >= 0xC0 => assert_eq!(class, Class::Vngate(MessageType::from(b))),
        Some(0..=3) => assert!(matches!(class, Class::Stun | Class::Other)),
        _ => assert_eq!(class, Class::Other),
    }

    if let Ok(p) = Packet::new_checked(data) {
        if let Ok(repr) = DataRepr::parse(&p) {
            assert_eq!(class, Class::Vngate(MessageType::Data));
            assert_eq!(repr.buffer_len(), data.len());
            if repr.buffer_len() <= BUF {
                let mut buf = [0u8; BUF];
                let out = &mut buf[..repr.buffer_len()];
                let mut q = Packet::new_unchecked(&mut *out);
                repr.emit(&mut q);
                q.payload_mut().copy_from_slice(p.payload());
                q.tag_mut().copy_from_slice(p.tag());
                let again = DataRepr::parse(&Packet::new_unchecked(&*out));
                assert_eq!(again, Ok(repr));
                // Identical to the input except the reserved bytes, which are written as zero.
                assert_eq!(out[..2], data[..2]);
                assert_eq!(out[4..], data[4..]);
            }
            if let Ok((r, frame)) = decapsulate(data) {
                assert_eq!(r, repr);
                assert_eq!(frame, p.payload());
                let mut buf = [0u8; BUF];
                let n =
                    encapsulate(frame, r.receiver, r.counter, &mut buf).expect("a decapsulated frame fits");
                assert_eq!(n, data.len());
                let plain = r.flags == Flags::NONE && data[2..4] == [0, 0] && p.tag().iter().all(|&b| b == 0);
                if plain {
                    assert_eq!(&buf[..n], data);
                }
                if r.flags.contains(Flags::BROADCAST) {
                    bcast_round_trip(&r, frame, data);
                }
            }
        }
    }

    // MSS clamping on the input taken as an IPv4 packet, with an MTU from the first two bytes.
    let mtu = match data {
        [a, b, ..] => 1280 + u16::from_be_bytes([*a, *b]) % 221,
        _ => 1380,
    };
    if data.len() <= BUF {
        let mut buf = [0u8; BUF];
        let ip = &mut buf[..data.len()];
        ip.copy_from_slice(data);
        match clamp_mss(ip, mtu) {
            None => assert_eq!(&*ip, data),
            Some(old) => {
                assert!(old > mtu - 40);
                // Only the TCP checksum and MSS values inside the options change.
                let ihl = usize::from(data[0] & 0x0f) * 4;
                let opts_end = ihl + usize::from(data[ihl + 12] >> 4) * 4;
                for i in (0..data.len()).filter(|&i| ip[i] != data[i]) {
                    assert!(
                        (ihl + 16..ihl + 18).contains(&i) || (ihl + 22..opts_end).contains(&i),
                        "byte {i}"
                    );
                }
                if tcp_checksum_ok(data) == Some(true) {
                    assert_eq!(tcp_checksum_ok(ip), Some(true), "a valid checksum stays valid");
                }
                assert_eq!(clamp_mss(ip, mtu), None, "clamping is idempotent");
            }
        }
    }

    // ICMP fragmentation-needed about the input taken as an IPv4 packet.
    let mut buf = [0u8; BUF];
    let router = EthernetAddress([2, 0, 0, 0, 0, 1]);
    let host = EthernetAddress([2, 0, 0, 0, 0, 2]);
    if let Some(n) = frag_needed_frame(&mut buf, router, host, Ipv4Address::new(10, 250, 0, 2), data, mtu) {
        let eth = EthernetFrame::new_checked(&buf[..n]).expect("ethernet");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
        assert!(ip.verify_checksum());
        let icmp = Icmpv4Packet::new_checked(ip.payload()).expect("icmp");
        assert!(icmp.verify_checksum());
        assert!(ip.payload().len() <= 8 + 60 + 8);
    }
}
