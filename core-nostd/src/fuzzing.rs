//! Fuzz entry points, shared by the cargo-fuzz targets in `fuzz/` and by the regression test that
//! replays their corpora (`tests/fuzz_corpus.rs`) in the normal test run. Each one parses untrusted bytes,
//! re-emits what parsed and parses that again; any panic is a bug.
#![allow(missing_docs)]

mod cert;
mod control;
mod dhcp;
#[cfg(feature = "alloc")]
mod dht;
mod dns;
mod handshake;
mod node_lan;
mod overlay;

pub use cert::cert;
pub use control::control;
pub use dhcp::dhcp;
#[cfg(feature = "alloc")]
pub use dht::dht;
pub use dns::dns;
pub use handshake::{
    handshake, target as handshake_target, INITIATOR_SECRET, NAMESPACE, RESPONDER_SECRET, SEP,
};
pub use node_lan::node_lan;
pub use overlay::overlay;
