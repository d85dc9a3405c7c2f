//! Proxy ARP for the service block and remote VN addresses (RFC 1027; IPOP SC09 §4.1; DESIGN.md "arp").
//! STUB: the interface the node calls; the helper replaces the bodies.

use smoltcp::time::Instant;
use smoltcp::wire::{ArpRepr, EthernetAddress, Ipv4Address};

use crate::config::Site;
use crate::queue::Cx;

/// What the node must know after an ARP packet was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOutcome {
    /// Nothing further.
    Done,
    /// A station showed it holds `ip` at `mac` (a reply or an announcement): the DHCP server's
    /// pre-offer check must hear about it.
    Seen {
        /// The address in use.
        ip: Ipv4Address,
        /// Who uses it.
        mac: EthernetAddress,
    },
}

/// Proxy ARP state with `HOSTS` entries in the MAC->IP index.
pub struct ArpProxy<const HOSTS: usize> {
    _p: (),
}

/// 256 local hosts.
pub type DefaultArpProxy = ArpProxy<256>;

impl<const HOSTS: usize> Default for ArpProxy<HOSTS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const HOSTS: usize> ArpProxy<HOSTS> {
    /// Empty state.
    pub fn new() -> Self {
        Self { _p: () }
    }
    /// Handle an ARP packet from the LAN (Ethernet source `eth_src`).
    pub fn handle_arp(
        &mut self,
        _cx: &mut Cx<'_>,
        _site: &Site,
        _eth_src: EthernetAddress,
        _arp: &ArpRepr,
    ) -> ArpOutcome {
        ArpOutcome::Done
    }
    /// Handle a RARP frame payload from the LAN.
    pub fn handle_rarp(
        &mut self,
        _cx: &mut Cx<'_>,
        _site: &Site,
        _eth_src: EthernetAddress,
        _payload: &[u8],
    ) {
    }
    /// Learn that `mac` uses `ip` on the LAN (from DHCP or IP traffic).
    pub fn learn(&mut self, _now: Instant, _site: &Site, _mac: EthernetAddress, _ip: Ipv4Address) {}
    /// The MAC last seen using `ip` on the LAN.
    pub fn mac_of(&self, _ip: Ipv4Address) -> Option<EthernetAddress> {
        None
    }
    /// The IP last seen used by `mac` on the LAN.
    pub fn ip_of(&self, _mac: EthernetAddress) -> Option<Ipv4Address> {
        None
    }
    /// Whether DHCP, DNS and ARP may serve (false while another MAC claims .1 or .2).
    pub fn serving(&self) -> bool {
        true
    }
    /// Send gratuitous ARP for the service addresses (at start).
    pub fn announce(&mut self, _cx: &mut Cx<'_>, _site: &Site) {}
    /// Next deadline.
    pub fn poll_at(&self) -> Option<Instant> {
        None
    }
    /// Timers.
    pub fn handle_timeout(&mut self, _cx: &mut Cx<'_>, _site: &Site) {}
}
