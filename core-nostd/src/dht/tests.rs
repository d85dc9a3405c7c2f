//! Authorization at a storage node (module doc, "Authorization"): each refusal, its counter, and
//! that a refused write changes nothing stored. One storage node is the whole replica set here, so
//! every write and read goes to it; writers' messages are built by hand from signed records.

use ed25519_dalek::SigningKey;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use super::*;
use crate::cert::roles;

const NS: [u8; 16] = [5; 16];
const NOW: Instant = Instant::from_micros_const(10_000_000);

fn signer(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}

fn id(k: &SigningKey) -> NodeId {
    NodeId::from_public_key(k.verifying_key().as_bytes())
}

type Engine = Dht<heapless::Vec<NodeId, 8>>;

/// The storage node: member 0x01's key, alone in its table, verifying, subnet 10.250.0.0/16.
fn storage() -> Engine {
    let me = id(&signer(1));
    let mut cfg = Config::new(NS);
    cfg.storage = true;
    cfg.fresh = true;
    cfg.signing_key = Some([1; 32]);
    cfg.roles = roles::DHT;
    cfg.subnet = Some(Ipv4Cidr::new(Ipv4Address::new(10, 250, 0, 0), 16));
    let members: heapless::Vec<NodeId, 8> = core::iter::once(me).collect();
    Dht::new(Instant::ZERO, me, members, &cfg, 7)
}

/// Feeds `m` from `from` with `roles`; returns what the node sent back.
fn send(d: &mut Engine, from: NodeId, roles: u8, m: &Message) -> std::vec::Vec<Message> {
    let mut buf = [0xa5u8; MAX_MESSAGE];
    let n = m.encode(&mut buf).unwrap();
    d.handle_message(NOW, from, roles, &buf[..n]);
    let mut out = std::vec::Vec::new();
    while let Some((to, n)) = d.poll_message(NOW, &mut buf) {
        assert_eq!(to, from);
        out.push(Message::decode(&buf[..n]).unwrap());
    }
    out
}

fn write(d: &mut Engine, from: NodeId, roles: u8, w: Write) -> WriteResult {
    match send(d, from, roles, &Message::Write(w)).as_slice() {
        [Message::WriteReply(r)] => r.result,
        other => panic!("one write reply expected: {other:?}"),
    }
}

/// The storage node's answer to a read of `key`, as bytes (what a refused write must not change).
fn snapshot(d: &mut Engine, key: Key) -> std::vec::Vec<u8> {
    let out = send(d, NodeId([0x77; 32]), 0, &Message::Read(Read { rid: 9, key }));
    let mut buf = [0u8; MAX_MESSAGE];
    let n = out[0].encode(&mut buf).unwrap();
    buf[..n].to_vec()
}

fn name<const N: usize>(b: &[u8]) -> heapless::Vec<u8, N> {
    heapless::Vec::from_slice(b).unwrap()
}

/// A Create of `kind`/`name` at `gen` whose record `signer` signed as `owner`.
fn create(kind: Kind, n: &[u8], gen: u64, owner: NodeId, signer: &SigningKey) -> Write {
    let key = Key::derive(&NS, kind, n);
    let rec = SignedRecord::new(&NS, key, kind, owner, gen, &name(b"value"), Some(signer));
    Write { rid: 1, key, kind, name: name(n), op: WriteOp::Create { rec, ttl_ms: 60_000 } }
}

const IP: [u8; 4] = [10, 250, 0, 7];

/// Router A (key 2) owns ip:10.250.0.7 at generation 1, and its node record is live.
fn with_a_record() -> (Engine, Key, std::vec::Vec<u8>) {
    let mut d = storage();
    let a = signer(2);
    let w = create(Kind::Node, &id(&a).0, 1, id(&a), &a);
    assert_eq!(write(&mut d, id(&a), roles::ROUTER, w), WriteResult::Accepted { gen: 1 });
    let w = create(Kind::Ip, &IP, 1, id(&a), &a);
    assert_eq!(write(&mut d, id(&a), roles::ROUTER, w), WriteResult::Accepted { gen: 1 });
    let key = Key::derive(&NS, Kind::Ip, &IP);
    let snap = snapshot(&mut d, key);
    (d, key, snap)
}

/// `w` from `from` with `roles` is refused `Forbidden`, counted where `counter` says, and the
/// key reads the same after.
fn refused(w: Write, from: NodeId, roles: u8, counter: fn(&DhtStats) -> u64) {
    let (mut d, key, before) = with_a_record();
    let (keys, count) = (d.stored_keys(), counter(&d.stats()));
    let other = w.key;
    let other_before = snapshot(&mut d, other);
    assert_eq!(write(&mut d, from, roles, w), WriteResult::Forbidden);
    assert_eq!(counter(&d.stats()), count + 1);
    assert_eq!(snapshot(&mut d, key), before, "the stored record changed");
    assert_eq!(snapshot(&mut d, other), other_before, "the written key changed");
    assert_eq!(d.stored_keys(), keys);
}

#[test]
fn a_router_creates_and_readers_get_the_exact_signed_bytes() {
    let (mut d, key, _) = with_a_record();
    let a = signer(2);
    let sent = match create(Kind::Ip, &IP, 1, id(&a), &a).op {
        WriteOp::Create { rec, .. } => rec,
        _ => unreachable!(),
    };
    match send(&mut d, NodeId([9; 32]), 0, &Message::Read(Read { rid: 3, key })).as_slice() {
        [Message::ReadReply(ReadReply { result: ReadResult::Found(s), .. })] => {
            assert_eq!(s.rec.as_bytes(), sent.as_bytes());
            assert_eq!(s.rec.verify().unwrap().owner, id(&a));
        }
        other => panic!("{other:?}"),
    }
    // Renew by the owner goes through (TTL is not signed).
    let w =
        Write { rid: 2, key, kind: Kind::Ip, name: name(&IP), op: WriteOp::Renew { gen: 1, ttl_ms: 90_000 } };
    assert_eq!(write(&mut d, id(&a), roles::ROUTER, w), WriteResult::Accepted { gen: 1 });
}

#[test]
fn a_writer_without_the_role_is_refused() {
    let b = signer(3);
    // A DHT-only node may not claim an address, nor renew one.
    refused(create(Kind::Ip, &[10, 250, 0, 8], 1, id(&b), &b), id(&b), roles::DHT, |s| s.forbidden_role);
    refused(create(Kind::Host, b"pc1", 1, id(&b), &b), id(&b), 0, |s| s.forbidden_role);
    // `revoked` needs ADMIN; `bcast` is Append only and needs ROUTER.
    refused(create(Kind::Revoked, b"", 1, id(&b), &b), id(&b), roles::ROUTER, |s| s.forbidden_role);
    let key = Key::derive(&NS, Kind::Bcast, b"");
    let append = |kind| Write {
        rid: 4,
        key,
        kind,
        name: name(b""),
        op: WriteOp::Append { value: name(b"m"), ttl_ms: 1000 },
    };
    refused(append(Kind::Bcast), id(&b), roles::DHT | roles::HOST, |s| s.forbidden_role);
    refused(create(Kind::Bcast, b"", 1, id(&b), &b), id(&b), roles::ROUTER, |s| s.forbidden_role);
    refused(create(Kind::Unknown(99), b"x", 1, id(&b), &b), id(&b), roles::ALL, |s| s.forbidden_role);
    // With the role, the append is taken.
    let mut d = storage();
    assert_eq!(write(&mut d, id(&b), roles::ROUTER, append(Kind::Bcast)), WriteResult::Accepted { gen: 0 });
}

#[test]
fn a_forged_signature_is_refused() {
    let (b, mallory) = (signer(3), signer(4));
    // Mallory signs a record naming B as its owner: the key is not B's.
    refused(create(Kind::Ip, &[10, 250, 0, 8], 1, id(&b), &mallory), id(&b), roles::ROUTER, |s| {
        s.forbidden_signature
    });
    // An unsigned record.
    let mut w = create(Kind::Ip, &[10, 250, 0, 8], 1, id(&b), &b);
    if let WriteOp::Create { rec, .. } = &mut w.op {
        *rec = SignedRecord::new(&NS, w.key, Kind::Ip, id(&b), 1, &name(b"value"), None);
    }
    refused(w, id(&b), roles::ROUTER, |s| s.forbidden_signature);
}

#[test]
fn a_tampered_value_byte_is_refused() {
    let b = signer(3);
    let mut w = create(Kind::Ip, &[10, 250, 0, 8], 1, id(&b), &b);
    if let WriteOp::Create { rec, .. } = &mut w.op {
        let mut bytes = rec.as_bytes().to_vec();
        // The value is the body's last bytes, just before the 64-byte signature.
        let at = bytes.len() - 64 - 1;
        bytes[at] ^= 0x20;
        *rec = SignedRecord::from_bytes(&bytes).unwrap();
        assert_eq!(rec.parse().unwrap().value[..], b"valuE"[..]);
    }
    refused(w, id(&b), roles::ROUTER, |s| s.forbidden_signature);
}

#[test]
fn an_owner_that_is_not_the_writer_or_the_key_is_refused() {
    let (b, c) = (signer(3), signer(5));
    // B submits C's genuine record as its own Create.
    refused(create(Kind::Ip, &[10, 250, 0, 8], 1, id(&c), &c), id(&b), roles::ROUTER, |s| s.forbidden_record);
    // B writes node:<C>: a node record's key must be the writer's own id.
    refused(create(Kind::Node, &id(&c).0, 1, id(&b), &b), id(&b), roles::ALL, |s| s.forbidden_name);
    // Its own node record needs no role.
    let mut d = storage();
    let w = create(Kind::Node, &id(&b).0, 1, id(&b), &b);
    assert_eq!(write(&mut d, id(&b), 0, w), WriteResult::Accepted { gen: 1 });
    // A record of another key or namespace than the write's.
    let mut w = create(Kind::Ip, &[10, 250, 0, 8], 1, id(&b), &b);
    if let WriteOp::Create { rec, .. } = &mut w.op {
        *rec = SignedRecord::new(&[6; 16], w.key, Kind::Ip, id(&b), 1, &name(b"v"), Some(&b));
    }
    refused(w, id(&b), roles::ROUTER, |s| s.forbidden_record);
    let mut w = create(Kind::Ip, &[10, 250, 0, 8], 1, id(&b), &b);
    if let WriteOp::Create { rec, .. } = &mut w.op {
        let other = Key::derive(&NS, Kind::Ip, &[10, 250, 0, 9]);
        *rec = SignedRecord::new(&NS, other, Kind::Ip, id(&b), 1, &name(b"v"), Some(&b));
    }
    refused(w, id(&b), roles::ROUTER, |s| s.forbidden_record);
}

#[test]
fn an_ip_outside_the_subnet_is_refused() {
    let b = signer(3);
    for ip in [[10, 251, 0, 8], [10, 250, 0, 0], [10, 250, 255, 255], [192, 168, 1, 1]] {
        refused(create(Kind::Ip, &ip, 1, id(&b), &b), id(&b), roles::ROUTER, |s| s.forbidden_subnet);
    }
    // Not four bytes.
    refused(create(Kind::Ip, b"10.250.0.8", 1, id(&b), &b), id(&b), roles::ROUTER, |s| s.forbidden_subnet);
}

#[test]
fn a_name_that_does_not_derive_the_key_is_refused() {
    let b = signer(3);
    let mut w = create(Kind::Ip, &[10, 250, 0, 8], 1, id(&b), &b);
    w.name = name(&[10, 250, 0, 9]);
    refused(w, id(&b), roles::ROUTER, |s| s.forbidden_name);
    // The key of another kind for the same name.
    let mut w = create(Kind::Host, b"pc1", 1, id(&b), &b);
    w.key = Key::derive(&NS, Kind::Mac, b"pc1");
    refused(w, id(&b), roles::ROUTER, |s| s.forbidden_name);
}

#[test]
fn a_delete_by_another_router_is_refused_and_by_an_admin_taken() {
    let (b, admin) = (signer(3), signer(6));
    let (_, key, _) = with_a_record();
    let delete = |rid| Write { rid, key, kind: Kind::Ip, name: name(&IP), op: WriteOp::Delete { gen: 1 } };
    refused(delete(5), id(&b), roles::ROUTER, |s| s.forbidden_delete);
    // Also a Transfer or Renew of A's record by B gets nowhere (A's live record blocks it).
    let (mut d, _, before) = with_a_record();
    let renew =
        Write { rid: 6, key, kind: Kind::Ip, name: name(&IP), op: WriteOp::Renew { gen: 1, ttl_ms: 1 } };
    assert!(matches!(write(&mut d, id(&b), roles::ROUTER, renew), WriteResult::Conflict(_)));
    assert_eq!(snapshot(&mut d, key), before);
    // An admin deletes it; the key then reads absent above the deleted generation.
    assert_eq!(write(&mut d, id(&admin), roles::ADMIN, delete(7)), WriteResult::Accepted { gen: 1 });
    match send(&mut d, NodeId([9; 32]), 0, &Message::Read(Read { rid: 3, key })).as_slice() {
        [Message::ReadReply(ReadReply { result: ReadResult::Absent { floor: 2 }, .. })] => {}
        other => panic!("{other:?}"),
    }
    // The owner's own delete is taken too.
    let (mut d, _, _) = with_a_record();
    assert_eq!(write(&mut d, id(&signer(2)), roles::ROUTER, delete(8)), WriteResult::Accepted { gen: 1 });
}

#[test]
fn a_transfer_carries_the_new_owners_record() {
    let (a, b) = (signer(2), signer(3));
    let (mut d, key, before) = with_a_record();
    let transfer = |rec| Write {
        rid: 10,
        key,
        kind: Kind::Ip,
        name: name(&IP),
        op: WriteOp::Transfer { gen: 1, rec, ttl_ms: 60_000 },
    };
    // A record at the wrong generation is refused; one A signed for B fails B's signature.
    let wrong = SignedRecord::new(&NS, key, Kind::Ip, id(&b), 5, &name(b"v"), Some(&b));
    assert_eq!(write(&mut d, id(&a), roles::ROUTER, transfer(wrong)), WriteResult::Forbidden);
    let forged = SignedRecord::new(&NS, key, Kind::Ip, id(&b), 2, &name(b"v"), Some(&a));
    assert_eq!(write(&mut d, id(&a), roles::ROUTER, transfer(forged)), WriteResult::Forbidden);
    assert_eq!((d.stats().forbidden_record, d.stats().forbidden_signature), (1, 1));
    assert_eq!(snapshot(&mut d, key), before);
    let good = SignedRecord::new(&NS, key, Kind::Ip, id(&b), 2, &name(b"v"), Some(&b));
    assert_eq!(
        write(&mut d, id(&a), roles::ROUTER, transfer(good.clone())),
        WriteResult::Accepted { gen: 2 }
    );
    match send(&mut d, NodeId([9; 32]), 0, &Message::Read(Read { rid: 3, key })).as_slice() {
        [Message::ReadReply(ReadReply { result: ReadResult::Found(s), .. })] => assert_eq!(s.rec, good),
        other => panic!("{other:?}"),
    }
}

/// A client of one storage node reads ip:10.250.0.7 and gets `rec` as the answer: what it counts
/// and how the read ends.
fn read_answered_with(rec: SignedRecord) -> (DhtStats, OpResult) {
    let me = id(&signer(8));
    let replica = id(&signer(1));
    let mut cfg = Config::new(NS);
    cfg.signing_key = Some([8; 32]);
    let members: heapless::Vec<NodeId, 8> = core::iter::once(replica).collect();
    let mut c: Engine = Dht::new(Instant::ZERO, me, members, &cfg, 3);
    let key = Key::derive(&NS, Kind::Ip, &IP);
    c.read(NOW, key, Kind::Ip).unwrap();
    let mut buf = [0u8; MAX_MESSAGE];
    let (_, n) = c.poll_message(NOW, &mut buf).unwrap();
    let Ok(Message::Read(r)) = Message::decode(&buf[..n]) else { panic!() };
    let reply =
        Message::ReadReply(ReadReply { rid: r.rid, result: ReadResult::Found(Stored { rec, ttl_ms: 1000 }) });
    let n = reply.encode(&mut buf).unwrap();
    c.handle_message(NOW, replica, roles::DHT, &buf[..n]);
    let mut t = NOW;
    loop {
        if let Some(r) = c.poll_result() {
            return (c.stats(), r);
        }
        t += Duration::from_millis(100);
        c.handle_timeout(t);
        while c.poll_message(t, &mut buf).is_some() {}
    }
}

#[test]
fn a_reader_drops_records_that_do_not_verify() {
    let a = signer(2);
    let key = Key::derive(&NS, Kind::Ip, &IP);
    let good = SignedRecord::new(&NS, key, Kind::Ip, id(&a), 1, &name(b"v"), Some(&a));
    let (stats, r) = read_answered_with(good.clone());
    assert_eq!(stats.bad_records, 0);
    assert!(matches!(r.outcome, Ok(Outcome::Found(RecordView { gen: 1, .. }))), "{r:?}");
    // A flipped signature bit; a genuine record of another key (a replica may not answer with it);
    // an unsigned record.
    let mut bytes = good.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let other = Key::derive(&NS, Kind::Ip, &[10, 250, 0, 9]);
    for rec in [
        SignedRecord::from_bytes(&bytes).unwrap(),
        SignedRecord::new(&NS, other, Kind::Ip, id(&a), 1, &name(b"v"), Some(&a)),
        SignedRecord::new(&NS, key, Kind::Ip, id(&a), 1, &name(b"v"), None),
    ] {
        let (stats, r) = read_answered_with(rec);
        assert_eq!(stats.bad_records, 1);
        // Dropped: no answer, so the read ends without a record (timeout), never with the bad one.
        assert_eq!(r.outcome, Err(OpError::Timeout));
    }
}
