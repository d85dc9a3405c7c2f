//! An `AF_PACKET` socket on one interface: sends Ethernet/IPv4/UDP frames it builds itself (any source MAC, source
//! address 0.0.0.0 allowed) and receives every UDP frame to a port, in promiscuous mode so that replies unicast to
//! an invented chaddr still arrive. Also a minimal ARP resolver (RFC 826) for unicasting a RELEASE.

use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

const ETH_P_ALL: u16 = 0x0003;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETH_HDR: usize = 14;
const IP_HDR: usize = 20;
const UDP_HDR: usize = 8;

/// An Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl FromStr for Mac {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Mac> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(|| anyhow!("MAC {s:?}: expected six hex bytes"))?;
            if p.len() != 2 {
                bail!("MAC {s:?}: expected six hex bytes");
            }
            *b = u8::from_str_radix(p, 16).with_context(|| format!("MAC {s:?}"))?;
        }
        if parts.next().is_some() {
            bail!("MAC {s:?}: expected six hex bytes");
        }
        if out[0] & 1 != 0 {
            bail!("MAC {s:?} is a group address; a client needs a unicast one");
        }
        Ok(Mac(out))
    }
}

/// A UDP datagram taken off the wire.
pub struct Received {
    pub src_mac: Mac,
    pub payload: Vec<u8>,
}

pub struct RawSocket {
    fd: OwnedFd,
    ifindex: i32,
}

fn last_os_error(what: &str) -> anyhow::Error {
    anyhow!("{what}: {}", std::io::Error::last_os_error())
}

impl RawSocket {
    pub fn open(iface: &str) -> Result<RawSocket> {
        let name = std::ffi::CString::new(iface).context("interface name")?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {iface:?} in this network namespace");
        }
        let ifindex = i32::try_from(ifindex).context("interface index")?;
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe {
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(ETH_P_ALL.to_be()))
        };
        if raw < 0 {
            return Err(last_os_error("socket(AF_PACKET) (needs CAP_NET_RAW)"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(last_os_error(&format!("bind to {iface}")));
        }
        let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mr.mr_ifindex = ifindex;
        mr.mr_type = libc::PACKET_MR_PROMISC as u16;
        // SAFETY: `mr` is a valid packet_mreq of the size given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mr as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as u32,
            )
        };
        if r < 0 {
            return Err(last_os_error("PACKET_ADD_MEMBERSHIP promiscuous"));
        }
        Ok(RawSocket { fd, ifindex })
    }

    fn send_frame(&self, frame: &[u8]) -> Result<()> {
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(frame.get(..6).context("short frame")?);
        // SAFETY: `frame` and `sll` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(last_os_error("sendto"));
        }
        Ok(())
    }

    /// Wait until `deadline` for one readable frame; None on timeout.
    fn recv_frame(&self, deadline: Instant, buf: &mut [u8]) -> Result<Option<usize>> {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(None);
            }
            bail!("poll: {e}");
        }
        if r == 0 {
            return Ok(None);
        }
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(last_os_error("recv"));
        }
        Ok(Some(n as usize))
    }

    /// Send one UDP datagram in an Ethernet frame built here, with both checksums.
    #[allow(clippy::too_many_arguments)]
    pub fn send_udp(
        &self,
        src_mac: Mac,
        dst_mac: Mac,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Result<()> {
        let udp_len = UDP_HDR + payload.len();
        let ip_len = IP_HDR + udp_len;
        if ip_len > 1500 {
            bail!("datagram of {} bytes does not fit an Ethernet frame", payload.len());
        }
        let mut f = Vec::with_capacity(ETH_HDR + ip_len);
        f.extend_from_slice(&dst_mac.0);
        f.extend_from_slice(&src_mac.0);
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let mut ip = [0u8; IP_HDR];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[8] = 64; // TTL
        ip[9] = 17; // UDP
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let c = checksum(&[&ip]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut udp = [0u8; UDP_HDR];
        udp[0..2].copy_from_slice(&sport.to_be_bytes());
        udp[2..4].copy_from_slice(&dport.to_be_bytes());
        udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&src.octets());
        pseudo[4..8].copy_from_slice(&dst.octets());
        pseudo[9] = 17;
        pseudo[10..12].copy_from_slice(&(udp_len as u16).to_be_bytes());
        let c = match checksum(&[&pseudo, &udp, payload]) {
            0 => 0xffff,
            c => c,
        };
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&udp);
        f.extend_from_slice(payload);
        self.send_frame(&f)
    }

    /// The next IPv4/UDP datagram to `dport` before `deadline` (other frames are skipped); None on timeout.
    pub fn recv_udp(&self, deadline: Instant, dport: u16) -> Result<Option<Received>> {
        let mut buf = vec![0u8; 65536];
        loop {
            let Some(n) = self.recv_frame(deadline, &mut buf)? else { return Ok(None) };
            if let Some(r) = parse_udp(buf.get(..n).unwrap_or(&[]), dport) {
                return Ok(Some(r));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// ARP for `target` from (`mac`, `ip`) until a reply comes or `wait` passes.
    pub fn arp_resolve(
        &self,
        mac: Mac,
        ip: Ipv4Addr,
        target: Ipv4Addr,
        wait: Duration,
        every: Duration,
    ) -> Result<Mac> {
        let mut f = Vec::with_capacity(42);
        f.extend_from_slice(&Mac::BROADCAST.0);
        f.extend_from_slice(&mac.0);
        f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet, IPv4, request
        f.extend_from_slice(&mac.0);
        f.extend_from_slice(&ip.octets());
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target.octets());
        let deadline = Instant::now() + wait;
        let mut next = Instant::now();
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= deadline {
                bail!("no ARP reply for {target} within {:.1} s", wait.as_secs_f64());
            }
            if now >= next {
                self.send_frame(&f)?;
                next = now + every;
            }
            let Some(n) = self.recv_frame(deadline.min(next), &mut buf)? else { continue };
            let fr = buf.get(..n).unwrap_or(&[]);
            if fr.len() < ETH_HDR + 28 || fr[12..14] != ETHERTYPE_ARP.to_be_bytes() {
                continue;
            }
            let a = &fr[ETH_HDR..];
            // reply, sender IP = target, target IP = us
            if a[6..8] == [0, 2] && a[14..18] == target.octets() && a[24..28] == ip.octets() {
                let mut m = [0u8; 6];
                m.copy_from_slice(&a[8..14]);
                return Ok(Mac(m));
            }
        }
    }
}

/// Ethernet/IPv4/UDP to `dport`, unfragmented; the payload cut to the UDP length.
fn parse_udp(f: &[u8], dport: u16) -> Option<Received> {
    if f.get(12..14)? != ETHERTYPE_IPV4.to_be_bytes() {
        return None;
    }
    let ip = f.get(ETH_HDR..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ihl < IP_HDR || *ip.get(9)? != 17 {
        return None;
    }
    let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    if frag & 0x3fff != 0 {
        return None;
    }
    let udp = ip.get(ihl..)?;
    if u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]) != dport {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    let payload = udp.get(UDP_HDR..len.max(UDP_HDR))?.to_vec();
    let mut src = [0u8; 6];
    src.copy_from_slice(f.get(6..12)?);
    Some(Received { src_mac: Mac(src), payload })
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts` (each of even length but the last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for p in parts {
        let mut chunks = p.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [b] = chunks.remainder() {
            sum += u32::from(*b) << 8;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A random transaction id from the kernel.
pub fn random_u32() -> Result<u32> {
    let mut b = [0u8; 4];
    // SAFETY: `b` is valid for 4 bytes of writes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 4 {
        return Err(last_os_error("getrandom"));
    }
    Ok(u32::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 §3 worked example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2, complement 0x220d.
        assert_eq!(checksum(&[&[0x00, 0x01, 0xf2, 0x03], &[0xf4, 0xf5, 0xf6, 0xf7]]), 0x220d);
    }

    #[test]
    fn mac_parse() {
        assert_eq!("02:00:00:00:00:0a".parse::<Mac>().unwrap().0, [2, 0, 0, 0, 0, 10]);
        assert!("02:00:00:00:00".parse::<Mac>().is_err());
        assert!("02:00:00:00:00:00:01".parse::<Mac>().is_err());
        assert!("01:00:5e:00:00:01".parse::<Mac>().is_err());
        assert!("02:00:00:00:00:zz".parse::<Mac>().is_err());
    }

    #[test]
    fn parse_udp_rejects_other_ports_and_fragments() {
        // A DHCP-sized frame to port 68, then the same with the more-fragments bit set.
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 31, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 255, 255, 255, 255]);
        f.extend_from_slice(&[0, 67, 0, 68, 0, 11, 0, 0, 0xaa, 0xbb, 0xcc]);
        let r = parse_udp(&f, 68).unwrap();
        assert_eq!(r.payload, [0xaa, 0xbb, 0xcc]);
        assert_eq!(r.src_mac.0, [2, 0, 0, 0, 0, 1]);
        assert!(parse_udp(&f, 67).is_none());
        f[ETH_HDR + 6] = 0x20;
        assert!(parse_udp(&f, 68).is_none());
        assert!(parse_udp(&f[..20], 68).is_none());
    }
}
