//! vn-core: every protocol decision of vngate, with no I/O, no clock and no OS randomness.
//!
//! One [`Node`] is one VN endpoint (DESIGN.md "vn-core: the node"). The runtime (the Linux daemon,
//! the embassy runner, the simulator) feeds it frames and datagrams with the current monotonic time,
//! drains [`Node::poll_transmit`] and [`Node::poll_event`], and calls [`Node::handle_timeout`] at
//! [`Node::poll_at`]. Capacities are const generics; nothing allocates unless the `alloc` feature is on.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(all(feature = "log", feature = "defmt"))]
compile_error!("the `log` and `defmt` features are mutually exclusive");

#[cfg(feature = "alloc")]
extern crate alloc;

#[macro_use]
mod fmt;

pub mod arp;
pub mod bcast;
pub mod cert;
pub mod clock;
pub mod config;
pub mod csprng;
pub mod dhcp;
pub mod dht;
pub mod dns;
pub mod encap;
pub mod event;
#[doc(hidden)]
pub mod fuzzing;
pub mod id;
pub mod node;
pub mod overlay;
pub mod peers;
pub mod queue;
pub mod rand;
pub mod secure;
pub mod session;
pub mod statics;
pub mod stats;
pub mod wire;

pub use config::{ConfigError, Mode, NamespaceParams, Site};
pub use event::Event;
pub use id::NodeId;
pub use node::Node;
pub use overlay::OverlayConfig;
pub use queue::Transmit;
pub use smoltcp::time::{Duration, Instant};
pub use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
