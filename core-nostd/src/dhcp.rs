//! DHCPv4 server (RFC 2131/2132; DESIGN.md "dhcp").
//! STUB: the interface the node calls; the helper replaces the bodies.

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, Ipv4Address};

use crate::config::Site;
use crate::queue::Cx;
use crate::wire::UdpMeta;

/// Longest client identifier kept (option 61).
pub const MAX_CLIENT_ID: usize = 64;
/// Longest hostname kept (one DNS label).
pub const MAX_HOSTNAME: usize = 63;

/// A binding as persisted by the runtime (remaining duration, never wall-clock time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The bound address.
    pub ip: Ipv4Address,
    /// Client hardware address.
    pub mac: EthernetAddress,
    /// Option 61 as received (empty if none).
    pub client_id: heapless::Vec<u8, MAX_CLIENT_ID>,
    /// Hostname registered in DNS (empty if none).
    pub hostname: heapless::String<MAX_HOSTNAME>,
    /// Lease time remaining when written.
    pub remaining: Duration,
}

/// Where the server gets addresses (DESIGN.md: a local pool now, the DHT-backed pre-claimed pool in P2).
pub trait Allocator {
    /// Whether this site may hand out `ip`.
    fn owns(&self, ip: Ipv4Address) -> bool;
}

/// Hostname lookups the DNS responder needs.
pub trait NameTable {
    /// The address registered under hostname `label` (lowercase).
    fn lookup(&self, label: &str) -> Option<Ipv4Address>;
    /// The hostname registered for `ip`.
    fn name_of(&self, ip: Ipv4Address) -> Option<&str>;
}

/// A local-pool allocator over the namespace's pool range.
pub struct LocalPool {
    range: crate::config::AddrRange,
}

impl LocalPool {
    /// The whole pool of `site`.
    pub fn new(site: &Site) -> Self {
        Self { range: site.params.pool }
    }
}

impl Allocator for LocalPool {
    fn owns(&self, ip: Ipv4Address) -> bool {
        self.range.contains(ip)
    }
}

/// The DHCP server with room for `LEASES` bindings and offers.
pub struct DhcpServer<const LEASES: usize> {
    _p: (),
}

/// 64 leases.
pub type DefaultDhcpServer = DhcpServer<64>;

impl<const LEASES: usize> Default for DhcpServer<LEASES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const LEASES: usize> DhcpServer<LEASES> {
    /// Empty server.
    pub fn new() -> Self {
        Self { _p: () }
    }
    /// A DHCP message (UDP payload) from the LAN or a relay.
    pub fn handle(
        &mut self,
        _cx: &mut Cx<'_>,
        _site: &Site,
        _alloc: &mut dyn Allocator,
        _meta: &UdpMeta,
        _payload: &[u8],
    ) {
    }
    /// A station showed it holds `ip` (ARP reply or announcement).
    pub fn on_address_seen(
        &mut self,
        _cx: &mut Cx<'_>,
        _site: &Site,
        _alloc: &mut dyn Allocator,
        _ip: Ipv4Address,
        _mac: EthernetAddress,
    ) {
    }
    /// Next deadline.
    pub fn poll_at(&self) -> Option<Instant> {
        None
    }
    /// Timers.
    pub fn handle_timeout(&mut self, _cx: &mut Cx<'_>, _site: &Site, _alloc: &mut dyn Allocator) {}
    /// The current bindings, for persistence.
    pub fn bindings(&self, _now: Instant) -> impl Iterator<Item = Binding> + '_ {
        core::iter::empty()
    }
    /// Reload a persisted binding at start: valid for one full lease from `now`.
    pub fn restore(&mut self, _now: Instant, _site: &Site, _binding: &Binding) -> bool {
        false
    }
}

impl<const LEASES: usize> NameTable for DhcpServer<LEASES> {
    fn lookup(&self, _label: &str) -> Option<Ipv4Address> {
        None
    }
    fn name_of(&self, _ip: Ipv4Address) -> Option<&str> {
        None
    }
}
