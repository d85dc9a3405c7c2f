//! Kademlia routing for namespaces beyond the one-hop member table (Maymounkov & Mazières, "Kademlia:
//! A Peer-to-peer Information System Based on the XOR Metric", IPTPS 2002; DESIGN.md "The DHT and its
//! consistency"). No alloc: a bounded routing table of k-buckets, an iterative lookup state machine
//! that finds a key's replica set (the `K` = 5 closest storage nodes), and a bounded cache of replica
//! sets found that way.
//!
//! # When it is used
//! A [`Routing`] table says whether it holds every storage node ([`Routing::complete`]). While it
//! does (the full member table, up to its capacity: about a thousand on the daemon), a key's replica
//! set is computed locally and an op goes to the replicas at once (one hop). When it does not (a
//! [`FullTable`] that had to refuse a member, a [`RoutingTable`], a client with a bounded list of
//! contacts), an op first looks its key up, unless a recent lookup's result is cached.
//!
//! # Routing table
//! [`RoutingTable`]: bucket `i` holds storage nodes whose id shares exactly `i` leading bits with ours
//! (the last bucket also takes every longer shared prefix), at most `KB` each, least recently seen
//! first. A node seen again moves to the tail. A new node for a full bucket is not inserted at once: the
//! least recently seen one is checked first ([`Routing::seen`] names it; the engine sends it a
//! `FindNode`), and it is evicted for the newcomer only if it does not answer within
//! [`PROBE_TIMEOUT`] — the paper's rule, which keeps long-lived nodes (the likeliest to stay). A node
//! that fails [`STALE_AFTER`] requests in a row is dropped (the newcomer waiting on its bucket, if any,
//! takes its place).
//!
//! # Lookup
//! [`Lookup`]: a shortlist of at most `S` candidates sorted by XOR distance to the target, seeded
//! from the table. Up to [`ALPHA`] = 3 `FindNode` requests are in flight at a time, always to the
//! closest candidates not yet asked; each answer (a storage node's [`FOUND`] closest known members) is
//! merged into the shortlist. A request unanswered after [`REQUEST_TIMEOUT`] marks its candidate failed
//! (a late answer still counts). The lookup ends when the `K` closest candidates not failed have all
//! answered (the paper's termination rule, strict: every member of the result proved alive), or when
//! nothing is left to ask (fewer than `K` storage nodes reachable: the result is what answered). A
//! lookup still running after [`LOOKUP_TIMEOUT`] fails.
//!
//! # Replica-set cache
//! A lookup's result is kept for `Config::route_ttl` (default [`ROUTE_TTL`], 60 s): every op on the
//! key within that time goes straight to the replicas, so our node record's renewals (every 10 s) never
//! look up, and a claim renewed at TTL/3 looks up once per renewal at most. The cache holds at most
//! `C` keys; a new one replaces the entry that expires first.
//!
//! A stale cached set cannot break safety: each replica votes only on keys it replicates in its own
//! view (`NotReplica` otherwise) and enforces compare-and-set itself, so a client that writes to an
//! outdated set can only miss a quorum, never make one the replicas' own views would not. It costs
//! liveness only, and briefly: a `NotReplica` answer drops every cached set holding that node, so the
//! next op looks up again. The cache only ever holds sets made of nodes that answered us.
//!
//! Who is a storage node: the sender of a `FindNode` that says so, of a `FindNodeReply`, or of a
//! replica's reply; only those are learned into a routing table. Until P3's certificates carry the
//! `dht` role, that is the authenticated sender's word.

use heapless::Vec;
use smoltcp::time::{Duration, Instant};

use super::key::Key;
use super::members::{Members, ReplicaSet, K};
use crate::id::NodeId;

/// Requests of one lookup in flight at once (the paper's α).
pub const ALPHA: usize = 3;
/// How long a lookup waits for one `FindNode` answer before it marks the node failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a whole lookup may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(4000);
/// How long the least recently seen node of a full bucket has to answer before a newcomer evicts it.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Failed requests in a row after which a node leaves the routing table.
pub const STALE_AFTER: u8 = 2;
/// How long a key's replica set found by a lookup is used without another lookup.
pub const ROUTE_TTL: Duration = Duration::from_secs(60);
/// How often an op waiting for its key's lookup asks again (a lookup slot may have been busy).
pub const RESOLVE_POLL: Duration = Duration::from_millis(250);
/// Storage nodes a `FindNode` answer names at most (the closest the answering node knows).
pub use super::msg::FOUND;

/// A member table as the DHT engine uses it: the [`Members`] it votes with, plus what routing
/// needs. The defaults describe a full table kept by the runtime (one hop, nothing learned).
pub trait Routing: Members {
    /// Whether the table holds every storage node of the namespace: then replica sets are computed
    /// locally; otherwise a key is looked up first.
    fn complete(&self) -> bool {
        true
    }
    /// Storage node `id` is alive (it sent us a storage node's message). Returns a node to check
    /// with a `FindNode` when `id` waits for room in a full bucket.
    fn seen(&mut self, now: Instant, id: NodeId) -> Option<NodeId> {
        let _ = (now, id);
        None
    }
    /// `id` did not answer a request in time.
    fn failed(&mut self, id: &NodeId) {
        let _ = id;
    }
    /// When [`Routing::handle_timeout`] should run next.
    fn poll_at(&self) -> Option<Instant> {
        None
    }
    /// Evicts the nodes that did not answer their liveness check.
    fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }
}

impl<const N: usize> Routing for Vec<NodeId, N> {}

#[cfg(feature = "alloc")]
impl Routing for alloc::collections::BTreeSet<NodeId> {}

/// The `N` members of `m` closest to `target`, closest first.
pub fn closest<const N: usize>(m: &dyn Members, target: &NodeId) -> Vec<NodeId, N> {
    let mut best: Vec<([u8; 32], NodeId), N> = Vec::new();
    m.each(&mut |id| {
        let d = id.distance(target);
        let pos = best.iter().position(|(bd, _)| d < *bd).unwrap_or(best.len());
        if pos < N {
            if best.is_full() {
                best.pop();
            }
            // Cannot fail: there is room after the pop, and pos <= len.
            let _ = best.insert(pos, (d, *id));
        }
    });
    best.iter().map(|(_, id)| *id).collect()
}

/// A storage node's answer to a `FindNode` for `target`: the closest members it knows.
pub fn answer(m: &dyn Members, target: &Key) -> Vec<[u8; 32], FOUND> {
    closest::<FOUND>(m, &target.as_id()).iter().map(|id| id.0).collect()
}

/// The one-hop member table with a capacity: complete until a member had to be refused for room
/// (then every op looks its key up first, seeded from what the table holds). `N` defaults to 1024,
/// about a thousand storage nodes (32 KiB).
#[derive(Debug, Clone, Default)]
pub struct FullTable<const N: usize = 1024> {
    ids: Vec<NodeId, N>,
    overflowed: bool,
}

impl<const N: usize> FullTable<N> {
    /// An empty table.
    pub const fn new() -> Self {
        FullTable { ids: Vec::new(), overflowed: false }
    }
}

impl<const N: usize> Members for FullTable<N> {
    fn each(&self, f: &mut dyn FnMut(&NodeId)) {
        self.ids.iter().for_each(f)
    }
    fn contains(&self, id: &NodeId) -> bool {
        self.ids.contains(id)
    }
    fn insert(&mut self, id: NodeId) -> bool {
        if self.ids.contains(&id) {
            return false;
        }
        let ok = self.ids.push(id).is_ok();
        self.overflowed |= !ok;
        ok
    }
    fn remove(&mut self, id: &NodeId) -> bool {
        match self.ids.iter().position(|m| m == id) {
            Some(i) => {
                self.ids.swap_remove(i);
                true
            }
            None => false,
        }
    }
    fn len(&self) -> usize {
        self.ids.len()
    }
}

impl<const N: usize> Routing for FullTable<N> {
    fn complete(&self) -> bool {
        !self.overflowed
    }
}

#[derive(Debug, Clone, Copy)]
struct Contact {
    id: NodeId,
    fails: u8,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    /// The least recently seen node, being checked.
    target: NodeId,
    /// The newcomer that takes its place if it does not answer (the most recent one).
    newcomer: NodeId,
    deadline: Instant,
}

#[derive(Debug, Clone)]
struct Bucket<const KB: usize> {
    /// Least recently seen first.
    nodes: Vec<Contact, KB>,
    probe: Option<Probe>,
}

impl<const KB: usize> Bucket<KB> {
    fn position(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|c| c.id == *id)
    }
}

/// A Kademlia routing table (module doc): `B` buckets of at most `KB` storage nodes each, by the
/// length of the prefix they share with our id. Defaults: 32 buckets (prefixes of 31 bits and more
/// share the last one: enough for 2^31 nodes) of 8 (more than the `K` = 5 replicas a lookup must
/// find, fewer than the paper's 20 to fit small targets): about 10 KiB. A full bucket takes a
/// newcomer only when its least recently seen node fails a liveness check.
#[derive(Debug, Clone)]
pub struct RoutingTable<const B: usize = 32, const KB: usize = 8> {
    me: NodeId,
    buckets: [Bucket<KB>; B],
    len: usize,
}

impl<const B: usize, const KB: usize> RoutingTable<B, KB> {
    /// An empty table for node `me` (never listed in it).
    pub fn new(me: NodeId) -> Self {
        RoutingTable {
            me,
            buckets: core::array::from_fn(|_| Bucket { nodes: Vec::new(), probe: None }),
            len: 0,
        }
    }

    /// Our id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The bucket of `id`: the number of leading bits it shares with ours, at most `B - 1`.
    /// `None` for our own id.
    pub fn bucket_of(&self, id: &NodeId) -> Option<usize> {
        let d = self.me.distance(id);
        let lz = match d.iter().position(|b| *b != 0) {
            Some(i) => i * 8 + d[i].leading_zeros() as usize,
            None => return None,
        };
        Some(lz.min(B.saturating_sub(1)))
    }

    /// Nodes in bucket `i` (0 when out of range).
    pub fn bucket_len(&self, i: usize) -> usize {
        self.buckets.get(i).map_or(0, |b| b.nodes.len())
    }

    fn bucket(&mut self, id: &NodeId) -> Option<&mut Bucket<KB>> {
        let i = self.bucket_of(id)?;
        self.buckets.get_mut(i)
    }

    /// Removes `id` from its bucket; the bucket's waiting newcomer, if any, takes the place.
    fn evict(&mut self, id: &NodeId) -> bool {
        let Some(b) = self.bucket(id) else { return false };
        let Some(pos) = b.position(id) else { return false };
        b.nodes.remove(pos);
        let mut delta = -1isize;
        if let Some(p) = b.probe.take() {
            if b.position(&p.newcomer).is_none() && b.nodes.push(Contact { id: p.newcomer, fails: 0 }).is_ok()
            {
                delta = 0;
            }
        }
        self.len = self.len.saturating_add_signed(delta);
        true
    }
}

impl<const B: usize, const KB: usize> Members for RoutingTable<B, KB> {
    fn each(&self, f: &mut dyn FnMut(&NodeId)) {
        for b in &self.buckets {
            b.nodes.iter().for_each(|c| f(&c.id));
        }
    }
    fn contains(&self, id: &NodeId) -> bool {
        self.bucket_of(id).and_then(|i| self.buckets.get(i)).is_some_and(|b| b.position(id).is_some())
    }
    /// Adds `id` if its bucket has room (no liveness check: for a runtime seeding contacts).
    fn insert(&mut self, id: NodeId) -> bool {
        let Some(b) = self.bucket(&id) else { return false };
        if b.position(&id).is_some() || b.nodes.push(Contact { id, fails: 0 }).is_err() {
            return false;
        }
        self.len += 1;
        true
    }
    fn remove(&mut self, id: &NodeId) -> bool {
        self.evict(id)
    }
    fn len(&self) -> usize {
        self.len
    }
}

impl<const B: usize, const KB: usize> Routing for RoutingTable<B, KB> {
    fn complete(&self) -> bool {
        false
    }

    fn seen(&mut self, now: Instant, id: NodeId) -> Option<NodeId> {
        let b = self.bucket(&id)?;
        if let Some(pos) = b.position(&id) {
            let mut c = b.nodes.remove(pos);
            c.fails = 0;
            // Cannot fail: one was just removed.
            let _ = b.nodes.push(c);
            if b.probe.is_some_and(|p| p.target == id) {
                // The checked node is alive: it stays, the newcomer is dropped (the paper's rule).
                b.probe = None;
            }
            return None;
        }
        if b.nodes.push(Contact { id, fails: 0 }).is_ok() {
            self.len += 1;
            return None;
        }
        match &mut b.probe {
            Some(p) => {
                p.newcomer = id;
                None
            }
            None => {
                let target = b.nodes.first()?.id;
                b.probe = Some(Probe { target, newcomer: id, deadline: now + PROBE_TIMEOUT });
                Some(target)
            }
        }
    }

    fn failed(&mut self, id: &NodeId) {
        let Some(b) = self.bucket(id) else { return };
        let Some(pos) = b.position(id) else { return };
        let c = &mut b.nodes[pos];
        c.fails = c.fails.saturating_add(1);
        let probed = b.probe.is_some_and(|p| p.target == *id);
        if c.fails >= STALE_AFTER || probed {
            self.evict(id);
        }
    }

    fn poll_at(&self) -> Option<Instant> {
        self.buckets.iter().filter_map(|b| b.probe.map(|p| p.deadline)).min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        for i in 0..B {
            if let Some(p) = self.buckets[i].probe.filter(|p| now >= p.deadline) {
                // The checked node did not answer: the newcomer takes its place.
                if !self.evict(&p.target) {
                    self.buckets[i].probe = None;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Not asked yet.
    Fresh,
    /// Asked; failed if no answer by then.
    Waiting(Instant),
    Answered,
    Failed,
}

#[derive(Debug, Clone, Copy)]
struct Cand {
    id: NodeId,
    st: St,
    /// Answers on the path from our own table to this node (0: we knew it).
    depth: u8,
}

/// Where a lookup stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupState {
    /// Requests are still needed or in flight.
    Running,
    /// The replica set: the `K` closest nodes found, all of which answered (fewer when fewer were
    /// reachable), closest first.
    Done(ReplicaSet),
    /// Past [`LOOKUP_TIMEOUT`], or no node answered at all.
    Failed,
}

/// One iterative lookup of the `K` storage nodes closest to a target (module doc). `S` bounds the
/// shortlist (default 16: room for three answers of [`FOUND`] beyond the `K` best); a candidate
/// further than all `S` kept ones is dropped.
#[derive(Debug, Clone)]
pub struct Lookup<const S: usize = 16> {
    target: NodeId,
    rid: u32,
    cands: Vec<Cand, S>,
    deadline: Instant,
    sent: u16,
}

impl<const S: usize> Lookup<S> {
    /// A lookup of `target` started at `now` with request id `rid`, seeded with the closest known
    /// storage nodes of `table`. `me`: our id when we are a storage node ourselves (we count as an
    /// answered candidate).
    pub fn new(now: Instant, rid: u32, target: NodeId, table: &dyn Members, me: Option<NodeId>) -> Self {
        let mut l = Lookup { target, rid, cands: Vec::new(), deadline: now + LOOKUP_TIMEOUT, sent: 0 };
        for id in closest::<S>(table, &target) {
            l.add(id, 0, St::Fresh);
        }
        if let Some(me) = me {
            l.add(me, 0, St::Answered);
        }
        l
    }

    /// The target.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// The request id every `FindNode` of this lookup carries.
    pub fn rid(&self) -> u32 {
        self.rid
    }

    /// `FindNode` requests sent so far.
    pub fn sent(&self) -> u16 {
        self.sent
    }

    fn add(&mut self, id: NodeId, depth: u8, st: St) {
        if let Some(c) = self.cands.iter_mut().find(|c| c.id == id) {
            c.depth = c.depth.min(depth);
            return;
        }
        let d = id.distance(&self.target);
        let pos = self.cands.iter().position(|c| d < c.id.distance(&self.target)).unwrap_or(self.cands.len());
        if pos >= S {
            return;
        }
        if self.cands.is_full() {
            self.cands.pop();
        }
        // Cannot fail: there is room after the pop, and pos <= len.
        let _ = self.cands.insert(pos, Cand { id, st, depth });
    }

    /// The next node to send a `FindNode` to now, if any (marks it asked).
    pub fn poll_send(&mut self, now: Instant) -> Option<NodeId> {
        if self.state(now) != LookupState::Running {
            return None;
        }
        let waiting = self.cands.iter().filter(|c| matches!(c.st, St::Waiting(_))).count();
        if waiting >= ALPHA {
            return None;
        }
        let c = self.cands.iter_mut().find(|c| c.st == St::Fresh)?;
        c.st = St::Waiting(now + REQUEST_TIMEOUT);
        self.sent = self.sent.saturating_add(1);
        Some(c.id)
    }

    /// An answer from `from`: the nodes it knows closest to the target. False when it is not an
    /// answer to this lookup (unknown request id or sender).
    pub fn handle_reply(&mut self, from: &NodeId, rid: u32, nodes: &[[u8; 32]]) -> bool {
        if rid != self.rid {
            return false;
        }
        let Some(c) = self.cands.iter_mut().find(|c| c.id == *from) else { return false };
        if !matches!(c.st, St::Waiting(_) | St::Failed) {
            return false;
        }
        c.st = St::Answered;
        let depth = c.depth.saturating_add(1);
        for n in nodes {
            self.add(NodeId(*n), depth, St::Fresh);
        }
        true
    }

    /// Marks the requests past their timeout failed, naming each failed node to `failed`.
    pub fn handle_timeout(&mut self, now: Instant, failed: &mut dyn FnMut(&NodeId)) {
        for c in self.cands.iter_mut() {
            if let St::Waiting(t) = c.st {
                if now >= t {
                    c.st = St::Failed;
                    failed(&c.id);
                }
            }
        }
    }

    /// When [`Lookup::handle_timeout`] should run next.
    pub fn poll_at(&self) -> Instant {
        self.cands
            .iter()
            .filter_map(|c| match c.st {
                St::Waiting(t) => Some(t),
                _ => None,
            })
            .fold(self.deadline, Instant::min)
    }

    /// The closest candidates not failed, at most `K`, and whether all of them answered.
    fn best(&self) -> (ReplicaSet, bool) {
        let mut set = ReplicaSet::new();
        let mut all = true;
        for c in self.cands.iter().filter(|c| c.st != St::Failed) {
            if set.is_full() {
                break;
            }
            all &= c.st == St::Answered;
            // Cannot fail: checked for room above.
            let _ = set.push(c.id);
        }
        (set, all)
    }

    /// Where the lookup stands at `now`.
    pub fn state(&self, now: Instant) -> LookupState {
        let (set, all) = self.best();
        if all && !set.is_empty() {
            return LookupState::Done(set);
        }
        let idle = !self.cands.iter().any(|c| matches!(c.st, St::Fresh | St::Waiting(_)));
        if now >= self.deadline || (idle && set.is_empty()) {
            return LookupState::Failed;
        }
        LookupState::Running
    }

    /// Hops of the answer: the longest chain of answers that led to a member of the result (1: every
    /// member was in our own table). 0 while no result.
    pub fn hops(&self) -> u8 {
        let mut h = 0;
        for c in self.cands.iter().filter(|c| c.st != St::Failed).take(K) {
            h = h.max(c.depth.saturating_add(1));
        }
        h
    }
}

/// A replica set found by a lookup, and until when it is used.
#[derive(Debug, Clone)]
struct Cached {
    key: Key,
    set: ReplicaSet,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct Slot {
    key: Key,
    lookup: Lookup,
}

/// How a lookup the engine ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finished {
    /// The key's replica set is cached; `hops` as [`Lookup::hops`].
    Found { key: Key, hops: u8 },
    /// No result.
    Failed { key: Key },
}

/// The engine's replica-set resolution beyond the one-hop table: at most `L` lookups in flight (a
/// key wanted beyond that waits for a slot: its op asks again every [`RESOLVE_POLL`]) and at most `C`
/// cached replica sets (module doc, "Replica-set cache").
pub(crate) struct Router<const L: usize, const C: usize> {
    slots: Vec<Slot, L>,
    cache: Vec<Cached, C>,
    next_rid: u32,
    ttl: Duration,
}

impl<const L: usize, const C: usize> Router<L, C> {
    pub fn new(ttl: Duration, rid_seed: u32) -> Self {
        Router { slots: Vec::new(), cache: Vec::new(), next_rid: rid_seed, ttl }
    }

    /// The cached replica set of `key`, if still fresh.
    pub fn cached(&self, now: Instant, key: &Key) -> Option<&ReplicaSet> {
        self.cache.iter().find(|c| c.key == *key && now < c.expires).map(|c| &c.set)
    }

    /// Whether a lookup of `key` is running.
    pub fn looking_up(&self, key: &Key) -> bool {
        self.slots.iter().any(|s| s.key == *key)
    }

    /// Starts a lookup of `key` (nothing if one runs already). False when every slot is busy.
    pub fn start(&mut self, now: Instant, key: Key, table: &dyn Members, me: Option<NodeId>) -> bool {
        if self.looking_up(&key) {
            return true;
        }
        if self.slots.is_full() {
            return false;
        }
        self.next_rid = self.next_rid.wrapping_add(1);
        let lookup = Lookup::new(now, self.next_rid, key.as_id(), table, me);
        // Cannot fail: checked for room above.
        let _ = self.slots.push(Slot { key, lookup });
        true
    }

    /// A `FindNodeReply`; false when it answers no lookup (a liveness check's answer, or late).
    pub fn handle_reply(&mut self, from: &NodeId, rid: u32, nodes: &[[u8; 32]]) -> bool {
        self.slots.iter_mut().any(|s| s.lookup.handle_reply(from, rid, nodes))
    }

    /// Drops every cached set that holds `node` (it said it is not a replica of some key).
    pub fn invalidate(&mut self, node: &NodeId) {
        self.cache.retain(|c| !c.set.contains(node));
    }

    /// Times requests out, sends what the lookups need (`send(to, rid, target)`) and ends the
    /// lookups that are done, caching their results.
    pub fn drive(
        &mut self,
        now: Instant,
        table: &mut dyn Routing,
        send: &mut dyn FnMut(NodeId, u32, Key),
        finished: &mut dyn FnMut(Finished),
    ) {
        let mut i = 0;
        while i < self.slots.len() {
            let s = &mut self.slots[i];
            s.lookup.handle_timeout(now, &mut |id| table.failed(id));
            while let Some(to) = s.lookup.poll_send(now) {
                send(to, s.lookup.rid(), s.key);
            }
            match s.lookup.state(now) {
                LookupState::Running => i += 1,
                LookupState::Done(set) => {
                    let (key, hops) = (s.key, s.lookup.hops());
                    self.slots.swap_remove(i);
                    self.remember(now, key, set);
                    finished(Finished::Found { key, hops });
                }
                LookupState::Failed => {
                    let key = s.key;
                    self.slots.swap_remove(i);
                    finished(Finished::Failed { key });
                }
            }
        }
    }

    fn remember(&mut self, now: Instant, key: Key, set: ReplicaSet) {
        let expires = now + self.ttl;
        self.cache.retain(|c| c.key != key && now < c.expires);
        if self.cache.is_full() {
            if let Some(i) = self.cache.iter().enumerate().min_by_key(|(_, c)| c.expires).map(|(i, _)| i) {
                self.cache.swap_remove(i);
            }
        }
        // Cannot fail: room was made above.
        let _ = self.cache.push(Cached { key, set, expires });
    }

    pub fn poll_at(&self) -> Option<Instant> {
        self.slots.iter().map(|s| s.lookup.poll_at()).min()
    }
}

/// The member table as the client sees it: the table itself while it is complete, otherwise the
/// cached replica sets; a key with neither is noted in `wanted` (for a lookup) and has, for now, an
/// empty replica set (its op waits).
pub(crate) struct Resolver<'a, const C: usize, const L: usize> {
    pub base: &'a dyn Routing,
    pub router: &'a Router<L, C>,
    pub now: Instant,
    pub wanted: core::cell::RefCell<Vec<Key, 8>>,
    pub hits: core::cell::Cell<u32>,
}

impl<const C: usize, const L: usize> Members for Resolver<'_, C, L> {
    fn each(&self, f: &mut dyn FnMut(&NodeId)) {
        self.base.each(f)
    }
    fn contains(&self, id: &NodeId) -> bool {
        self.base.contains(id)
    }
    fn insert(&mut self, _id: NodeId) -> bool {
        false
    }
    fn remove(&mut self, _id: &NodeId) -> bool {
        false
    }
    fn len(&self) -> usize {
        self.base.len()
    }
    fn replica_set(&self, key: &Key) -> ReplicaSet {
        if self.base.complete() {
            return self.base.replica_set(key);
        }
        if let Some(set) = self.router.cached(self.now, key) {
            self.hits.set(self.hits.get() + 1);
            return set.clone();
        }
        let mut w = self.wanted.borrow_mut();
        if !w.contains(key) {
            // Beyond 8 at once the op asks again after RESOLVE_POLL.
            let _ = w.push(*key);
        }
        ReplicaSet::new()
    }
}

/// A storage node's member view: its table plus itself. A routing table never lists its owner, but a
/// storage node is a member, and a replica of the keys it is among the `K` closest to.
#[cfg(feature = "alloc")]
pub(crate) struct WithMe<'a> {
    pub base: &'a dyn Members,
    pub me: NodeId,
}

#[cfg(feature = "alloc")]
impl Members for WithMe<'_> {
    fn each(&self, f: &mut dyn FnMut(&NodeId)) {
        self.base.each(f);
        if !self.base.contains(&self.me) {
            f(&self.me);
        }
    }
    fn contains(&self, id: &NodeId) -> bool {
        *id == self.me || self.base.contains(id)
    }
    fn insert(&mut self, _id: NodeId) -> bool {
        false
    }
    fn remove(&mut self, _id: &NodeId) -> bool {
        false
    }
    fn len(&self) -> usize {
        self.base.len() + usize::from(!self.base.contains(&self.me))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;

    fn id(i: u32) -> NodeId {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        NodeId::from_public_key(&k)
    }

    fn t(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }

    /// An id whose first byte is `b` and the rest `rest`.
    fn raw(b: u8, rest: u8) -> NodeId {
        let mut x = [rest; 32];
        x[0] = b;
        NodeId(x)
    }

    #[test]
    fn buckets_follow_the_shared_prefix() {
        let rt: RoutingTable<32, 4> = RoutingTable::new(raw(0, 0));
        assert_eq!(rt.bucket_of(&raw(0, 0)), None);
        assert_eq!(rt.bucket_of(&raw(0x80, 0)), Some(0));
        assert_eq!(rt.bucket_of(&raw(0x40, 0)), Some(1));
        assert_eq!(rt.bucket_of(&raw(0x01, 0)), Some(7));
        // 8 shared bits and more: bucket 8.. and anything past 31 in the last one.
        assert_eq!(rt.bucket_of(&raw(0, 0x80)), Some(8));
        assert_eq!(rt.bucket_of(&raw(0, 0x01)), Some(15));
        let mut far = [0u8; 32];
        far[31] = 1;
        assert_eq!(rt.bucket_of(&NodeId(far)), Some(31), "255 shared bits: the last bucket");
        let small: RoutingTable<4, 4> = RoutingTable::new(raw(0, 0));
        assert_eq!(small.bucket_of(&raw(0x01, 0)), Some(3));
    }

    #[test]
    fn a_full_bucket_keeps_its_oldest_node_while_it_answers() {
        let mut rt: RoutingTable<32, 2> = RoutingTable::new(raw(0, 0));
        let (a, b, c, d) = (raw(0x80, 1), raw(0x80, 2), raw(0x80, 3), raw(0x80, 4));
        assert_eq!(rt.seen(t(0), a), None);
        assert_eq!(rt.seen(t(0), b), None);
        // Full: the least recently seen (a) is to be checked; c waits.
        assert_eq!(rt.seen(t(10), c), Some(a));
        assert_eq!(rt.poll_at(), Some(t(10) + PROBE_TIMEOUT));
        // A newer newcomer replaces c as the waiting one; no second check.
        assert_eq!(rt.seen(t(20), d), None);
        // a answers: it stays (now most recently seen), d is dropped.
        assert_eq!(rt.seen(t(30), a), None);
        assert_eq!(rt.poll_at(), None);
        assert!(rt.contains(&a) && rt.contains(&b) && !rt.contains(&d));
        // Next newcomer: b is now the oldest; it does not answer and is evicted for c.
        assert_eq!(rt.seen(t(40), c), Some(b));
        rt.handle_timeout(t(40) + PROBE_TIMEOUT - Duration::from_millis(1));
        assert!(rt.contains(&b));
        rt.handle_timeout(t(40) + PROBE_TIMEOUT);
        assert!(!rt.contains(&b) && rt.contains(&c) && rt.contains(&a));
        assert_eq!(rt.len(), 2);
        assert_eq!(rt.bucket_len(0), 2);
        // Ourselves never enter.
        assert_eq!(rt.seen(t(50), raw(0, 0)), None);
        assert!(!rt.contains(&raw(0, 0)));
    }

    #[test]
    fn a_node_that_fails_twice_leaves() {
        let mut rt: RoutingTable = RoutingTable::new(raw(0, 0));
        let a = raw(0x80, 1);
        rt.seen(t(0), a);
        rt.failed(&a);
        assert!(rt.contains(&a));
        rt.seen(t(1), a); // an answer resets the count
        rt.failed(&a);
        assert!(rt.contains(&a));
        rt.failed(&a);
        assert!(!rt.contains(&a));
        assert_eq!(rt.len(), 0);
    }

    #[test]
    fn full_table_is_complete_until_it_refuses_a_member() {
        let mut ft: FullTable<2> = FullTable::new();
        assert!(ft.insert(id(1)) && ft.insert(id(2)) && ft.complete());
        assert!(!ft.insert(id(1)) && ft.complete());
        assert!(!ft.insert(id(3)));
        assert!(!ft.complete());
    }

    /// A network of `n` nodes, each knowing the others through a routing table (what fits).
    fn network(n: u32, rng: &mut Rng) -> std::vec::Vec<RoutingTable> {
        let ids: std::vec::Vec<NodeId> = (0..n).map(id).collect();
        let mut tables: std::vec::Vec<RoutingTable> = ids.iter().map(|i| RoutingTable::new(*i)).collect();
        for rt in tables.iter_mut() {
            // Random order, as nodes are met.
            for _ in 0..4 * n {
                rt.insert(ids[rng.below(n) as usize]);
            }
        }
        tables
    }

    fn true_closest(ids: &[NodeId], target: &NodeId) -> ReplicaSet {
        let mut v: std::vec::Vec<NodeId> = ids.to_vec();
        v.sort_by_key(|i| i.distance(target));
        v.into_iter().take(K).collect()
    }

    #[test]
    fn lookups_find_the_k_closest_and_skip_dead_nodes() {
        let mut rng = Rng::new(5);
        let n = 300;
        let tables = network(n, &mut rng);
        let ids: std::vec::Vec<NodeId> = (0..n).map(id).collect();
        let dead: std::collections::BTreeSet<NodeId> = (0..n).filter(|i| i % 10 == 3).map(id).collect();
        let live: std::vec::Vec<NodeId> = ids.iter().filter(|i| !dead.contains(i)).copied().collect();
        let mut hops = 0;
        for k in 0..100u32 {
            let target = id(100_000 + k);
            let from = &tables[(k * 7 % n) as usize];
            if dead.contains(&from.me()) {
                continue;
            }
            let mut l: Lookup = Lookup::new(t(0), 9, target, from, Some(from.me()));
            let mut now = t(0);
            while l.state(now) == LookupState::Running {
                while let Some(to) = l.poll_send(now) {
                    if dead.contains(&to) {
                        continue;
                    }
                    let peer = &tables[ids.iter().position(|i| *i == to).unwrap()];
                    assert!(l.handle_reply(&to, 9, &answer(peer, &Key(target.0))));
                    assert!(!l.handle_reply(&to, 9, &[]), "one answer per request");
                }
                now += Duration::from_millis(100);
                l.handle_timeout(now, &mut |id| assert!(dead.contains(id)));
            }
            match l.state(now) {
                LookupState::Done(set) => assert_eq!(set, true_closest(&live, &target), "lookup {k}"),
                other => panic!("lookup {k}: {other:?}"),
            }
            hops += u32::from(l.hops());
            assert!(!l.handle_reply(&ids[0], 8, &[]), "a wrong rid is not an answer");
        }
        assert!(hops <= 90 * 4, "mean hops over 4: {hops}");
    }

    #[test]
    fn a_lookup_with_nothing_to_ask_fails_or_returns_us() {
        let empty: RoutingTable = RoutingTable::new(id(0));
        let l: Lookup = Lookup::new(t(0), 1, id(5), &empty, None);
        assert_eq!(l.state(t(0)), LookupState::Failed);
        let l: Lookup = Lookup::new(t(0), 1, id(5), &empty, Some(id(0)));
        assert_eq!(l.state(t(0)), LookupState::Done([id(0)].into_iter().collect()));
        // Nobody answers: failed at the lookup deadline at the latest.
        let mut one: RoutingTable = RoutingTable::new(id(0));
        one.insert(id(1));
        let mut l: Lookup = Lookup::new(t(0), 1, id(5), &one, None);
        assert_eq!(l.poll_send(t(0)), Some(id(1)));
        assert_eq!(l.poll_at(), t(0) + REQUEST_TIMEOUT);
        l.handle_timeout(t(0) + REQUEST_TIMEOUT, &mut |_| {});
        assert_eq!(l.state(t(0) + REQUEST_TIMEOUT), LookupState::Failed);
    }

    #[test]
    fn the_cache_expires_and_a_not_replica_voids_it() {
        let mut rt: RoutingTable = RoutingTable::new(id(0));
        rt.insert(id(1));
        let mut r: Router<2, 2> = Router::new(Duration::from_secs(60), 0);
        let key = Key([7; 32]);
        assert!(r.start(t(0), key, &rt, None));
        let mut sent = std::vec::Vec::new();
        let mut ended = std::vec::Vec::new();
        r.drive(t(0), &mut rt, &mut |to, rid, k| sent.push((to, rid, k)), &mut |f| ended.push(f));
        assert_eq!(sent.len(), 1);
        let (to, rid, k) = sent[0];
        assert_eq!((to, k), (id(1), key));
        assert!(r.handle_reply(&id(1), rid, &[]));
        r.drive(t(100), &mut rt, &mut |_, _, _| panic!("nothing left to ask"), &mut |f| ended.push(f));
        assert_eq!(ended, [Finished::Found { key, hops: 1 }]);
        assert_eq!(r.cached(t(100), &key).map(|s| s.as_slice()), Some(&[id(1)][..]));
        assert!(r.cached(t(60_100), &key).is_none(), "expired");
        r.invalidate(&id(1));
        assert!(r.cached(t(100), &key).is_none(), "voided");
        // Two slots: a third key waits.
        assert!(r.start(t(0), Key([1; 32]), &rt, None) && r.start(t(0), Key([2; 32]), &rt, None));
        assert!(r.start(t(0), Key([1; 32]), &rt, None), "already running");
        assert!(!r.start(t(0), Key([3; 32]), &rt, None));
    }
}
