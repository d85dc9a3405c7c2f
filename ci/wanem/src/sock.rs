//! AF_PACKET raw sockets, each bound to one interface: the emulator's only I/O.
//!
//! With `vnet_hdr` on (the default), every frame read or written starts with a 10-byte `virtio_net_hdr`
//! (PACKET_VNET_HDR). veth hands frames over with their TCP/UDP checksum unfinished (CHECKSUM_PARTIAL) and, with
//! TSO, as segmentation-offload super-frames larger than the MTU; the header carries exactly that state
//! (`NEEDS_CSUM` with the checksum's start and offset, the GSO type and size), so passing it through with the
//! bytes makes the kernel on the far side finish the checksum or segment as it would have. Without it, such frames
//! arrive with a wrong checksum (and are dropped by the receiver) or are too large to send, unless offloads are
//! turned off on the ends.

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Length of `struct virtio_net_hdr`, the prefix of every frame with `vnet_hdr` on.
pub const VNET_HDR_LEN: usize = 10;

// From <linux/if_packet.h> (a stable ABI); kept here so the build does not depend on which libc exports them.
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_OUTGOING: u8 = 4;
const ETH_P_ALL: u16 = 0x0003;

#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: libc::c_uint,
    tp_drops: libc::c_uint,
}

/// What one [`PacketSocket::recv`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    /// A frame of this many bytes is at the start of the buffer.
    Frame(usize),
    /// A frame larger than the buffer was discarded.
    Truncated,
    /// Nothing is waiting.
    Empty,
}

/// A raw socket that receives every frame arriving on one interface and sends frames out of it.
pub struct PacketSocket {
    fd: OwnedFd,
    name: String,
    vnet_hdr: bool,
    /// Frames the kernel dropped because our receive buffer was full (PACKET_STATISTICS resets on read).
    kernel_drops: u64,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the length passed.
    let ret = unsafe {
        libc::setsockopt(fd, level, name, (value as *const T).cast(), size_of::<T>() as libc::socklen_t)
    };
    check(ret).map(|_| ())
}

impl PacketSocket {
    /// Opens a socket on interface `ifname` (in the current network namespace), in promiscuous mode, not seeing
    /// the frames it sends itself.
    pub fn open(ifname: &str, vnet_hdr: bool) -> io::Result<Self> {
        let cname = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface {ifname}")));
        }
        let ifindex = ifindex as libc::c_int;
        // Protocol 0: the socket receives nothing until it is bound, so no frame of another interface slips in.
        // SAFETY: plain socket(2).
        let raw = check(unsafe {
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if vnet_hdr {
            setsockopt(raw, libc::SOL_PACKET, PACKET_VNET_HDR, &1 as &libc::c_int)?;
        }
        // Not ours to see again: without this, frames we send out of this interface would come back to us.
        // Older kernels lack the option; recv() also filters PACKET_OUTGOING.
        let _ = setsockopt(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1 as &libc::c_int);
        // A large receive buffer rides out bursts (super-frames are up to 64 KiB); FORCE needs CAP_NET_ADMIN.
        let rcvbuf: libc::c_int = 8 << 20;
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf).is_err() {
            let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf);
        }
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a sockaddr_ll of the length passed.
        check(unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        // Frames for the far side's MAC must reach us on a real NIC too (veth passes them anyway). Dropped
        // automatically when the socket closes.
        let mreq =
            PacketMreq { mr_ifindex: ifindex, mr_type: PACKET_MR_PROMISC, mr_alen: 0, mr_address: [0; 8] };
        setsockopt(raw, libc::SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)?;
        Ok(PacketSocket { fd, name: ifname.to_owned(), vnet_hdr, kernel_drops: 0 })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes of metadata before each frame (the virtio-net header, or none).
    pub fn meta_len(&self) -> usize {
        if self.vnet_hdr {
            VNET_HDR_LEN
        } else {
            0
        }
    }

    /// Reads one frame that arrived on the interface, without blocking.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Recv> {
        loop {
            // SAFETY: all-zero is a valid sockaddr_ll.
            let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` and `sll` are live and of the lengths passed. MSG_TRUNC returns the real length.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(Recv::Empty),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if sll.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            let n = n as usize;
            return Ok(if n > buf.len() { Recv::Truncated } else { Recv::Frame(n) });
        }
    }

    /// Sends one frame (with its virtio-net header when `vnet_hdr` is on) out of the interface. A full send
    /// buffer is waited for up to 10 ms.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let mut waited = false;
        loop {
            // SAFETY: `frame` is live and of the length passed; the socket is bound, so no address is needed.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n >= 0 {
                return if n as usize == frame.len() {
                    Ok(())
                } else {
                    Err(io::Error::new(io::ErrorKind::WriteZero, "short send"))
                };
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock if !waited => {
                    waited = true;
                    let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
                    // SAFETY: one live pollfd.
                    unsafe { libc::poll(&mut pfd, 1, 10) };
                }
                _ => return Err(e),
            }
        }
    }

    /// Frames the kernel dropped so far because the receive buffer was full.
    pub fn kernel_drops(&mut self) -> u64 {
        let mut st = TpacketStats::default();
        let mut len = size_of::<TpacketStats>() as libc::socklen_t;
        // SAFETY: `st` is live and of the length passed.
        let ret = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                (&mut st as *mut TpacketStats).cast(),
                &mut len,
            )
        };
        if ret == 0 {
            self.kernel_drops += u64::from(st.tp_drops);
        }
        self.kernel_drops
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
