//! Fuzz entry point for DHT messages: decode -> encode -> decode must agree, and a verifying storage
//! engine fed the bytes (from a router member, from a stranger without roles, from an admin) must not
//! panic. Then signed records: a Create of `ip:10.250.0.7` signed by the router (seed 0x02) with a
//! value taken from the input is accepted; the same record with one byte flipped (position from the
//! input) is refused and leaves what is stored unchanged.

use crate::cert::roles;
use crate::dht::{
    Config, Dht, Key, Kind, Message, Name, Read, SignedRecord, Value, Write, WriteOp, WriteResult,
    MAX_MESSAGE,
};
use crate::id::NodeId;
use ed25519_dalek::SigningKey;
use smoltcp::time::Instant;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

const NS: [u8; 16] = [1; 16];

type Engine = Dht<heapless::Vec<NodeId, 8>, 4, 4, 16>;

/// Feeds `m` and returns the first reply's bytes (the engine's outbox drained).
fn send(
    d: &mut Engine,
    now: Instant,
    from: NodeId,
    roles: u8,
    m: &Message,
) -> Option<heapless::Vec<u8, MAX_MESSAGE>> {
    let mut buf = [0u8; MAX_MESSAGE];
    let n = m.encode(&mut buf).expect("fits MAX_MESSAGE");
    d.handle_message(now, from, roles, &buf[..n]);
    let mut first = None;
    while let Some((_, n)) = d.poll_message(now, &mut buf) {
        first.get_or_insert_with(|| heapless::Vec::from_slice(&buf[..n]).unwrap_or_default());
    }
    first
}

/// Fuzz entry point (see the module doc).
pub fn dht(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        let mut buf = [0u8; MAX_MESSAGE];
        let n = m.encode(&mut buf).expect("a decoded message re-encodes");
        assert_eq!(Message::decode(&buf[..n]).as_ref(), Ok(&m));
    }
    let router = SigningKey::from_bytes(&[2; 32]);
    let router_id = NodeId::from_public_key(router.verifying_key().as_bytes());
    let members: heapless::Vec<NodeId, 8> = (0..6u8).map(|i| NodeId([i; 32])).collect();
    let mut cfg = Config::new(NS);
    cfg.storage = true;
    cfg.fresh = true;
    cfg.subnet = Some(Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16));
    cfg.roles = roles::DHT;
    let mut d: Engine = Dht::new(Instant::ZERO, NodeId([0; 32]), members, &cfg, 1);
    let now = Instant::from_millis(1000);
    d.handle_message(now, router_id, roles::ROUTER, data);
    d.handle_message(now, NodeId([0xee; 32]), 0, data);
    d.handle_message(now, NodeId([1; 32]), roles::ALL, data);
    let mut buf = [0u8; MAX_MESSAGE];
    while d.poll_message(now, &mut buf).is_some() {}

    // Signed records, on an engine that is the only replica (so every write lands there).
    let me = NodeId([0; 32]);
    let one: heapless::Vec<NodeId, 8> = core::iter::once(me).collect();
    let mut s: Engine = Dht::new(Instant::ZERO, me, one, &cfg, 2);
    let ip = [10, 250, 0, 7];
    let key = Key::derive(&NS, Kind::Ip, &ip);
    let value = Value::from_slice(data.get(..data.len().min(96)).unwrap_or_default()).unwrap_or_default();
    let rec = SignedRecord::new(&NS, key, Kind::Ip, router_id, 1, &value, Some(&router));
    let name = Name::from_slice(&ip).unwrap_or_default();
    let create = |rec| Write {
        rid: 1,
        key,
        kind: Kind::Ip,
        name: name.clone(),
        op: WriteOp::Create { rec, ttl_ms: 60_000 },
    };
    let read = Message::Read(Read { rid: 2, key });
    let empty = send(&mut s, now, NodeId([9; 32]), 0, &read);
    // A flipped byte anywhere in the record (position and bit from the input) must be refused.
    let bytes = rec.as_bytes();
    let at = data.first().map_or(0, |b| usize::from(*b)) % bytes.len();
    let bit = data.get(1).map_or(1, |b| 1u8 << (b % 8));
    let mut tampered = heapless::Vec::<u8, { crate::dht::SIGNED_MAX }>::from_slice(bytes).unwrap_or_default();
    if let Some(b) = tampered.get_mut(at) {
        *b ^= bit;
    }
    if let Some(bad) = SignedRecord::from_bytes(&tampered) {
        let reply = send(&mut s, now, router_id, roles::ROUTER, &Message::Write(create(bad)));
        let refused = reply.and_then(|r| match Message::decode(&r) {
            Ok(Message::WriteReply(w)) => Some(w.result),
            _ => None,
        });
        assert_eq!(refused, Some(WriteResult::Forbidden), "a tampered record at byte {at} was taken");
        assert_eq!(send(&mut s, now, NodeId([9; 32]), 0, &read), empty, "a refused write changed the store");
    }
    // The genuine record from a node without the router role is refused too; from the router, taken.
    let reply = send(&mut s, now, router_id, roles::DHT, &Message::Write(create(rec.clone())));
    assert!(
        matches!(reply.map(|r| Message::decode(&r)), Some(Ok(Message::WriteReply(w))) if w.result == WriteResult::Forbidden)
    );
    assert_eq!(send(&mut s, now, NodeId([9; 32]), 0, &read), empty);
    let reply = send(&mut s, now, router_id, roles::ROUTER, &Message::Write(create(rec)));
    assert!(
        matches!(reply.map(|r| Message::decode(&r)), Some(Ok(Message::WriteReply(w))) if w.result == WriteResult::Accepted { gen: 1 })
    );
    // The fuzzed bytes as a write from a stranger must not change the stored record.
    let stored = send(&mut s, now, NodeId([9; 32]), 0, &read);
    s.handle_message(now, NodeId([0xee; 32]), 0, data);
    while s.poll_message(now, &mut buf).is_some() {}
    assert_eq!(send(&mut s, now, NodeId([9; 32]), 0, &read), stored, "a stranger changed the record");

    d.handle_timeout(Instant::from_millis(5000));
    while d.poll_message(now, &mut buf).is_some() {}
}
