//! What the node tells its runtime: leases, conflicts, exhaustion. Drained with [`crate::Node::poll_event`].

use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, Ipv4Address};

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
    /// The service conflict ended (the other station went quiet); serving resumed.
    ServiceConflictCleared,
    /// The binding table changed: persist [`crate::Node::bindings`] and then call
    /// [`crate::Node::bindings_persisted`]; frames that depend on it are held until then.
    BindingsChanged,
}
