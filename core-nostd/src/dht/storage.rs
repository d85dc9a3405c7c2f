//! The replica side of the DHT (storage nodes, behind `alloc`): the records of the keys whose replica
//! set holds this node, compare-and-set applied atomically per key, owner-liveness checks for
//! node-bound records, and the copy a node makes before it votes. The rules are in the module doc of
//! [`crate::dht`].

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::ops::Bound;

use smoltcp::time::Instant;
use smoltcp::wire::Ipv4Cidr;

use super::key::{Key, Kind};
use super::members::{quorum, Members, Plus, ReplicaSet};
use super::msg::{
    MemberValue, MemberView, Message, Read, ReadReply, ReadResult, Stamp, Stored, SyncChunk, SyncEntry,
    SyncRequest, Write, WriteOp, WriteReply, WriteResult, BCAST_MAX, SYNC_ENTRIES,
};
use super::record::SignedRecord;
use super::{remaining_ms, DhtStats, CHECK_TIMEOUT, RETX, SYNC_DELAY, SYNC_RETRY};
use crate::cert::roles;
use crate::id::NodeId;
use smoltcp::time::Duration;

/// Request ids of the storage side's own reads have the top bit set; the client's never do.
pub(crate) const STORAGE_RID: u32 = 0x8000_0000;
/// Writes parked while their blocking owner's liveness is checked; beyond it they are refused
/// `Unavailable` (the client retries).
const MAX_PARKED: usize = 64;
/// Sync answers being produced at once; further requests are ignored (the requester retries).
const MAX_SERVING: usize = 32;
/// How often a parked write may be re-checked after the key changed under it.
const MAX_RECHECKS: u8 = 4;

/// One record held for a key. Normally a key has at most one; a copy made while joining may hold
/// several (replicas disagreed), and all of them then block other owners until they lapse.
#[derive(Debug, Clone)]
struct Entry {
    owner: NodeId,
    gen: u64,
    kind: Kind,
    /// The record as its owner signed it.
    rec: SignedRecord,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct Member {
    owner: NodeId,
    value: MemberValue,
    expires: Instant,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    /// The highest generation ever seen for the key: generations never go back at a replica.
    floor: u64,
    /// Bumped on every change, so a parked write sees whether the key moved under it.
    version: u64,
    /// The owner deleted its record at `tomb - 1`: reads answer Absent with this floor until
    /// `tomb_expires` (0: no tombstone).
    tomb: u64,
    tomb_expires: Option<Instant>,
    entries: Vec<Entry>,
    members: Vec<Member>,
}

impl Slot {
    fn purge(&mut self, now: Instant) {
        self.entries.retain(|e| e.expires > now);
        self.members.retain(|m| m.expires > now);
    }

    /// The live record a read returns: highest generation, ties to the lowest owner id.
    fn primary(&self) -> Option<&Entry> {
        self.entries.iter().min_by(|a, b| b.gen.cmp(&a.gen).then(a.owner.cmp(&b.owner)))
    }
}

enum Verdict {
    Reply(WriteResult),
    /// Blocked only by node-bound records of `owner`: check its `node:` record first.
    Check(NodeId),
    /// Refused `Forbidden`, for this reason.
    Refused(Refusal),
}

/// Why a write is refused `Forbidden` (module doc of [`crate::dht`], "Authorization").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Role,
    Name,
    Subnet,
    Signature,
    Record,
    Delete,
}

impl Refusal {
    fn count(self, stats: &mut DhtStats) {
        let c = match self {
            Refusal::Role => &mut stats.forbidden_role,
            Refusal::Name => &mut stats.forbidden_name,
            Refusal::Subnet => &mut stats.forbidden_subnet,
            Refusal::Signature => &mut stats.forbidden_signature,
            Refusal::Record => &mut stats.forbidden_record,
            Refusal::Delete => &mut stats.forbidden_delete,
        };
        *c += 1;
    }
}

struct Parked {
    from: NodeId,
    /// Whether the writer has the admin role.
    admin: bool,
    write: Write,
    version: u64,
    owner: NodeId,
    node_key: Key,
    rid: u32,
    replicas: ReplicaSet,
    answered: u8,
    dead_votes: u8,
    next_retx: Instant,
    deadline: Instant,
    rechecks: u8,
}

struct Syncing {
    /// Whether this node kept its records (it copies again after it may have been evicted): it
    /// then answers copy requests meanwhile, since it holds every write it accepted.
    kept: bool,
    since: Instant,
    request_at: Instant,
    nonce: u32,
    /// Nodes whose whole answer arrived.
    complete: BTreeSet<NodeId>,
    /// Next chunk expected from each node for the current nonce.
    progress: BTreeMap<NodeId, u32>,
}

/// The copy a storage node makes after a member was removed: the keys whose replica set now holds
/// this node but did not before (module doc, "Membership changes").
struct Handover {
    removed: NodeId,
    /// The copy is complete (or nothing it could bring is live any more): kept until `until`
    /// all the same, so that nodes it made replicas are not counted as sources of other copies.
    done: bool,
    /// After `until - handover` everything the copy could bring has lapsed.
    until: Instant,
    request_at: Instant,
    nonce: u32,
    complete: BTreeSet<NodeId>,
    progress: BTreeMap<NodeId, u32>,
}

struct Serve {
    to: NodeId,
    nonce: u32,
    seq: u32,
    /// The next item: (key, index among the key's items).
    cursor: Option<(Key, usize)>,
}

/// What a storage node needs from the engine on every call.
pub(crate) struct Ctx<'a> {
    pub now: Instant,
    pub me: NodeId,
    pub namespace: [u8; 16],
    pub members: &'a dyn Members,
    pub out: &'a mut dyn FnMut(NodeId, Message),
    pub stats: &'a mut DhtStats,
}

pub(crate) struct Storage {
    slots: BTreeMap<Key, Slot>,
    /// `Config::verify`: authorize writers and check records.
    verify: bool,
    subnet: Option<Ipv4Cidr>,
    max_keys: usize,
    max_ttl: Duration,
    sync: Option<Syncing>,
    parked: Vec<Parked>,
    serving: VecDeque<Serve>,
    handovers: Vec<Handover>,
    handover: Duration,
    next_rid: u32,
    next_nonce: u32,
}

impl Storage {
    /// `fresh`: this node never voted before (a new namespace's first members), so it has nothing
    /// to copy. Otherwise it copies before it votes.
    pub fn new(now: Instant, cfg: &super::Config, seed: u32) -> Self {
        let sync = (!cfg.fresh).then(|| Syncing {
            kept: false,
            since: now,
            // A new member must also wait until every node knows it (module doc).
            request_at: now + SYNC_DELAY.max(cfg.handover),
            nonce: seed,
            complete: BTreeSet::new(),
            progress: BTreeMap::new(),
        });
        Storage {
            slots: BTreeMap::new(),
            verify: cfg.verify,
            subnet: cfg.subnet,
            max_keys: cfg.max_keys,
            max_ttl: cfg.max_ttl,
            sync,
            parked: Vec::new(),
            serving: VecDeque::new(),
            handovers: Vec::new(),
            handover: cfg.handover,
            next_rid: seed,
            next_nonce: seed,
        }
    }

    /// Whether every key is ready (the copy is complete or was not needed).
    pub fn is_ready(&self) -> bool {
        self.sync.is_none() && self.handovers.iter().all(|h| h.done)
    }

    /// `id` left the member table at `now`: copy what it makes this node a replica of.
    pub fn member_removed(&mut self, now: Instant, id: NodeId) {
        self.next_nonce = self.next_nonce.wrapping_add(1);
        let copy_at = now + self.handover;
        self.handovers.retain(|h| h.removed != id);
        self.handovers.push(Handover {
            removed: id,
            done: false,
            until: copy_at + self.max_ttl + self.handover,
            // Copying starts after the handover window (module doc).
            request_at: copy_at,
            nonce: self.next_nonce,
            complete: BTreeSet::new(),
            progress: BTreeMap::new(),
        });
    }

    /// `id` is a member again: its removal no longer moves any key here.
    pub fn member_back(&mut self, id: &NodeId) {
        self.handovers.retain(|h| h.removed != *id);
    }

    /// This node lost its part in the quorums for long enough that others may have evicted it
    /// (its node lease lapsed): it copies again before it votes.
    pub fn recopy(&mut self, now: Instant) {
        if self.sync.is_none() {
            self.next_nonce = self.next_nonce.wrapping_add(1);
            self.sync = Some(Syncing {
                kept: true,
                since: now,
                request_at: now + SYNC_DELAY.max(self.handover),
                nonce: self.next_nonce,
                complete: BTreeSet::new(),
                progress: BTreeMap::new(),
            });
        }
    }

    /// Whether every removal in its window that made this node a replica of `key` has been copied
    /// from enough of the key's former replicas that each of their write quorums meets one. The
    /// former replicas are those of the table before every removal in its window, less the
    /// removed: a node another removal made a replica of the key counts only once that is over.
    fn handed_over(&self, cx: &Ctx, key: &Key) -> bool {
        if self.handovers.iter().all(|h| h.done) {
            return true;
        }
        let removed: Vec<NodeId> =
            self.handovers.iter().map(|h| h.removed).filter(|id| !cx.members.contains(id)).collect();
        let base = Plus { base: cx.members, extra: &removed };
        let old = base.replica_set(key);
        if old.contains(&cx.me) {
            return true; // a replica before the removals too: it has the key's history
        }
        let need = old.len() + 1 - quorum(old.len());
        self.handovers.iter().filter(|h| !h.done).all(|h| {
            let before = Plus { base: cx.members, extra: core::slice::from_ref(&h.removed) };
            if before.replica_set(key).contains(&cx.me) {
                return true; // not this removal's doing
            }
            let have = old.iter().filter(|id| !removed.contains(id) && h.complete.contains(id)).count();
            have >= need
        })
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    fn rid(&mut self) -> u32 {
        self.next_rid = self.next_rid.wrapping_add(1);
        STORAGE_RID | (self.next_rid & !STORAGE_RID)
    }

    /// Whether this node may vote on `key` (replica set `rs`): it has copied it from enough of the
    /// other replicas that every write quorum of the set, less this node, meets one of them.
    fn ready_for(&self, rs: &ReplicaSet, me: &NodeId) -> bool {
        let Some(s) = &self.sync else { return true };
        let others = rs.iter().filter(|id| *id != me).count();
        let need = (rs.len() + 1).saturating_sub(quorum(rs.len())).min(others);
        let have = rs.iter().filter(|id| *id != me && s.complete.contains(id)).count();
        have >= need
    }

    fn is_replica(&self, cx: &Ctx, key: &Key) -> Result<ReplicaSet, WriteResult> {
        let rs = cx.members.replica_set(key);
        if !rs.contains(&cx.me) {
            return Err(WriteResult::NotReplica);
        }
        if !self.ready_for(&rs, &cx.me) || !self.handed_over(cx, key) {
            return Err(WriteResult::NotReady);
        }
        Ok(rs)
    }

    /// A write from `from`, whose certificate gives it `roles`.
    pub fn handle_write(&mut self, cx: &mut Ctx, from: NodeId, roles: u8, w: Write) {
        if let Err(r) = self.is_replica(cx, &w.key) {
            (cx.out)(from, Message::WriteReply(WriteReply { rid: w.rid, result: r }));
            return;
        }
        let admin = match self.authorize(cx, &from, roles, &w) {
            Ok(admin) => admin,
            Err(why) => {
                why.count(cx.stats);
                let reply = WriteReply { rid: w.rid, result: WriteResult::Forbidden };
                (cx.out)(from, Message::WriteReply(reply));
                return;
            }
        };
        if self.parked.iter().any(|p| p.from == from && p.write.rid == w.rid) {
            return; // a retransmission of a write already being checked
        }
        self.apply_or_park(cx, from, admin, w, 0);
    }

    /// Whether `from` with `roles` may make write `w` (module doc of [`crate::dht`],
    /// "Authorization"); Ok(whether it is an admin, who may delete others' records).
    fn authorize(&self, cx: &Ctx, from: &NodeId, roles: u8, w: &Write) -> Result<bool, Refusal> {
        if !self.verify {
            return Ok(false);
        }
        let admin = roles & roles::ADMIN != 0;
        let admin_delete = admin && matches!(w.op, WriteOp::Delete { .. });
        if Key::derive(&cx.namespace, w.kind, &w.name) != w.key {
            return Err(Refusal::Name);
        }
        let append = matches!(w.op, WriteOp::Append { .. });
        if append != (w.kind == Kind::Bcast) {
            return Err(Refusal::Role);
        }
        let has = |need: u8| roles & need != 0;
        let allowed = match w.kind {
            Kind::Ip | Kind::Mac | Kind::Host => has(roles::ROUTER | roles::HOST) || admin_delete,
            Kind::Node => {
                if matches!(w.op, WriteOp::Transfer { .. }) {
                    false
                } else if w.name[..] != from.0[..] && !admin_delete {
                    return Err(Refusal::Name);
                } else {
                    true // any certified member, for its own record
                }
            }
            Kind::Bcast => has(roles::ROUTER),
            Kind::Revoked => admin,
            Kind::Unknown(_) => false,
        };
        if !allowed {
            return Err(Refusal::Role);
        }
        if w.kind == Kind::Ip && !host_in_subnet(self.subnet, &w.name) {
            return Err(Refusal::Subnet);
        }
        let (rec, owner, gen) = match &w.op {
            WriteOp::Create { rec, .. } => (rec, Some(*from), None),
            WriteOp::Transfer { gen, rec, .. } => (rec, None, Some(gen.saturating_add(1))),
            _ => return Ok(admin),
        };
        let r = rec.verify().map_err(|_| Refusal::Signature)?;
        if r.namespace != cx.namespace
            || r.key != w.key
            || r.kind != w.kind
            || owner.is_some_and(|o| o != r.owner)
            || gen.is_some_and(|g| g != r.gen)
        {
            return Err(Refusal::Record);
        }
        Ok(admin)
    }

    fn apply_or_park(&mut self, cx: &mut Ctx, from: NodeId, admin: bool, w: Write, rechecks: u8) {
        let result = match self.apply(cx.now, &from, admin, &w) {
            Verdict::Reply(r) => r,
            Verdict::Refused(why) => {
                why.count(cx.stats);
                WriteResult::Forbidden
            }
            Verdict::Check(_) if rechecks >= MAX_RECHECKS || self.parked.len() >= MAX_PARKED => {
                cx.stats.checks_refused += 1;
                WriteResult::Unavailable
            }
            Verdict::Check(owner) => {
                let node_key = Key::node(&cx.namespace, &owner);
                let replicas = cx.members.replica_set(&node_key);
                let rid = self.rid();
                for to in &replicas {
                    (cx.out)(*to, Message::Read(Read { rid, key: node_key }));
                }
                let version = self.slots.get(&w.key).map_or(0, |s| s.version);
                cx.stats.owner_checks += 1;
                self.parked.push(Parked {
                    from,
                    admin,
                    write: w,
                    version,
                    owner,
                    node_key,
                    rid,
                    replicas,
                    answered: 0,
                    dead_votes: 0,
                    next_retx: cx.now + RETX,
                    deadline: cx.now + CHECK_TIMEOUT,
                    rechecks,
                });
                return;
            }
        };
        (cx.out)(from, Message::WriteReply(WriteReply { rid: w.rid, result }));
    }

    /// Applies one write atomically against the key's current state (the compare-and-set).
    fn apply(&mut self, now: Instant, from: &NodeId, admin: bool, w: &Write) -> Verdict {
        let max_ttl = self.max_ttl;
        // The record a Create or Transfer brings (checked by `authorize` when verifying).
        let rec = match &w.op {
            WriteOp::Create { rec, .. } | WriteOp::Transfer { rec, .. } => match rec.parse() {
                Ok(r) => Some(r),
                Err(_) => return Verdict::Refused(Refusal::Record),
            },
            _ => None,
        };
        let new_slot = !self.slots.contains_key(&w.key);
        if new_slot {
            if !matches!(
                w.op,
                WriteOp::Create { .. } | WriteOp::Append { ttl_ms: 1.., .. } | WriteOp::Delete { .. }
            ) {
                let r = match w.op {
                    WriteOp::Rollback { .. } => WriteResult::Accepted { gen: 0 },
                    WriteOp::Append { .. } => WriteResult::Accepted { gen: 0 },
                    _ => WriteResult::Mismatch { current: None },
                };
                return Verdict::Reply(r);
            }
            if self.slots.len() >= self.max_keys {
                return Verdict::Reply(WriteResult::Full);
            }
        }
        let slot = self.slots.entry(w.key).or_default();
        slot.purge(now);

        if let WriteOp::Append { value, ttl_ms } = &w.op {
            let pos = slot.members.iter().position(|m| m.owner == *from && m.value == *value);
            match (pos, *ttl_ms) {
                (Some(i), 0) => {
                    slot.members.swap_remove(i);
                }
                (None, 0) => {}
                (Some(i), t) => slot.members[i].expires = now + cut(max_ttl, t),
                (None, _) if slot.members.len() >= BCAST_MAX => return Verdict::Reply(WriteResult::Full),
                (None, t) => slot.members.push(Member {
                    owner: *from,
                    value: value.clone(),
                    expires: now + cut(max_ttl, t),
                }),
            }
            slot.version += 1;
            return Verdict::Reply(WriteResult::Accepted { gen: 0 });
        }

        // A retransmitted Transfer that already went through.
        if let (WriteOp::Transfer { gen, .. }, Some(r)) = (&w.op, &rec) {
            if let [e] = slot.entries.as_slice() {
                if e.owner == r.owner && e.gen == gen.saturating_add(1) {
                    return Verdict::Reply(WriteResult::Accepted { gen: e.gen });
                }
            }
        }

        // An admin deletes the record at `gen` whoever owns it.
        if let (WriteOp::Delete { gen }, true) = (&w.op, admin) {
            let current =
                slot.entries.iter().max_by_key(|e| e.gen).map(|e| Stamp { owner: e.owner, gen: e.gen });
            if current.is_some_and(|c| c.gen != *gen) {
                return Verdict::Reply(WriteResult::Mismatch { current });
            }
            slot.entries.clear();
            let tomb = gen.saturating_add(1);
            slot.floor = slot.floor.max(tomb);
            if tomb >= slot.tomb {
                slot.tomb = tomb;
                slot.tomb_expires = Some(now + max_ttl);
            }
            slot.version += 1;
            return Verdict::Reply(WriteResult::Accepted { gen: *gen });
        }

        // Another owner's live record blocks every write; node-bound ones only while their owner's
        // node record is live, which is checked at a read quorum of that record.
        let blocker = slot.entries.iter().filter(|e| e.owner != *from).min_by(|a, b| {
            // Check non-node-bound blockers first: they refuse without a check.
            (a.kind.node_bound(), core::cmp::Reverse(a.gen))
                .cmp(&(b.kind.node_bound(), core::cmp::Reverse(b.gen)))
        });
        if let Some(b) = blocker {
            if self.verify && matches!(w.op, WriteOp::Delete { .. }) {
                // Only the owner (or an admin, above) deletes a record.
                return Verdict::Refused(Refusal::Delete);
            }
            return if b.kind.node_bound() {
                Verdict::Check(b.owner)
            } else {
                Verdict::Reply(WriteResult::Conflict(Stamp { owner: b.owner, gen: b.gen }))
            };
        }

        let mine = slot.entries.iter().map(|e| e.gen).max();
        let result = match &w.op {
            WriteOp::Create { rec: bytes, ttl_ms } => {
                let gen = &rec.as_ref().map_or(0, |r| r.gen);
                if mine == Some(*gen) || *gen > slot.floor {
                    slot.entries.clear();
                    slot.entries.push(Entry {
                        owner: *from,
                        gen: *gen,
                        kind: w.kind,
                        rec: bytes.clone(),
                        expires: now + cut(max_ttl, *ttl_ms),
                    });
                    slot.floor = slot.floor.max(*gen);
                    WriteResult::Accepted { gen: *gen }
                } else {
                    WriteResult::Stale { floor: slot.floor }
                }
            }
            WriteOp::Renew { gen, ttl_ms } => match slot.entries.iter_mut().find(|e| e.gen == *gen) {
                Some(e) => {
                    e.expires = e.expires.max(now + cut(max_ttl, *ttl_ms));
                    WriteResult::Accepted { gen: *gen }
                }
                None => WriteResult::Mismatch { current: mine.map(|gen| Stamp { owner: *from, gen }) },
            },
            WriteOp::Transfer { gen, rec: bytes, ttl_ms } => {
                if let (Some(r), Some(_)) = (&rec, mine.filter(|m| m == gen)) {
                    let g = gen.saturating_add(1);
                    let to = r.owner;
                    slot.entries.clear();
                    slot.entries.push(Entry {
                        owner: to,
                        gen: g,
                        kind: w.kind,
                        rec: bytes.clone(),
                        expires: now + cut(max_ttl, *ttl_ms),
                    });
                    slot.floor = slot.floor.max(g);
                    WriteResult::Accepted { gen: g }
                } else {
                    WriteResult::Mismatch { current: mine.map(|gen| Stamp { owner: *from, gen }) }
                }
            }
            WriteOp::Delete { gen } => {
                // Also accepted where the record never arrived: the tombstone is what matters there.
                if mine == Some(*gen) || mine.is_none() {
                    slot.entries.clear();
                    let tomb = gen.saturating_add(1);
                    slot.floor = slot.floor.max(tomb);
                    if tomb >= slot.tomb {
                        slot.tomb = tomb;
                        slot.tomb_expires = Some(now + max_ttl);
                    }
                    WriteResult::Accepted { gen: *gen }
                } else {
                    WriteResult::Mismatch { current: mine.map(|gen| Stamp { owner: *from, gen }) }
                }
            }
            WriteOp::Rollback { gen } => {
                if mine == Some(*gen) || (mine.is_none() && slot.floor >= *gen) {
                    slot.entries.clear();
                    WriteResult::Accepted { gen: *gen }
                } else {
                    WriteResult::Mismatch { current: mine.map(|gen| Stamp { owner: *from, gen }) }
                }
            }
            WriteOp::Append { .. } => WriteResult::Full, // handled above
        };
        if matches!(result, WriteResult::Accepted { .. }) {
            slot.version += 1;
        }
        Verdict::Reply(result)
    }

    pub fn handle_read(&mut self, cx: &mut Ctx, from: NodeId, r: Read) {
        let result = match self.is_replica(cx, &r.key) {
            Err(WriteResult::NotReplica) => ReadResult::NotReplica,
            Err(_) => ReadResult::NotReady,
            Ok(_) => match self.slots.get_mut(&r.key) {
                None => ReadResult::Absent { floor: 0 },
                Some(slot) => {
                    slot.purge(cx.now);
                    if !slot.members.is_empty() {
                        ReadResult::Members(
                            slot.members
                                .iter()
                                .take(BCAST_MAX)
                                .map(|m| MemberView {
                                    owner: m.owner,
                                    value: m.value.clone(),
                                    ttl_ms: remaining_ms(cx.now, m.expires),
                                })
                                .collect(),
                        )
                    } else {
                        match slot.primary() {
                            Some(e) => ReadResult::Found(view(cx.now, e)),
                            // Only an owner's delete (a live tombstone) may outvote a stale copy.
                            None => ReadResult::Absent {
                                floor: if slot.tomb_expires.is_some_and(|t| t > cx.now) {
                                    slot.tomb
                                } else {
                                    0
                                },
                            },
                        }
                    }
                }
            },
        };
        (cx.out)(from, Message::ReadReply(ReadReply { rid: r.rid, result }));
    }

    /// A reply to one of this replica's owner-liveness reads.
    pub fn handle_read_reply(&mut self, cx: &mut Ctx, from: NodeId, r: ReadReply) {
        let Some(i) = self.parked.iter().position(|p| p.rid == r.rid) else { return };
        let p = &mut self.parked[i];
        let Some(idx) = p.replicas.iter().position(|id| *id == from) else { return };
        if p.answered & (1 << idx) != 0 {
            return;
        }
        p.answered |= 1 << idx;
        let live = match &r.result {
            ReadResult::Found(s) => match s.rec.check(self.verify) {
                Ok(rec)
                    if rec.namespace == cx.namespace && rec.key == p.node_key && rec.kind == Kind::Node =>
                {
                    rec.owner == p.owner
                }
                _ => {
                    // Not a record of that node key: no vote either way.
                    cx.stats.bad_records += 1;
                    p.answered &= !(1 << idx);
                    return;
                }
            },
            ReadResult::Absent { .. } | ReadResult::Members(_) => false,
            ReadResult::NotReady | ReadResult::NotReplica => return,
        };
        if live {
            let p = self.parked.swap_remove(i);
            let stamp = self
                .slots
                .get(&p.write.key)
                .and_then(|s| s.entries.iter().find(|e| e.owner == p.owner))
                .map_or(Stamp { owner: p.owner, gen: 0 }, |e| Stamp { owner: e.owner, gen: e.gen });
            (cx.out)(
                p.from,
                Message::WriteReply(WriteReply { rid: p.write.rid, result: WriteResult::Conflict(stamp) }),
            );
            return;
        }
        p.dead_votes += 1;
        if usize::from(p.dead_votes) < quorum(p.replicas.len()) {
            return;
        }
        // A read quorum says the owner's node record has lapsed: its node-bound records here are dead.
        let p = self.parked.swap_remove(i);
        cx.stats.owners_found_dead += 1;
        if let Some(slot) = self.slots.get_mut(&p.write.key) {
            if slot.version == p.version {
                let before = slot.entries.len();
                slot.entries.retain(|e| !(e.owner == p.owner && e.kind.node_bound()));
                if slot.entries.len() != before {
                    slot.version += 1;
                }
            }
        }
        self.apply_or_park(cx, p.from, p.admin, p.write, p.rechecks + 1);
    }

    pub fn handle_sync_request(&mut self, cx: &mut Ctx, from: NodeId, req: SyncRequest) {
        if req.view != cx.members.digest() {
            // We have not learned the same changes: our copy could leave out keys it now holds.
            cx.stats.sync_other_view += 1;
            return;
        }
        if self.sync.as_ref().is_some_and(|s| !s.kept)
            || (self.serving.len() >= MAX_SERVING && !self.serving.iter().any(|s| s.to == from))
        {
            cx.stats.sync_ignored += 1;
            return;
        }
        self.serving.retain(|s| s.to != from);
        self.serving.push_back(Serve { to: from, nonce: req.nonce, seq: 0, cursor: None });
    }

    pub fn handle_sync_chunk(&mut self, cx: &mut Ctx, from: NodeId, c: SyncChunk) {
        let for_sync = self.sync.as_ref().is_some_and(|s| s.nonce == c.nonce);
        let handover = self.handovers.iter().position(|h| h.nonce == c.nonce);
        if !for_sync && handover.is_none() {
            // A copy for a round that is over: its records are kept only while a copy runs.
            if self.sync.is_none() && self.handovers.is_empty() {
                return;
            }
        }
        self.merge(cx, c.entries);
        let others = cx.members.len().saturating_sub(usize::from(cx.members.contains(&cx.me)));
        let step = |progress: &mut BTreeMap<NodeId, u32>, complete: &mut BTreeSet<NodeId>| {
            let next = progress.entry(from).or_insert(0);
            if *next == c.seq {
                *next += 1;
                if c.done {
                    complete.insert(from);
                }
            }
            complete.len() >= others
        };
        if let (true, Some(s)) = (for_sync, &mut self.sync) {
            if step(&mut s.progress, &mut s.complete) {
                self.sync = None;
            }
        }
        if let Some(i) = handover {
            let h = &mut self.handovers[i];
            if step(&mut h.progress, &mut h.complete) {
                h.done = true;
            }
        }
    }

    /// Keeps copied entries: all of them, a disagreement blocks other owners until it lapses.
    /// Records that do not check (signature, namespace, key) are dropped and counted.
    fn merge(&mut self, cx: &mut Ctx, entries: heapless::Vec<SyncEntry, SYNC_ENTRIES>) {
        let (now, max_ttl) = (cx.now, self.max_ttl);
        for e in entries {
            match e {
                SyncEntry::Record { key, floor, rec: stored } => {
                    let rec = match stored.rec.check(self.verify) {
                        Ok(r) if r.namespace == cx.namespace && r.key == key => r,
                        _ => {
                            cx.stats.bad_records += 1;
                            continue;
                        }
                    };
                    let slot = self.slots.entry(key).or_default();
                    slot.floor = slot.floor.max(floor).max(rec.gen);
                    let expires = now + cut(max_ttl, stored.ttl_ms);
                    match slot.entries.iter_mut().find(|e| e.owner == rec.owner && e.gen == rec.gen) {
                        Some(e) => e.expires = e.expires.max(expires),
                        None => slot.entries.push(Entry {
                            owner: rec.owner,
                            gen: rec.gen,
                            kind: rec.kind,
                            rec: stored.rec,
                            expires,
                        }),
                    }
                    slot.version += 1;
                }
                SyncEntry::Floor { key, floor } => {
                    let slot = self.slots.entry(key).or_default();
                    slot.floor = slot.floor.max(floor);
                }
                SyncEntry::Member { key, member } => {
                    let slot = self.slots.entry(key).or_default();
                    let expires = now + cut(max_ttl, member.ttl_ms);
                    let full = slot.members.len() >= BCAST_MAX;
                    match slot.members.iter_mut().find(|m| m.owner == member.owner && m.value == member.value)
                    {
                        Some(m) => m.expires = m.expires.max(expires),
                        None if !full => {
                            slot.members.push(Member { owner: member.owner, value: member.value, expires })
                        }
                        None => {}
                    }
                }
            }
        }
    }

    /// The next sync chunk to send, if an answer is being produced.
    pub fn next_chunk(&mut self, cx: &mut Ctx) -> Option<(NodeId, Message)> {
        let serve = self.serving.front_mut()?;
        let mut entries: heapless::Vec<SyncEntry, SYNC_ENTRIES> = heapless::Vec::new();
        let start = match &serve.cursor {
            Some((k, _)) => Bound::Included(*k),
            None => Bound::Unbounded,
        };
        let mut done = true;
        'keys: for (key, slot) in self.slots.range((start, Bound::Unbounded)) {
            let skip = match &serve.cursor {
                Some((k, i)) if k == key => *i,
                _ => 0,
            };
            if !cx.members.replica_set(key).contains(&serve.to) {
                continue;
            }
            let items = items(cx.now, key, slot);
            for (i, item) in items.into_iter().enumerate().skip(skip) {
                if entries.push(item).is_err() {
                    serve.cursor = Some((*key, i));
                    done = false;
                    break 'keys;
                }
            }
        }
        let msg = SyncChunk { nonce: serve.nonce, seq: serve.seq, done, entries };
        let to = serve.to;
        serve.seq += 1;
        if done {
            self.serving.pop_front();
        }
        cx.stats.sync_chunks_sent += 1;
        Some((to, Message::SyncChunk(msg)))
    }

    pub fn poll_at(&self) -> Option<Instant> {
        let sync = self.sync.as_ref().map(|s| s.request_at.min(s.since + self.max_ttl));
        let parked = self.parked.iter().map(|p| p.next_retx.min(p.deadline)).min();
        let handovers = self
            .handovers
            .iter()
            .map(|h| if h.done { h.until } else { h.request_at.min(h.until - self.handover) })
            .min();
        [sync, parked, handovers].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, cx: &mut Ctx) {
        let now = cx.now;
        if let Some(s) = &mut self.sync {
            if now >= s.since + self.max_ttl {
                // Every record this node could have missed has lapsed: nothing left to copy.
                self.sync = None;
            } else if now >= s.request_at {
                self.next_nonce = self.next_nonce.wrapping_add(1);
                s.nonce = self.next_nonce;
                s.request_at = now + SYNC_RETRY;
                s.progress.clear();
                let (me, complete) = (cx.me, &s.complete);
                let req = SyncRequest { nonce: s.nonce, view: cx.members.digest() };
                cx.members.each(&mut |id| {
                    if *id != me && !complete.contains(id) {
                        (cx.out)(*id, Message::SyncRequest(req));
                    }
                });
            }
        }
        // Handovers past their end have nothing left to bring; the others ask when due.
        let handover = self.handover;
        self.handovers.retain(|h| now < h.until);
        for h in self.handovers.iter_mut().filter(|h| now + handover >= h.until) {
            h.done = true;
        }
        let view = cx.members.digest();
        for h in self.handovers.iter_mut().filter(|h| !h.done && now >= h.request_at) {
            self.next_nonce = self.next_nonce.wrapping_add(1);
            h.nonce = self.next_nonce;
            h.request_at = now + SYNC_RETRY;
            h.progress.clear();
            let (me, complete) = (cx.me, &h.complete);
            let req = SyncRequest { nonce: h.nonce, view };
            cx.members.each(&mut |id| {
                if *id != me && !complete.contains(id) {
                    (cx.out)(*id, Message::SyncRequest(req));
                }
            });
        }
        let mut i = 0;
        while i < self.parked.len() {
            let p = &mut self.parked[i];
            if now >= p.deadline {
                let p = self.parked.swap_remove(i);
                cx.stats.checks_refused += 1;
                (cx.out)(
                    p.from,
                    Message::WriteReply(WriteReply { rid: p.write.rid, result: WriteResult::Unavailable }),
                );
                continue;
            }
            if now >= p.next_retx {
                p.next_retx = now + RETX;
                for (idx, to) in p.replicas.iter().enumerate() {
                    if p.answered & (1 << idx) == 0 {
                        (cx.out)(*to, Message::Read(Read { rid: p.rid, key: p.node_key }));
                    }
                }
            }
            i += 1;
        }
    }
}

/// A TTL from the wire, cut to the namespace's longest.
fn cut(max_ttl: Duration, t: u32) -> Duration {
    Duration::from_millis(u64::from(t)).min(max_ttl)
}

/// A record as sent: its exact signed bytes and what is left of its TTL here.
fn view(now: Instant, e: &Entry) -> Stored {
    Stored { rec: e.rec.clone(), ttl_ms: remaining_ms(now, e.expires) }
}

/// Whether `name` is 4 address bytes of a host address inside `subnet` (not its network or
/// broadcast address, save in a /31 or /32).
fn host_in_subnet(subnet: Option<Ipv4Cidr>, name: &[u8]) -> bool {
    let (Some(net), Ok(a)) = (subnet, <[u8; 4]>::try_from(name)) else { return false };
    let prefix = u32::from(net.prefix_len().min(32));
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    let (a, n) = (u32::from_be_bytes(a), u32::from_be_bytes(net.address().octets()));
    let host = a & !mask;
    a & mask == n & mask && (prefix >= 31 || (host != 0 && host != !mask))
}

/// The sync items of one key, in a stable order.
fn items(now: Instant, key: &Key, slot: &Slot) -> Vec<SyncEntry> {
    let mut v = Vec::new();
    let mut live = false;
    for e in slot.entries.iter().filter(|e| e.expires > now) {
        live = true;
        v.push(SyncEntry::Record { key: *key, floor: slot.floor, rec: view(now, e) });
    }
    if !live && slot.floor > 0 {
        v.push(SyncEntry::Floor { key: *key, floor: slot.floor });
    }
    for m in slot.members.iter().filter(|m| m.expires > now) {
        v.push(SyncEntry::Member {
            key: *key,
            member: MemberView {
                owner: m.owner,
                value: m.value.clone(),
                ttl_ms: remaining_ms(now, m.expires),
            },
        });
    }
    v
}
