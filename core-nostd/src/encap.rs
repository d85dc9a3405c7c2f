//! An Ethernet frame inside an overlay data message, and what the edge does about the VN MTU
//! (DESIGN.md "encap"): TCP MSS clamping on SYN and SYN-ACK, and ICMP fragmentation-needed for DF
//! packets larger than the VN MTU (RFC 792, RFC 1191), rate-limited as RFC 1812 §4.3.2.8 asks.
//!
//! The VN MTU is a namespace constant: a path with a smaller MTU fragments the outer packet instead of
//! shrinking the VN, so hosts learn one MTU (DHCP option 26) and these two mechanisms catch the hosts
//! that ignore it.

use core::fmt;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address, Ipv4Packet,
    Ipv4Repr, ETHERNET_HEADER_LEN,
};

use crate::arp::TokenBucket;
use crate::config::Site;
use crate::queue::Cx;
use crate::wire::overlay::{DataRepr, Flags, Packet, HEADER_LEN, OVERHEAD, TAG_LEN};

/// Largest frame a data message carries: a 1500-byte IP packet with an Ethernet header and one VLAN tag.
pub const MAX_FRAME: usize = ETHERNET_HEADER_LEN + 4 + 1500;
/// IPv4 header plus TCP header without options: what the MSS leaves out of the MTU.
const IPV4_TCP_HEADERS: u16 = 40;
/// Bytes of the offending packet's data quoted after its IP header (RFC 792: 64 bits).
const QUOTED_DATA: usize = 8;
/// ICMP errors allowed in a burst.
pub const ICMP_BURST: u32 = 10;
/// One more ICMP error every this long (10 per second).
pub const ICMP_REFILL: Duration = Duration::from_millis(100);

/// Why a frame could not be encapsulated or decapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncapError {
    /// The output buffer cannot hold the message.
    BufferTooSmall,
    /// The frame is shorter than an Ethernet header or longer than [`MAX_FRAME`].
    BadFrameLength,
    /// The datagram is not a well-formed data message (too short, other type or version).
    Malformed,
}

impl fmt::Display for EncapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BufferTooSmall => "output buffer too small for the data message",
            Self::BadFrameLength => "frame shorter than an Ethernet header or longer than the largest frame",
            Self::Malformed => "not a well-formed overlay data message",
        })
    }
}

impl core::error::Error for EncapError {}

/// Put `frame` in a data message for the receiver's session `session` with counter `counter`, written
/// into `out`; returns the message length. The tag is zeros until P3 seals the frame.
// HOT PATH
pub fn encapsulate(frame: &[u8], session: u32, counter: u64, out: &mut [u8]) -> Result<usize, EncapError> {
    if !(ETHERNET_HEADER_LEN..=MAX_FRAME).contains(&frame.len()) {
        return Err(EncapError::BadFrameLength);
    }
    let repr = DataRepr { flags: Flags::NONE, receiver: session, counter, payload_len: frame.len() };
    let len = repr.buffer_len();
    let buf = out.get_mut(..len).ok_or(EncapError::BufferTooSmall)?;
    let mut p = Packet::new_unchecked(buf);
    repr.emit(&mut p);
    p.payload_mut().copy_from_slice(frame);
    p.tag_mut().fill(0);
    Ok(len)
}

/// Take the header and the Ethernet frame out of a data message.
// HOT PATH
pub fn decapsulate(datagram: &[u8]) -> Result<(DataRepr, &[u8]), EncapError> {
    let p = Packet::new_checked(datagram).map_err(|_| EncapError::Malformed)?;
    let repr = DataRepr::parse(&p).map_err(|_| EncapError::Malformed)?;
    let frame = datagram.get(HEADER_LEN..datagram.len() - TAG_LEN).ok_or(EncapError::Malformed)?;
    if !(ETHERNET_HEADER_LEN..=MAX_FRAME).contains(&frame.len()) {
        return Err(EncapError::BadFrameLength);
    }
    debug_assert_eq!(frame.len() + OVERHEAD, datagram.len());
    Ok((repr, frame))
}

/// Lower the MSS option of a TCP SYN or SYN-ACK in the IPv4 packet `ip` to at most `mtu - 40`, fixing
/// the TCP checksum incrementally (RFC 1624), so a checksum that was wrong stays wrong rather than being
/// laundered. Returns the previous MSS when it was lowered; `None` leaves the packet untouched (not
/// TCP, not a SYN, a later fragment, no MSS option or one already small enough, or a malformed header).
/// Option parsing stops at EOL, at an option whose length is under 2 or runs past the header.
// HOT PATH
pub fn clamp_mss(ip: &mut [u8], mtu: u16) -> Option<u16> {
    let max_mss = mtu.saturating_sub(IPV4_TCP_HEADERS);
    let (&vihl, _) = ip.split_first()?;
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let frag_offset = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x1fff;
    if *ip.get(9)? != 6 || frag_offset != 0 || total < ihl || total > ip.len() {
        return None;
    }
    let tcp = ip.get_mut(ihl..total)?;
    let data_off = usize::from(*tcp.get(12)? >> 4) * 4;
    let flags = *tcp.get(13)?;
    if flags & 0x02 == 0 || data_off < 20 || data_off > tcp.len() {
        return None;
    }
    let mut previous = None;
    let mut i = 20;
    while i < data_off {
        let kind = tcp[i];
        match kind {
            0 => break,
            1 => i += 1,
            _ => {
                let Some(&len) = tcp.get(i + 1) else { break };
                let len = usize::from(len);
                if len < 2 || i + len > data_off {
                    break;
                }
                if kind == 2 && len == 4 {
                    let old = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if old > max_mss {
                        tcp[i + 2..i + 4].copy_from_slice(&max_mss.to_be_bytes());
                        // A value at an odd offset straddles two checksum words: its bytes count swapped.
                        let odd = (i + 2) % 2 == 1;
                        let (o, n) =
                            if odd { (old.swap_bytes(), max_mss.swap_bytes()) } else { (old, max_mss) };
                        let sum = u16::from_be_bytes([tcp[16], tcp[17]]);
                        tcp[16..18].copy_from_slice(&checksum_update(sum, o, n).to_be_bytes());
                        previous = previous.or(Some(old));
                    }
                }
                i += len;
            }
        }
    }
    previous
}

/// RFC 1624 eqn. 3: the checksum `hc` after a 16-bit word changed from `old` to `new`.
fn checksum_update(hc: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What [`PmtuGuard::check`] decided about a packet leaving for the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtuVerdict {
    /// The packet fits the VN MTU (or is not IPv4): send it on.
    Fits,
    /// Too large with DF set: drop it; an ICMP fragmentation-needed was queued for the sender.
    FragNeededSent,
    /// Too large with DF set: drop it; the ICMP error was rate-limited, not sent (or not allowed for
    /// this packet by RFC 1812 §4.3.2.7: a later fragment, an ICMP error, a non-unicast source).
    FragNeededSuppressed,
    /// Too large without DF: the caller fragments it or drops it.
    TooBig,
}

/// The edge's reaction to packets larger than the VN MTU, with its ICMP token bucket (a burst of
/// [`ICMP_BURST`], then one every [`ICMP_REFILL`]; when empty, the error is not sent and the packet is
/// still dropped).
#[derive(Debug, Clone)]
pub struct PmtuGuard {
    bucket: TokenBucket,
}

impl Default for PmtuGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl PmtuGuard {
    /// A full bucket.
    pub const fn new() -> Self {
        Self { bucket: TokenBucket::new(Instant::ZERO, ICMP_BURST, ICMP_REFILL) }
    }

    /// Check the Ethernet `frame` from the LAN before it is tunnelled; an IPv4 packet with DF that is
    /// longer than the VN MTU gets an ICMP fragmentation-needed back to its sender, from `.2` and the
    /// router MAC.
    pub fn check(&mut self, cx: &mut Cx<'_>, site: &Site, frame: &[u8]) -> MtuVerdict {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return MtuVerdict::Fits;
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return MtuVerdict::Fits;
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return MtuVerdict::Fits;
        };
        let mtu = site.params.mtu;
        if ip.total_len() <= mtu {
            return MtuVerdict::Fits;
        }
        if !ip.dont_frag() {
            return MtuVerdict::TooBig;
        }
        if !may_send_icmp_error(&ip) || !self.bucket.take(cx.now) {
            return MtuVerdict::FragNeededSuppressed;
        }
        let (router, to, from) = (site.router_mac, eth.src_addr(), site.gateway_addr);
        let packet = &eth.payload()[..usize::from(ip.total_len())];
        if cx.lan(&mut |buf| frag_needed_frame(buf, router, to, from, packet, mtu)) {
            MtuVerdict::FragNeededSent
        } else {
            MtuVerdict::FragNeededSuppressed
        }
    }
}

/// RFC 1812 §4.3.2.7: no ICMP error about a later fragment, an ICMP error, or a packet whose source is
/// not a unicast address.
fn may_send_icmp_error(ip: &Ipv4Packet<&[u8]>) -> bool {
    let src = ip.src_addr();
    if ip.frag_offset() != 0
        || src.is_unspecified()
        || src.is_broadcast()
        || src.is_multicast()
        || src.is_loopback()
    {
        return false;
    }
    if ip.next_header() == IpProtocol::Icmp {
        // Types 3, 4, 5, 11, 12 are errors; echo and the rest may be answered.
        let ty = ip.payload().first().copied().unwrap_or(0xff);
        return !matches!(ty, 3 | 4 | 5 | 11 | 12);
    }
    true
}

/// Build an ICMP destination-unreachable / fragmentation-needed (type 3 code 4, RFC 1191 next-hop MTU =
/// `mtu`) about the IPv4 `packet`, quoting its header and first 8 data bytes (RFC 792), as a full
/// Ethernet frame from `router_mac` to `dst_mac` and from `src_ip`, with valid checksums.
/// Returns the frame length, `None` if `buf` is too small or `packet` is not IPv4.
pub fn frag_needed_frame(
    buf: &mut [u8],
    router_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src_ip: Ipv4Address,
    packet: &[u8],
    mtu: u16,
) -> Option<usize> {
    let orig = Ipv4Packet::new_checked(packet).ok()?;
    let quoted = packet.len().min(usize::from(orig.header_len()) + QUOTED_DATA);
    let icmp_len = 8 + quoted;
    let ip = Ipv4Repr {
        src_addr: src_ip,
        dst_addr: orig.src_addr(),
        next_header: IpProtocol::Icmp,
        payload_len: icmp_len,
        hop_limit: 64,
    };
    let total = ETHERNET_HEADER_LEN + ip.buffer_len() + icmp_len;
    let buf = buf.get_mut(..total)?;
    let mut eth = EthernetFrame::new_unchecked(&mut *buf);
    EthernetRepr { src_addr: router_mac, dst_addr: dst_mac, ethertype: EthernetProtocol::Ipv4 }
        .emit(&mut eth);
    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut ipp, &ChecksumCapabilities::default());
    let icmp = &mut ipp.payload_mut()[..icmp_len];
    icmp[..8].copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(packet.get(..quoted)?);
    let sum = !(crate::wire::checksum_fold(0, icmp) as u16);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamespaceParams;
    use crate::queue::{Outbox, Transmit};
    use crate::rand::Rng;
    use crate::stats::Stats;
    use smoltcp::wire::{Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, IpAddress, Ipv4Cidr, TcpPacket};

    // Captured with tcpdump in two network namespaces by ci/fixtures/capture-arp.sh (veth, MTU 1500,
    // TX checksum offload off): busybox 1.35 `nc` from 10.250.0.10 to a `nc -l` at 10.250.0.20:5000.
    // Options: MSS 1460, SACK-permitted, timestamps, NOP, window scale 7.
    static TCP_SYN: &[u8] = include_bytes!("../tests/fixtures/arp/tcp_syn.bin");
    static TCP_SYNACK: &[u8] = include_bytes!("../tests/fixtures/arp/tcp_synack.bin");

    fn tcp_ok(ip: &[u8]) -> bool {
        let p = Ipv4Packet::new_checked(ip).unwrap();
        let tcp = TcpPacket::new_checked(p.payload()).unwrap();
        tcp.verify_checksum(&IpAddress::Ipv4(p.src_addr()), &IpAddress::Ipv4(p.dst_addr()))
    }

    fn mss_of(ip: &[u8]) -> u16 {
        let p = Ipv4Packet::new_checked(ip).unwrap();
        let tcp = TcpPacket::new_checked(p.payload()).unwrap();
        let repr = smoltcp::wire::TcpRepr::parse(
            &tcp,
            &IpAddress::Ipv4(p.src_addr()),
            &IpAddress::Ipv4(p.dst_addr()),
            &ChecksumCapabilities::default(),
        )
        .unwrap();
        repr.max_seg_size.unwrap()
    }

    #[test]
    fn clamps_a_captured_syn_and_syn_ack_with_valid_checksums() {
        for frame in [TCP_SYN, TCP_SYNACK] {
            let mut ip = frame[14..].to_vec();
            assert!(tcp_ok(&ip), "fixture checksum");
            assert_eq!(mss_of(&ip), 1460);
            assert_eq!(clamp_mss(&mut ip, 1380), Some(1460));
            assert_eq!(mss_of(&ip), 1340);
            assert!(tcp_ok(&ip), "checksum after clamping");
            // Only the MSS and the checksum changed.
            let diff: std::vec::Vec<usize> = (0..ip.len()).filter(|&i| ip[i] != frame[14 + i]).collect();
            assert!(diff.iter().all(|&i| [36, 37, 42, 43].contains(&i)), "{diff:?}");
            // Already small enough: unchanged.
            let before = ip.clone();
            assert_eq!(clamp_mss(&mut ip, 1380), None);
            assert_eq!(ip, before);
        }
    }

    #[test]
    fn leaves_non_syn_segments_and_smaller_mss_alone() {
        let mut ip = TCP_SYN[14..].to_vec();
        ip[20 + 13] = 0x10; // ACK only
        let before = ip.clone();
        assert_eq!(clamp_mss(&mut ip, 1380), None);
        assert_eq!(ip, before);
        let mut ip = TCP_SYN[14..].to_vec();
        assert_eq!(clamp_mss(&mut ip, 1500), None, "1460 is not above 1500 - 40");
        // A later fragment carries no TCP header.
        let mut ip = TCP_SYN[14..].to_vec();
        ip[7] = 1;
        assert_eq!(clamp_mss(&mut ip, 1380), None);
    }

    /// A SYN from 10.250.0.10 with the given options (padded to a multiple of 4), valid checksum.
    fn syn_with_options(opts: &[u8]) -> std::vec::Vec<u8> {
        let olen = opts.len().div_ceil(4) * 4;
        let total = 40 + olen;
        let mut v = std::vec![0u8; total];
        v[0] = 0x45;
        v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        v[8] = 64;
        v[9] = 6;
        v[12..16].copy_from_slice(&[10, 250, 0, 10]);
        v[16..20].copy_from_slice(&[10, 250, 0, 20]);
        v[20..22].copy_from_slice(&40000u16.to_be_bytes());
        v[22..24].copy_from_slice(&80u16.to_be_bytes());
        v[32] = ((20 + olen as u8) / 4) << 4;
        v[33] = 0x02;
        v[34..36].copy_from_slice(&64240u16.to_be_bytes());
        v[40..40 + opts.len()].copy_from_slice(opts);
        let mut p = Ipv4Packet::new_unchecked(&mut v[..]);
        p.fill_checksum();
        let (s, d) = (p.src_addr(), p.dst_addr());
        let mut tcp = TcpPacket::new_unchecked(p.payload_mut());
        tcp.fill_checksum(&IpAddress::Ipv4(s), &IpAddress::Ipv4(d));
        v
    }

    #[test]
    fn mss_at_an_odd_offset_keeps_the_checksum_valid() {
        let mut ip = syn_with_options(&[1, 2, 4, 0x05, 0xb4, 1, 1, 1]);
        assert!(tcp_ok(&ip));
        assert_eq!(clamp_mss(&mut ip, 1380), Some(1460));
        assert_eq!(u16::from_be_bytes([ip[43], ip[44]]), 1340);
        assert!(tcp_ok(&ip));
    }

    #[test]
    fn odd_options_never_panic_nor_change_anything() {
        for opts in [
            &[0u8, 2, 4, 0x05, 0xb4][..], // EOL first: the MSS after it is not an option
            &[3, 0, 2, 4, 0x05, 0xb4],    // zero-length option
            &[3, 1, 2, 4, 0x05, 0xb4],    // length 1
            &[2, 4, 0x05][..],            // truncated MSS (padded with EOL by the builder: length runs out)
            &[8, 40, 2, 4, 0x05, 0xb4],   // length past the header
            &[2, 3, 0x05, 0xb4],          // MSS with a wrong length
            &[1, 1, 1, 2],                // kind without a length byte
        ] {
            let mut ip = syn_with_options(opts);
            let before = ip.clone();
            assert_eq!(clamp_mss(&mut ip, 1380), None, "{opts:?}");
            assert_eq!(ip, before);
        }
        // Data offset larger than the segment, IHL over the length, total length over the buffer.
        let mut ip = syn_with_options(&[2, 4, 0x05, 0xb4]);
        ip[32] = 0xf0;
        assert_eq!(clamp_mss(&mut ip, 1380), None);
        let mut ip = syn_with_options(&[2, 4, 0x05, 0xb4]);
        ip[0] = 0x4f;
        assert_eq!(clamp_mss(&mut ip, 1380), None);
        let mut ip = syn_with_options(&[2, 4, 0x05, 0xb4]);
        ip.truncate(30);
        assert_eq!(clamp_mss(&mut ip, 1380), None);
        for n in 0..20 {
            assert_eq!(clamp_mss(&mut std::vec![0x45; n], 1380), None);
        }
    }

    #[test]
    fn encapsulate_writes_exact_bytes_and_decapsulate_returns_the_frame() {
        let frame = TCP_SYN;
        let mut out = [0xa5u8; 200];
        let n = encapsulate(frame, 0xdead_beef, 7, &mut out).unwrap();
        assert_eq!(n, frame.len() + OVERHEAD);
        let mut want = std::vec![0xC0, 0x10, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 7];
        want.extend_from_slice(frame);
        want.extend_from_slice(&[0; 16]);
        assert_eq!(&out[..n], &want[..]);
        assert_eq!(out[n], 0xa5, "nothing written past the message");
        let (repr, f) = decapsulate(&out[..n]).unwrap();
        assert_eq!((repr.receiver, repr.counter, repr.flags, f), (0xdead_beef, 7, Flags::NONE, frame));
        assert_eq!(encapsulate(frame, 1, 1, &mut out[..n - 1]), Err(EncapError::BufferTooSmall));
        assert_eq!(encapsulate(&frame[..13], 1, 1, &mut out), Err(EncapError::BadFrameLength));
        assert_eq!(encapsulate(&[0; MAX_FRAME + 1], 1, 1, &mut [0; 1600]), Err(EncapError::BadFrameLength));
        assert_eq!(decapsulate(&out[..OVERHEAD + 13]), Err(EncapError::BadFrameLength));
        assert_eq!(decapsulate(&out[..20]), Err(EncapError::Malformed));
        out[0] = 0x00;
        assert_eq!(decapsulate(&out[..n]), Err(EncapError::Malformed));
    }

    struct Harness {
        site: Site,
        rng: Rng,
        stats: Stats,
        out: Outbox<32, 4>,
        guard: PmtuGuard,
    }

    impl Harness {
        fn new() -> Self {
            let p = NamespaceParams::new([7; 16], "demo", Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16))
                .unwrap();
            Self {
                site: Site::new(p).unwrap(),
                rng: Rng::new(1),
                stats: Stats::default(),
                out: Outbox::default(),
                guard: PmtuGuard::new(),
            }
        }
        fn check(&mut self, now: Instant, frame: &[u8]) -> MtuVerdict {
            let mut cx = Cx { now, rng: &mut self.rng, stats: &mut self.stats, out: &mut self.out };
            self.guard.check(&mut cx, &self.site, frame)
        }
        fn sent(&mut self) -> std::vec::Vec<std::vec::Vec<u8>> {
            let mut v = std::vec::Vec::new();
            let mut buf = [0u8; 1600];
            while let Some(Transmit::Lan(n)) = self.out.pop(&mut self.stats, &mut buf) {
                v.push(buf[..n].to_vec());
            }
            v
        }
    }

    /// An Ethernet frame from host A (captured SYN headers) with an IPv4 packet of `total` bytes.
    fn big_frame(total: u16, df: bool, proto: u8) -> std::vec::Vec<u8> {
        let mut f = std::vec![0u8; 14 + usize::from(total)];
        f[..14].copy_from_slice(&TCP_SYN[..14]);
        f[14..54].copy_from_slice(&TCP_SYN[14..54]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[20] = if df { 0x40 } else { 0 };
        f[23] = proto;
        let mut p = Ipv4Packet::new_unchecked(&mut f[14..]);
        p.fill_checksum();
        f
    }

    #[test]
    fn df_packet_over_the_vn_mtu_gets_frag_needed_with_the_mtu_and_quote() {
        let mut h = Harness::new();
        let frame = big_frame(1500, true, 6);
        assert_eq!(h.check(Instant::from_secs(1), &frame), MtuVerdict::FragNeededSent);
        let sent = h.sent();
        assert_eq!(sent.len(), 1);
        let eth = EthernetFrame::new_checked(&sent[0][..]).unwrap();
        assert_eq!(eth.src_addr(), h.site.router_mac);
        assert_eq!(eth.dst_addr(), EthernetAddress([2, 0, 0, 0, 0, 0x0a]));
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), h.site.gateway_addr);
        assert_eq!(ip.dst_addr(), Ipv4Address::new(10, 250, 0, 10));
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.msg_type(), Icmpv4Message::DstUnreachable);
        assert_eq!(icmp.msg_code(), u8::from(Icmpv4DstUnreachable::FragRequired));
        assert_eq!(&ip.payload()[4..8], &[0, 0, 0x05, 0x64], "next-hop MTU 1380");
        assert_eq!(&ip.payload()[8..], &frame[14..14 + 28], "IP header + 8 bytes quoted");
        assert_eq!(sent[0].len(), 14 + 20 + 8 + 28);
    }

    #[test]
    fn fits_too_big_without_df_and_exemptions() {
        let mut h = Harness::new();
        let t = Instant::from_secs(1);
        assert_eq!(h.check(t, &big_frame(1380, true, 6)), MtuVerdict::Fits);
        assert_eq!(h.check(t, &big_frame(1381, false, 6)), MtuVerdict::TooBig);
        // An ICMP error (type 3) is never answered with one.
        let mut f = big_frame(1400, true, 1);
        f[34] = 3;
        assert_eq!(h.check(t, &f), MtuVerdict::FragNeededSuppressed);
        // An oversized echo request is.
        let mut f = big_frame(1400, true, 1);
        f[34] = 8;
        assert_eq!(h.check(t, &f), MtuVerdict::FragNeededSent);
        assert_eq!(h.check(t, &TCP_SYN[..20]), MtuVerdict::Fits);
        assert_eq!(h.sent().len(), 1);
    }

    #[test]
    fn frag_needed_is_rate_limited_by_a_token_bucket() {
        let mut h = Harness::new();
        let frame = big_frame(1500, true, 17);
        let t = Instant::from_secs(50);
        let verdicts: std::vec::Vec<_> = (0..ICMP_BURST + 5).map(|_| h.check(t, &frame)).collect();
        assert!(verdicts[..ICMP_BURST as usize].iter().all(|v| *v == MtuVerdict::FragNeededSent));
        assert!(verdicts[ICMP_BURST as usize..].iter().all(|v| *v == MtuVerdict::FragNeededSuppressed));
        assert_eq!(h.sent().len(), ICMP_BURST as usize);
        assert_eq!(h.check(t + ICMP_REFILL, &frame), MtuVerdict::FragNeededSent);
        assert_eq!(h.check(t + ICMP_REFILL, &frame), MtuVerdict::FragNeededSuppressed);
    }

    #[test]
    fn checksum_update_matches_a_full_recompute() {
        // RFC 1624's own example: 0xDD2F with 0x5555 -> 0x3285 gives 0x0000 under eqn. 3.
        assert_eq!(checksum_update(0xdd2f, 0x5555, 0x3285), 0x0000);
    }
}
