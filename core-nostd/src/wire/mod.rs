//! Wire formats. Ethernet, ARP, IPv4, UDP, ICMP and the DHCP packet view come from smoltcp's `wire`
//! (default features off); the DHCP server's own Repr, DNS and the overlay header live here.
//!
//! The frame builders below compute every checksum: a router writing frames into a TAP must, since real
//! clients silently drop frames with unfinished ones.

pub mod control;
pub mod dhcp;
pub mod dns;
pub mod handshake;
pub mod intro;
pub mod ntp;
pub mod overlay;

use smoltcp::phy::ChecksumCapabilities;
pub use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DhcpMessageType, DhcpOption, DhcpPacket, EthernetAddress,
    EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol,
    Ipv4Address, Ipv4Cidr, Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket, UdpRepr, ETHERNET_HEADER_LEN,
    IPV4_HEADER_LEN, UDP_HEADER_LEN,
};

/// A parse failed: the input is truncated or a field is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error;

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("malformed packet")
    }
}

impl core::error::Error for Error {}

impl From<smoltcp::wire::Error> for Error {
    fn from(_: smoltcp::wire::Error) -> Self {
        Error
    }
}

/// Result of a parse.
pub type Result<T> = core::result::Result<T, Error>;

/// RARP EtherType (RFC 903); QEMU sends RARP announcements after a live migration.
pub const ETHERTYPE_RARP: u16 = 0x8035;

/// Addresses and ports of a received UDP datagram, as the handlers need them to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpMeta {
    /// Ethernet source.
    pub src_mac: EthernetAddress,
    /// Ethernet destination.
    pub dst_mac: EthernetAddress,
    /// IPv4 source.
    pub src_ip: Ipv4Address,
    /// IPv4 destination.
    pub dst_ip: Ipv4Address,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
}

/// Header fields of a UDP datagram to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame {
    /// Ethernet source.
    pub src_mac: EthernetAddress,
    /// Ethernet destination.
    pub dst_mac: EthernetAddress,
    /// IPv4 source.
    pub src_ip: Ipv4Address,
    /// IPv4 destination.
    pub dst_ip: Ipv4Address,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
}

impl UdpFrame {
    /// The reply direction of a received datagram, from `our_mac`.
    pub fn reply_to(meta: &UdpMeta, our_mac: EthernetAddress, our_ip: Ipv4Address) -> Self {
        Self {
            src_mac: our_mac,
            dst_mac: meta.src_mac,
            src_ip: our_ip,
            dst_ip: meta.src_ip,
            src_port: meta.dst_port,
            dst_port: meta.src_port,
        }
    }

    /// Total frame length for a payload of `payload_len` bytes.
    pub const fn frame_len(payload_len: usize) -> usize {
        ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN + payload_len
    }

    /// Offset of the UDP payload in the frame.
    pub const PAYLOAD_OFFSET: usize = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN;

    /// Build the frame into `buf`: `fill` writes the payload into a slice at [`Self::PAYLOAD_OFFSET`]
    /// of at most `max_payload` bytes and returns the length it used. Headers and checksums are then
    /// written. `None` when `buf` is too small or `fill` gives up.
    pub fn emit(
        &self,
        buf: &mut [u8],
        max_payload: usize,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<usize> {
        let room = buf.len().checked_sub(Self::PAYLOAD_OFFSET)?.min(max_payload);
        let payload_len = fill(&mut buf[Self::PAYLOAD_OFFSET..Self::PAYLOAD_OFFSET + room])?;
        if payload_len > room {
            return None;
        }
        let total = Self::frame_len(payload_len);
        let buf = &mut buf[..total];
        let mut eth = EthernetFrame::new_unchecked(&mut *buf);
        EthernetRepr { src_addr: self.src_mac, dst_addr: self.dst_mac, ethertype: EthernetProtocol::Ipv4 }
            .emit(&mut eth);
        let caps = ChecksumCapabilities::default();
        let ip = Ipv4Repr {
            src_addr: self.src_ip,
            dst_addr: self.dst_ip,
            next_header: IpProtocol::Udp,
            payload_len: UDP_HEADER_LEN + payload_len,
            hop_limit: 64,
        };
        let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.emit(&mut ipp, &caps);
        let mut udp = UdpPacket::new_unchecked(ipp.payload_mut());
        udp.set_src_port(self.src_port);
        udp.set_dst_port(self.dst_port);
        udp.set_len((UDP_HEADER_LEN + payload_len) as u16);
        udp.fill_checksum(&IpAddress::Ipv4(self.src_ip), &IpAddress::Ipv4(self.dst_ip));
        Some(total)
    }
}

/// Build an Ethernet frame carrying `arp` into `buf`; returns its length (60 bytes with padding:
/// Ethernet's minimum frame, which some stacks expect on the wire).
pub fn emit_arp_frame(
    buf: &mut [u8],
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    arp: &ArpRepr,
) -> Option<usize> {
    const LEN: usize = 60;
    if buf.len() < LEN {
        return None;
    }
    buf[..LEN].fill(0);
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..LEN]);
    EthernetRepr { src_addr: src_mac, dst_addr: dst_mac, ethertype: EthernetProtocol::Arp }.emit(&mut eth);
    let mut p = ArpPacket::new_unchecked(&mut eth.payload_mut()[..arp.buffer_len()]);
    arp.emit(&mut p);
    Some(LEN)
}

/// Parse a UDP datagram out of an IPv4 packet (checksums verified; a zero UDP checksum is accepted).
pub fn parse_udp(src_ip: Ipv4Address, dst_ip: Ipv4Address, ip_payload: &[u8]) -> Result<(u16, u16, &[u8])> {
    let udp = UdpPacket::new_checked(ip_payload)?;
    let repr = UdpRepr::parse(
        &udp,
        &IpAddress::Ipv4(src_ip),
        &IpAddress::Ipv4(dst_ip),
        &ChecksumCapabilities::default(),
    )?;
    let payload = udp.payload();
    Ok((repr.src_port, repr.dst_port, payload))
}

/// The Internet checksum (RFC 1071) of `data`, folded, not complemented.
pub fn checksum_fold(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_round_trips_with_valid_checksums() {
        let f = UdpFrame {
            src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            src_ip: Ipv4Address::new(10, 250, 0, 1),
            dst_ip: Ipv4Address::new(10, 250, 0, 9),
            src_port: 53,
            dst_port: 40000,
        };
        let mut buf = [0xa5u8; 200];
        let n = f
            .emit(&mut buf, 100, |p| {
                p[..5].copy_from_slice(b"hello");
                Some(5)
            })
            .unwrap();
        assert_eq!(n, 14 + 20 + 8 + 5);
        let eth = EthernetFrame::new_checked(&buf[..n]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        let (sp, dp, payload) = parse_udp(ip.src_addr(), ip.dst_addr(), ip.payload()).unwrap();
        assert_eq!((sp, dp, payload), (53, 40000, &b"hello"[..]));
    }

    #[test]
    fn payload_larger_than_room_is_refused() {
        let f = UdpFrame {
            src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_mac: EthernetAddress::BROADCAST,
            src_ip: Ipv4Address::new(10, 250, 0, 1),
            dst_ip: Ipv4Address::BROADCAST,
            src_port: 67,
            dst_port: 68,
        };
        let mut buf = [0u8; 60];
        assert_eq!(f.emit(&mut buf, 100, |_| Some(100)), None);
    }
}
