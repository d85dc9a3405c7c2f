//! The VN's distributed hash table: a quorum-replicated, one-hop DHT whose atomic writes are
//! compare-and-set on (owner, generation) at a write quorum (DESIGN.md "The DHT and its consistency";
//! IPOP SC09 §2.2 keeps the same state in Brunet's DHT). Sans-IO: [`Dht`] takes messages and time in
//! and hands messages, results and events out, like [`crate::Node`].
//!
//! # Records and keys
//! A record is {key, value (≤ 96 bytes), owner, generation, relative TTL}. Keys are
//! BLAKE2s("vngate dht key v1" || namespace id || kind || u16 length || name) ([`Key::derive`]);
//! kinds are `ip`, `mac`, `host`, `node`, `bcast`, `revoked`. TTLs are capped at [`MAX_TTL`].
//!
//! # Authorization (DESIGN.md "Security")
//! Records are signed by their owner and kept as the exact signed bytes ([`SignedRecord`]: format
//! there): replicas store them, copy them and answer reads with them, and readers (clients, and
//! replicas taking a copy) drop and count ([`DhtStats::bad_records`]) a record whose signature,
//! owner, namespace, key or kind is wrong. The writer is the authenticated sender of a write, with
//! the roles of its certificate (`cert::roles`, given to [`Dht::handle_message`]). Before applying
//! any write a storage node checks, and refuses [`WriteResult::Forbidden`] (one counter per reason):
//! - the name: `Key::derive(namespace, kind, name)` must be the key;
//! - the role, by kind: `ip:`, `mac:`, `host:` need ROUTER or HOST; an `ip:` name is 4 bytes, a host
//!   address inside the namespace subnet ([`Config::subnet`]); `node:` needs only a certified member
//!   (the overlay passes only those) and its name must be the writer's own id; `bcast` is Append
//!   only and needs ROUTER; `revoked` needs ADMIN; other kinds are refused. Append only on `bcast`.
//! - Create and Transfer carry a record: it must verify, name this namespace, key and kind, and be
//!   the writer's own (Create) or carry the generation after ours (Transfer: the new owner signed it).
//! - Delete: by the owner; a writer with ADMIN may delete another owner's record too.
//!
//! An engine with [`Config::verify`] off (the simulator, which tests consistency, not authorization)
//! skips every check above and accepts unsigned records.
//!
//! # Replicas and quorums
//! Storage nodes (the `dht` role) keep the full member table, so a lookup is one hop: the replica
//! set of a key is the `K` = 5 members closest to it by XOR distance, with `W` = `R` = 3. With
//! n < 5 storage nodes the replica set is all n and `W` = `R` = floor(n/2) + 1. Either way two write
//! quorums share a replica and a read quorum meets every write quorum. Beyond the member table's
//! capacity (about a thousand storage nodes), and on clients with a bounded list of contacts, a key's
//! replica set is found by an iterative Kademlia lookup first and cached for a while ([`kad`]).
//!
//! # Compare-and-set
//! A replica applies each write atomically against its state for the key (`storage::Storage::apply`):
//! - Create(gen): when no other owner's record is live there, and `gen` is above every generation
//!   the replica has seen for the key (or equals our live record's: a retransmission).
//! - Renew(gen): our live record at `gen` gets a new TTL (never a shorter one).
//! - Transfer(gen, to): our live record at `gen` becomes `to`'s at `gen + 1`.
//! - Delete(gen): our record at `gen` goes; the generation floor stays, so generations never go back.
//!
//! A write succeeds when `W` replicas of the set accepted it in one attempt; each attempt has its own
//! request id and, for Create, its own (higher) generation. An attempt that falls short sends a
//! Delete for its generation to the replicas that accepted (a partial write never leaves an owner
//! behind, and a late rollback cannot undo a later attempt), then backs off with jitter
//! (100 ms · 2^attempt · U(0.5, 1.5)) and retries until the op's deadline.
//!
//! **Two creators cannot both win.** Say A's and B's Creates both reached a write quorum, Q_A and
//! Q_B. Since |Q_A| + |Q_B| = 2W > K, some replica r is in both. r applied one of them first, say A's;
//! when B's arrived r accepted it only if A's record was no longer live at r: A deleted or
//! transferred it (A gave the key up), its TTL ran out at r, or (for `ip:` records) a read quorum
//! found A's `node:` record lapsed. In each case A's lease (below) had ended before B's began.
//!
//! # Leases
//! A client owns a key from the moment its write reached `W` accepts until `start + ttl · 0.98`,
//! `start` being when that attempt was first sent. A replica applies the write no earlier than
//! `start` and keeps it for `ttl` on its own clock, so with clock rates within ±1 % of each other
//! the lease always ends before any replica of the quorum lets the record lapse. A client counts
//! only the accepts that arrive within [`ATTEMPT_TIMEOUT`] of `start`. This is the "owner" the
//! simulator checks: a node whose claim reached `W` accepts and whose lease has not lapsed.
//!
//! # Owner liveness
//! Each node keeps one `node:<id>` record (TTL 30 s, renewed every 10 s). An `ip:` record (and a
//! `host:` or `mac:` record: [`Kind::node_bound`]) counts as live only while its owner's node record is. Replicas of an `ip:` key learn it by asking: when a
//! write meets a live `ip:` record of another owner, the replica parks the write and reads
//! `node:<owner>` at a read quorum; if no reply holds a live record of that owner, the blocking
//! record is dropped (as if expired) and the write is re-applied, unless the key changed meanwhile
//! (then the check runs again). Gossiping node records to every storage node would be cheaper but
//! unsafe: a lost gossip would let a replica think a live owner dead. The owner's side: a lease on an
//! `ip:` record is valid only while the node lease it was won under is (an epoch, bumped each time
//! the node record must be created anew); ip writes are sent only while the node lease is valid.
//! So a dead owner's addresses can be taken over (generation + 1) about 30 s after its last renewal.
//!
//! # Joining and losing state
//! A storage node that starts without its state (a rejoin, a new member) votes on a key only once
//! it has copied the key range from enough other replicas of that key that every write quorum,
//! less itself, meets one of them (3 of the other 4 with K = 5); until then it answers `NotReady`,
//! which is not counted. It asks every member ([`SyncRequest`]) [`SYNC_DELAY`] or
//! [`Config::handover`] after starting, whichever is longer: by then every write it may have
//! accepted before it lost its state has been counted or dropped by its client, and every node
//! has learned of it if it is new (below). It asks again every [`SYNC_RETRY`] those that have not
//! answered. A request carries the digest of the requester's member table and only a node with
//! the same table answers it: a node that has not learned of a change would send a copy without
//! the keys the change moved, and say it is done. Copies that disagree are all kept: any of them
//! blocks other owners until it lapses. A node still copying answers no copy request, so when more
//! than n − W replicas of a key lose their state together they vote again only after
//! `Config::max_ttl`, when nothing they could have missed is live (carrying per-key readiness in
//! the copy would shorten that: future work). With a single storage node there is nothing to copy
//! from: a restart loses its records.
//!
//! # Membership changes
//! The member table changes through [`Dht::add_member`] and [`Dht::remove_member`]
//! ([`Dht::members_mut`] only fills it before the engine takes part in any quorum). Who changes it:
//! the runtime. A member is added when a hello or a member list names a new storage node (the
//! overlay). A member is removed when its operator retires it, or when it is evicted: only a
//! member whose `node:` record a read quorum has found lapsed may be evicted, by every node that
//! finds it so (the overlay does not evict yet: a dead member stays a replica that does not
//! answer, and with K = 5, W = 3 each key tolerates two). A member evicted while alive (cut off)
//! has lost its own node lease by then, and a storage node whose node lease lapses copies again
//! before it votes ([`Dht::handle_timeout`]; it keeps its records and answers copies meanwhile).
//!
//! A change moves keys. Adding x takes keys away from other members and gives them to x only
//! (the set of K closest under the new table is within the old set plus x); removing y gives each
//! key of y to the next closest member. Rules:
//! - A replica votes on a key only while it is in the key's replica set in its own table;
//!   otherwise it answers `NotReplica` (not counted), and the writer's table is the stale one.
//! - A member that a change makes a replica of a key votes on it only after a handover copy. The
//!   new member x copies at start, as above (after `handover`, from members with its table). A
//!   member that a removal of y pulls into key k's set answers `NotReady` for k until it has
//!   copied k from enough of k's former replicas (y itself not counted) that every write quorum of
//!   the former set meets one (3 of 5), asking [`Config::handover`] after it learned of the
//!   removal, again every [`SYNC_RETRY`], until every member answered or `max_ttl` passed.
//! - In a table of at most `K` members each removal shrinks the quorum: there, a removal is
//!   refused while another is within its window (2 · `handover` + `max_ttl`, after which every record
//!   written under the older table has been renewed under the newer one or has lapsed). Also at
//!   most [`HANDOVERS`] removals at once. The caller retries.
//!
//! **Assumption (Δ).** Every node, storage node or client, learns of a change within Δ of the
//! first node that learns it, and `handover` ≥ Δ + [`ATTEMPT_TIMEOUT`] (with margin for clock
//! rates). The overlay sends a new member to every node it knows at once, so Δ is a few round
//! trips when those lists arrive; one that is lost is repaired by the anti-entropy hello
//! (`overlay::GOSSIP_INTERVAL`), which the default `handover` does not cover: set it higher where
//! losses are common. When Δ is exceeded — a node learns of a change more than `handover` after
//! the new replica of a key did and meanwhile writes with its old table, or accepts as a replica
//! the change pushed out — a write quorum under the old table and one under the new need not meet:
//! two owners become possible until an audit finds them (the lower generation yields).
//!
//! **Two creators cannot both win, across a change.** Let S and S' be key k's replica sets before
//! and after a change, and C = S ∩ S'. (1) While no member of S' \ S votes on k, every vote comes
//! from S: a quorum taken with the old table lies in S and has q(|S|) members; one taken with the
//! new table lies in C ⊂ S and has q(|S'|) members; q(|S|) + q(|S'|) > |S| since |S'| ≥ |S| − 1
//! (a full set on both sides, or one removal at a time below K), so the two meet in a replica and
//! the argument above applies. (2) A new member's copy starts `handover` after it learned of the
//! change, so at least Δ + [`ATTEMPT_TIMEOUT`] after the first node did: every node then has the
//! new table, a member pushed out of S answers `NotReplica`, and every attempt counted under the
//! old table has all its accepts. So each source holds every old-table write it accepted, the
//! sources meet every old-table quorum, and the new member holds every record an old-table write
//! won. (3) From then on a quorum of S' either holds a new member (which holds every old-table
//! record, and its own later votes) or lies in C ⊂ S and meets every old-table quorum by (1); and
//! writes with the new table made before the new member voted lie in C, which every later quorum
//! of S' meets in q(|S'|) − 1 members: (q − 1) + q > |C|. A new member that is a source of
//! another's copy has finished its own (a node copying answers no copy request), so by induction
//! on the order copies finish, every source holds what it stands for. In each case the two
//! Creates meet at a replica that saw both, and the first one's lease had ended before the second
//! began.
//!
//! Kademlia mode (a member table that is not complete, [`kad`]): client ops look their key up first;
//! a storage node votes on the keys it is among the `K` closest to in its routing table plus itself
//! (its own neighbourhood is what a Kademlia table knows best). Not covered yet there: a replica's
//! owner-liveness read of `node:<owner>` and a rejoining node's copy requests still use the routing
//! table's view of those keys (no lookup), which is right only near the node.
//!
//! # Reads, audits, append
//! A read returns the live record with the highest generation among `R` replies, ties to the
//! lowest owner id; `Absent` only when `R` replicas say so. Owners renew every claim at TTL/3 and
//! read it back every audit interval; when an audit finds a higher generation by another owner, the
//! owner renews at once and, if a quorum refuses, yields ([`DhtEvent::Yielded`]). The `bcast` key
//! holds a set of (owner, value ≤ 24 bytes, TTL) members, at most [`BCAST_MAX`]; Append adds or
//! refreshes one (TTL 0 removes it), a read returns the union of `R` replies.

mod client;
pub mod kad;
mod key;
mod members;
mod msg;
mod record;
#[cfg(feature = "alloc")]
mod storage;
#[cfg(test)]
mod tests;

pub use key::{Key, Kind, MAX_NAME};
pub use members::{quorum, Members, ReplicaSet, K, R, W};
pub use msg::{
    DecodeError, EncodeError, MemberValue, MemberView, Message, Name, Read, ReadReply, ReadResult,
    RecordView, Stamp, Stored, SyncChunk, SyncEntry, SyncRequest, Value, Write, WriteOp, WriteReply,
    WriteResult, BCAST_MAX, MAX_MEMBER, MAX_MESSAGE, MAX_VALUE, NAME_MAX, SYNC_ENTRIES, VERSION,
};
pub use msg::{FindNode, FindNodeReply, FOUND};
pub use record::{Record, RecordError, SignedRecord, RECORD_BODY_MAX, SIGNED_MAX};

use heapless::{Deque, Vec};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::Ipv4Cidr;

use crate::id::NodeId;
use crate::rand::Rng;
use client::{Client, Io};
use kad::Routing;

/// How long a client waits for the replies of one attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Retransmission interval within an attempt (to the replicas that have not answered).
pub const RETX: Duration = Duration::from_millis(300);
/// Backoff unit between attempts.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// How long a replica waits for an owner-liveness read before refusing the write `Unavailable`.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(900);
/// How long a storage node that lost its state waits before asking for copies: longer than any
/// attempt it may have voted in, with margin for clock rates.
pub const SYNC_DELAY: Duration = Duration::from_millis(2500);
/// Interval between copy requests to the members that have not answered.
pub const SYNC_RETRY: Duration = Duration::from_millis(1000);
/// Default of [`Config::handover`]: how long a storage node waits after learning a membership
/// change before it copies the keys the change made it a replica of.
pub const HANDOVER: Duration = Duration::from_secs(10);
/// Removals a node keeps track of at once (module doc, "Membership changes"); beyond it
/// [`Dht::remove_member`] refuses and the caller tries again later.
pub const HANDOVERS: usize = 8;
/// The longest TTL a record may have.
pub const MAX_TTL: Duration = Duration::from_secs(2 * 3600);
/// Events kept until polled; beyond it they are dropped and counted.
pub const EVENTS: usize = 16;

fn ttl_ms(t: Duration) -> u32 {
    t.min(MAX_TTL).total_millis() as u32
}

#[cfg(feature = "alloc")]
fn remaining_ms(now: Instant, expires: Instant) -> u32 {
    if expires <= now {
        0
    } else {
        ttl_ms(expires - now)
    }
}

/// The lease a client may count on for a write of `ttl` (module doc, "Leases").
fn lease(ttl: Duration) -> Duration {
    Duration::from_micros(ttl.min(MAX_TTL).total_micros() / 100 * 98)
}

fn storage_rid_bit() -> u32 {
    0x8000_0000
}

/// Settings of one DHT engine.
#[derive(Debug, Clone)]
pub struct Config {
    /// The namespace id (keys derive from it).
    pub namespace: [u8; 16],
    /// Whether this node stores records (the `dht` role; needs the `alloc` feature).
    pub storage: bool,
    /// Whether this storage node never voted before (a new namespace's first members): it then has
    /// nothing to copy and votes at once. Wrong here breaks safety: say false when unsure.
    pub fresh: bool,
    /// Keys a storage node holds at most; a Create of a new key beyond it is refused `Full`.
    pub max_keys: usize,
    /// How long a client op may take, all attempts included (default 10 s).
    pub op_timeout: Duration,
    /// TTL of our `node:` record (default 30 s).
    pub node_ttl: Duration,
    /// Renewal interval of our `node:` record (default 10 s).
    pub node_renew: Duration,
    /// Interval of audit reads of our claims (default 60 s).
    pub audit_interval: Duration,
    /// The longest TTL of any record in the namespace (default and most [`MAX_TTL`]): longer TTLs
    /// are cut to it, on both sides. A storage node that cannot finish its copy votes again after it.
    pub max_ttl: Duration,
    /// How long a replica set found by a Kademlia lookup is used (default [`kad::ROUTE_TTL`]).
    pub route_ttl: Duration,
    /// How long after learning a membership change a storage node starts copying the keys it
    /// became a replica of (default [`HANDOVER`]): the bound Δ on how long news of a change takes
    /// to reach every node, plus [`ATTEMPT_TIMEOUT`] (module doc, "Membership changes"). A node
    /// that starts without its state also waits at least this long before it copies.
    pub handover: Duration,
    /// This node's Ed25519 secret key (its 32-byte seed), whose public key's node id is this node's
    /// id: the client signs every record it writes with it. None: records go out unsigned, which
    /// only engines with `verify` off accept (tests, the simulator).
    pub signing_key: Option<[u8; 32]>,
    /// Whether records must verify and writers be authorized (module doc, "Authorization"): on by
    /// default; off only where every node is trusted (the simulator).
    pub verify: bool,
    /// This node's certified roles (`cert::roles`), for the writes it makes to itself as a replica.
    pub roles: u8,
    /// The namespace's subnet: `ip:` names must be host addresses inside it. None refuses every
    /// `ip:` write (when `verify`).
    pub subnet: Option<Ipv4Cidr>,
}

impl Config {
    /// Defaults for a namespace.
    pub fn new(namespace: [u8; 16]) -> Self {
        Config {
            namespace,
            storage: false,
            fresh: false,
            max_keys: 100_000,
            op_timeout: Duration::from_secs(10),
            node_ttl: Duration::from_secs(30),
            node_renew: Duration::from_secs(10),
            audit_interval: Duration::from_secs(60),
            max_ttl: MAX_TTL,
            route_ttl: kad::ROUTE_TTL,
            handover: HANDOVER,
            signing_key: None,
            verify: true,
            roles: 0,
            subnet: None,
        }
    }
}

/// An operation's handle, to match its [`OpResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u32);

/// What a finished operation found or did.
// No heap to box the member set into.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// We own the key at this generation.
    Created {
        /// Our generation.
        gen: u64,
    },
    /// Our record's TTL was refreshed.
    Renewed {
        /// Our generation.
        gen: u64,
    },
    /// The key now belongs to the new owner at this generation.
    Transferred {
        /// The new generation.
        gen: u64,
    },
    /// Our record is gone.
    Deleted,
    /// Our member was added or refreshed.
    Appended,
    /// The live record with the highest generation.
    Found(RecordView),
    /// A read quorum has no live record.
    Absent,
    /// The member set (union of a read quorum).
    Members(Vec<MemberView, BCAST_MAX>),
}

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpError {
    /// Another owner's record is live (a Create refused by a write quorum, or at the deadline).
    Conflict(Stamp),
    /// Our record is not there at the generation given.
    Mismatch(Option<Stamp>),
    /// No quorum answered before the op's deadline.
    Timeout,
    /// Too many operations in flight.
    Busy,
    /// The member table is empty.
    NoReplicas,
    /// A value longer than the record allows (or a name longer than [`NAME_MAX`]).
    TooLarge,
    /// More than `n - W` replicas refused the write [`WriteResult::Forbidden`]: this node may not
    /// make it (roles, name, signature).
    Forbidden,
}

impl core::fmt::Display for OpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpError::Conflict(s) => write!(f, "owned by {} at generation {}", s.owner, s.gen),
            OpError::Mismatch(_) => f.write_str("our record is not there at that generation"),
            OpError::Timeout => f.write_str("no quorum answered in time"),
            OpError::Busy => f.write_str("too many DHT operations in flight"),
            OpError::NoReplicas => f.write_str("no storage node known"),
            OpError::TooLarge => f.write_str("value too large"),
            OpError::Forbidden => f.write_str("the storage nodes refused the write as not authorized"),
        }
    }
}

impl core::error::Error for OpError {}

/// The result of one client operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpResult {
    /// The op.
    pub op: OpId,
    /// Its key.
    pub key: Key,
    /// What happened.
    pub outcome: Result<Outcome, OpError>,
    /// Attempts made (1 when the first round trip sufficed).
    pub attempts: u8,
}

/// Something about our own records the node must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhtEvent {
    /// A claim could not be renewed and its lease lapsed (or a quorum refused the renewal).
    LeaseLost {
        /// The key.
        key: Key,
    },
    /// An audit found a higher generation by another owner and a quorum refused our renewal:
    /// the key is theirs, stop using it.
    Yielded {
        /// The key.
        key: Key,
        /// The owner that won.
        by: Stamp,
    },
}

/// Counters of a DHT engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// Messages that did not decode.
    pub malformed: u64,
    /// Messages dropped because the outbox was full.
    pub out_full: u64,
    /// Storage messages received by a node without the storage role.
    pub not_storage: u64,
    /// Attempts started (first sends).
    pub attempts: u64,
    /// Retransmission rounds within attempts.
    pub retransmits: u64,
    /// Failed Create attempts undone at the replicas that accepted them.
    pub rollbacks: u64,
    /// Replies for no attempt in flight (late, duplicate).
    pub stale_replies: u64,
    /// Ops refused for lack of a free slot.
    pub ops_busy: u64,
    /// User ops that failed.
    pub ops_failed: u64,
    /// Results dropped because nobody polled them.
    pub results_dropped: u64,
    /// Events dropped because nobody polled them.
    pub events_dropped: u64,
    /// Successful Creates whose claim could not be kept (claims table full): not renewed.
    pub claims_full: u64,
    /// Leases lost (renewal refused or lapsed).
    pub leases_lost: u64,
    /// Writes refused `Forbidden`: the writer lacks the role the key's kind needs (or the kind is
    /// unknown, or the op is not one the kind allows).
    pub forbidden_role: u64,
    /// Writes refused `Forbidden`: the name does not derive the key, or a `node:` name is not the
    /// writer's id.
    pub forbidden_name: u64,
    /// Writes refused `Forbidden`: an `ip:` name that is not a host address inside the subnet.
    pub forbidden_subnet: u64,
    /// Writes refused `Forbidden`: the record's signature or signer does not verify (or it is
    /// unsigned, or malformed).
    pub forbidden_signature: u64,
    /// Writes refused `Forbidden`: the record names another namespace, key, kind, owner or
    /// generation than the write.
    pub forbidden_record: u64,
    /// Writes refused `Forbidden`: a delete of another owner's live record without the admin role.
    pub forbidden_delete: u64,
    /// Records dropped by a reader (read replies, copies): bad signature, owner, namespace, key or kind.
    pub bad_records: u64,
    /// Owner-liveness checks started by this replica.
    pub owner_checks: u64,
    /// Owners a check found dead.
    pub owners_found_dead: u64,
    /// Writes refused `Unavailable` (check failed or too many parked).
    pub checks_refused: u64,
    /// Copy requests ignored (still copying ourselves, or too many being answered).
    pub sync_ignored: u64,
    /// Copy chunks sent.
    pub sync_chunks_sent: u64,
    /// Kademlia lookups that found a replica set.
    pub lookups: u64,
    /// Sum of their hops (mean: `lookup_hops / lookups`).
    pub lookup_hops: u64,
    /// Kademlia lookups that ended without a result.
    pub lookups_failed: u64,
    /// Keys that waited for a lookup slot.
    pub lookups_busy: u64,
    /// Ops that took their replica set from the cache of lookups.
    pub route_cache_hits: u64,
    /// Liveness checks of a full bucket's least recently seen node.
    pub probes: u64,
    /// `FindNode` requests answered.
    pub find_node_answered: u64,
    /// Copy requests ignored because the requester's member table differs from ours.
    pub sync_other_view: u64,
    /// Members added to the table.
    pub members_added: u64,
    /// Members removed from the table.
    pub members_removed: u64,
    /// Removals refused (log full, or one already in its window in a table of at most `K`).
    pub removals_refused: u64,
}

/// One node's DHT engine: the client side always, the storage side when `Config::storage` (needs
/// the `alloc` feature).
///
/// `M` is the member table; `OPS` the client operations in flight (a new one beyond it is refused
/// [`OpError::Busy`]); `CLAIMS` the records we own and renew (beyond it a won record is not renewed,
/// counted in [`DhtStats::claims_full`]); `OUT` the messages waiting to be polled (beyond it they are
/// dropped and counted; retransmissions recover). When `M` is not complete ([`kad::Routing`]):
/// `LOOKUPS` Kademlia lookups in flight (a key beyond it waits for a slot) and `CACHE` replica sets
/// found by them (the one that expires first makes room).
pub struct Dht<
    M: Routing,
    const OPS: usize = 16,
    const CLAIMS: usize = 32,
    const OUT: usize = 64,
    const LOOKUPS: usize = 4,
    const CACHE: usize = 16,
> {
    me: NodeId,
    members: M,
    router: kad::Router<LOOKUPS, CACHE>,
    is_storage: bool,
    rng: Rng,
    client: Client<OPS, CLAIMS>,
    #[cfg(feature = "alloc")]
    storage: Option<storage::Storage>,
    namespace: [u8; 16],
    out: Deque<(NodeId, Message), OUT>,
    stats: DhtStats,
    /// Removals still in their window: (id, when the window ends).
    removals: Vec<(NodeId, Instant), HANDOVERS>,
    /// How long a removal stays in `removals`: the handover, then every record that could have
    /// been written under the old table has been renewed under the new one or has lapsed.
    removal_window: Duration,
    /// Whether our node lease was live at the last timer (to see it lapse).
    node_live: bool,
    /// Our certified roles, for messages to ourselves.
    roles: u8,
}

/// Pushes into the outbox, counting what does not fit.
fn push_out<const OUT: usize>(
    out: &mut Deque<(NodeId, Message), OUT>,
    full: &mut u64,
    to: NodeId,
    m: Message,
) {
    if out.push_back((to, m)).is_err() {
        *full += 1;
    }
}

impl<
        M: Routing,
        const OPS: usize,
        const CLAIMS: usize,
        const OUT: usize,
        const LOOKUPS: usize,
        const CACHE: usize,
    > Dht<M, OPS, CLAIMS, OUT, LOOKUPS, CACHE>
{
    /// A new engine for node `me`, created at `now`; `seed` drives backoff jitter and request ids.
    pub fn new(now: Instant, me: NodeId, members: M, config: &Config, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let rid_seed = rng.next_u32();
        #[cfg(not(feature = "alloc"))]
        let _ = now;
        let router = kad::Router::new(config.route_ttl, rng.next_u32());
        Dht {
            me,
            members,
            router,
            is_storage: config.storage,
            client: Client::new(config, rid_seed),
            #[cfg(feature = "alloc")]
            storage: config.storage.then(|| storage::Storage::new(now, config, rng.next_u32())),
            rng,
            namespace: config.namespace,
            out: Deque::new(),
            stats: DhtStats::default(),
            removals: Vec::new(),
            removal_window: config.handover * 2 + config.max_ttl,
            node_live: false,
            roles: config.roles,
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The member table.
    pub fn members(&self) -> &M {
        &self.members
    }

    /// The member table, to fill before the engine takes part in any quorum. Later changes go
    /// through [`Dht::add_member`] and [`Dht::remove_member`], which start the handover.
    pub fn members_mut(&mut self) -> &mut M {
        &mut self.members
    }

    /// A storage node `id` joins the table (learned from a hello or a member list). Nothing to
    /// hand over here: an addition only takes keys away from the other members, and the new
    /// member copies before it votes. False when it was there already or the table is full.
    pub fn add_member(&mut self, now: Instant, id: NodeId) -> bool {
        let _ = now;
        if !self.members.insert(id) {
            return false;
        }
        self.stats.members_added += 1;
        self.removals.retain(|(r, _)| *r != id);
        #[cfg(feature = "alloc")]
        if let Some(s) = &mut self.storage {
            s.member_back(&id);
        }
        true
    }

    /// `id` leaves the table: retired by its operator, or evicted (module doc, "Membership
    /// changes", says by whom and when). The members that become replicas of its keys copy them
    /// after [`Config::handover`] and vote on them only then. Refused (false, counted) while
    /// [`HANDOVERS`] removals are in their window, or while another is and the table would be
    /// left with fewer than `K` members (quorums would shrink twice): try again later.
    pub fn remove_member(&mut self, now: Instant, id: &NodeId) -> bool {
        self.removals.retain(|(_, end)| *end > now);
        if !self.members.contains(id) {
            return false;
        }
        let shrinks = self.members.len() <= K;
        if self.removals.is_full() || (shrinks && !self.removals.is_empty()) {
            self.stats.removals_refused += 1;
            return false;
        }
        self.members.remove(id);
        // Cannot fail: checked for room above.
        let _ = self.removals.push((*id, now + self.removal_window));
        self.stats.members_removed += 1;
        #[cfg(feature = "alloc")]
        if let Some(s) = &mut self.storage {
            s.member_removed(now, *id);
        }
        true
    }

    /// Counters.
    pub fn stats(&self) -> DhtStats {
        self.stats
    }

    /// Whether this storage node votes on every key (its copy is complete, or it was fresh).
    /// False for a node without storage.
    pub fn storage_ready(&self) -> bool {
        #[cfg(feature = "alloc")]
        {
            self.storage.as_ref().is_some_and(|s| s.is_ready())
        }
        #[cfg(not(feature = "alloc"))]
        false
    }

    /// Keys held by this storage node.
    pub fn stored_keys(&self) -> usize {
        #[cfg(feature = "alloc")]
        {
            self.storage.as_ref().map_or(0, |s| s.len())
        }
        #[cfg(not(feature = "alloc"))]
        0
    }

    /// The `node:` key of this node.
    pub fn node_key(&self) -> Key {
        Key::node(&self.namespace, &self.me)
    }

    /// The key of `name` of `kind` in this namespace.
    pub fn key(&self, kind: Kind, name: &[u8]) -> Key {
        Key::derive(&self.namespace, kind, name)
    }

    /// Starts keeping our `node:` record (value: our contact), renewed every `node_renew`.
    pub fn start(&mut self, now: Instant, contact: &[u8]) -> Result<(), OpError> {
        let v = Value::from_slice(contact).map_err(|_| OpError::TooLarge)?;
        self.client.start_node(now, v);
        Ok(())
    }

    /// Whether we own `key` at `now` (module doc, "Leases").
    pub fn holds(&self, now: Instant, key: &Key) -> bool {
        self.client.holds(now, &self.me, key)
    }

    /// The end of our node lease, if we hold one.
    pub fn node_lease(&self) -> Option<Instant> {
        self.client.node_lease(&self.me)
    }

    /// Our generation of `key`, if we keep a claim on it.
    pub fn claim_gen(&self, key: &Key) -> Option<u64> {
        self.client.claim_gen(key)
    }

    fn with_io<T>(&mut self, now: Instant, f: impl FnOnce(&mut Client<OPS, CLAIMS>, &mut Io) -> T) -> T {
        let (r, wanted) = self.with_io_once(now, f);
        self.resolve(now, wanted);
        r
    }

    fn with_io_once<T>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Client<OPS, CLAIMS>, &mut Io) -> T,
    ) -> (T, Vec<Key, 8>) {
        let out = &mut self.out;
        let mut full = 0;
        let mut sink = |to, m| push_out(out, &mut full, to, m);
        let resolver = kad::Resolver {
            base: &self.members,
            router: &self.router,
            now,
            wanted: Default::default(),
            hits: Default::default(),
        };
        let mut io = Io {
            now,
            me: self.me,
            members: &resolver,
            out: &mut sink,
            rng: &mut self.rng,
            stats: &mut self.stats,
        };
        let r = f(&mut self.client, &mut io);
        self.stats.out_full += full;
        self.stats.route_cache_hits += u64::from(resolver.hits.get());
        (r, resolver.wanted.into_inner())
    }

    /// Kademlia (module [`kad`]): starts lookups for the keys ops wait on, drives the running ones,
    /// and starts the ops whose lookup ended. A lookup can end at once (we are the only storage node
    /// we know), so this loops, a few times at most.
    fn resolve(&mut self, now: Instant, mut wanted: Vec<Key, 8>) {
        for _ in 0..4 {
            let me = self.is_storage.then_some(self.me);
            for key in &wanted {
                if !self.router.start(now, *key, &self.members, me) {
                    self.stats.lookups_busy += 1;
                }
            }
            let (out, stats, members) = (&mut self.out, &mut self.stats, &mut self.members);
            let mut ended: Vec<Key, LOOKUPS> = Vec::new();
            let storage = self.is_storage;
            self.router.drive(
                now,
                members,
                &mut |to, rid, target| {
                    let m = Message::FindNode(FindNode { rid, target, storage });
                    push_out(out, &mut stats.out_full, to, m);
                },
                &mut |f| {
                    let key = match f {
                        kad::Finished::Found { key, hops } => {
                            stats.lookups += 1;
                            stats.lookup_hops += u64::from(hops);
                            key
                        }
                        kad::Finished::Failed { key } => {
                            stats.lookups_failed += 1;
                            key
                        }
                    };
                    // Cannot fail: at most LOOKUPS lookups end in one drive.
                    let _ = ended.push(key);
                },
            );
            if ended.is_empty() {
                return;
            }
            for key in &ended {
                self.client.wake(now, key);
            }
            (_, wanted) = self.with_io_once(now, |c, io| c.handle_timeout(io));
        }
    }

    /// A storage node's message came from `from`: the routing table learns it (and may ask us to
    /// check the liveness of the node it would replace).
    fn learn(&mut self, now: Instant, from: NodeId) {
        if let Some(probe) = self.members.seen(now, from) {
            self.stats.probes += 1;
            let m = Message::FindNode(FindNode { rid: 0, target: Key(probe.0), storage: self.is_storage });
            push_out(&mut self.out, &mut self.stats.out_full, probe, m);
        }
    }

    /// Claims `key` at generation `after + 1` (`after`: the highest generation known, 0 if none).
    /// Once won, the claim is renewed at TTL/3 and audited until deleted, transferred or lost.
    /// `name` is the key's name (`key == self.key(kind, name)`), which replicas check.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        now: Instant,
        key: Key,
        kind: Kind,
        name: &[u8],
        value: &[u8],
        ttl: Duration,
        after: u64,
    ) -> Result<OpId, OpError> {
        let v = Value::from_slice(value).map_err(|_| OpError::TooLarge)?;
        let name = Name::from_slice(name).map_err(|_| OpError::TooLarge)?;
        self.with_io(now, |c, io| c.create(io, key, kind, name, v, ttl, after))
    }

    /// Our signed record of `key` at `gen` with `value`: what a node that asks for a key hands to its
    /// current owner, who submits it in a [`Dht::transfer`].
    pub fn sign_record(&self, key: Key, kind: Kind, gen: u64, value: &[u8]) -> Result<SignedRecord, OpError> {
        let v = Value::from_slice(value).map_err(|_| OpError::TooLarge)?;
        Ok(self.client.sign(key, kind, self.me, gen, &v))
    }

    /// Refreshes the TTL of our record at `gen` (claims are renewed automatically; this is for
    /// records the caller keeps itself).
    pub fn renew(
        &mut self,
        now: Instant,
        key: Key,
        kind: Kind,
        name: &[u8],
        gen: u64,
        ttl: Duration,
    ) -> Result<OpId, OpError> {
        let name = Name::from_slice(name).map_err(|_| OpError::TooLarge)?;
        self.with_io(now, |c, io| c.renew(io, key, kind, name, gen, ttl))
    }

    /// Hands our record at `gen` to the owner of `rec`, the new owner's record at `gen + 1` (made
    /// with its [`Dht::sign_record`]). We stop owning it at once.
    #[allow(clippy::too_many_arguments)]
    pub fn transfer(
        &mut self,
        now: Instant,
        key: Key,
        kind: Kind,
        name: &[u8],
        gen: u64,
        rec: SignedRecord,
        ttl: Duration,
    ) -> Result<OpId, OpError> {
        let name = Name::from_slice(name).map_err(|_| OpError::TooLarge)?;
        self.with_io(now, |c, io| c.transfer(io, key, kind, name, gen, rec, ttl))
    }

    /// Deletes the record at `gen` (ours; another owner's needs the admin role). We stop owning it
    /// at once. An empty `name` stands for the name of our claim on `key`.
    pub fn delete(
        &mut self,
        now: Instant,
        key: Key,
        kind: Kind,
        name: &[u8],
        gen: u64,
    ) -> Result<OpId, OpError> {
        let name = Name::from_slice(name).map_err(|_| OpError::TooLarge)?;
        self.with_io(now, |c, io| c.delete(io, key, kind, name, gen))
    }

    /// Reads `key`.
    pub fn read(&mut self, now: Instant, key: Key, kind: Kind) -> Result<OpId, OpError> {
        self.with_io(now, |c, io| c.read(io, key, kind))
    }

    /// Adds or refreshes our member `value` in the member set at `key` (TTL zero removes it).
    pub fn append(&mut self, now: Instant, key: Key, value: &[u8], ttl: Duration) -> Result<OpId, OpError> {
        let v = MemberValue::from_slice(value).map_err(|_| OpError::TooLarge)?;
        self.with_io(now, |c, io| c.append(io, key, v, ttl))
    }

    /// The next finished operation.
    pub fn poll_result(&mut self) -> Option<OpResult> {
        self.client.results.pop_front()
    }

    /// The next event about our records.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.client.events.pop_front()
    }

    /// A DHT message from `from`, the authenticated sender, a certified member of the namespace
    /// whose certificate gives it `roles` (`cert::roles` bits): a storage node authorizes writes
    /// with them (module doc, "Authorization").
    pub fn handle_message(&mut self, now: Instant, from: NodeId, roles: u8, bytes: &[u8]) {
        match Message::decode(bytes) {
            Ok(m) => self.dispatch(now, from, roles, m),
            Err(_) => self.stats.malformed += 1,
        }
    }

    fn dispatch(&mut self, now: Instant, from: NodeId, roles: u8, m: Message) {
        // Kademlia (module [`kad`]): replies come from storage nodes; a NotReplica voids the cached
        // replica sets that hold its sender.
        match &m {
            Message::WriteReply(r) if r.result == WriteResult::NotReplica => self.router.invalidate(&from),
            Message::ReadReply(r) if r.result == ReadResult::NotReplica => self.router.invalidate(&from),
            _ => {}
        }
        if matches!(m, Message::WriteReply(_) | Message::ReadReply(_) | Message::FindNodeReply(_))
            || matches!(m, Message::FindNode(f) if f.storage)
        {
            self.learn(now, from);
        }
        match m {
            Message::FindNode(f) => {
                if self.is_storage {
                    self.stats.find_node_answered += 1;
                    let nodes = kad::answer(&self.members, &f.target);
                    let m = Message::FindNodeReply(FindNodeReply { rid: f.rid, nodes });
                    push_out(&mut self.out, &mut self.stats.out_full, from, m);
                } else {
                    self.stats.not_storage += 1;
                }
            }
            Message::FindNodeReply(r) => {
                if self.router.handle_reply(&from, r.rid, &r.nodes) {
                    self.resolve(now, Vec::new());
                }
            }
            Message::WriteReply(r) => {
                self.with_io(now, |c, io| c.handle_write_reply(io, from, r.rid, r.result))
            }
            Message::ReadReply(r) if r.rid & storage_rid_bit() == 0 => {
                self.with_io(now, |c, io| c.handle_read_reply(io, from, r.rid, r.result))
            }
            #[cfg(feature = "alloc")]
            other => self.with_storage(now, |s, cx| match other {
                Message::Write(w) => s.handle_write(cx, from, roles, w),
                Message::Read(r) => s.handle_read(cx, from, r),
                Message::ReadReply(r) => s.handle_read_reply(cx, from, r),
                Message::SyncRequest(r) => s.handle_sync_request(cx, from, r),
                Message::SyncChunk(c) => s.handle_sync_chunk(cx, from, c),
                Message::WriteReply(_) | Message::FindNode(_) | Message::FindNodeReply(_) => {}
            }),
            #[cfg(not(feature = "alloc"))]
            _ => {
                let _ = roles;
                self.stats.not_storage += 1
            }
        }
    }

    #[cfg(feature = "alloc")]
    fn with_storage(&mut self, now: Instant, f: impl FnOnce(&mut storage::Storage, &mut storage::Ctx)) {
        let Some(s) = &mut self.storage else {
            self.stats.not_storage += 1;
            return;
        };
        let out = &mut self.out;
        let mut full = 0;
        let mut sink = |to, m| push_out(out, &mut full, to, m);
        // Kademlia (module [`kad`]): a routing table does not list us; the storage side needs us in.
        let with_me = kad::WithMe { base: &self.members, me: self.me };
        let members: &dyn Members = if self.members.complete() { &self.members } else { &with_me };
        let mut cx = storage::Ctx {
            now,
            me: self.me,
            namespace: self.namespace,
            members,
            out: &mut sink,
            stats: &mut self.stats,
        };
        f(s, &mut cx);
        self.stats.out_full += full;
    }

    /// The next message to send: encoded into `buf` (at least [`MAX_MESSAGE`] bytes), with its
    /// destination and length. Messages to ourselves are handled on the spot.
    pub fn poll_message(&mut self, now: Instant, buf: &mut [u8]) -> Option<(NodeId, usize)> {
        loop {
            let (to, m) = match self.out.pop_front() {
                Some(x) => x,
                None => self.next_sync_chunk(now)?,
            };
            if to == self.me {
                self.dispatch(now, to, self.roles, m);
                continue;
            }
            match m.encode(buf) {
                Ok(n) => return Some((to, n)),
                Err(_) => self.stats.out_full += 1,
            }
        }
    }

    #[cfg(feature = "alloc")]
    fn next_sync_chunk(&mut self, now: Instant) -> Option<(NodeId, Message)> {
        let mut r = None;
        if self.storage.is_some() {
            self.with_storage(now, |s, cx| r = s.next_chunk(cx));
        }
        r
    }

    #[cfg(not(feature = "alloc"))]
    fn next_sync_chunk(&mut self, _now: Instant) -> Option<(NodeId, Message)> {
        None
    }

    /// When [`Dht::handle_timeout`] should run next.
    pub fn poll_at(&self) -> Option<Instant> {
        let c = self.client.poll_at();
        #[cfg(feature = "alloc")]
        let s = self.storage.as_ref().and_then(|s| s.poll_at());
        #[cfg(not(feature = "alloc"))]
        let s = None;
        [c, s, self.router.poll_at(), self.members.poll_at()].into_iter().flatten().min()
    }

    /// Runs the timers that are due (safe to call at any time).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.members.handle_timeout(now);
        self.with_io(now, |c, io| c.handle_timeout(io));
        let live = self.client.node_lease(&self.me).is_some_and(|end| now < end);
        let lapsed = self.node_live && !live;
        self.node_live = live;
        #[cfg(feature = "alloc")]
        if let (true, Some(s)) = (lapsed, &mut self.storage) {
            // Others may have evicted us meanwhile and written without us: copy before voting.
            s.recopy(now);
        }
        #[cfg(not(feature = "alloc"))]
        let _ = lapsed;
        #[cfg(feature = "alloc")]
        if self.storage.is_some() {
            self.with_storage(now, |s, cx| s.handle_timeout(cx));
        }
    }
}
