//! Fuzz entry point for DHT messages: decode -> encode -> decode must agree, and a storage engine
//! fed the bytes (from a member and from a stranger) must not panic.

use crate::dht::{Config, Dht, Message, MAX_MESSAGE};
use crate::id::NodeId;
use smoltcp::time::Instant;

/// Fuzz entry point (see the module doc).
pub fn dht(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        let mut buf = [0u8; MAX_MESSAGE];
        let n = m.encode(&mut buf).expect("a decoded message re-encodes");
        assert_eq!(Message::decode(&buf[..n]).as_ref(), Ok(&m));
    }
    let members: heapless::Vec<NodeId, 8> = (0..6u8).map(|i| NodeId([i; 32])).collect();
    let mut cfg = Config::new([1; 16]);
    cfg.storage = true;
    cfg.fresh = true;
    let mut d: Dht<_, 4, 4, 16> = Dht::new(Instant::ZERO, NodeId([0; 32]), members, &cfg, 1);
    let now = Instant::from_millis(1000);
    d.handle_message(now, NodeId([1; 32]), data);
    d.handle_message(now, NodeId([0xee; 32]), data);
    let mut buf = [0u8; MAX_MESSAGE];
    while d.poll_message(now, &mut buf).is_some() {}
    d.handle_timeout(Instant::from_millis(5000));
    while d.poll_message(now, &mut buf).is_some() {}
}
