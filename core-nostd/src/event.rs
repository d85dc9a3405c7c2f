//! What the node tells its runtime: leases, conflicts, exhaustion. Drained with [`crate::Node::poll_event`].

use core::net::SocketAddr;

use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, Ipv4Address};

use crate::id::NodeId;

/// Something the runtime (and through it the admin) should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A DHCP lease was granted or renewed to a new client; the binding table changed.
    LeaseGranted {
        /// The address bound.
        ip: Ipv4Address,
        /// The client's hardware address.
        mac: EthernetAddress,
        /// Lease duration.
        lease: Duration,
    },
    /// A client released its lease, or the lease expired.
    LeaseEnded {
        /// The address freed.
        ip: Ipv4Address,
        /// The client's hardware address.
        mac: EthernetAddress,
    },
    /// A client declined an address (it found it in use); the address is quarantined.
    AddressDeclined {
        /// The quarantined address.
        ip: Ipv4Address,
        /// The client that declined.
        mac: EthernetAddress,
    },
    /// The pool has no free address: DISCOVERs go unanswered (RFC 2131) until one frees up.
    PoolExhausted,
    /// Another station answered for an address we were about to offer; it was skipped.
    AddressInUse {
        /// The address found in use.
        ip: Ipv4Address,
        /// The station using it.
        mac: EthernetAddress,
    },
    /// Another MAC claims a service address (.1 or .2): serving DHCP, DNS and ARP stopped.
    ServiceConflict {
        /// The service address claimed.
        ip: Ipv4Address,
        /// The MAC that claimed it.
        mac: EthernetAddress,
    },
    /// A static address (DESIGN.md "static claims") seen at `mac` on this LAN is owned by another
    /// node: the claim was refused, or lost later. Frames from it are not tunnelled.
    StaticConflict {
        /// The static address.
        ip: Ipv4Address,
        /// The local host using it.
        mac: EthernetAddress,
        /// The node that holds it (`None`: the claim lapsed and the owner is not known).
        owner: Option<NodeId>,
    },
    /// The service conflict ended (the other station went quiet); serving resumed.
    ServiceConflictCleared,
    /// The binding table changed: persist [`crate::Node::bindings`] and then call
    /// [`crate::Node::bindings_persisted`]; frames that depend on it are held until then.
    BindingsChanged,
    /// An overlay peer answered (its first counted receive, or its first after being down).
    PeerUp {
        /// The peer's node id.
        id: NodeId,
        /// Where it answered from.
        endpoint: SocketAddr,
    },
    /// An overlay peer stopped answering probes (or was removed while up).
    PeerDown {
        /// The peer's node id.
        id: NodeId,
    },
}

impl core::fmt::Display for Event {
    /// The variant's name first (logs are grepped for it), then its fields as `key=value`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::LeaseGranted { ip, mac, lease } => {
                write!(f, "LeaseGranted ip={ip} mac={mac} lease={}s", lease.secs())
            }
            Self::LeaseEnded { ip, mac } => write!(f, "LeaseEnded ip={ip} mac={mac}"),
            Self::AddressDeclined { ip, mac } => write!(f, "AddressDeclined ip={ip} mac={mac}"),
            Self::PoolExhausted => f.write_str("PoolExhausted"),
            Self::AddressInUse { ip, mac } => write!(f, "AddressInUse ip={ip} mac={mac}"),
            Self::ServiceConflict { ip, mac } => write!(f, "ServiceConflict ip={ip} mac={mac}"),
            Self::StaticConflict { ip, mac, owner: Some(o) } => {
                write!(f, "StaticConflict ip={ip} mac={mac} owner={o}")
            }
            Self::StaticConflict { ip, mac, owner: None } => {
                write!(f, "StaticConflict ip={ip} mac={mac} owner=unknown")
            }
            Self::ServiceConflictCleared => f.write_str("ServiceConflictCleared"),
            Self::BindingsChanged => f.write_str("BindingsChanged"),
            Self::PeerUp { id, endpoint } => write!(f, "PeerUp id={id} endpoint={endpoint}"),
            Self::PeerDown { id } => write!(f, "PeerDown id={id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_starts_with_the_variant_name() {
        let e = Event::LeaseGranted {
            ip: Ipv4Address::new(10, 250, 0, 9),
            mac: EthernetAddress([2, 0, 0, 0, 0, 9]),
            lease: Duration::from_secs(600),
        };
        assert_eq!(e.to_string(), "LeaseGranted ip=10.250.0.9 mac=02-00-00-00-00-09 lease=600s");
        assert_eq!(Event::PoolExhausted.to_string(), "PoolExhausted");
    }
}
