//! DHT messages: one version byte, then the message in postcard (serde). The overlay's control
//! framing (message type, session) is added by the transport; this is the payload.
//!
//! The writer is the authenticated sender of the `Write` (the peer session says who it is and its
//! certified roles). Records travel as their owner's exact signed bytes ([`SignedRecord`]): in
//! Create and Transfer writes, read replies and copies. Every write carries the key's name, so a
//! replica can recompute the key and check the name against the writer's rights.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use super::key::{Key, Kind};
use super::record::SignedRecord;
use crate::id::NodeId;

/// The version byte every DHT message starts with (2: signed records and names in writes).
pub const VERSION: u8 = 2;
/// The longest name a write carries (a DNS label is at most 63 bytes, an address 4, an id 32).
pub const NAME_MAX: usize = 64;
/// The longest record value (an `ip:` record's client-id and chaddr, a `node:` record's endpoints).
pub const MAX_VALUE: usize = 96;
/// The longest `bcast` member value.
pub const MAX_MEMBER: usize = 24;
/// The most members a `bcast` set holds at a replica (an Append beyond it is refused `Full`),
/// and so the most a read reply carries.
pub const BCAST_MAX: usize = 16;
/// Entries per sync chunk.
pub const SYNC_ENTRIES: usize = 4;
/// Storage nodes a `FindNodeReply` names at most.
pub const FOUND: usize = 8;
/// The largest encoded message, version byte included: buffers of this size always suffice. A sync
/// chunk of [`SYNC_ENTRIES`] signed records of the longest kind is the largest (about 1370 bytes);
/// with the control framing and a session's overhead it stays inside a 1472-byte UDP payload.
pub const MAX_MESSAGE: usize = 1400;

/// A record value.
pub type Value = Vec<u8, MAX_VALUE>;
/// A `bcast` member value.
pub type MemberValue = Vec<u8, MAX_MEMBER>;
/// A key's name as a write carries it.
pub type Name = Vec<u8, NAME_MAX>;

mod id_bytes {
    use crate::id::NodeId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
        id.0.serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        <[u8; 32]>::deserialize(d).map(NodeId)
    }
}

/// One DHT message.
// No heap to box the large variants into: messages are sized for the largest (MAX_MESSAGE).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Client -> replica: a compare-and-set write or an append.
    Write(Write),
    /// Replica -> client: what the replica did with a `Write`.
    WriteReply(WriteReply),
    /// Client -> replica: read a key.
    Read(Read),
    /// Replica -> client: the replica's record for a key.
    ReadReply(ReadReply),
    /// A storage node that lost its state asks the others for the records it replicates.
    SyncRequest(SyncRequest),
    /// Part of the answer to a `SyncRequest`.
    SyncChunk(SyncChunk),
    /// Kademlia: ask a storage node for the storage nodes it knows closest to a target.
    FindNode(FindNode),
    /// Kademlia: the answer to a `FindNode`.
    FindNodeReply(FindNodeReply),
}

/// A write to one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// Request id, echoed in the reply; new for every attempt.
    pub rid: u32,
    /// The key.
    pub key: Key,
    /// The key's kind.
    pub kind: Kind,
    /// The key's name (`Key::derive(namespace, kind, name) == key`, checked by the replica): the
    /// 4 address bytes of an `ip:` key, the label of a `host:` key, the id of a `node:` key.
    pub name: Name,
    /// What to do.
    pub op: WriteOp,
}

/// The compare-and-set operations, on (owner = sender, generation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// Own the key at the record's generation `gen`: succeeds when absent, expired or already ours
    /// at `gen`, and `gen` is above every generation the replica has seen for the key (or equal to
    /// ours). The record is signed by the writer (its owner).
    Create {
        /// The record (owner = the writer).
        rec: SignedRecord,
        /// Time to live, in milliseconds, from when the replica applies it.
        ttl_ms: u32,
    },
    /// Refresh the TTL of our record at `gen`.
    Renew {
        /// Our generation.
        gen: u64,
        /// New time to live (ms).
        ttl_ms: u32,
    },
    /// Hand our record at `gen` to the owner of `rec`, whose generation is `gen + 1`: the new
    /// owner signed it (it asked for the key) and the writer, the current owner, submits it.
    Transfer {
        /// Our generation.
        gen: u64,
        /// The new owner's record.
        rec: SignedRecord,
        /// Time to live (ms).
        ttl_ms: u32,
    },
    /// Remove our record at `gen`, leaving a tombstone at `gen + 1` for the longest TTL, so a read
    /// quorum that meets a replica which missed the delete still answers Absent.
    Delete {
        /// Our generation.
        gen: u64,
    },
    /// Add (or refresh) our member `value` in the key's member set; `ttl_ms` 0 removes it.
    Append {
        /// The member value.
        value: MemberValue,
        /// Time to live (ms).
        ttl_ms: u32,
    },
    /// Undo our partial Create at `gen` (an attempt that fell short of `W`). Unlike Delete it leaves
    /// no tombstone: the key reads as whatever the other replicas hold.
    Rollback {
        /// The failed attempt's generation.
        gen: u64,
    },
}

/// An owner and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The owner.
    #[serde(with = "id_bytes")]
    pub owner: NodeId,
    /// The generation.
    pub gen: u64,
}

/// The answer to a `Write`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReply {
    /// The `Write`'s request id.
    pub rid: u32,
    /// What happened.
    pub result: WriteResult,
}

/// What a replica did with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteResult {
    /// Applied; the record now has generation `gen`.
    Accepted {
        /// The record's generation.
        gen: u64,
    },
    /// Refused: another owner's record is live.
    Conflict(Stamp),
    /// Refused: a Create's generation is not above `floor`, the highest this replica has seen.
    Stale {
        /// The highest generation seen for the key.
        floor: u64,
    },
    /// Refused: the record is not ours at the generation given (absent, expired or other).
    Mismatch {
        /// The live record, if any.
        current: Option<Stamp>,
    },
    /// This replica is still copying the key range (it joined or lost its state): not counted.
    NotReady,
    /// This node is not a replica of the key in its member table.
    NotReplica,
    /// The replica's store or the key's member set is full.
    Full,
    /// The owner's liveness could not be checked (no read quorum for its `node:` record).
    Unavailable,
    /// Refused: the writer may not make this write (role, name, subnet, signature, record fields,
    /// or a delete of another owner's record without the admin role). Counted in `DhtStats`.
    Forbidden,
}

/// Read a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Read {
    /// Request id, echoed in the reply.
    pub rid: u32,
    /// The key.
    pub key: Key,
}

/// A replica's answer to a `Read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReply {
    /// The `Read`'s request id.
    pub rid: u32,
    /// The replica's record.
    pub result: ReadResult,
}

/// A replica's record for a key.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadResult {
    /// The live record with the highest generation.
    Found(Stored),
    /// No live record; `floor` is the highest generation seen.
    Absent {
        /// The highest generation seen for the key.
        floor: u64,
    },
    /// The key's member set (Append keys).
    Members(Vec<MemberView, BCAST_MAX>),
    /// Still copying the key range: not counted.
    NotReady,
    /// Not a replica of the key.
    NotReplica,
}

/// A record on the wire: its owner's exact signed bytes and the replica's remaining TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The record as signed.
    pub rec: SignedRecord,
    /// Remaining time to live (ms).
    pub ttl_ms: u32,
}

/// A record as a reader sees it once checked, with its remaining time to live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordView {
    /// The owner.
    #[serde(with = "id_bytes")]
    pub owner: NodeId,
    /// The generation.
    pub gen: u64,
    /// The kind.
    pub kind: Kind,
    /// The value.
    pub value: Value,
    /// Remaining time to live (ms).
    pub ttl_ms: u32,
}

/// A member of an Append set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Who appended it.
    #[serde(with = "id_bytes")]
    pub owner: NodeId,
    /// The member value.
    pub value: MemberValue,
    /// Remaining time to live (ms).
    pub ttl_ms: u32,
}

/// Ask for the records of every key whose replica set holds the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Echoed in the chunks.
    pub nonce: u32,
    /// The digest of the sender's member table: only a node with the same table answers, so a
    /// node that has not learned a change yet never sends a copy that leaves keys out.
    pub view: u64,
}

/// Part of the answer to a `SyncRequest`, numbered from 0; the last one says `done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncChunk {
    /// The request's nonce.
    pub nonce: u32,
    /// Chunk number.
    pub seq: u32,
    /// Whether this is the last chunk.
    pub done: bool,
    /// The entries.
    pub entries: Vec<SyncEntry, SYNC_ENTRIES>,
}

/// One copied item.
// No heap to box the record into: chunks are sized for the largest (MAX_MESSAGE).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncEntry {
    /// A live record and the key's generation floor.
    Record {
        /// The key.
        key: Key,
        /// The highest generation seen.
        floor: u64,
        /// The record.
        rec: Stored,
    },
    /// No live record, only the generation floor (kept so generations never go back).
    Floor {
        /// The key.
        key: Key,
        /// The highest generation seen.
        floor: u64,
    },
    /// A member of an Append set.
    Member {
        /// The key.
        key: Key,
        /// The member.
        member: MemberView,
    },
}

/// Ask for the storage nodes the receiver knows closest to `target` (a key, or a node id as bytes:
/// then it is also a liveness check of the receiver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindNode {
    /// Request id, echoed in the reply (the same for every request of one lookup).
    pub rid: u32,
    /// The target.
    pub target: Key,
    /// Whether the sender is a storage node (the receiver then learns it into its routing table).
    pub storage: bool,
}

/// The storage nodes the sender knows closest to the target, closest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindNodeReply {
    /// The `FindNode`'s request id.
    pub rid: u32,
    /// Node ids, at most [`FOUND`].
    pub nodes: Vec<[u8; 32], FOUND>,
}

/// Why bytes are not a DHT message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// No bytes at all.
    Empty,
    /// A version this node does not speak.
    Version,
    /// The postcard body does not parse, or bytes are left over.
    Malformed,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DecodeError::Empty => "empty DHT message",
            DecodeError::Version => "unknown DHT message version",
            DecodeError::Malformed => "malformed DHT message",
        })
    }
}

impl core::error::Error for DecodeError {}

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The buffer is too small (one of [`MAX_MESSAGE`] bytes always suffices).
    BufferTooSmall,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("buffer too small for the DHT message")
    }
}

impl core::error::Error for EncodeError {}

impl Message {
    /// Encodes the message into `buf`; returns the length used.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let (first, rest) = buf.split_first_mut().ok_or(EncodeError::BufferTooSmall)?;
        *first = VERSION;
        let used = postcard::to_slice(self, rest).map_err(|_| EncodeError::BufferTooSmall)?;
        Ok(1 + used.len())
    }

    /// Decodes a whole datagram.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let (&v, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if v != VERSION {
            return Err(DecodeError::Version);
        }
        match postcard::take_from_bytes::<Message>(body) {
            Ok((m, [])) => Ok(m),
            _ => Err(DecodeError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(m: &Message) -> std::vec::Vec<u8> {
        let mut buf = [0xa5u8; MAX_MESSAGE];
        let n = m.encode(&mut buf).unwrap();
        assert_eq!(Message::decode(&buf[..n]).as_ref(), Ok(m));
        buf[..n].to_vec()
    }

    fn v<const N: usize>(b: &[u8]) -> Vec<u8, N> {
        Vec::from_slice(b).unwrap()
    }

    const A: NodeId = NodeId([0xaa; 32]);
    const KEY: Key = Key([0x11; 32]);

    /// Record bytes as the message layer sees them: opaque, length-prefixed (record.rs checks them).
    fn rec(b: &[u8]) -> SignedRecord {
        SignedRecord::from_bytes(b).unwrap()
    }

    /// Golden bytes: every message type, written out by hand from the postcard wire format
    /// (varint integers, enum variant index, length-prefixed sequences). A change to any field's
    /// order or type breaks a test: bump VERSION when that is meant.
    fn golden(m: Message, tail: &[u8]) {
        let mut want = std::vec![VERSION];
        want.extend_from_slice(tail);
        assert_eq!(enc(&m), want, "{m:?}");
    }

    fn cat(parts: &[&[u8]]) -> std::vec::Vec<u8> {
        parts.concat()
    }

    #[test]
    fn golden_write_create() {
        let m = Message::Write(Write {
            rid: 300,
            key: KEY,
            kind: Kind::Ip,
            name: v(&[10, 250, 0, 7]),
            op: WriteOp::Create { rec: rec(b"ab"), ttl_ms: 30_000 },
        });
        // 0 = Write; rid 300 = ac 02; key; kind 1; name len 4 10.250.0.7; 0 = Create; record len 2
        // "ab"; 30000 = b0 ea 01.
        golden(
            m,
            &cat(&[
                &[0x00, 0xac, 0x02],
                &[0x11; 32],
                &[0x01, 0x04, 10, 250, 0, 7],
                &[0x00, 0x02, b'a', b'b', 0xb0, 0xea, 0x01],
            ]),
        );
    }

    #[test]
    fn golden_write_renew_transfer_delete_append() {
        let w = |op| Message::Write(Write { rid: 1, key: KEY, kind: Kind::Node, name: v(b""), op });
        let head = cat(&[&[0x00, 0x01], &[0x11; 32], &[0x04, 0x00]]);
        golden(w(WriteOp::Renew { gen: 2, ttl_ms: 5 }), &cat(&[&head, &[0x01, 0x02, 0x05]]));
        golden(
            w(WriteOp::Transfer { gen: 3, rec: rec(b"r"), ttl_ms: 1 }),
            &cat(&[&head, &[0x02, 0x03, 0x01, b'r', 0x01]]),
        );
        golden(w(WriteOp::Delete { gen: 128 }), &cat(&[&head, &[0x03, 0x80, 0x01]]));
        golden(w(WriteOp::Append { value: v(b"m"), ttl_ms: 0 }), &cat(&[&head, &[0x04, 0x01, b'm', 0x00]]));
        golden(w(WriteOp::Rollback { gen: 5 }), &cat(&[&head, &[0x05, 0x05]]));
    }

    #[test]
    fn golden_write_replies() {
        let r = |result| Message::WriteReply(WriteReply { rid: 7, result });
        golden(r(WriteResult::Accepted { gen: 2 }), &[0x01, 0x07, 0x00, 0x02]);
        golden(
            r(WriteResult::Conflict(Stamp { owner: A, gen: 1 })),
            &cat(&[&[0x01, 0x07, 0x01], &[0xaa; 32], &[0x01]]),
        );
        golden(r(WriteResult::Stale { floor: 9 }), &[0x01, 0x07, 0x02, 0x09]);
        golden(r(WriteResult::Mismatch { current: None }), &[0x01, 0x07, 0x03, 0x00]);
        golden(
            r(WriteResult::Mismatch { current: Some(Stamp { owner: A, gen: 4 }) }),
            &cat(&[&[0x01, 0x07, 0x03, 0x01], &[0xaa; 32], &[0x04]]),
        );
        golden(r(WriteResult::NotReady), &[0x01, 0x07, 0x04]);
        golden(r(WriteResult::NotReplica), &[0x01, 0x07, 0x05]);
        golden(r(WriteResult::Full), &[0x01, 0x07, 0x06]);
        golden(r(WriteResult::Unavailable), &[0x01, 0x07, 0x07]);
        golden(r(WriteResult::Forbidden), &[0x01, 0x07, 0x08]);
    }

    #[test]
    fn golden_read_and_replies() {
        golden(Message::Read(Read { rid: 2, key: KEY }), &cat(&[&[0x02, 0x02], &[0x11; 32]]));
        let r = |result| Message::ReadReply(ReadReply { rid: 2, result });
        let s = Stored { rec: rec(b"xy"), ttl_ms: 100 };
        golden(r(ReadResult::Found(s)), &[0x03, 0x02, 0x00, 0x02, b'x', b'y', 0x64]);
        golden(r(ReadResult::Absent { floor: 0 }), &[0x03, 0x02, 0x01, 0x00]);
        let mut ms = Vec::new();
        ms.push(MemberView { owner: A, value: v(b"q"), ttl_ms: 2 }).unwrap();
        golden(
            r(ReadResult::Members(ms)),
            &cat(&[&[0x03, 0x02, 0x02, 0x01], &[0xaa; 32], &[0x01, b'q', 0x02]]),
        );
        golden(r(ReadResult::NotReady), &[0x03, 0x02, 0x03]);
        golden(r(ReadResult::NotReplica), &[0x03, 0x02, 0x04]);
    }

    #[test]
    fn golden_sync() {
        golden(Message::SyncRequest(SyncRequest { nonce: 0x1234, view: 5 }), &[0x04, 0xb4, 0x24, 0x05]);
        let mut entries = Vec::new();
        entries.push(SyncEntry::Floor { key: KEY, floor: 3 }).unwrap();
        let s = Stored { rec: rec(b""), ttl_ms: 1 };
        entries.push(SyncEntry::Record { key: KEY, floor: 1, rec: s }).unwrap();
        entries
            .push(SyncEntry::Member { key: KEY, member: MemberView { owner: A, value: v(b""), ttl_ms: 3 } })
            .unwrap();
        golden(
            Message::SyncChunk(SyncChunk { nonce: 1, seq: 2, done: true, entries }),
            &cat(&[
                &[0x05, 0x01, 0x02, 0x01, 0x03],
                &[0x01],
                &[0x11; 32],
                &[0x03],
                &[0x00],
                &[0x11; 32],
                &[0x01, 0x00, 0x01],
                &[0x02],
                &[0x11; 32],
                &[0xaa; 32],
                &[0x00, 0x03],
            ]),
        );
    }

    #[test]
    fn golden_find_node() {
        // 6 = FindNode; rid 1; target; storage true.
        golden(
            Message::FindNode(FindNode { rid: 1, target: KEY, storage: true }),
            &cat(&[&[0x06, 0x01], &[0x11; 32], &[0x01]]),
        );
        let mut nodes = Vec::new();
        nodes.push([0xaa; 32]).unwrap();
        nodes.push([0x11; 32]).unwrap();
        // 7 = FindNodeReply; rid 200 = c8 01; two ids.
        golden(
            Message::FindNodeReply(FindNodeReply { rid: 200, nodes }),
            &cat(&[&[0x07, 0xc8, 0x01, 0x02], &[0xaa; 32], &[0x11; 32]]),
        );
        golden(Message::FindNodeReply(FindNodeReply { rid: 0, nodes: Vec::new() }), &[0x07, 0x00, 0x00]);
    }

    #[test]
    fn the_largest_messages_fit_max_message() {
        let full_member = MemberView { owner: A, value: v(&[0xff; MAX_MEMBER]), ttl_ms: u32::MAX };
        let members: Vec<MemberView, BCAST_MAX> = core::iter::repeat_n(full_member, BCAST_MAX).collect();
        // The longest signed record (record.rs checks that SIGNED_MAX is its length).
        let rec = Stored { rec: rec(&[0xff; super::super::record::SIGNED_MAX]), ttl_ms: u32::MAX };
        let entry = SyncEntry::Record { key: KEY, floor: u64::MAX, rec: rec.clone() };
        let entries: Vec<SyncEntry, SYNC_ENTRIES> = core::iter::repeat_n(entry, SYNC_ENTRIES).collect();
        for m in [
            Message::ReadReply(ReadReply { rid: u32::MAX, result: ReadResult::Members(members) }),
            Message::SyncChunk(SyncChunk { nonce: u32::MAX, seq: u32::MAX, done: true, entries }),
            Message::ReadReply(ReadReply { rid: u32::MAX, result: ReadResult::Found(rec.clone()) }),
            Message::Write(Write {
                rid: u32::MAX,
                key: KEY,
                kind: Kind::Unknown(200),
                name: v(&[0xff; NAME_MAX]),
                op: WriteOp::Transfer { gen: u64::MAX, rec: rec.rec.clone(), ttl_ms: u32::MAX },
            }),
            Message::FindNodeReply(FindNodeReply { rid: u32::MAX, nodes: [[0xff; 32]; FOUND].into() }),
        ] {
            let mut buf = [0u8; MAX_MESSAGE];
            assert!(m.encode(&mut buf).is_ok(), "{m:?}");
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(Message::decode(&[]), Err(DecodeError::Empty));
        // Version 1 (records without signatures) is not spoken any more.
        assert_eq!(Message::decode(&[1, 4, 0, 0]), Err(DecodeError::Version));
        assert_eq!(Message::decode(&[2, 9]), Err(DecodeError::Malformed));
        // A valid SyncRequest with a byte left over.
        assert_eq!(
            Message::decode(&[2, 4, 0, 0]),
            Ok(Message::SyncRequest(SyncRequest { nonce: 0, view: 0 }))
        );
        assert_eq!(Message::decode(&[2, 4, 0, 0, 0]), Err(DecodeError::Malformed));
        let mut small = [0u8; 4];
        assert_eq!(
            Message::Read(Read { rid: 1, key: KEY }).encode(&mut small),
            Err(EncodeError::BufferTooSmall)
        );
    }

    fn arb_vec<const N: usize>() -> impl Strategy<Value = Vec<u8, N>> {
        proptest::collection::vec(any::<u8>(), 0..=N).prop_map(|b| Vec::from_slice(&b).unwrap())
    }

    fn arb_id() -> impl Strategy<Value = NodeId> {
        any::<[u8; 32]>().prop_map(NodeId)
    }

    fn arb_rec() -> impl Strategy<Value = Stored> {
        (proptest::collection::vec(any::<u8>(), 0..=super::super::record::SIGNED_MAX), any::<u32>())
            .prop_map(|(b, ttl_ms)| Stored { rec: rec(&b), ttl_ms })
    }

    fn arb_msg() -> impl Strategy<Value = Message> {
        let key = any::<[u8; 32]>().prop_map(Key);
        prop_oneof![
            (any::<u32>(), key.clone(), any::<u8>(), any::<u64>(), arb_rec(), arb_vec()).prop_map(
                |(rid, key, k, gen, s, name)| Message::Write(Write {
                    rid,
                    key,
                    kind: Kind::from(k),
                    name,
                    op: if gen % 2 == 0 {
                        WriteOp::Create { rec: s.rec, ttl_ms: s.ttl_ms }
                    } else {
                        WriteOp::Transfer { gen, rec: s.rec, ttl_ms: s.ttl_ms }
                    }
                })
            ),
            (any::<u32>(), arb_id(), any::<u64>()).prop_map(|(rid, owner, gen)| Message::WriteReply(
                WriteReply { rid, result: WriteResult::Conflict(Stamp { owner, gen }) }
            )),
            (any::<u32>(), arb_rec())
                .prop_map(|(rid, r)| Message::ReadReply(ReadReply { rid, result: ReadResult::Found(r) })),
            (any::<u32>(), any::<u32>(), any::<bool>(), key.clone(), any::<u64>(), arb_rec()).prop_map(
                |(nonce, seq, done, key, floor, rec)| {
                    let mut entries = Vec::new();
                    let _ = entries.push(SyncEntry::Record { key, floor, rec });
                    Message::SyncChunk(SyncChunk { nonce, seq, done, entries })
                }
            ),
            (any::<u32>(), key, any::<bool>())
                .prop_map(|(rid, target, storage)| Message::FindNode(FindNode { rid, target, storage })),
            (any::<u32>(), proptest::collection::vec(any::<[u8; 32]>(), 0..=FOUND)).prop_map(|(rid, n)| {
                Message::FindNodeReply(FindNodeReply { rid, nodes: Vec::from_slice(&n).unwrap() })
            }),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(m in arb_msg()) {
            let mut buf = [0xa5u8; MAX_MESSAGE];
            let n = m.encode(&mut buf).unwrap();
            prop_assert_eq!(Message::decode(&buf[..n]), Ok(m));
        }
    }
}
