//! vn-wanem: a userspace WAN link emulator for vngate's end-to-end tests.
//!
//! This kernel has no `tc netem`, so WAN delay, jitter and loss between network namespaces come from here: a
//! process that bridges two Ethernet interfaces at L2 through AF_PACKET sockets and holds each frame for a
//! per-frame delay before forwarding it, dropping some with a seeded probability.
//!
//! The model of one direction of the link ([`link::Link`]) is sans-IO and deterministic: the caller passes the
//! time in, and all randomness comes from a seeded generator ([`rng::Rng`]), so a run is reproducible and the
//! scheduling is unit-tested without sockets. The binary (`src/main.rs`) is the thin I/O loop around it.
#![warn(missing_docs)]

pub mod link;
pub mod rng;
pub mod sock;
pub mod units;
