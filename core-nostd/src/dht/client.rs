//! The client side of the DHT (every node, no alloc): operations in flight against a key's replica
//! set, quorum counting, retries with jittered backoff, and the records this node owns (its `node:`
//! record and its claims), renewed at TTL/3 and audited. The rules are in the module doc of
//! [`crate::dht`].

use ed25519_dalek::SigningKey;
use heapless::{Deque, Vec};
use smoltcp::time::{Duration, Instant};

use super::key::{Key, Kind};
use super::members::{quorum, Members, ReplicaSet};
use super::msg::{
    MemberValue, MemberView, Message, Name, Read, ReadResult, RecordView, Stamp, Stored, Value, Write,
    WriteOp, WriteResult, BCAST_MAX,
};
use super::record::SignedRecord;
use super::storage_rid_bit;
use super::{
    lease, ttl_ms, DhtEvent, DhtStats, OpError, OpId, OpResult, Outcome, ATTEMPT_TIMEOUT, BACKOFF_BASE,
    EVENTS, RETX,
};
use crate::id::NodeId;
use crate::rand::Rng;

#[derive(Debug, Clone)]
enum Req {
    Create { value: Value, ttl: Duration },
    Renew { ttl: Duration },
    Transfer { rec: SignedRecord, ttl: Duration },
    Delete,
    Append { value: MemberValue, ttl: Duration },
    Read,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    User,
    /// Renewal of one of our claims (or of our node record).
    ClaimRenew,
    /// Audit read of one of our claims.
    Audit,
    /// (Re)creation of our node record.
    NodeCreate,
}

#[derive(Debug, Clone)]
struct Op {
    id: OpId,
    key: Key,
    kind: Kind,
    /// The key's name, sent with every write.
    name: Name,
    req: Req,
    /// Create: this attempt's record, signed when the attempt begins (its generation is new).
    rec: SignedRecord,
    purpose: Purpose,
    /// Create: this attempt's generation; the others: the generation expected.
    gen: u64,
    rid: u32,
    replicas: ReplicaSet,
    answered: u8,
    accepted: u8,
    usable: u8,
    conflict: Option<Stamp>,
    conflict_n: u8,
    mismatch: Option<Stamp>,
    mismatch_n: u8,
    forbidden_n: u8,
    floor: u64,
    best: Option<RecordView>,
    members: Vec<MemberView, BCAST_MAX>,
    attempt: u8,
    attempt_start: Instant,
    next_retx: Instant,
    attempt_end: Instant,
    /// Waiting before the next attempt (backoff, or for our node lease).
    backoff_until: Option<Instant>,
    deadline: Instant,
    epoch: u32,
}

impl Op {
    fn n(&self) -> usize {
        self.replicas.len()
    }

    fn message(&self) -> Message {
        let write = |op| {
            Message::Write(Write {
                rid: self.rid,
                key: self.key,
                kind: self.kind,
                name: self.name.clone(),
                op,
            })
        };
        match &self.req {
            Req::Create { ttl, .. } => write(WriteOp::Create { rec: self.rec.clone(), ttl_ms: ttl_ms(*ttl) }),
            Req::Renew { ttl } => write(WriteOp::Renew { gen: self.gen, ttl_ms: ttl_ms(*ttl) }),
            Req::Transfer { rec, ttl } => {
                write(WriteOp::Transfer { gen: self.gen, rec: rec.clone(), ttl_ms: ttl_ms(*ttl) })
            }
            Req::Delete => write(WriteOp::Delete { gen: self.gen }),
            Req::Append { value, ttl } => {
                write(WriteOp::Append { value: value.clone(), ttl_ms: ttl_ms(*ttl) })
            }
            Req::Read => Message::Read(Read { rid: self.rid, key: self.key }),
        }
    }

    fn next_at(&self) -> Instant {
        match self.backoff_until {
            Some(t) => t,
            None => self.next_retx.min(self.attempt_end),
        }
    }
}

/// A record this node owns and keeps alive.
#[derive(Debug, Clone)]
struct Claim {
    key: Key,
    kind: Kind,
    name: Name,
    gen: u64,
    ttl: Duration,
    /// Our lease: no other node can own the key before this instant (module doc, "Leases").
    lease_end: Instant,
    /// The node-record epoch the lease was won under (node-bound kinds).
    epoch: u32,
    renew_at: Instant,
    audit_at: Instant,
    op: Option<OpId>,
    /// An audit read saw this higher generation of another owner; the next renewal decides.
    suspect: Option<Stamp>,
}

/// Where the client sends messages, draws randomness and finds replica sets.
pub(crate) struct Io<'a> {
    pub now: Instant,
    pub me: NodeId,
    pub members: &'a dyn Members,
    pub out: &'a mut dyn FnMut(NodeId, Message),
    pub rng: &'a mut Rng,
    pub stats: &'a mut DhtStats,
}

pub(crate) struct Client<const OPS: usize, const CLAIMS: usize> {
    ops: Vec<Op, OPS>,
    claims: Vec<Claim, CLAIMS>,
    pub results: Deque<OpResult, OPS>,
    pub events: Deque<DhtEvent, EVENTS>,
    next_op: u32,
    next_rid: u32,
    namespace: [u8; 16],
    op_timeout: Duration,
    audit_interval: Duration,
    node_ttl: Duration,
    node_renew: Duration,
    max_ttl: Duration,
    /// Our node record's value (our contact), once started.
    node_value: Option<Value>,
    /// When to try (re)creating our node record.
    node_create_at: Option<Instant>,
    /// Bumped every time our node record is created anew: node-bound leases won under an older
    /// epoch are void until renewed.
    node_epoch: u32,
    /// Our signing key (records go out unsigned without it).
    signer: Option<SigningKey>,
    /// Whether records we read must verify (`Config::verify`).
    verify: bool,
}

impl<const OPS: usize, const CLAIMS: usize> Client<OPS, CLAIMS> {
    pub fn new(cfg: &super::Config, rid_seed: u32) -> Self {
        Client {
            ops: Vec::new(),
            claims: Vec::new(),
            results: Deque::new(),
            events: Deque::new(),
            next_op: 0,
            next_rid: rid_seed,
            namespace: cfg.namespace,
            op_timeout: cfg.op_timeout,
            audit_interval: cfg.audit_interval,
            node_ttl: cfg.node_ttl,
            node_renew: cfg.node_renew,
            max_ttl: cfg.max_ttl,
            node_value: None,
            node_create_at: None,
            node_epoch: 0,
            signer: cfg.signing_key.map(|k| SigningKey::from_bytes(&k)),
            verify: cfg.verify,
        }
    }

    /// `owner`'s record, signed with our key if we have one.
    pub fn sign(&self, key: Key, kind: Kind, owner: NodeId, gen: u64, value: &Value) -> SignedRecord {
        SignedRecord::new(&self.namespace, key, kind, owner, gen, value, self.signer.as_ref())
    }

    /// A record from a replica, checked: signed by its owner (when we verify), of this namespace,
    /// key and kind. `None` (counted) otherwise.
    fn check_record(&self, io: &mut Io, key: &Key, kind: Kind, s: &Stored) -> Option<RecordView> {
        match s.rec.check(self.verify) {
            Ok(r) if r.namespace == self.namespace && r.key == *key && r.kind == kind => Some(RecordView {
                owner: r.owner,
                gen: r.gen,
                kind: r.kind,
                value: r.value,
                ttl_ms: s.ttl_ms,
            }),
            _ => {
                io.stats.bad_records += 1;
                None
            }
        }
    }

    fn rid(&mut self) -> u32 {
        self.next_rid = self.next_rid.wrapping_add(1);
        self.next_rid & !storage_rid_bit()
    }

    fn node_key(&self, me: &NodeId) -> Key {
        Key::node(&self.namespace, me)
    }

    /// Our node lease's end, if we hold one.
    pub fn node_lease(&self, me: &NodeId) -> Option<Instant> {
        let k = self.node_key(me);
        self.claims.iter().find(|c| c.key == k).map(|c| c.lease_end)
    }

    fn node_live(&self, now: Instant, me: &NodeId) -> bool {
        self.node_lease(me).is_some_and(|end| now < end)
    }

    /// Whether we own `key` now: our claim reached a write quorum, its lease has not lapsed and,
    /// for node-bound kinds, neither has the node lease it was won under.
    pub fn holds(&self, now: Instant, me: &NodeId, key: &Key) -> bool {
        self.claims.iter().any(|c| {
            c.key == *key
                && now < c.lease_end
                && (!c.kind.node_bound() || (c.epoch == self.node_epoch && self.node_live(now, me)))
        })
    }

    /// The generation of our claim on `key`.
    pub fn claim_gen(&self, key: &Key) -> Option<u64> {
        self.claims.iter().find(|c| c.key == *key).map(|c| c.gen)
    }

    pub fn start_node(&mut self, now: Instant, value: Value) {
        self.node_value = Some(value);
        self.node_create_at = Some(now);
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        io: &mut Io,
        key: Key,
        kind: Kind,
        name: Name,
        req: Req,
        gen: u64,
        purpose: Purpose,
    ) -> Result<OpId, OpError> {
        if self.ops.is_full() {
            io.stats.ops_busy += 1;
            return Err(OpError::Busy);
        }
        let replicas = io.members.replica_set(&key);
        // Empty with known members: a Kademlia lookup of the key runs first (kad.rs).
        if replicas.is_empty() && io.members.is_empty() {
            return Err(OpError::NoReplicas);
        }
        self.next_op = self.next_op.wrapping_add(1);
        let id = OpId(self.next_op);
        let now = io.now;
        let op = Op {
            id,
            key,
            kind,
            name,
            req,
            rec: SignedRecord::default(),
            purpose,
            gen,
            rid: 0,
            replicas,
            answered: 0,
            accepted: 0,
            usable: 0,
            conflict: None,
            conflict_n: 0,
            mismatch: None,
            mismatch_n: 0,
            forbidden_n: 0,
            floor: 0,
            best: None,
            members: Vec::new(),
            attempt: 0,
            attempt_start: now,
            next_retx: now,
            attempt_end: now,
            backoff_until: Some(now),
            deadline: now + self.op_timeout,
            epoch: 0,
        };
        // Cannot fail: checked for room above.
        let _ = self.ops.push(op);
        let i = self.ops.len() - 1;
        self.begin_attempt(io, i);
        Ok(id)
    }

    /// Starts an attempt of op `i`, or keeps it waiting while a node-bound write has no node lease.
    fn begin_attempt(&mut self, io: &mut Io, i: usize) {
        let now = io.now;
        let node_live = self.node_live(now, &io.me);
        let epoch = self.node_epoch;
        let rid = self.rid();
        let op = &mut self.ops[i];
        // Kademlia (kad.rs): the replica set comes from a lookup; wait for it (woken when it ends).
        if op.replicas.is_empty() {
            op.replicas = io.members.replica_set(&op.key);
            if op.replicas.is_empty() {
                op.backoff_until = Some(now + super::kad::RESOLVE_POLL);
                return;
            }
        }
        if op.kind.node_bound()
            && !matches!(op.req, Req::Read | Req::Delete | Req::Append { .. })
            && !node_live
        {
            op.backoff_until = Some(now + BACKOFF_BASE);
            return;
        }
        if let Req::Create { value, .. } = &op.req {
            op.rec = SignedRecord::new(
                &self.namespace,
                op.key,
                op.kind,
                io.me,
                op.gen,
                value,
                self.signer.as_ref(),
            );
        }
        op.backoff_until = None;
        op.rid = rid;
        op.epoch = epoch;
        op.answered = 0;
        op.accepted = 0;
        op.usable = 0;
        op.conflict = None;
        op.conflict_n = 0;
        op.mismatch = None;
        op.mismatch_n = 0;
        op.forbidden_n = 0;
        op.best = None;
        op.members.clear();
        op.attempt = op.attempt.saturating_add(1);
        op.attempt_start = now;
        op.next_retx = now + RETX;
        op.attempt_end = now + ATTEMPT_TIMEOUT;
        let msg = op.message();
        for to in &op.replicas {
            (io.out)(*to, msg.clone());
        }
        io.stats.attempts += 1;
    }

    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        io: &mut Io,
        key: Key,
        kind: Kind,
        name: Name,
        value: Value,
        ttl: Duration,
        after: u64,
    ) -> Result<OpId, OpError> {
        let ttl = ttl.min(self.max_ttl);
        self.start(io, key, kind, name, Req::Create { value, ttl }, after.saturating_add(1), Purpose::User)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn renew(
        &mut self,
        io: &mut Io,
        key: Key,
        kind: Kind,
        name: Name,
        gen: u64,
        ttl: Duration,
    ) -> Result<OpId, OpError> {
        let ttl = ttl.min(self.max_ttl);
        self.start(io, key, kind, name, Req::Renew { ttl }, gen, Purpose::User)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn transfer(
        &mut self,
        io: &mut Io,
        key: Key,
        kind: Kind,
        name: Name,
        gen: u64,
        rec: SignedRecord,
        ttl: Duration,
    ) -> Result<OpId, OpError> {
        // We give the key up when we ask, whatever the outcome.
        self.claims.retain(|c| c.key != key);
        let ttl = ttl.min(self.max_ttl);
        self.start(io, key, kind, name, Req::Transfer { rec, ttl }, gen, Purpose::User)
    }

    pub fn delete(
        &mut self,
        io: &mut Io,
        key: Key,
        kind: Kind,
        name: Name,
        gen: u64,
    ) -> Result<OpId, OpError> {
        // No name given: our claim's.
        let claimed = self.claims.iter().find(|c| c.key == key && name.is_empty()).map(|c| c.name.clone());
        let name = claimed.unwrap_or(name);
        self.claims.retain(|c| c.key != key);
        self.start(io, key, kind, name, Req::Delete, gen, Purpose::User)
    }

    pub fn append(
        &mut self,
        io: &mut Io,
        key: Key,
        value: MemberValue,
        ttl: Duration,
    ) -> Result<OpId, OpError> {
        let ttl = ttl.min(self.max_ttl);
        self.start(io, key, Kind::Bcast, Name::new(), Req::Append { value, ttl }, 0, Purpose::User)
    }

    pub fn read(&mut self, io: &mut Io, key: Key, kind: Kind) -> Result<OpId, OpError> {
        self.start(io, key, kind, Name::new(), Req::Read, 0, Purpose::User)
    }

    pub fn handle_write_reply(&mut self, io: &mut Io, from: NodeId, rid: u32, result: WriteResult) {
        let Some(i) = self.ops.iter().position(|o| o.rid == rid && o.backoff_until.is_none()) else {
            io.stats.stale_replies += 1;
            return;
        };
        let op = &mut self.ops[i];
        let Some(idx) = op.replicas.iter().position(|r| *r == from) else { return };
        let bit = 1u8 << idx;
        if op.answered & bit != 0 || matches!(op.req, Req::Read) {
            return;
        }
        op.answered |= bit;
        match result {
            WriteResult::Accepted { .. } => op.accepted |= bit,
            WriteResult::Conflict(s) => {
                if op.conflict.is_none_or(|c| c == s) {
                    op.conflict_n += 1;
                }
                op.conflict.get_or_insert(s);
            }
            WriteResult::Stale { floor } => op.floor = op.floor.max(floor),
            WriteResult::Mismatch { current } => {
                op.mismatch_n += 1;
                if current.is_some() {
                    op.mismatch = current;
                }
            }
            WriteResult::Forbidden => op.forbidden_n += 1,
            WriteResult::NotReady
            | WriteResult::NotReplica
            | WriteResult::Full
            | WriteResult::Unavailable => {}
        }
        let (n, q) = (op.n(), quorum(op.n()));
        let accepted = op.accepted.count_ones() as usize;
        let unanswered = n - op.answered.count_ones() as usize;
        if accepted >= q {
            self.succeed(io, i);
        } else if accepted + unanswered < q {
            self.attempt_failed(io, i);
        }
    }

    pub fn handle_read_reply(&mut self, io: &mut Io, from: NodeId, rid: u32, result: ReadResult) {
        let Some(i) = self.ops.iter().position(|o| o.rid == rid && o.backoff_until.is_none()) else {
            io.stats.stale_replies += 1;
            return;
        };
        let (key, kind) = (self.ops[i].key, self.ops[i].kind);
        // A record that does not check is dropped: the reply counts as answered, not as usable.
        let checked = match &result {
            ReadResult::Found(s) => self.check_record(io, &key, kind, s),
            _ => None,
        };
        let op = &mut self.ops[i];
        let Some(idx) = op.replicas.iter().position(|r| *r == from) else { return };
        let bit = 1u8 << idx;
        if op.answered & bit != 0 || !matches!(op.req, Req::Read) {
            return;
        }
        op.answered |= bit;
        match result {
            ReadResult::Found(_) => {
                let Some(rec) = checked else { return self.read_progress(io, i) };
                op.usable += 1;
                let better = op.best.as_ref().is_none_or(|b| {
                    (rec.gen, core::cmp::Reverse(rec.owner)) > (b.gen, core::cmp::Reverse(b.owner))
                });
                if better {
                    op.best = Some(rec);
                }
            }
            ReadResult::Absent { floor } => {
                op.usable += 1;
                op.floor = op.floor.max(floor);
            }
            ReadResult::Members(ms) => {
                op.usable += 1;
                for m in ms {
                    match op.members.iter_mut().find(|x| x.owner == m.owner && x.value == m.value) {
                        Some(x) => x.ttl_ms = x.ttl_ms.max(m.ttl_ms),
                        None => {
                            // A full union keeps what it has: a read reports at most BCAST_MAX members.
                            let _ = op.members.push(m);
                        }
                    }
                }
            }
            ReadResult::NotReady | ReadResult::NotReplica => {}
        }
        self.read_progress(io, i);
    }

    /// A read's op `i` got a reply: done, failed or waiting for more.
    fn read_progress(&mut self, io: &mut Io, i: usize) {
        let op = &self.ops[i];
        let (n, q) = (op.n(), quorum(op.n()));
        let usable = usize::from(op.usable);
        let unanswered = n - op.answered.count_ones() as usize;
        if usable >= q {
            self.succeed(io, i);
        } else if usable + unanswered < q {
            self.attempt_failed(io, i);
        }
    }

    fn finish(&mut self, io: &mut Io, i: usize, outcome: Result<Outcome, OpError>) {
        let op = self.ops.swap_remove(i);
        if let Some(c) = self.claims.iter_mut().find(|c| c.op == Some(op.id)) {
            c.op = None;
        }
        match op.purpose {
            Purpose::User => {
                if outcome.is_err() {
                    io.stats.ops_failed += 1;
                }
                let r = OpResult { op: op.id, key: op.key, outcome, attempts: op.attempt };
                if self.results.push_back(r).is_err() {
                    io.stats.results_dropped += 1;
                }
            }
            Purpose::ClaimRenew => self.renew_done(io, &op, outcome),
            Purpose::Audit => {
                if let (Ok(Outcome::Found(rec)), Some(c)) =
                    (&outcome, self.claims.iter_mut().find(|c| c.key == op.key))
                {
                    if rec.gen > c.gen && rec.owner != io.me {
                        // A higher generation by another owner: renew at once; if the quorum refuses
                        // us, we yield (module doc, "Audits").
                        c.suspect = Some(Stamp { owner: rec.owner, gen: rec.gen });
                        c.renew_at = io.now;
                    }
                }
            }
            Purpose::NodeCreate => {
                if outcome.is_err() {
                    self.node_create_at = Some(io.now + BACKOFF_BASE * 10);
                }
            }
        }
    }

    fn renew_done(&mut self, io: &mut Io, op: &Op, outcome: Result<Outcome, OpError>) {
        let Some(ci) = self.claims.iter().position(|c| c.key == op.key) else { return };
        let node_key = self.node_key(&io.me);
        let c = &mut self.claims[ci];
        match outcome {
            Ok(_) => {} // applied in succeed()
            Err(OpError::Timeout) if io.now < c.lease_end => c.renew_at = io.now,
            Err(e) => {
                let c = self.claims.swap_remove(ci);
                let event = match (c.suspect, e) {
                    (Some(by), OpError::Mismatch(_) | OpError::Conflict(_)) => {
                        DhtEvent::Yielded { key: c.key, by }
                    }
                    _ => DhtEvent::LeaseLost { key: c.key },
                };
                io.stats.leases_lost += 1;
                self.event(io, event);
                if c.key == node_key {
                    // Our node record is gone: make a new one (a new epoch; node-bound claims renew).
                    self.node_create_at = Some(io.now);
                }
            }
        }
    }

    fn event(&mut self, io: &mut Io, e: DhtEvent) {
        if self.events.push_back(e).is_err() {
            io.stats.events_dropped += 1;
        }
    }

    fn succeed(&mut self, io: &mut Io, i: usize) {
        let now = io.now;
        let op = &self.ops[i];
        let (start, epoch, key, kind, gen) = (op.attempt_start, op.epoch, op.key, op.kind, op.gen);
        let outcome = match &op.req {
            Req::Create { ttl, .. } => {
                let ttl = *ttl;
                let is_node = op.purpose == Purpose::NodeCreate;
                if is_node {
                    self.node_epoch = self.node_epoch.wrapping_add(1);
                    // Node-bound claims won under the old epoch must be renewed to count again.
                    for c in self.claims.iter_mut().filter(|c| c.kind.node_bound()) {
                        c.renew_at = now;
                    }
                }
                let epoch = if is_node { self.node_epoch } else { epoch };
                let claim = Claim {
                    key,
                    kind,
                    name: op.name.clone(),
                    gen,
                    ttl,
                    lease_end: start + lease(ttl),
                    epoch,
                    renew_at: start + renew_period(ttl, kind, self.node_renew),
                    audit_at: now + self.audit_interval,
                    op: None,
                    suspect: None,
                };
                self.claims.retain(|c| c.key != key);
                if self.claims.push(claim).is_err() {
                    io.stats.claims_full += 1;
                }
                Ok(Outcome::Created { gen })
            }
            Req::Renew { ttl } => {
                let ttl = *ttl;
                let node_renew = self.node_renew;
                let node_epoch = self.node_epoch;
                if let Some(c) = self.claims.iter_mut().find(|c| c.key == key && c.gen == gen) {
                    c.lease_end = c.lease_end.max(start + lease(ttl));
                    c.renew_at = start + renew_period(ttl, kind, node_renew);
                    c.suspect = None;
                    c.epoch = if kind == Kind::Node { node_epoch } else { epoch };
                }
                Ok(Outcome::Renewed { gen })
            }
            Req::Transfer { .. } => Ok(Outcome::Transferred { gen: gen.saturating_add(1) }),
            Req::Delete => Ok(Outcome::Deleted),
            Req::Append { .. } => Ok(Outcome::Appended),
            Req::Read => Ok(if kind == Kind::Bcast {
                Outcome::Members(op.members.clone())
            } else {
                // A tombstone (an Absent reply's floor) at or above the best record's generation
                // means the owner deleted it after that replica's copy: the key is absent.
                match &op.best {
                    Some(r) if r.gen > op.floor => Outcome::Found(r.clone()),
                    _ => Outcome::Absent,
                }
            }),
        };
        self.finish(io, i, outcome);
    }

    fn attempt_failed(&mut self, io: &mut Io, i: usize) {
        let now = io.now;
        let rollback_rid = self.rid();
        let op = &mut self.ops[i];
        let (n, q) = (op.n(), quorum(op.n()));
        // Partial writes must not leave an owner behind: undo a failed Create where it was applied.
        if let (Req::Create { .. }, true) = (&op.req, op.accepted != 0) {
            for (idx, to) in op.replicas.iter().enumerate() {
                if op.accepted & (1 << idx) != 0 {
                    let m = Message::Write(Write {
                        rid: rollback_rid,
                        key: op.key,
                        kind: op.kind,
                        name: op.name.clone(),
                        op: WriteOp::Rollback { gen: op.gen },
                    });
                    (io.out)(*to, m);
                }
            }
            io.stats.rollbacks += 1;
        }
        let refused = usize::from(op.conflict_n) + usize::from(op.mismatch_n);
        let final_err = match &op.req {
            _ if usize::from(op.forbidden_n) > n - q => Some(OpError::Forbidden),
            Req::Create { .. } if usize::from(op.conflict_n) >= q => op.conflict.map(OpError::Conflict),
            Req::Renew { .. } | Req::Transfer { .. } | Req::Delete if refused > n - q => {
                Some(OpError::Mismatch(op.conflict.or(op.mismatch)))
            }
            _ => None,
        };
        if let Some(e) = final_err {
            self.finish(io, i, Err(e));
            return;
        }
        let mut delay = backoff(io.rng, op.attempt);
        if let Req::Create { .. } = op.req {
            // Every attempt uses a new generation, so a late rollback of this one never undoes the next.
            let stale = op.floor >= op.gen;
            op.gen = op.gen.max(op.floor).saturating_add(1);
            if stale && op.attempt < 3 && op.conflict_n == 0 {
                delay = Duration::ZERO;
            }
        }
        if now + delay >= op.deadline {
            let e = match op.conflict {
                Some(s) => OpError::Conflict(s),
                None => OpError::Timeout,
            };
            self.finish(io, i, Err(e));
            return;
        }
        op.backoff_until = Some(now + delay);
        if delay == Duration::ZERO {
            self.begin_attempt(io, i);
        }
    }

    /// Kademlia (kad.rs): the lookup of `key` ended; the ops waiting for it start at the next
    /// `handle_timeout`.
    pub fn wake(&mut self, now: Instant, key: &Key) {
        for op in self.ops.iter_mut().filter(|o| o.key == *key && o.replicas.is_empty()) {
            op.backoff_until = Some(now);
        }
    }

    pub fn poll_at(&self) -> Option<Instant> {
        let ops = self.ops.iter().map(|o| o.next_at()).min();
        let claims = self.claims.iter().filter(|c| c.op.is_none()).map(|c| c.renew_at.min(c.audit_at)).min();
        [ops, claims, self.node_create_at].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, io: &mut Io) {
        let now = io.now;
        let mut i = 0;
        while i < self.ops.len() {
            let op = &mut self.ops[i];
            match op.backoff_until {
                Some(t) if now >= t => {
                    if now >= op.deadline {
                        self.finish(io, i, Err(OpError::Timeout));
                        continue;
                    }
                    self.begin_attempt(io, i);
                }
                Some(_) => {}
                None if now >= op.attempt_end => {
                    self.attempt_failed(io, i);
                    // The op may have finished (swap_remove): look at index i again.
                    continue;
                }
                None if now >= op.next_retx => {
                    op.next_retx = now + RETX;
                    let msg = op.message();
                    for (idx, to) in op.replicas.iter().enumerate() {
                        if op.answered & (1 << idx) == 0 {
                            (io.out)(*to, msg.clone());
                        }
                    }
                    io.stats.retransmits += 1;
                }
                None => {}
            }
            i += 1;
        }

        if let (Some(t), Some(value)) = (self.node_create_at, &self.node_value) {
            if now >= t {
                let key = self.node_key(&io.me);
                let gen = self.claim_gen(&key).unwrap_or(0).saturating_add(1);
                let req = Req::Create { value: value.clone(), ttl: self.node_ttl };
                // Cannot fail: an id is 32 bytes.
                let name = Name::from_slice(&io.me.0).unwrap_or_default();
                self.node_create_at =
                    match self.start(io, key, Kind::Node, name, req, gen, Purpose::NodeCreate) {
                        Ok(_) => None,
                        Err(_) => Some(now + BACKOFF_BASE),
                    };
            }
        }

        for ci in 0..self.claims.len() {
            let c = &self.claims[ci];
            if c.op.is_some() {
                continue;
            }
            let (key, kind, gen, ttl, name) = (c.key, c.kind, c.gen, c.ttl, c.name.clone());
            let (purpose, req, due) = if now >= c.renew_at {
                (Purpose::ClaimRenew, Req::Renew { ttl }, true)
            } else if now >= c.audit_at {
                (Purpose::Audit, Req::Read, true)
            } else {
                (Purpose::User, Req::Read, false)
            };
            if !due {
                continue;
            }
            let started = self.start(io, key, kind, name, req, gen, purpose);
            let audit_interval = self.audit_interval;
            let c = &mut self.claims[ci];
            match started {
                Ok(id) => {
                    c.op = Some(id);
                    if purpose == Purpose::Audit {
                        c.audit_at = now + audit_interval;
                    }
                }
                Err(_) => {
                    // No op slot free: try again shortly.
                    c.renew_at = c.renew_at.max(now + BACKOFF_BASE);
                    c.audit_at = c.audit_at.max(now + BACKOFF_BASE);
                }
            }
        }
    }
}

/// How long after a successful write we renew: every `node_renew` for the node record,
/// TTL/3 for the others.
fn renew_period(ttl: Duration, kind: Kind, node_renew: Duration) -> Duration {
    if kind == Kind::Node {
        node_renew
    } else {
        Duration::from_micros(ttl.total_micros() / 3)
    }
}

/// Exponential backoff with jitter: BACKOFF_BASE * 2^min(attempt, 4), times a uniform 0.5..1.5.
fn backoff(rng: &mut Rng, attempt: u8) -> Duration {
    let base = BACKOFF_BASE.total_micros() << attempt.min(4);
    let jitter = u64::from(rng.below(1000)) + 500;
    Duration::from_micros(base * jitter / 1000)
}
