//! The VN's DNS responder at `.1` (IPOP SC09 §4.3; DESIGN.md "dns").
//! STUB: the interface the node calls; the helper replaces the bodies.

use core::net::SocketAddr;

use smoltcp::time::Instant;

use crate::config::Site;
use crate::dhcp::NameTable;
use crate::queue::Cx;
use crate::wire::UdpMeta;

/// The DNS responder with room for `PENDING` forwarded queries.
pub struct DnsServer<const PENDING: usize> {
    _p: (),
}

/// 32 forwarded queries in flight.
pub type DefaultDnsServer = DnsServer<32>;

impl<const PENDING: usize> Default for DnsServer<PENDING> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const PENDING: usize> DnsServer<PENDING> {
    /// Empty responder.
    pub fn new() -> Self {
        Self { _p: () }
    }
    /// A query (UDP payload) to `.1:53` from the LAN.
    pub fn handle_query(
        &mut self,
        _cx: &mut Cx<'_>,
        _site: &Site,
        _names: &dyn NameTable,
        _meta: &UdpMeta,
        _payload: &[u8],
    ) {
    }
    /// An answer from the upstream resolver to our `local_port`.
    pub fn handle_upstream(
        &mut self,
        _cx: &mut Cx<'_>,
        _site: &Site,
        _from: SocketAddr,
        _local_port: u16,
        _payload: &[u8],
    ) {
    }
    /// Next deadline.
    pub fn poll_at(&self) -> Option<Instant> {
        None
    }
    /// Timers.
    pub fn handle_timeout(&mut self, _cx: &mut Cx<'_>, _site: &Site) {}
}
